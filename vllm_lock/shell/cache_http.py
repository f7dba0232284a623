"""The binary cache on a static HTTP(S) server (cache_backends.py has the rules): GET through
http.py's bounded machinery, push with PUT."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from pathlib import Path

from vllm_lock.cache_entry import MAX_ENTRY_BYTES
from vllm_lock.errors import CacheUnreachableError, IntegrityError, UnreachableError, UsageError
from vllm_lock.shell import http as http_shell
from vllm_lock.shell.cache_backends import Fetched, entry_deadline, hash_of


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
        """PUT, sent again (the body from its start) after a 5xx answer or a network error within the
        upload's deadline, as http.py retries a GET; any other answer ends it at once."""
        url = f"{self.url}/{name}"
        _, size = hash_of(source)
        body = source if isinstance(source, bytes) else source.open("rb")
        headers = {"User-Agent": http_shell.USER_AGENT, "Content-Length": str(size),
                   "Content-Type": "application/octet-stream"}

        def once() -> None:
            if not isinstance(body, bytes):
                body.seek(0)
            request = urllib.request.Request(url, data=body, method="PUT", headers=headers)
            try:
                with http_shell._opener().open(request, timeout=http_shell._read_timeout()) as response:
                    response.read(4096)
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    raise CacheUnreachableError(f"{url}: PUT answered HTTP {exc.code} {exc.reason}") from None
                raise http_shell._Passing(f"HTTP {exc.code} {exc.reason}") from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                raise http_shell._Passing(str(getattr(exc, "reason", exc))) from None

        try:
            with http_shell._deadline(http_shell.bounds().download_deadline(size)) as guard:
                try:
                    http_shell._retried(once, guard)
                except http_shell._Spent as spent:
                    if guard.expired.is_set():
                        raise CacheUnreachableError(f"{url}: PUT did not finish within {guard.seconds:g} s") from None
                    raise CacheUnreachableError(f"{url}: PUT failed: {spent.last} (after {spent.tries_text})") from None
        finally:
            if not isinstance(body, bytes):
                body.close()

    def entries(self) -> list[str]:
        raise UsageError(f"{self.url}: a static HTTP cache cannot be listed (ls and verify read file:// and s3:// "
                         "caches)")


def _deadline_named(message: str) -> str:
    return message.replace("(the request's total deadline)", "(VLLM_LOCK_CACHE_DEADLINE)")
