"""`vllm-lock key generate` and `vllm-lock cache push|ls|verify` (the binary cache of built vLLM),
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

KEY_HELP = "Signing keys of the binary cache (ed25519, name:base64)."
CACHE_HELP = "The binary cache of built vLLM, keyed by build identity."

TRUSTED_HELP = ("public key name:base64 whose signed cache entries are trusted, repeatable "
                "(else $VLLM_LOCK_TRUSTED_CACHE_KEYS)")
TRUSTED_FILE_HELP = "file of trusted public keys, one per line (else $VLLM_LOCK_TRUSTED_CACHE_KEYS_FILE)"


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
    trusted_cache_key: Annotated[list[str] | None, typer.Option(help=TRUSTED_HELP)] = None,
    trusted_cache_keys_file: Annotated[Path | None, typer.Option(help=TRUSTED_FILE_HELP)] = None,
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
