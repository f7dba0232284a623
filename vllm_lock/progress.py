"""Step reporting: each step logged by name with its duration, on stderr and in a log file."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO


@dataclass
class Reporter:
    """Prints `==> step` lines (stderr) and mirrors them to an optional full log file."""

    log: IO[str] | None = None
    quiet: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def say(self, message: str) -> None:
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)
        if self.log is not None:
            self.log.write(message + "\n")
            self.log.flush()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.say(f"==> {name}")
        start = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - start
            self.timings[name] = round(elapsed, 3)
            self.say(f"    {name}: {elapsed:.2f}s")

    def line(self, text: str) -> None:
        """A line of subprocess output: indented, live."""
        self.say(f"    | {text}")


QUIET = Reporter(quiet=True)
