"""The mirrors this process fetches through (set by an action for its run, read by git, http
and uv). A process-wide setting, not a context variable: fetches also run on worker threads."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from vllm_lock.mirrors import NO_MIRRORS, Mirrors

_active = NO_MIRRORS
_guard = threading.Lock()


def active() -> Mirrors:
    return _active


@contextmanager
def using(mirrors: Mirrors) -> Iterator[Mirrors]:
    """mirrors for the duration of the block (the previous setting comes back after it)."""
    global _active
    with _guard:
        previous, _active = _active, mirrors
    try:
        yield mirrors
    finally:
        with _guard:
            _active = previous
