"""Where binary cache entries and wheels are kept: a directory (`file:///path`), a static HTTP(S)
server (GET; push with PUT; shell/cache_http.py) or S3 (`s3://bucket/prefix?endpoint=...`,
shell/cache_s3.py over shell/s3.py).

Every request is bounded: an entry by VLLM_LOCK_CACHE_DEADLINE seconds (default 20: a slow cache
means building instead, not waiting) and MAX_ENTRY_BYTES; a wheel by http.py's download deadline
for its size, cut at the entry's size. Objects (cache_entry.py): `<identity>.entry` and
`wheels/<sha256>/<file>`. A push writes the wheel first and the entry last, each object whole or
not at all (a temporary name then a rename; an HTTP or S3 PUT), so that no entry is ever visible
without its wheel; two pushers of one identity each write a complete pair and the last entry wins.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from vllm_lock.cache_entry import ENTRY_SUFFIX, MAX_ENTRY_BYTES
from vllm_lock.errors import CacheUnreachableError, UsageError
from vllm_lock.shell import files, limits


def entry_deadline() -> float:
    return limits.setting("VLLM_LOCK_CACHE_DEADLINE", 20)


def list_deadline() -> float:
    """The total deadline of listing a cache (every page of it: `ls` and `verify`)."""
    return limits.setting("VLLM_LOCK_CACHE_LIST_DEADLINE", 600)


# the only object names `ls` and `verify` take for entries: anything else in a cache (a name with
# control characters, `..`, another suffix) is not an entry and is never shown or read
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}" + re.escape(ENTRY_SUFFIX))


def entry_names(names: Iterable[str]) -> list[str]:
    return sorted(name for name in names if _ENTRY_NAME.fullmatch(name))


@dataclass(frozen=True, kw_only=True, slots=True)
class Fetched:
    sha256: str
    size: int


class Backend(Protocol):
    url: str

    def read(self, name: str) -> bytes | None:
        """A small object (an entry): at most MAX_ENTRY_BYTES + 1 bytes; None when absent."""

    def fetch(self, name: str, dest: Path, *, size: int) -> Fetched:
        """An object into dest, cut at size bytes."""

    def write(self, name: str, source: Path | bytes) -> None:
        """An object, whole or not at all."""

    def entries(self) -> list[str]:
        """The names of every entry object."""


def open_backend(url: str) -> Backend:
    scheme = url.split(":", 1)[0].lower()
    if scheme == "file":
        return FileBackend(url)
    # imported here: a file:// cache (the common case on a host) loads no HTTP, TLS or S3 code
    if scheme in ("http", "https"):
        from vllm_lock.shell.cache_http import HttpBackend

        return HttpBackend(url)
    if scheme == "s3":
        from vllm_lock.shell.cache_s3 import S3Backend

        return S3Backend(url)
    raise UsageError(f"cache {url[:200]!r}: not a file://, http(s):// or s3:// URL")


def hash_of(source: Path | bytes) -> tuple[str, int]:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest(), len(source)
    return files.sha256_and_size(source)


# ---------------------------------------------------------------- file://


class FileBackend:
    def __init__(self, url: str) -> None:
        path = url[len("file://"):]
        if not path.startswith("/") or "\0" in path:
            raise UsageError(f"cache {url}: a file:// cache needs an absolute path (file:///srv/cache)")
        self.url = url
        self.root = Path(path)

    def _path(self, name: str) -> Path:
        return self.root / name  # names are built from validated identities, sha256s and wheel names

    def _open(self, name: str) -> IO[bytes]:
        """The object for reading, only when it is a regular file: anyone may write to a cache,
        and a FIFO or a device in it would block a read forever (no deadline covers a file)."""
        fd = os.open(self._path(name), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise CacheUnreachableError(f"{self.url}/{name}: not a regular file: refusing it")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def read(self, name: str) -> bytes | None:
        try:
            with self._open(name) as stream:
                return stream.read(MAX_ENTRY_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CacheUnreachableError(f"{self.url}: cannot read {name}: {exc.strerror or exc}") from None

    def fetch(self, name: str, dest: Path, *, size: int) -> Fetched:
        digest, written = hashlib.sha256(), 0
        try:
            with self._open(name) as reader, dest.open("wb") as writer:
                while written < size and (chunk := reader.read(min(1 << 20, size - written))):
                    digest.update(chunk)
                    writer.write(chunk)
                    written += len(chunk)
                if reader.read(1):
                    raise CacheUnreachableError(f"{self.url}/{name}: longer than the entry's {size} bytes: refusing it")
        except FileNotFoundError:
            raise CacheUnreachableError(f"{self.url}/{name}: the entry's wheel is missing") from None
        except OSError as exc:
            raise CacheUnreachableError(f"{self.url}: cannot read {name}: {exc.strerror or exc}") from None
        return Fetched(sha256=digest.hexdigest(), size=written)

    def write(self, name: str, source: Path | bytes) -> None:
        target = self._path(name)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.parent.resolve().is_relative_to(self.root.resolve()):
                # anyone may write to a shared cache: a planted `wheels/<sha256>` link would make a
                # pusher (root) write the wheel wherever it points
                raise CacheUnreachableError(f"{self.url}: {Path(name).parent} leads out of the cache (a link): "
                                            f"refusing to write {name}")
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
            try:
                with os.fdopen(fd, "wb") as writer:
                    if isinstance(source, bytes):
                        writer.write(source)
                    else:
                        with source.open("rb") as reader:
                            shutil.copyfileobj(reader, writer, 1 << 20)
                    writer.flush()
                    os.fsync(writer.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            finally:
                Path(tmp).unlink(missing_ok=True)
        except OSError as exc:
            full = " (no space left)" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else ""
            raise CacheUnreachableError(f"{self.url}: cannot write {name}: {exc.strerror or exc}{full}") from None

    def entries(self) -> list[str]:
        try:
            return entry_names(p.name for p in self.root.iterdir() if p.is_file())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CacheUnreachableError(f"{self.url}: cannot list: {exc.strerror or exc}") from None
