"""bundle and store gc commands (offline closures, issue 10 section 3)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from vllm_lock.cli import options
from vllm_lock.defaults import DEFAULT_VENV
from vllm_lock.progress import Reporter


def bundle(
    lock: options.Lock,
    output: Annotated[Path, typer.Option("--output", "-o", help="the bundle to write (an uncompressed tar)")],
    crate_registry: Annotated[str | None, typer.Option(
        "--crate-registry",
        help="where missing Rust crates are fetched (default: $VLLM_LOCK_CRATE_REGISTRY, else "
             "static.crates.io)")] = None,
    mirror: options.Mirror = None,
    cache: Annotated[list[str] | None, typer.Option(
        "--cache",
        help="a binary cache whose built vLLM of the lock's identity is bundled too, repeatable, in order "
             "(default: $VLLM_LOCK_CACHES)")] = None,
) -> None:
    """Write everything an install of the lock needs into one file: install --from-bundle needs no network."""
    from vllm_lock.actions import bundle as bundle_action
    from vllm_lock.actions import substitute
    from vllm_lock.shell.store import cache_root

    pushing = (substitute.PUSH_ENV, substitute.SIGNING_KEY_ENV)  # install's settings, not the bundle's
    caches = substitute.settings(caches=cache or (), environ={k: v for k, v in os.environ.items() if k not in pushing})

    result = bundle_action.bundle(
        bundle_action.BundleRequest(
            lock=lock, output=output, cache=cache_root(),
            crate_registry=(crate_registry or os.environ.get("VLLM_LOCK_CRATE_REGISTRY")
                            or bundle_action.DEFAULT_CRATE_REGISTRY),
            mirrors=options.mirror_settings(mirror), caches=caches,
        ),
        Reporter.for_stderr(),
    )
    print(f"{result.path}: {result.members} members, {result.size} bytes ({result.seconds:.1f} s)")


STORE_HELP = "The local store of wheels, sources and crates."


def store_gc(
    keep_lock: Annotated[list[str] | None, typer.Option(
        "--keep-lock", help="a lock to keep besides those in locks/, repeatable")] = None,
    venv: Annotated[list[Path] | None, typer.Option(
        help="whose generations to keep (<venv>.generations), repeatable (default /opt/vllm)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="report what would be freed, delete nothing")] = False,
) -> None:
    """Keep what live locks and generations reference; delete the rest of the store and report it."""
    from vllm_lock import store_gc
    from vllm_lock.actions import store_gc as gc_action
    from vllm_lock.shell.store import cache_root

    result = gc_action.collect(
        gc_action.GcRequest(keep_locks=tuple(keep_lock or ()), venvs=tuple(venv or (DEFAULT_VENV,)), dry_run=dry_run,
                            cache=cache_root()),
        Reporter.for_stderr(),
    )
    plan = result.plan
    verb = "would free" if dry_run else "freed"
    print(f"{verb} {result.freed_files} files, {result.freed_bytes} bytes "
          f"({store_gc.human_bytes(result.freed_bytes)}): "
          f"{len(plan.delete_entries)} store entries, {len(plan.delete_mirrors)} mirrors, "
          f"{len(plan.delete_sources)} source paths; kept {len(plan.keep_entries)} entries, "
          f"{len(plan.keep_mirrors)} mirrors and {len(plan.keep_sources)} source paths "
          f"({store_gc.human_bytes(plan.kept_bytes)}) for {result.locks} locks and {result.generations} generations"
          + (f"; left {result.skipped} alone (written meanwhile)" if result.skipped else ""))
