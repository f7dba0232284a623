"""The content-addressed cache: <cache>/cas/sha256/<hex>/<filename>. Bytes enter only
through a download whose hash was computed on the way in; files are never overwritten.

Every path built from a name stays inside the cache (checked after resolving, whatever the lock
reader let through), and each entry is filled under an fcntl lock of its own
(<cache>/locks/<key>.lock), so that installs sharing the cache download a file once."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from vllm_lock.errors import IntegrityError, LockInvalidError, UnreachableError, VllmLockError
from vllm_lock.shell import files

if TYPE_CHECKING:  # http (ssl, http.client) is imported where bytes are fetched, not by every user of the store
    from vllm_lock.shell import http

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def cache_root() -> Path:
    if explicit := os.environ.get("VLLM_LOCK_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vllm-lock"


def plain_name(filename: str) -> str:
    """filename, when it is a plain file name (also once URL-unquoted): no directory part,
    not `.`/`..`, no NUL or control character. Otherwise LockInvalidError."""
    for form in {filename, unquote(filename)}:
        if (
            not form or form in (".", "..") or "/" in form or "\\" in form or form.startswith("-")
            or any(ord(c) < 0x20 or c == "\x7f" for c in form)
        ):
            raise LockInvalidError(f"refusing file name {filename!r}: not a plain file name")
    return filename


def inside(root: Path, *parts: str) -> Path:
    """root/parts..., refused (LockInvalidError) unless it resolves to a path inside root."""
    base = root.resolve()
    path = root.joinpath(*parts)
    resolved = path.resolve()
    if resolved == base or not resolved.is_relative_to(base):
        raise LockInvalidError(f"refusing {'/'.join(parts)!r}: it would leave {root}")
    return path


@contextmanager
def entry_lock(root: Path, key: str) -> Iterator[None]:
    """Exclusive use of one cache entry (released by the kernel if the process dies)."""
    locks = root / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / (hashlib.sha256(key.encode()).hexdigest()[:32] + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class Store:
    root: Path

    def path(self, sha256: str, filename: str) -> Path:
        if not isinstance(sha256, str) or not _SHA256.match(sha256):
            raise LockInvalidError(f"refusing sha256 {sha256!r}: not 64 lowercase hex digits")
        return inside(self.root, "cas", "sha256", sha256, plain_name(filename))

    def has(self, sha256: str, filename: str) -> bool:
        return self.path(sha256, filename).is_file()

    def fetch(
        self,
        url: str,
        filename: str,
        *,
        expected_sha256: str | None,
        expected_size: int | None = None,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> tuple[str, int, bool]:
        """Make the file available in the store; returns (sha256, size, downloaded?).
        With expected_sha256, bytes that hash otherwise are refused (IntegrityError); with
        expected_size, a longer body is cut there and refused."""
        plain_name(filename)
        if expected_sha256:
            self.path(expected_sha256, filename)  # refuses a bad hash or name before any I/O
        with entry_lock(self.root, expected_sha256 or url):
            if expected_sha256 and self.has(expected_sha256, filename):
                return expected_sha256, self.path(expected_sha256, filename).stat().st_size, False
            return self._download(url, filename, expected_sha256, expected_size, on_progress)

    def _download(
        self, url: str, filename: str, expected_sha256: str | None, expected_size: int | None,
        on_progress: Callable[[int, int | None], None] | None,
    ) -> tuple[str, int, bool]:
        from vllm_lock.shell import http

        incoming = self.root / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=incoming, prefix=".download.")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            try:
                got = http.download(url, tmp, on_progress, expected_size=expected_size, name=filename)
            except http.NotFound:  # gone upstream (a nightly the index no longer keeps), not a bug
                raise UnreachableError(
                    f"{filename}: {url} answers 404 (no longer published); a cache or an offline bundle "
                    f"(install --from-bundle) that holds it can still provide it"
                ) from None
            if expected_sha256 and got.sha256 != expected_sha256:
                raise IntegrityError(
                    f"{filename}: bytes served by {url} do not hash to the lock's "
                    f"sha256:{expected_sha256}: refusing them"
                )
            if expected_size is not None and got.size != expected_size:
                raise IntegrityError(f"{filename}: {url} sent {got.size} bytes, the lock says {expected_size}")
            final = self.path(got.sha256, filename)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, final)
            if got.etag:
                self._remember(url, got)
            return got.sha256, got.size, True
        finally:
            tmp.unlink(missing_ok=True)

    def unchanged(self, url: str, filename: str) -> tuple[str, int] | None:
        """(sha256, size) of url's bytes without downloading them again, when the server still
        gives the ETag and size it gave for the bytes we hashed and the store still holds them.
        None otherwise (no memo, no strong ETag, another ETag: a nightly rebuilt under its name)."""
        from vllm_lock.shell import http

        try:
            memo = json.loads(self._memo_path(url).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        try:
            if memo.get("url") != url or not self.has(memo.get("sha256", ""), filename):
                return None
        except LockInvalidError:
            return None
        try:
            now = http.head(url)
        except (http.NotFound, VllmLockError):
            return None
        if now.etag is None or now.etag != memo.get("etag") or now.size != memo.get("size"):
            return None
        return str(memo["sha256"]), int(memo["size"])

    def _memo_path(self, url: str) -> Path:
        return self.root / "etags" / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")

    def _remember(self, url: str, got: http.Downloaded) -> None:
        target = self._memo_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        memo = {"url": url, "etag": got.etag, "size": got.size, "sha256": got.sha256}
        files.write_atomically(target, json.dumps(memo))


def file_sha256(path: Path) -> str:
    return files.sha256_and_size(path)[0]
