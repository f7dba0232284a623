"""What `store gc` reads and deletes in the cache: store entries (cas/sha256/<hex>), git mirrors
(git/<key>.git), source store paths (sources/<key>), and the roots existing generations hold.
Deletion happens under the same fcntl lock the writer of that entry takes (shell/store.entry_lock,
the mirror's <mirror>.lock): the entry is renamed away under the lock, then removed, so a fetch
never sees half an entry."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vllm_lock import gitmodules, store_gc
from vllm_lock import receipt as receipts
from vllm_lock import source_store as source_rules
from vllm_lock.generation import Generation
from vllm_lock.shell import git as git_shell
from vllm_lock.shell import source_store
from vllm_lock.shell.store import entry_lock

_HEX = frozenset("0123456789abcdef")


def _newest_and_size(path: Path) -> tuple[float, int, int]:
    """(newest mtime, bytes, files) of everything under path (path itself included)."""
    newest = path.lstat().st_mtime
    size = files = 0
    for root, dirs, names in os.walk(path):
        for name in (*dirs, *names):
            try:
                st = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            newest = max(newest, st.st_mtime)
            if name in names:
                size += st.st_size
                files += 1
    return newest, size, files


def newest(path: Path) -> float | None:
    try:
        return _newest_and_size(path)[0]
    except FileNotFoundError:
        return None


def store_entries(cache: Path) -> list[store_gc.Entry]:
    return _entries(cache / "cas" / "sha256", lambda path: len(path.name) == 64 and set(path.name) <= _HEX)


def source_paths(cache: Path) -> list[store_gc.Entry]:
    """The source store's paths (sources/<key>; a .partial is the next maker's to remove)."""
    return _entries(source_store.sources_dir(cache),
                    lambda path: source_rules.is_key(path.name) and not path.is_symlink())


def _entries(base: Path, named: Callable[[Path], bool]) -> list[store_gc.Entry]:
    """Each folder under base whose name says it is one of ours, with its newest time and size
    (one that vanishes while being measured is left out)."""
    found = []
    for path in sorted(base.iterdir()) if base.is_dir() else []:
        if not named(path) or not path.is_dir():
            continue
        try:
            when, size, files = _newest_and_size(path)
        except FileNotFoundError:
            continue
        found.append(store_gc.Entry(key=path.name, files=files, size=size, newest=when))
    return found


def mirrors(cache: Path, commits: frozenset[str]) -> list[store_gc.Mirror]:
    base = cache / "git"
    found = []
    for path in sorted(base.glob("*.git")) if base.is_dir() else []:
        if not path.is_dir() or path.name.startswith("."):
            continue
        try:
            when, size, files = _newest_and_size(path)
        except FileNotFoundError:
            continue
        found.append(store_gc.Mirror(key=path.name.removesuffix(".git"), files=files, size=size, newest=when,
                                     holds=frozenset(held_commits(path, commits))))
    return found


def held_commits(path: Path, commits: frozenset[str]) -> set[str]:
    """Which of commits the mirror at path holds (one `git cat-file --batch-check`)."""
    if not commits or not (path / "HEAD").exists():
        return set()
    import subprocess

    env = dict(os.environ, **git_shell.git_env())
    argv = ["git", *(p for s in git_shell.FORCED_CONFIG for p in ("-c", s)), "cat-file", "--batch-check"]
    try:
        out = subprocess.run(argv, cwd=path, input="".join(f"{c}^{{commit}}\n" for c in sorted(commits)),
                             capture_output=True, text=True, env=env, timeout=git_shell.local_deadline()).stdout
    except (OSError, subprocess.TimeoutExpired):
        return set(commits)  # unreadable now: keep it rather than guess
    rows = (line.split() for line in out.splitlines())
    return {row[0] for row in rows if len(row) == 3 and row[1] == "commit"} & commits


def submodule_commits(cache: Path, commits: frozenset[str]) -> frozenset[str]:
    """commits plus, recursively, the gitlinks (submodule commits) of each, read from whichever
    mirror holds it: the commits a generation's external sources staged."""
    closure = set(commits)
    frontier = set(commits)
    base = cache / "git"
    paths = [p for p in sorted(base.glob("*.git")) if p.is_dir()] if base.is_dir() else []
    for _ in range(5):
        found: set[str] = set()
        for path in paths:
            for commit in held_commits(path, frozenset(frontier)):
                try:
                    _, links = git_shell.gitmodules_listing(_repo(path), commit)
                except git_shell.GitError:
                    continue
                found |= set(gitmodules.parse_gitlinks(links).values())
        frontier = found - closure
        if not frontier:
            break
        closure |= frontier
    return frozenset(closure)


def _repo(path: Path):  # type: ignore[no-untyped-def]
    import git

    return git.Repo(path)


def generation_roots(generations: Path, cache: Path | None = None) -> store_gc.Roots:
    """What every generation under generations references: the wheels of its pylock.toml, the
    crates it vendored, the commits its receipt records, the source store path of cache its src
    links to (unfinished ones included: an install may be running in it)."""
    sha256s: set[str] = set()
    commits: set[str] = set()
    sources: set[str] = set()
    for folder in sorted(generations.iterdir()) if generations.is_dir() else []:
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        gen = Generation(root=folder)
        if cache is not None and (key := source_store.stored_target(gen.src, cache)) is not None:
            sources.add(key)
        try:
            data = tomllib.loads(gen.pylock.read_text(encoding="utf-8"))
            for package in data.get("packages", []):
                for wheel in package.get("wheels", []):
                    sha256s.add(str(wheel["hashes"]["sha256"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        for marker in sorted(gen.rust_vendor.glob("*/.cargo-checksum.json")):
            try:
                sha256s.add(str(json.loads(marker.read_text(encoding="utf-8"))["package"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        done = receipts.read(gen)
        if done is not None:
            commits |= {done.vllm_commit, *done.external_sources.values()}
        for stamp in sorted(gen.external.glob("*.commit")):
            try:
                commits.add(stamp.read_text(encoding="utf-8").strip())
            except OSError:
                continue
    return store_gc.Roots(sha256s=frozenset(sha256s), commits=frozenset(commits), sources=frozenset(sources))


@contextmanager
def _flock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def delete_entry(cache: Path, entry: store_gc.Entry, *, started: float) -> bool:
    """Remove cas/sha256/<key> under its entry lock, unless it changed since the collection
    began (a fetch finished into it). Returns whether it was removed."""
    path = cache / "cas" / "sha256" / entry.key
    with entry_lock(cache, entry.key):
        if not store_gc.still_deletable(entry, newest(path), started=started):
            return False
        trash = path.with_name(f".gc-{entry.key}-{os.getpid()}")
        os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def delete_mirror(cache: Path, mirror: store_gc.Mirror, *, started: float) -> bool:
    """Remove git/<key>.git under the mirror's own lock (shell/git.mirror_lock's file)."""
    path = cache / "git" / f"{mirror.key}.git"
    with _flock(path.with_name(path.name + ".lock")):
        if not store_gc.still_deletable(mirror, newest(path), started=started):
            return False
        trash = path.with_name(f".gc-{mirror.key}-{os.getpid()}")
        os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return True


def remove_left_trash(cache: Path) -> int:
    """The .gc-<key>-<pid> folders a collection killed while removing left (in cas, git and
    sources), each once its process is gone; how many were removed."""
    removed = 0
    for base in (cache / "cas" / "sha256", cache / "git", source_store.sources_dir(cache)):
        for trash in sorted(base.glob(".gc-*-*")) if base.is_dir() else []:
            pid = trash.name.rpartition("-")[2]
            if not pid.isdigit() or trash.is_symlink():
                continue
            try:
                os.kill(int(pid), 0)
                continue  # its collection is still removing it
            except ProcessLookupError:
                pass
            except (PermissionError, OverflowError):
                continue
            source_store.remove_tree(trash)
            removed += 1
    return removed


def delete_source(cache: Path, entry: store_gc.Entry, *, started: float) -> bool:
    """Remove sources/<key> under the lock its maker takes (shell/source_store.ensure), unless an
    install used it since the collection began (each use touches it)."""
    path = source_store.store_path(cache, entry.key)
    with entry_lock(cache, source_store.lock_key(entry.key)):
        if not store_gc.still_deletable(entry, newest(path), started=started):
            return False
        trash = path.with_name(f".gc-{entry.key}-{os.getpid()}")
        os.rename(path, trash)
    source_store.remove_tree(trash)  # its directories made writable first: rmtree needs them so
    return True
