"""The compiler cache (sccache) for builds that differ: where it keeps objects, how the build
reaches it, and what its statistics say. Pure: the shell runs the server (shell/sccache.py).

The compiler cache is a tool, not an input: it changes how long a build takes, never what it
produces, so it stays out of the lock and the build identity; the install receipt records the
version that ran and its hits and misses."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

# Pinned: the `sccache` extra of this package installs exactly this version, and install refuses another.
SCCACHE_VERSION = "0.16.0"

# sccache counts the steps nvcc runs inside one compilation (cudafe++, cicc, ptxas) apart from the
# compilation itself; a build's compile steps are the top-level ones.
_SUB_STEPS = frozenset({"PTX", "CUBIN", "CUDA (Device code)"})
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class CompilerCacheError(ValueError):
    """A compiler-cache URL or sccache's answer that cannot be used."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CompilerCache:
    """Where compiled objects are shared: a local folder, or an S3 bucket (any S3-compatible server)."""

    kind: Literal["dir", "s3"]
    location: str  # the folder (absolute) or the bucket
    prefix: str = ""
    endpoint: str | None = None
    region: str = "us-east-1"

    def describe(self) -> str:
        if self.kind == "dir":
            return self.location
        where = f"s3://{self.location}/{self.prefix}".rstrip("/")
        return f"{where} ({self.endpoint})" if self.endpoint else where


def parse_compiler_cache(url: str) -> CompilerCache:
    """`/abs/folder`, `file:///abs/folder`, or `s3://bucket[/prefix][?endpoint=http://host:port&region=r]`."""
    if url.startswith("/"):
        return CompilerCache(kind="dir", location=url)
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not path.startswith("/"):
            raise CompilerCacheError(f"compiler cache {url!r}: a file URL needs an absolute path and no host")
        return CompilerCache(kind="dir", location=path)
    if parts.scheme != "s3":
        raise CompilerCacheError(f"compiler cache {url!r}: use a folder, file:///folder or s3://bucket/prefix")
    if not _BUCKET.fullmatch(parts.netloc):
        raise CompilerCacheError(f"compiler cache {url!r}: {parts.netloc!r} is not an S3 bucket name")
    if parts.fragment or parts.username or parts.password:
        raise CompilerCacheError(f"compiler cache {url!r}: no fragment or credentials in the URL (use AWS_* variables)")
    query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    unknown = sorted(set(query) - {"endpoint", "region"})
    if unknown or any(len(v) != 1 for v in query.values()):
        raise CompilerCacheError(f"compiler cache {url!r}: only endpoint= and region= are understood, once each")
    endpoint = query.get("endpoint", [None])[0]
    if endpoint is not None and not _plain_endpoint(endpoint):
        raise CompilerCacheError(f"compiler cache {url!r}: the endpoint must be an http(s) URL, "
                                 "http(s)://HOST[:PORT] (no credentials, path, query or fragment: "
                                 "use AWS_* variables)")
    prefix = parts.path.strip("/")
    if prefix and any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise CompilerCacheError(f"compiler cache {url!r}: the prefix {prefix!r} has an empty, . or .. segment")
    region = query.get("region", ["us-east-1"])[0]
    if not _REGION.fullmatch(region):
        raise CompilerCacheError(f"compiler cache {url!r}: {region[:40]!r} is not an S3 region name")
    return CompilerCache(kind="s3", location=parts.netloc, prefix=prefix, endpoint=endpoint, region=region)


def _plain_endpoint(endpoint: str) -> bool:
    """http(s)://HOST[:PORT] and nothing else: the endpoint is shown in logs and the receipt."""
    parts = urlsplit(endpoint)
    try:
        parts.port  # noqa: B018 (a port that is not one raises)
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and bool(parts.hostname) and parts.username is None
            and parts.password is None and parts.path in ("", "/") and not parts.query and not parts.fragment
            and endpoint.isprintable() and not any(c.isspace() for c in endpoint))


def sccache_env(cache: CompilerCache, *, sccache: str, basedirs: Sequence[str], server_socket: str,
                error_log: str) -> dict[str, str]:
    """The variables the build and sccache's server run with. CMake (>= 3.17) takes its compiler
    launchers from the environment, and vLLM's setup.py adds the same launchers when `sccache` is
    on PATH; the base directories make objects built under one generation's folder hit under another's."""
    env = {
        # a server of our own on a Unix socket in a folder only we can enter: sccache's server runs
        # whatever compiler a client names, so a TCP port would let any local user run code as us
        "SCCACHE_SERVER_UDS": server_socket,
        "SCCACHE_IDLE_TIMEOUT": "0",
        "SCCACHE_BASEDIRS": ":".join(basedirs),
        "SCCACHE_ERROR_LOG": error_log,
        "SCCACHE_LOG": "warn",
        "SCCACHE_DIRECT": "false",  # preprocessor mode: the key covers every header, wherever it lives
        "CMAKE_C_COMPILER_LAUNCHER": sccache,
        "CMAKE_CXX_COMPILER_LAUNCHER": sccache,
        "CMAKE_CUDA_COMPILER_LAUNCHER": sccache,
    }
    if cache.kind == "dir":
        env["SCCACHE_DIR"] = cache.location
    else:
        env |= {"SCCACHE_BUCKET": cache.location, "SCCACHE_REGION": cache.region}
        if cache.prefix:
            env["SCCACHE_S3_KEY_PREFIX"] = cache.prefix
        if cache.endpoint:
            env["SCCACHE_ENDPOINT"] = cache.endpoint
            env["SCCACHE_S3_USE_SSL"] = "true" if cache.endpoint.startswith("https:") else "false"
    return env


@dataclass(frozen=True, kw_only=True, slots=True)
class CompileStats:
    """sccache's counts for one build: compile steps (nvcc's inner steps not counted twice)."""

    hits: int
    misses: int
    not_cacheable: int
    errors: int

    @property
    def steps(self) -> int:
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.steps if self.steps else 0.0

    def describe(self) -> str:
        return (f"{self.hits} of {self.steps} compile steps from the cache ({self.hit_ratio:.0%}), "
                f"{self.not_cacheable} not cacheable, {self.errors} cache errors")


def _top_level(counts: object) -> int:
    if not isinstance(counts, Mapping):
        raise CompilerCacheError("sccache's statistics have no counts")
    total = 0
    for language, count in counts.items():
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise CompilerCacheError(f"sccache's statistics: count {count!r} for {language!r}")
        if language not in _SUB_STEPS:
            total += count
    return total


@dataclass(kw_only=True, slots=True)
class CompilerCacheSession:
    """One build's use of the compiler cache: what the build adds to its environment and, filled
    in once the build is over (hence not frozen), what sccache counted or why it could not."""

    binary: str
    cache: CompilerCache
    build_env: dict[str, str]
    version: str = SCCACHE_VERSION
    stats: CompileStats | None = field(default=None)
    problem: str | None = None


def parse_stats(text: str) -> CompileStats:
    """`sccache --show-stats --stats-format json` -> CompileStats."""
    try:
        stats = json.loads(text)["stats"]
        return CompileStats(
            hits=_top_level(stats["cache_hits"]["counts"]),
            misses=_top_level(stats["cache_misses"]["counts"]),
            not_cacheable=int(stats["non_cacheable_compilations"]),
            errors=_top_level(stats["cache_errors"]["counts"]) + int(stats["cache_read_errors"])
            + int(stats["cache_write_errors"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CompilerCacheError(f"sccache's statistics cannot be read: {exc}") from None


def parse_sccache_version(text: str) -> str | None:
    """`sccache 0.16.0` -> "0.16.0"."""
    found = re.fullmatch(r"sccache (\d+\.\d+\.\d+)\s*", text)
    return found.group(1) if found else None
