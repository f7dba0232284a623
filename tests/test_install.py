"""install / rollback end to end on the test world: real uv, real git, real builds, real SIGKILL."""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from install_support import (
    CLI,
    build_info,
    cli,
    install_args,
    resolve_world_lock,
    vllm_version,
    write_variant,
)

from vllm_lock.model import Lock, Target
from vllm_lock.shell.git import mirror_path
from vllm_lock_testworld import TestWorld

pytestmark = pytest.mark.slow


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstalledBase:
    """The module's lock (and its file), cache, install root <opt>, temporary root, and first install."""

    lock: Lock
    path: Path
    cache: Path
    opt: Path
    root: Path
    first: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def base(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> InstalledBase:
    """One resolved lock, one cache, and an installed generation at <opt>/vllm for the module."""
    root = tmp_path_factory.mktemp("install")
    cache = root / "cache"
    lock, path = resolve_world_lock(world, root / "dev.lock.toml", cache)
    opt = root / "opt"
    result = cli(*install_args(path, opt), cache=cache)
    assert result.returncode == 0, result.stderr
    return InstalledBase(lock=lock, path=path, cache=cache, opt=opt, root=root, first=result)


def _link(opt: Path) -> str:
    return os.readlink(opt / "vllm")


def test_install_builds_the_locked_commit(base: InstalledBase) -> None:
    lock, opt = base.lock, base.opt
    version = vllm_version(opt)
    assert f"g{lock.vllm.commit[:9]}" in version
    assert (opt / "vllm").is_symlink() and (opt / "vllm_repo").is_symlink()
    gen = Path(_link(opt)).parent
    assert gen.parent == opt / "vllm.generations"
    receipt = json.loads((gen / "receipt.json").read_text())
    assert receipt["vllm-commit"] == lock.vllm.commit
    assert receipt["vllm-version"] == version
    assert receipt["build-env"]["SOURCE_DATE_EPOCH"]
    assert {"preflight", "packages", "build", "verify"} <= set(receipt["timings"])
    stderr = base.first.stderr
    assert "full log: " in stderr and "MAX_JOBS=" in stderr
    assert f") into generation {gen}\n" in stderr  # the directory, as the user finds it
    assert "building 'vllm._C' extension" in stderr  # the backend's output streams live
    assert "\x1b[" not in stderr  # not a terminal: plain lines, no live display
    subprocess.run([str(opt / "vllm" / "bin" / "python"), "-c", "import vllm._C"], check=True)
    assert receipt["external-sources"] == {s.name: s.commit for s in lock.external_sources}
    used = build_info(opt)["external_sources"]
    # every external source came from the staged tree, none was fetched by the build
    assert {name: u["from"] for name, u in used.items()} == dict.fromkeys(receipt["external-sources"], "override")
    assert used["cutlass"]["source_id"] == "cutlass v4.2.1"
    assert used["vllm-flash-attn"]["submodule_source_id"] == "cutlass v4.2.1"  # its git submodule, staged too
    assert not (opt / "vllm_repo" / ".deps").exists()
    cutlass = next(s for s in lock.external_sources if s.name == "cutlass")
    mirror = mirror_path(base.cache, cutlass.repository)
    assert (mirror / "shallow").is_file()  # the locked commit alone was fetched, not the history
    clean = cli("verify", str(base.path), "--venv", str(opt / "vllm"), cache=base.cache)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_rerun_is_a_noop(base: InstalledBase) -> None:
    # How fast it is (well under 2 s) is measured in bench/bench_install.py, not here.
    before = _link(base.opt)
    gen = Path(before).parent
    logs, receipt_stat = sorted((gen / "logs").iterdir()), (gen / "receipt.json").stat()
    result = cli(*install_args(base.path, base.opt), cache=base.cache)
    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout
    assert _link(base.opt) == before
    assert sorted((gen / "logs").iterdir()) == logs  # no step ran, so no new install log
    assert (gen / "receipt.json").stat().st_mtime_ns == receipt_stat.st_mtime_ns


def _run_in_terminal(argv: list[str], env: dict[str, str], timeout: float = 300) -> tuple[int, str]:
    """argv with stdin/stdout/stderr on a real pseudo-terminal; (exit code, everything it drew)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(argv, stdin=terminal, stdout=terminal, stderr=terminal, env=env, close_fds=True)
    os.close(terminal)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the child closed its side
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(controller)
    return proc.wait(timeout=30), b"".join(chunks).decode(errors="replace")


def test_on_a_terminal_a_live_display_and_the_full_log_still_kept(base: InstalledBase, tmp_path: Path) -> None:
    opt = tmp_path / "opt"
    env = dict(os.environ, VLLM_LOCK_CACHE=str(base.cache), TERM="xterm-256color", COLUMNS="100")
    code, drawn = _run_in_terminal([*CLI, *install_args(base.path, opt)], env)
    assert code == 0, drawn[-3000:]
    assert "\x1b[?25l" in drawn  # the live area hides the cursor while it redraws
    assert "==> build" in drawn and "    build: " in drawn  # step lines stay on screen
    assert "    | building" not in drawn  # output lines go to the live area, not scroll by
    log = next((Path(os.readlink(opt / "vllm")).parent / "logs").glob("install-*.log")).read_text()
    assert log.count("building 'vllm._C' extension") == 1  # every output line, once
    assert "==> build" in log and "    build: " in log


def test_installs_nothing_that_resolve_already_cached(base: InstalledBase, world: TestWorld) -> None:
    gen = Path(_link(base.opt)).parent
    log = next((gen / "logs").glob("install-*.log")).read_text()
    nightly = sum(len(p.wheels) for p in base.lock.packages if p.source == "torch")
    wheels = sum(len(p.wheels) for p in base.lock.packages)
    assert f"{wheels - nightly} downloaded, {nightly} from the cache" in log


def _fails_and_keeps(base: InstalledBase, result: subprocess.CompletedProcess[str], code: int,
                     words: tuple[str, ...]) -> None:
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr[-2000:])
    assert f"g{base.lock.vllm.commit[:9]}" in vllm_version(base.opt)  # nothing lost


def test_wrong_platform(base: InstalledBase, tmp_path: Path) -> None:
    lock = write_variant(base.lock, tmp_path / "arm.lock.toml",
                         target=Target(python="3.11", platform="aarch64-manylinux_2_28"))
    before = _link(base.opt)
    result = cli(*install_args(lock, base.opt), cache=base.cache)
    _fails_and_keeps(base, result, 7, ("aarch64-manylinux_2_28",))
    assert _link(base.opt) == before


def test_python_unavailable(base: InstalledBase, tmp_path: Path) -> None:
    lock = write_variant(base.lock, tmp_path / "py.lock.toml",
                         target=Target(python="3.99", platform="x86_64-manylinux_2_28"))
    result = cli(*install_args(lock, base.opt), cache=base.cache)
    _fails_and_keeps(base, result, 7, ("Python 3.99 is not available",))


def _cuda_lock(base: InstalledBase, path: Path) -> Path:
    import dataclasses

    build = dataclasses.replace(base.lock.build, target_device="cuda", cuda_archs=("12.0",))
    return write_variant(base.lock, path, build=build)


def test_nvcc_missing(base: InstalledBase, tmp_path: Path) -> None:
    lock = _cuda_lock(base, tmp_path / "cuda.lock.toml")
    env = {"CUDA_HOME": str(tmp_path / "no-cuda"), "PATH": "/usr/bin:/bin"}
    result = cli(*install_args(lock, base.opt), cache=base.cache, env=env)
    _fails_and_keeps(base, result, 7, ("nvcc not found",))  # CUDA_HOME set: only it counts


def test_nvcc_too_old(base: InstalledBase, tmp_path: Path) -> None:
    lock = _cuda_lock(base, tmp_path / "cuda.lock.toml")
    cuda_home = tmp_path / "cuda-12.4"
    (cuda_home / "bin").mkdir(parents=True)
    nvcc = cuda_home / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\necho 'Cuda compilation tools, release 12.4, V12.4.131'\n")
    nvcc.chmod(0o755)
    result = cli(*install_args(lock, base.opt), cache=base.cache, env={"CUDA_HOME": str(cuda_home)})
    _fails_and_keeps(base, result, 7, ("nvcc 12.4", "arch 12.0", "12.8"))


def test_not_enough_disk(base: InstalledBase) -> None:
    result = cli(*install_args(base.path, base.opt.parent / "other-opt"), cache=base.cache,
                 env={"VLLM_LOCK_MIN_FREE_DISK": str(1 << 60)})
    _fails_and_keeps(base, result, 7, ("not enough free disk",))


def test_commit_gone_from_remote(base: InstalledBase, tmp_path: Path) -> None:
    import dataclasses

    vllm = dataclasses.replace(base.lock.vllm, commit="0123456789abcdef0123456789abcdef01234567")
    lock = write_variant(base.lock, tmp_path / "gone.lock.toml", vllm=vllm)
    result = cli(*install_args(lock, base.opt), cache=tmp_path / "fresh-cache")
    _fails_and_keeps(base, result, 5, ("0123456789abcdef0123456789abcdef01234567",))


def test_external_commit_gone_from_remote(base: InstalledBase, tmp_path: Path) -> None:
    import dataclasses

    gone = "0123456789abcdef0123456789abcdef01234567"
    sources = tuple(dataclasses.replace(s, commit=gone) if s.name == "cutlass" else s
                    for s in base.lock.external_sources)
    lock = write_variant(base.lock, tmp_path / "gone.lock.toml", external_sources=sources)
    result = cli(*install_args(lock, base.opt), cache=base.cache)
    _fails_and_keeps(base, result, 5, ("external source cutlass", gone))


def test_a_cmake_source_missing_from_the_lock_fails_instead_of_being_fetched(base: InstalledBase,
                                                                             tmp_path: Path) -> None:
    sources = tuple(s for s in base.lock.external_sources if s.name != "flashmla")
    lock = write_variant(base.lock, tmp_path / "partial.lock.toml", external_sources=sources)
    result = cli(*install_args(lock, base.opt), cache=base.cache)
    _fails_and_keeps(base, result, 6, ("building vLLM failed", "FETCHCONTENT_FULLY_DISCONNECTED is ON", "flashmla"))


def test_locked_external_commit_is_built_after_its_tag_moved(tmp_path: Path) -> None:
    with TestWorld.create(tmp_path / "world") as own:
        lock, path = resolve_world_lock(own, tmp_path / "dev.lock.toml", tmp_path / "cache")
        locked = next(s.commit for s in lock.external_sources if s.name == "cutlass")
        assert own.move_external_tag("cutlass", "v4.2.1") != locked
        result = cli(*install_args(path, tmp_path / "opt"), cache=tmp_path / "cache")
        assert result.returncode == 0, result.stderr
        assert build_info(tmp_path / "opt")["external_sources"]["cutlass"]["source_id"] == "cutlass v4.2.1"
        clean = cli("verify", str(path), "--venv", str(tmp_path / "opt" / "vllm"), cache=tmp_path / "cache")
        assert clean.returncode == 0, clean.stdout
        # a staged tree that no longer matches the lock is drift
        gen = Path(os.readlink(tmp_path / "opt" / "vllm")).parent
        (gen / "external" / "cutlass.commit").write_text("f" * 40 + "\n")
        drift = cli("verify", str(path), "--venv", str(tmp_path / "opt" / "vllm"), cache=tmp_path / "cache")
        assert drift.returncode == 1 and "external source cutlass: staged ffffffffffff" in drift.stdout


def test_failing_build_shows_log_tail_and_keeps_current(base: InstalledBase, world: TestWorld, tmp_path: Path) -> None:
    _, lock = resolve_world_lock(world, tmp_path / "broken.lock.toml", base.cache,
                                 build_env=(("CMAKE_BUILD_TYPE", "Debug"),))  # another identity
    before = _link(base.opt)
    # a lock cannot carry CFLAGS (not an allowed build setting); the caller's environment reaches the build
    result = cli(*install_args(lock, base.opt), cache=base.cache, env={"CFLAGS": "-include /nonexistent/boom.h"})
    _fails_and_keeps(base, result, 6, ("building vLLM failed", "boom.h", "full log: "))
    log = result.stderr.split("full log: ")[-1].splitlines()[0].strip()
    assert Path(log).is_file()
    assert _link(base.opt) == before


def test_swapped_artifact_is_refused(tmp_path: Path) -> None:
    with TestWorld.create(tmp_path / "world") as own:
        lock, path = resolve_world_lock(own, tmp_path / "dev.lock.toml", tmp_path / "cache")
        torch_package = lock.package("torch")
        assert torch_package is not None
        (torch,) = torch_package.wheels
        own.swap_nightly_file(torch.filename)
        result = cli(*install_args(path, tmp_path / "opt"), cache=tmp_path / "fresh-cache")
    assert result.returncode == 8, result.stderr
    assert torch.filename in result.stderr and "refusing" in result.stderr
    assert not (tmp_path / "opt" / "vllm").exists()


def test_other_lock_builds_beside_and_rollback(base: InstalledBase, world: TestWorld, tmp_path: Path) -> None:
    opt = base.opt
    first = _link(opt)
    _, other = resolve_world_lock(world, tmp_path / "other.lock.toml", base.cache,
                                  torch_date="2026-11-05", name="other")
    result = cli(*install_args(other, opt), cache=base.cache)
    assert result.returncode == 0, result.stderr
    second = _link(opt)
    assert second != first and Path(first).is_dir()
    site = next((opt / "vllm" / "lib").glob("python3*/site-packages"))
    assert any(p.name.startswith("torch-2.10.0.dev20261105") for p in site.iterdir())
    back = cli("rollback", "--venv", str(opt / "vllm"), "--src", str(opt / "vllm_repo"), cache=base.cache)
    assert back.returncode == 0, back.stderr
    assert _link(opt) == first
    assert f"g{base.lock.vllm.commit[:9]}" in vllm_version(opt)
    # installing the other lock again only switches (its generation is complete)
    again = cli(*install_args(other, opt), cache=base.cache)
    assert again.returncode == 0 and "switched" in again.stdout, again.stderr
    assert _link(opt) == second
    back = cli("rollback", "--venv", str(opt / "vllm"), "--src", str(opt / "vllm_repo"), cache=base.cache)
    assert _link(opt) == first


def test_real_directory_at_venv_is_refused(base: InstalledBase, tmp_path: Path) -> None:
    opt = tmp_path / "phoenix"
    (opt / "vllm" / "bin").mkdir(parents=True)
    (opt / "vllm" / "bin" / "vllm").write_text("old")
    result = cli(*install_args(base.path, opt), cache=base.cache)
    assert result.returncode == 7 and "real directory" in result.stderr
    assert (opt / "vllm" / "bin" / "vllm").read_text() == "old"


def test_each_step_s_commands_are_logged_inside_its_step(base: InstalledBase) -> None:
    """A step run beside another (the venv beside the wheels, the source beside the uv sync) is
    logged as one block with its commands and their output, not scattered under the other's."""
    log = Path(re.findall(r"^full log: (.+)$", base.first.stderr, re.MULTILINE)[0])
    step: str | None = None
    commands: list[tuple[str | None, str]] = []
    for line in log.read_text(encoding="utf-8").splitlines():
        if line.startswith("==> "):
            assert step is None, f"{line!r} inside step {step!r}"
            step = line[4:]
        elif step is not None and re.fullmatch(rf"    {re.escape(step)}: [0-9.]+s", line):
            step = None
        elif line.startswith("$ "):
            commands.append((step, line))
    venvs = [s for s, command in commands if " venv --clear " in command]
    syncs = [s for s, command in commands if " pip sync " in command]
    assert venvs == ["environment"] and syncs == ["packages"], commands


# A python3.11 (a binary, as preflight wants one on PATH) that, while SLOW exists, writes its pid
# and sleeps when uv runs it (uv venv asks the interpreter about itself), then is the real one.
_SLOW_PYTHON = r"""
#include <stdio.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char path[64], comm[64] = {0};
    snprintf(path, sizeof path, "/proc/%d/comm", (int)getppid());
    FILE *parent = fopen(path, "r");
    if (parent) { fgets(comm, sizeof comm, parent); fclose(parent); }
    if (strncmp(comm, "uv", 2) == 0 && access(SLOW, F_OK) == 0) {
        FILE *pid = fopen(PIDS, "a");
        fprintf(pid, "%d\n", (int)getpid());
        fclose(pid);
        sleep(120);
    }
    (void)argc;
    execv(REAL, argv);
    return 127;
}
"""


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ctrl_c_while_a_beside_step_runs_leaves_no_program_of_it_behind(base: InstalledBase, tmp_path: Path) -> None:
    """Ctrl-C reaches vllm-lock alone (each program leads a session of its own): the programs of a
    step running beside the main thread's (here the venv's uv) are killed with it, at once, not left
    to finish into the generation after vllm-lock has gone (where a rerun would meet them)."""
    folder, slow, pids = tmp_path / "bin", tmp_path / "slow", tmp_path / "pids"
    folder.mkdir()
    (tmp_path / "python.c").write_text(_SLOW_PYTHON)
    real = os.path.realpath(sys.executable)
    subprocess.run(["gcc", "-O1", "-o", str(folder / "python3.11"), f'-DSLOW="{slow}"', f'-DPIDS="{pids}"',
                    f'-DREAL="{real}"', str(tmp_path / "python.c")], check=True)
    slow.touch()
    opt = tmp_path / "opt"
    env = dict(os.environ, VLLM_LOCK_CACHE=str(base.cache), PYTHONUNBUFFERED="1",
               PATH=f"{folder}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.Popen([*CLI, *install_args(base.path, opt)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("    wheels: "):
            deadline = time.monotonic() + 30
            while not pids.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            break
    seen.extend(proc.stdout)
    started = time.monotonic()
    assert proc.wait(timeout=60) == 130, "".join(seen)
    assert time.monotonic() - started < 30, "".join(seen)  # it did not wait for the sleeping program
    assert [line for line in seen if line.startswith("error:")] == ["error: interrupted\n"], "".join(seen)
    sleeper = int(pids.read_text().split()[0])
    deadline = time.monotonic() + 5
    while _running(sleeper) and time.monotonic() < deadline:
        time.sleep(0.05)
    if _running(sleeper):
        os.killpg(os.getpgid(sleeper), signal.SIGKILL)  # not left sleeping in the suite
        pytest.fail("the venv's program outlived vllm-lock")
    slow.unlink()
    again = subprocess.run([*CLI, *install_args(base.path, opt)], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming an unfinished generation" in again.stderr


STEPS = ["preflight", "wheels", "environment", "packages", "source", "external sources", "strip", "build", "verify",
         "receipt", "switch"]


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_then_rerun_completes(base: InstalledBase, tmp_path: Path, step: str) -> None:
    opt = tmp_path / "opt"
    env = dict(os.environ, VLLM_LOCK_CACHE=str(base.cache), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([*CLI, *install_args(base.path, opt)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"==> {step}"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    # The kill lands a moment after the step's line: the last two steps (a file write, a rename)
    # may have finished by then, the earlier ones cannot have reached the switch.
    before_receipt = STEPS.index(step) < STEPS.index("receipt")
    if before_receipt:
        assert not (opt / "vllm").exists()  # nothing switched
    result = cli(*install_args(base.path, opt), cache=base.cache)
    assert result.returncode == 0, result.stderr
    if before_receipt:
        assert "resuming an unfinished generation" in result.stderr
    assert f"g{base.lock.vllm.commit[:9]}" in vllm_version(opt)
    clean = cli("verify", str(base.path), "--venv", str(opt / "vllm"), cache=base.cache)
    assert clean.returncode == 0, clean.stdout


def test_no_editable_installs_a_wheel(base: InstalledBase, tmp_path: Path) -> None:
    opt = tmp_path / "opt"
    result = cli(*install_args(base.path, opt), "--no-editable", cache=base.cache)
    assert result.returncode == 0, result.stderr
    gen = Path(_link(opt)).parent
    assert gen.name.endswith("-wheel") and list((gen / "dist").glob("vllm-*.whl"))
    site = next((opt / "vllm" / "lib").glob("python3*/site-packages"))
    assert list((site / "vllm").glob("_C*.so"))


def test_damaged_generation_is_rebuilt_not_skipped(base: InstalledBase, tmp_path: Path) -> None:
    opt = tmp_path / "opt"
    assert cli(*install_args(base.path, opt), cache=base.cache).returncode == 0
    (opt / "vllm" / "bin" / "vllm").unlink()
    result = cli(*install_args(base.path, opt), cache=base.cache)
    assert result.returncode == 0, result.stderr
    assert "nothing to do" not in result.stderr
    assert f"g{base.lock.vllm.commit[:9]}" in vllm_version(opt)
