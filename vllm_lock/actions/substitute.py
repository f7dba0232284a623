"""install's substitute step and its push: a verified wheel of the lock's build identity from the
configured binary caches instead of a build, and a built wheel pushed with its signed entry.

Substitution (non-editable installs): each cache in order is asked for `<identity>.entry`; the
entry is parsed strictly, must be signed by a trusted key, and the wheel it names must have its
signed size and sha256 (the download is cut at that size). Any refusal (no entry, malformed,
unsigned, untrusted, wrong signature, bytes that differ, a cache unreachable or slower than its
bounds) is one line in the log, and the next cache is asked; when none gives a verified wheel the
install builds (or, with --substitute-only, fails). The substituted wheel then goes through the
same verification as a built one. An editable install takes the compiled modules from the same
wheel through vLLM's VLLM_USE_PRECOMPILED (precompiled_env): zero compiler calls.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from vllm_lock import cache_entry, codec
from vllm_lock.cache_entry import CacheEntry
from vllm_lock.errors import CacheEntryError, CacheKeyError, SubstituteOnlyError, UsageError, VllmLockError
from vllm_lock.model import Lock
from vllm_lock.shell import files

if TYPE_CHECKING:
    from vllm_lock.cache_keys import PublicKey, SecretKey
    from vllm_lock.shell.cache_backends import Backend
    from vllm_lock.shell.store import Store

CACHES_ENV = "VLLM_LOCK_CACHES"
PUSH_ENV = "VLLM_LOCK_PUSH"
TRUSTED_ENV = "VLLM_LOCK_TRUSTED_CACHE_KEYS"
TRUSTED_FILE_ENV = "VLLM_LOCK_TRUSTED_CACHE_KEYS_FILE"
# not VLLM_LOCK_SIGNING_KEY: that one is promote's SSH key for lock signatures
SIGNING_KEY_ENV = "VLLM_LOCK_CACHE_SIGNING_KEY"
_SCHEMES = ("file://", "http://", "https://", "s3://")
MAX_KEY_FILE = 64 << 10

Taken = TypeVar("Taken")


@dataclass(frozen=True, kw_only=True)
class CacheSettings:
    caches: tuple[str, ...] = ()  # in priority order
    trusted: tuple[PublicKey, ...] = ()
    substitute_only: bool = False
    push: str | None = None
    signing_key: SecretKey | None = None


NO_CACHES = CacheSettings()


@dataclass(frozen=True, kw_only=True)
class Substitution:
    cache: str
    signer: str
    entry: CacheEntry
    wheel: Path

    def origin(self) -> dict[str, str]:
        """What the receipt records of where the build came from."""
        return {
            "cache": self.cache, "key": self.signer, "entry": self.entry.name, "wheel": self.entry.wheel,
            "wheel_sha256": self.entry.wheel_sha256, "built_in_seconds": str(self.entry.build_seconds),
        }

    def toolchain(self) -> dict[str, dict[str, str | None]]:
        """The toolchain the entry says the build used (the receipt's form; built elsewhere: no path)."""
        return {name: {"version": version, "path": None} for name, version in self.entry.toolchain}

    def pylock_package(self) -> str:
        """A PEP 751 [[packages]] table naming the verified wheel by path and signed sha256: it goes
        into the generation's pylock.toml, so one `uv pip sync` installs it with the locked packages."""
        from packaging.utils import parse_wheel_filename

        version = parse_wheel_filename(self.entry.wheel)[1]
        wheel = (f"{{name = {json.dumps(self.entry.wheel)}, path = {json.dumps(str(self.wheel.absolute()))}, "
                 f"size = {self.entry.wheel_size}, hashes = {{sha256 = {json.dumps(self.entry.wheel_sha256)}}}}}")
        return f'\n[[packages]]\nname = "vllm"\nversion = {json.dumps(str(version))}\nwheels = [{wheel}]\n'


def check_url(url: str, origin: str) -> str:
    """The URL as given, when it is one the caches understand. One with credentials (user:pass@)
    is refused without being echoed: cache URLs are logged and recorded in receipts."""
    try:
        netloc = urllib.parse.urlsplit(url).netloc
    except ValueError:
        raise UsageError(f"{origin}: {url[:200]!r} is not a file://, http(s):// or s3:// cache URL") from None
    if "@" in netloc:
        raise UsageError(f"{origin}: a cache URL must not carry credentials (user:password@); for S3 use "
                         "AWS_* variables or ~/.aws/credentials")
    if not url.lower().startswith(_SCHEMES) or any(c.isspace() for c in url) or not url.isprintable():
        raise UsageError(f"{origin}: {url[:200]!r} is not a file://, http(s):// or s3:// cache URL")
    return url


def read_key_file(path: Path, what: str) -> str:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise CacheKeyError(f"{what} {path}: cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_KEY_FILE:
        raise CacheKeyError(f"{what} {path}: larger than {MAX_KEY_FILE} bytes: not a key file")
    return data.decode("utf-8", errors="replace")


def settings(
    *, caches: Sequence[str] = (), trusted_keys: Sequence[str] = (), trusted_keys_file: Path | None = None,
    substitute_only: bool = False, push: str | None = None, signing_key: Path | None = None,
    environ: Mapping[str, str] = os.environ,
) -> CacheSettings:
    """The caches, keys and push target of options, else of their environment variables.
    (cryptography is imported only where a key is given: a plain install does not pay for it.)"""
    urls = tuple(caches) or tuple(environ.get(CACHES_ENV, "").split())
    origin = "--cache" if caches else f"${CACHES_ENV}"
    for url in urls:
        check_url(url, origin)
    trusted: list[PublicKey] = []
    key_file = trusted_keys_file or (Path(environ[TRUSTED_FILE_ENV]) if environ.get(TRUSTED_FILE_ENV) else None)
    if trusted_keys or environ.get(TRUSTED_ENV, "").strip() or key_file is not None:
        from vllm_lock import cache_keys

        for text in trusted_keys:
            trusted.append(cache_keys.parse_public(text, origin="--trusted-cache-key"))
        if not trusted_keys and environ.get(TRUSTED_ENV, "").strip():
            trusted += cache_keys.parse_public_keys(environ[TRUSTED_ENV], origin=f"${TRUSTED_ENV}")
        if key_file is not None:
            trusted += cache_keys.parse_public_keys(read_key_file(key_file, "trusted cache keys"), origin=str(key_file))
    push_url = push or environ.get(PUSH_ENV) or None
    if push_url:
        check_url(push_url, "--push" if push else f"${PUSH_ENV}")
    secret_path = signing_key or (Path(environ[SIGNING_KEY_ENV]) if environ.get(SIGNING_KEY_ENV) else None)
    secret = load_secret(secret_path) if secret_path is not None else None
    if push_url and secret is None:
        raise UsageError("pushing to a cache needs a signing key (install: --cache-signing-key FILE; "
                         f"cache push: --signing-key FILE; or ${SIGNING_KEY_ENV})")
    if substitute_only and not urls:
        raise UsageError(f"--substitute-only needs a cache (--cache URL or ${CACHES_ENV})")
    return CacheSettings(caches=urls, trusted=tuple(trusted), substitute_only=substitute_only, push=push_url,
                         signing_key=secret)


def load_secret(path: Path) -> SecretKey:
    from vllm_lock import cache_keys

    return cache_keys.parse_secret(read_key_file(path, "signing key"), origin=str(path))


# ---------------------------------------------------------------- substitution


def step(
    caches: CacheSettings, lock: Lock, editable: bool, dist: Path, say: Callable[[str], None],
    store: Store | None = None,
) -> Substitution | None:
    """The substitute step of install: a verified wheel (in the store when one is given, else in
    dist), or None (build instead)."""
    if not caches.caches:
        return None
    identity = cache_entry.wheel_build_identity(lock)
    hit = find(identity, caches, dist, say, store)
    if hit is not None:
        say(f"    substituted from {hit.cache}: {hit.entry.wheel} ({hit.entry.name}, signed by {hit.signer})")
        if editable:
            say("    editable install: its compiled modules come from that wheel (VLLM_USE_PRECOMPILED)")
        return hit
    if caches.substitute_only:
        raise SubstituteOnlyError(
            f"--substitute-only: no configured cache has a verified build of identity {identity} "
            f"(asked: {', '.join(caches.caches)})"
        )
    say(f"    no cache has a verified build of identity {identity}: building")
    return None


def find(
    identity: str, caches: CacheSettings, dist: Path, say: Callable[[str], None], store: Store | None = None
) -> Substitution | None:
    """The first cache's verified entry and wheel. With a store, the wheel is kept there under its
    signed sha256 (content-addressed, like the locked wheels): a later substitution of the same
    build on this machine reads it from there (still only through a trusted entry naming that
    sha256), and uv, which keys its unpacked wheels by path, finds it unpacked already."""
    shutil.rmtree(dist, ignore_errors=True)
    dist.mkdir(parents=True)

    def substitution(offer: Offer) -> Substitution:
        entry = offer.entry
        signer = trusted_signer(entry, offer.origin, caches.trusted)
        if store is not None and store.has(entry.wheel_sha256, entry.wheel):
            say(f"    {entry.wheel}: in the local store (its sha256 checked when it entered)")
            return Substitution(cache=offer.url, signer=signer, entry=entry,
                                wheel=store.path(entry.wheel_sha256, entry.wheel))
        # into the store's file system (a rename takes it in), else into dist
        incoming = store.root / "incoming" if store is not None else dist
        incoming.mkdir(parents=True, exist_ok=True)
        wheel = incoming / f".{os.getpid()}-{entry.wheel}" if store is not None else dist / entry.wheel
        try:
            fetch_verified(offer.backend, entry, wheel)
            if store is not None:
                from vllm_lock.shell.bundle_file import adopt

                if not adopt(store, entry.wheel_sha256, entry.wheel, wheel):
                    wheel.unlink(missing_ok=True)  # another install took the same bytes in meanwhile
                wheel = store.path(entry.wheel_sha256, entry.wheel)
        except VllmLockError:
            wheel.unlink(missing_ok=True)
            raise
        return Substitution(cache=offer.url, signer=signer, entry=entry, wheel=wheel)

    return first_taken(caches.caches, identity, say, substitution)


@dataclass(frozen=True, kw_only=True)
class Offer:
    """A cache's entry of the asked identity, parsed (its signature not yet checked)."""
    url: str  # the cache, as configured
    backend: Backend
    origin: str  # where the entry was read, for messages
    data: bytes  # the entry as the cache holds it
    entry: CacheEntry


def first_taken(
    caches: Sequence[str], identity: str, say: Callable[[str], None], take: Callable[[Offer], Taken]
) -> Taken | None:
    """take's result for the first cache, in order, whose entry of identity take accepts; None
    when there is none. Each cache passed over is one line: it has no entry, or it was refused
    and why (unreachable, a malformed entry or one of another identity, or whatever take raised)."""
    from vllm_lock.shell import cache_backends

    name = cache_entry.entry_name(identity)
    for url in caches:
        try:
            backend = cache_backends.open_backend(url)
            data = backend.read(name)
            if data is None:
                say(f"    {url}: no entry {name}")
                continue
            origin = f"{backend.url}/{name}"
            entry = identified_entry(data, origin, identity)
            return take(Offer(url=url, backend=backend, origin=origin, data=data, entry=entry))
        except VllmLockError as exc:
            say(f"    refused {url}: {_one_line(str(exc))}")
    return None


def identified_entry(data: bytes, origin: str, identity: str) -> CacheEntry:
    """The entry in data, when it is one of identity."""
    entry = cache_entry.parse(data, origin=origin)
    if entry.identity != identity:
        raise CacheEntryError(f"{origin}: names identity {entry.identity}, not {identity}")
    return entry


def trusted_signer(entry: CacheEntry, origin: str, trusted: Sequence[PublicKey]) -> str:
    """The trusted key whose signature the entry carries."""
    from vllm_lock import cache_keys

    verdict = cache_keys.trust(entry, trusted)
    if verdict.signer is None:
        raise CacheEntryError(f"{origin}: {verdict.problem}")
    return verdict.signer


def trusted_entry(data: bytes, origin: str, identity: str, trusted: Sequence[PublicKey]) -> tuple[CacheEntry, str]:
    entry = identified_entry(data, origin, identity)
    return entry, trusted_signer(entry, origin, trusted)


def fetch_verified(backend: Backend, entry: CacheEntry, wheel: Path) -> None:
    """The entry's wheel into `wheel`, cut at the signed size; CacheEntryError unless it has the
    signed size and sha256."""
    got = backend.fetch(entry.wheel_path, wheel, size=entry.wheel_size)
    where = f"{backend.url}/{entry.wheel_path}"
    if got.size < entry.wheel_size:
        raise CacheEntryError(f"{where}: truncated: {got.size} of the signed {entry.wheel_size} bytes")
    if got.size > entry.wheel_size:
        raise CacheEntryError(f"{where}: {got.size} bytes, more than the signed {entry.wheel_size}")
    if got.sha256 != entry.wheel_sha256:
        raise CacheEntryError(f"{where}: sha256 {got.sha256} is not the signed {entry.wheel_sha256}")


def _one_line(message: str) -> str:
    return " ".join(message.split())


def precompiled_env(hit: Substitution, env: Mapping[str, str]) -> dict[str, str]:
    """vLLM's own way to an editable install without compiling: its setup.py copies the compiled
    modules out of the wheel at VLLM_PRECOMPILED_WHEEL_LOCATION (a local file: nothing fetched)
    and builds no extension. A CUDA build's version then ends in `precompiled` (vLLM's rule): it
    still names the commit, which is what verify checks."""
    return {**env, "VLLM_USE_PRECOMPILED": "1", "VLLM_PRECOMPILED_WHEEL_LOCATION": str(hit.wheel.absolute())}


# ---------------------------------------------------------------- push


def built_wheel(dist: Path) -> Path:
    wheels = sorted(dist.glob("vllm-*.whl"))
    if len(wheels) != 1:
        raise UsageError(f"{dist}: expected one built vllm wheel, found {len(wheels)} "
                         "(a non-editable install builds one)")
    return wheels[0]


def _tool_version(version: str | None) -> str:
    cleaned = "".join(c if c.isalnum() or c in ".+_-" else "_" for c in (version or "?"))[:64]
    return cleaned if cleaned and cleaned[0].isalnum() else "?"


def make_entry(
    lock: Lock, wheel: Path, *, version: str, cubins: Sequence[str], toolchain: Mapping[str, str | None],
    build_seconds: float,
) -> CacheEntry:
    sha256, size = files.sha256_and_size(wheel)
    return CacheEntry(
        identity=cache_entry.wheel_build_identity(lock),
        wheel=wheel.name,
        wheel_sha256=sha256,
        wheel_size=size,
        vllm_version=version,
        lock_content_hash=codec.content_hash(lock),
        archs=tuple(lock.build.cuda_archs),
        cubins=tuple(sorted(cubins)),
        toolchain=tuple(sorted((name, _tool_version(v)) for name, v in toolchain.items())),
        build_seconds=round(max(build_seconds, 0.0), 3),
    )


def push(url: str, entry: CacheEntry, wheel: Path, key: SecretKey) -> CacheEntry:
    """The wheel, then its signed entry (never an entry without its wheel)."""
    from vllm_lock import cache_keys
    from vllm_lock.shell import cache_backends

    signed = cache_keys.sign(entry.unsigned(), key)
    backend = cache_backends.open_backend(url)
    backend.write(signed.wheel_path, wheel)
    backend.write(signed.name, cache_entry.render(signed).encode())
    return signed


def push_built(
    caches: CacheSettings, lock: Lock, dist: Path, *, version: str, cubins: Sequence[str],
    toolchain: Mapping[str, str | None], build_seconds: float, say: Callable[[str], None],
) -> None:
    """After a verified build: the wheel and its signed entry to the push cache. A failed push is
    one warning line; the verified install stands."""
    if caches.push is None or caches.signing_key is None:
        return
    try:
        wheel = built_wheel(dist)
        entry = make_entry(lock, wheel, version=version, cubins=cubins, toolchain=toolchain,
                           build_seconds=build_seconds)
        signed = push(caches.push, entry, wheel, caches.signing_key)
    except VllmLockError as exc:
        say(f"    warning: push to {caches.push} failed: {_one_line(str(exc))}")
        return
    say(f"    pushed {signed.wheel} to {caches.push} ({signed.name}, signed by {caches.signing_key.name})")
