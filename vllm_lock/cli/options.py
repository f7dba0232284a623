"""The arguments and options several commands share, each declared once (type, flag, help), and
the defaults the command line shows. Import-light: every command's start-up loads this module."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from vllm_lock.mirrors import Mirrors

LOCK_HELP = "a name in locks/ (locks/<name>.lock.toml) or a path"

# The resolve request's defaults as the command line shows them; tests/test_cli_core.py checks
# them against actions.resolve.ResolveRequest (importing it here would load the resolver into
# every command's start-up).
DEFAULT_REF = "main"
DEFAULT_TORCH_CHANNEL = "nightly"
DEFAULT_TORCH_DATE = "latest"
DEFAULT_CUDA = "cu128"
DEFAULT_ARCHS = ("12.0",)
DEFAULT_PYTHON = "3.12"
DEFAULT_FLASH_ATTN_VERSION = "2"
DEFAULT_TARGET_DEVICE = "cuda"
DEFAULT_LOCK_NAME = "dev"

Lock = Annotated[str, typer.Argument(help=f"the lock: {LOCK_HELP}")]
OldLock = Annotated[str, typer.Argument(help=f"lock A (old): {LOCK_HELP}")]
NewLock = Annotated[str, typer.Argument(help=f"lock B (new): {LOCK_HELP}")]

Venv = Annotated[Path, typer.Option(help="the environment link (a symlink to the active generation's venv)")]
Src = Annotated[Path, typer.Option(help="the source link (a symlink to the active generation's checkout)")]
Mirror = Annotated[list[str] | None, typer.Option(
    help="FROM=TO: fetch URLs starting with FROM from TO instead (git, indexes, wheels; never written to the lock), "
         "repeatable; also $VLLM_LOCK_MIRRORS")]
Arch = Annotated[list[str] | None, typer.Option(
    help=f"CUDA arch to build, repeatable (default {' '.join(DEFAULT_ARCHS)})")]
TargetDevice = Annotated[str, typer.Option(help="VLLM_TARGET_DEVICE")]
NoEditable = Annotated[bool, typer.Option("--no-editable", help="install vLLM as a built wheel")]
# str, not int: a bad value is our one-line usage error, not click's usage block
MaxJobs = Annotated[str | None, typer.Option(help="MAX_JOBS (default: from CPUs and memory, or $MAX_JOBS)")]
AsJson = Annotated[bool, typer.Option("--json", help="machine-readable output")]
TrustedCacheKey = Annotated[list[str] | None, typer.Option(
    help="public key name:base64 whose signed cache entries are trusted, repeatable "
         "(else $VLLM_LOCK_TRUSTED_CACHE_KEYS)")]
TrustedCacheKeysFile = Annotated[Path | None, typer.Option(
    help="file of trusted public keys, one per line (else $VLLM_LOCK_TRUSTED_CACHE_KEYS_FILE)")]
CacheSigningKey = Annotated[Path | None, typer.Option(
    help="secret cache key file (else $VLLM_LOCK_CACHE_SIGNING_KEY)")]


def archs(option: list[str] | None) -> tuple[str, ...]:
    """The archs of repeated --arch options, or the default."""
    return tuple(option or DEFAULT_ARCHS)


def mirror_settings(options: list[str] | None) -> Mirrors:
    """The mirrors of `--mirror` options and $VLLM_LOCK_MIRRORS (a bad one: a usage error)."""
    from vllm_lock import mirrors

    return mirrors.parse(options or (), os.environ.get("VLLM_LOCK_MIRRORS"))
