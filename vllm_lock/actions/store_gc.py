"""store gc: delete what no live lock and no generation references from the cache.

Live locks: every *.lock.toml of the locks folder (VLLM_LOCK_LOCKS_DIR or ./locks) and each
--keep-lock; generations: those of each --venv (<venv>.generations/*), whose src links keep the
source store paths they point at. A lock that cannot be
read stops the collection (what it references is unknown). The plan is vllm_lock/store_gc.py;
deletion takes each entry's own lock (shell/gc_inventory.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from vllm_lock import store_gc
from vllm_lock.actions import bundle as bundle_action
from vllm_lock.defaults import DEFAULT_VENV
from vllm_lock.errors import UsageError
from vllm_lock.model import Lock
from vllm_lock.progress import Reporter
from vllm_lock.shell import gc_inventory, lockfiles
from vllm_lock.shell.store import cache_root

# mtimes of some file systems are coarse: anything touched this close before the start counts
# as written during the collection
MTIME_SLACK = 2.0


@dataclass(frozen=True, kw_only=True)
class GcRequest:
    keep_locks: tuple[str, ...] = ()
    venvs: tuple[Path, ...] = (DEFAULT_VENV,)
    dry_run: bool = False
    cache: Path = field(default_factory=cache_root)


@dataclass(frozen=True, kw_only=True)
class GcResult:
    plan: store_gc.GcPlan
    freed_files: int
    freed_bytes: int
    skipped: int  # planned deletions left alone: written to since the collection began
    locks: int
    generations: int


def live_locks(keep: tuple[str, ...]) -> list[Lock]:
    """The locks in the locks folder and those named. No locks folder and none named is refused:
    run from the wrong folder, gc would find no live lock and delete what every lock needs."""
    folder = lockfiles.locks_dir()
    if not folder.is_dir() and not keep:
        raise UsageError(f"store gc: no locks folder {folder} and no --keep-lock: nothing would be kept "
                         "(run it where locks/ is, set VLLM_LOCK_LOCKS_DIR, or name the locks to keep)")
    paths = sorted(folder.glob(f"*{lockfiles.SUFFIX}")) if folder.is_dir() else []
    return [lockfiles.read(str(p))[0] for p in paths] + [lockfiles.read(k)[0] for k in keep]


def collect(request: GcRequest, reporter: Reporter) -> GcResult:
    started = time.time() - MTIME_SLACK
    locks = live_locks(request.keep_locks)
    roots = store_gc.union(store_gc.lock_roots(lock) for lock in locks)
    for lock in locks:  # submodule repositories of the external sources, read from the mirrors
        closure = bundle_action.source_closure(lock, request.cache, fetch=False)
        roots = roots | store_gc.Roots(urls=frozenset(closure),
                                       commits=frozenset(c for cs in closure.values() for c in cs))
    generations = [v.with_name(v.name + ".generations") for v in request.venvs]
    gen_count = sum(1 for g in generations if g.is_dir()
                    for p in g.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in generations:
        roots = roots | gc_inventory.generation_roots(folder, request.cache)
    roots = store_gc.Roots(sha256s=roots.sha256s, urls=roots.urls, sources=roots.sources,
                           commits=gc_inventory.submodule_commits(request.cache, roots.commits))
    plan = store_gc.plan(roots, gc_inventory.store_entries(request.cache),
                         gc_inventory.mirrors(request.cache, roots.commits), started=started,
                         sources=gc_inventory.source_paths(request.cache))
    freed_files = freed_bytes = skipped = 0
    if request.dry_run:
        freed_files, freed_bytes = plan.freed_files, plan.freed_bytes
    else:
        if left := gc_inventory.remove_left_trash(request.cache):
            reporter.say(f"    removed {left} folder(s) an interrupted collection left")
        for entry in plan.delete_entries:
            if gc_inventory.delete_entry(request.cache, entry, started=started):
                freed_files, freed_bytes = freed_files + entry.files, freed_bytes + entry.size
            else:
                skipped += 1
        for mirror in plan.delete_mirrors:
            if gc_inventory.delete_mirror(request.cache, mirror, started=started):
                freed_files, freed_bytes = freed_files + mirror.files, freed_bytes + mirror.size
            else:
                skipped += 1
        for source in plan.delete_sources:
            if gc_inventory.delete_source(request.cache, source, started=started):
                freed_files, freed_bytes = freed_files + source.files, freed_bytes + source.size
            else:
                skipped += 1
    for entry in plan.delete_entries:
        reporter.say(f"    {'would delete' if request.dry_run else 'deleted'} cas/sha256/{entry.key} ({entry.size} "
                     "bytes)")
    for mirror in plan.delete_mirrors:
        reporter.say(f"    {'would delete' if request.dry_run else 'deleted'} git/{mirror.key}.git ({mirror.size} "
                     "bytes)")
    for source in plan.delete_sources:
        reporter.say(f"    {'would delete' if request.dry_run else 'deleted'} sources/{source.key} ({source.size} "
                     "bytes)")
    return GcResult(plan=plan, freed_files=freed_files, freed_bytes=freed_bytes, skipped=skipped, locks=len(locks),
                    generations=gen_count)
