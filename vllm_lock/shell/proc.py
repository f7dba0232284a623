"""The one place subprocesses run: logged argv, timeout, live streaming, a kept tail.

Every program runs leading a session of its own (`_session`), so that it and everything it
started (its process group) are killed as one: at its deadline, when the caller is interrupted,
and by kill_own_sessions when a signal ends vllm-lock (a signal sent to vllm-lock's process
group, a terminal's Ctrl-C or Ctrl-Z, no longer reaches them itself). Captured output (`output_of`, and `run`
without a log or on_line) is read by one selector loop (`_pump`) into bounded buffers (`_Kept`)."""

from __future__ import annotations

import collections
import io
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# What a run keeps of a tool's output, whatever it prints (a fake nvidia-smi running `yes` for
# its whole timeout): captured, the first and last 4 MiB of stdout and of stderr; streamed, every
# line goes to the log file and the last `tail_lines` lines (each cut at 64 Ki characters) are kept.
CAPTURE_KEEP_BYTES = 4 << 20
MAX_LINE_CHARS = 1 << 16
# after a captured tool's exit, how long its pipes are still read: a grandchild that outlives it
# (a daemon it started) can hold them open for ever
READER_GRACE_S = 5.0
STDERR_KEEP_BYTES = 1 << 20  # of a program's stderr: its last MiB (the error is at the end)


@dataclass(frozen=True, kw_only=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str  # stdout then stderr when captured; the tail of both, merged in order, when streamed
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output.splitlines()[-lines:])


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = 600,
    log: IO[str] | None = None,
    on_line: Callable[[str], None] | None = None,
    tail_lines: int = 200,
    stdin_data: str | None = None,
) -> Completed:
    """Run argv; stdout and stderr merged. Every line goes to `log` (a full log file) and to
    `on_line` (live progress) as it arrives; the last `tail_lines` are kept for error messages."""
    full_env = dict(os.environ if env is None else env)
    if log is not None:
        log.write(f"$ {shlex.join(argv)}" + (f"   (in {cwd})" if cwd else "") + "\n")
        log.flush()
    if log is None and on_line is None:
        return _captured(argv, cwd=cwd, env=full_env, timeout=timeout, stdin_data=stdin_data)

    kept: collections.deque[str] = collections.deque(maxlen=tail_lines)  # lines of MAX_LINE_CHARS at most
    timed_out = threading.Event()
    with _session(argv, cwd=cwd, env=full_env, stdin_data=stdin_data, stderr=subprocess.STDOUT) as child:
        assert child.stdout is not None

        def _at_deadline() -> None:
            timed_out.set()
            _kill_group(child)

        # a timer, not a select loop: lines are read as text (universal newlines, U+FFFD for bytes
        # that are not in the locale's encoding) by readline, which blocks
        timer = threading.Timer(timeout, _at_deadline) if timeout else None
        if timer:
            timer.daemon = True
            timer.start()
        try:
            lines = io.TextIOWrapper(child.stdout, errors="replace")
            while line := lines.readline(MAX_LINE_CHARS):  # a line without end comes in pieces
                line = line.rstrip("\n")
                kept.append(line)
                if log is not None:
                    log.write(line + "\n")
                    log.flush()
                if on_line is not None:
                    on_line(line)
            returncode = child.wait()
        finally:
            if timer:
                timer.cancel()
    return Completed(argv=tuple(argv), returncode=returncode, output="\n".join(kept), timed_out=timed_out.is_set())


@dataclass(frozen=True, kw_only=True, slots=True)
class Output:
    """A program's stdout and stderr, apart and as bytes; returncode None when it was killed at
    its timeout or for writing more than its bound (overflowed)."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    overflowed: bool = False


def output_of(argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], timeout: float,
              max_stdout: int | None = None) -> Output:
    """Run argv to its end, stdout and stderr kept apart and whole (git's answers: a tree
    listing, an archive), stdout up to max_stdout bytes (past it the program is killed: a tree
    of an untrusted commit may unpack to more than memory holds), of stderr its last MiB. At the
    timeout the program and every process it started (its own process group) are killed; so
    they are when the caller is interrupted. Its pipes are read to their end (within the
    timeout) even after it exits: the answer must be whole."""
    stdout = _Kept(head=max_stdout, overflow_kills=max_stdout is not None)
    stderr = _Kept(head=0, tail=STDERR_KEEP_BYTES)
    with _session(argv, cwd=cwd, env=env, stdin_data=None, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stderr is not None
        ended = _pump(child, {child.stdout: stdout, child.stderr: stderr}, deadline=time.monotonic() + timeout,
                      exit_grace=None)
    return Output(returncode=ended.returncode, stdout=stdout.joined(), stderr=stderr.joined(),
                  overflowed=ended.overflowed)


def kill_own_sessions() -> None:
    """Kill every child of this process that leads a session of its own (every program run
    here), with its group: what an interrupt must not leave running, including a child started
    in the instant before its runner could hold it (the interrupt came while Popen was returning)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # after the command name: state, ppid, pgrp, session
        if len(fields) > 3 and int(fields[1]) == me and int(fields[3]) == int(entry):
            try:
                os.killpg(int(entry), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _captured(argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], timeout: float | None,
              stdin_data: str | None) -> Completed:
    """stdout then stderr, each kept to its first and last CAPTURE_KEEP_BYTES, decoded with
    U+FFFD for bytes that are not UTF-8: a tool on PATH is as untrusted as its output. Its pipes
    are read for READER_GRACE_S at most after it exits (its exit status is the answer)."""
    stdout = _Kept(head=CAPTURE_KEEP_BYTES, tail=CAPTURE_KEEP_BYTES)
    stderr = _Kept(head=CAPTURE_KEEP_BYTES, tail=CAPTURE_KEEP_BYTES)
    with _session(argv, cwd=cwd, env=env, stdin_data=stdin_data, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stderr is not None
        ended = _pump(child, {child.stdout: stdout, child.stderr: stderr},
                      deadline=time.monotonic() + timeout if timeout else None, exit_grace=READER_GRACE_S)
    if ended.returncode is None:  # killed at the deadline
        return Completed(argv=tuple(argv), returncode=-signal.SIGKILL, output=stdout.text() + stderr.text(),
                         timed_out=True)
    return Completed(argv=tuple(argv), returncode=ended.returncode, output=stdout.text() + stderr.text())


@contextmanager
def _session(argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], stdin_data: str | None,
             stderr: int) -> Iterator[subprocess.Popen[bytes]]:
    """argv started leading a session of its own, stdout a pipe, stdin_data fed to it; killed
    with its group if the caller is interrupted (or fails) before it is done with it."""
    child = subprocess.Popen(list(argv), cwd=cwd, env=dict(env),
                             stdin=subprocess.DEVNULL if stdin_data is None else subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=stderr, start_new_session=True)
    try:
        if stdin_data is not None and child.stdin is not None:
            # in a thread of its own: a tool that never reads its input must still meet the timeout
            threading.Thread(target=_feed, args=(child.stdin, stdin_data.encode()), daemon=True).start()
        yield child
    except BaseException:
        _kill_group(child)
        child.wait()
        raise
    finally:
        for pipe in (child.stdout, child.stderr):
            if pipe is not None:
                pipe.close()


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    if child.returncode is not None:
        return  # reaped: its pid, and so its group's, may be another's by now
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()


@dataclass(frozen=True, kw_only=True, slots=True)
class _Ended:
    returncode: int | None  # None: killed with its group, at the deadline or for overflowing
    overflowed: bool = False


def _pump(child: subprocess.Popen[bytes], kept: Mapping[IO[bytes], _Kept], *, deadline: float | None,
          exit_grace: float | None) -> _Ended:
    """Read child's pipes into `kept` until they close and it ends. Its group is killed when the
    deadline passes first, or when a pipe overflows its _Kept. exit_grace: after the child ends,
    how long its pipes (which a grandchild may hold) are still read; None: to their end, within
    the deadline."""
    until = deadline
    exited = overflowed = False
    exit_pipe = _end_of(child.pid)
    try:
        with selectors.DefaultSelector() as selector:
            for pipe, keep in kept.items():
                selector.register(pipe, selectors.EVENT_READ, keep)
            selector.register(exit_pipe, selectors.EVENT_READ)
            while selector.get_map() and not overflowed:
                wait = None if until is None else until - time.monotonic()
                if wait is not None and wait <= 0:
                    break
                for key, _ in selector.select(wait):
                    if key.fd == exit_pipe:
                        selector.unregister(exit_pipe)
                        exited = True
                        if exit_grace is not None:
                            until = time.monotonic() + exit_grace
                    elif data := os.read(key.fd, 1 << 16):
                        overflowed = overflowed or not key.data.keep(data)
                    else:
                        selector.unregister(key.fileobj)
            pipes_open = any(key.fd != exit_pipe for key in selector.get_map().values())
    finally:
        os.close(exit_pipe)
    answered = exited and not overflowed and (exit_grace is not None or not pipes_open)
    if not answered:
        _kill_group(child)
    returncode = child.wait()
    return _Ended(returncode=returncode if answered else None, overflowed=overflowed)


def _end_of(pid: int) -> int:
    """The read end of a pipe that reaches its end once child pid has ended: a thread waits for
    it (Popen.wait with a timeout polls, with sleeps, a cost on every short tool). The child is
    not reaped: its pid, and so its group's, stays its own until Popen waits for it."""
    read_end, write_end = os.pipe()

    def _wait() -> None:
        try:
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass  # already reaped by Popen (an interrupted caller)
        finally:
            os.close(write_end)

    threading.Thread(target=_wait, daemon=True).start()
    return read_end


class _Kept:
    """What is kept of one pipe: its first `head` bytes (None: all) and its last `tail`, with a
    count of those left out between. When overflow_kills, a byte past `head` ends the program."""

    def __init__(self, *, head: int | None, tail: int = 0, overflow_kills: bool = False) -> None:
        self.head_bytes = head
        self.tail_bytes = tail
        self.overflow_kills = overflow_kills
        self.head: list[bytes] = []  # chunks as read: joined once, at the end
        self.head_size = 0
        self.tail = bytearray()
        self.dropped = 0

    def keep(self, chunk: bytes) -> bool:
        """Keep what the bounds allow of chunk; False when the program must be killed."""
        room = len(chunk) if self.head_bytes is None else self.head_bytes - self.head_size
        if room > 0:
            part = chunk if room >= len(chunk) else chunk[:room]
            self.head.append(part)
            self.head_size += len(part)
            chunk = chunk[len(part):]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_bytes:
                cut = len(self.tail) - self.tail_bytes
                del self.tail[:cut]
                self.dropped += cut
        return not (self.overflow_kills and self.dropped)

    def joined(self) -> bytes:
        return b"".join([*self.head, self.tail])

    def text(self) -> str:
        if not self.dropped:
            text = self.joined().decode("utf-8", "replace")
        else:
            marker = f"\n[... {self.dropped} bytes of output left out ...]\n"
            text = b"".join(self.head).decode("utf-8", "replace") + marker + self.tail.decode("utf-8", "replace")
        return text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as text=True reads


def _feed(stdin: IO[bytes], data: bytes) -> None:
    try:
        stdin.write(data)
        stdin.close()
    except (BrokenPipeError, ValueError):
        pass  # the tool did not read its input: its exit status says the rest
