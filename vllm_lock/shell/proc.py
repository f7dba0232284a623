"""The one place subprocesses run: logged argv, timeout, live streaming, a kept tail."""

from __future__ import annotations

import collections
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO


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
        try:
            proc = subprocess.run(
                list(argv), cwd=cwd, env=full_env, input=stdin_data, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return Completed(argv=tuple(argv), returncode=-9, output=out, timed_out=True)
        return Completed(argv=tuple(argv), returncode=proc.returncode, output=proc.stdout + proc.stderr)

    kept: collections.deque[str] = collections.deque(maxlen=tail_lines)
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
    import threading

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
        for line in proc2.stdout:
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


def echo_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
