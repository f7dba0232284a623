"""Locks on disk: find by name or path, read with validation, write atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from vllm_lock import codec
from vllm_lock.errors import LockInvalidError, OutputError, UsageError
from vllm_lock.model import Lock, is_valid_lock_name

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


def check_writable(path: Path) -> None:
    """Fail before any slow work if the output cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied")


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory and rename: never half a file."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """atomic_write_text for exact bytes (a signature, a lock put back as it was)."""
    check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None


def write(lock: Lock, path: Path) -> bool:
    """Write the lock; an existing file that differs only in provenance time is kept
    byte-identical. Returns whether the file changed. The old file is read back and compared
    as data: parsing it (~0.1 s for 187 packages) costs a fifth of dumping this lock to compare
    texts, and a rerun that changes nothing dumps nothing."""
    old = read_existing(path)
    if old is not None and same_but_time(old, lock):
        return False
    atomic_write_text(path, codec.dumps(lock))
    return True


def read_existing(path: Path) -> Lock | None:
    """The lock a write to path would replace; None when there is none or it does not read as one."""
    if not path.is_file():
        return None
    try:
        return codec.loads(path.read_text(encoding="utf-8"), origin=str(path))
    except LockInvalidError:
        return None


def same_but_time(a: Lock, b: Lock) -> bool:
    da, db = codec.to_data(a), codec.to_data(b)
    da["provenance"].pop("resolved-at")
    db["provenance"].pop("resolved-at")
    return da == db
