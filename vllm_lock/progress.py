"""Step reporting: each step logged by name with its duration, on stderr and in a log file.

On a terminal a live area (spinner, step, elapsed time, the last lines of output) sits under the
step lines and is cleared when the step ends; anywhere else (pipes, Phoenix's log, CI) every
output line is printed as it comes. The full log file always gets everything.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console, Group
    from rich.live import Live

LIVE_TAIL_LINES = 6


class LiveArea:
    """The terminal display of one running step (rich, on stderr)."""

    def __init__(self, console: Console | None = None) -> None:
        from rich.console import Console
        from rich.spinner import Spinner

        self.console = console or Console(stderr=True)
        self._spinner = Spinner("dots")
        self._tail: deque[str] = deque(maxlen=LIVE_TAIL_LINES)
        self._guard = threading.Lock()  # lines arrive on the main thread, rendering runs on rich's
        self._live: Live | None = None
        self._step = ""
        self._start = 0.0

    def begin(self, step: str) -> None:
        from rich.live import Live

        if self._live is not None:
            return
        with self._guard:
            self._step, self._start = step, time.monotonic()
            self._tail.clear()
        self._live = Live(self, console=self.console, transient=True, refresh_per_second=8,
                          redirect_stdout=False, redirect_stderr=False)
        self._live.start()

    def end(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def show(self, line: str) -> None:
        with self._guard:
            self._tail.append(line)

    def print(self, message: str) -> None:
        self.console.print(message, markup=False, highlight=False, soft_wrap=True)

    def __rich__(self) -> Group:
        from rich.console import Group
        from rich.text import Text

        with self._guard:
            tail = list(self._tail)
            step, elapsed = self._step, time.monotonic() - self._start
        self._spinner.update(text=Text(f"{step}  {elapsed:6.1f}s", style="bold"))
        width = max(self.console.width - 4, 20)
        lines = [Text("    " + line, style="dim", no_wrap=True, overflow="ellipsis") for line in tail]
        for text in lines:
            text.truncate(width, overflow="ellipsis")
        return Group(self._spinner, *lines)


class _Tee:
    """Writes to two text streams (a caller's log and a command's own log file)."""

    def __init__(self, first: IO[str], second: IO[str]) -> None:
        self.streams = (first, second)

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def stderr_is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb"


@dataclass
class Reporter:
    """Prints `==> step` lines (stderr) and mirrors them to an optional full log file."""

    log: IO[str] | None = None
    quiet: bool = False
    timings: dict[str, float] = field(default_factory=dict)
    live: LiveArea | None = None

    @classmethod
    def for_stderr(cls) -> Reporter:
        """The commands' reporter: a live area on a terminal, plain lines otherwise."""
        return cls(live=LiveArea() if stderr_is_terminal() else None)

    def with_log(self, log: IO[str]) -> Reporter:
        """The same display, also writing to `log` (and to this reporter's own log; timings are its own)."""
        both: IO[str] = log if self.log is None else _Tee(self.log, log)  # type: ignore[assignment]
        return Reporter(log=both, quiet=self.quiet, live=self.live)

    def say(self, message: str) -> None:
        if not self.quiet:
            if self.live is not None:
                self.live.print(message)
            else:
                print(message, file=sys.stderr, flush=True)
        self._to_log(message)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"==> {name}")
        start = time.monotonic()
        if self.live is not None and not self.quiet:
            self.live.begin(name)
        try:
            yield
        finally:
            if self.live is not None:
                self.live.end()
            elapsed = time.monotonic() - start
            self.timings[name] = round(elapsed, 3)
            self.say(f"    {name}: {elapsed:.2f}s")

    def line(self, text: str) -> None:
        """A line of subprocess output, shown live: in the live area on a terminal, else printed
        indented. Not logged here: the subprocess runner already wrote the raw line to the log."""
        if self.quiet:
            return
        if self.live is not None:
            self.live.show(text)
        else:
            print(f"    | {text}", file=sys.stderr, flush=True)

    def _to_log(self, message: str) -> None:
        if self.log is not None:
            self.log.write(message + "\n")
            self.log.flush()


QUIET = Reporter(quiet=True)

__all__ = ["LiveArea", "QUIET", "Reporter", "stderr_is_terminal"]
