"""`vllm-lock store gc`: what the cache keeps and what it may delete (pure).

Roots are what live locks (the locks folder and the locks named on the command line) and
existing generations reference: wheel and crate sha256s (store entries cas/sha256/<hex>),
commits and repository URLs (git mirrors), and the source store paths (sources/<key>) generations'
src link to. An entry is kept when a root names it; a mirror when a live lock names its URL or it
holds a root commit; a source path while a generation links to it. Whatever was written after the collection
began is kept too: a fetch running beside it is never undone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from vllm_lock.bundle_manifest import mirror_key
from vllm_lock.model import Lock


@dataclass(frozen=True, kw_only=True, slots=True)
class Roots:
    sha256s: frozenset[str] = frozenset()
    commits: frozenset[str] = frozenset()
    urls: frozenset[str] = frozenset()
    sources: frozenset[str] = frozenset()  # keys of source store paths a generation's src links to

    def __or__(self, other: Roots) -> Roots:
        return Roots(sha256s=self.sha256s | other.sha256s, commits=self.commits | other.commits,
                     urls=self.urls | other.urls, sources=self.sources | other.sources)


def lock_roots(lock: Lock) -> Roots:
    """What a lock references directly (its sources' submodules are added from the mirrors)."""
    sha256s = {w.sha256 for p in lock.packages for w in p.wheels}
    if lock.rust is not None:
        sha256s |= {c.checksum for c in lock.rust.crates}
    commits = {lock.vllm.commit, *(s.commit for s in lock.external_sources)}
    urls = {lock.vllm.url, *(s.repository for s in lock.external_sources)}
    return Roots(sha256s=frozenset(sha256s), commits=frozenset(commits), urls=frozenset(urls))


def union(roots: Iterable[Roots]) -> Roots:
    total = Roots()
    for r in roots:
        total = total | r
    return total


@dataclass(frozen=True, kw_only=True, slots=True)
class Entry:
    """One store entry (cas/sha256/<key>), mirror (git/<key>.git) or source store path
    (sources/<key>): its files and bytes,
    and the newest modification time of anything in it."""

    key: str
    files: int
    size: int
    newest: float


@dataclass(frozen=True, kw_only=True, slots=True)
class Mirror(Entry):
    holds: frozenset[str] = frozenset()  # the root commits found in it


@dataclass(frozen=True, kw_only=True, slots=True)
class GcPlan:
    keep_entries: tuple[Entry, ...]
    delete_entries: tuple[Entry, ...]
    keep_mirrors: tuple[Mirror, ...]
    delete_mirrors: tuple[Mirror, ...]
    keep_sources: tuple[Entry, ...] = ()
    delete_sources: tuple[Entry, ...] = ()

    @property
    def freed_files(self) -> int:
        return sum(e.files for e in (*self.delete_entries, *self.delete_mirrors, *self.delete_sources))

    @property
    def freed_bytes(self) -> int:
        return sum(e.size for e in (*self.delete_entries, *self.delete_mirrors, *self.delete_sources))

    @property
    def kept_bytes(self) -> int:
        return sum(e.size for e in (*self.keep_entries, *self.keep_mirrors, *self.keep_sources))


def plan(roots: Roots, entries: Iterable[Entry], mirrors: Iterable[Mirror], *, started: float,
         sources: Iterable[Entry] = ()) -> GcPlan:
    named = {mirror_key(url) for url in roots.urls}
    keep_e: list[Entry] = []
    drop_e: list[Entry] = []
    keep_m: list[Mirror] = []
    drop_m: list[Mirror] = []
    for entry in sorted(entries, key=lambda e: e.key):
        (keep_e if entry.key in roots.sha256s or entry.newest >= started else drop_e).append(entry)
    for mirror in sorted(mirrors, key=lambda m: m.key):
        live = mirror.key in named or bool(mirror.holds & roots.commits) or mirror.newest >= started
        (keep_m if live else drop_m).append(mirror)
    keep_s: list[Entry] = []
    drop_s: list[Entry] = []
    for source in sorted(sources, key=lambda e: e.key):
        (keep_s if source.key in roots.sources or source.newest >= started else drop_s).append(source)
    return GcPlan(keep_entries=tuple(keep_e), delete_entries=tuple(drop_e), keep_mirrors=tuple(keep_m),
                  delete_mirrors=tuple(drop_m), keep_sources=tuple(keep_s), delete_sources=tuple(drop_s))


def still_deletable(entry: Entry, newest_now: float | None, *, started: float) -> bool:
    """Re-checked under the entry's lock just before deleting: gone already (None) or written
    since the collection began means hands off."""
    return newest_now is not None and newest_now < started


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


__all__ = ["Entry", "GcPlan", "Mirror", "Roots", "human_bytes", "lock_roots", "plan", "still_deletable", "union"]
