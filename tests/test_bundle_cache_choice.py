"""Which binary cache `bundle` takes the built vLLM from (built_wheel_members, through the loop
it shares with install's substitution): real file:// caches and a dead HTTP port on loopback.
Each cache passed over is one line (no entry, or refused and why); the first acceptable entry is
bundled byte for byte with its verified wheel. Without trusted keys any signature will do (the
installing machine checks it); with them, only a trusted one."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from sample_lock import make_lock
from test_cache_support import free_port

from vllm_lock import cache_entry, cache_keys
from vllm_lock.actions import bundle, substitute
from vllm_lock.cache_entry import CacheEntry
from vllm_lock.shell import cache_backends

LOCK = make_lock()
IDENTITY = cache_entry.wheel_build_identity(LOCK)
NAME = cache_entry.entry_name(IDENTITY)
KEY = cache_keys.secret_from_seed("phoenix-1", bytes(range(32)))
OTHER = cache_keys.secret_from_seed("phoenix-2", bytes(range(1, 33)))
WHEEL = "vllm-0.11.1.dev5+gabcdef012.cpu-cp311-cp311-linux_x86_64.whl"


def entry_for(data: bytes, identity: str = IDENTITY) -> CacheEntry:
    return CacheEntry(identity=identity, wheel=WHEEL, wheel_sha256=hashlib.sha256(data).hexdigest(),
                      wheel_size=len(data), vllm_version="0.11.1.dev5+gabcdef012.cpu",
                      lock_content_hash="sha256:" + "cd" * 32, build_seconds=1.5)


def cache_with(tmp_path: Path, name: str, *, key: cache_keys.SecretKey | None = KEY, identity: str = IDENTITY,
               wheel: bytes | None = None) -> str:
    """A file:// cache holding one entry (signed by key, unsigned without one) of the given
    identity (stored under the lock's entry name), its wheel's bytes as given (else as signed)."""
    signed_bytes = f"PK\x03\x04 the wheel of {name} ".encode() * 100
    url = f"file://{tmp_path / name}"
    entry = entry_for(signed_bytes, identity)
    if key is not None:
        entry = cache_keys.sign(entry, key)
    (tmp_path / "made").mkdir(exist_ok=True)
    made = tmp_path / "made" / name
    made.write_bytes(signed_bytes if wheel is None else wheel)
    backend = cache_backends.open_backend(url)
    backend.write(entry.wheel_path, made)
    backend.write(NAME, cache_entry.render(entry).encode())
    return url


def choose(tmp_path: Path, *urls: str, trusted: tuple[cache_keys.PublicKey, ...] = ()
           ) -> tuple[list[tuple[str, Path]], list[str]]:
    said: list[str] = []
    caches = substitute.CacheSettings(caches=urls, trusted=trusted)
    work = tmp_path / "work"
    return bundle.built_wheel_members(LOCK, caches, work, said.append), said


def taken_from(members: list[tuple[str, Path]], url: str) -> None:
    """The members are the cache's entry, byte for byte, and the wheel it signs."""
    assert [name for name, _ in members] == [f"built/{NAME}", f"built/{WHEEL}"]
    cached = Path(url.removeprefix("file://"))
    assert members[0][1].read_bytes() == (cached / NAME).read_bytes()
    entry = cache_entry.parse(members[0][1].read_bytes(), origin="e")
    assert hashlib.sha256(members[1][1].read_bytes()).hexdigest() == entry.wheel_sha256


def test_no_cache_with_an_entry_bundles_nothing_and_says_so_per_cache(tmp_path: Path) -> None:
    empty_a, empty_b = f"file://{tmp_path / 'a'}", f"file://{tmp_path / 'b'}"
    members, said = choose(tmp_path, empty_a, empty_b)
    assert members == []
    assert said == [f"    {empty_a}: no entry {NAME}", f"    {empty_b}: no entry {NAME}",
                    f"    no configured cache has a built vLLM of identity {IDENTITY}: the bundle carries none"]


def test_without_trusted_keys_an_unsigned_entry_is_refused_and_a_signed_one_taken(tmp_path: Path) -> None:
    unsigned = cache_with(tmp_path, "unsigned", key=None)
    signed = cache_with(tmp_path, "signed", key=OTHER)  # any signer: the installing machine judges it
    members, said = choose(tmp_path, unsigned, signed)
    taken_from(members, signed)
    assert said[0] == f"    refused {unsigned}: {unsigned}/{NAME}: unsigned"
    assert said[1] == f"    built vLLM {WHEEL} ({NAME}) from {signed}"
    assert len(said) == 2


def test_with_trusted_keys_only_a_trusted_signature_is_taken(tmp_path: Path) -> None:
    untrusted = cache_with(tmp_path, "untrusted", key=OTHER)
    trusted = cache_with(tmp_path, "trusted", key=KEY)
    members, said = choose(tmp_path, untrusted, trusted, trusted=(KEY.public(),))
    taken_from(members, trusted)
    assert said[0].startswith(f"    refused {untrusted}: ") and "not trusted (phoenix-2)" in said[0]
    assert said[1] == f"    built vLLM {WHEEL} ({NAME}) from {trusted}"


@pytest.mark.parametrize("trusted", [(), (KEY.public(),)], ids=["no-keys", "keys"])
def test_an_entry_of_another_identity_is_refused(tmp_path: Path, trusted: tuple[cache_keys.PublicKey, ...]) -> None:
    other = "fedcba9876543210" * 4
    wrong = cache_with(tmp_path, "wrong", identity=other)
    members, said = choose(tmp_path, wrong, trusted=trusted)
    assert members == []
    assert said[0] == f"    refused {wrong}: {wrong}/{NAME}: names identity {other}, not {IDENTITY}"


def test_a_wheel_that_is_not_the_signed_one_is_refused_and_the_next_cache_asked(tmp_path: Path) -> None:
    tampered = cache_with(tmp_path, "tampered", wheel=b"PK\x03\x04 other bytes")
    good = cache_with(tmp_path, "good")
    members, said = choose(tmp_path, tampered, good)
    taken_from(members, good)
    assert said[0].startswith(f"    refused {tampered}: ") and "truncated" in said[0]


def test_an_unreachable_cache_is_one_refusal_line(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/cache"
    good = cache_with(tmp_path, "good")
    members, said = choose(tmp_path, dead, good)
    taken_from(members, good)
    assert said[0].startswith(f"    refused {dead}: ") and "\n" not in said[0]
    assert sorted(os.listdir(tmp_path / "work" / "built")) == sorted([NAME, WHEEL])
