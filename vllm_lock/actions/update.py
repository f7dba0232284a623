"""update: re-resolve only a lock's floating inputs (like `nix flake update`).

Floating inputs: a vLLM ref that is not a commit SHA (a branch or tag), and a torch nightly
requested as `latest`. Everything else is rebuilt from the lock's own original inputs. An input
that is not selected (`--vllm` / `--torch`) is resolved at its locked value (the commit, the
nightly date) and its original reference is put back afterwards, so the lock keeps following
the branch / `latest` next time.

The file is rewritten only when a selected floating input moved: with nothing moved it stays
byte-identical (neither the clock nor a newer package on the general index changes it).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vllm_lock import diffing
from vllm_lock.actions import resolve as resolve_action
from vllm_lock.diffing import LockDiff
from vllm_lock.mirrors import NO_MIRRORS, Mirrors
from vllm_lock.model import Lock, is_commit_sha
from vllm_lock.progress import Reporter
from vllm_lock.shell import git as git_shell
from vllm_lock.shell import lockfiles, mirroring
from vllm_lock.shell.store import cache_root


@dataclass(frozen=True, kw_only=True, slots=True)
class Move:
    """One input: what it was, what it is now, and whether update was allowed to move it."""

    input: str  # "vllm" or "torch"
    original: str  # the reference the user wrote: "main", "latest", a date, a SHA
    old: str
    new: str
    selected: bool
    floating: bool

    @property
    def moved(self) -> bool:
        return self.old != self.new


@dataclass(frozen=True, kw_only=True, slots=True)
class UpdateResult:
    path: Path
    moves: tuple[Move, ...]
    written: bool
    diff: LockDiff | None  # old -> new when the file was rewritten


def floating(lock: Lock) -> dict[str, bool]:
    """Which inputs of this lock follow something that moves."""
    return {
        "vllm": not is_commit_sha(lock.vllm.ref),
        "torch": lock.torch.channel == "nightly" and lock.torch.requested == "latest",
    }


def request_for(lock: Lock, *, output: Path, cache: Path, move_vllm: bool, move_torch: bool
                ) -> resolve_action.ResolveRequest:
    """The ResolveRequest that reproduces `lock`'s original inputs, with unselected inputs pinned."""
    if lock.torch.channel == "nightly":
        torch_date = lock.torch.requested if move_torch else (lock.torch.date or lock.torch.requested)
        torch_version = None
    else:
        torch_date, torch_version = "latest", lock.torch.requested
    return resolve_action.ResolveRequest(
        repo=lock.vllm.url,
        ref=lock.vllm.ref if move_vllm else lock.vllm.commit,
        torch_channel=lock.torch.channel,
        torch_date=torch_date,
        torch_version=torch_version,
        cuda=lock.torch.cuda,
        torch_index=lock.torch.index,
        general_index=lock.general_index,
        archs=lock.build.cuda_archs,
        python=lock.target.python,
        platform=lock.target.platform,
        flash_attn_version=lock.build.flash_attn_version,
        target_device=lock.build.target_device,
        build_env=lock.build.env,
        editable=lock.build.editable,
        name=lock.name,
        phase=lock.phase,
        output=output,
        cache=cache,
        without=lock.torch.left_out,
        without_rust=lock.build.without_rust,
    )


def restore_originals(old: Lock, new: Lock) -> Lock:
    """Put back the original references the pinned request replaced. External sources follow the
    vLLM commit: while it stays, their locked commits stay too, even if a tag moved upstream
    (a fresh `resolve` picks that up)."""
    return dataclasses.replace(
        new,
        vllm=dataclasses.replace(new.vllm, ref=old.vllm.ref),
        torch=dataclasses.replace(new.torch, requested=old.torch.requested),
        external_sources=old.external_sources if new.vllm.commit == old.vllm.commit else new.external_sources,
    )


def _vllm_side(lock: Lock) -> str:
    return f"{lock.vllm.short_commit} ({lock.vllm.commit_date[:10]})"


def _torch_side(lock: Lock) -> str:
    return f"{lock.torch.version} ({lock.torch.date or lock.torch.channel})"


def update(name: str, *, vllm: bool = False, torch: bool = False, cache: Path | None = None,
           reporter: Reporter, mirrors: Mirrors = NO_MIRRORS) -> UpdateResult:
    """Move the selected floating inputs (both when neither is selected) and rewrite the lock if
    any moved (fetching through mirrors, which the lock never records)."""
    with mirroring.using(mirrors):
        return _update(name, vllm=vllm, torch=torch, cache=cache, reporter=reporter, mirrors=mirrors)


def _update(name: str, *, vllm: bool, torch: bool, cache: Path | None, reporter: Reporter,
            mirrors: Mirrors) -> UpdateResult:
    old, path = lockfiles.read(name)
    cache = cache or cache_root()
    if not vllm and not torch:
        vllm = torch = True
    floats = floating(old)
    move_vllm, move_torch = vllm and floats["vllm"], torch and floats["torch"]

    def moves(new: Lock) -> tuple[Move, ...]:
        return (
            Move(input="vllm", original=old.vllm.ref, old=_vllm_side(old), new=_vllm_side(new),
                 selected=vllm, floating=floats["vllm"]),
            Move(input="torch", original=old.torch.requested, old=_torch_side(old), new=_torch_side(new),
                 selected=torch, floating=floats["torch"]),
        )

    if not move_vllm and not move_torch:
        return UpdateResult(path=path, moves=moves(old), written=False, diff=None)
    if move_vllm and not move_torch:
        # Cheap check first: a branch that did not move needs no resolution at all.
        if git_shell.resolve_ref(old.vllm.url, old.vllm.ref) == old.vllm.commit:
            return UpdateResult(path=path, moves=moves(old), written=False, diff=None)
    with tempfile.TemporaryDirectory(prefix="vllm-lock-update-") as tmp:
        request = request_for(old, output=Path(tmp) / f"{old.name}.lock.toml", cache=cache,
                              move_vllm=move_vllm, move_torch=move_torch)
        request = dataclasses.replace(request, mirrors=mirrors)
        resolved, _, _ = resolve_action.resolve(request, reporter)
    new = restore_originals(old, resolved)
    result_moves = moves(new)
    if not any(m.moved for m in result_moves):
        return UpdateResult(path=path, moves=result_moves, written=False, diff=None)
    lockfiles.write(new, path)
    return UpdateResult(path=path, moves=result_moves, written=True, diff=diffing.diff_locks(old, new))


def report_lines(result: UpdateResult) -> list[str]:
    """`old -> new` per input, with dates; what was left alone and why."""
    lines = []
    for m in result.moves:
        label = f"{m.input} {m.original}"
        if not m.floating:
            lines.append(f"{label}: {m.old} (pinned, not floating)")
        elif not m.selected:
            lines.append(f"{label}: {m.old} (not selected, kept)")
        elif m.moved:
            lines.append(f"{label}: {m.old} -> {m.new}")
        else:
            lines.append(f"{label}: {m.old} (up to date)")
    if result.written and result.diff is not None:
        d = result.diff
        lines.append(
            f"packages: {d.count('changed')} changed, {d.count('added')} added, {d.count('removed')} removed"
            + (f", {d.count('rebuilt')} rebuilt" if d.count("rebuilt") else "")
        )
        lines.append("build identity " + ("changed: vLLM must be rebuilt" if d.identity.changed else "unchanged"))
        lines.append(f"{result.path}: updated")
    else:
        lines.append(f"{result.path}: unchanged (nothing moved)")
    return lines
