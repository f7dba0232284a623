"""Helpers shared by the installer tests (no tests here): resolve a lock from the test world once,
write variants of it, run the real CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from vllm_lock import codec
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.model import Lock
from vllm_lock.progress import QUIET
from vllm_lock_testworld import TestWorld

CLI = [sys.executable, "-m", "vllm_lock.cli"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ResolvedLock:
    """A lock of the test world resolved once for a module's tests: the lock and its file, the
    vllm-lock cache it was resolved with, and the module's temporary root."""

    lock: Lock
    path: Path
    cache: Path
    root: Path


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstalledLock:
    """A lock of the test world installed once for a module's tests: the lock and its file, the
    vllm-lock cache it was resolved and installed with, the install's root (venv opt/vllm, source
    opt/vllm_repo) and the venv's site-packages."""

    lock: Lock
    path: Path
    cache: Path
    opt: Path
    site: Path


def resolve_world_lock(world: TestWorld, out: Path, cache: Path, **overrides: Any) -> tuple[Lock, Path]:
    """A lock of the test world for this host (Python 3.11) with a target device the fake torch
    can build (cpu: a plain C extension); `overrides` replace fields of the ResolveRequest."""
    request = ResolveRequest(
        repo=world.repo_url,
        torch_index=world.torch_nightly_index,
        general_index=world.general_index,
        python="3.11",
        platform="x86_64-manylinux_2_28",  # this host's glibc (2.36) is older than the default's
        torch_date=world.latest_consistent_date.isoformat(),
        target_device="cpu",
        output=out,
        cache=cache,
        name="dev",
    )
    lock, path, _ = resolve(dataclasses.replace(request, **overrides), QUIET)
    return lock, path


def write_variant(lock: Lock, path: Path, **changes: Any) -> Path:
    path.write_text(codec.dumps(dataclasses.replace(lock, **changes)), encoding="utf-8")
    return path


def cli(*args: str, cache: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, VLLM_LOCK_CACHE=str(cache))
    full.update(env or {})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=full, timeout=timeout)


def install_args(lock: Path, opt: Path) -> list[str]:
    return ["install", str(lock), "--venv", str(opt / "vllm"), "--src", str(opt / "vllm_repo")]


def vllm_version(opt: Path) -> str:
    out = subprocess.run([str(opt / "vllm" / "bin" / "vllm"), "--version"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def build_info(opt: Path) -> dict[str, Any]:
    """What the installed test-world vLLM recorded about its own build (vllm/_build_info.json)."""
    code = "import importlib.resources as r; print(r.files('vllm').joinpath('_build_info.json').read_text())"
    out = subprocess.run([str(opt / "vllm" / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    info: dict[str, Any] = json.loads(out.stdout)
    return info
