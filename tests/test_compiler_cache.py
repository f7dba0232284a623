"""The compiler cache's rules (vllm_lock/compiler_cache.py): URLs, the build's variables, counting."""

from __future__ import annotations

import json

import pytest

from vllm_lock.compiler_cache import (
    CompilerCache,
    CompilerCacheError,
    parse_compiler_cache,
    parse_sccache_version,
    parse_stats,
    sccache_env,
)


@pytest.mark.parametrize(("url", "expected"), [
    ("/srv/ccache", CompilerCache(kind="dir", location="/srv/ccache")),
    ("file:///srv/ccache", CompilerCache(kind="dir", location="/srv/ccache")),
    ("s3://build-cache", CompilerCache(kind="s3", location="build-cache")),
    ("s3://build-cache/vllm/objects?endpoint=http://127.0.0.1:9000&region=eu-west-1",
     CompilerCache(kind="s3", location="build-cache", prefix="vllm/objects", endpoint="http://127.0.0.1:9000",
                   region="eu-west-1")),
])
def test_urls(url: str, expected: CompilerCache) -> None:
    assert parse_compiler_cache(url) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("relative/dir", "use a folder, file:///folder or s3://bucket/prefix"),
    ("https://cache.example/x", "use a folder, file:///folder or s3://bucket/prefix"),
    ("file://host/srv", "a file URL needs an absolute path and no host"),
    ("s3://UPPER", "is not an S3 bucket name"),
    ("s3://bucket/a/../b", "has an empty, . or .. segment"),
    ("s3://user:pw@bucket", "is not an S3 bucket name"),
    ("s3://bucket?endpoint=ftp://x", "the endpoint must be an http(s) URL"),
    ("s3://bucket?profile=x", "only endpoint= and region= are understood"),
    ("s3://bucket?region=a&region=b", "only endpoint= and region= are understood"),
])
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(CompilerCacheError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_compiler_cache(url)


def test_env_for_a_folder_and_for_s3() -> None:
    folder = sccache_env(CompilerCache(kind="dir", location="/c"), sccache="/bin/sccache", basedirs=["/g/1"],
                         server_socket="/tmp/s/server", error_log="/g/1/log")
    assert folder["SCCACHE_DIR"] == "/c" and "SCCACHE_BUCKET" not in folder
    assert folder["SCCACHE_BASEDIRS"] == "/g/1" and folder["SCCACHE_SERVER_UDS"] == "/tmp/s/server"
    assert {folder[f"CMAKE_{lang}_COMPILER_LAUNCHER"] for lang in ("C", "CXX", "CUDA")} == {"/bin/sccache"}
    s3 = sccache_env(parse_compiler_cache("s3://bkt/p?endpoint=http://127.0.0.1:9"), sccache="s", basedirs=["/a", "/b"],
                     server_socket="/s", error_log="l")
    assert (s3["SCCACHE_BUCKET"], s3["SCCACHE_S3_KEY_PREFIX"], s3["SCCACHE_ENDPOINT"], s3["SCCACHE_S3_USE_SSL"]) == (
        "bkt", "p", "http://127.0.0.1:9", "false")
    assert s3["SCCACHE_BASEDIRS"] == "/a:/b" and "SCCACHE_DIR" not in s3


def _stats(hits: dict[str, int], misses: dict[str, int], errors: dict[str, int] | None = None) -> str:
    return json.dumps({"stats": {
        "cache_hits": {"counts": hits}, "cache_misses": {"counts": misses},
        "cache_errors": {"counts": errors or {}}, "non_cacheable_compilations": 2,
        "cache_read_errors": 0, "cache_write_errors": 1,
    }})


def test_stats_count_compile_steps_not_nvccs_inner_steps() -> None:
    # what sccache 0.16 printed for one gcc and one nvcc compilation, each compiled once then hit
    stats = parse_stats(_stats({"C/C++": 1, "CUDA": 1, "CUBIN": 1},
                               {"C/C++": 1, "CUDA": 1, "PTX": 2, "CUBIN": 1, "CUDA (Device code)": 2}))
    assert (stats.hits, stats.misses, stats.steps, stats.not_cacheable, stats.errors) == (2, 2, 4, 2, 1)
    assert stats.hit_ratio == 0.5
    assert stats.describe() == "2 of 4 compile steps from the cache (50%), 2 not cacheable, 1 cache errors"


@pytest.mark.parametrize("text", ["", "{}", json.dumps({"stats": {"cache_hits": {"counts": {"C/C++": -1}}}}),
                                  _stats({"C/C++": True}, {})])
def test_unreadable_stats(text: str) -> None:
    with pytest.raises(CompilerCacheError, match="sccache's statistics"):
        parse_stats(text)


def test_version() -> None:
    assert parse_sccache_version("sccache 0.16.0\n") == "0.16.0"
    assert parse_sccache_version("sccache-dist 0.16.0") is None
