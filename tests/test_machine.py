"""The machine a lock is built on: its GPUs and driver (nvidia-smi), its toolchain (gcc/g++, cmake,
ninja, rustc, cargo, nvcc), and an `empty` build verified without `vllm --version`.

There is no GPU on this machine: the GPU tests read real nvidia-smi output (captured from an H200
with driver 580.159.04, and the documented formats of older drivers) through a stand-in
`nvidia-smi` executable on PATH that prints it, so the real lookup and the real process run.
The toolchain tests run this machine's real gcc 12.2, cmake, ninja, rustc and cargo.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest
from install_support import ResolvedLock, cli, install_args, resolve_world_lock, write_variant
from sample_lock import make_lock

from vllm_lock import cuda, plan
from vllm_lock.model import ExternalSource, Lock
from vllm_lock.shell import machine, proc
from vllm_lock_testworld import TestWorld

# ---------------------------------------------------------------- real nvidia-smi output

H200_QUERY = "9.0, NVIDIA H200\n"  # --query-gpu=compute_cap,name --format=csv,noheader, driver 580.159.04
H200_BANNER = """Sat Nov 28 09:36:07 2026       
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |
+-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA H200                    On  |   00000000:00:06.0 Off |                    0 |
| N/A   34C    P0             78W /  700W |       0MiB / 143771MiB |      0%      Default |
|                                         |                        |             Disabled |
+-----------------------------------------+------------------------+----------------------+
"""  # noqa: W291 (nvidia-smi pads its date line)
# An Ada card (sm_89) under a CUDA 12.4 driver (R550's banner layout).
L40S_QUERY = "8.9, NVIDIA L40S\n8.9, NVIDIA L40S\n"
L40S_BANNER = """+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 550.54.15              Driver Version: 550.54.15      CUDA Version: 12.4     |
|-----------------------------------------+------------------------+----------------------+
"""
BLACKWELL_QUERY = "12.0, NVIDIA RTX PRO 6000 Blackwell Workstation Edition\n"
BLACKWELL_BANNER = "| NVIDIA-SMI 570.124.06             Driver Version: 570.124.06     CUDA Version: 12.8     |\n"
NO_DEVICES = "No devices were found\n"  # exit 6
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
             "latest NVIDIA driver is installed and running.\n")  # exit 9
OLD_DRIVER = 'Field "compute_cap" is not a valid field to query.\n\n'  # exit 2, drivers before compute_cap


def report(query: str, banner: str, status: int = 0) -> cuda.GpuReport:
    return cuda.gpu_report((status, query), (0, banner))


def test_reads_real_nvidia_smi_output() -> None:
    got = report(H200_QUERY, H200_BANNER)
    assert got.gpus == (cuda.Gpu(name="NVIDIA H200", capability=(9, 0)),)
    assert (got.driver_version, got.driver_cuda, got.error, got.absent) == ("580.159.04", (13, 0), None, None)
    many = report(L40S_QUERY, L40S_BANNER)
    assert [g.capability for g in many.gpus] == [(8, 9), (8, 9)] and many.driver_cuda == (12, 4)


@pytest.mark.parametrize(("query", "status", "absent"), [
    (NO_DEVICES, 6, "No devices were found"),
    (NO_DRIVER, 9, "couldn't communicate with the NVIDIA driver"),
    ("", 0, "nvidia-smi lists none"),
])
def test_no_gpu_is_absence_not_an_error(query: str, status: int, absent: str) -> None:
    got = report(query, "", status)
    assert got.gpus == () and got.error is None and absent in (got.absent or "")
    assert cuda.gpu_problems(got, ("12.0",), "cu128") == []
    assert cuda.gpu_notes(got, ("12.0",))[0].startswith("no GPU present")


def test_unreadable_nvidia_smi_is_refused_with_its_words() -> None:
    got = report(OLD_DRIVER, "", 2)
    assert got.error == 'nvidia-smi --query-gpu exited 2: Field "compute_cap" is not a valid field to query.'
    assert "--skip-gpu-check" in cuda.gpu_problems(got, ("12.0",), "cu128")[0]
    assert cuda.gpu_report(None, None).absent == "no nvidia-smi on PATH"


@pytest.mark.parametrize(("query", "banner", "archs", "variant", "nvcc", "words"), [
    # the case: an sm_89 card, a 12.0-only lock
    (L40S_QUERY, BLACKWELL_BANNER, ("12.0",), "cu128", None,
     ["do not cover NVIDIA L40S (sm_89), NVIDIA L40S (sm_89)", "re-resolve with --arch 8.9"]),
    # a CUDA 12.4 driver for a cu128 torch: names the driver that fits
    (BLACKWELL_QUERY, L40S_BANNER, ("12.0",), "cu128", None,
     ["driver 550.54.15 supports CUDA up to 12.4, but the lock's torch is cu128",
      "a driver for CUDA >= 12.8 (570.26 or newer)"]),
    # nvcc 13 cubins do not load on a CUDA 12 driver
    (BLACKWELL_QUERY, BLACKWELL_BANNER, ("12.0",), "cu128", (13, 0),
     ["supports CUDA up to 12.8, but nvcc 13.0 compiles vLLM's kernels", "580.65.06 or newer"]),
    # arch-specific code runs only on exactly its arch
    (H200_QUERY, H200_BANNER, ("8.0a",), "cu130", None, ["re-resolve with --arch 9.0"]),
])
def test_refusals_name_what_would_fit(query: str, banner: str, archs: tuple[str, ...], variant: str,
                                      nvcc: tuple[int, int] | None, words: list[str]) -> None:
    problems = cuda.gpu_problems(report(query, banner), archs, variant, nvcc)
    assert len(problems) == 1, problems
    for word in words:
        assert word in problems[0]


@pytest.mark.parametrize(("query", "banner", "archs", "variant", "nvcc"), [
    (H200_QUERY, H200_BANNER, ("9.0",), "cu128", (12, 8)),
    (H200_QUERY, H200_BANNER, ("9.0a", "12.0"), "cu130", (13, 0)),
    (BLACKWELL_QUERY, BLACKWELL_BANNER, ("10.0", "12.0"), "cu128", (12, 8)),
    (L40S_QUERY, L40S_BANNER, ("8.0",), "cu124", (12, 4)),  # binary compatible within 8.x
])
def test_covered_gpus_pass(query: str, banner: str, archs: tuple[str, ...], variant: str,
                           nvcc: tuple[int, int]) -> None:
    assert cuda.gpu_problems(report(query, banner), archs, variant, nvcc) == []


def test_older_minor_coverage_is_a_note() -> None:
    notes = cuda.gpu_notes(report(L40S_QUERY, L40S_BANNER), ("8.0",))
    assert notes and "need --arch 8.9" in notes[0]
    assert cuda.gpu_notes(report(H200_QUERY, H200_BANNER), ("9.0",)) == []


def _nvidia_smi(tmp_path: Path, query: str, banner: str, status: int = 0) -> dict[str, str]:
    """A stand-in nvidia-smi on PATH printing real-format output (no GPU on this machine)."""
    bin_dir = tmp_path / "gpu-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "query.txt").write_text(query)
    (bin_dir / "banner.txt").write_text(banner)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\ncase "$*" in\n  *--query-gpu=compute_cap,name*) cat "{bin_dir}/query.txt"; '
                   f'exit {status} ;;\n  "") cat "{bin_dir}/banner.txt" ;;\n  *) echo "unexpected: $*" >&2; exit 2 '
                   ';;\nesac\n')
    smi.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_shell_reads_nvidia_smi_on_path(tmp_path: Path) -> None:
    env = _nvidia_smi(tmp_path, H200_QUERY, H200_BANNER)
    got = machine.gpus(env)
    assert got.gpus == (cuda.Gpu(name="NVIDIA H200", capability=(9, 0)),) and got.driver_cuda == (13, 0)
    assert machine.gpus({"PATH": str(tmp_path / "nowhere")}).absent == "no nvidia-smi on PATH"
    assert machine.gpus(_nvidia_smi(tmp_path, NO_DEVICES, "", 6)).absent == "nvidia-smi: No devices were found"


# ---------------------------------------------------------------- toolchain

# What the real tools print (Debian 12 / Ubuntu 24.04 and the rust toolchain).
@pytest.mark.parametrize(("text", "version"), [
    ("12.2.0\n", "12.2.0"),
    ("cmake version 3.25.1\n\nCMake suite maintained and supported by Kitware (kitware.com/cmake).\n", "3.25.1"),
    ("1.11.1\n", "1.11.1"),
    ("rustc 1.95.0 (59807616e 2026-04-14)\n", "1.95.0"),
    ("cargo 1.95.0 (f2d3ce0bd 2026-03-21)\n", "1.95.0"),
    ("no version here\n", None),
])
def test_parse_tool_version(text: str, version: str | None) -> None:
    assert plan.parse_tool_version(text) == version


def _source(name: str, repository: str, declared_in: str) -> ExternalSource:
    return ExternalSource(name=name, repository=repository, ref="c" * 40, ref_kind="commit",
                          override=f"{name.upper()}_SRC_DIR", declared_in=declared_in, commit="c" * 40)


DEEPSELECT = _source("deepselect", "https://github.com/vllm-project/DeepSelect.git",
                     "cmake/external_projects/deepselect.cmake")
DEEPGEMM_030 = _source("deepgemm", "https://github.com/vllm-project/DeepGEMM.git",
                       "cmake/external_projects/deepgemm.cmake")
DEEPGEMM_020 = _source("deepgemm", "https://github.com/deepseek-ai/DeepGEMM.git",
                       "cmake/external_projects/deepgemm.cmake")
ONEDNN = _source("onednn", "https://github.com/oneapi-src/oneDNN.git", "cmake/cpu_extension.cmake")
CUTLASS = _source("cutlass", "https://github.com/nvidia/cutlass.git", "CMakeLists.txt")


def real_like(target_device: str, *sources: ExternalSource, build_set: tuple[str, ...] = ()) -> Lock:
    """A lock shaped like vLLM's own (its external sources and build set), for the pure rules."""
    base = make_lock()
    return dataclasses.replace(
        base, external_sources=sources, build=dataclasses.replace(base.build, target_device=target_device),
        layout=dataclasses.replace(base.layout, build_set=build_set or base.layout.build_set))


GCC_12_2 = (plan.Tool(name="gcc", path="/usr/bin/gcc", version="12.2.0"),
            plan.Tool(name="g++", path="/usr/bin/g++", version="12.2.0"))
GCC_13_3 = (plan.Tool(name="gcc", path="/usr/bin/gcc", version="13.3.0"),
            plan.Tool(name="g++", path="/usr/bin/g++", version="13.3.0"))


def test_vllm_030_cuda_needs_gcc_13() -> None:
    lock = real_like("cuda", CUTLASS, DEEPGEMM_030, DEEPSELECT)
    problems = plan.toolchain_problems(plan.toolchain_needs(lock), GCC_12_2)
    assert problems[0] == ("gcc 12.2.0 (/usr/bin/gcc) is below what the lock needs, gcc>=13: DeepSelect (pinned "
                           "since vLLM 0.30) includes <format>: C++20 std::format needs GCC >= 13 (vLLM issue 58158)")
    assert any(p.startswith("g++ 12.2.0") for p in problems)
    assert plan.toolchain_problems(plan.toolchain_needs(lock), GCC_13_3) == []
    # vLLM 0.20's DeepGEMM (deepseek-ai's) builds with GCC 12
    assert plan.toolchain_needs(real_like("cuda", CUTLASS, DEEPGEMM_020)) == ()


def test_cpu_extension_on_x86_needs_gcc_12_3() -> None:
    problems = plan.toolchain_problems(plan.toolchain_needs(real_like("cpu", ONEDNN)), GCC_12_2)
    assert len(problems) == 2 and "gcc>=12.3" in problems[0] and "X86 backend requires gcc/g++ >= 12.3" in problems[0]


def test_empty_compiles_nothing_and_the_test_world_needs_no_floor() -> None:
    assert plan.toolchain_needs(real_like("empty", DEEPSELECT, ONEDNN, build_set=("cmake>=3.26.1",))) == ()
    assert plan.toolchain_needs(real_like("cpu", CUTLASS)) == ()


def test_cmake_floor_comes_from_the_build_set_and_the_locked_wheel_counts() -> None:
    lock = real_like("cuda", CUTLASS, build_set=("cmake>=3.26.1", "ninja", "packaging>=24.2"))
    needs = plan.toolchain_needs(lock)
    assert [(n.tool, n.spec) for n in needs] == [("cmake", ">=3.26.1")]
    system = (plan.Tool(name="cmake", path="/usr/bin/cmake", version="3.25.1"),)
    assert plan.toolchain_problems(needs, system) == [
        "cmake 3.25.1 (/usr/bin/cmake) is below what the lock needs, cmake>=3.26.1: "
        "the lock's build requirement cmake>=3.26.1"]
    assert plan.toolchain_problems(needs, ()) == [
        "cmake not found: the lock's build requirement cmake>=3.26.1 needs cmake>=3.26.1"]
    from sample_lock import package

    locked = dataclasses.replace(lock, packages=tuple(sorted((*lock.packages, package("cmake", "4.1.2")),
                                                             key=lambda p: p.name)))
    tools = plan.build_tools(locked, system)
    assert [t.describe() for t in tools] == ["cmake 4.1.2 (locked wheel)"]
    assert plan.toolchain_problems(needs, tools) == []


def test_machine_toolchain_reads_the_real_tools() -> None:
    tools = {t.name: t for t in machine.toolchain(os.environ)}
    gcc = subprocess.run(["gcc", "-dumpfullversion", "-dumpversion"], capture_output=True, text=True).stdout.strip()
    assert tools["gcc"].version == gcc and tools["g++"].path
    cmake = subprocess.run(["cmake", "--version"], capture_output=True, text=True).stdout.split()[2]
    assert tools["cmake"].version == cmake
    assert tools["ninja"].version and tools["rustc"].version and tools["cargo"].version
    cc = machine.toolchain({**os.environ, "CC": "/nonexistent/cc"})
    assert next(t for t in cc if t.name == "gcc").path is None  # $CC wins, as it does for the build


# ---------------------------------------------------------------- install on the test world


@pytest.fixture(scope="module")
def world_lock(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> ResolvedLock:
    root = tmp_path_factory.mktemp("machine")
    cache = root / "cache"
    lock, path = resolve_world_lock(world, root / "dev.lock.toml", cache)
    return ResolvedLock(lock=lock, path=path, cache=cache, root=root)


def _refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 7, (result.returncode, result.stderr[-2000:])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], (word, errors[0])


@pytest.mark.slow
def test_install_refuses_an_uncovered_gpu_before_anything(world_lock: ResolvedLock, tmp_path: Path) -> None:
    base = world_lock.lock
    lock = write_variant(base, tmp_path / "cuda.lock.toml",
                         build=dataclasses.replace(base.build, target_device="cuda", cuda_archs=("12.0",)))
    env = _nvidia_smi(tmp_path, L40S_QUERY, BLACKWELL_BANNER)
    result = cli(*install_args(lock, tmp_path / "opt"), cache=world_lock.cache, env=env)
    _refused(result, "NVIDIA L40S (sm_89)", "--arch 8.9")
    assert not (tmp_path / "opt" / "vllm").exists()
    assert not list((tmp_path / "opt" / "vllm.generations").glob("*/venv"))  # refused before the environment

    # this machine's nvcc is 13.0: its cubins need a CUDA 13 driver, more than the cu128 torch does
    old_driver = _nvidia_smi(tmp_path, BLACKWELL_QUERY, L40S_BANNER)
    _refused(cli(*install_args(lock, tmp_path / "opt"), cache=world_lock.cache, env=old_driver),
             "driver 550.54.15 supports CUDA up to 12.4, but nvcc 13.0 compiles vLLM's kernels", "580.65.06 or newer")

    # a build host building for other machines' GPUs: past the GPU check (this fake-torch CUDA
    # build then fails later, at the cubin check, which is not what this test is about)
    skipped = cli(*install_args(lock, tmp_path / "opt"), "--skip-gpu-check", cache=world_lock.cache, env=env)
    assert "GPU check skipped (--skip-gpu-check)" in skipped.stderr
    assert "sm_89" not in skipped.stderr and skipped.returncode != 7, skipped.stderr[-2000:]


@pytest.mark.slow
def test_install_refuses_gcc_below_a_real_vllm_floor(world_lock: ResolvedLock, tmp_path: Path) -> None:
    """This machine has gcc 12.2: a lock building vLLM's CPU extension on x86_64 (as a real CPU lock
    of any recent vLLM does) or a 0.30+ CUDA lock's DeepSelect is refused, with the numbers."""
    base = world_lock.lock
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    assert gcc.startswith("12."), "this test expects the machine's gcc 12"
    cpu = write_variant(base, tmp_path / "cpu.lock.toml", external_sources=(*base.external_sources, ONEDNN))
    refused = cli(*install_args(cpu, tmp_path / "opt"), cache=world_lock.cache)
    _refused(refused, f"gcc {gcc} (/usr/bin/gcc) is below what the lock needs, gcc>=12.3", f"g++ {gcc}")
    # refused at preflight: no half generation (a folder holding only its log) stays behind; the
    # log moved to the cache's logs folder, as the console says
    generations = tmp_path / "opt" / "vllm.generations"
    assert [p.name for p in generations.iterdir() if p.is_dir()] == [], list(generations.iterdir())
    moved = refused.stderr.split("nothing was installed; the log is now ", 1)[1].splitlines()[0]
    assert Path(moved).parent == world_lock.cache / "logs" and "==> preflight" in Path(moved).read_text()
    cuda_lock = write_variant(base, tmp_path / "cuda.lock.toml", external_sources=(*base.external_sources, DEEPSELECT),
                              build=dataclasses.replace(base.build, target_device="cuda", cuda_archs=("12.0",)))
    _refused(cli(*install_args(cuda_lock, tmp_path / "opt"), cache=world_lock.cache), "gcc>=13", "issue 58158")


@pytest.mark.slow
def test_empty_lock_installs_verifies_and_tests_without_its_cli(world: TestWorld, world_lock: ResolvedLock,
                                                                tmp_path: Path) -> None:
    """An `empty` build's `vllm --version` cannot start ("Failed to infer device type", as in
    vLLM; the test world's CLI does the same): install, verify and test read the version from
    `import vllm` and the installed distribution instead."""
    root = world_lock.root
    lock, path = resolve_world_lock(world, root / "empty.lock.toml", world_lock.cache, target_device="empty",
                                    name="empty")
    assert lock.external_sources == ()
    opt = tmp_path / "opt"
    result = cli(*install_args(path, opt), cache=world_lock.cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "import vllm + importlib.metadata: " in result.stderr
    cli_run = subprocess.run([str(opt / "vllm" / "bin" / "vllm"), "--version"], capture_output=True, text=True)
    assert cli_run.returncode != 0 and "Failed to infer device type" in cli_run.stderr
    receipt = json.loads((Path(os.readlink(opt / "vllm")).parent / "receipt.json").read_text())
    assert receipt["version-checked-by"] == "import vllm + importlib.metadata"
    assert f"g{lock.vllm.commit[:9]}" in receipt["vllm-version"]
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()
    assert receipt["toolchain"]["gcc"]["version"] == gcc and receipt["toolchain"]["rustc"]["version"]

    verified = cli("verify", str(path), "--venv", str(opt / "vllm"), cache=world_lock.cache)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    tested = cli("test", str(path), "--venv", str(opt / "vllm"), cache=world_lock.cache)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "vllm version" in tested.stdout + tested.stderr

    # verify reads the installed version (no CLI) and checks that it names the locked commit
    metadata = next((Path(os.readlink(opt / "vllm")) / "lib").glob("python3*/site-packages/vllm-*.dist-info/METADATA"))
    text = metadata.read_text()
    metadata.write_text(text.replace(f"Version: {receipt['vllm-version']}", "Version: 0.1.dev1+g0badc0de0"))
    drifted = cli("verify", str(path), "--venv", str(opt / "vllm"), cache=world_lock.cache)
    assert drifted.returncode == 1
    assert ("the built vLLM's version is 0.1.dev1+g0badc0de0, which does not name the locked commit "
            f"{lock.vllm.commit[:9]}") in drifted.stdout
    metadata.write_text(text)


# ---------------------------------------------------------------- the Phoenix script


PCT_STUB = """#!/bin/bash
# pct stand-in: records each call; the container's nvidia-smi prints the files beside this script
# (real nvidia-smi output: there is no GPU here); any other command in the container fails.
here=$(dirname "$0")
echo "$*" >>"$here/pct-calls.log"
[ "$1" = exec ] || exit 0
shift 3
case "$*" in
  "nvidia-smi --query-gpu=compute_cap,name --format=csv,noheader") cat "$here/query.txt" ;;
  "nvidia-smi --query-gpu=name,driver_version --format=csv,noheader") echo "GPU, 0" ;;
  "nvidia-smi") cat "$here/banner.txt" ;;
  *) exit 1 ;;
esac
"""


def _phoenix(tmp_path: Path, archs: tuple[str, ...], query: str, banner: str
             ) -> tuple[subprocess.CompletedProcess[str], str, list[str]]:
    import sys

    from vllm_lock import codec

    sys.path.insert(0, str(Path(__file__).parent / "phoenix"))
    import harness as ph

    host = ph.make_host(tmp_path / "host", ph.phoenix_config("801"))
    base = make_lock(name="stable")
    lock = dataclasses.replace(base, build=dataclasses.replace(base.build, target_device="cuda", cuda_archs=archs))
    (host.lock_dir / "stable.lock.toml").write_text(codec.dumps(lock))
    stub = host.root / "bin" / "pct"
    stub.write_text(PCT_STUB)
    (host.root / "bin" / "query.txt").write_text(query)
    (host.root / "bin" / "banner.txt").write_text(banner)
    result = host.run("801")
    calls = (host.root / "bin" / "pct-calls.log").read_text().splitlines()
    return result, host.log(), calls


def test_phoenix_refuses_an_uncovered_gpu_before_anything_is_pushed(tmp_path: Path) -> None:
    result, log, calls = _phoenix(tmp_path, ("12.0",), L40S_QUERY, BLACKWELL_BANNER)
    assert result.returncode == 7, log
    assert ("Refusing lock 'stable' for CTID 801: its archs 12.0 do not cover NVIDIA L40S (sm_89),NVIDIA L40S "
            "(sm_89); the build would fail at run time (no kernel image). Resolve a lock with --arch 8.9 ") in log
    assert not [c for c in calls if c.startswith("push") or "dpkg" in c or "apt" in c], calls


def test_phoenix_refuses_a_driver_older_than_the_lock(tmp_path: Path) -> None:
    result, log, calls = _phoenix(tmp_path, ("12.0",), BLACKWELL_QUERY, L40S_BANNER)
    assert result.returncode == 7, log
    assert "the driver supports CUDA up to 12.4, the lock's torch is cu128: install a driver for CUDA >= 12.8" in log
    assert not [c for c in calls if c.startswith("push")]


@pytest.mark.parametrize(("archs", "query", "banner", "words"), [
    (("9.0",), H200_QUERY, H200_BANNER, "every GPU in CTID 801 is covered"),
    (("8.0", "12.0"), L40S_QUERY, BLACKWELL_BANNER, "every GPU in CTID 801 is covered"),  # 8.9 runs sm_80
    (("12.0",), NO_DEVICES, "", "No GPU visible in CTID 801 (No devices were found)"),
])
def test_phoenix_goes_on_when_the_gpus_fit_or_none_is_visible(tmp_path: Path, archs: tuple[str, ...], query: str,
                                                                banner: str, words: str) -> None:
    result, log, calls = _phoenix(tmp_path, archs, query, banner)
    assert words in log
    assert result.returncode != 7 and any("dpkg-query" in c for c in calls), log  # went on to the packages


# ---------------------------------------------------------------- a hostile tool on PATH


def _tool(tmp_path: Path, name: str, script: str) -> dict[str, str]:
    """An executable `name` on PATH running `script` (sh)."""
    bin_dir = tmp_path / "hostile-bin"
    bin_dir.mkdir(exist_ok=True)
    tool = bin_dir / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_a_tool_printing_bytes_that_are_not_utf8_is_read_with_replacements(tmp_path: Path) -> None:
    env = _tool(tmp_path, "nvidia-smi", "printf '9.0, NVIDIA \\377H200\\n'\n")
    got = machine.gpus(env)
    assert got.gpus == (cuda.Gpu(name="NVIDIA \ufffdH200", capability=(9, 0)),)
    env = _tool(tmp_path, "gcc", "printf '12.2.0\\n'; printf '\\376\\377' >&2\n")
    gcc = next(t for t in machine.toolchain({**env, "CC": "gcc"}) if t.name == "gcc")
    assert (gcc.path, gcc.version) == (str(tmp_path / "hostile-bin" / "gcc"), "12.2.0")


def test_captured_output_is_bounded_to_its_first_and_last_part(tmp_path: Path) -> None:
    size = 64 << 20  # 16 times what is kept
    env = _tool(tmp_path, "nvidia-smi", f"head -c {size} /dev/zero | tr '\\0' y\necho; echo 'the last line'\n")
    ran = proc.run(["nvidia-smi"], env=env, timeout=60)
    assert ran.ok and len(ran.output) < 2 * proc.CAPTURE_KEEP_BYTES + 100
    assert ran.output.startswith("yyyy") and ran.output.endswith("the last line\n")
    assert f"[... {size + 1 + 14 - 2 * proc.CAPTURE_KEEP_BYTES} bytes of output left out ...]" in ran.output
    got = machine.gpus(env)  # the whole preflight reading: one refusal, a bounded message
    assert got.error is not None and got.error.startswith("unreadable nvidia-smi line 'yyyy") and len(got.error) < 300


def test_a_tool_that_never_stops_printing_meets_its_timeout(tmp_path: Path) -> None:
    env = _tool(tmp_path, "nvidia-smi", "exec yes\n")
    ran = proc.run(["nvidia-smi"], env=env, timeout=3)
    assert ran.timed_out and not ran.ok and len(ran.output) < 2 * proc.CAPTURE_KEEP_BYTES + 100


def test_a_compute_capability_of_five_thousand_digits_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    digits = "9" * 5000
    assert cuda.parse_gpu_query(f"{digits}.0, NVIDIA H200\n") == ((), [f"{digits}.0, NVIDIA H200"])
    assert cuda.parse_gpu_query("100.0, X\n")[1] == ["100.0, X"]  # three digits: not a capability
    assert cuda.parse_driver(f"CUDA Version: {digits}.0")[1] is None
    env = _tool(tmp_path, "nvidia-smi", f'case "$*" in *--query-gpu*) echo "{digits}.0, NVIDIA H200";; '
                                        f'*) echo "CUDA Version: 13.0";; esac\n')
    assert machine.gpus(env).error == f"unreadable nvidia-smi line '{digits[:200]}'"


def test_streamed_output_keeps_lines_of_bounded_length(tmp_path: Path) -> None:
    env = _tool(tmp_path, "gcc", "head -c 1048576 /dev/zero | tr '\\0' y; printf '\\377 end\\n'\n")
    seen: list[str] = []
    ran = proc.run(["gcc"], env=env, on_line=seen.append, timeout=60)
    assert ran.ok and max(map(len, seen)) == proc.MAX_LINE_CHARS and seen[-1].endswith("\ufffd end")
    assert sum(map(len, seen)) == (1 << 20) + 5
