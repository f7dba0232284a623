"""`vllm-lock key generate` and `vllm-lock cache push|ls|verify`: the Python API behind them."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vllm_lock import cache_entry
from vllm_lock import receipt as receipts
from vllm_lock.actions import substitute
from vllm_lock.cache_entry import CacheEntry
from vllm_lock.errors import CacheEntryError, OutputError, UsageError, VllmLockError

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
