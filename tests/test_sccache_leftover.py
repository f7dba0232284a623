"""A build killed while its sccache server runs (SCCACHE_IDLE_TIMEOUT=0: that server would stay up
for good) leaves a record in its work folder; the next build there stops that server and removes its
private folder before starting its own. Real sccache, a real SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from vllm_lock.compiler_cache import parse_compiler_cache
from vllm_lock.shell import sccache

KILLED = """
import os, signal, sys
from pathlib import Path
from vllm_lock.compiler_cache import parse_compiler_cache
from vllm_lock.shell import sccache
work, objects = Path(sys.argv[1]), Path(sys.argv[2])
session = sccache.running(sccache.find_sccache(os.environ), parse_compiler_cache(str(objects)),
                          basedir=work, work=work, env=dict(os.environ))
started = session.__enter__()
print(started.build_env["SCCACHE_SERVER_UDS"], flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # no finally of ours runs: the server is left behind
"""


def _servers_on(socket: str) -> list[int]:
    """The sccache processes started with this socket (their environment says so). Asking the
    socket itself would not do: a client that finds no server starts one."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if b"sccache" in command and f"SCCACHE_SERVER_UDS={socket}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_a_killed_builds_server_is_stopped_by_the_next_build(tmp_path: Path) -> None:
    binary = sccache.find_sccache(os.environ)
    work, objects = tmp_path / "gen" / "sccache", tmp_path / "objects"
    killed = subprocess.run([sys.executable, "-c", KILLED, str(work), str(objects)], capture_output=True, text=True,
                            timeout=120)
    assert killed.returncode == -9, killed.stderr
    socket = killed.stdout.strip()
    assert Path(socket).is_socket()
    assert _servers_on(socket)  # left behind, still running
    assert (work / "server-socket").read_text().strip() == socket

    try:
        with sccache.running(binary, parse_compiler_cache(str(objects)), basedir=work, work=work,
                             env=dict(os.environ)) as session:
            assert session.build_env["SCCACHE_SERVER_UDS"] != socket
            assert not Path(socket).parent.exists()  # the old server's private folder removed
            assert not _servers_on(socket)  # and the old server stopped
        assert not (work / "server-socket").exists()  # a build that ends stops its own and forgets it
    finally:
        for pid in _servers_on(socket):  # what a failure here would leave running
            os.kill(pid, signal.SIGKILL)
