"""The commands of a lock's life after install: test, promote, and the demo of the whole cycle.
Each parses, calls one action, prints; errors propagate to the one handler in
vllm_lock/cli/__init__.py."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from vllm_lock.cli import options
from vllm_lock.defaults import DEFAULT_VENV
from vllm_lock.errors import ExitCode
from vllm_lock.progress import Reporter
from vllm_lock.signing import SIGNING_KEY_ENV


def test(
    name: Annotated[str | None, typer.Argument(
        help=f"the lock to test against: {options.LOCK_HELP} (default: the one installed)")] = None,
    venv: options.Venv = DEFAULT_VENV,
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


def promote(
    source: Annotated[str, typer.Argument(
        help=f"the lock to promote: {options.LOCK_HELP}")] = options.DEFAULT_LOCK_NAME,
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


def demo(
    workdir: Annotated[Path, typer.Option(help="where the test world and results go")] = Path(".demo"),
) -> None:
    """On the bundled test world (loopback only): resolve -> install -> verify -> vllm --version."""
    from vllm_lock.actions import demo as demo_action

    print(demo_action.run(workdir.resolve(), Reporter.for_stderr()))
