"""The build machine's own facts: glibc, CPUs, memory, disk, the compilers and build tools
(nvcc, gcc/g++, cmake, ninja, rustc/cargo) and the GPUs with their driver (nvidia-smi).
What they mean for a lock is decided in plan.py and cuda.py; this module only asks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vllm_lock import cuda as cuda_rules
from vllm_lock import plan
from vllm_lock.shell import proc

TOOL_TIMEOUT = 60


def glibc() -> tuple[int, int] | None:
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        return None
    if not text.startswith("glibc "):
        return None
    major, minor = text.split()[1].split(".")[:2]
    return int(major), int(minor)


def cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def mem_available() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * plan.GIB


def free_disk(where: Path) -> int:
    probe = where
    while not probe.exists():
        probe = probe.parent
    return shutil.disk_usage(probe).free


def find_nvcc(env: Mapping[str, str]) -> str | None:
    """$CUDA_HOME/bin/nvcc when CUDA_HOME is set (authoritative, as for torch's cpp_extension),
    else /usr/local/cuda/bin/nvcc, else nvcc on PATH."""
    if env.get("CUDA_HOME"):
        nvcc = Path(env["CUDA_HOME"]) / "bin" / "nvcc"
        return str(nvcc) if nvcc.is_file() and os.access(nvcc, os.X_OK) else None
    for candidate in (Path("/usr/local/cuda/bin/nvcc"),):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("nvcc", path=env.get("PATH"))


def _run(argv: list[str], env: Mapping[str, str] | None = None) -> proc.Completed | None:
    """None when the program cannot be started at all."""
    try:
        return proc.run(argv, env=env, timeout=TOOL_TIMEOUT)
    except OSError:
        return None


def nvcc_version(nvcc: str) -> tuple[int, int] | None:
    result = _run([nvcc, "--version"])
    return plan.parse_nvcc_version(result.output) if result is not None and result.ok else None


# name -> (how to find it: an environment variable that names it first, else PATH), version argv
_TOOLS: tuple[tuple[str, str | None, str, tuple[str, ...]], ...] = (
    ("gcc", "CC", "gcc", ("-dumpfullversion", "-dumpversion")),
    ("g++", "CXX", "g++", ("-dumpfullversion", "-dumpversion")),
    ("cmake", None, "cmake", ("--version",)),
    ("ninja", None, "ninja", ("--version",)),
    ("rustc", "RUSTC", "rustc", ("--version",)),
    ("cargo", "CARGO", "cargo", ("--version",)),
)


def _which(program: str, env: Mapping[str, str]) -> str | None:
    if os.sep in program:
        return program if os.path.isfile(program) and os.access(program, os.X_OK) else None
    return shutil.which(program, path=env.get("PATH"))


def toolchain(env: Mapping[str, str]) -> tuple[plan.Tool, ...]:
    """gcc/g++ ($CC/$CXX first, as CMake and setuptools take them), cmake, ninja, rustc and cargo
    ($RUSTC/$CARGO first) and nvcc, each with the version it prints; a tool not found is listed
    with path None. The seven are asked at once (each is a process that mostly waits to start)."""
    def probe(name: str, variable: str | None, default: str, version_args: tuple[str, ...]) -> plan.Tool:
        chosen = (env.get(variable) or "").split()[0] if variable and (env.get(variable) or "").strip() else default
        path = _which(chosen, env)
        version = None
        if path is not None:
            result = _run([path, *version_args], env)
            version = plan.parse_tool_version(result.output) if result is not None and result.ok else None
        return plan.Tool(name=name, path=path, version=version)

    def probe_nvcc() -> plan.Tool:
        nvcc = find_nvcc(env)
        found = nvcc_version(nvcc) if nvcc else None
        return plan.Tool(name="nvcc", path=nvcc, version=f"{found[0]}.{found[1]}" if found else None)

    with ThreadPoolExecutor(max_workers=len(_TOOLS) + 1) as pool:
        asked = [pool.submit(probe, *tool) for tool in _TOOLS] + [pool.submit(probe_nvcc)]
        return tuple(answer.result() for answer in asked)


def tool_in(venv_bin: Path, name: str) -> plan.Tool | None:
    """A tool a locked wheel put into the environment (cmake, ninja), as it reports itself."""
    path = venv_bin / name
    if not path.is_file():
        return None
    result = _run([str(path), "--version"])
    version = plan.parse_tool_version(result.output) if result is not None and result.ok else None
    return plan.Tool(name=name, path=str(path), version=version, origin="machine")


def gpus(env: Mapping[str, str]) -> cuda_rules.GpuReport:
    """Each GPU's compute capability and the driver's CUDA version, from nvidia-smi on PATH."""
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is None:
        return cuda_rules.gpu_report(None, None)
    query = _run([smi, "--query-gpu=compute_cap,name", "--format=csv,noheader"], env)
    if query is None:
        return cuda_rules.GpuReport(error=f"{smi} cannot be run")
    banner = _run([smi], env) if query.ok else None
    return cuda_rules.gpu_report(
        (query.returncode, query.output), (banner.returncode, banner.output) if banner is not None else None
    )
