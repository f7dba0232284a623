"""promote: a tested lock becomes the stable lock, value for value, with evidence.

- Refuses unless a passing test receipt exists for exactly the source lock's content hash
  (`force` overrides; the promotion records forced = true).
- Never re-resolves: every locked value carries over. What changes: the name, phase = stable, the
  original references are pinned (vLLM ref -> the commit; a nightly torch `requested` -> its
  locked date, so that `update` on the stable lock moves nothing), and provenance.promotion.
- Atomic: the stable lock is replaced by a rename; with `commit`, a failed git commit restores
  the previous stable lock.
- Idempotent: promoting the same content again leaves the stable file byte-identical.
- Signed with `sign_key`: the SSH signature `<stable lock>.sig` is made before anything is written
  and written after the lock; the old signature is removed first, so a lock and a signature that
  do not belong together are never side by side, even after a crash (the worst case is an unsigned
  lock, which a signature check refuses and a rerun repairs). Any write or commit failure puts the
  previous lock and signature back. Without a key nothing is signed and an old signature goes.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from vllm_lock import clock, codec, signing
from vllm_lock import receipt as test_receipts
from vllm_lock.actions import diff as diff_action
from vllm_lock.diffing import LockDiff
from vllm_lock.errors import LockInvalidError, NotTestedError, OutputError, UsageError
from vllm_lock.model import Lock, Promotion, is_valid_lock_name
from vllm_lock.render_diff import text as diff_text
from vllm_lock.shell import files, lockfiles, sshsig
from vllm_lock.shell import git as git_shell


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
    signature: Path | None = None  # <lock>.sig when signed
    signature_written: bool = False
    signature_removed: bool = False  # an old signature went with the lock it signed


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


def evidence_lines(result: PromoteResult) -> list[str]:
    """Where each receipt came from (path, host), for the promoter to judge: a receipt is plain
    JSON anyone with write access to locks/ can write; the promoter's signature is the trust anchor."""
    if not result.receipts:
        return []
    return [
        *(f"evidence: receipt {summary}" for summary in result.receipts),
        "evidence: receipts are unauthenticated JSON: check that path and host are the test you ran "
        "before signing",
    ]


def commit_message(source: str, to: str, source_hash: str, diff: LockDiff | None, body: str, forced: bool) -> str:
    head = f"vllm-lock: promote {source} to {to}: " + (diff.headline() if diff else "first stable lock")
    tail = f"Promoted from {source} {source_hash}" + (" (FORCED: no passing test receipt)" if forced else "")
    return f"{head}\n\n{body.rstrip()}\n\n{tail}\n"




def promote(source: str = "dev", *, to: str = "stable", force: bool = False, commit: bool = False,
            cache: Path | None = None, sign_key: Path | None = None) -> PromoteResult:
    lock, source_path = lockfiles.read(source)
    source_hash = codec.content_hash(lock)
    if to == lock.name:
        raise UsageError(f"cannot promote {lock.name} onto itself")
    if not is_valid_lock_name(to):
        raise UsageError(f"lock name {to!r} is invalid: use lower-case letters, digits, '.', '_', '-'")
    target_path = source_path.parent / f"{to}{lockfiles.SUFFIX}"
    sig_path = signing.signature_path(target_path)
    files.check_writable(target_path)
    files.check_writable(sig_path)
    if sign_key is not None and not sign_key.is_file():
        raise UsageError(f"--sign-key {sign_key}: no such key file")
    found = test_receipts.find_test_receipts(source_path, source_hash)
    passing = [(p, r) for p, r in found if r.passed]
    if not passing and not force:
        what = f"{len(found)} receipt(s), none passing" if found else "no test receipt"
        raise NotTestedError(
            f"{lock.name} ({source_hash[:19]}...) has {what}: run `vllm-lock test {source}` on an installed "
            "environment first, or pass --force (recorded in the stable lock)"
        )
    base = source_path.parent
    receipts = tuple(
        r.summary(os.path.relpath(p, base), test_receipts.file_sha256(p)) for p, r in passing
    )
    new = promoted(lock, to=to, receipts=receipts, forced=not passing, source_hash=source_hash,
                   when=clock.utc_timestamp())
    previous: Lock | None = None
    old_bytes: bytes | None = None
    if target_path.is_file():
        old_bytes = target_path.read_bytes()
        try:
            previous = codec.loads(old_bytes.decode("utf-8"), origin=str(target_path))
        except (LockInvalidError, UnicodeDecodeError):
            previous = None  # replaced; the diff says so
    diff = diff_action.diff_loaded(previous, new, cache=cache) if previous is not None else None
    work_tree = git_shell.work_tree(base, option="--commit") if commit else None
    old_signature = _read_signature(sig_path)
    if previous is not None and old_bytes is not None and codec.same_but_time(previous, new, "promoted-at"):
        # the lock stays byte-identical; with a key, make sure its signature is there and current
        if sign_key is None:
            return PromoteResult(path=target_path, lock=previous, previous=previous, diff=diff, written=False,
                                 forced=not passing, receipts=receipts, committed=None)
        if old_bytes != codec.dumps(previous).encode("utf-8"):
            # equal values in bytes we did not write (a comment, spacing): only our own bytes are signed
            return _write_promoted(previous, target_path, old_bytes, old_signature, sign_key, work_tree, base,
                                   message=_sign_message(to, previous), diff=diff, receipts=receipts,
                                   forced=not passing, previous=previous)
        signature = sshsig.sign(old_bytes, sign_key)
        committed = None
        if signature != old_signature:
            _write_signature(sig_path, signature, target_path, old_bytes, old_signature)
            if work_tree is not None:
                committed = _commit_or_restore(work_tree, base, _sign_message(to, previous), to, target_path,
                                               old_bytes, old_signature)
        return PromoteResult(path=target_path, lock=previous, previous=previous, diff=diff, written=False,
                             forced=not passing, receipts=receipts, committed=committed, signature=sig_path,
                             signature_written=signature != old_signature)
    message = commit_message(lock.name, to, source_hash, diff, diff_text(diff) if diff else (
        f"vLLM {new.vllm.commit} ({new.vllm.commit_date}), torch {new.torch.version}\n"
    ), not passing)
    return _write_promoted(new, target_path, old_bytes, old_signature, sign_key, work_tree, base, message=message,
                           diff=diff, receipts=receipts, forced=not passing, previous=previous)


def _sign_message(to: str, lock: Lock) -> str:
    return f"vllm-lock: sign {to} ({lock.vllm.short_commit}, torch {lock.torch.version})\n"


def _write_promoted(new: Lock, target_path: Path, old_bytes: bytes | None, old_signature: bytes | None,
                    sign_key: Path | None, work_tree: Path | None, base: Path, *, message: str,
                    diff: LockDiff | None, receipts: tuple[str, ...], forced: bool,
                    previous: Lock | None = None) -> PromoteResult:
    """Lock and signature in place (the old signature gone first), committed with `work_tree`."""
    sig_path = signing.signature_path(target_path)
    text = codec.dumps(new)
    # signed before anything is written: a key that cannot sign changes nothing
    signature = sshsig.sign(text.encode("utf-8"), sign_key) if sign_key is not None else None
    if old_signature is not None:
        _remove_signature(sig_path)
    try:
        files.write_output(target_path, text)
        if signature is not None:
            files.write_output(sig_path, signature)
    except OutputError:
        _restore(target_path, old_bytes, sig_path, old_signature)
        raise
    committed = None
    if work_tree is not None:
        committed = _commit_or_restore(work_tree, base, message, new.name, target_path, old_bytes, old_signature)
    return PromoteResult(path=target_path, lock=new, previous=previous, diff=diff, written=True,
                         forced=forced, receipts=receipts, committed=committed,
                         signature=sig_path if signature is not None else None,
                         signature_written=signature is not None,
                         signature_removed=signature is None and old_signature is not None)


def _commit_or_restore(work_tree: Path, base: Path, message: str, to: str, lock_path: Path,
                       old_bytes: bytes | None, old_signature: bytes | None) -> str:
    """The locks directory (receipts included) committed in the work tree `work_tree`, or else the
    previous lock and signature back in place and nothing left staged."""
    try:
        return git_shell.commit_folder(work_tree, base, message)
    except git_shell.GitError as exc:
        _restore(lock_path, old_bytes, signing.signature_path(lock_path), old_signature)
        git_shell.unstage(work_tree, base)
        raise OutputError(f"--commit failed, the previous {to} lock is back in place: {exc}") from None


def _read_signature(path: Path) -> bytes | None:
    if not os.path.lexists(path):
        return None
    try:
        return path.read_bytes()
    except OSError:
        return b""  # unreadable (a directory, say): it goes like any old signature


def _remove_signature(path: Path) -> None:
    try:
        path.unlink()
    except IsADirectoryError:
        raise OutputError(f"cannot replace {path}: it is a directory") from None
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise OutputError(f"cannot remove the old signature {path}: {exc.strerror or exc}") from None


def _write_signature(sig_path: Path, signature: bytes, lock_path: Path, lock_bytes: bytes,
                     old_signature: bytes | None) -> None:
    try:
        files.write_output(sig_path, signature)
    except OutputError:
        _restore(lock_path, lock_bytes, sig_path, old_signature)
        raise


def _restore(path: Path, old: bytes | None, sig_path: Path, old_signature: bytes | None) -> None:
    """The previous lock and signature, the signature last (never beside a lock it does not sign)."""
    sig_path.unlink(missing_ok=True)
    if old is None:
        path.unlink(missing_ok=True)
    else:
        files.write_output(path, old)
    if old_signature:
        files.write_output(sig_path, old_signature)
