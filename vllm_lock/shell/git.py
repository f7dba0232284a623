"""git through gitpython: resolve refs without a checkout, a cached bare mirror, tree export.

All git runs with a fixed, prompt-free environment, a timeout and bounded retries; failures
become UnreachableError / UnknownRefError with one line of explanation.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import posixpath
import tarfile
import time
from pathlib import Path, PurePosixPath

import git
from git.exc import GitCommandError

from vllm_lock.errors import UnknownRefError, UnreachableError
from vllm_lock.model import is_commit_sha

GIT_TIMEOUT_S = 300
RETRIES = 3
_UNREACHABLE_HINTS = (
    "does not appear to be a git repository",
    "could not read from remote",
    "could not resolve host",
    "connection refused",
    "failed to connect",
    "timed out",
    "unable to access",
    "not found",
    "operation too slow",
)


def git_env() -> dict[str, str]:
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": "30",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "LC_ALL": "C",
    }
    return env


def _git(args: list[str], *, cwd: Path | None = None, what: str, url: str, retries: int = RETRIES) -> str:
    command = git.Git(str(cwd) if cwd else None)
    last = ""
    for attempt in range(retries):
        try:
            result = command.execute(
                ["git", *args], env=git_env(), kill_after_timeout=GIT_TIMEOUT_S, with_extended_output=False
            )
            return str(result)
        except GitCommandError as exc:
            stderr = (exc.stderr or str(exc)).strip().removeprefix("stderr: ").strip("'")
            if not any(h in stderr.lower() for h in _UNREACHABLE_HINTS):
                raise
            lines = [line.strip() for line in stderr.splitlines() if line.strip()]
            last = next((line for line in lines if line.startswith("fatal:")), lines[-1] if lines else str(exc))
            if attempt + 1 < retries:
                time.sleep(0.5 * 2**attempt)
    raise UnreachableError(f"repository {url} unreachable while {what} ({retries} tries): {last}")


def resolve_ref(url: str, ref: str) -> str:
    """The commit a branch/tag name points at, by ls-remote (no clone). SHAs pass through."""
    if is_commit_sha(ref):
        return ref
    out = _git(["ls-remote", url, ref, f"refs/tags/{ref}^{{}}"], what=f"resolving {ref!r}", url=url)
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    for candidate in (f"refs/tags/{ref}^{{}}", f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        if candidate in refs:
            return refs[candidate]
    raise UnknownRefError(f"ref {ref!r} not found in {url} (no branch or tag of that name)")


def mirror_path(cache: Path, url: str) -> Path:
    return cache / "git" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")


def _open_mirror(path: Path) -> git.Repo:
    """The bare mirror at path, created empty the first time."""
    if (path / "HEAD").exists():
        return git.Repo(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return git.Repo.init(path, bare=True)


def update_mirror(cache: Path, url: str, commit: str) -> git.Repo:
    """A bare mirror of url in the cache holding `commit` (fetched by SHA if no ref has it)."""
    path = mirror_path(cache, url)
    repo = _open_mirror(path)
    if not _has_commit(repo, commit):
        _git(
            ["fetch", "--force", "--tags", "--prune", url, "+refs/heads/*:refs/heads/*"],
            cwd=path,
            what="fetching",
            url=url,
        )
    if not _has_commit(repo, commit):
        try:
            _git(["fetch", url, commit], cwd=path, what=f"fetching {commit[:9]}", url=url)
        except GitCommandError:
            pass
    if not _has_commit(repo, commit):
        raise UnknownRefError(f"commit {commit} not found in {url}")
    return repo


def fetch_commit(cache: Path, url: str, commit: str) -> git.Repo:
    """A mirror of url holding `commit`, fetched alone at depth 1 where the server allows it (an
    external source needs one tree, not years of CUTLASS history); else the whole mirror. The
    commit gets a ref of its own so that git never prunes it."""
    path = mirror_path(cache, url)
    repo = _open_mirror(path)
    if _has_commit(repo, commit):
        return repo
    try:
        _git(["fetch", "--depth", "1", url, f"+{commit}:refs/vllm-lock/{commit}"], cwd=path,
             what=f"fetching {commit[:9]}", url=url)
    except GitCommandError:
        pass  # a server that refuses a bare SHA: fetch everything instead
    if _has_commit(repo, commit):
        return repo
    return update_mirror(cache, url, commit)


def _has_commit(repo: git.Repo, commit: str) -> bool:
    try:
        repo.git.execute(["git", "cat-file", "-e", f"{commit}^{{commit}}"], env=git_env())
        return True
    except GitCommandError:
        return False


def commit_date(repo: git.Repo, commit: str) -> str:
    """Committer date in ISO 8601 UTC (what SOURCE_DATE_EPOCH is derived from)."""
    stamp = repo.commit(commit).committed_date
    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_files(repo: git.Repo, commit: str) -> list[str]:
    return repo.git.execute(["git", "ls-tree", "-r", "--name-only", commit], env=git_env()).splitlines()


def read_blob(repo: git.Repo, commit: str, path: str) -> bytes:
    blob = repo.commit(commit).tree / path
    return bytes(blob.data_stream.read())


def export_tree(repo: git.Repo, commit: str, dest: Path) -> None:
    """The tree of commit, written to dest (no .git): what `git archive` gives."""
    data = repo.git.execute(["git", "archive", "--format=tar", commit], env=git_env(), stdout_as_string=False)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python < 3.11.4 (Debian bookworm's 3.11.2): check what the data filter would
            for member in tar.getmembers():
                _check_member(member)
            tar.extractall(dest)


def _check_member(member: tarfile.TarInfo) -> None:
    """Refuse what the "data" extraction filter refuses: paths or links leaving the tree, devices."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or ".." in path.parts:
        raise ValueError(f"archive member {member.name!r} leaves the tree")
    if member.issym() or member.islnk():
        base = path.parent if member.issym() else PurePosixPath()
        target = posixpath.normpath(str(base / member.linkname))
        if PurePosixPath(member.linkname).is_absolute() or target == ".." or target.startswith("../"):
            raise ValueError(f"archive link {member.name!r} -> {member.linkname!r} leaves the tree")
    if member.isdev():
        raise ValueError(f"archive member {member.name!r} is a device")


def gitmodules_listing(repo: git.Repo, commit: str) -> tuple[str, str]:
    """(`.gitmodules` as `git config --list` lines, the commit's gitlinks as ls-tree lines);
    empty strings for a commit without submodules."""
    links = "\n".join(
        line for line in repo.git.execute(["git", "ls-tree", "-r", commit], env=git_env()).splitlines()
        if line.startswith("160000 ")
    )
    if not links:
        return "", ""
    try:
        config = repo.git.execute(["git", "config", "--blob", f"{commit}:.gitmodules", "--list"], env=git_env())
    except GitCommandError:
        config = ""
    return str(config), links


def commits_between(repo: git.Repo, old: str, new: str, limit: int) -> tuple[int, list[str]]:
    """How many commits lie in old..new, and the subjects of the first `limit` of them."""
    count = int(repo.git.execute(["git", "rev-list", "--count", f"{old}..{new}"], env=git_env()))
    subjects = repo.git.execute(
        ["git", "log", "--format=%h %s", f"-n{limit}", f"{old}..{new}"], env=git_env()
    ).splitlines()
    return count, subjects
