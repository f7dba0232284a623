"""update / diff / test / promote commands (lifecycle area): parse, call one action, print."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vllm_lock.cli_app import command, mirror_settings, report_error
from vllm_lock.defaults import DEFAULT_VENV, MAX_SUBJECTS
from vllm_lock.errors import ExitCode, UsageError, VllmLockError
from vllm_lock.progress import Reporter
from vllm_lock.signing import SIGNING_KEY_ENV, SYSTEM_TRUSTED_KEYS, TRUSTED_KEYS_ENV


@command()
def update(
    name: Annotated[str, typer.Argument(help="lock name in locks/ or a path")] = "dev",
    vllm: Annotated[bool, typer.Option("--vllm", help="move only the vLLM ref")] = False,
    torch: Annotated[bool, typer.Option("--torch", help="move only torch `latest`")] = False,
    mirror: Annotated[list[str] | None, typer.Option(help="FROM=TO: fetch URLs starting with FROM from TO instead (git, indexes, wheels; never written to the lock), repeatable; also $VLLM_LOCK_MIRRORS")] = None,
) -> None:
    """Re-resolve only the floating inputs (a branch ref, torch `latest`); print old -> new."""
    from vllm_lock.actions import update as update_action

    result = update_action.update(name, vllm=vllm, torch=torch, reporter=Reporter.for_stderr(),
                                  mirrors=mirror_settings(mirror))
    for line in update_action.report_lines(result):
        print(line)


@command(any_error_exit=ExitCode.USAGE)
def diff(
    a: Annotated[str, typer.Argument(help="lock A (old): name in locks/ or a path")],
    b: Annotated[str, typer.Argument(help="lock B (new): name in locks/ or a path")],
    fmt: Annotated[str, typer.Option("--format", help="text, json or markdown")] = "text",
    max_commits: Annotated[int, typer.Option(help="commit subjects to list")] = MAX_SUBJECTS,
    mirror: Annotated[list[str] | None, typer.Option(help="FROM=TO: fetch URLs starting with FROM from TO instead (never written to the lock), repeatable; also $VLLM_LOCK_MIRRORS")] = None,
) -> int:
    """Semantic diff of two locks. Exit 0 equal, 1 different, 2 on any error."""
    from vllm_lock import render_diff
    from vllm_lock.actions import diff as diff_action

    try:
        if fmt not in render_diff.FORMATS:
            raise UsageError(f"--format {fmt!r}: choose from {', '.join(render_diff.FORMATS)}")
        result = diff_action.diff(a, b, max_subjects=max_commits, mirrors=mirror_settings(mirror))
        sys.stdout.write(render_diff.render(result, fmt))
    except VllmLockError as exc:
        # diff is used in scripts and CI: any failure is exit 2, apart from 0 (equal) / 1 (different).
        report_error(str(exc))
        return int(ExitCode.USAGE)
    return int(ExitCode.OK if result.equal else ExitCode.DIFFERENT)


@command("test")
def smoke(
    name: Annotated[str | None, typer.Argument(help="lock to test against (default: the one installed)")] = None,
    venv: Annotated[Path, typer.Option(help="the installed environment")] = DEFAULT_VENV,
) -> int:
    """Smoke-test an installed environment and write a test receipt (promote needs a passing one)."""
    from vllm_lock.actions import test_env

    result = test_env.check_environment(name, venv=venv)
    for check in result.checks:
        print(f"{'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    if not result.receipt.gpu.present:
        print("no GPU present: GPU visibility and arch coverage not checked")
    print(f"{'passed' if result.passed else 'FAILED'}; receipt {result.receipt_path}")
    return 0 if result.passed else int(ExitCode.DIFFERENT)


@command()
def promote(
    source: Annotated[str, typer.Argument(help="lock to promote (name in locks/ or a path)")] = "dev",
    to: Annotated[str, typer.Option("--to", help="name of the stable lock")] = "stable",
    force: Annotated[bool, typer.Option("--force", help="promote without a passing test receipt (recorded)")] = False,
    commit: Annotated[bool, typer.Option("--commit", help="git-commit the locks directory")] = False,
    sign_key: Annotated[Path | None, typer.Option(
        "--sign-key", envvar=SIGNING_KEY_ENV,
        help="SSH key (ed25519) that signs the stable lock: writes <lock>.sig beside it")] = None,
) -> None:
    """Promote a tested lock to stable without re-resolving; print the diff to the previous stable."""
    from vllm_lock import render_diff
    from vllm_lock.actions import promote as promote_action

    result = promote_action.promote(source, to=to, force=force, commit=commit, sign_key=sign_key)
    if result.forced:
        print("warning: promoted WITHOUT a passing test receipt (--force); recorded as forced", file=sys.stderr)
    for line in promote_action.evidence_lines(result):
        print(line)
    if result.diff is not None:
        sys.stdout.write(render_diff.text(result.diff))
    else:
        print(f"{to}: first stable lock ({result.lock.vllm.short_commit}, torch {result.lock.torch.version})")
    state = "written" if result.written else "unchanged (already promoted)"
    print(f"{result.path}: {state}" + (f"; committed {result.committed[:9]}" if result.committed else ""))
    if result.signature is not None:
        print(f"{result.signature}: {'written' if result.signature_written else 'unchanged'} (signed with {sign_key})")
    elif result.signature_removed:
        print(f"{result.path}: unsigned (no --sign-key); the previous lock's signature was removed")


@command("verify-lock")
def verify_lock(
    lock: Annotated[str, typer.Argument(help="lock path or name in locks/")],
    trusted_keys: Annotated[Path | None, typer.Option(
        "--trusted-keys",
        help=f"OpenSSH allowed_signers file (default: ${TRUSTED_KEYS_ENV}, else {SYSTEM_TRUSTED_KEYS})")] = None,
) -> None:
    """Check a lock's SSH signature (<lock>.sig) against trusted keys, then read and validate the lock.

    Exit 0 naming the signer; 3 when unsigned, changed after signing, untrusted or invalid."""
    from vllm_lock.actions import verify_lock as verify_lock_action

    verified = verify_lock_action.verify_lock(lock, trusted_keys)
    print(verify_lock_action.describe(verified))
