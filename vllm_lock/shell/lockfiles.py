"""Locks on disk: find by name or path, read with validation, write atomically (files.py)."""

from __future__ import annotations

import os
from pathlib import Path

from vllm_lock import codec
from vllm_lock.errors import LockInvalidError, UsageError
from vllm_lock.model import Lock, is_valid_lock_name
from vllm_lock.shell.files import check_writable as check_writable  # resolve checks its output early
from vllm_lock.shell.files import write_output

SUFFIX = ".lock.toml"


def locks_dir() -> Path:
    return Path(os.environ.get("VLLM_LOCK_LOCKS_DIR") or Path.cwd() / "locks")


def path_for_name(name: str) -> Path:
    if not is_valid_lock_name(name):
        raise UsageError(f"lock name {name!r} is invalid: use lower-case letters, digits, '.', '_', '-'")
    return locks_dir() / f"{name}{SUFFIX}"


def locate(name_or_path: str) -> Path:
    """A path as given if it looks like one, else locks/<name>.lock.toml."""
    if "/" in name_or_path or name_or_path.endswith(".toml"):
        path = Path(name_or_path)
    else:
        path = path_for_name(name_or_path)
    if not path.is_file():
        raise UsageError(f"lock {name_or_path!r} not found ({path})")
    return path


def read(name_or_path: str) -> tuple[Lock, Path]:
    path = locate(name_or_path)
    try:
        # the exact text (newline=""), as the signature check sees it: a carriage return that a
        # terminal would use to hide the rest of a line is refused, not turned into a newline
        with path.open(encoding="utf-8", newline="") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise LockInvalidError(f"{path}: cannot read ({exc})") from None
    return codec.loads(text, origin=str(path)), path


def write(lock: Lock, path: Path, *, existing: Lock | None = None) -> bool:
    """Write the lock; an existing file that differs only in provenance time is kept
    byte-identical. Returns whether the file changed. The old file is read back and compared
    as data: parsing it (~0.1 s for 187 packages) costs a fifth of dumping this lock to compare
    texts, and a rerun that changes nothing dumps nothing. `existing`: the old lock, already read."""
    old = existing if existing is not None else read_existing(path)
    if old is not None and codec.same_but_time(old, lock, "resolved-at"):
        return False
    write_output(path, codec.dumps(lock))
    return True


def read_existing(path: Path) -> Lock | None:
    """The lock a write to path would replace; None when there is none or it does not read as one."""
    if not path.is_file():
        return None
    try:
        return codec.loads(path.read_text(encoding="utf-8"), origin=str(path))
    except LockInvalidError:
        return None


