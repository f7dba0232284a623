"""External CMake sources staged for the build: each locked commit exported from a cached
mirror (git submodules included) into one directory per source, so that CMake fetches nothing."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from vllm_lock import gitmodules
from vllm_lock.errors import InstallError, LockInvalidError, UnknownRefError, UnreachableError
from vllm_lock.generation import Generation
from vllm_lock.model import ExternalSource
from vllm_lock.shell import git as git_shell
from vllm_lock.shell.store import inside

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
