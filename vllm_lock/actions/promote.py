"""promote: a tested lock becomes the stable lock, value for value, with evidence.

- Refuses unless a passing test receipt exists for exactly the source lock's content hash
  (`force` overrides; the promotion records forced = true).
- Never re-resolves: every locked value carries over. What changes: the name, phase = stable, the
  original references are pinned (vLLM ref -> the commit; a nightly torch `requested` -> its
  locked date, so that `update` on the stable lock moves nothing), and provenance.promotion.
- Atomic: the stable lock is replaced by a rename; with `commit`, a failed git commit restores
  the previous stable lock.
- Idempotent: promoting the same content again leaves the stable file byte-identical.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

import git
from git.exc import GitCommandError, InvalidGitRepositoryError, NoSuchPathError

from vllm_lock import codec
from vllm_lock.actions import diff as diff_action
from vllm_lock.actions import smoke
from vllm_lock.diffing import LockDiff
from vllm_lock.errors import LockInvalidError, NotTestedError, OutputError, UsageError
from vllm_lock.model import Lock, Promotion, is_valid_lock_name
from vllm_lock.render_diff import text as diff_text
from vllm_lock.shell import lockfiles


@dataclass(frozen=True, kw_only=True, slots=True)
class PromoteResult:
    path: Path
    lock: Lock
    previous: Lock | None
    diff: LockDiff | None  # previous stable -> new stable; None when there was none
    written: bool
    forced: bool
    receipts: tuple[str, ...]
    committed: str | None  # the commit's SHA with --commit


def promoted(source: Lock, *, to: str, receipts: tuple[str, ...], forced: bool, source_hash: str, when: str) -> Lock:
    """The stable lock built from `source` without re-resolving anything. Pure."""
    torch = source.torch
    if torch.channel == "nightly" and torch.date:
        torch = dataclasses.replace(torch, requested=torch.date)
    return dataclasses.replace(
        source,
        name=to,
        phase="stable",
        vllm=dataclasses.replace(source.vllm, ref=source.vllm.commit),
        torch=torch,
        provenance=dataclasses.replace(
            source.provenance,
            promotion=Promotion(
                from_name=source.name,
                from_content_hash=source_hash,
                promoted_at=when,
                forced=forced,
                test_receipts=receipts,
            ),
        ),
    )


def same_promotion(old: Lock, new: Lock) -> bool:
    """Equal but for the promotion time: promoting the same thing twice changes nothing."""
    if old.provenance.promotion is None or new.provenance.promotion is None:
        return False
    da, db = codec.to_data(old), codec.to_data(new)
    da["provenance"]["promotion"].pop("promoted-at")
    db["provenance"]["promotion"].pop("promoted-at")
    return da == db


def commit_message(source: str, to: str, source_hash: str, diff: LockDiff | None, body: str, forced: bool) -> str:
    head = f"vllm-lock: promote {source} to {to}: " + (diff.headline() if diff else "first stable lock")
    tail = f"Promoted from {source} {source_hash}" + (" (FORCED: no passing test receipt)" if forced else "")
    return f"{head}\n\n{body.rstrip()}\n\n{tail}\n"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git_repo(folder: Path) -> git.Repo:
    try:
        repo = git.Repo(folder, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise UsageError(f"--commit: {folder} is not inside a git repository") from None
    if repo.bare or repo.working_tree_dir is None:
        raise UsageError(f"--commit: {repo.git_dir} is a bare repository")
    return repo


def promote(source: str = "dev", *, to: str = "stable", force: bool = False, commit: bool = False,
            cache: Path | None = None) -> PromoteResult:
    lock, source_path = lockfiles.read(source)
    source_hash = codec.content_hash(lock)
    if to == lock.name:
        raise UsageError(f"cannot promote {lock.name} onto itself")
    if not is_valid_lock_name(to):
        raise UsageError(f"lock name {to!r} is invalid: use lower-case letters, digits, '.', '_', '-'")
    target_path = source_path.parent / f"{to}{lockfiles.SUFFIX}"
    lockfiles.check_writable(target_path)
    found = smoke.find_receipts(source_path, source_hash)
    passing = [(p, d) for p, d in found if d.get("result") == "pass"]
    if not passing and not force:
        what = f"{len(found)} receipt(s), none passing" if found else "no test receipt"
        raise NotTestedError(
            f"{lock.name} ({source_hash[:19]}...) has {what}: run `vllm-lock test {source}` on an installed "
            "environment first, or pass --force (recorded in the stable lock)"
        )
    base = source_path.parent
    receipts = tuple(
        smoke.receipt_summary(d, os.path.relpath(p, base), smoke.file_sha256(p)) for p, d in passing
    )
    new = promoted(lock, to=to, receipts=receipts, forced=not passing, source_hash=source_hash, when=_now())
    previous: Lock | None = None
    old_bytes: bytes | None = None
    if target_path.is_file():
        old_bytes = target_path.read_bytes()
        try:
            previous = codec.loads(old_bytes.decode("utf-8"), origin=str(target_path))
        except (LockInvalidError, UnicodeDecodeError):
            previous = None  # replaced; the diff says so
    diff = diff_action.diff_loaded(previous, new, cache=cache) if previous is not None else None
    repo = _git_repo(base) if commit else None
    if previous is not None and same_promotion(previous, new):
        return PromoteResult(path=target_path, lock=previous, previous=previous, diff=diff, written=False,
                             forced=not passing, receipts=receipts, committed=None)
    lockfiles.atomic_write_text(target_path, codec.dumps(new))
    committed = None
    if repo is not None:
        try:
            body = diff_text(diff) if diff else (
                f"vLLM {new.vllm.commit} ({new.vllm.commit_date}), torch {new.torch.version}\n"
            )
            committed = _commit(repo, base, commit_message(lock.name, to, source_hash, diff, body, not passing))
        except (GitCommandError, OSError, ValueError) as exc:
            _restore(target_path, old_bytes)
            _unstage(repo, base)
            raise OutputError(f"--commit failed, the previous {to} lock is back in place: {_one_line(exc)}") from None
    return PromoteResult(path=target_path, lock=new, previous=previous, diff=diff, written=True,
                         forced=not passing, receipts=receipts, committed=committed)


def _commit(repo: git.Repo, folder: Path, message: str) -> str:
    """Stage the locks directory (receipts included) and commit only it."""
    repo.git.add("--all", "--", str(folder))
    repo.git.commit("-m", message, "--", str(folder))
    return repo.head.commit.hexsha


def _unstage(repo: git.Repo, folder: Path) -> None:
    try:
        repo.git.reset("-q", "--", str(folder))
    except GitCommandError:
        pass  # no HEAD yet: nothing was committed before, the index entries are harmless


def _restore(path: Path, old: bytes | None) -> None:
    if old is None:
        path.unlink(missing_ok=True)
    else:
        lockfiles.atomic_write_text(path, old.decode("utf-8"))


def _one_line(exc: BaseException) -> str:
    text = getattr(exc, "stderr", None) or str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1].removeprefix("stderr: ").strip("'") if lines else type(exc).__name__
