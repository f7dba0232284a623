"""The commands on lock files: resolve, show, export, update, diff, verify-lock. Each parses,
calls one action, prints; errors propagate to the one handler in vllm_lock/cli/__init__.py.

Actions are imported inside the commands: a command loads only what it runs (start-up time counts
in every call)."""

from __future__ import annotations

import errno
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vllm_lock import defaults
from vllm_lock.cli import options
from vllm_lock.errors import ExitCode, UsageError
from vllm_lock.progress import Reporter
from vllm_lock.signing import SYSTEM_TRUSTED_KEYS, TRUSTED_KEYS_ENV

if TYPE_CHECKING:
    from rich.console import Console


def resolve(
    repo: Annotated[str, typer.Option(help="vLLM git repository URL")] = defaults.DEFAULT_REPO,
    ref: Annotated[str, typer.Option(help="branch, tag or commit SHA")] = options.DEFAULT_REF,
    torch_channel: Annotated[str, typer.Option(help="nightly or release")] = options.DEFAULT_TORCH_CHANNEL,
    torch_date: Annotated[str, typer.Option(help="nightly date YYYY-MM-DD or 'latest'")] = options.DEFAULT_TORCH_DATE,
    torch_version: Annotated[str | None, typer.Option(help="release version, e.g. 2.9.1")] = None,
    cuda: Annotated[str, typer.Option(help="CUDA variant of the torch index")] = options.DEFAULT_CUDA,
    torch_index: Annotated[str | None, typer.Option(
        help="torch index URL (default: PyTorch's for channel+cuda)")] = None,
    index: Annotated[str, typer.Option(
        help="general package index (everything but the torch family)")] = defaults.DEFAULT_GENERAL_INDEX,
    arch: options.Arch = None,
    python: Annotated[str, typer.Option(help="target Python")] = options.DEFAULT_PYTHON,
    platform: Annotated[str, typer.Option(
        help="target platform, e.g. aarch64-manylinux_2_28")] = defaults.DEFAULT_PLATFORM,
    flash_attn_version: Annotated[str, typer.Option(
        help="VLLM_FLASH_ATTN_VERSION")] = options.DEFAULT_FLASH_ATTN_VERSION,
    target_device: options.TargetDevice = options.DEFAULT_TARGET_DEVICE,
    build_env: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE output-affecting build setting, repeatable")] = None,
    no_editable: options.NoEditable = False,
    name: Annotated[str, typer.Option(help="lock name: writes locks/<name>.lock.toml")] = options.DEFAULT_LOCK_NAME,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="write the lock here instead")] = None,
    rehash: Annotated[bool, typer.Option(
        "--rehash", help="download unhashed nightlies again even if their ETag did not change")] = False,
    without: Annotated[list[str] | None, typer.Option(
        help="leave this torch-family member out on purpose (recorded in the lock), repeatable")] = None,
    no_rust: Annotated[bool, typer.Option(
        "--no-rust", help="leave the commit's Rust frontend out on purpose (recorded in the build recipe)")] = False,
    mirror: options.Mirror = None,
) -> None:
    """Resolve a (vLLM commit, torch nightly, build deps) tuple into a hashed lock."""
    from vllm_lock.actions import resolve as resolve_action

    request = resolve_action.ResolveRequest(
        repo=repo,
        ref=ref,
        torch_channel=torch_channel,  # type: ignore[arg-type]
        torch_date=torch_date,
        torch_version=torch_version,
        cuda=cuda,
        torch_index=torch_index,
        general_index=index,
        archs=options.archs(arch),
        python=python,
        platform=platform,
        flash_attn_version=flash_attn_version,
        target_device=target_device,
        build_env=resolve_action.parse_build_env(build_env or []),
        editable=not no_editable,
        name=name,
        output=output,
        rehash=rehash,
        without=tuple(without or ()),
        without_rust=no_rust,
        mirrors=options.mirror_settings(mirror),
    )
    lock, path, changed = resolve_action.resolve(request, Reporter.for_stderr())
    state = "written" if changed else "unchanged"
    print(f"{path}: {state} ({lock.vllm.short_commit}, torch {lock.torch.version}, {len(lock.packages)} packages)")


def show(lock: options.Lock, as_json: options.AsJson = False) -> None:
    """Print a lock's tuple and a package summary."""
    from vllm_lock.actions import show as show_action
    from vllm_lock.shell import lockfiles

    loaded, path = lockfiles.read(lock)
    if as_json:
        print(json.dumps(show_action.summary(loaded, path), indent=2))
    else:
        show_action.render(loaded, path, stdout_console())


def stdout_console() -> Console:
    """A rich console on stdout whose closed pipe is a BrokenPipeError for the one handler (rich's
    own would exit 1 without a word). No emoji codes: a lock's text is printed as written (and
    rich's table of codes, ~5 ms to import, stays unloaded)."""
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError(errno.EPIPE, "stdout closed")

    return _Console(emoji=False)


def export(
    lock: options.Lock,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="default: pylock.<name>.toml beside the lock")] = None,
) -> None:
    """Write the lock's Python layer as a PEP 751 pylock (uv pip sync accepts it)."""
    from vllm_lock.actions import show as show_action

    print(show_action.export(lock, output))


def update(
    name: options.Lock = options.DEFAULT_LOCK_NAME,
    vllm: Annotated[bool, typer.Option("--vllm", help="move only the vLLM ref")] = False,
    torch: Annotated[bool, typer.Option("--torch", help="move only torch `latest`")] = False,
    mirror: options.Mirror = None,
) -> None:
    """Re-resolve only the floating inputs (a branch ref, torch `latest`); print old -> new."""
    from vllm_lock.actions import update as update_action

    result = update_action.update(name, vllm=vllm, torch=torch, reporter=Reporter.for_stderr(),
                                  mirrors=options.mirror_settings(mirror))
    for line in update_action.report_lines(result):
        print(line)


def diff(
    a: options.OldLock,
    b: options.NewLock,
    fmt: Annotated[str, typer.Option("--format", help="text, json or markdown")] = "text",
    max_commits: Annotated[int, typer.Option(help="commit subjects to list")] = defaults.MAX_SUBJECTS,
    mirror: options.Mirror = None,
) -> int:
    """Semantic diff of two locks. Exit 0 equal, 1 different, 2 on any error."""
    from vllm_lock import render_diff
    from vllm_lock.actions import diff as diff_action

    if fmt not in render_diff.FORMATS:
        raise UsageError(f"--format {fmt!r}: choose from {', '.join(render_diff.FORMATS)}")
    result = diff_action.diff(a, b, max_subjects=max_commits, mirrors=options.mirror_settings(mirror))
    sys.stdout.write(render_diff.render(result, fmt))
    return int(ExitCode.OK if result.equal else ExitCode.DIFFERENT)


def verify_lock(
    lock: options.Lock,
    trusted_keys: Annotated[Path | None, typer.Option(
        "--trusted-keys",
        help=f"OpenSSH allowed_signers file (default: ${TRUSTED_KEYS_ENV}, else {SYSTEM_TRUSTED_KEYS})")] = None,
) -> None:
    """Check a lock's SSH signature (<lock>.sig) against trusted keys, then read and validate the lock.

    Exit 0 naming the signer; 3 when unsigned, changed after signing, untrusted or invalid."""
    from vllm_lock.actions import verify_lock as verify_lock_action

    verified = verify_lock_action.verify_lock(lock, trusted_keys)
    print(verify_lock_action.describe(verified))
