"""Submodules of an external source, from `.gitmodules` and the tree's gitlinks. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

from vllm_lock.model import git_url_problem, is_commit_sha


class SubmoduleError(ValueError):
    """A .gitmodules entry that cannot be staged safely."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Submodule:
    path: str
    url: str  # absolute: relative URLs are resolved against the superproject's
    commit: str


def parse_config(listing: str) -> dict[str, dict[str, str]]:
    """`git config --blob C:.gitmodules --list` output -> {submodule name: {key: value}}."""
    entries: dict[str, dict[str, str]] = {}
    for line in listing.splitlines():
        key, sep, value = line.partition("=")
        if not sep or not key.startswith("submodule."):
            continue
        name, _, field = key[len("submodule."):].rpartition(".")
        entries.setdefault(name, {})[field] = value
    return entries


def parse_gitlinks(ls_tree: str) -> dict[str, str]:
    """`git ls-tree -r C` lines of mode 160000 -> {path: commit}."""
    links = {}
    for line in ls_tree.splitlines():
        meta, _, path = line.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[0] == "160000" and parts[1] == "commit":
            links[path] = parts[2]
    return links


def resolve_url(superproject: str, url: str) -> str:
    """git's rule: `./x` and `../x` are relative to the superproject's URL taken as a directory."""
    if not url.startswith(("./", "../")):
        return url
    base = superproject.rstrip("/")
    rest = url
    while rest.startswith(("./", "../")):
        if rest.startswith("./"):
            rest = rest[2:]
            continue
        rest = rest[3:]
        head, sep, _ = base.rpartition("/")
        if not sep or head.endswith(":/") or head.endswith(":"):
            raise SubmoduleError(f"relative submodule url {url!r} climbs above {superproject}")
        base = head
    return f"{base}/{rest}" if rest else base


def submodules(superproject: str, config: dict[str, dict[str, str]], gitlinks: dict[str, str]) -> tuple[Submodule, ...]:
    """Every gitlink with its URL. A gitlink without a .gitmodules entry, or a path that leaves the
    tree, is an error: the build would miss it or write outside its directory."""
    by_path = {entry["path"]: entry for entry in config.values() if "path" in entry}
    found = []
    for path, commit in sorted(gitlinks.items()):
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts:
            raise SubmoduleError(f"submodule path {path!r} leaves the source tree")
        entry = by_path.get(path)
        if entry is None or "url" not in entry:
            raise SubmoduleError(f"submodule {path} has no url in .gitmodules")
        if not is_commit_sha(commit):
            raise SubmoduleError(f"submodule {path}: {commit!r} is not a commit")
        url = resolve_url(superproject, entry["url"])
        problem = git_url_problem(url)  # the lock's URL rule, before git sees it
        if problem:
            raise SubmoduleError(f"submodule {path}: url {problem}")
        found.append(Submodule(path=path, url=url, commit=commit))
    return tuple(found)
