"""`vllm-lock key generate` and `vllm-lock cache push|ls|verify|keys|name|fetch|has|entry|publish` (the
binary cache of built vLLM),
and install's cache options, parsed once here."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vllm_lock.cli import options
from vllm_lock.defaults import DEFAULT_SRC, DEFAULT_VENV
from vllm_lock.errors import ExitCode

if TYPE_CHECKING:
    from vllm_lock.actions.substitute import CacheSettings
    from vllm_lock.cache_keys import PublicKey

KEY_HELP = "Signing keys of the binary cache (ed25519, name:base64)."
CACHE_HELP = "The binary cache of built vLLM, keyed by build identity."



def cache_settings(
    *, cache: list[str] | None, trusted_cache_key: list[str] | None, trusted_cache_keys_file: Path | None,
    substitute_only: bool, push: str | None, cache_signing_key: Path | None,
) -> CacheSettings:
    """install's --cache/--trusted-cache-key/--substitute-only/--push/--cache-signing-key (and
    their environment variables) as settings for the substitute step."""
    from vllm_lock.actions import substitute

    return substitute.settings(
        caches=cache or (), trusted_keys=trusted_cache_key or (), trusted_keys_file=trusted_cache_keys_file,
        substitute_only=substitute_only, push=push, signing_key=cache_signing_key,
    )


def key_generate(
    name: Annotated[str, typer.Option(help="the key's name, written before its signatures (e.g. phoenix-1)")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="secret key file, mode 0600 (default: NAME.secret)")] = None,
) -> None:
    """Generate an ed25519 signing key: the secret key to a file, the public key printed."""
    from vllm_lock import cache_keys
    from vllm_lock.actions import cache as cache_action

    cache_keys.check_name(name)
    public = cache_action.generate_key(name, output or Path(f"{name}.secret"))
    print(public.text())


def cache_push(
    lock: options.Lock,
    push: Annotated[str, typer.Option(
        "--push", help="cache URL: file:///DIR, http(s)://..., s3://BUCKET/PREFIX?endpoint=URL")],
    signing_key: Annotated[Path | None, typer.Option(
        "--signing-key", help="secret cache key file (else $VLLM_LOCK_CACHE_SIGNING_KEY)")] = None,
    venv: Annotated[Path, typer.Option(help="environment link of the install")] = DEFAULT_VENV,
    src: Annotated[Path, typer.Option(help="source link of the install")] = DEFAULT_SRC,
) -> None:
    """Push the lock's installed (non-editable) build: the wheel, then its signed entry."""
    from vllm_lock.actions import cache as cache_action
    from vllm_lock.actions import substitute

    settings = substitute.settings(push=push, signing_key=signing_key)
    assert settings.signing_key is not None  # settings refuses a push without one
    entry = cache_action.push_generation(lock, push, venv=venv, src=src, key=settings.signing_key)
    print(f"{push}: {entry.name} -> {entry.wheel} ({entry.wheel_size} bytes, signed by {settings.signing_key.name})")


def cache_ls(
    url: Annotated[str, typer.Argument(help="cache URL (file:// or s3://)")],
) -> None:
    """List a cache's entries: identity, vLLM version, wheel size, signers."""
    from vllm_lock.actions import cache as cache_action

    for item in cache_action.list_entries(url):
        if item.entry is None:
            print(f"{item.name}  unreadable: {' '.join((item.problem or '').split())}")
            continue
        signers = ",".join(s.key_name for s in item.entry.signatures) or "unsigned"
        print(f"{item.entry.identity}  {item.entry.vllm_version}  {item.entry.wheel_size}  {signers}")


def cache_verify(
    url: Annotated[str, typer.Argument(help="cache URL (file:// or s3://)")],
    trusted_cache_key: options.TrustedCacheKey = None,
    trusted_cache_keys_file: options.TrustedCacheKeysFile = None,
) -> int:
    """Check every entry: signed by a trusted key, its wheel of the signed size and sha256.
    Exit 0 all good, 1 when any entry is refused."""
    from vllm_lock.actions import cache as cache_action
    from vllm_lock.actions import substitute

    settings = substitute.settings(trusted_keys=trusted_cache_key or (), trusted_keys_file=trusted_cache_keys_file)
    checked = cache_action.verify_cache(url, settings.trusted)
    for item in checked:
        verdict = f"ok (signed by {item.signer})" if item.problem is None else f"REFUSED: {item.problem}"
        print(f"{item.name}: {verdict}")
    bad = sum(item.problem is not None for item in checked)
    print(f"{len(checked)} entries, {bad} refused")
    return int(ExitCode.DIFFERENT) if bad else 0


# ---- a host between a cache and machines that do not reach it (Phoenix's feature script)
CacheUrl = Annotated[list[str], typer.Option(
    "--cache", help="cache URL to look in, repeatable, first hit wins: file:///DIR, http(s)://..., s3://...")]


def _trusted(trusted_cache_key: list[str] | None, trusted_cache_keys_file: Path | None) -> tuple[PublicKey, ...]:
    from vllm_lock.actions import substitute

    return substitute.settings(trusted_keys=trusted_cache_key or (), trusted_keys_file=trusted_cache_keys_file).trusted


def cache_keys(
    output: Annotated[Path, typer.Option("--output", "-o", help="the key file to write (name:base64 lines)")],
    trusted_cache_keys_file: options.TrustedCacheKeysFile = None,
    cache_signing_key: options.CacheSigningKey = None,
) -> None:
    """Write the public keys a machine should trust, and print their names.

    The signing key's public half first, then the trusted file's keys; one name never stands for
    two keys."""
    from vllm_lock.actions import cache as cache_action

    keys = cache_action.consumer_keys(output, trusted_file=trusted_cache_keys_file, signing_key=cache_signing_key)
    print(" ".join(k.name for k in keys) or "none")


def cache_name(lock: options.Lock) -> None:
    """Print the entry name of the lock's wheel build (<build identity>.entry)."""
    from vllm_lock.actions import cache as cache_action

    print(cache_action.lock_entry_name(lock))


def cache_fetch(
    lock: options.Lock,
    cache: CacheUrl,
    output: Annotated[Path, typer.Option("--output", "-o", help="folder to create: a one-entry file:// cache")],
    trusted_cache_key: options.TrustedCacheKey = None,
    trusted_cache_keys_file: options.TrustedCacheKeysFile = None,
) -> int:
    """Fetch the lock's verified build into a one-entry file:// cache.

    A trusted entry and its wheel of the signed size and sha256, from the first cache that has
    them. Last line `fetched ENTRY WHEEL-PATH SIGNER`; exit 1 when no cache has one."""
    from vllm_lock.actions import cache as cache_action

    got = cache_action.fetch(lock, cache, _trusted(trusted_cache_key, trusted_cache_keys_file), output,
                             lambda line: print(line.strip(), flush=True))
    if got is None:
        print(f"no cache has a verified build of lock {lock}")
        return int(ExitCode.DIFFERENT)
    print(f"fetched {got.entry.name} {got.entry.wheel_path} {got.signer}")
    return 0


def cache_has(
    lock: options.Lock,
    cache: Annotated[str, typer.Option("--cache", help="cache URL: file:///DIR, http(s)://..., s3://...")],
    trusted_cache_key: options.TrustedCacheKey = None,
    trusted_cache_keys_file: options.TrustedCacheKeysFile = None,
) -> int:
    """Check that a cache holds a trusted entry for the lock's build.

    The wheel is not read. Exit 0 yes, 1 when there is none, 8 when the one there is refused."""
    from vllm_lock.actions import cache as cache_action

    found = cache_action.has_entry(lock, cache, _trusted(trusted_cache_key, trusted_cache_keys_file))
    if found is None:
        print(f"{cache}: no entry {cache_action.lock_entry_name(lock)}")
        return int(ExitCode.DIFFERENT)
    entry, signer = found
    print(f"{cache}: {entry.name} signed by {signer} ({entry.wheel}, {entry.wheel_size} bytes)")
    return 0


def cache_entry_show(
    entry: Annotated[Path, typer.Argument(help="an entry file (<identity>.entry)")],
) -> None:
    """Print an entry file's `WHEEL-PATH SIZE`, its form checked (not its signatures)."""
    from vllm_lock.actions import cache as cache_action

    parsed = cache_action.read_entry(entry, "entry")
    print(f"{parsed.wheel_path} {parsed.wheel_size}")


def cache_publish(
    lock: options.Lock,
    source: Annotated[Path, typer.Option(
        "--from", help="folder laid out as a file:// cache holding the lock's entry and its wheel")],
    to: Annotated[str, typer.Option("--to", help="cache URL to publish to")],
    cache_signing_key: options.CacheSigningKey = None,
    trusted_cache_key: options.TrustedCacheKey = None,
    trusted_cache_keys_file: options.TrustedCacheKeysFile = None,
) -> None:
    """Publish a build made elsewhere, checked against the lock, signed with the key.

    The entry must be the lock's (identity, content hash) and the wheel the entry's (size,
    sha256); with trusted keys, it must be signed by one of them. Its own signatures are replaced.
    The wheel is pushed first, the entry last."""
    from vllm_lock.actions import cache as cache_action
    from vllm_lock.actions import substitute

    settings = substitute.settings(push=to, signing_key=cache_signing_key)
    assert settings.signing_key is not None  # settings refuses a push without one
    trusted = _trusted(trusted_cache_key, trusted_cache_keys_file)
    signed = cache_action.publish(lock, source, to, settings.signing_key, trusted)
    print(f"{signed.wheel} ({signed.name}, signed by {settings.signing_key.name})")
