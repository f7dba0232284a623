"""ed25519 keys of the binary cache, as `name:base64` text, and the signatures of entries. Pure
(the randomness of a new key is the caller's).

A public key is `name:base64(32 bytes)`; a secret key `name:base64(64 bytes: the seed, then the
public key)`, so that neither is ever taken for the other. A signature covers the entry's
fingerprint (cache_entry.fingerprint) and is written `Sig: <key-name>:<base64>`. An entry is
trusted when one of its signatures is by a trusted key (same name) and verifies with it.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from vllm_lock.cache_entry import KEY_NAME, CacheEntry, Signature, fingerprint
from vllm_lock.errors import CacheKeyError

SEED_BYTES = 32
PUBLIC_BYTES = 32


@dataclass(frozen=True, kw_only=True, slots=True)
class PublicKey:
    name: str
    key: bytes

    def text(self) -> str:
        return f"{self.name}:{base64.b64encode(self.key).decode()}"


@dataclass(frozen=True, kw_only=True, slots=True)
class SecretKey:
    name: str
    seed: bytes = dataclasses.field(repr=False)  # never in a repr, a log or a message

    def public(self) -> PublicKey:
        raw = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return PublicKey(name=self.name, key=raw)

    def text(self) -> str:
        return f"{self.name}:{base64.b64encode(self.seed + self.public().key).decode()}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Trust:
    """Whose signature made the entry trusted, or why it is not."""

    signer: str | None
    problem: str | None


def check_name(name: str) -> str:
    if not KEY_NAME.fullmatch(name):
        raise CacheKeyError(f"key name {name[:70]!r}: letters, digits, '.', '_' and '-', at most 64, not starting with "
                            "a sign")
    return name


def secret_from_seed(name: str, seed: bytes) -> SecretKey:
    if len(seed) != SEED_BYTES:
        raise CacheKeyError(f"an ed25519 seed has {SEED_BYTES} bytes, not {len(seed)}")
    return SecretKey(name=check_name(name), seed=seed)


def _split(text: str, origin: str, what: str) -> tuple[str, bytes]:
    name, sep, encoded = text.strip().partition(":")
    if not sep or not KEY_NAME.fullmatch(name):
        raise CacheKeyError(f"{origin}: not a {what} (`name:base64`)")
    try:
        return name, base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CacheKeyError(f"{origin}: the {what} {name} is not base64") from None


def parse_public(text: str, *, origin: str) -> PublicKey:
    name, raw = _split(text, origin, "public cache key")
    if len(raw) == SEED_BYTES + PUBLIC_BYTES:
        raise CacheKeyError(f"{origin}: {name} is a secret key, not a public one: give its public key")
    if len(raw) != PUBLIC_BYTES:
        raise CacheKeyError(f"{origin}: the public key {name} has {len(raw)} bytes, an ed25519 key {PUBLIC_BYTES}")
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise CacheKeyError(f"{origin}: the public key {name} is not an ed25519 key") from None
    return PublicKey(name=name, key=raw)


def parse_secret(text: str, *, origin: str) -> SecretKey:
    name, raw = _split(text, origin, "secret cache key")
    if len(raw) != SEED_BYTES + PUBLIC_BYTES:
        raise CacheKeyError(f"{origin}: the secret key {name} has {len(raw)} bytes, not {SEED_BYTES + PUBLIC_BYTES}")
    key = secret_from_seed(name, raw[:SEED_BYTES])
    if key.public().key != raw[SEED_BYTES:]:
        raise CacheKeyError(f"{origin}: the secret key {name} is damaged (its public half does not match its seed)")
    return key


def parse_public_keys(text: str, *, origin: str) -> tuple[PublicKey, ...]:
    """Keys separated by whitespace or commas; `#` starts a comment (a trusted-keys file)."""
    words: list[str] = []
    for line in text.splitlines():
        words += line.split("#", 1)[0].replace(",", " ").split()
    return tuple(parse_public(word, origin=origin) for word in words)


def sign(entry: CacheEntry, key: SecretKey) -> CacheEntry:
    """The entry with key's signature (replacing an earlier one by the same key's name)."""
    value = Ed25519PrivateKey.from_private_bytes(key.seed).sign(fingerprint(entry))
    others = tuple(s for s in entry.signatures if s.key_name != key.name)
    return dataclasses.replace(entry, signatures=(*others, Signature(key_name=key.name, value=value)))


def trust(entry: CacheEntry, trusted: Iterable[PublicKey]) -> Trust:
    """Trusted when a signature by a trusted key's name verifies with that key; otherwise the
    reason: unsigned, signed only by unknown keys, or a signature that does not verify."""
    # several trusted keys may share a name (a key rotated under its old name): try each of them
    keys: dict[str, list[PublicKey]] = {}
    for k in trusted:
        keys.setdefault(k.name, []).append(k)
    if not entry.signatures:
        return Trust(signer=None, problem="the entry is unsigned")
    if not keys:
        return Trust(signer=None, problem="no trusted cache keys are configured")
    bad: list[str] = []
    for sig in entry.signatures:
        named = keys.get(sig.key_name, [])
        for key in named:
            try:
                Ed25519PublicKey.from_public_bytes(key.key).verify(sig.value, fingerprint(entry))
            except InvalidSignature:
                continue
            return Trust(signer=sig.key_name, problem=None)
        if named:
            bad.append(sig.key_name)
    if bad:
        return Trust(signer=None, problem=f"the signature by {', '.join(bad)} does not verify (wrong signature, or the "
                                          "entry was altered)")
    names = ", ".join(s.key_name for s in entry.signatures)
    return Trust(signer=None, problem=f"signed only by keys that are not trusted ({names})")
