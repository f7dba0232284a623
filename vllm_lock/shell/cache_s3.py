"""The binary cache in S3 or an S3-compatible server (cache_backends.py has the rules, s3.py the
requests)."""

from __future__ import annotations

from pathlib import Path

from vllm_lock.cache_entry import MAX_ENTRY_BYTES
from vllm_lock.errors import CacheUnreachableError
from vllm_lock.shell import s3
from vllm_lock.shell.cache_backends import Fetched, entry_deadline, entry_names, hash_of, list_deadline


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
        sha256, size = hash_of(source)
        if isinstance(source, bytes):
            self.client.put(name, source, size=size, sha256=sha256)
            return
        with source.open("rb") as body:
            self.client.put(name, body, size=size, sha256=sha256)

    def entries(self) -> list[str]:
        try:
            return entry_names(self.client.list_keys(deadline=list_deadline()))
        except s3.NotFound:
            return []
