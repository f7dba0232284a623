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
