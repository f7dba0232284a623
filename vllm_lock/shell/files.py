"""Files written whole or not at all: the one atomic writer (locks, signatures, pylock exports,
test and install receipts, a generation's profile, the store's ETag memos); a file's sha256."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from vllm_lock.errors import OutputError


def sha256_and_size(path: Path) -> tuple[str, int]:
    """The file's sha256 (hex) and its size, read once in 1 MiB chunks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def check_writable(path: Path) -> None:
    """Fail before any slow work if the output cannot be written."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise OutputError(f"cannot write {path}: it is a directory")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise OutputError(f"cannot write {path}: permission denied")


def write_atomically(path: Path, data: bytes | str) -> None:
    """data (str as UTF-8) at path, mode 0644: written to a temporary file in path's directory,
    synced, renamed over path, then the directory synced, so that after a crash or power cut path
    holds the old bytes or the new ones, never a mix. An OSError goes to the caller, who knows what
    the file is to the user; the temporary file is gone either way."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _sync_directory(directory: Path) -> None:
    """The rename made durable: without it a power cut can leave the directory entry pointing at
    the old file although the new one was synced."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # a directory we may write but not open (no read permission): the rename stands
    try:
        with contextlib.suppress(OSError):  # filesystems that cannot sync a directory (some FUSE)
            os.fsync(fd)
    finally:
        os.close(fd)


def write_output(path: Path, data: bytes | str) -> None:
    """write_atomically for a file the user asked for (a lock, a signature, a pylock, a test
    receipt): checked first, and a failure is an OutputError naming path."""
    check_writable(path)
    try:
        write_atomically(path, data)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from None
