"""The uv binary pinned by our own dependency (uv==X.Y.Z): discovery, environment, argv."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import uv as uv_package

from vllm_lock.errors import InstallError, UnreachableError
from vllm_lock.shell import http, proc


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def compile_deadline() -> float:
    """Total seconds for one `uv pip compile` (VLLM_LOCK_UV_DEADLINE). uv's own
    UV_HTTP_TIMEOUT is per read: a server that drips a byte at a time never trips it."""
    return _seconds("VLLM_LOCK_UV_DEADLINE", 900)


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
            "UV_HTTP_TIMEOUT": str(int(_seconds("VLLM_LOCK_UV_HTTP_TIMEOUT", 30))),
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


def run_compile(argv: Sequence[str], *, cwd: Path, cache: Path, log: IO[str] | None, indexes: Sequence[str]) -> proc.Completed:
    """`uv pip compile` within compile_deadline(); past it, UnreachableError naming the index
    that does not answer a HEAD within a few seconds (every index uv was given, when all do)."""
    bound = compile_deadline()
    result = proc.run(argv, cwd=cwd, env=uv_env(cache), timeout=bound, log=log)
    if result.timed_out:
        silent = [index for index in indexes if not _answers(index)] or list(indexes)
        raise UnreachableError(
            f"uv did not finish resolving within {bound:g} s (VLLM_LOCK_UV_DEADLINE): "
            f"no answer in time from {' or '.join(silent)}"
        )
    return result


def _answers(index: str) -> bool:
    try:
        http.head(index.rstrip("/") + "/", deadline=min(http.bounds().page_deadline, 10))
    except http.NotFound:
        return True
    except Exception:  # anything but an answer
        return False
    return True
