"""Fuzz of the lock reader: mutations of a valid lock (keys dropped and added, types changed,
strings replaced by hostile values, ints negative or huge), content hash recomputed as an attacker
would. Each must read cleanly, keeping the reader's promises, or raise LockInvalidError with one
line: never another exception. A small run here; scripts/fuzz-locks.sh runs a long one
(VLLM_LOCK_FUZZ_EXAMPLES)."""

from __future__ import annotations

import copy
import os
import re
from typing import Any
from urllib.parse import unquote, urlsplit

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from sample_lock import make_lock, package

from vllm_lock import codec
from vllm_lock.errors import LockInvalidError
from vllm_lock.model import BUILD_ENV_RULES, MAX_WHEELS, ExternalSource, Lock, Promotion, Provenance
from vllm_lock.source_layout import SCRIPT_PATHS

from .conftest import with_hash

EXAMPLES = int(os.environ.get("VLLM_LOCK_FUZZ_EXAMPLES", "300"))

CUTLASS = ExternalSource(
    name="cutlass", repository="https://github.com/nvidia/cutlass.git", ref="v4.2.1", ref_kind="tag",
    commit="c" * 40, override="VLLM_CUTLASS_SRC_DIR", declared_in="CMakeLists.txt",
)
BASE = codec.to_data(make_lock(
    external_sources=(CUTLASS,),
    # a package with two wheels, so that mutations reach a wheel other than the first
    extra=(package("filelock", "3.20.0"),
           package("sound-fake", "1.0.0", tags=("py3-none-any", "py3-none-manylinux_2_28_x86_64"))),
    provenance=Provenance(tool_version="0.1.0", uv_version="0.9.0", resolved_at="2026-11-20T12:00:00Z",
                          promotion=Promotion(from_name="dev", from_content_hash="sha256:" + "a" * 64,
                                              promoted_at="2026-11-21T00:00:00Z", forced=False,
                                              test_receipts=("receipts/x.json sha256:ab passed on vm",))),
))

HOSTILE = [
    "-cimport os;os.system('touch /tmp/x')", "--upload-pack=touch /tmp/x;", "ext::sh -c touch% /tmp/x",
    "../../../../tmp/x/evil.whl", "/etc/passwd", "file:///etc/passwd", "data:text/plain,x", "ftp://h/x.whl",
    "ssh://-oProxyCommand=x/y", "host:path", "a\x00b", "a\nb", "\u202eevil", "LD_PRELOAD",
    "PATH", "use_existing_torch.py", "tools/use_existing_torch.py", "..", "", " ", "main", "v1..2", "a~1",
    "https://pypi.org/simple", "https://evil.example/x.whl", "%2e%2e%2fx.whl", "torch-1-py3-none-any.whl",
    "0" * 40, "c" * 40, "http://[::1/x", "https://[zz]/x.whl", "ssh://a]b/x", "2026-02-30", "2026-11-20T10:00:00Z",
    "2026-11-20T10:00:00Z\n", "ṁain", "１２.０",
]
scalars = st.one_of(
    st.sampled_from(HOSTILE),
    st.integers(min_value=2040, max_value=100_000).map(lambda n: "x" * n),  # at and far over the bounds
    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 2**62, 2**63 - 1]),
    st.booleans(),
    st.floats(allow_nan=False),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.text(alphabet="abcdefghij-_", min_size=1, max_size=8), inner, max_size=3), max_leaves=6)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        found += _paths(child, (*prefix, key))
    return found


def _parent(data: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        data = data[part]
    return data


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, leaf = _parent(data, path), path[-1]
        action = draw(st.sampled_from(["drop", "add", "replace", "hostile", "prefix", "int", "type"]))
        if action == "drop":
            del parent[leaf]
        elif action == "add":
            target = parent[leaf] if isinstance(parent[leaf], (dict, list)) else parent
            if isinstance(target, dict):
                target[draw(st.sampled_from(["surprise", "url", "env", "x-y"]))] = draw(values)
            else:
                target.append(draw(values))
        elif action == "replace":
            parent[leaf] = draw(values)
        elif action == "hostile":
            parent[leaf] = draw(st.sampled_from(HOSTILE))
        elif action == "prefix" and isinstance(parent[leaf], str):
            parent[leaf] = draw(st.sampled_from(["-", "../", "/", "ext::", "file://", "\x00", "é", "http://[",
                                                 "https://]"])) + parent[leaf]
        elif action == "int":
            parent[leaf] = draw(st.sampled_from([-1, 0, 2**63 - 1, -(2**63)]))
        elif action == "type":
            parent[leaf] = draw(st.sampled_from([[], {}, True, 1.5, "1", 1]))
    return data


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (k, *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value] if isinstance(value, str) else []


def _promises(lock: Lock) -> None:
    """What a lock that reads cleanly guarantees to the code that runs it."""
    assert all(s.isprintable() and len(s) <= 2048 for s in _strings(codec.to_data(lock)))
    assert lock.layout.stripping_script in SCRIPT_PATHS
    for url in (lock.vllm.url, *(s.repository for s in lock.external_sources)):
        assert not url.startswith("-") and "::" not in url.split("://")[0]
        assert urlsplit(url).scheme in ("https", "http", "ssh", "git", "file")
    for locked in lock.packages:
        assert 1 <= len(locked.wheels) <= MAX_WHEELS
        for wheel in locked.wheels:
            plain = unquote(wheel.filename)
            assert "/" not in plain and not plain.startswith((".", "-")) and plain.endswith(".whl")
            assert urlsplit(wheel.url).scheme in ("https", "http")
    assert {key for key, _ in lock.build.env} <= set(BUILD_ENV_RULES)
    for source in lock.external_sources:
        assert source.override.endswith("_SRC_DIR") or source.override.startswith("FETCHCONTENT_SOURCE_DIR_")
    for path in (f.path for f in lock.layout.patched_files):
        assert not path.startswith(("/", "-")) and ".." not in path.split("/")


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated())
def test_a_mutated_lock_reads_cleanly_or_is_refused_in_one_line(data: dict[str, Any]) -> None:
    try:
        text = with_hash(data)
    except Exception:  # tomlkit cannot write it: no attacker can either
        return
    try:
        lock = codec.loads(text, origin="fuzz.lock.toml")
    except LockInvalidError as exc:
        message = str(exc)
        assert message.startswith("fuzz.lock.toml: ") and "\n" not in message and "\r" not in message
        assert len(message) < 1200, message[:200]
        return
    _promises(lock)
    assert codec.loads(codec.dumps(lock)) == lock


# Integers past Python's digit limit (4300) make tomllib raise a plain ValueError, not a
# TOMLDecodeError; canonical_json cannot even write them, so they are put into the text directly.
HUGE_DIGITS = st.one_of(st.integers(min_value=4290, max_value=4310), st.integers(min_value=4311, max_value=20_000))
_INTEGER_VALUE = re.compile(r"(?m)^([A-Za-z0-9_-]+ = )(-?\d+)$")


@settings(max_examples=max(EXAMPLES // 3, 50), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated(), HUGE_DIGITS, st.integers(min_value=0), st.sampled_from(["", "-", "+"]))
def test_a_huge_integer_anywhere_is_refused_in_one_line(data: dict[str, Any], digits: int, which: int,
                                                         sign: str) -> None:
    try:
        text = with_hash(data)
    except Exception:  # tomlkit cannot write it: no attacker can either
        return
    values = list(_INTEGER_VALUE.finditer(text))
    huge = sign + "9" * digits
    if values:
        match = values[which % len(values)]
        text = text[:match.start(2)] + huge + text[match.end(2):]
    else:
        text += f"\nsurprise = {huge}\n"
    try:
        codec.loads(text, origin="fuzz.lock.toml")
    except LockInvalidError as exc:
        message = str(exc)
        assert message.startswith("fuzz.lock.toml: ") and "\n" not in message, message[:200]
        assert len(message) < 1200, message[:200]
        return
    raise AssertionError("a lock with a huge integer read cleanly")
