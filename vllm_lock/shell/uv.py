"""The uv binary pinned by our own dependency (uv==X.Y.Z): discovery, environment, argv."""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import uv as uv_package

from vllm_lock.errors import InstallError, UnreachableError
from vllm_lock.mirrors import Mirrors
from vllm_lock.shell import limits, mirroring, proc


def compile_deadline() -> float:
    """Total seconds for one `uv pip compile` (VLLM_LOCK_UV_DEADLINE). uv's own
    UV_HTTP_TIMEOUT is per read: a server that drips a byte at a time never trips it."""
    return limits.setting("VLLM_LOCK_UV_DEADLINE", 900)


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
            "UV_HTTP_TIMEOUT": str(int(limits.setting("VLLM_LOCK_UV_HTTP_TIMEOUT", 30))),
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
    mirrors = mirroring.active()
    if mirrors:
        argv = _through_mirrors(argv, mirrors)
    result = proc.run(argv, cwd=cwd, env=uv_env(cache), timeout=bound, log=log)
    if mirrors and result.ok:
        output = Path(argv[argv.index("--output-file") + 1])
        output.write_text(mirrors.restore(output.read_text(encoding="utf-8")), encoding="utf-8")
    if mirrors:
        result = dataclasses.replace(result, output=mirrors.restore(result.output))
    if result.timed_out:
        silent = [index for index in indexes if not _answers(index)] or list(indexes)
        raise UnreachableError(
            f"uv did not finish resolving within {bound:g} s (VLLM_LOCK_UV_DEADLINE): "
            f"no answer in time from {' or '.join(silent)}"
        )
    return result


def _mirrored_index(url: str, mirrors: Mirrors) -> str:
    fetched = mirrors.rewrite(url)
    if not fetched.lower().startswith(("http://", "https://")):
        raise UnreachableError(f"refusing index {mirrors.describe(url)!r}: only http and https indexes are fetched")
    return fetched


def _through_mirrors(argv: Sequence[str], mirrors: Mirrors) -> list[str]:
    """`uv pip compile` argv with its indexes (the --default-index and the project's
    [[tool.uv.index]] URLs) replaced by their mirrors; the project file is rewritten in place
    (it is resolve's temporary synthetic project). uv's output is read back by `restore`."""
    import tomlkit  # here: the commands that only run uv (install, --version) need neither it nor http

    out = list(argv)
    at = out.index("--default-index") + 1
    out[at] = _mirrored_index(out[at], mirrors)
    project = Path(out[out.index("compile") + 1])
    doc = tomlkit.parse(project.read_text(encoding="utf-8"))
    indexes = doc.get("tool", {}).get("uv", {}).get("index", [])
    for index in indexes:
        index["url"] = _mirrored_index(str(index["url"]), mirrors)
    project.write_text(tomlkit.dumps(doc), encoding="utf-8")
    return out


def _answers(index: str) -> bool:
    from vllm_lock.shell import http

    try:
        http.head(index.rstrip("/") + "/", deadline=min(http.bounds().page_deadline, 10))
    except http.NotFound:
        return True
    except Exception:  # anything but an answer
        return False
    return True
