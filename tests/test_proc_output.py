"""proc.output_of, git's runner: stdout and stderr apart and whole, and a deadline that ends the
program and everything it started (a grandchild holding the pipe must not keep us waiting)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vllm_lock.shell import proc


def test_stdout_and_stderr_come_back_apart_and_whole(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value: nothing decoded or cut
    script = tmp_path / "emit.py"
    script.write_text("import sys\nsys.stdout.buffer.write(bytes(range(256)) * 4096)\n"
                      "sys.stderr.write('fatal: told\\n')\nsys.exit(3)\n")
    done = proc.output_of([sys.executable, str(script)], cwd=tmp_path, env=os.environ, timeout=60)
    assert done.returncode == 3
    assert done.stdout == payload
    assert done.stderr == b"fatal: told\n"


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """Where a test's grandchild writes its pid: killed afterwards, whatever the outcome."""
    path = tmp_path / "grandchild.pid"
    yield path
    if path.exists() and _alive(int(path.read_text())):
        os.kill(int(path.read_text()), signal.SIGKILL)


def test_the_deadline_kills_the_program_and_what_it_started(tmp_path: Path, marker: Path) -> None:
    script = tmp_path / "stall.sh"
    # the grandchild inherits stdout and outlives its parent's exit unless its group is killed
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {marker}\nwait\n")
    script.chmod(0o755)
    results: list[proc.Output] = []
    runner = threading.Thread(target=lambda: results.append(
        proc.output_of([str(script)], cwd=tmp_path, env=os.environ, timeout=1.0)), daemon=True)
    runner.start()
    runner.join(timeout=20)  # the grandchild's pipe would keep a runner that killed only its child waiting
    assert results, "output_of did not return within 20 s of a 1 s deadline"
    assert results[0].returncode is None
    assert _ends(int(marker.read_text()))


def test_a_program_that_exits_leaving_its_pipe_held_past_the_deadline_has_no_answer(tmp_path: Path,
                                                                                   marker: Path) -> None:
    """Unlike a captured tool (answered READER_GRACE_S after its exit), git's answer must be whole:
    its exit with a grandchild still holding the pipe is no answer, and the grandchild is killed."""
    script = tmp_path / "leave.sh"
    script.write_text(f"#!/bin/sh\necho early\n(sleep 0.3; echo late; exec sleep 300) &\necho $! > {marker}\n")
    script.chmod(0o755)
    started = time.monotonic()
    done = proc.output_of([str(script)], cwd=tmp_path, env=os.environ, timeout=2.0)
    assert time.monotonic() - started < 4
    assert (done.returncode, done.stdout) == (None, b"early\nlate\n")
    assert _ends(int(marker.read_text()))


def test_stderr_is_kept_to_its_last_part(tmp_path: Path) -> None:
    script = tmp_path / "loud.py"
    script.write_text("import sys\nsys.stderr.write('x' * (3 << 20) + 'fatal: the last line\\n')\n")
    done = proc.output_of([sys.executable, str(script)], cwd=tmp_path, env=os.environ, timeout=60)
    assert done.returncode == 0 and len(done.stderr) == proc.STDERR_KEEP_BYTES
    assert done.stderr.endswith(b"xxfatal: the last line\n")


def _ends(pid: int) -> bool:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    return not _alive(pid)


def _alive(pid: int) -> bool:
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")
