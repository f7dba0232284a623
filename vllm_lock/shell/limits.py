"""Bounds read from the environment (deadlines, rates, sizes), each with its documented default
(README: Bounds and faults). A missing, unreadable or non-positive value means the default."""

from __future__ import annotations

import os


def setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def retry_pause(attempt: int, tries: int, remaining: float, first: float) -> float | None:
    """The pause after failed try number attempt (0-based) before the next: first, doubled each
    time; None when no further try is due: the last was made, or the time left (remaining
    seconds) cannot hold the pause, so that tries never come in a burst just before a deadline."""
    pause = first * 2**attempt
    return None if attempt + 1 >= tries or remaining <= pause else pause
