"""S3 (and S3-compatible servers) for the binary cache: GET, PUT and ListObjectsV2 of one bucket,
path-style, signed with AWS Signature Version 4, over http.client with http.py's total deadlines.

URL: `s3://BUCKET/PREFIX?endpoint=http://127.0.0.1:9000&region=us-east-1` (endpoint default:
https://s3.<region>.amazonaws.com; region default $AWS_REGION, $AWS_DEFAULT_REGION, us-east-1).
Credentials the standard AWS way: $AWS_ACCESS_KEY_ID + $AWS_SECRET_ACCESS_KEY (+ $AWS_SESSION_TOKEN),
else the profile $AWS_PROFILE (default `default`) of $AWS_SHARED_CREDENTIALS_FILE
(~/.aws/credentials). They go into request headers only: never a message, a log or a file.
"""

from __future__ import annotations

import configparser
import datetime as dt
import hashlib
import hmac
import http.client
import os
import re
import ssl
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import parse_qs, quote, urlsplit

from vllm_lock.errors import CacheUnreachableError, UnreachableError, UsageError
from vllm_lock.shell import http as http_shell

MAX_LISTING_PAGE = 16 << 20
MAX_LISTING_PAGES = 100_000  # 100 million keys at S3's 1000 a page
MAX_LISTED_KEYS = 1_000_000  # kept in memory: a server sending millions of tiny keys is refused
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
# what bounds a wheel's GET or PUT (http.py's download deadline), as messages name it
_TRANSFER_BOUND = "VLLM_LOCK_DOWNLOAD_BASE_S + its bytes / VLLM_LOCK_DOWNLOAD_FLOOR_RATE"


@dataclass(frozen=True, kw_only=True, slots=True)
class Location:
    bucket: str
    prefix: str  # "" or ending in "/"
    scheme: str
    host: str
    port: int
    region: str

    @property
    def label(self) -> str:
        """The URL as messages show it (no credentials are ever part of it)."""
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def parse_url(url: str, environ: Mapping[str, str]) -> Location:
    parts = urlsplit(url)
    bucket = parts.netloc
    if (parts.scheme != "s3" or not bucket or not bucket.isascii() or not all(c.isalnum() or c in ".-" for c in bucket)
            or parts.fragment):
        raise UsageError(f"{url}: not s3://BUCKET/PREFIX[?endpoint=URL&region=NAME]")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
    unknown = set(query) - {"endpoint", "region"}
    if unknown or any(len(v) != 1 for v in query.values()):
        raise UsageError(f"{url}: only endpoint= and region= may follow the '?', each once")
    region = query.get("region", [environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or "us-east-1"])[0]
    if not _REGION.fullmatch(region):
        # it is part of the default endpoint's host name and of every signature's scope
        raise UsageError(f"{url}: region {region[:40]!r} is not an S3 region name (like us-east-1)")
    endpoint = urlsplit(query.get("endpoint", [f"https://s3.{region}.amazonaws.com"])[0])
    if "@" in endpoint.netloc:
        # the URL is shown in logs and recorded in receipts: never echo it with what looks like a secret
        raise UsageError(f"s3://{bucket}: credentials in endpoint= would be logged: use AWS_ACCESS_KEY_ID and "
                         f"AWS_SECRET_ACCESS_KEY (or a profile)")
    if endpoint.scheme not in ("http", "https") or not endpoint.hostname or endpoint.path not in ("", "/"):
        raise UsageError(f"{url}: endpoint= must be http(s)://HOST[:PORT]")
    try:
        port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"{url}: the endpoint's port is not a port") from None
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        # a server or proxy that normalises the path would take /bucket/../other as another bucket
        raise UsageError(f"{url}: the prefix {prefix!r} has an empty, . or .. segment")
    return Location(bucket=bucket, prefix=prefix + "/" if prefix else "", scheme=endpoint.scheme,
                    host=endpoint.hostname, port=port, region=region)


def credentials(environ: Mapping[str, str], home: Path) -> Credentials:
    key, secret = environ.get("AWS_ACCESS_KEY_ID"), environ.get("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return Credentials(access_key=key, secret_key=secret, session_token=environ.get("AWS_SESSION_TOKEN") or None)
    path = Path(environ.get("AWS_SHARED_CREDENTIALS_FILE") or home / ".aws" / "credentials")
    profile = environ.get("AWS_PROFILE") or "default"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError, configparser.Error):
        raise UsageError(f"{path}: cannot be read as an AWS credentials file") from None
    if parser.has_section(profile):
        section = parser[profile]
        if section.get("aws_access_key_id") and section.get("aws_secret_access_key"):
            return Credentials(access_key=section["aws_access_key_id"], secret_key=section["aws_secret_access_key"],
                               session_token=section.get("aws_session_token") or None)
    raise UsageError(
        f"no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or profile {profile!r} in {path}"
    )


# ---------------------------------------------------------------- Signature Version 4 (pure)


def _uri_encode(text: str, *, keep_slash: bool) -> str:
    return quote(text, safe="/-_.~" if keep_slash else "-_.~")


def signed_headers(
    *, method: str, host: str, path: str, query: Mapping[str, str], payload_sha256: str,
    creds: Credentials, region: str, now: dt.datetime,
) -> dict[str, str]:
    """The headers of an SigV4-signed S3 request (Authorization included)."""
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    headers = {"host": host, "x-amz-content-sha256": payload_sha256, "x-amz-date": amz_date}
    if creds.session_token:
        headers["x-amz-security-token"] = creds.session_token
    names = sorted(headers)
    canonical_query = "&".join(
        f"{_uri_encode(k, keep_slash=False)}={_uri_encode(v, keep_slash=False)}" for k, v in sorted(query.items())
    )
    canonical = "\n".join([
        method, _uri_encode(path, keep_slash=True), canonical_query,
        "".join(f"{n}:{headers[n].strip()}\n" for n in names), ";".join(names), payload_sha256,
    ])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + creds.secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return headers


# ---------------------------------------------------------------- requests


class NotFound(Exception):
    pass


class Client:
    def __init__(self, location: Location, creds: Credentials) -> None:
        self.location = location
        self._creds = creds

    def _host(self) -> str:
        default = 443 if self.location.scheme == "https" else 80
        host = self.location.host if ":" not in self.location.host else f"[{self.location.host}]"
        return host if self.location.port == default else f"{host}:{self.location.port}"

    def _connection(self) -> http.client.HTTPConnection:
        # http.py's guarded connections: the request's total deadline shuts their sockets
        if self.location.scheme == "https":
            return http_shell._GuardedHTTPSConnection(self.location.host, self.location.port,
                                                      context=http_shell._ssl_context())
        return http_shell._GuardedHTTPConnection(self.location.host, self.location.port)

    def _request(
        self, guard: http_shell._Deadline, method: str, key: str | None, *,
        query: Mapping[str, str] | None = None, body: IO[bytes] | bytes | None = None, size: int = 0,
        payload_sha256: str = EMPTY_SHA256, bound: str = "VLLM_LOCK_CACHE_DEADLINE",
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """One request, sent again (a fresh signature, the body from its start) after a network error
        or a 5xx answer, as S3 asks of its clients, while the guard's deadline allows: S3-compatible
        servers answer 500 to two PUTs of one key at the same instant."""
        label = f"s3://{self.location.bucket}/{key or ''}"
        file = body if body is not None and not isinstance(body, bytes) else None
        start = file.tell() if file is not None else 0

        def once() -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
            if file is not None:
                file.seek(start)
            conn = self._connection()
            try:
                target, headers = self._signed(method, key, query, body is not None, size, payload_sha256)
                conn.request(method, target, body=body, headers=headers)
                response = conn.getresponse()
            except ssl.SSLCertVerificationError as exc:  # no passing fault: sent again, it fails again
                conn.close()
                raise CacheUnreachableError(f"{label}: TLS certificate not trusted ({exc.verify_message})") from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise http_shell._Passing(f"{type(exc).__name__}: {exc}") from None
            if response.status < 300:
                return conn, response
            detail = _s3_error(response.read(4096))
            conn.close()
            if response.status == 404:
                raise NotFound(label)
            if response.status < 500:
                hint = " (check the AWS credentials)" if response.status == 403 else ""
                raise CacheUnreachableError(f"{label}: {method} answered HTTP {response.status}{detail}{hint}")
            raise http_shell._Passing(f"{method} answered HTTP {response.status}{detail}")

        try:
            return http_shell._retried(once, guard)
        except http_shell._Spent as spent:
            raise CacheUnreachableError(
                self._failure(label, guard, f"{spent.last} (after {spent.tries_text})", bound)) from None

    def _signed(
        self, method: str, key: str | None, query: Mapping[str, str] | None, has_body: bool, size: int,
        payload_sha256: str,
    ) -> tuple[str, dict[str, str]]:
        """The request target and its headers, signed now (a retry signs again: the date moves)."""
        path = f"/{self.location.bucket}" + (f"/{key}" if key is not None else "")
        query = dict(query or {})
        headers = signed_headers(
            method=method, host=self._host(), path=path, query=query, payload_sha256=payload_sha256,
            creds=self._creds, region=self.location.region, now=dt.datetime.now(dt.UTC),
        )
        if has_body:
            headers["content-length"] = str(size)
        target = _uri_encode(path, keep_slash=True)
        if query:
            target += "?" + "&".join(f"{_uri_encode(k, keep_slash=False)}={_uri_encode(v, keep_slash=False)}"
                                     for k, v in sorted(query.items()))
        return target, headers

    def _failure(self, label: str, guard: http_shell._Deadline, detail: str,
                 bound: str = "VLLM_LOCK_CACHE_DEADLINE") -> str:
        """bound: the setting that gave the deadline, which the message names."""
        if guard.expired.is_set():
            return f"{label} did not answer within {guard.seconds:g} s ({bound})"
        return f"{label}: {detail}"

    def get(self, key: str, *, limit: int, deadline: float) -> bytes:
        """The object's bytes (at most limit + 1 of them: the caller refuses more); NotFound."""
        label = self.location.label + key
        with http_shell._deadline(deadline) as guard:
            conn, response = self._request(guard, "GET", self.location.prefix + key)
            try:
                return b"".join(_chunks(label, response, guard, limit + 1))
            finally:
                conn.close()

    def download(self, key: str, dest: Path, *, size: int) -> tuple[str, int]:
        """The object into dest, cut at size bytes: (sha256, bytes written)."""
        label = self.location.label + key
        digest, written = hashlib.sha256(), 0
        with http_shell._deadline(http_shell.bounds().download_deadline(size)) as guard:
            conn, response = self._request(guard, "GET", self.location.prefix + key, bound=_TRANSFER_BOUND)
            try:
                with dest.open("wb") as out:
                    for chunk in _chunks(label, response, guard, size):
                        digest.update(chunk)
                        out.write(chunk)
                        written += len(chunk)
            finally:
                conn.close()
        return digest.hexdigest(), written

    def put(self, key: str, body: IO[bytes] | bytes, *, size: int, sha256: str) -> None:
        with http_shell._deadline(http_shell.bounds().download_deadline(size)) as guard:
            conn, response = self._request(guard, "PUT", self.location.prefix + key, body=body, size=size,
                                           payload_sha256=sha256, bound=_TRANSFER_BOUND)
            response.read(4096)
            conn.close()

    def list_keys(self, *, deadline: float) -> Iterator[str]:
        """Every key directly under the prefix (relative to it), page by page, all pages within one total
        deadline: a server that answers `IsTruncated` forever (the same continuation token, or a
        new one each time) is refused, not followed."""
        token: str | None = None
        tokens: set[str] = set()
        keys: list[str] = []
        with http_shell._deadline(deadline) as guard:
            for _ in range(MAX_LISTING_PAGES):
                # delimiter: the top level only (the entries), not every wheels/<sha256>/ object
                query = {"list-type": "2", "prefix": self.location.prefix, "delimiter": "/"}
                if token:
                    query["continuation-token"] = token
                if guard.expired.is_set():
                    raise CacheUnreachableError(self._failure(self.location.label, guard, "listing"))
                conn, response = self._request(guard, "GET", None, query=query)
                try:
                    page = b"".join(_chunks(self.location.label, response, guard, MAX_LISTING_PAGE))
                finally:
                    conn.close()
                try:
                    root = ElementTree.fromstring(page)
                except ElementTree.ParseError as exc:
                    raise CacheUnreachableError(f"{self.location.label}: the listing is not S3's XML ({exc})") from None
                for item in root.iter(f"{_NS}Contents"):
                    key = item.findtext(f"{_NS}Key") or ""
                    if key.startswith(self.location.prefix):
                        keys.append(key[len(self.location.prefix):])
                if len(keys) > MAX_LISTED_KEYS:
                    raise CacheUnreachableError(f"{self.location.label}: the listing has more than {MAX_LISTED_KEYS} "
                                                f"keys: refusing it")
                token = root.findtext(f"{_NS}NextContinuationToken")
                if root.findtext(f"{_NS}IsTruncated") != "true" or not token:
                    return iter(keys)
                if token in tokens:
                    raise CacheUnreachableError(f"{self.location.label}: the listing repeats a continuation token "
                                                f"(a server that never ends its listing): refusing it")
                tokens.add(token)
        raise CacheUnreachableError(
            f"{self.location.label}: the listing has more than {MAX_LISTING_PAGES} pages: refusing it")


def _chunks(label: str, response: http.client.HTTPResponse, guard: object, limit: int) -> Iterator[bytes]:
    try:
        yield from http_shell._read_body(label, response, guard, limit)  # type: ignore[arg-type]
    except http_shell._TooLong:
        raise CacheUnreachableError(f"{label}: sends more than {limit} bytes: refusing it") from None
    except UnreachableError as exc:
        raise CacheUnreachableError(str(exc)) from None


def _s3_error(body: bytes) -> str:
    """S3's error code from its XML body (`: NoSuchBucket`), or nothing."""
    try:
        code = ElementTree.fromstring(body).findtext("Code")
    except ElementTree.ParseError:
        return ""
    return f": {code[:60]}" if code and code.isprintable() else ""


def client(url: str) -> Client:
    return Client(parse_url(url, os.environ), credentials(os.environ, Path.home()))
