"""The binary cache's core, without I/O: entries (text, strict parse, fingerprint) and keys (text,
signatures, trust)."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from sample_lock import make_lock

from vllm_lock import cache_entry, cache_keys
from vllm_lock.build_identity import build_identity, full_build_identity
from vllm_lock.cache_entry import CacheEntry
from vllm_lock.errors import CacheEntryError, CacheKeyError
from vllm_lock.model import ModelError, Promotion

SHA = "ab" * 32
KEY = cache_keys.secret_from_seed("phoenix-1", bytes(range(32)))
OTHER = cache_keys.secret_from_seed("phoenix-2", bytes(range(1, 33)))


def entry(**changes: Any) -> CacheEntry:
    base = CacheEntry(
        identity="0123456789abcdef" * 4,
        wheel="vllm-0.11.1.dev5+gabcdef012.cpu-cp311-cp311-linux_x86_64.whl",
        wheel_sha256=SHA,
        wheel_size=12345,
        vllm_version="0.11.1.dev5+gabcdef012.cpu",
        lock_content_hash="sha256:" + "cd" * 32,
        archs=("9.0", "12.0"),
        cubins=("sm_90", "sm_120"),
        toolchain=(("cmake", "3.31.6"), ("gcc", "12.2.0"), ("nvcc", "?")),
        build_seconds=812.5,
    )
    return dataclasses.replace(base, **changes)


def test_text_round_trips_and_is_fixed() -> None:
    signed = cache_keys.sign(cache_keys.sign(entry(), KEY), OTHER)
    text = cache_entry.render(signed)
    assert cache_entry.parse(text.encode(), origin="e") == signed
    assert text.splitlines()[:3] == ["Format: 1", "Identity: " + "0123456789abcdef" * 4,
                                     "Wheel: vllm-0.11.1.dev5+gabcdef012.cpu-cp311-cp311-linux_x86_64.whl"]
    signers = [line.split(":")[1].strip() for line in text.splitlines() if line.startswith("Sig:")]
    assert signers == ["phoenix-1", "phoenix-2"]
    empty = entry(archs=(), cubins=(), toolchain=())
    assert "Archs:\nCubins:\nToolchain:\n" in cache_entry.render(empty)
    assert cache_entry.parse(cache_entry.render(empty).encode(), origin="e") == empty


def test_fingerprint_is_versioned_and_covers_identity_wheel_name_and_bytes() -> None:
    identity = "0123456789abcdef" * 4
    assert cache_entry.fingerprint(entry()) == f"2;{identity};{entry().wheel};{SHA};12345".encode()
    assert entry().wheel_path == f"wheels/{SHA}/{entry().wheel}"
    assert entry().name == f"{identity}.entry"


def test_wheel_build_identity_is_the_non_editable_locks() -> None:
    lock = make_lock()
    wheel_lock = dataclasses.replace(lock, build=dataclasses.replace(lock.build, editable=False))
    assert cache_entry.wheel_build_identity(lock) == full_build_identity(wheel_lock)
    assert full_build_identity(wheel_lock).startswith(build_identity(wheel_lock))
    assert len(full_build_identity(wheel_lock)) == 64


def _text(**replace_lines: str) -> bytes:
    lines = cache_entry.render(cache_keys.sign(entry(), KEY)).splitlines()
    out = []
    for line in lines:
        key = line.split(":", 1)[0]
        out.append(replace_lines.get(key, line))
    return ("\n".join(line for line in out if line != "-") + "\n").encode()


def _refused(make: Callable[[], object], error: type[Exception]) -> bool:
    try:
        make()
    except error:
        return True
    return False


@pytest.mark.parametrize("value", ["ab" * 32, "AB" * 32, "ab" * 31, "ab" * 32 + "\n", "g" * 64, "ab" * 33])
def test_an_entry_takes_a_sha256_as_a_lock_does(value: str) -> None:
    wheel = make_lock().packages[0].wheels[0]
    in_lock = _refused(lambda: dataclasses.replace(wheel, sha256=value), ModelError)
    assert _refused(lambda: entry(wheel_sha256=value), CacheEntryError) == in_lock
    assert _refused(lambda: entry(identity=value), CacheEntryError) == in_lock
    assert in_lock == (value != "ab" * 32)


@pytest.mark.parametrize("value", ["sha256:" + "ab" * 32, "ab" * 32, "sha256:" + "AB" * 32, "sha256:" + "ab" * 31,
                                   "sha256:" + "ab" * 32 + "\n", "sha512:" + "ab" * 32, "sha256:"])
def test_an_entry_takes_a_content_hash_as_a_lock_does(value: str) -> None:
    in_lock = _refused(lambda: Promotion(from_name="dev", from_content_hash=value, promoted_at="2026-01-02T03:04:05Z",
                                         forced=False, test_receipts=()), ModelError)
    assert _refused(lambda: entry(lock_content_hash=value), CacheEntryError) == in_lock
    assert in_lock == (value != "sha256:" + "ab" * 32)


@pytest.mark.parametrize("value", ["12.0", "9.0a", "10.0f", "12", "sm_90", "9.0b", "123.0", "9.0\n"])
def test_an_entry_takes_a_cuda_arch_as_a_lock_does(value: str) -> None:
    build = make_lock().build
    in_lock = _refused(lambda: dataclasses.replace(build, cuda_archs=(value,)), ModelError)
    assert _refused(lambda: entry(archs=(value,)), CacheEntryError) == in_lock
    assert in_lock == (value not in ("12.0", "9.0a", "10.0f"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"Format: 1\nIdentity: 0123456789abcdef", "does not end with a newline"),
        (_text(Format="Format: 2"), "Format '2' is not 1"),
        (_text(Identity="Identity: 0123456789ABCDEF"), "Identity: invalid value"),
        (_text(Identity="-"), "missing Identity"),
        (_text(WheelSize="WheelSize: 012"), "WheelSize: '012' is not a plain decimal number"),
        (_text(WheelSize="WheelSize: 0"), "WheelSize: '0' is not a plain decimal number"),
        (_text(WheelSha256="WheelSha256: " + "g" * 64), "WheelSha256: invalid value"),
        (_text(Wheel="Wheel: ../../etc/passwd.whl"), "Wheel: not a vllm wheel file name"),
        (_text(Wheel="Wheel: vllm-0.2-cp311-cp311-linux_x86_64.whl"),
         "VllmVersion: 0.11.1.dev5+gabcdef012.cpu is not the wheel's version 0.2"),
        (_text(Archs="Archs: 9.0 9.0"), "Archs: invalid value"),
        (_text(Archs="Archs: sm_90"), "Archs: invalid value"),
        (_text(LockContentHash="LockContentHash: " + "cd" * 32), "LockContentHash: invalid value"),
        (_text(LockContentHash="LockContentHash: sha256:" + "CD" * 32), "LockContentHash: invalid value"),
        (_text(Cubins="Cubins: compute_90"), "Cubins: invalid value"),
        (_text(Toolchain="Toolchain: gcc"), "Toolchain: invalid value"),
        (_text(BuildSeconds="BuildSeconds: nan"), "BuildSeconds: 'nan' is not a plain decimal number"),
        (_text(Format="Format: 1\nFormat: 1"), "line 2: Format given twice"),
        (_text(Format="Format: 1\nStorePath: /nix"), "line 2: unknown key StorePath"),
        (_text(Format="Format: 1\r"), "line 1 is not `Key: value`"),
        (_text(VllmVersion="VllmVersion:"), "VllmVersion is empty"),
        (_text(Sig="Sig: phoenix-1:AAAA"), "Sig of key phoenix-1: 3 bytes"),
        (_text(Sig="Sig: phoenix-1:***"), "Sig of key phoenix-1: not base64"),
        (_text(Sig="Sig: -bad:AAAA"), "Sig is not <key-name>:<base64>"),
        (_text(Sig=f"Sig: {KEY.name}:{'A' * 86}==\nSig: {KEY.name}:{'A' * 86}=="), "two signatures by one key"),
        (_text(Sig=f"Sig: {KEY.name}:{'A' * 86}==\nArchs: 9.0"), "Archs given twice"),
        ("Format: 1\nVllmVersion: é\n".encode(), "not ASCII text"),
        (b"X" * (cache_entry.MAX_ENTRY_BYTES + 1), "larger than 16384 bytes"),
    ],
)
def test_parse_refuses_each_broken_rule_in_one_line(data: bytes, message: str) -> None:
    with pytest.raises(CacheEntryError) as caught:
        cache_entry.parse(data, origin="s3://b/x.entry")
    text = str(caught.value)
    assert text.startswith("s3://b/x.entry: ") and message in text and "\n" not in text


def test_keys_as_text_round_trip_and_are_never_confused() -> None:
    assert cache_keys.parse_secret(KEY.text(), origin="f") == KEY
    public = KEY.public()
    assert cache_keys.parse_public(public.text(), origin="k") == public
    assert KEY.seed.hex() not in repr(KEY) and "seed" not in repr(KEY)
    with pytest.raises(CacheKeyError, match="is a secret key, not a public one"):
        cache_keys.parse_public(KEY.text(), origin="k")
    with pytest.raises(CacheKeyError, match="has 32 bytes, not 64"):
        cache_keys.parse_secret(public.text(), origin="f")
    damaged = f"{KEY.name}:{base64.b64encode(KEY.seed + OTHER.public().key).decode()}"
    with pytest.raises(CacheKeyError, match="damaged"):
        cache_keys.parse_secret(damaged, origin="f")
    with pytest.raises(CacheKeyError, match="not a public cache key"):
        cache_keys.parse_public("no-colon", origin="k")
    keys = cache_keys.parse_public_keys(f"# mine\n{public.text()}, {OTHER.public().text()}\n", origin="file")
    assert [k.name for k in keys] == ["phoenix-1", "phoenix-2"]


def test_trust_names_its_signer_or_its_reason() -> None:
    signed = cache_keys.sign(entry(), KEY)
    assert cache_keys.trust(signed, [KEY.public()]) == cache_keys.Trust(signer="phoenix-1", problem=None)
    # one trusted signature among others is enough
    both = cache_keys.sign(signed, OTHER)
    assert cache_keys.trust(both, [OTHER.public()]).signer == "phoenix-2"
    assert cache_keys.trust(entry(), [KEY.public()]).problem == "the entry is unsigned"
    assert cache_keys.trust(signed, []).problem == "no trusted cache keys are configured"
    assert cache_keys.trust(signed, [OTHER.public()]).problem == "signed only by keys that are not trusted (phoenix-1)"
    # the same name with another key: the signature does not verify
    impostor = cache_keys.PublicKey(name="phoenix-1", key=OTHER.public().key)
    assert "signature by phoenix-1 does not verify" in (cache_keys.trust(signed, [impostor]).problem or "")
    # every signed field matters: another wheel's bytes or another identity break the signature
    for change in ({"wheel_sha256": "cd" * 32}, {"wheel_size": 12346}, {"identity": "fedcba9876543210" * 4}):
        altered = dataclasses.replace(signed, **change)
        assert "does not verify" in (cache_keys.trust(altered, [KEY.public()]).problem or "")
    # fields outside the fingerprint are metadata: changing them keeps the signature
    assert cache_keys.trust(dataclasses.replace(signed, build_seconds=1.0), [KEY.public()]).signer == "phoenix-1"


def test_constructing_an_invalid_entry_is_refused() -> None:
    with pytest.raises(CacheEntryError, match="WheelSha256: invalid value"):
        entry(wheel_sha256="x")
