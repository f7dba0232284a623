"""Where binary cache entries and wheels are kept: a directory (`file:///path`), a static HTTP(S)
server (GET; push with PUT) or S3 (`s3://bucket/prefix?endpoint=...`, shell/s3.py).

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
import http.client
import os
import re
import shutil
import stat
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from vllm_lock.cache_entry import ENTRY_SUFFIX, MAX_ENTRY_BYTES
from vllm_lock.errors import CacheUnreachableError, IntegrityError, UnreachableError, UsageError
from vllm_lock.shell import http as http_shell
from vllm_lock.shell import limits, s3


def entry_deadline() -> float:
    return limits.setting("VLLM_LOCK_CACHE_DEADLINE", 20)


def list_deadline() -> float:
    """The total deadline of listing a cache (every page of it: `ls` and `verify`)."""
    return limits.setting("VLLM_LOCK_CACHE_LIST_DEADLINE", 600)


# the only object names `ls` and `verify` take for entries: anything else in a cache (a name with
# control characters, `..`, another suffix) is not an entry and is never shown or read
_ENTRY_NAME = re.compile(r"[0-9a-f]{64}" + re.escape(ENTRY_SUFFIX))


def _entry_names(names: Iterable[str]) -> list[str]:
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
    if scheme in ("http", "https"):
        return HttpBackend(url)
    if scheme == "s3":
        return S3Backend(url)
    raise UsageError(f"cache {url[:200]!r}: not a file://, http(s):// or s3:// URL")


def _hash_of(source: Path | bytes) -> tuple[str, int]:
    if isinstance(source, bytes):
        return hashlib.sha256(source).hexdigest(), len(source)
    digest, size = hashlib.sha256(), 0
    with source.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


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
            return _entry_names(p.name for p in self.root.iterdir() if p.is_file())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise CacheUnreachableError(f"{self.url}: cannot list: {exc.strerror or exc}") from None


# ---------------------------------------------------------------- http(s)://


class HttpBackend:
    def __init__(self, url: str) -> None:
        netloc = url.split("://", 1)[-1].split("/", 1)[0]
        if "@" in netloc:
            # every message and the receipt show the cache's URL: never with what looks like a secret
            scheme = url.split(":", 1)[0]
            raise UsageError(f"cache {scheme}://…@{netloc.rsplit('@', 1)[1][:100]}: credentials in a cache URL "
                             f"would be logged (and urllib does not send them): refusing it")
        self.url = url.rstrip("/")

    def read(self, name: str) -> bytes | None:
        url = f"{self.url}/{name}"
        try:
            # http.py's machinery: total deadline, retries of 5xx and network errors, size cap
            with http_shell._deadline(entry_deadline()) as guard, http_shell._open(url, guard) as response:
                return b"".join(http_shell._read_body(url, response, guard, MAX_ENTRY_BYTES + 1))
        except http_shell.NotFound:
            return None
        except http_shell._TooLong:
            raise CacheUnreachableError(f"{url}: larger than {MAX_ENTRY_BYTES} bytes: not a cache entry") from None
        except UnreachableError as exc:
            raise CacheUnreachableError(_deadline_named(str(exc))) from None

    def fetch(self, name: str, dest: Path, *, size: int) -> Fetched:
        url = f"{self.url}/{name}"
        try:
            got = http_shell.download(url, dest, expected_size=size, name=name.rsplit("/", 1)[-1])
        except http_shell.NotFound:
            raise CacheUnreachableError(f"{url}: the entry's wheel is missing") from None
        except (UnreachableError, IntegrityError) as exc:
            # http.py words its refusals for a lock's wheels; here the size is the signed entry's
            message = str(exc).replace("the lock's size", "the entry's size").replace("the lock says", "the entry says")
            raise CacheUnreachableError(message) from None
        return Fetched(sha256=got.sha256, size=got.size)

    def write(self, name: str, source: Path | bytes) -> None:
        url = f"{self.url}/{name}"
        _, size = _hash_of(source)
        body = source if isinstance(source, bytes) else source.open("rb")
        request = urllib.request.Request(
            url, data=body, method="PUT",
            headers={"User-Agent": http_shell.USER_AGENT, "Content-Length": str(size),
                     "Content-Type": "application/octet-stream"},
        )
        try:
            with http_shell._deadline(http_shell.bounds().download_deadline(size)) as guard:
                try:
                    with http_shell._opener().open(request, timeout=http_shell._read_timeout()) as response:
                        response.read(4096)
                except urllib.error.HTTPError as exc:
                    raise CacheUnreachableError(f"{url}: PUT answered HTTP {exc.code} {exc.reason}") from None
                except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                    if guard.expired.is_set():
                        raise CacheUnreachableError(f"{url}: PUT did not finish within {guard.seconds:g} s") from None
                    reason = getattr(exc, "reason", exc)
                    raise CacheUnreachableError(f"{url}: PUT failed: {reason}") from None
        finally:
            if not isinstance(body, bytes):
                body.close()

    def entries(self) -> list[str]:
        raise UsageError(f"{self.url}: a static HTTP cache cannot be listed (ls and verify read file:// and s3:// "
                         "caches)")


def _deadline_named(message: str) -> str:
    return message.replace("(the request's total deadline)", "(VLLM_LOCK_CACHE_DEADLINE)")


# ---------------------------------------------------------------- s3://


class S3Backend:
    def __init__(self, url: str) -> None:
        self.client = s3.client(url)
        self.url = self.client.location.label.rstrip("/")

    def read(self, name: str) -> bytes | None:
        try:
            return self.client.get(name, limit=MAX_ENTRY_BYTES, deadline=entry_deadline())
        except s3.NotFound:
            return None

    def fetch(self, name: str, dest: Path, *, size: int) -> Fetched:
        try:
            sha256, written = self.client.download(name, dest, size=size)
        except s3.NotFound:
            raise CacheUnreachableError(f"{self.url}/{name}: the entry's wheel is missing") from None
        return Fetched(sha256=sha256, size=written)

    def write(self, name: str, source: Path | bytes) -> None:
        sha256, size = _hash_of(source)
        if isinstance(source, bytes):
            self.client.put(name, source, size=size, sha256=sha256)
            return
        with source.open("rb") as body:
            self.client.put(name, body, size=size, sha256=sha256)

    def entries(self) -> list[str]:
        try:
            return _entry_names(self.client.list_keys(deadline=list_deadline()))
        except s3.NotFound:
            return []
