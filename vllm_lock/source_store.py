"""The source store's rules (pure): a commit's stripped source tree as a read-only path
<cache>/sources/<key>/, made once and shared by every substituted non-editable install of it.

The key names what the tree's bytes are a function of: the repository (its origin and the tags
vLLM's version reads come from that mirror), the commit, the stripping script's argv and the
result the lock says it gives (patched_files: path and sha256 after). The Rust frontend is
checked against each lock on each use, not keyed: it is a question about the lock, not the tree.
What the tree's frontend is (rust.detect's facts) is read once, when the path is made, and kept
in its .git (rust.facts_to_json), read back on each reuse.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from vllm_lock.model import Lock

SOURCES_DIR = "sources"
KEY_FORMAT = "vllm-lock source tree 1"


def source_key(lock: Lock) -> str:
    """64 hex digits: the store path's name for the lock's stripped source tree."""
    data = {
        "format": KEY_FORMAT,
        "url": lock.vllm.url,
        "commit": lock.vllm.commit,
        "stripping-argv": list(lock.layout.stripping_argv),
        "patched-files": sorted([f.path, f.sha256_after] for f in lock.layout.patched_files),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def is_key(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def partial_name(key: str) -> str:
    """Where a store path is made before its rename into place; what a killed run leaves."""
    return f".{key}.partial"


def altered_patched_file(lock: Lock, found: Mapping[str, str | None]) -> tuple[str, str | None, str] | None:
    """The first patched file (path, sha256 found or None when missing, sha256 the lock says)
    whose bytes in a store path are not the lock's; None when all are."""
    for patched in sorted(lock.layout.patched_files, key=lambda f: f.path):
        got = found.get(patched.path)
        if got != patched.sha256_after:
            return patched.path, got, patched.sha256_after
    return None


__all__ = ["KEY_FORMAT", "SOURCES_DIR", "altered_patched_file", "is_key", "partial_name", "source_key"]
