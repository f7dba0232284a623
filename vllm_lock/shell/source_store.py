"""The source store on disk (its rules: vllm_lock/source_store.py): <cache>/sources/<key>/, a
commit's stripped source tree, read-only (files 0444 or 0555, directories 0555), made once.

A path is made under its key's entry lock (shell/store.entry_lock, released by the kernel if
the process dies) in <cache>/sources/.<key>.partial, made read-only, then renamed into place:
no half tree is ever seen under the final name, a second install making the same path waits and
reuses the first one's, and a killed run leaves only the .partial, which the next one removes.
store gc deletes under the same lock (shell/gc_inventory.py). Each use touches the path's
mtime: a collection that began before it leaves it alone."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vllm_lock import rust as rust_rules
from vllm_lock.shell.store import entry_lock
from vllm_lock.source_store import SOURCES_DIR, partial_name


@dataclass(frozen=True, kw_only=True)
class StoredSource:
    path: Path
    made: bool  # False: an existing path reused
    removed_partial: bool = False  # a .partial left by a killed run was removed first


def sources_dir(cache: Path) -> Path:
    return Path(os.path.abspath(cache)) / SOURCES_DIR


def store_path(cache: Path, key: str) -> Path:
    return sources_dir(cache) / key


def lock_key(key: str) -> str:
    """The entry lock's name of a store path (the cas entries' locks are named by sha256 alone)."""
    return f"{SOURCES_DIR}/{key}"


def ensure(cache: Path, key: str, make: Callable[[Path], None]) -> StoredSource:
    """The store path of key: reused when in place, else made by make(partial), which must leave
    the complete, checked tree at partial; then read-only and renamed into place."""
    final = store_path(cache, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    with entry_lock(cache, lock_key(key)):
        if final.is_dir() and not final.is_symlink():
            touch(final)
            return StoredSource(path=final, made=False)
        partial = final.with_name(partial_name(key))
        # git_shell.checkout clones beside its target first: its own .partial of ours
        temporary = (partial, partial.with_name(f".{partial.name}.partial"))
        leftovers = [p for p in temporary if os.path.lexists(p)]
        for leftover in leftovers:
            remove_tree(leftover)
        try:
            make(partial)
            freeze(partial)
        except BaseException:
            for path in temporary:  # a refused tree (the stripping's result not the lock's) is not kept
                if os.path.lexists(path):
                    with contextlib.suppress(OSError):  # the next maker removes what is left
                        remove_tree(path)
            raise
        if os.path.lexists(final):  # not a directory: nothing a maker wrote
            final.unlink()
        os.rename(partial, final)  # same directory: no write bit of the (read-only) tree needed
        return StoredSource(path=final, made=True, removed_partial=bool(leftovers))


def touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass  # another user's store path: gc's mtime guard is the only thing lost


def freeze(tree: Path) -> None:
    """Every file 0444 (0555 where executable) and every directory 0555; links are left as they are."""
    for root, dirs, names in os.walk(tree, topdown=False):
        for name in names:
            path = os.path.join(root, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, 0o555 if mode & 0o111 else 0o444)
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o555)
    os.chmod(tree, 0o555)


def thaw_directories(tree: Path) -> None:
    """The write bits rmtree needs back: directories only. A file's own mode does not matter to
    unlink, and the .git objects are hard links shared with the mirror."""
    if os.path.islink(tree) or not tree.is_dir():
        return
    os.chmod(tree, 0o755)
    for root, dirs, _ in os.walk(tree):
        for name in dirs:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755)


def remove_tree(path: Path) -> None:
    if os.path.islink(path) or path.is_file():
        path.unlink()
        return
    thaw_directories(path)
    shutil.rmtree(path)


def file_digests(tree: Path, paths: Iterable[str]) -> dict[str, str | None]:
    """sha256 of each repository-relative path in tree; None where it is no file."""
    found: dict[str, str | None] = {}
    for rel in paths:
        file = tree / rel
        found[rel] = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
    return found


# inside the tree's .git: no file of the worktree, removed with the tree, read-only with it
RUST_FACTS = ".git/vllm-lock-rust-facts.json"
MAX_RUST_FACTS = 4 << 20


@dataclass(frozen=True, kw_only=True)
class KeptRustFacts:
    facts: rust_rules.RustFacts | None  # None: the tree has no Rust frontend


def write_rust_facts(tree: Path, facts: rust_rules.RustFacts | None) -> None:
    (tree / RUST_FACTS).write_text(rust_rules.facts_to_json(facts), encoding="utf-8")


def read_rust_facts(tree: Path) -> KeptRustFacts | None:
    """The Rust facts kept when the tree was made; None for a tree made before they were kept
    or a memo that does not read (the caller reads the tree again)."""
    try:
        # no link followed, no FIFO waited on (O_NONBLOCK): only a plain file of bounded size is read
        fd = os.open(tree / RUST_FACTS, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with open(fd, "rb", closefd=False) as memo:
            data = memo.read(MAX_RUST_FACTS + 1)
        if len(data) > MAX_RUST_FACTS:
            return None
        return KeptRustFacts(facts=rust_rules.facts_from_json(data.decode("utf-8")))
    except (OSError, UnicodeDecodeError, rust_rules.RustError):
        return None
    finally:
        os.close(fd)


def link(src: Path, target: Path) -> None:
    """src (a generation's source path) a symlink to target, replacing a checkout of its own
    an earlier build attempt of the generation left there."""
    if src.is_symlink():
        if os.readlink(src) == str(target):
            return
    elif src.is_dir():
        shutil.rmtree(src)
    tmp = src.with_name(f".{src.name}.link-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, src)


def stored_target(src: Path, cache: Path) -> str | None:
    """The key of the store path src links to, None when src is no link into cache's sources."""
    if not src.is_symlink():
        return None
    target = Path(os.path.normpath(src.parent / os.readlink(src)))
    if os.path.realpath(target.parent) != os.path.realpath(sources_dir(cache)):
        return None
    return target.name


__all__ = ["StoredSource", "ensure", "file_digests", "freeze", "link", "lock_key", "remove_tree", "sources_dir",
           "store_path", "stored_target", "thaw_directories", "touch"]
