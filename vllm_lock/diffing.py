"""A semantic diff between two locks: what moved, and whether vLLM must be rebuilt. Pure.

`diff_locks(a, b, history=...)` compares lock A (old) with lock B (new). Commit history between
the two vLLM commits needs git, so the caller gathers it (actions/diff.py) and passes it in.

Equality: two locks are *equal* when every value that decides a build or a future `update` is
the same. The lock's name, phase and provenance are notes (`LockDiff.notes`) and leave the locks
equal. The *original* references (vLLM ref, torch `requested`) are not in the build identity, but
they are what every later `update` follows: a changed one is a difference (`LockDiff.followed`),
so a pull request that repoints `main` to another branch cannot pass as "equal". (After a
promotion, `diff dev stable` is therefore "different": stable follows the pinned commit and date.)

Every other field is compared leaf by leaf on codec.to_data (`LockDiff.fields`), so no change can
hide from the diff (a lock is untrusted input: a package URL or filename changed alone is a
difference). The specialised sections show most of them; `LockDiff.other` is the rest, and
`LockDiff.sources` calls out changed source locations (vLLM URL, external repositories, index
URLs, and package URLs or filenames that moved host or changed without a version change).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from vllm_lock import codec
from vllm_lock.build_identity import ChangeKind, IdentityChange, identity_change, package_change_kind
from vllm_lock.model import Lock, Package, Pin

_GITHUB = re.compile(r"^(?:https?://|ssh://git@|git@)github\.com[/:]([^/]+)/([^/]+?)(?:\.git)?/?$")


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldChange:
    """One scalar setting that differs, by its key path in the lock (e.g. build.cuda-archs)."""

    key: str
    old: Any
    new: Any


@dataclass(frozen=True, kw_only=True, slots=True)
class PackageChange:
    """added / removed / changed (version) / rebuilt (same version, another set of wheels: one
    added, removed or rehashed). `wheels` says which, for a rebuilt package."""

    name: str
    kind: ChangeKind
    old: str | None
    new: str | None
    wheels: tuple[str, ...] = ()  # "+ file.whl", "- file.whl", "~ file.whl sha256 1234abcd -> 5678ef01"


@dataclass(frozen=True, kw_only=True, slots=True)
class CommitHistory:
    """What git knows about the commits between A and B (gathered by the caller).

    ahead: commits in A..B (B has, A lacks); behind: commits in B..A. `subjects` are the first
    lines of the newest commits of whichever side is non-empty (`ahead` first)."""

    reachable: bool
    ahead: int = 0
    behind: int = 0
    subjects: tuple[str, ...] = ()
    note: str = ""  # why the history is missing, when not reachable


@dataclass(frozen=True, kw_only=True, slots=True)
class VllmDiff:
    url: tuple[str, str]
    ref: tuple[str, str]
    commit: tuple[str, str]
    commit_date: tuple[str, str]
    compare_url: str | None
    history: CommitHistory | None

    @property
    def moved(self) -> bool:
        return self.commit[0] != self.commit[1]

    @property
    def short(self) -> tuple[str, str]:
        return self.commit[0][:9], self.commit[1][:9]


@dataclass(frozen=True, kw_only=True, slots=True)
class TorchDiff:
    channel: tuple[str, str]
    requested: tuple[str, str]
    cuda: tuple[str, str]
    index: tuple[str, str]
    version: tuple[str, str]
    date: tuple[str | None, str | None]
    days_apart: int | None  # B's nightly date minus A's; None unless both are nightlies
    companions: tuple[PackageChange, ...]

    @property
    def moved(self) -> bool:
        return self.version[0] != self.version[1] or bool(self.companions)


@dataclass(frozen=True, kw_only=True, slots=True)
class LockDiff:
    names: tuple[str, str]
    phases: tuple[str, str]
    content_hashes: tuple[str, str]
    vllm: VllmDiff
    torch: TorchDiff
    packages: tuple[PackageChange, ...]
    target: tuple[FieldChange, ...]
    build: tuple[FieldChange, ...]
    layout: tuple[FieldChange, ...]
    external_sources: tuple[FieldChange, ...]
    general_index: tuple[str, str]
    identity: IdentityChange
    notes: tuple[str, ...]  # differences that do not make the locks different
    followed: tuple[FieldChange, ...] = ()  # what `update` follows (vLLM ref, torch requested), changed
    fields: tuple[FieldChange, ...] = ()  # every differing leaf of the lock but the notes'
    other: tuple[FieldChange, ...] = ()  # those of `fields` no specialised section shows
    sources: tuple[FieldChange, ...] = ()  # changed source locations, to call out

    @property
    def settings(self) -> tuple[FieldChange, ...]:
        """The changed settings, in the order every rendering lists them: target, build recipe,
        layout, external sources, then the general index, torch channel, CUDA, index and vLLM URL."""
        pairs = (
            ("general-index", self.general_index),
            ("torch.channel", self.torch.channel),
            ("torch.cuda", self.torch.cuda),
            ("torch.index", self.torch.index),
            ("vllm.url", self.vllm.url),
        )
        inputs = tuple(FieldChange(key=key, old=old, new=new) for key, (old, new) in pairs if old != new)
        return (*self.target, *self.build, *self.layout, *self.external_sources, *inputs)

    @property
    def equal(self) -> bool:
        return not (
            self.fields
            or self.followed
            or self.vllm.moved
            or self.torch.moved
            or self.packages
            or self.settings
            or self.identity.changed
        )

    def count(self, kind: ChangeKind) -> int:
        return sum(1 for p in self.packages if p.kind == kind)

    def headline(self) -> str:
        """One line: what moved (used by promote's commit message)."""
        if self.equal:
            return "no locked value changed"
        parts = []
        if self.vllm.moved:
            parts.append(f"vLLM {self.vllm.short[0]} -> {self.vllm.short[1]}")
        if self.torch.version[0] != self.torch.version[1]:
            a, b = self.torch.date if all(self.torch.date) else self.torch.version
            parts.append(f"torch {a} -> {b}")
        if self.packages:
            parts.append(f"{len(self.packages)} package changes")
        if self.build or self.target:
            parts.append("build settings")
        if self.sources:
            parts.append(f"{len(self.sources)} source location changes")
        if self.followed:
            parts.append("what update follows")
        if not parts:
            parts.append("lock metadata")
        return ", ".join(parts)


# ---------------------------------------------------------------- the diff


def diff_locks(a: Lock, b: Lock, *, history: CommitHistory | None = None) -> LockDiff:
    """Compare lock A (old) with lock B (new)."""
    da, db = codec.to_data(a), codec.to_data(b)
    vllm = VllmDiff(
        url=(a.vllm.url, b.vllm.url),
        ref=(a.vllm.ref, b.vllm.ref),
        commit=(a.vllm.commit, b.vllm.commit),
        commit_date=(a.vllm.commit_date, b.vllm.commit_date),
        compare_url=compare_url(b.vllm.url, a.vllm.commit, b.vllm.commit)
        if a.vllm.commit != b.vllm.commit and same_repository(a.vllm.url, b.vllm.url)
        else None,
        history=history if a.vllm.commit != b.vllm.commit else None,
    )
    torch = TorchDiff(
        channel=(a.torch.channel, b.torch.channel),
        requested=(a.torch.requested, b.torch.requested),
        cuda=(a.torch.cuda, b.torch.cuda),
        index=(a.torch.index, b.torch.index),
        version=(a.torch.version, b.torch.version),
        date=(a.torch.date, b.torch.date),
        days_apart=days_apart(a.torch.date, b.torch.date),
        companions=pin_changes(a.torch.companions, b.torch.companions),
    )
    notes = []
    if a.name != b.name:
        notes.append(f"name: {a.name} -> {b.name}")
    if a.phase != b.phase:
        notes.append(f"phase: {a.phase} -> {b.phase}")
    every = field_changes_keyed(da, db)
    notes += [f"{c.key}: {_plain(c.old)} -> {_plain(c.new)}" for c in every if c.key.startswith("provenance.")]
    fields = tuple(c for c in every if not _is_note(c.key))
    packages = package_changes(a, b)
    # a package added, removed or at another version is shown whole by the packages section (its
    # wheels' files, URLs and hashes all differ then); the sources section still flags a new host
    whole = {c.name for c in packages if c.kind in ("added", "removed", "changed")}
    return LockDiff(
        names=(a.name, b.name),
        phases=(a.phase, b.phase),
        content_hashes=(codec.content_hash(a), codec.content_hash(b)),
        vllm=vllm,
        torch=torch,
        packages=packages,
        target=field_changes("target", da["target"], db["target"]),
        build=field_changes("build", da["build"], db["build"]),
        layout=field_changes("layout", da["layout"], db["layout"]),
        external_sources=field_changes(
            "external-sources",
            {s["name"]: s for s in da["external-sources"]},
            {s["name"]: s for s in db["external-sources"]},
        ),
        general_index=(a.general_index, b.general_index),
        identity=identity_change(a, b),
        notes=tuple(notes),
        followed=tuple(c for c in fields if c.key in _FOLLOWED_KEYS),
        fields=fields,
        other=tuple(c for c in fields if not _shown(c.key, a, b, whole)),
        sources=source_changes(fields, a, b),
    )


# ---------------------------------------------------------------- every field

_NOTE_KEYS = ("lock-version", "name", "phase")
_FOLLOWED_KEYS = ("inputs.vllm.original.ref", "inputs.torch.original.requested")
_SOURCE_KEYS = ("inputs.vllm.original.url", "inputs.torch.original.index", "inputs.general-index.original.url")
_ROW_KEYS = {"packages": "name", "wheels": "filename", "external-sources": "name", "companions": "name",
             "patched-files": "path"}


def field_changes_keyed(a: dict[str, Any], b: dict[str, Any]) -> tuple[FieldChange, ...]:
    """Every differing leaf of two locks' plain data, rows keyed by name
    (packages[torch].wheels[torch-2.10.0-cp312-cp312-manylinux_2_28_x86_64.whl].url)."""
    fa, fb = _leaves("", a), _leaves("", b)
    return tuple(
        FieldChange(key=key, old=fa.get(key), new=fb.get(key))
        for key in sorted(fa.keys() | fb.keys())
        if fa.get(key) != fb.get(key)
    )


def _leaves(prefix: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, sub in value.items():
            out.update(_leaves(f"{prefix}.{key}" if prefix else key, sub))
        return out
    row_key = _ROW_KEYS.get(prefix.rsplit(".", 1)[-1])
    if isinstance(value, list) and row_key and all(isinstance(v, dict) and row_key in v for v in value):
        for row in value:
            out.update(_leaves(f"{prefix}[{row[row_key]}]", row))
        return out
    return {prefix: value}


def _is_note(key: str) -> bool:
    return key in _NOTE_KEYS or key.startswith("provenance.")


def _row(key: str, section: str) -> str | None:
    """`torch` for packages[torch].url and section `packages`."""
    if not key.startswith(section + "["):
        return None
    return key[len(section) + 1:].split("]", 1)[0]


def _shown(key: str, a: Lock, b: Lock, whole_packages: set[str]) -> bool:
    """Whether a specialised section of the diff already shows this changed leaf."""
    if key == "inputs.vllm.locked.commit-date":
        return a.vllm.commit != b.vllm.commit
    if key == "inputs.torch.locked.date":
        return a.torch.version != b.torch.version
    if key.startswith("inputs.torch.locked.left-out"):
        return False  # no section shows it: the torch family left out is listed under `other`
    if key.startswith(("inputs.vllm.", "inputs.torch.", "inputs.general-index.", "target.", "build.", "layout.",
                       "external-sources[")):
        return True
    name = _row(key, "packages")
    return name is not None and (name in whole_packages or key.endswith("].version"))


def source_changes(fields: tuple[FieldChange, ...], a: Lock, b: Lock) -> tuple[FieldChange, ...]:
    """Where the bytes come from, changed: the vLLM and index URLs, an external source's repository,
    and a package's wheel URL or filename that moved host or changed while its version did not (a
    new version naturally brings new file names and URLs on the same hosts)."""
    old = {p.name: p for p in a.packages}
    new = {p.name: p for p in b.packages}
    found = []
    for change in fields:
        name = _row(change.key, "packages")
        if change.key in _SOURCE_KEYS or (_row(change.key, "external-sources") and change.key.endswith(".repository")):
            found.append(change)
        elif name in old and name in new and change.key.endswith(("].url", "].filename")):
            pa, pb = old[name], new[name]
            if pa.version == pb.version or _hosts(pa) != _hosts(pb):
                found.append(change)
    return tuple(found)


def _hosts(package: Package) -> set[str]:
    return {urlsplit(w.url).netloc.lower() for w in package.wheels}


def _plain(value: Any) -> str:
    return "(none)" if value is None else str(value)


def package_changes(a: Lock, b: Lock) -> tuple[PackageChange, ...]:
    old = {p.name: p for p in a.packages}
    new = {p.name: p for p in b.packages}
    changes = []
    for name in sorted(old.keys() | new.keys()):
        pa, pb = old.get(name), new.get(name)
        kind = package_change_kind(pa, pb)
        if kind is not None:
            wheels = wheel_changes(pa, pb) if pa is not None and pb is not None and kind == "rebuilt" else ()
            changes.append(PackageChange(name=name, kind=kind, old=pa.version if pa else None,
                                         new=pb.version if pb else None, wheels=wheels))
    return tuple(changes)


def wheel_changes(a: Package, b: Package) -> tuple[str, ...]:
    """The wheels of one package version that were added, removed or rehashed, by file name."""
    old = {w.plain_filename: w.sha256 for w in a.wheels}
    new = {w.plain_filename: w.sha256 for w in b.wheels}
    out = []
    for filename in sorted(old.keys() | new.keys()):
        x, y = old.get(filename), new.get(filename)
        if x is None:
            out.append(f"+ {filename}")
        elif y is None:
            out.append(f"- {filename}")
        elif x != y:
            out.append(f"~ {filename} sha256 {x[:12]} -> {y[:12]}")
    return tuple(out)


def pin_changes(a: tuple[Pin, ...], b: tuple[Pin, ...]) -> tuple[PackageChange, ...]:
    old = {p.name: p.version for p in a}
    new = {p.name: p.version for p in b}
    changes = []
    for name in sorted(old.keys() | new.keys()):
        va, vb = old.get(name), new.get(name)
        if va == vb:
            continue
        kind: ChangeKind = "added" if va is None else "removed" if vb is None else "changed"
        changes.append(PackageChange(name=name, kind=kind, old=va, new=vb))
    return tuple(changes)


def field_changes(prefix: str, a: dict[str, Any], b: dict[str, Any]) -> tuple[FieldChange, ...]:
    """Changed leaves of two nested mappings, by key path (lists compare whole)."""
    fa, fb = _flatten(prefix, a), _flatten(prefix, b)
    return tuple(
        FieldChange(key=key, old=fa.get(key), new=fb.get(key))
        for key in sorted(fa.keys() | fb.keys())
        if fa.get(key) != fb.get(key)
    )


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(f"{prefix}.{key}", sub))
        return out
    return {prefix: value}


def days_apart(a: str | None, b: str | None) -> int | None:
    if a is None or b is None:
        return None
    return (dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days


# ---------------------------------------------------------------- repositories


def github_slug(url: str) -> str | None:
    """'owner/repo' for a GitHub URL (https, ssh or scp form), else None."""
    match = _GITHUB.match(url.strip())
    return f"{match.group(1)}/{match.group(2)}" if match else None


def same_repository(a: str, b: str) -> bool:
    slug_a, slug_b = github_slug(a), github_slug(b)
    if slug_a and slug_b:
        return slug_a.lower() == slug_b.lower()
    return a.rstrip("/").removesuffix(".git") == b.rstrip("/").removesuffix(".git")


def compare_url(url: str, old: str, new: str) -> str | None:
    """GitHub's compare page for two commits, when the repository is on GitHub."""
    slug = github_slug(url)
    return f"https://github.com/{slug}/compare/{old}...{new}" if slug else None
