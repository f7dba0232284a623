"""HTTP(S) GETs against package indexes: system trust store, bounded retries, and a total
deadline per request that no server can stretch (not only a per-read timeout).

Bounds (seconds or bytes; each overridable by its environment variable):
  VLLM_LOCK_HTTP_DEADLINE          60      a page or HEAD request, retries included
  VLLM_LOCK_HTTP_READ_TIMEOUT      20      one connect or read
  VLLM_LOCK_DOWNLOAD_BASE_S        120     a download: this plus its size at the floor rate ...
  VLLM_LOCK_DOWNLOAD_FLOOR_RATE    262144  ... (bytes/s; a 2 GB wheel may take 2 h 9 min)
  VLLM_LOCK_LOW_SPEED_RATE         16384   and never slower than this (bytes/s) ...
  VLLM_LOCK_LOW_SPEED_TIME         60      ... averaged over this many seconds
  VLLM_LOCK_DOWNLOAD_MAX           8 GiB   the most a download of unknown size may bring
A body longer than the size expected (the lock's, else Content-Length, else the maximum) is
cut there and refused.
"""

from __future__ import annotations

import contextvars
import errno
import functools
import hashlib
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vllm_lock.errors import IntegrityError, PreflightError, UnreachableError
from vllm_lock.shell import limits, mirroring

RETRIES = 3
FIRST_PAUSE_S = 0.3  # doubled before each later try
CHUNK = 1 << 20
USER_AGENT = "vllm-lock"
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True, slots=True)
class Bounds:
    page_deadline: float
    read_timeout: float
    download_base: float
    floor_rate: float
    low_speed_rate: float
    low_speed_time: float
    download_max: int

    def download_deadline(self, size: int | None) -> float:
        return self.download_base + (size if size is not None else self.download_max) / self.floor_rate


def bounds() -> Bounds:
    return Bounds(
        page_deadline=limits.setting("VLLM_LOCK_HTTP_DEADLINE", 60),
        read_timeout=limits.setting("VLLM_LOCK_HTTP_READ_TIMEOUT", 20),
        download_base=limits.setting("VLLM_LOCK_DOWNLOAD_BASE_S", 120),
        floor_rate=limits.setting("VLLM_LOCK_DOWNLOAD_FLOOR_RATE", 256 * 1024),
        low_speed_rate=limits.setting("VLLM_LOCK_LOW_SPEED_RATE", 16 * 1024),
        low_speed_time=limits.setting("VLLM_LOCK_LOW_SPEED_TIME", 60),
        download_max=int(limits.setting("VLLM_LOCK_DOWNLOAD_MAX", 8 << 30)),
    )


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


# ---------------------------------------------------------------- the deadline guard


class _Deadline:
    """Shuts down every socket a request opened when its total time is up: a server that
    sends one byte just before each read timeout cannot keep a blocked read alive."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
        if self.expired.is_set():
            self._expire()

    def _expire(self) -> None:
        self.expired.set()
        with self._lock:
            for sock in self._sockets:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cancel(self) -> None:
        self._timer.cancel()


_current: contextvars.ContextVar[_Deadline | None] = contextvars.ContextVar("_current", default=None)


def _read_timeout() -> float:
    guard = _current.get()
    timeout = bounds().read_timeout
    return max(0.05, min(timeout, guard.remaining())) if guard else timeout


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.timeout = _read_timeout()
        super().connect()
        if guard := _current.get():
            guard.watch(self.sock)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        self.timeout = _read_timeout()
        super().connect()
        if guard := _current.get():
            guard.watch(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_GuardedHTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_GuardedHTTPSConnection, req, context=_ssl_context())


@contextmanager
def _deadline(seconds: float) -> Iterator[_Deadline]:
    guard = _Deadline(seconds)
    token = _current.set(guard)
    try:
        yield guard
    finally:
        _current.reset(token)
        guard.cancel()


# ---------------------------------------------------------------- the retry policy (http.py's and s3.py's)


class _Passing(Exception):
    """A try's failure that may pass (a 5xx answer, a network error): worth another try."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Spent(Exception):
    """No try succeeded: the last passing failure, and how many tries were sent."""

    def __init__(self, last: str, tries: int) -> None:
        super().__init__(last)
        self.last = last
        self.tries = tries

    @property
    def tries_text(self) -> str:
        return "1 try" if self.tries == 1 else f"{self.tries} tries"


def _retried(once: Callable[[], T], guard: _Deadline, *, pause: Callable[[float], None] = time.sleep) -> T:
    """once()'s result, tried at most RETRIES times with pauses of 0.3 s, then 0.6 s, between tries.
    Any error but _Passing is final and propagates at once; after the last _Passing, _Spent. No try
    starts once the guard has expired, nor after a pause the deadline could not hold: the tries
    stop there rather than come in a burst just before the deadline."""
    last, tries = "", 0
    for attempt in range(RETRIES):
        if guard.expired.is_set():
            break
        tries += 1
        try:
            return once()
        except _Passing as failure:
            last = failure.detail
        wait = limits.retry_pause(attempt, RETRIES, guard.remaining(), FIRST_PAUSE_S)
        if wait is None:
            break
        pause(wait)
    raise _Spent(last, tries)


# ---------------------------------------------------------------- requests


def _opener() -> urllib.request.OpenerDirector:
    """http and https only (build_opener would add ftp:, file: and data:, which a redirect
    could reach), through the guarded connections; proxies from the environment."""
    opener = urllib.request.OpenerDirector()
    for handler in (
        urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), _HTTPHandler(), _HTTPSHandler(),
        urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPRedirectHandler(),
        urllib.request.HTTPErrorProcessor(),
    ):
        opener.add_handler(handler)
    return opener


def _open(url: str, guard: _Deadline, accept: str | None = None, method: str = "GET") -> Any:
    """The response to one request, retried (5xx, network) until the guard's deadline; from
    the URL's mirror when the process has one for it (errors then name both)."""
    mirrors = mirroring.active()
    fetched = mirrors.rewrite(url)
    if not fetched.lower().startswith(("http://", "https://")):
        raise UnreachableError(f"refusing to fetch {mirrors.describe(url)!r}: only http and https URLs are fetched")
    url, label = fetched, mirrors.describe(url)
    headers = {"User-Agent": USER_AGENT}
    if accept:
        headers["Accept"] = accept
    request = urllib.request.Request(url, headers=headers, method=method)
    opener = _opener()

    def once() -> Any:
        try:
            return opener.open(request, timeout=_read_timeout())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise NotFound(label) from None
            if exc.code < 500:
                raise UnreachableError(f"{label}: HTTP {exc.code} {exc.reason}") from None
            raise _Passing(f"HTTP {exc.code}") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, str) and reason.startswith("unknown url type"):
                raise UnreachableError(f"{label}: redirected to a non-http(s) URL ({reason}): refusing it") from None
            if isinstance(reason, ssl.SSLCertVerificationError):
                raise UnreachableError(f"{label}: TLS certificate not trusted ({reason.verify_message})") from None
            raise _Passing(str(reason)) from None
        except (TimeoutError, ConnectionError, OSError, http.client.HTTPException) as exc:
            raise _Passing(str(exc) or type(exc).__name__) from None

    try:
        return _retried(once, guard)
    except _Spent as spent:
        raise _unreachable(label, guard, f"unreachable after {spent.tries_text}: {spent.last}") from None


def _unreachable(url: str, guard: _Deadline, detail: str) -> UnreachableError:
    if guard.expired.is_set():
        return UnreachableError(f"{url} did not finish within {guard.seconds:g} s (the request's total deadline)")
    return UnreachableError(f"{url} {detail}")


def _read_body(url: str, response: Any, guard: _Deadline, limit: int) -> Iterator[bytes]:
    """The body in chunks as they arrive; stops (raising) past the deadline, below the
    low-speed rule, or past `limit` bytes."""
    rule = bounds()
    window_start, window_bytes, total = time.monotonic(), 0, 0
    while True:
        try:
            chunk = response.read1(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _unreachable(url, guard, f"broke off after {total} bytes: {exc or type(exc).__name__}") from None
        if guard.expired.is_set():
            raise _unreachable(url, guard, "")
        if not chunk:
            return
        total += len(chunk)
        if total > limit:
            raise _TooLong(total)
        window_bytes += len(chunk)
        now = time.monotonic()
        if now - window_start >= rule.low_speed_time:
            if window_bytes < rule.low_speed_rate * (now - window_start):
                raise UnreachableError(
                    f"{url} too slow: {window_bytes} bytes in {now - window_start:.0f} s "
                    f"(less than {rule.low_speed_rate:g} bytes/s; VLLM_LOCK_LOW_SPEED_RATE)"
                )
            window_start, window_bytes = now, 0
        yield chunk


class _TooLong(Exception):
    pass


def get_text(url: str, accept: str | None = None) -> str:
    """A page (an index's HTML or JSON), whole, within the page deadline and at most 64 MiB."""
    rule = bounds()
    with _deadline(rule.page_deadline) as guard, _open(url, guard, accept) as response:
        try:
            body = b"".join(_read_body(url, response, guard, 64 << 20))
        except _TooLong:
            raise UnreachableError(f"{url}: the page is larger than 64 MiB: refusing it") from None
    # a mirror's links to itself read as the original's: the lock keeps the original URLs
    return mirroring.active().restore(body.decode("utf-8", errors="replace"))


def _strong_etag(headers: Any) -> str | None:
    etag = headers.get("ETag")
    return etag if etag and not etag.startswith("W/") else None  # a weak ETag does not name bytes


def _length(headers: Any) -> int | None:
    value = headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def head(url: str, *, deadline: float | None = None) -> Validator:
    """The server's current validator for url (HEAD): ETag and size."""
    with _deadline(deadline or bounds().page_deadline) as guard, _open(url, guard, method="HEAD") as response:
        return Validator(etag=_strong_etag(response.headers), size=_length(response.headers))


def download(
    url: str,
    dest: Path,
    on_progress: Callable[[int, int | None], None] | None = None,
    *,
    expected_size: int | None = None,
    name: str | None = None,
) -> Downloaded:
    """Stream url into dest (created or truncated), hashing as it goes, within a deadline that
    scales with the size. A body longer than expected_size (else Content-Length, else the
    documented maximum) is cut there and refused (IntegrityError); a full disk names dest."""
    rule = bounds()
    label = name or dest.name
    digest = hashlib.sha256()
    size = 0
    with _deadline(rule.download_deadline(expected_size)) as guard, _open(url, guard) as response:
        etag = _strong_etag(response.headers)
        announced = _length(response.headers)
        if expected_size is not None and announced is not None and announced != expected_size:
            raise IntegrityError(
                f"{label}: {url} announces {announced} bytes, the lock says {expected_size}: refusing it"
            )
        limit = expected_size if expected_size is not None else (announced or rule.download_max)
        try:
            with dest.open("wb") as out:
                for chunk in _read_body(url, response, guard, limit):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                    if on_progress:
                        on_progress(size, announced or expected_size)
        except _TooLong:
            what = "the lock's size" if expected_size is not None else (
                "its Content-Length" if announced
                else f"the download maximum (VLLM_LOCK_DOWNLOAD_MAX={rule.download_max})"
            )
            raise IntegrityError(f"{label}: {url} sends more than {what} of {limit} bytes: refusing it") from None
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise PreflightError(f"no space left on the device while writing {dest} ({label})") from None
            raise
        if announced is not None and size < announced:
            raise UnreachableError(f"{url} broke off after {size} of {announced} bytes")
    return Downloaded(sha256=digest.hexdigest(), size=size, etag=etag)
