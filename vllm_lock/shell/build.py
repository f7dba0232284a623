"""The vLLM build itself: vLLM built from its checkout with the locked environment (no build
isolation, nothing from an index) through uv, its live output filtered, and the built vLLM asked
for its version. uv's argv: uv.py; the checkout: git.py; staged wheels: staging.py; cubins:
cuda_tools.py; the machine's facts: machine.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

from vllm_lock.errors import BuildError
from vllm_lock.shell import proc
from vllm_lock.shell import uv as uv_shell


def build_vllm(
    *, python: str, src: Path, env: Mapping[str, str], editable: bool, dist: Path, log: IO[str],
    on_line: Callable[[str], None], log_path: Path, install: bool = True, timeout: float = 6 * 3600,
) -> Path | None:
    """Build vLLM from src with the given environment, no build isolation, nothing from an index.
    Editable: `uv pip install -e`. Otherwise a wheel into dist (`uv build`), then installed
    when `install`. Returns the wheel for non-editable builds. BuildError shows the log's tail."""
    if editable:
        argv = uv_shell.editable_argv(python, src)
    else:
        shutil.rmtree(dist, ignore_errors=True)
        dist.mkdir(parents=True)
        argv = uv_shell.wheel_argv(python, src, dist)
    result = proc.run(argv, env=env, cwd=src, log=log, on_line=on_line, timeout=timeout)
    if not result.ok:
        tail = "\n".join("    " + line for line in result.output.splitlines()[-15:])
        raise BuildError(
            f"building vLLM failed (exit {result.returncode}); last lines:\n{tail}\n  full log: {log_path}"
        )
    if editable:
        return None
    wheels = sorted(dist.glob("*.whl"))
    if not wheels:
        raise BuildError(f"the build produced no wheel in {dist}; full log: {log_path}")
    if install:
        uv_shell.run_uv(uv_shell.install_wheel_argv(python, wheels[0]), env=env, what="installing the vLLM wheel",
                        log=log, on_line=on_line)
    return wheels[0]


def build_filter(reporter_line: Callable[[str], None]) -> Callable[[str], None]:
    """Live build output without uv's own debug chatter (it stays in the full log)."""

    backend = False

    def show(line: str) -> None:
        nonlocal backend
        if line.startswith("DEBUG "):
            if line.startswith("DEBUG Calling `"):
                backend = True
            elif backend:
                reporter_line(line[len("DEBUG "):])
            return
        backend = False
        reporter_line(line)

    return show


# ---------------------------------------------------------------- the built vLLM


def vllm_version(venv_bin: Path) -> tuple[bool, str]:
    result = proc.run([str(venv_bin / "vllm"), "--version"], timeout=300)
    return result.ok, result.output.strip().splitlines()[-1] if result.output.strip() else ""


# `import vllm`, then the installed distribution's version: what `vllm --version` prints, for a
# build (target `empty`) whose CLI cannot start ("Failed to infer device type").
_IMPORT_VERSION = "import importlib.metadata, vllm; print(importlib.metadata.version('vllm'))"


def imported_vllm_version(python: Path) -> tuple[bool, str]:
    """(ok, version) from `import vllm` and importlib.metadata in the environment's Python;
    (False, the error's last line) when the import fails."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = proc.run([str(python), "-c", _IMPORT_VERSION], env=env, cwd=python.parent, timeout=300)
    lines = result.output.strip().splitlines()
    return result.ok, lines[-1] if lines else ""
