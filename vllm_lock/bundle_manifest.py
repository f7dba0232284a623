"""An offline bundle's contents and its manifest, as data (pure).

A bundle is one uncompressed tar whose member names follow a fixed schema:

    lock.toml                              the lock's exact bytes
    wheels/<sha256>/<filename>             every locked wheel, named as the store names it
    crates/<sha256>/<name>-<version>.crate every locked Rust crate
    git/<key>.bundle                       one `git bundle` per repository (key: the cache's mirror key)
    built/<name>                           the cached built vLLM wheel and its signed entry, when present
    manifest.json                          written last: every other member's name, sha256 and size,
                                           and what each git bundle holds

Nothing here reads a file: the shell streams members and hands their names, hashes and sizes in.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

from vllm_lock.errors import BundleError, WrongBundleError
from vllm_lock.model import Lock, is_commit_sha

BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
LOCK_MEMBER = "lock.toml"
MAX_MANIFEST = 64 << 20  # bytes: a manifest of a million members stays well below

Kind = Literal["lock", "wheel", "crate", "git", "built"]

_HEX64 = r"[0-9a-f]{64}"
_PLAIN = r"[A-Za-z0-9][A-Za-z0-9._+%~-]{0,254}"  # a store file name: no '/', never '.'/'..', never '-x'
_SCHEMA: tuple[tuple[Kind, re.Pattern[str]], ...] = (
    ("lock", re.compile(re.escape(LOCK_MEMBER))),
    ("wheel", re.compile(rf"wheels/(?P<sha>{_HEX64})/(?P<file>{_PLAIN})")),
    ("crate", re.compile(rf"crates/(?P<sha>{_HEX64})/(?P<file>{_PLAIN}\.crate)")),
    ("git", re.compile(r"git/(?P<key>[0-9a-f]{16})\.bundle")),
    ("built", re.compile(rf"built/(?P<file>{_PLAIN})")),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Member:
    path: str
    sha256: str
    size: int


@dataclass(frozen=True, kw_only=True, slots=True)
class GitRepository:
    """One git bundle: the repository it stands for, the commits it carries (each as
    refs/vllm-lock/<commit>), and those of them whose history stops there (a shallow mirror)."""

    url: str
    path: str
    commits: tuple[str, ...]
    shallow: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True, slots=True)
class Manifest:
    lock_name: str
    content_hash: str
    build_identity: str
    members: tuple[Member, ...]
    repositories: tuple[GitRepository, ...]
    bundle_version: int = BUNDLE_VERSION


# ---------------------------------------------------------------- names


def wheel_member(sha256: str, filename: str) -> str:
    return f"wheels/{sha256}/{filename}"


def crate_member(sha256: str, filename: str) -> str:
    return f"crates/{sha256}/{filename}"


def git_member(url: str) -> str:
    """Named by the same key as the cache's mirror of url (shell/git.mirror_path)."""
    return f"git/{mirror_key(url)}.bundle"


def mirror_key(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def member_kind(name: str) -> Kind | None:
    """Which schema entry a member name fits; None for any other name (also `..`, absolute
    paths, and every name the schema does not spell out)."""
    for kind, pattern in _SCHEMA:
        if pattern.fullmatch(name):
            return kind
    return None


def path_problem(name: str) -> str | None:
    """Why a member name is unsafe or unknown; None when it fits the schema."""
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/"):
        return f"member {name!r} is an absolute path"
    if ".." in path.parts:
        return f"member {name!r} leaves the bundle (..)"
    if name != MANIFEST and member_kind(name) is None:
        return f"member {name!r} is not a name a bundle holds"
    return None


# ---------------------------------------------------------------- what a lock needs


def lock_members(lock: Lock) -> dict[str, tuple[str, int | None]]:
    """{member name: (sha256, size or None)} of every wheel and crate the lock names."""
    wanted: dict[str, tuple[str, int | None]] = {}
    for package in lock.packages:
        for wheel in package.wheels:
            wanted[wheel_member(wheel.sha256, wheel.filename)] = (wheel.sha256, wheel.size)
    if lock.rust is not None:
        for crate in lock.rust.crates:
            wanted[crate_member(crate.checksum, f"{crate.name}-{crate.version}.crate")] = (crate.checksum, None)
    return wanted


def lock_repositories(lock: Lock) -> dict[str, set[str]]:
    """{url: commits} the lock names directly (vLLM and each external source); the external
    sources' git submodules are found in their trees by the shell."""
    repos: dict[str, set[str]] = {lock.vllm.url: {lock.vllm.commit}}
    for source in lock.external_sources:
        repos.setdefault(source.repository, set()).add(source.commit)
    return repos


# ---------------------------------------------------------------- the manifest as text


def dumps(manifest: Manifest) -> bytes:
    data = {
        "bundle-version": manifest.bundle_version,
        "lock": {"name": manifest.lock_name, "content-hash": manifest.content_hash,
                 "build-identity": manifest.build_identity},
        "members": [{"path": m.path, "sha256": m.sha256, "size": m.size}
                    for m in sorted(manifest.members, key=lambda m: m.path)],
        "repositories": [{"url": r.url, "path": r.path, "commits": sorted(r.commits), "shallow": sorted(r.shallow)}
                         for r in sorted(manifest.repositories, key=lambda r: r.path)],
    }
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


def loads(data: bytes) -> Manifest:
    """The manifest, every field checked (BundleError naming the first bad one)."""
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"the bundle's {MANIFEST} is not JSON ({exc})") from None
    try:
        return _manifest(raw)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the bundle's {MANIFEST} is malformed ({type(exc).__name__}: {exc})") from None


def _manifest(raw: Any) -> Manifest:
    if not isinstance(raw, dict) or raw["bundle-version"] != BUNDLE_VERSION:
        raise ValueError(f"bundle-version is not {BUNDLE_VERSION}")
    lock = raw["lock"]
    members = tuple(_member(m) for m in raw["members"])
    repositories = tuple(_repository(r) for r in raw["repositories"])
    paths = [m.path for m in members]
    if len(set(paths)) != len(paths):
        raise ValueError("a member is listed twice")
    return Manifest(lock_name=_str(lock["name"]), content_hash=_str(lock["content-hash"]),
                    build_identity=_str(lock["build-identity"]), members=members, repositories=repositories)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _member(raw: Any) -> Member:
    path, sha256, size = _str(raw["path"]), _str(raw["sha256"]), raw["size"]
    if problem := path_problem(path):
        raise ValueError(problem)
    if not re.fullmatch(_HEX64, sha256) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ValueError(f"member {path!r}: bad sha256 or size")
    return Member(path=path, sha256=sha256, size=size)


def _repository(raw: Any) -> GitRepository:
    url, path = _str(raw["url"]), _str(raw["path"])
    commits = tuple(_str(c) for c in raw["commits"])
    shallow = tuple(_str(c) for c in raw["shallow"])
    if path != git_member(url):
        raise ValueError(f"repository {url!r} is not stored as {git_member(url)!r}")
    if not commits or not all(is_commit_sha(c) for c in (*commits, *shallow)):
        raise ValueError(f"repository {url!r}: commits must be full SHAs")
    return GitRepository(url=url, path=path, commits=commits, shallow=shallow)


# ---------------------------------------------------------------- checks


def check_members(manifest: Manifest, seen: dict[str, Member]) -> None:
    """Every member read (name, the sha256 and size of its bytes) is the manifest's, and the
    manifest names no member that is not there."""
    listed = {m.path: m for m in manifest.members}
    for path, got in sorted(seen.items()):
        want = listed.get(path)
        if want is None:
            raise BundleError(f"bundle member {path!r} is not in its manifest")
        if (got.sha256, got.size) != (want.sha256, want.size):
            raise BundleError(f"bundle member {path!r} does not match its manifest "
                              f"(sha256 {got.sha256[:16]}…, {got.size} bytes; manifest: {want.sha256[:16]}…, "
                              f"{want.size} bytes)")
    if missing := sorted(set(listed) - set(seen)):
        raise BundleError(f"the bundle lacks {missing[0]!r}, which its manifest lists (truncated?)")
    for repo in manifest.repositories:
        if repo.path not in seen:
            raise BundleError(f"the bundle lacks {repo.path!r} for {repo.url}")


def check_against_lock(manifest: Manifest, lock: Lock, content_hash: str, seen: dict[str, Member]) -> None:
    """The bundle is this lock's: same content hash, and every wheel and crate of the lock is
    there with the lock's own sha256 (and size), the bytes' hash, not the manifest's word."""
    if manifest.content_hash != content_hash:
        raise WrongBundleError(f"the bundle is for lock {manifest.lock_name!r} ({manifest.content_hash}), "
                        f"not for lock {lock.name!r} ({content_hash})")
    for path, (sha256, size) in sorted(lock_members(lock).items()):
        got = seen.get(path)
        if got is None:
            raise BundleError(f"the bundle lacks {path!r}, which the lock names")
        if got.sha256 != sha256 or (size is not None and got.size != size):
            raise BundleError(f"bundle member {path!r} hashes to sha256:{got.sha256} ({got.size} bytes), "
                              f"the lock says sha256:{sha256}: refusing the bundle")
    extra = sorted(p for p in seen if member_kind(p) in ("wheel", "crate") and p not in lock_members(lock))
    if extra:
        raise BundleError(f"bundle member {extra[0]!r} is not named by the lock")


__all__ = ["BUNDLE_VERSION", "BundleError", "GitRepository", "LOCK_MEMBER", "MANIFEST", "Manifest", "Member",
           "check_against_lock", "check_members", "dumps", "loads", "lock_members", "lock_repositories",
           "member_kind", "path_problem"]
