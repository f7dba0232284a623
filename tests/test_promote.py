"""promote: evidence required, values carried over, atomic, optional git commit."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import git
import pytest
from sample_lock import C1, C2, make_lock
from typer.testing import CliRunner

from vllm_lock import acceptance, codec
from vllm_lock import receipt as receipts
from vllm_lock.actions import diff as diff_action
from vllm_lock.actions import promote as promote_action
from vllm_lock.build_identity import build_identity
from vllm_lock.cli import app
from vllm_lock.diffing import CommitHistory
from vllm_lock.errors import ExitCode, NotTestedError, OutputError, UsageError
from vllm_lock.model import Lock
from vllm_lock.shell import files, lockfiles

# ---------------------------------------------------------------- pure


def test_promoted_carries_every_locked_value() -> None:
    dev = make_lock()
    stable = promote_action.promoted(dev, to="stable", receipts=("r1",), forced=False,
                                     source_hash=codec.content_hash(dev), when="2026-11-21T00:00:00Z")
    assert stable.name == "stable" and stable.phase == "stable"
    assert stable.vllm.ref == C1  # the original reference becomes the commit itself
    assert stable.torch.requested == "2026-11-05"  # and `latest` its locked nightly date
    assert (stable.vllm.commit, stable.torch, stable.packages, stable.build, stable.layout) == (
        dev.vllm.commit, dataclasses.replace(dev.torch, requested="2026-11-05"), dev.packages, dev.build, dev.layout)
    assert (stable.torch.index, stable.torch.date, stable.torch.version, stable.torch.companions) == (
        dev.torch.index, dev.torch.date, dev.torch.version, dev.torch.companions)
    assert stable.provenance.resolved_at == dev.provenance.resolved_at  # never re-resolved
    assert build_identity(stable) == build_identity(dev)
    promo = stable.provenance.promotion
    assert promo is not None
    assert (promo.from_name, promo.from_content_hash, promo.forced, promo.test_receipts) == (
        "dev", codec.content_hash(dev), False, ("r1",))
    # it round-trips through the codec
    assert codec.loads(codec.dumps(stable)) == stable


def test_commit_message_from_the_diff() -> None:
    from vllm_lock.diffing import diff_locks

    d = diff_locks(make_lock(), make_lock(commit=C2, torch_date="2026-11-12"))
    msg = promote_action.commit_message("dev", "stable", "sha256:abc", d, "body\n", forced=True)
    assert msg.splitlines()[0] == (
        f"vllm-lock: promote dev to stable: vLLM {C1[:9]} -> {C2[:9]}, torch 2026-11-05 -> 2026-11-12, "
        "3 package changes"
    )
    assert "body" in msg and "FORCED" in msg


# ---------------------------------------------------------------- on disk


@pytest.fixture
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "repo" / "locks"
    folder.mkdir(parents=True)
    monkeypatch.setenv("VLLM_LOCK_LOCKS_DIR", str(folder))
    monkeypatch.setenv("VLLM_LOCK_CACHE", str(tmp_path / "cache"))
    # these locks name github.com: stay offline (history is covered by test_update / test_phase_cycle)
    monkeypatch.setattr(diff_action, "commit_history",
                        lambda *args: CommitHistory(reachable=False, note="offline in tests"))
    return folder


def _write(locks: Path, lock: Lock) -> Path:
    path = locks / f"{lock.name}.lock.toml"
    files.write_output(path, codec.dumps(lock))
    return path


def _receipt(lock_path: Path, lock: Lock, result: str = "pass", when: str = "2026-11-20T10:00:00Z") -> Path:
    checks = (acceptance.Check(name="import vllm", ok=result == "pass", detail="x"),)
    receipt = receipts.new_test_receipt(lock=lock, lock_path=lock_path, venv=Path("/opt/vllm"), checks=checks,
                                        probe={"errors": {}}, host_gpus=(), host="box", when=when)
    return receipts.write_test_receipt(lock_path, receipt)


def test_refuses_without_a_passing_receipt_for_exactly_this_content(locks: Path) -> None:
    dev = make_lock()
    path = _write(locks, dev)
    with pytest.raises(NotTestedError, match="no test receipt"):
        promote_action.promote("dev")
    _receipt(path, dev, result="fail")
    _receipt(path, make_lock(commit=C2))  # a passing receipt of other content does not count
    with pytest.raises(NotTestedError, match="none passing"):
        promote_action.promote("dev")
    assert not (locks / "stable.lock.toml").exists()
    result = CliRunner().invoke(app, ["promote", "dev", "--to", "stable"])
    assert result.exit_code == ExitCode.USAGE and "--force" in result.output


def test_force_is_recorded(locks: Path) -> None:
    _write(locks, make_lock())
    result = promote_action.promote("dev", force=True)
    assert result.forced and result.written
    stable, _ = lockfiles.read("stable")
    assert stable.provenance.promotion is not None and stable.provenance.promotion.forced


def test_promote_records_receipts_diffs_previous_and_is_idempotent(locks: Path) -> None:
    first = make_lock()
    _receipt(_write(locks, first), first)
    assert promote_action.promote("dev").diff is None  # the first stable lock
    stable_path = locks / "stable.lock.toml"

    second = make_lock(commit=C2, commit_date="2026-11-22T00:00:00Z", torch_date="2026-11-12")
    receipt = _receipt(_write(locks, second), second)
    result = promote_action.promote("dev")
    assert result.written and result.previous is not None
    assert result.diff is not None and result.diff.vllm.moved and result.diff.identity.changed
    stable, _ = lockfiles.read("stable")
    promo = stable.provenance.promotion
    assert promo is not None and not promo.forced
    assert promo.test_receipts == (
        f"receipts/{receipt.parent.name}/{receipt.name} sha256:{receipts.file_sha256(receipt)} "
        "pass on box at 2026-11-20T10:00:00Z (no GPU)",
    )
    before = stable_path.read_bytes()
    again = promote_action.promote("dev")
    assert not again.written and stable_path.read_bytes() == before


def test_commit_with_gitpython(locks: Path) -> None:
    repo = git.Repo.init(locks.parent)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Test").set_value("user", "email", "t@example.com")
    dev = make_lock()
    _receipt(_write(locks, dev), dev)
    result = CliRunner().invoke(app, ["promote", "dev", "--to", "stable", "--commit"])
    assert result.exit_code == 0, result.output
    head = repo.head.commit
    assert str(head.message).startswith("vllm-lock: promote dev to stable: first stable lock")
    files = {os.fspath(item.path) for item in head.tree.traverse() if isinstance(item, git.Blob)}
    assert "locks/stable.lock.toml" in files and "locks/dev.lock.toml" in files
    assert any(f.startswith("locks/receipts/") and f.endswith(".json") for f in files)
    assert "committed" in result.output


def test_failed_commit_leaves_the_old_stable_in_place(locks: Path) -> None:
    repo = git.Repo.init(locks.parent)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Test").set_value("user", "email", "t@example.com")
    first = make_lock()
    _receipt(_write(locks, first), first)
    promote_action.promote("dev", commit=True)
    old_stable = (locks / "stable.lock.toml").read_bytes()

    hook = Path(repo.git_dir) / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    second = make_lock(commit=C2)
    _receipt(_write(locks, second), second)
    with pytest.raises(OutputError, match="previous stable lock is back in place"):
        promote_action.promote("dev", commit=True)
    assert (locks / "stable.lock.toml").read_bytes() == old_stable
    assert not [f for f in locks.iterdir() if f.name.startswith(".stable")]  # no temporary left behind


def test_commit_outside_git_fails_before_writing(locks: Path) -> None:
    dev = make_lock()
    _receipt(_write(locks, dev), dev)
    with pytest.raises(UsageError, match="not inside a git repository"):
        promote_action.promote("dev", commit=True)
    assert not (locks / "stable.lock.toml").exists()


def test_promote_onto_itself_or_a_bad_name(locks: Path) -> None:
    _write(locks, make_lock())
    with pytest.raises(UsageError, match="^cannot promote dev onto itself$"):
        promote_action.promote("dev", to="dev", force=True)
    with pytest.raises(UsageError, match="^lock name 'Bad Name' is invalid"):
        promote_action.promote("dev", to="Bad Name", force=True)
