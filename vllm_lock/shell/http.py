"""HTTP(S) GETs against package indexes: system trust store, timeouts, bounded retries."""

from __future__ import annotations

import functools
import hashlib
import os
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vllm_lock.errors import UnreachableError

TIMEOUT_S = 20
RETRIES = 3
CHUNK = 1 << 20
USER_AGENT = "vllm-lock"


class NotFound(Exception):
    """The server answered 404: the thing is not there (not a network failure)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Downloaded:
    sha256: str
    size: int
    etag: str | None  # the server's validator for these bytes, when it gave a strong one


@dataclass(frozen=True, kw_only=True, slots=True)
class Validator:
    etag: str | None
    size: int | None


def _ssl_context() -> ssl.SSLContext:
    """The system trust store (honours SSL_CERT_FILE / SSL_CERT_DIR); verification always on.
    Loading the store costs ~25 ms, so one context per trust setting is kept."""
    return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return ssl.create_default_context()


def _open(url: str, accept: str | None = None, method: str = "GET"):  # type: ignore[no-untyped-def]
    headers = {"User-Agent": USER_AGENT}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url, headers=headers, method=method)
    last = ""
    for attempt in range(RETRIES):
        try:
            # a plain http:// URL needs no context (loading the trust store costs ~25 ms); a
            # redirect to https:// still gets urllib's default one: the system store, verified
            context = _ssl_context() if url.startswith("https:") else None
            return urllib.request.urlopen(request, timeout=TIMEOUT_S, context=context)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(url) from None
            if exc.code < 500:
                raise UnreachableError(f"{url}: HTTP {exc.code} {exc.reason}") from None
            last = f"HTTP {exc.code}"
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise UnreachableError(f"{url}: TLS certificate not trusted ({reason.verify_message})") from None
            last = str(reason)
        except (TimeoutError, ConnectionError, OSError) as exc:
            last = str(exc) or type(exc).__name__
        if attempt + 1 < RETRIES:
            time.sleep(0.3 * 2**attempt)
    raise UnreachableError(f"{url} unreachable after {RETRIES} tries: {last}")


def get_text(url: str, accept: str | None = None) -> str:
    with _open(url, accept) as response:
        body: bytes = response.read()
    return body.decode("utf-8", errors="replace")


def _strong_etag(headers) -> str | None:  # type: ignore[no-untyped-def]
    etag = headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else None  # a weak ETag does not name bytes


def head(url: str) -> Validator:
    """The server's current validator for url (HEAD): ETag and size."""
    with _open(url, method="HEAD") as response:
        length = response.headers.get("Content-Length")
        return Validator(etag=_strong_etag(response.headers), size=int(length) if length and length.isdigit() else None)


def download(url: str, dest: Path, on_progress: Callable[[int, int | None], None] | None = None) -> Downloaded:
    """Stream url into dest (created or truncated), hashing as it goes."""
    digest = hashlib.sha256()
    size = 0
    with _open(url) as response, dest.open("wb") as out:
        etag = _strong_etag(response.headers)
        total = response.headers.get("Content-Length")
        total_size = int(total) if total and total.isdigit() else None
        while chunk := response.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
            if on_progress:
                on_progress(size, total_size)
    return Downloaded(sha256=digest.hexdigest(), size=size, etag=etag)
