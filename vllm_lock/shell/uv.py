"""The uv binary pinned by our own dependency (uv==X.Y.Z): discovery, environment, argv."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import uv as uv_package

from vllm_lock.errors import InstallError


@functools.cache
def uv_bin() -> str:
    return str(uv_package.find_uv_bin())


@functools.cache
def uv_version() -> str:
    out = subprocess.run([uv_bin(), "--version"], capture_output=True, text=True, check=True).stdout
    return out.split()[1]


def uv_env(cache: Path, *, offline: bool = False, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """uv's environment: our cache, no user/system config, the system trust store, no
    managed-python downloads unless asked, never a prompt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UV_") and k not in ("PIP_CONSTRAINT",)}
    env.update(
        {
            "UV_CACHE_DIR": str(cache / "uv"),
            "UV_NO_CONFIG": "1",
            "UV_SYSTEM_CERTS": "1",
            "UV_NO_PROGRESS": "1",
            "UV_HTTP_TIMEOUT": "30",
            "UV_HTTP_RETRIES": "3",
            "UV_PYTHON_DOWNLOADS": "manual",
        }
    )
    if offline:
        env["UV_OFFLINE"] = "1"
    env.update(extra or {})
    return env


def compile_argv(
    *,
    project: Path,
    output: Path,
    python: str,
    platform: str,
    default_index: str,
    only_binary: bool = True,
) -> list[str]:
    """`uv pip compile` of a synthetic project to a PEP 751 pylock for a target, not the host."""
    argv = [
        uv_bin(),
        "pip",
        "compile",
        str(project),
        "--format",
        "pylock.toml",
        "--output-file",
        str(output),
        "--python-version",
        python,
        "--python-platform",
        platform,
        "--default-index",
        default_index,
        "--index-strategy",
        "first-index",
        "--no-header",
        "--quiet",
    ]
    if only_binary:
        argv += ["--only-binary", ":all:"]
    return argv


def check(completed_ok: bool, what: str, tail: str) -> None:
    if not completed_ok:
        raise InstallError(f"uv failed while {what}: {tail.strip().splitlines()[-1] if tail.strip() else '?'}")


def python_argv(python: str) -> Sequence[str]:
    return (uv_bin(), "python", "find", python)
