"""The CUDA binary tools run on a build: cuobjdump (found next to nvcc, else on PATH) lists the
cubins compiled into vLLM's libraries, so that install can check the archs the lock asks for."""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

from vllm_lock import plan
from vllm_lock.errors import InstallError
from vllm_lock.shell import proc
from vllm_lock.shell.machine import find_nvcc


def find_cuobjdump(env: Mapping[str, str]) -> str | None:
    nvcc = find_nvcc(env)
    if nvcc:
        sibling = Path(nvcc).with_name("cuobjdump")
        if sibling.is_file():
            return str(sibling)
    return shutil.which("cuobjdump", path=env.get("PATH"))


def cubins(libraries: list[Path], env: Mapping[str, str]) -> set[str]:
    """sm_XX names of the cubins in the libraries (cuobjdump --list-elf)."""
    tool = find_cuobjdump(env)
    if tool is None:
        raise InstallError("cuobjdump not found next to nvcc or on PATH: cannot check the compiled archs")
    found: set[str] = set()
    for library in libraries:
        result = proc.run([tool, "--list-elf", str(library)], timeout=300)
        found |= plan.cubin_archs(result.output)
    return found


def compiled_libraries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.so") if "site-packages" not in p.parts or "vllm" in p.parts)
