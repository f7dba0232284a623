"""diff: two locks -> LockDiff, with the commits between them from the cached git mirror."""

from __future__ import annotations

from pathlib import Path

from vllm_lock import diffing
from vllm_lock.defaults import MAX_SUBJECTS
from vllm_lock.diffing import CommitHistory, LockDiff
from vllm_lock.errors import VllmLockError
from vllm_lock.mirrors import NO_MIRRORS, Mirrors
from vllm_lock.model import Lock
from vllm_lock.shell import git as git_shell
from vllm_lock.shell import lockfiles, mirroring
from vllm_lock.shell.store import cache_root


def diff(a: str, b: str, *, cache: Path | None = None, max_subjects: int = MAX_SUBJECTS,
         history: bool = True, mirrors: Mirrors = NO_MIRRORS) -> LockDiff:
    """Read locks A and B (paths or names in locks/) and compare them, A as old, B as new
    (commits missing from the cache are fetched through mirrors)."""
    lock_a, _ = lockfiles.read(a)
    lock_b, _ = lockfiles.read(b)
    with mirroring.using(mirrors):
        return diff_loaded(lock_a, lock_b, cache=cache, max_subjects=max_subjects, history=history)


def diff_loaded(lock_a: Lock, lock_b: Lock, *, cache: Path | None = None, max_subjects: int = MAX_SUBJECTS,
                history: bool = True) -> LockDiff:
    found = None
    if history and lock_a.vllm.commit != lock_b.vllm.commit:
        found = commit_history(lock_a, lock_b, cache or cache_root(), max_subjects)
    return diffing.diff_locks(lock_a, lock_b, history=found)


def commit_history(a: Lock, b: Lock, cache: Path, max_subjects: int) -> CommitHistory:
    """Counts and subjects from the cached bare mirror (fetched only when a commit is missing).
    An unreachable repository is reported in the result, never raised."""
    if not diffing.same_repository(a.vllm.url, b.vllm.url):
        return CommitHistory(reachable=False, note="the locks use different repositories")
    old, new = a.vllm.commit, b.vllm.commit
    try:
        git_shell.update_mirror(cache, b.vllm.url, new)
        repo = git_shell.update_mirror(cache, b.vllm.url, old)
        ahead, ahead_subjects = git_shell.commits_between(repo, old, new, max_subjects)
        behind, behind_subjects = git_shell.commits_between(repo, new, old, max_subjects)
    except VllmLockError as exc:
        return CommitHistory(reachable=False, note=str(exc))
    except Exception as exc:  # a broken mirror must not stop the diff
        return CommitHistory(reachable=False, note=f"git failed: {str(exc).strip().splitlines()[-1:]}")
    return CommitHistory(
        reachable=True, ahead=ahead, behind=behind, subjects=tuple(ahead_subjects if ahead else behind_subjects)
    )
