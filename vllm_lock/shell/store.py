"""The content-addressed cache: <cache>/cas/sha256/<hex>/<filename>. Bytes enter only
through a download whose hash was computed on the way in; files are never overwritten."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vllm_lock.errors import IntegrityError, VllmLockError
from vllm_lock.shell import http


def cache_root() -> Path:
    if explicit := os.environ.get("VLLM_LOCK_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "vllm-lock"


@dataclass(frozen=True, slots=True)
class Store:
    root: Path

    def path(self, sha256: str, filename: str) -> Path:
        return self.root / "cas" / "sha256" / sha256 / filename

    def has(self, sha256: str, filename: str) -> bool:
        return self.path(sha256, filename).is_file()

    def fetch(
        self,
        url: str,
        filename: str,
        *,
        expected_sha256: str | None,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> tuple[str, int, bool]:
        """Make the file available in the store; returns (sha256, size, downloaded?).
        With expected_sha256, bytes that hash otherwise are refused (IntegrityError)."""
        if expected_sha256 and self.has(expected_sha256, filename):
            return expected_sha256, self.path(expected_sha256, filename).stat().st_size, False
        incoming = self.root / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=incoming, prefix=filename + ".")
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            got = http.download(url, tmp, on_progress)
            if expected_sha256 and got.sha256 != expected_sha256:
                raise IntegrityError(
                    f"{filename}: bytes served by {url} hash to sha256:{got.sha256}, "
                    f"the lock says sha256:{expected_sha256}: refusing it"
                )
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
        try:
            memo = json.loads(self._memo_path(url).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if memo.get("url") != url or not self.has(memo.get("sha256", ""), filename):
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
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".memo.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(memo, handle)
        os.replace(tmp, target)

    def verify(self, sha256: str, filename: str) -> bool:
        """Re-hash a stored file (guards against a corrupted cache)."""
        digest = hashlib.sha256()
        with self.path(sha256, filename).open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        return digest.hexdigest() == sha256
