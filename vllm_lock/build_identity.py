"""The build identity: what decides the built vLLM, the reasons two locks need different builds,
the generation id an install names its directory by, and what an installed generation's id says
about a lock. Pure.

A generation id is the lock's build identity (16 hex digits), with `-editable` or `-wheel` when
install was told to install otherwise than the lock says (`--no-editable`): the same lock
installed both ways gives two generations, and both still name the lock's build.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any, Literal

from vllm_lock import codec
from vllm_lock.model import ExternalSource, Lock, Package

IDENTITY_LENGTH = 16
_GENERATION_ID = re.compile(r"([0-9a-f]{16})(?:-(editable|wheel))?")

ChangeKind = Literal["added", "removed", "changed", "rebuilt"]


def build_identity(lock: Lock) -> str:
    """What determines the built vLLM: same identity, same build. Mirrors, names, phase,
    original refs, provenance and MAX_JOBS are deliberately left out. Its first 16 hex digits
    name generations; a signed binary cache entry binds all 64 (full_build_identity)."""
    return full_build_identity(lock)[:IDENTITY_LENGTH]


def full_build_identity(lock: Lock) -> str:
    """The whole sha256 of what determines the build (build_identity is its prefix): what a binary
    cache entry is keyed by and signed over, so that two locks cannot be made to share an entry."""
    data = codec.to_data(lock)
    identity = {
        "commit": lock.vllm.commit,
        "target": data["target"],
        "build": data["build"],
        "stripping": [lock.layout.stripping_script, lock.layout.stripping_mode],
        "patched": sorted((f.path, f.sha256_after) for f in lock.layout.patched_files),
        # every wheel: which one the installer picks depends on the machine, so all of them count
        "packages": [(p.name, p.version, [w.sha256 for w in p.wheels]) for p in lock.packages],
        "external-sources": [(s.name, s.commit) for s in lock.external_sources],
        "left-out": list(lock.torch.left_out),
        # the toolchain floor, the Cargo.lock and every crate's bytes decide the Rust artifacts
        "rust": data.get("rust"),
    }
    return hashlib.sha256(codec.canonical_json(identity)).hexdigest()


# ---------------------------------------------------------------- generation ids


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationId:
    """A generation directory's name: the build identity and, when install overrode the lock's
    `build.editable`, how vLLM was installed instead."""

    identity: str
    override: Literal["editable", "wheel"] | None = None

    def __str__(self) -> str:
        return self.identity if self.override is None else f"{self.identity}-{self.override}"


def generation_id(lock: Lock, editable: bool) -> GenerationId:
    """The generation that installs `lock` editable or not."""
    if editable == lock.build.editable:
        return GenerationId(identity=build_identity(lock))
    return GenerationId(identity=build_identity(lock), override="editable" if editable else "wheel")


def parse_generation_id(text: str) -> GenerationId | None:
    """A generation directory's name -> its id; None for any other name."""
    match = _GENERATION_ID.fullmatch(text)
    if match is None:
        return None
    override = match.group(2)
    return GenerationId(identity=match.group(1), override="editable" if override == "editable"
                        else "wheel" if override == "wheel" else None)


# ---------------------------------------------------------------- an installed generation against a lock


@dataclass(frozen=True, kw_only=True, slots=True)
class InstalledMatch:
    """What an install receipt (its generation id and content hash) says about a lock:
    `this-lock` (same content), `same-build` (another lock file with the same build identity:
    renamed, promoted, a mirror's URLs), or `other-build`."""

    kind: Literal["this-lock", "same-build", "other-build"]
    installed: str  # the generation id as the receipt gives it
    wanted: str  # the lock's build identity

    @property
    def same_build(self) -> bool:
        return self.kind != "other-build"


def match_installed(lock: Lock, *, generation: str, content_hash: str) -> InstalledMatch:
    """Whether the generation named `generation`, installed from a lock with `content_hash`,
    holds this lock's build."""
    wanted = build_identity(lock)
    parsed = parse_generation_id(generation)
    if parsed is None or parsed.identity != wanted:
        kind: Literal["this-lock", "same-build", "other-build"] = "other-build"
    elif content_hash == codec.content_hash(lock):
        kind = "this-lock"
    else:
        kind = "same-build"
    return InstalledMatch(kind=kind, installed=generation, wanted=wanted)


# ---------------------------------------------------------------- why two locks need different builds


@dataclass(frozen=True, kw_only=True, slots=True)
class IdentityChange:
    """Whether the build identity changed (vLLM must be rebuilt), and why."""

    old: str
    new: str
    reasons: tuple[str, ...]

    @property
    def changed(self) -> bool:
        return self.old != self.new


def package_change_kind(old: Package | None, new: Package | None) -> ChangeKind | None:
    """added, removed, changed (version), rebuilt (same version, another set of wheels: one
    added, removed or rehashed), or None when the package is the same in both."""
    if old is None:
        return None if new is None else "added"
    if new is None:
        return "removed"
    if old.version != new.version:
        return "changed"
    if {w.plain_filename: w.sha256 for w in old.wheels} != {w.plain_filename: w.sha256 for w in new.wheels}:
        return "rebuilt"
    return None


def identity_change(a: Lock, b: Lock) -> IdentityChange:
    """The build identities of both locks and, when they differ, the reasons in plain words."""
    old, new = build_identity(a), build_identity(b)
    return IdentityChange(old=old, new=new, reasons=rebuild_reasons(a, b) if old != new else ())


def rebuild_reasons(a: Lock, b: Lock) -> tuple[str, ...]:
    """Why lock B's build differs from lock A's, one phrase per build input that moved."""
    reasons: list[str] = []
    if a.vllm.commit != b.vllm.commit:
        reasons.append(f"vLLM commit {a.vllm.commit[:9]} -> {b.vllm.commit[:9]}")
    if a.target != b.target:
        reasons.append(
            f"target Python {a.target.python} {a.target.platform} -> Python {b.target.python} {b.target.platform}"
        )
    if a.build != b.build:
        keys = ", ".join(_changed_keys(codec.to_data(a)["build"], codec.to_data(b)["build"]))
        reasons.append(f"build recipe ({keys})")
    if (a.layout.stripping_script, a.layout.stripping_mode) != (b.layout.stripping_script, b.layout.stripping_mode):
        reasons.append("torch-stripping script or mode")
    if sorted((f.path, f.sha256_after) for f in a.layout.patched_files) != sorted(
        (f.path, f.sha256_after) for f in b.layout.patched_files
    ):
        reasons.append("files patched by the stripping script")
    if a.torch.version != b.torch.version:
        reasons.append(f"torch {a.torch.version} -> {b.torch.version} (vLLM compiles against torch)")
    moved = _external_moves(a, b)
    if moved:
        reasons.append(f"external sources ({', '.join(moved)})")
    if a.rust != b.rust:
        reasons.append(f"Rust frontend ({_rust_change(a, b)})")
    old = {p.name: p for p in a.packages}
    new = {p.name: p for p in b.packages}
    kinds = {name: package_change_kind(old.get(name), new.get(name)) for name in old.keys() | new.keys()}
    others = [kind for name, kind in kinds.items() if kind is not None and name != "torch"]
    if others:
        counts = {k: others.count(k) for k in ("changed", "added", "removed", "rebuilt")}
        words = ", ".join(f"{n} {k}" for k, n in counts.items() if n)
        reasons.append(f"other locked packages ({words})")
    elif kinds.get("torch") == "rebuilt":
        reasons.append("torch wheel rebuilt with other bytes under the same version")
    if not reasons:
        reasons.append("build inputs differ")
    return tuple(reasons)


def _changed_keys(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """The leaf keys (`cuda-archs`, `env.NVCC_THREADS`) whose values differ, sorted."""
    changed: list[str] = []
    for key in sorted(a.keys() | b.keys()):
        x, y = a.get(key), b.get(key)
        if isinstance(x, dict) and isinstance(y, dict):
            changed += _changed_keys(x, y, f"{prefix}{key}.")
        elif x != y:
            changed.append(f"{prefix}{key}")
    return changed


def _rust_change(a: Lock, b: Lock) -> str:
    if a.rust is None or b.rust is None:
        def state(lock: Lock) -> str:
            if lock.rust is not None:
                return f"toolchain {lock.rust.channel}, {len(lock.rust.crates)} crates"
            return "left out (--no-rust)" if lock.build.without_rust else "none"
        return f"{state(a)} -> {state(b)}"
    words = []
    if a.rust.channel != b.rust.channel:
        words.append(f"toolchain {a.rust.channel} -> {b.rust.channel}")
    if a.rust.cargo_lock_sha256 != b.rust.cargo_lock_sha256:
        words.append("Cargo.lock changed")
    crates = len(set(a.rust.crates) ^ set(b.rust.crates))
    if crates:
        words.append(f"{crates} crate entries differ")
    return ", ".join(words) or "artifacts"


def _external_moves(a: Lock, b: Lock) -> list[str]:
    """`name ref sha -> ref sha` for every external source whose locked commit differs."""
    old = {s.name: s for s in a.external_sources}
    new = {s.name: s for s in b.external_sources}
    moves = []
    for name in sorted(old.keys() | new.keys()):
        x, y = old.get(name), new.get(name)
        if x is not None and y is not None and x.commit == y.commit:
            continue
        if x is not None and y is not None and x.ref == y.ref:
            moves.append(f"{name} {x.ref} moved {x.commit[:9]} -> {y.commit[:9]}")
        else:
            moves.append(f"{name} {_pin(x)} -> {_pin(y)}")
    return moves


def _pin(source: ExternalSource | None) -> str:
    if source is None:
        return "none"
    return source.commit[:9] if source.ref_kind == "commit" else f"{source.ref} ({source.commit[:9]})"
