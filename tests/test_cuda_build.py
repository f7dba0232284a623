"""The CUDA path, end to end without a GPU: the test world's vLLM builds its kernels through CMake
and nvcc (TORCH_CUDA_ARCH_LIST -> one -gencode per arch, as vLLM does), and install's verify step
lists the cubins with cuobjdump (the nvidia-cuda-cuobjdump wheel of the test extra).

Needs nvcc >= 12.8 ($CUDA_HOME or /usr/local/cuda) and cmake. Without them these tests skip,
unless VLLM_LOCK_REQUIRE_CUDA=1 (set by scripts/test.sh, the README's test command): then that is
a failure. Running the code still needs a GPU machine; building and checking it does not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.repo import ARCH_DROP_BRANCH

VLLM_LOCK = str(Path(sys.executable).with_name("vllm-lock"))
REQUIRED = os.environ.get("VLLM_LOCK_REQUIRE_CUDA") == "1"
NVCC = Path(os.environ.get("CUDA_HOME") or "/usr/local/cuda") / "bin" / "nvcc"

pytestmark = pytest.mark.slow


def _cuobjdump_dir() -> Path | None:
    found = sorted(Path(sysconfig.get_paths()["purelib"]).glob("nvidia/*/bin/cuobjdump"))
    return found[0].parent if found else None


def _missing() -> str | None:
    if not NVCC.is_file():
        return f"no nvcc at {NVCC}"
    if shutil.which("cmake") is None:
        return "cmake is not on PATH"
    if _cuobjdump_dir() is None:
        return "cuobjdump missing (pip install nvidia-cuda-cuobjdump, part of the test extra)"
    return None


@pytest.fixture(scope="module")
def cuda_env() -> dict[str, str]:
    if reason := _missing():
        if REQUIRED:
            pytest.fail(f"the CUDA build tests are required (VLLM_LOCK_REQUIRE_CUDA=1): {reason}")
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    env["PATH"] = f"{_cuobjdump_dir()}:{env['PATH']}"
    env.pop("CUDA_HOME", None)
    return env


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([VLLM_LOCK, *args], env=env, capture_output=True, text=True, timeout=600)


def resolve_cuda(world: TestWorld, out: Path, env: dict[str, str], ref: str = "main") -> Path:
    result = run("resolve", "--repo", world.repo_url, "--ref", ref, "--torch-index", world.torch_nightly_index,
                 "--index", world.general_index, "--python", "3.11", "--platform", "x86_64-manylinux_2_28",
                 "--arch", "9.0", "--arch", "12.0", "--target-device", "cuda", "-o", str(out), env=env)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def cuda_lock(world: TestWorld, cuda_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return resolve_cuda(world, tmp_path_factory.mktemp("cuda-lock") / "cuda.lock.toml", cuda_env)


def install(lock: Path, opt: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run("install", str(lock), "--venv", str(opt / "vllm"), "--src", str(opt / "vllm_repo"), env=env)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def test_lock_for_two_archs_installs_and_verifies(cuda_lock: Path, cuda_env: dict[str, str], tmp_path: Path) -> None:
    result = install(cuda_lock, tmp_path, cuda_env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH_CUDA_ARCH_LIST=9.0;12.0" in result.stderr
    assert "    cubins: sm_120, sm_90" in result.stderr  # the verify step, through cuobjdump
    receipts = list((tmp_path / "vllm.generations").glob("*/receipt.json"))
    assert len(receipts) == 1 and json.loads(receipts[0].read_text())["cubins"] == ["sm_120", "sm_90"]
    python = tmp_path / "vllm" / "bin" / "python"
    probe = "import json, vllm, vllm._C; print(vllm._C.answer(), vllm._C.__file__)"
    answer, library = subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                                     check=True).stdout.split()
    assert answer == "42"  # the CMake-built CUDA extension imports (host code; no GPU needed)
    info = json.loads(Path(library).with_name("_build_info.json").read_text())
    assert info["extension"] == "cmake-cuda" and info["TORCH_CUDA_ARCH_LIST"] == "9.0;12.0"
    cuobjdump_dir = _cuobjdump_dir()
    assert cuobjdump_dir is not None  # _missing() skipped the module otherwise
    listing = subprocess.run([str(cuobjdump_dir / "cuobjdump"), "--list-elf", library], capture_output=True,
                             text=True, check=True).stdout
    assert "sm_90" in listing and "sm_120" in listing


def test_a_build_that_lacks_an_arch_fails_verify(world: TestWorld, cuda_env: dict[str, str], tmp_path: Path) -> None:
    """The branch's CMake supports no 12.0 any more: the build succeeds, its library has only sm_90."""
    lock = resolve_cuda(world, tmp_path / "drop.lock.toml", cuda_env, ref=ARCH_DROP_BRANCH)
    result = install(lock, tmp_path / "opt", cuda_env)
    assert result.returncode == 6, result.stderr[-3000:]
    assert error_lines(result.stderr) == ["error: the built libraries lack code for sm_120 (found: ['sm_90'])"]
    assert "==> build" in result.stderr and "    build: " in result.stderr  # it did build
    assert not (tmp_path / "opt" / "vllm").exists()  # never switched to


def test_too_old_nvcc_is_refused_at_preflight(cuda_lock: Path, cuda_env: dict[str, str], tmp_path: Path) -> None:
    """A CUDA_HOME whose nvcc is the real one but reports release 12.6 (sm_120 needs 12.8): refused
    before anything is built (without the check the build would go through: the compiler works)."""
    cuda_home = tmp_path / "cuda-12.6"
    (cuda_home / "bin").mkdir(parents=True)
    wrapper = cuda_home / "bin" / "nvcc"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then "{NVCC}" --version | sed "s/release [0-9.]*,/release 12.6,/"; exit 0; fi\n'
        f'exec "{NVCC}" "$@"\n'
    )
    wrapper.chmod(0o755)
    version = subprocess.run([str(wrapper), "--version"], capture_output=True, text=True, check=True).stdout
    assert "release 12.6," in version
    result = install(cuda_lock, tmp_path / "opt", {**cuda_env, "CUDA_HOME": str(cuda_home)})
    assert result.returncode == 7, result.stderr[-3000:]
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: nvcc 12.6 ({wrapper}) cannot build arch 12.0: sm_120 needs CUDA >= 12.8")
    assert "==> build" not in result.stderr and "==> environment" not in result.stderr
    assert not (tmp_path / "opt" / "vllm").exists()
