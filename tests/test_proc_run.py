"""proc.run, the runner of every tool but git: captured (stdout then stderr, bounded) or streamed
line by line (merged in order). Each tool leads a session of its own, so that its deadline, an
interrupt and kill_own_sessions end it with everything it started; a daemon it leaves behind on
its pipes delays a captured tool's answer by READER_GRACE_S at most. Real processes throughout."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vllm_lock.shell import proc

MODES = ["captured", "streamed"]


def _holder(marker: Path, end: str) -> list[str]:
    """A tool that starts a grandchild holding its stdout and stderr (its pid in `marker`), then
    ends as `end` says (`wait`: waits for it; `exit 3`: leaves it behind)."""
    script = marker.with_name("tool.sh")
    script.write_text(f"#!/bin/sh\necho started\nsleep 300 &\n"
                      f"echo $! > {marker}.part\nmv {marker}.part {marker}\n{end}\n")
    script.chmod(0o755)
    return [str(script)]


def _run(mode: str, argv: list[str], **kwargs: object) -> proc.Completed:
    if mode == "streamed":
        kwargs["on_line"] = lambda line: None
    return proc.run(argv, **kwargs)  # type: ignore[arg-type]


def _in_thread(mode: str, argv: list[str], wait_s: float, **kwargs: object) -> tuple[proc.Completed, float]:
    """The run and its seconds, from a thread given wait_s to finish (a runner stuck on a held
    pipe fails the test instead of hanging it)."""
    results: list[tuple[proc.Completed, float]] = []

    def _timed() -> None:
        started = time.monotonic()
        done = _run(mode, argv, **kwargs)
        results.append((done, time.monotonic() - started))

    runner = threading.Thread(target=_timed, daemon=True)
    runner.start()
    runner.join(timeout=wait_s)
    assert results, f"proc.run ({mode}) did not return within {wait_s} s"
    return results[0]


def _pid_in(marker: Path) -> int:
    deadline = time.monotonic() + 10
    while not marker.exists():
        assert time.monotonic() < deadline, "the tool did not start its grandchild"
        time.sleep(0.02)
    return int(marker.read_text())


def _ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state == b"Z":
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def grandchild(tmp_path: Path) -> Iterator[Path]:
    """The marker file of _holder's grandchild, killed after the test whatever its outcome."""
    marker = tmp_path / "grandchild.pid"
    yield marker
    if marker.exists():
        try:
            os.kill(int(marker.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_captured_output_is_stdout_then_stderr_and_streamed_output_is_in_order() -> None:
    argv = ["sh", "-c", "echo err >&2; echo out; printf 'cr\\rlast'"]
    assert proc.run(argv, timeout=30).output == "out\ncr\nlast" + "err\n"
    seen: list[str] = []
    streamed = proc.run(argv, timeout=30, on_line=seen.append)
    assert seen == ["err", "out", "cr", "last"] and streamed.output == "err\nout\ncr\nlast" and streamed.ok


@pytest.mark.parametrize("mode", MODES)
def test_a_tool_past_its_deadline_is_killed_with_what_it_started(grandchild: Path, mode: str) -> None:
    """The grandchild holds the pipe: killing only the tool left a captured run waiting
    READER_GRACE_S twice and a streamed one until the grandchild ended, and left it running."""
    done, took = _in_thread(mode, _holder(grandchild, "wait"), 20, timeout=1)
    assert done.timed_out and not done.ok and "started" in done.output
    assert took < 3, took
    assert _ends_within(_pid_in(grandchild), 5), "the grandchild outlived the deadline"


def test_a_captured_tool_that_leaves_a_daemon_on_its_pipes_is_answered_at_its_exit(grandchild: Path) -> None:
    """Its exit status and output come back READER_GRACE_S after its exit, not at the deadline,
    and the daemon it started is left alone (sccache --start-server's server must outlive it)."""
    done, took = _in_thread("captured", _holder(grandchild, "exit 3"), 60, timeout=30)
    assert (done.returncode, done.timed_out, done.output) == (3, False, "started\n")
    assert proc.READER_GRACE_S <= took < proc.READER_GRACE_S + 2, took
    assert not _ends_within(_pid_in(grandchild), 0.3), "the daemon was killed"


@pytest.mark.parametrize("mode", MODES)
def test_an_interrupted_caller_takes_the_tool_and_what_it_started_with_it(grandchild: Path, mode: str) -> None:
    argv = _holder(grandchild, "wait")

    def _interrupt() -> None:
        _pid_in(grandchild)
        os.kill(os.getpid(), signal.SIGINT)

    # Python's own SIGINT handler, whatever the suite inherited (a job started with `&` by a
    # non-interactive shell ignores SIGINT, and Python then installs none)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Thread(target=_interrupt, daemon=True).start()
        started = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            _run(mode, argv, timeout=60)
        assert time.monotonic() - started < 10
    finally:
        signal.signal(signal.SIGINT, previous)
    assert _ends_within(_pid_in(grandchild), 5), "the grandchild outlived the interrupt"


@pytest.mark.parametrize("mode", MODES)
def test_kill_own_sessions_reaches_every_tool(grandchild: Path, mode: str) -> None:
    """What the CLI's SIGTERM/SIGHUP handler calls: a tool (not only git) and its grandchild
    are killed, and its runner returns at once."""
    def interrupt() -> None:
        _pid_in(grandchild)  # the tool has started its grandchild
        proc.kill_own_sessions()

    threading.Thread(target=interrupt, daemon=True).start()
    done, took = _in_thread(mode, _holder(grandchild, "wait"), 20, timeout=60)
    assert done.returncode == -signal.SIGKILL and not done.ok and took < 10
    assert _ends_within(_pid_in(grandchild), 5)


@pytest.mark.parametrize("mode", MODES)
def test_stdin_data_is_fed_and_a_tool_that_never_reads_it_meets_its_deadline(mode: str) -> None:
    assert _run(mode, ["cat"], stdin_data="line one\nline two\n", timeout=30).output.rstrip("\n") == \
        "line one\nline two"
    done, took = _in_thread(mode, ["sleep", "8"], 20, stdin_data="x" * (4 << 20), timeout=1)
    assert done.timed_out and took < 4, took
