"""The one place subprocesses run: logged argv, timeout, live streaming, a kept tail."""

from __future__ import annotations

import collections
import os
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# What a run keeps of a tool's output, whatever it prints (a fake nvidia-smi running `yes` for
# its whole timeout): captured, the first and last 4 MiB of stdout and of stderr; streamed, every
# line goes to the log file and the last `tail_lines` lines (each cut at 64 Ki characters) are kept.
CAPTURE_KEEP_BYTES = 4 << 20
MAX_LINE_CHARS = 1 << 16
READER_GRACE_S = 5.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str  # combined stdout+stderr when captured; the tail when streamed
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
    proc2 = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=full_env,
        stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    if stdin_data is not None and proc2.stdin:
        proc2.stdin.write(stdin_data)
        proc2.stdin.close()
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        proc2.kill()

    timer = threading.Timer(timeout, _kill) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        assert proc2.stdout is not None
        while line := proc2.stdout.readline(MAX_LINE_CHARS):  # a line without end comes in pieces
            line = line.rstrip("\n")
            kept.append(line)
            if log is not None:
                log.write(line + "\n")
                log.flush()
            if on_line is not None:
                on_line(line)
        returncode = proc2.wait()
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


STDERR_KEEP_BYTES = 1 << 20  # of a program's stderr: its last MiB (the error is at the end)


def output_of(argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], timeout: float,
              max_stdout: int | None = None) -> Output:
    """Run argv to its end, stdout and stderr kept apart and whole (git's answers: a tree
    listing, an archive), stdout up to max_stdout bytes (past it the program is killed: a tree
    of an untrusted commit may unpack to more than memory holds). At the timeout the program
    and every process it started (its own process group) are killed; so they are when the
    caller is interrupted."""
    child = subprocess.Popen(list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    assert child.stdout is not None and child.stderr is not None
    deadline = time.monotonic() + timeout
    chunks: dict[int, list[bytes]] = {child.stdout.fileno(): [], child.stderr.fileno(): []}
    sizes = dict.fromkeys(chunks, 0)
    out_fd, err_fd = child.stdout.fileno(), child.stderr.fileno()
    overflowed = timed_out = False
    try:
        with selectors.DefaultSelector() as selector:
            for fd in chunks:
                selector.register(fd, selectors.EVENT_READ)
            while selector.get_map() and not (overflowed or timed_out):
                remaining = deadline - time.monotonic()
                ready = selector.select(remaining) if remaining > 0 else []
                if not ready:
                    timed_out = True
                for key, _ in ready:
                    data = os.read(key.fd, 1 << 16)
                    if not data:
                        selector.unregister(key.fd)
                        continue
                    chunks[key.fd].append(data)
                    sizes[key.fd] += len(data)
                    if key.fd == err_fd and sizes[err_fd] > 2 * STDERR_KEEP_BYTES:
                        chunks[err_fd] = [b"".join(chunks[err_fd])[-STDERR_KEEP_BYTES:]]
                        sizes[err_fd] = STDERR_KEEP_BYTES
                    if key.fd == out_fd and max_stdout is not None and sizes[out_fd] > max_stdout:
                        overflowed = True
        if not (overflowed or timed_out):
            try:  # both pipes closed: the program is ending (or holds on without them)
                child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                timed_out = True
        if overflowed or timed_out:
            _kill_group(child)
        returncode = child.wait()
    except BaseException:
        _kill_group(child)
        child.wait()
        raise
    finally:
        child.stdout.close()
        child.stderr.close()
    stdout, stderr = b"".join(chunks[out_fd]), b"".join(chunks[err_fd])
    if overflowed or timed_out:
        return Output(returncode=None, stdout=stdout, stderr=stderr, overflowed=overflowed)
    return Output(returncode=returncode, stdout=stdout, stderr=stderr)


def kill_own_sessions() -> None:
    """Kill every child of this process that leads a session of its own (output_of's programs),
    with its group: what an interrupt must not leave running, including a child started in the
    instant before its runner could hold it (the interrupt came while Popen was returning)."""
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


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        child.kill()


def _captured(argv: Sequence[str], *, cwd: Path | None, env: Mapping[str, str], timeout: float | None,
              stdin_data: str | None) -> Completed:
    """stdout then stderr, each kept to its first and last CAPTURE_KEEP_BYTES, decoded with
    U+FFFD for bytes that are not UTF-8: a tool on PATH is as untrusted as its output."""
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    captures = [_Capture(proc.stdout), _Capture(proc.stderr)]
    readers = [threading.Thread(target=c.drain, daemon=True) for c in captures]
    for reader in readers:
        reader.start()
    if stdin_data is not None and proc.stdin is not None:
        # in a thread of its own: a tool that never reads its input must still meet the timeout
        threading.Thread(target=_feed, args=(proc.stdin, stdin_data.encode()), daemon=True).start()
    # a timer kills it: wait(timeout=...) polls with sleeps of up to 50 ms past the tool's exit,
    # a cost on every one of the many short tools an install runs
    killed = threading.Event()

    def _kill() -> None:
        killed.set()
        proc.kill()

    timer = threading.Timer(timeout, _kill) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    try:
        returncode = proc.wait()
    finally:
        if timer:
            timer.cancel()
    timed_out = killed.is_set() and returncode == -signal.SIGKILL
    for reader, capture in zip(readers, captures, strict=True):
        # a grandchild that outlives the tool can hold the pipe open: stop waiting for it
        reader.join(timeout=READER_GRACE_S)
        if not reader.is_alive():
            capture.stream.close()
    output = "".join(c.text() for c in captures)
    return Completed(argv=tuple(argv), returncode=-9 if timed_out else returncode, output=output,
                     timed_out=timed_out)


def _feed(stdin: IO[bytes], data: bytes) -> None:
    try:
        stdin.write(data)
        stdin.close()
    except (BrokenPipeError, ValueError):
        pass  # the tool did not read its input: its exit status says the rest


class _Capture:
    """One pipe read to its end, keeping its first and last CAPTURE_KEEP_BYTES."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.lock = threading.Lock()

    def drain(self) -> None:
        read = getattr(self.stream, "read1", self.stream.read)
        while chunk := read(1 << 16):
            with self.lock:
                room = CAPTURE_KEEP_BYTES - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                self.tail += chunk
                if len(self.tail) > CAPTURE_KEEP_BYTES:
                    cut = len(self.tail) - CAPTURE_KEEP_BYTES
                    del self.tail[:cut]
                    self.dropped += cut

    def text(self) -> str:
        with self.lock:
            if not self.dropped:
                text = (bytes(self.head) + bytes(self.tail)).decode("utf-8", "replace")
            else:
                marker = f"\n[... {self.dropped} bytes of output left out ...]\n"
                text = self.head.decode("utf-8", "replace") + marker + self.tail.decode("utf-8", "replace")
        return text.replace("\r\n", "\n").replace("\r", "\n")  # universal newlines, as text=True reads
