"""What a build reads, staged in its generation. External CMake sources: each locked commit
exported from a cached mirror (git submodules included) into one directory per source, so that
CMake fetches nothing. Wheels: every locked wheel from the content-addressed store, under its
real filename, for an offline `uv pip sync`."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from vllm_lock import gitmodules
from vllm_lock.errors import InstallError, LockInvalidError, PreflightError, UnknownRefError, UnreachableError
from vllm_lock.generation import Generation
from vllm_lock.model import ExternalSource, Lock, Wheel
from vllm_lock.shell import git as git_shell
from vllm_lock.shell.store import Store, file_sha256, inside, plain_name

MAX_SUBMODULE_DEPTH = 4


def stage(
    sources: tuple[ExternalSource, ...], cache: Path, gen: Generation, say: Callable[[str], None]
) -> dict[str, Path]:
    """{source name: its staged tree} in the generation. A tree already staged at the locked
    commit is kept (its stamp file beside it is written last, so a killed staging is redone,
    never trusted)."""
    root = gen.external
    root.mkdir(parents=True, exist_ok=True)
    staged = {}
    for source in sources:
        dest, stamp, partial = (_inside(root, path) for path in (
            gen.external_tree(source.name), gen.external_stamp(source.name), gen.external_partial(source.name)))
        if dest.is_dir() and stamp.is_file() and stamp.read_text().strip() == source.commit:
            say(f"    {source.name}: staged earlier at {source.commit[:12]}")
        else:
            stamp.unlink(missing_ok=True)
            for stale in (partial, dest):
                shutil.rmtree(stale, ignore_errors=True)
            try:
                count = _export(source.repository, source.commit, cache, partial, depth=0)
            except (UnknownRefError, UnreachableError) as exc:
                raise type(exc)(f"external source {source.name}: {exc}") from None
            except gitmodules.SubmoduleError as exc:
                raise InstallError(f"external source {source.name}: {exc}") from None
            partial.rename(dest)
            stamp.write_text(source.commit + "\n")
            extra = f" with {count} submodule{'s' if count != 1 else ''}" if count else ""
            pin = source.commit[:12] if source.ref_kind == "commit" else f"{source.ref} = {source.commit[:12]}"
            say(f"    {source.name}: {pin}{extra} -> {dest}")
        staged[source.name] = dest
    return staged


def _inside(root: Path, path: Path) -> Path:
    """path, refused unless it lies inside root once resolved (a source name is lock data)."""
    if not path.is_relative_to(root):
        raise LockInvalidError(f"refusing {str(path)!r}: it would leave {root}")
    return inside(root, *path.relative_to(root).parts)


def _export(url: str, commit: str, cache: Path, dest: Path, depth: int) -> int:
    """The tree of url@commit into dest, submodules exported into their paths; returns how many."""
    with git_shell.mirror_lock(cache, url):  # no other install fetches into it while we read
        repo = git_shell.fetch_commit(cache, url, commit)
        git_shell.export_tree(repo, commit, dest)
        config, links = git_shell.gitmodules_listing(repo, commit)
    count = 0
    for sub in gitmodules.submodules(url, gitmodules.parse_config(config), gitmodules.parse_gitlinks(links)):
        if depth >= MAX_SUBMODULE_DEPTH:
            raise gitmodules.SubmoduleError(f"submodules nested deeper than {MAX_SUBMODULE_DEPTH} at {sub.path}")
        target = inside(dest, *PurePosixPath(sub.path).parts)
        shutil.rmtree(target, ignore_errors=True)  # git archive leaves an empty directory for a gitlink
        count += 1 + _export(sub.url, sub.commit, cache, target, depth + 1)
    return count


# ---------------------------------------------------------------- wheels


def staged_name(wheel: Wheel) -> str:
    """The wheel's real filename (resolve may record it URL-quoted: torch-2.10%2Bcu128-...)."""
    return plain_name(wheel.plain_filename)


def stage_wheels(
    lock: Lock, store: Store, dest: Path, say: Callable[[str], None]
) -> dict[tuple[str, str], Path]:
    """Every locked wheel (all those of a package that fit the target: the installer picks one)
    in the content-addressed cache (downloaded with its hash checked when missing), present under
    its real filename in dest. Returns (sha256, filename) -> the file the installer is to read.

    Where the store's file has the real filename the installer reads the store's file itself: one
    path on every install, whose inode is never touched. dest holds a symbolic link to it (on the
    same filesystem: a hard link would change the inode's ctime, and uv, which keys its unpacked
    wheels by path and ctime, would unpack every wheel again on every install) or a copy (on
    another). A URL-quoted store name is not a wheel filename an installer can read: that wheel is
    hard-linked or copied into dest and read there. A copy or link is made through a temporary
    name; one staged earlier is reused only with the lock's size and sha256."""
    dest.mkdir(parents=True, exist_ok=True)
    dest_device = dest.stat().st_dev
    staged: dict[tuple[str, str], Path] = {}
    downloaded = total = 0
    for package in lock.packages:
        for wheel in package.wheels:
            name = staged_name(wheel)  # a plain file name: no directory part
            source = store.path(wheel.sha256, wheel.filename)
            plain = source.name == name
            # dest / name is inside dest; inside() would resolve our own link to the store and refuse it
            target = dest / name if plain else inside(dest, name)
            # a store file is only ever renamed into place whole: present means complete
            if not source.is_file():
                _, _, fetched = store.fetch(wheel.url, wheel.filename, expected_sha256=wheel.sha256,
                                            expected_size=wheel.size)
                downloaded += fetched
            total += 1
            if plain and source.stat().st_dev == dest_device:
                if not (target.is_symlink() and os.readlink(target) == str(source)):
                    _link_one(source, target)
            elif not _staged_intact(target, source, wheel):
                _stage_one(source, target)
            staged[wheel.sha256, wheel.filename] = source if plain else target
    say(f"    {total} wheels staged, {downloaded} downloaded, {total - downloaded} from the cache")
    return staged


def _staged_intact(target: Path, source: Path, package: Wheel) -> bool:
    """target holds the locked bytes: the store's own file (a hard link: it was hashed when it
    entered the store and is never written in place), or a copy of the lock's size and hash."""
    try:
        have = target.stat(follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not target.is_file() or target.is_symlink() or have.st_size != package.size:
        return False
    mine = source.stat()
    if (have.st_ino, have.st_dev) == (mine.st_ino, mine.st_dev):
        return True
    return file_sha256(target) == package.sha256


def _link_one(source: Path, target: Path) -> None:
    """target, a symbolic link to source (never followed: a rename replaces the link itself)."""
    _publish(target, lambda partial: os.symlink(source, partial))


def _stage_one(source: Path, target: Path) -> None:
    """source at target: a hard link, or else a synced copy."""
    _publish(target, lambda partial: _link_or_copy(source, partial))


def _link_or_copy(source: Path, dest: Path) -> None:
    try:
        os.link(source, dest)
    except OSError:
        with source.open("rb") as reader, dest.open("wb") as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
            writer.flush()
            os.fsync(writer.fileno())


def _publish(target: Path, make: Callable[[Path], None]) -> None:
    """target made under a temporary name and renamed over whatever was there, so that it is
    never a partial file; a full disk names the file."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    try:
        make(partial)
        os.replace(partial, target)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise PreflightError(f"no space left on the device while staging {target}") from None
        raise InstallError(f"cannot stage {target}: {exc.strerror or exc}") from None
