"""The uv binary pinned by our own dependency (uv==X.Y.Z): discovery, environment, every uv
command's argv and its run (compile for resolve; Python lookup and install, venv, sync, the
vLLM build's and wheel install's for install), uv's failures turned into our errors."""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import uv as uv_package

from vllm_lock.errors import InstallError, OutputError, PreflightError, UnreachableError
from vllm_lock.mirrors import Mirrors
from vllm_lock.shell import files, limits, mirroring, proc


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
    interpreter: str | None = None,
) -> list[str]:
    """`uv pip compile` of a synthetic project to a PEP 751 pylock for a target, not the host.
    With `interpreter`, uv runs that Python instead of discovering one for `python`: wheels only,
    and the target is set by --python-version/--python-platform (a bare 3.12 means 3.12.0 either
    way), so it changes nothing but the time uv spends looking (~0.5 s through pyenv's shims)."""
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
    if interpreter is not None:
        argv += ["--python", interpreter]
    return argv


def run_compile(
    argv: Sequence[str], *, cwd: Path, cache: Path, log: IO[str] | None, indexes: Sequence[str]
) -> proc.Completed:
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


# ---------------------------------------------------------------- Python


def find_python(version: str, cache: Path) -> str | None:
    """The interpreter for `version` that uv accepts (system or uv-managed), without downloading;
    None when uv finds none. The answer is an interpreter binary, never a launcher: `uv venv` made
    from it takes ~10 ms, from `--python X.Y` or a pyenv shim ~130-500 ms (uv runs the shim's bash
    scripts to learn where they lead). A `pythonX.Y` on PATH that is a binary is taken as it is
    (`uv venv --python X.Y` finds it too); a script there (a shim) is resolved by uv once, and the
    answer kept under <cache>/python while that script and the binary it named stay as they were.
    Only without either is uv asked each time. Any other failure of uv (it cannot create its
    cache, say) is reported as itself, not as a missing Python."""
    on_path = shutil.which(f"python{version}")
    if on_path is not None and _is_binary(real := os.path.realpath(on_path)):
        return real
    memo = cache / "python" / f"{version}.json"
    if on_path is not None and (known := _remembered(memo, on_path)) is not None:
        return known
    result = proc.run([uv_bin(), "python", "find", version], env=uv_env(cache), timeout=60)
    if result.ok and result.output.strip():
        found = result.output.strip().splitlines()[-1]
        if on_path is not None and _is_binary(real := os.path.realpath(found)):
            _remember(memo, on_path, real)
            return real
        return found
    if result.ok or "no interpreter found" in result.output.lower():
        return None
    raise PreflightError(f"`uv python find {version}` failed: {_uv_error(result.output)}")


def forget_python(version: str, cache: Path) -> None:
    """The remembered interpreter for `version` dropped: the next lookup asks uv again."""
    (cache / "python" / f"{version}.json").unlink(missing_ok=True)


def venv_python_version(venv: Path) -> str | None:
    """The Python version a venv was made with, as uv wrote it in pyvenv.cfg (`version_info`)."""
    try:
        lines = (venv / "pyvenv.cfg").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.strip() == "version_info":
            return value.strip()
    return None


def _is_binary(path: str) -> bool:
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False  # a FIFO's open would wait for a writer
        with open(path, "rb") as handle:
            return handle.read(4) == b"\x7fELF" and os.access(path, os.X_OK)
    except OSError:
        return False


def _identity(path: str) -> list[int]:
    info = os.stat(path)
    return [info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns]


def _remembered(memo: Path, launcher: str) -> str | None:
    """The binary uv resolved `launcher` to, if neither has changed since (else None)."""
    try:
        record = json.loads(memo.read_text(encoding="utf-8"))
        binary = record["binary"]
        if (record["launcher"] == launcher and record["launcher-stat"] == _identity(launcher)
                and isinstance(binary, str) and record["binary-stat"] == _identity(binary) and _is_binary(binary)):
            return binary
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _remember(memo: Path, launcher: str, binary: str) -> None:
    record = {"launcher": launcher, "launcher-stat": _identity(launcher), "binary": binary,
              "binary-stat": _identity(binary)}
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        files.write_atomically(memo, json.dumps(record, indent=1) + "\n")
    except OSError:
        pass  # a memo not written costs the next install one `uv python find`


def _uv_error(output: str) -> str:
    """uv's error and its causes on one line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.startswith("error:")), 0)
    return "; ".join(line.removeprefix("error:").strip() for line in lines[start:]) or "?"


def install_python(version: str, cache: Path, log: IO[str], on_line: Callable[[str], None]) -> None:
    env = uv_env(cache, extra={"UV_PYTHON_DOWNLOADS": "automatic"})
    result = proc.run([uv_bin(), "python", "install", version], env=env, timeout=900, log=log, on_line=on_line)
    if not result.ok:
        raise InstallError(f"cannot install Python {version} with uv: {result.tail(1)}")


# ---------------------------------------------------------------- environments and the build


def venv_argv(python: str, venv: Path) -> list[str]:
    return [uv_bin(), "venv", "--clear", "--no-config", "--python", python, str(venv)]


def sync_argv(venv: Path, pylock_path: Path) -> list[str]:
    return [
        uv_bin(), "pip", "sync", "--preview-features", "pylock",
        "--python", str(venv / "bin" / "python"), "--offline", "--no-index", str(pylock_path),
    ]


def editable_argv(python: str, src: Path) -> list[str]:
    return [
        uv_bin(), "pip", "install", "-v", "--python", python,
        "--no-build-isolation", "--no-deps", "--offline", "--no-index", "--reinstall-package", "vllm",
        "-e", str(src),
    ]


def wheel_argv(python: str, src: Path, out: Path) -> list[str]:
    return [
        uv_bin(), "build", "-v", "--wheel", "--python", python, "--no-build-isolation",
        "--offline", "--no-index", "--out-dir", str(out), str(src),
    ]


def install_wheel_argv(python: str, wheel: Path) -> list[str]:
    return [
        uv_bin(), "pip", "install", "--python", python, "--no-deps", "--offline",
        "--no-index", "--reinstall-package", "vllm", str(wheel),
    ]


def run_uv(
    argv: list[str], *, env: Mapping[str, str], what: str, log: IO[str], on_line: Callable[[str], None],
    timeout: float = 600,
) -> None:
    result = proc.run(argv, env=env, log=log, on_line=on_line, timeout=timeout)
    if not result.ok:
        detail = _uv_error(result.output)
        if any(f"(os error {code})" in result.output for code in _CANNOT_WRITE):
            raise OutputError(f"uv could not write while {what}: {detail}")
        raise InstallError(f"uv failed while {what}: {detail}")


# uv reports an OS error as "(os error N)": these mean a full or read-only disk, not a bad lock
_CANNOT_WRITE = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
