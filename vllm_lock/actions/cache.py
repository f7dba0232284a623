"""`vllm-lock key generate` and `vllm-lock cache push|ls|verify|keys|name|fetch|has|entry|publish`: the
Python API behind them."""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_lock import cache_entry
from vllm_lock import receipt as receipts
from vllm_lock.actions import substitute
from vllm_lock.cache_entry import CacheEntry
from vllm_lock.errors import CacheEntryError, OutputError, UsageError, VllmLockError
from vllm_lock.shell import files

if TYPE_CHECKING:
    from vllm_lock.cache_keys import PublicKey, SecretKey


def generate_key(name: str, output: Path) -> PublicKey:
    """A new ed25519 key: the secret written to output (mode 0600, never over an existing file),
    the public key returned for printing."""
    from vllm_lock import cache_keys

    key = cache_keys.secret_from_seed(name, os.urandom(cache_keys.SEED_BYTES))
    try:
        fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OutputError(f"{output} exists: refusing to overwrite a key (remove it first)") from None
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as stream:
            stream.write(key.text() + "\n")
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as exc:
        output.unlink(missing_ok=True)
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
    return key.public()


def push_generation(lock_ref: str, url: str, *, venv: Path, src: Path, key: SecretKey) -> CacheEntry:
    """The built wheel of the lock's installed (non-editable) generation, pushed with its signed
    entry: the wheel first, the entry last."""
    from vllm_lock.build_identity import generation_id
    from vllm_lock.shell import generations, lockfiles

    substitute.check_url(url, "--push")
    lock = lockfiles.read(lock_ref)[0]
    gen = generations.container_for(venv, src).generation(str(generation_id(lock, False)))
    done = receipts.read(gen)
    if done is None:
        raise UsageError(
            f"{gen.root}: no complete install of lock {lock.name} as a wheel "
            f"(run `vllm-lock install {lock_ref} --no-editable --venv {venv}` first)"
        )
    if done.substituted_from.get("cache") == url:
        raise UsageError(f"{gen.root}: its wheel came from {url} already: nothing to push")
    wheel = substitute.built_wheel(gen.dist)
    entry = substitute.make_entry(
        lock, wheel, version=done.vllm_version, cubins=done.cubins,
        toolchain={name: tool.get("version") for name, tool in done.toolchain.items()},
        build_seconds=done.timings.get("build", 0.0),
    )
    return substitute.push(url, entry, wheel, key)


@dataclass(frozen=True, kw_only=True)
class Listed:
    name: str
    entry: CacheEntry | None
    problem: str | None


def list_entries(url: str) -> list[Listed]:
    from vllm_lock.shell import cache_backends

    substitute.check_url(url, "cache")
    backend = cache_backends.open_backend(url)
    listed = []
    for name in backend.entries():
        try:
            data = backend.read(name)
            if data is None:
                raise CacheEntryError(f"{backend.url}/{name}: gone while listing")
            listed.append(Listed(name=name, entry=cache_entry.parse(data, origin=f"{backend.url}/{name}"),
                                 problem=None))
        except VllmLockError as exc:
            listed.append(Listed(name=name, entry=None, problem=str(exc)))
    return listed


@dataclass(frozen=True, kw_only=True)
class Checked:
    name: str
    signer: str | None
    problem: str | None


def verify_cache(url: str, trusted: Sequence[PublicKey]) -> list[Checked]:
    """Every entry of the cache: parsed, signed by a trusted key, its wheel of the signed size and
    sha256 (downloaded into a temporary folder, cut at the size)."""
    from vllm_lock.shell import cache_backends

    substitute.check_url(url, "cache")
    backend = cache_backends.open_backend(url)
    checked = []
    with tempfile.TemporaryDirectory(prefix="vllm-lock-cache-verify-") as scratch:
        for name in backend.entries():
            identity = name.removesuffix(cache_entry.ENTRY_SUFFIX)
            try:
                data = backend.read(name)
                if data is None:
                    raise CacheEntryError(f"{backend.url}/{name}: gone while verifying")
                entry, signer = substitute.trusted_entry(data, f"{backend.url}/{name}", identity, trusted)
                wheel = Path(scratch) / entry.wheel
                try:
                    substitute.fetch_verified(backend, entry, wheel)
                finally:
                    wheel.unlink(missing_ok=True)
                checked.append(Checked(name=name, signer=signer, problem=None))
            except VllmLockError as exc:
                checked.append(Checked(name=name, signer=None, problem=" ".join(str(exc).split())))
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise OutputError(f"no space left in {scratch} while verifying {name}") from None
                raise
    return checked


# ---------------------------------------------------------------- a host between caches and machines
# `cache keys|name|fetch|has|entry|publish`: what a host (Phoenix's feature script) does for a
# machine that must not reach the cache itself: look a lock's build up, hand over a one-entry cache,
# and publish a build the machine made, after checking it against the lock.


def consumer_keys(output: Path, *, trusted_file: Path | None, signing_key: Path | None) -> list[PublicKey]:
    """The keys a consumer trusts: the signing key's public half (first) and trusted_file's; one
    name never stands for two keys. Written to output whole (a temporary file renamed)."""
    from vllm_lock import cache_keys
    from vllm_lock.errors import CacheKeyError

    keys: list[PublicKey] = []
    if signing_key is not None:
        keys.append(substitute.load_secret(signing_key).public())
    if trusted_file is not None:
        text = substitute.read_key_file(trusted_file, "trusted cache keys")
        for key in cache_keys.parse_public_keys(text, origin=str(trusted_file)):
            same = [k for k in keys if k.name == key.name]
            if same and same[0].key != key.key:
                raise CacheKeyError(f"{trusted_file}: key name {key.name} is also the name of another key")
            if not same:
                keys.append(key)
    _write_whole(output, "".join(k.text() + "\n" for k in keys).encode())
    return keys


def _write_whole(output: Path, data: bytes) -> None:
    part = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        # a fresh file, never one (or a link) someone put at this predictable name
        part.unlink(missing_ok=True)
        with os.fdopen(os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), "wb") as stream:
            stream.write(data)
        part.replace(output)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None


def lock_entry_name(lock_ref: str) -> str:
    """The entry name of the lock's wheel build (<identity>.entry)."""
    from vllm_lock.shell import lockfiles

    return cache_entry.entry_name(cache_entry.wheel_build_identity(lockfiles.read(lock_ref)[0]))


@dataclass(frozen=True, kw_only=True)
class Fetched:
    entry: CacheEntry
    signer: str
    output: Path


def fetch(lock_ref: str, urls: Sequence[str], trusted: Sequence[PublicKey], output: Path,
          say: Callable[[str], None]) -> Fetched | None:
    """The lock's build from the first cache with a trusted entry and its wheel of the signed size
    and sha256, laid out in output as a one-entry file:// cache (entry + wheels/<sha256>/<wheel>);
    None when no cache has one. Built beside output and renamed: never half-written. Without any
    trusted key every entry is refused (each cache is still asked, and says why)."""
    from vllm_lock.shell import lockfiles

    for url in urls:
        substitute.check_url(url, "--cache")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise OutputError(f"{output}: exists and is not an empty folder (the one-entry cache goes there)")
    lock = lockfiles.read(lock_ref)[0]
    identity = cache_entry.wheel_build_identity(lock)
    part = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        # made afresh here (a link someone planted at this predictable name is removed, not followed)
        if part.is_symlink() or part.is_file():
            part.unlink()
        shutil.rmtree(part, ignore_errors=True)
        part.mkdir(mode=0o700)
        settings = substitute.CacheSettings(caches=tuple(urls), trusted=tuple(trusted), substitute_only=False,
                                            push=None, signing_key=None)
        hit = substitute.find(identity, settings, part / "dist", say)
        if hit is None:
            return None
        wheel = part / "cache" / hit.entry.wheel_path
        wheel.parent.mkdir(parents=True)
        hit.wheel.rename(wheel)
        (part / "cache" / hit.entry.name).write_text(cache_entry.render(hit.entry))
        if output.exists():
            output.rmdir()
        (part / "cache").rename(output)
        return Fetched(entry=hit.entry, signer=hit.signer, output=output)
    except OSError as exc:
        raise OutputError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        if not part.is_symlink():
            shutil.rmtree(part, ignore_errors=True)


def has_entry(lock_ref: str, url: str, trusted: Sequence[PublicKey]) -> tuple[CacheEntry, str] | None:
    """The lock's entry in the cache and its trusted signer, or None when the cache has no entry
    of that name (one that is there but refused is a CacheEntryError). No wheel is read."""
    from vllm_lock.shell import cache_backends, lockfiles

    substitute.check_url(url, "--cache")
    identity = cache_entry.wheel_build_identity(lockfiles.read(lock_ref)[0])
    backend = cache_backends.open_backend(url)
    name = cache_entry.entry_name(identity)
    data = backend.read(name)
    if data is None:
        return None
    return substitute.trusted_entry(data, f"{backend.url}/{name}", identity, trusted)


def read_entry(path: Path, origin: str) -> CacheEntry:
    """An entry file, read at most one byte past the bound (a file from elsewhere may be huge)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(cache_entry.MAX_ENTRY_BYTES + 1)
    except OSError as exc:
        raise CacheEntryError(f"{origin} {path}: cannot be read: {exc.strerror or exc}") from None
    return cache_entry.parse(data, origin=f"{origin} {path}")


def publish(lock_ref: str, source: Path, url: str, key: SecretKey, trusted: Sequence[PublicKey] = ()) -> CacheEntry:
    """A build made elsewhere (source: a file:// cache layout holding the lock's entry and its
    wheel), checked against the lock (identity, content hash) and its wheel against the entry
    (name, size, sha256), signed with key and pushed: the wheel first, the entry last. With
    trusted keys, the entry must also carry a good signature by one of them (as `cache verify`
    checks); either way its own signatures are replaced by key's."""
    from vllm_lock import codec
    from vllm_lock.shell import lockfiles

    substitute.check_url(url, "--to")
    lock = lockfiles.read(lock_ref)[0]
    identity = cache_entry.wheel_build_identity(lock)
    entry = read_entry(source / cache_entry.entry_name(identity), "the entry to publish")
    if entry.identity != identity or entry.lock_content_hash != codec.content_hash(lock):
        raise CacheEntryError(f"the entry to publish is for identity {entry.identity} (lock content "
                              f"{entry.lock_content_hash[:19]}...), not the identity {identity} of the lock")
    if trusted:
        from vllm_lock import cache_keys

        verdict = cache_keys.trust(entry, trusted)
        if verdict.signer is None:
            raise CacheEntryError(f"the entry to publish: {verdict.problem}")
    wheel = source / entry.wheel_path
    if not wheel.is_file() or wheel.is_symlink():
        raise CacheEntryError(f"{wheel}: the wheel the entry names is not a regular file there")
    sha256, size = files.sha256_and_size(wheel)
    if (sha256, size) != (entry.wheel_sha256, entry.wheel_size):
        raise CacheEntryError(f"the wheel to publish {wheel.name} ({size} bytes, sha256 {sha256}) is not the one "
                              f"its entry names ({entry.wheel_size} bytes, sha256 {entry.wheel_sha256})")
    return substitute.push(url, entry, wheel, key)
