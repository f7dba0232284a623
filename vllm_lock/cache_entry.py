"""A binary cache entry: what one cached build of vLLM is (Nix's narinfo is the model). Pure.

An entry names a built vLLM wheel by the build identity of its lock, with the wheel's name, sha256
and size, and what the build was (vLLM version, the lock's content hash, archs, cubins found,
toolchain, build seconds). Its text is `Key: value` lines in a fixed order, then one `Sig:` line per
signature (`Sig: <key-name>:<base64>`). An entry comes from a cache anyone may write to: it is
untrusted input, parsed strictly (every field has a rule, unknown or repeated keys are refused)
and trusted only through a signature over its fingerprint (cache_keys.py).

Layout in a cache (every backend): `<identity>.entry` and `wheels/<sha256>/<wheel file name>`.
The wheel's path is derived from the signed sha256: an entry cannot point anywhere else.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
from dataclasses import dataclass

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from vllm_lock.build_identity import full_build_identity
from vllm_lock.errors import CacheEntryError
from vllm_lock.model import Lock, is_content_hash, is_cuda_arch, is_sha256

ENTRY_FORMAT = 1
FINGERPRINT_VERSION = 2
ENTRY_SUFFIX = ".entry"
MAX_ENTRY_BYTES = 16 << 10
MAX_WHEEL_SIZE = 1 << 40
MAX_SIGNATURES = 16
MAX_BUILD_SECONDS = 10_000_000
SIGNATURE_BYTES = 64

# fullmatch everywhere: `$` also matches before a trailing newline, `\d` matches non-ASCII digits
_SIZE = re.compile(r"[1-9][0-9]{0,12}")
_SECONDS = re.compile(r"(0|[1-9][0-9]{0,7})(\.[0-9]{1,3})?")
_WHEEL = re.compile(r"vllm-[A-Za-z0-9._+!-]{1,200}\.whl")
_CUBIN = re.compile(r"sm_[0-9]{2,3}[af]?")
_TOOL = re.compile(r"[a-z0-9][a-z0-9+_-]{0,31}=[0-9A-Za-z?][0-9A-Za-z.+_-]{0,63}")
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LINE = re.compile(r"([A-Za-z0-9]{1,32}):(?: ([\x21-\x7e][\x20-\x7e]*))?")

# the keys in the order they are written; Sig last and repeatable
_KEYS = ("Format", "Identity", "Wheel", "WheelSha256", "WheelSize", "VllmVersion", "LockContentHash",
         "Archs", "Cubins", "Toolchain", "BuildSeconds")
_MAY_BE_EMPTY = frozenset({"Archs", "Cubins", "Toolchain"})


@dataclass(frozen=True, kw_only=True, slots=True)
class Signature:
    key_name: str
    value: bytes  # an ed25519 signature of the entry's fingerprint

    def text(self) -> str:
        return f"{self.key_name}:{base64.b64encode(self.value).decode()}"


@dataclass(frozen=True, kw_only=True, slots=True)
class CacheEntry:
    identity: str  # the lock's build identity (wheel_build_identity)
    wheel: str  # the wheel's file name
    wheel_sha256: str
    wheel_size: int
    vllm_version: str
    lock_content_hash: str
    archs: tuple[str, ...] = ()
    cubins: tuple[str, ...] = ()
    toolchain: tuple[tuple[str, str], ...] = ()  # (tool, version), sorted by tool
    build_seconds: float = 0.0
    signatures: tuple[Signature, ...] = ()

    def __post_init__(self) -> None:
        if problem := entry_problem(self):
            raise CacheEntryError(f"cache entry: {problem}")

    @property
    def name(self) -> str:
        """The entry's object name in a cache."""
        return entry_name(self.identity)

    @property
    def wheel_path(self) -> str:
        """The wheel's object name in a cache: under its signed sha256, never anywhere else."""
        return f"wheels/{self.wheel_sha256}/{self.wheel}"

    def unsigned(self) -> CacheEntry:
        return dataclasses.replace(self, signatures=())


def entry_name(identity: str) -> str:
    if not is_sha256(identity):  # a build identity is a sha256
        raise CacheEntryError(f"cache entry: {identity!r} is not a build identity (64 lowercase hex digits)")
    return identity + ENTRY_SUFFIX


def wheel_build_identity(lock: Lock) -> str:
    """The identity of the lock's wheel build: an editable lock installed with --no-editable
    builds the same wheel as the same lock made non-editable, so both share one entry."""
    wheel_lock = dataclasses.replace(lock, build=dataclasses.replace(lock.build, editable=False))
    return full_build_identity(wheel_lock)


def fingerprint(entry: CacheEntry) -> bytes:
    """What a signature covers: versioned, the whole build identity, the wheel's file name (its
    version and tags) and its bytes (sha256 and size)."""
    return (f"{FINGERPRINT_VERSION};{entry.identity};{entry.wheel};{entry.wheel_sha256};"
            f"{entry.wheel_size}").encode()


def entry_problem(entry: CacheEntry) -> str | None:
    """The first rule the entry breaks (with its key), or None."""
    checks: tuple[tuple[str, bool], ...] = (
        ("Identity", is_sha256(entry.identity)),
        ("WheelSha256", is_sha256(entry.wheel_sha256)),
        ("WheelSize", 0 < entry.wheel_size <= MAX_WHEEL_SIZE),
        ("LockContentHash", is_content_hash(entry.lock_content_hash)),
        ("Archs", all(is_cuda_arch(a) for a in entry.archs) and len(set(entry.archs)) == len(entry.archs)),
        ("Cubins", all(_CUBIN.fullmatch(c) for c in entry.cubins) and len(set(entry.cubins)) == len(entry.cubins)),
        ("Toolchain", all(_TOOL.fullmatch(f"{t}={v}") for t, v in entry.toolchain)
         and [t for t, _ in entry.toolchain] == sorted({t for t, _ in entry.toolchain})),
        ("BuildSeconds", math.isfinite(entry.build_seconds) and 0 <= entry.build_seconds <= MAX_BUILD_SECONDS),
    )
    for key, ok in checks:
        if not ok:
            return f"{key}: invalid value"
    if problem := _wheel_problem(entry.wheel, entry.vllm_version):
        return problem
    if len(entry.signatures) > MAX_SIGNATURES:
        return f"Sig: more than {MAX_SIGNATURES} signatures"
    names = [s.key_name for s in entry.signatures]
    if len(set(names)) != len(names):
        return "Sig: two signatures by one key"
    for sig in entry.signatures:
        if not KEY_NAME.fullmatch(sig.key_name) or len(sig.value) != SIGNATURE_BYTES:
            return "Sig: not <key-name>:<base64 of a 64-byte ed25519 signature>"
    return None


def _wheel_problem(wheel: str, version: str) -> str | None:
    if not _WHEEL.fullmatch(wheel):
        return "Wheel: not a vllm wheel file name"
    try:
        name, wheel_version, _, _ = parse_wheel_filename(wheel)
        declared = Version(version)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        return f"Wheel/VllmVersion: {exc}"
    if name != canonicalize_name("vllm"):
        return "Wheel: not a vllm wheel"
    if wheel_version != declared or len(version) > 200:
        return f"VllmVersion: {version} is not the wheel's version {wheel_version}"
    return None


def render(entry: CacheEntry) -> str:
    """The entry's text: same entry, same bytes."""
    values = {
        "Format": str(ENTRY_FORMAT),
        "Identity": entry.identity,
        "Wheel": entry.wheel,
        "WheelSha256": entry.wheel_sha256,
        "WheelSize": str(entry.wheel_size),
        "VllmVersion": entry.vllm_version,
        "LockContentHash": entry.lock_content_hash,
        "Archs": " ".join(entry.archs),
        "Cubins": " ".join(entry.cubins),
        "Toolchain": " ".join(f"{t}={v}" for t, v in entry.toolchain),
        "BuildSeconds": _seconds(entry.build_seconds),
    }
    lines = [f"{key}: {values[key]}" if values[key] else f"{key}:" for key in _KEYS]
    lines += [f"Sig: {sig.text()}" for sig in entry.signatures]
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def parse(data: bytes, *, origin: str) -> CacheEntry:
    """The entry in data, or CacheEntryError naming origin, the line and the rule broken."""
    if len(data) > MAX_ENTRY_BYTES:
        raise CacheEntryError(f"{origin}: larger than {MAX_ENTRY_BYTES} bytes: not a cache entry")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise CacheEntryError(f"{origin}: not ASCII text: not a cache entry") from None
    if not text.endswith("\n"):
        raise CacheEntryError(f"{origin}: does not end with a newline (truncated?)")
    values: dict[str, str] = {}
    signatures: list[Signature] = []
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        match = _LINE.fullmatch(line)
        if not match:
            raise CacheEntryError(f"{origin}: line {number} is not `Key: value`")
        key, value = match.group(1), match.group(2) or ""
        if key == "Sig":
            signatures.append(_signature(value, f"{origin}: line {number}"))
            continue
        if key not in _KEYS:
            raise CacheEntryError(f"{origin}: line {number}: unknown key {key}")
        if key in values:
            raise CacheEntryError(f"{origin}: line {number}: {key} given twice")
        if signatures:
            raise CacheEntryError(f"{origin}: line {number}: {key} after a Sig line")
        if not value and key not in _MAY_BE_EMPTY:
            raise CacheEntryError(f"{origin}: line {number}: {key} is empty")
        values[key] = value
    if missing := [key for key in _KEYS if key not in values]:
        raise CacheEntryError(f"{origin}: missing {', '.join(missing)}")
    if values["Format"] != str(ENTRY_FORMAT):
        raise CacheEntryError(f"{origin}: Format {values['Format'][:20]!r} is not {ENTRY_FORMAT}: a newer vllm-lock "
                              "wrote it")
    for key, rule in (("WheelSize", _SIZE), ("BuildSeconds", _SECONDS)):
        if not rule.fullmatch(values[key]):
            raise CacheEntryError(f"{origin}: {key}: {values[key][:40]!r} is not a plain decimal number")
    toolchain = tuple(tuple(t.split("=", 1)) for t in values["Toolchain"].split())
    try:
        return CacheEntry(
            identity=values["Identity"],
            wheel=values["Wheel"],
            wheel_sha256=values["WheelSha256"],
            wheel_size=int(values["WheelSize"]),
            vllm_version=values["VllmVersion"],
            lock_content_hash=values["LockContentHash"],
            archs=tuple(values["Archs"].split()),
            cubins=tuple(values["Cubins"].split()),
            toolchain=tuple((t[0], t[1]) if len(t) == 2 else (t[0], "") for t in toolchain),
            build_seconds=float(values["BuildSeconds"]),
            signatures=tuple(signatures),
        )
    except CacheEntryError as exc:
        raise CacheEntryError(f"{origin}: {str(exc).removeprefix('cache entry: ')}") from None


def _signature(value: str, where: str) -> Signature:
    name, sep, encoded = value.partition(":")
    if not sep or not KEY_NAME.fullmatch(name):
        raise CacheEntryError(f"{where}: Sig is not <key-name>:<base64>")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CacheEntryError(f"{where}: Sig of key {name}: not base64") from None
    if len(raw) != SIGNATURE_BYTES:
        raise CacheEntryError(f"{where}: Sig of key {name}: {len(raw)} bytes, an ed25519 signature has "
                              f"{SIGNATURE_BYTES}")
    return Signature(key_name=name, value=raw)
