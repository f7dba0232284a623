"""git, reached only here: resolve refs without a checkout, cached bare mirrors, tree export,
the source checkout of a generation, and commits to the user's own repository (promote --commit).

Every git command runs through `run`: the user's own git configuration (global and system:
url.<base>.insteadOf, http.proxy, http.sslCAInfo, credential helpers) with prompts, hooks and
fsmonitor forced off, only the file/git/http/https/ssh transports allowed (docs/mirrors.md),
the process's mirrors applied to every remote URL, a total deadline (retries inside it for network calls) and
one-line errors. Values that come from a lock (URLs, refs, commits) are checked here again
(defence in depth: the lock reader checks them first) and always follow `--` or
`--end-of-options`, so that git can never read one as an option. A bare mirror is used under
an fcntl lock of its own, so that installs sharing a cache never fetch into it at once.

git runs as a process of its own (shell/proc.output_of: killed with its process group at the
deadline). gitpython (~70 ms to import, and a `git version` of its own) is imported only by the
functions that read a mirror through its objects, not with this module: an install and verify
need no gitpython at all.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import io
import os
import posixpath
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal, overload

from vllm_lock.errors import InstallError, ResolutionError, UnknownRefError, UnreachableError, UsageError
from vllm_lock.model import Lock, is_commit_sha
from vllm_lock.shell import limits, mirroring, proc
from vllm_lock.shell.git_environment import REPOSITORY_ENV

if TYPE_CHECKING:
    import tarfile

    import git

RETRIES = 3
FIRST_PAUSE_S = 0.5  # then 1 s: git's own pauses between tries of a network call
URL_SCHEMES = ("https", "http", "ssh", "git", "file")
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
    "the remote end hung up",
    "early eof",
)
_SCP_LIKE = re.compile(r"^(?:[A-Za-z0-9._~+-]+@)?[A-Za-z0-9][A-Za-z0-9.-]*:(?!:)[^\s]+$")
_BAD_REF_CHARS = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


class GitError(InstallError):
    """A git command failed for a reason other than an unreachable remote."""



def network_deadline() -> float:
    """Total seconds for one fetch of a remote, retries included (VLLM_LOCK_GIT_DEADLINE)."""
    return limits.setting("VLLM_LOCK_GIT_DEADLINE", 1800)


def probe_deadline() -> float:
    """Total seconds for one ls-remote, retries included (VLLM_LOCK_GIT_PROBE_DEADLINE); a fetch
    is preceded by one, so that a server that never answers fails within this bound."""
    return limits.setting("VLLM_LOCK_GIT_PROBE_DEADLINE", 60)


def local_deadline() -> float:
    """Seconds for a local git command (archive, clone from the mirror, checkout)."""
    return limits.setting("VLLM_LOCK_GIT_LOCAL_DEADLINE", 900)


def output_bound() -> int:
    """Bytes of one git command's output held in memory (an archive of a whole tree is the largest:
    vLLM's, ~40 MB); an untrusted commit's blobs may compress far below what they unpack to."""
    return int(limits.setting("VLLM_LOCK_GIT_OUTPUT_MAX", 1 << 30))


# `-c` beats every config file: whatever the user's configuration says, git runs no hook (also
# none a template directory put into a new repository), no fsmonitor program, no auto gc.
FORCED_CONFIG = (
    "core.hooksPath=" + os.devnull,
    "core.fsmonitor=false",
    "gc.auto=0",
    "maintenance.auto=false",
)


def git_env() -> dict[str, str]:
    """Added to the caller's environment (the user's global and system git configuration stay
    in force: insteadOf, proxies, CA files); prompts off, transports limited."""
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_HTTP_LOW_SPEED_LIMIT": "1000",
        "GIT_HTTP_LOW_SPEED_TIME": "30",
        # git itself refuses ext::, fd:: and any other transport, also for submodules
        "GIT_ALLOW_PROTOCOL": "file:git:http:https:ssh",
        "LC_ALL": "C",
    }
    return env


# ---------------------------------------------------------------- untrusted values


def check_url(url: str) -> str:
    """url, when git can only read it as a repository address of an allowed transport."""
    if not isinstance(url, str) or not url or url.startswith("-") or any(ord(c) < 0x20 or c == "\x7f" for c in url):
        raise UnreachableError(f"refusing repository URL {url!r}: not a repository address")
    scheme, sep, _ = url.partition("://")
    if sep:
        if scheme.lower() not in URL_SCHEMES:
            raise UnreachableError(f"refusing repository URL {url!r}: only {', '.join(URL_SCHEMES)} URLs are allowed")
        return url
    if url.startswith("/") or _SCP_LIKE.match(url):
        return url
    raise UnreachableError(f"refusing repository URL {url!r}: only {', '.join(URL_SCHEMES)} URLs are allowed")


def check_ref(ref: str) -> str:
    """ref, when it is a plain branch or tag name (never an option, a refspec or a revision range)."""
    if (
        not isinstance(ref, str) or not ref or ref.startswith(("-", "/")) or ref.endswith(("/", ".lock"))
        or ".." in ref or "@{" in ref or _BAD_REF_CHARS.search(ref)
    ):
        raise UnknownRefError(f"refusing ref {ref!r}: not a branch or tag name")
    return ref


def check_commit(commit: str) -> str:
    if not isinstance(commit, str) or not is_commit_sha(commit):
        raise UnknownRefError(f"refusing commit {commit!r}: not a full commit SHA")
    return commit


# ---------------------------------------------------------------- the one place git runs


@overload
def run(args: Sequence[str], *, cwd: Path | None = ..., what: str, url: str | None = ...,
        binary: Literal[False] = ..., users_own: bool = ...) -> str: ...
@overload
def run(args: Sequence[str], *, cwd: Path | None = ..., what: str, url: str | None = ...,
        binary: Literal[True], users_own: bool = ...) -> bytes: ...
def run(
    args: Sequence[str], *, cwd: Path | None = None, what: str, url: str | None = None, binary: bool = False,
    users_own: bool = False,
) -> str | bytes:
    """`git <args>` in cwd. With url (a network call: ls-remote, fetch) the URL must follow a
    `--`; failures that look like the network are retried within one total deadline and end as
    UnreachableError naming the URL. Other failures raise GitError with git's own last line.
    `users_own`: cwd is the user's own work tree (promote --commit), where the user's hooks and
    settings are obeyed (a pre-commit hook that refuses stops the commit): FORCED_CONFIG is not applied."""
    # no automatic gc/repack: a reader of a shared mirror must never meet a repack under it
    forced = () if users_own else FORCED_CONFIG
    argv = ["git", *(part for setting in forced for part in ("-c", setting)), *args]
    if url is not None:
        check_url(url)
        if "--" not in argv or argv.index("--") > argv.index(url):
            raise GitError(f"internal: git {args[0]} without `--` before {url}")
        fetched = mirroring.active().rewrite(url)
        if fetched != url:  # bytes from the mirror; the caller and the lock keep url
            check_url(fetched)
            at = argv.index(url, argv.index("--"))
            argv[at] = fetched
            url = mirroring.active().describe(url)
        bound = probe_deadline() if args[0] == "ls-remote" else network_deadline()
        tries = RETRIES
    else:
        bound, tries = local_deadline(), 1
    deadline = time.monotonic() + bound
    env = {k: v for k, v in os.environ.items() if k not in REPOSITORY_ENV} | git_env()
    last = ""
    for attempt in range(tries):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            done = proc.output_of(argv, cwd=cwd, env=env, timeout=remaining, max_stdout=output_bound())
        except OSError as exc:  # git missing, cwd vanished
            raise GitError(f"cannot run git while {what}: {exc}") from None
        if done.overflowed:
            raise GitError(f"git {args[0]} wrote more than {output_bound()} bytes while {what} "
                           "(VLLM_LOCK_GIT_OUTPUT_MAX)")
        if done.returncode == 0:
            if binary:
                return done.stdout
            return done.stdout.decode("utf-8", "replace").removesuffix("\n")
        stderr = done.stderr.decode("utf-8", "replace").strip()
        if url is None:
            if done.returncode is None:
                raise GitError(f"git {args[0]} did not finish within {bound:g} s while {what}") from None
            raise GitError(f"git {args[0]} failed while {what}: {_last_line(stderr, done.returncode)}") from None
        if done.returncode is None:
            last = f"no answer within {bound:g} s"
            break
        if not any(h in stderr.lower() for h in _UNREACHABLE_HINTS):
            raise GitError(f"git {args[0]} {url} failed while {what}: {_last_line(stderr, done.returncode)}") from None
        last = _last_line(stderr, done.returncode)
        pause = limits.retry_pause(attempt, tries, deadline - time.monotonic(), FIRST_PAUSE_S)
        if pause is None:
            break
        time.sleep(pause)
    raise UnreachableError(f"repository {url} unreachable while {what}: {last or f'no answer within {bound:g} s'}")


def _last_line(stderr: str, returncode: int | None) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return next((line for line in lines if line.startswith("fatal:")), lines[-1] if lines else f"exit {returncode}")


# ---------------------------------------------------------------- remote refs


def resolve_ref(url: str, ref: str) -> str:
    """The commit a branch/tag name points at, by ls-remote (no clone). SHAs pass through."""
    check_url(url)
    if is_commit_sha(ref):
        return ref
    check_ref(ref)
    out = run(["ls-remote", "--", url, ref, f"refs/tags/{ref}^{{}}"], what=f"resolving {ref!r}", url=url)
    refs: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    for candidate in (f"refs/tags/{ref}^{{}}", f"refs/heads/{ref}", f"refs/tags/{ref}", ref):
        if candidate in refs and is_commit_sha(refs[candidate]):
            return refs[candidate]
    raise UnknownRefError(f"ref {ref!r} not found in {url} (no branch or tag of that name)")


# ---------------------------------------------------------------- mirrors


def mirror_path(cache: Path, url: str) -> Path:
    return cache / "git" / (hashlib.sha256(url.encode()).hexdigest()[:16] + ".git")


_held: dict[Path, int] = {}
_held_guard = threading.Lock()


@contextmanager
def mirror_lock(cache: Path, url: str) -> Iterator[Path]:
    """Exclusive use of url's mirror (an fcntl lock on <mirror>.lock; re-entrant within a
    process, released by the kernel if the process dies). Yields the mirror's path."""
    path = mirror_path(cache, url)
    key = path.absolute()
    with _held_guard:
        if _held.get(key):
            _held[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        with _held_guard:
            _held[key] = 1
        try:
            yield path
        finally:
            with _held_guard:
                _held.pop(key, None)
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass(frozen=True, slots=True)
class Mirror:
    """A bare mirror in the cache. Most of what is asked of it is a git command run in git_dir;
    gitpython (its import alone ~70 ms) is opened only for a commit's objects (repo())."""

    git_dir: Path

    def repo(self) -> git.Repo:
        import git

        return git.Repo(self.git_dir)


def _open_mirror(path: Path) -> Mirror:
    """The bare mirror at path (the caller holds its lock): created empty the first time,
    created again when a killed process left it unreadable, stale git lock files removed."""
    if (path / "HEAD").exists():
        try:
            bare = run([f"--git-dir={path}", "rev-parse", "--is-bare-repository"], what="opening the mirror")
        except GitError:
            bare = ""
        if bare.strip() == "true":
            _remove_stale_git_locks(path)
            return Mirror(git_dir=path)
    # whatever is there is no mirror (a removal killed half-way leaves a folder without HEAD)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, ignore_errors=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    run(["init", "--quiet", "--bare", str(partial)], what="creating the mirror")
    try:
        os.rename(partial, path)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise GitError(f"cannot replace {path}, which is no mirror: {exc.strerror or exc} (remove it)") from None
    return Mirror(git_dir=path)


def _remove_stale_git_locks(path: Path) -> None:
    """git's own *.lock files left by a killed fetch (we hold the mirror's lock: nobody else
    is inside), which would make every later fetch fail with "Unable to create ... .lock"."""
    for stale in [*path.glob("*.lock"), *(path / "refs").rglob("*.lock")]:
        stale.unlink(missing_ok=True)


def _probe(url: str, what: str) -> None:
    """A short ls-remote before a long fetch: a server that never answers fails within the
    probe's bound instead of the fetch's."""
    run(["ls-remote", "--", url, "HEAD"], what=what, url=url)


def update_mirror(cache: Path, url: str, commit: str) -> Mirror:
    """A bare mirror of url in the cache holding `commit` (fetched by SHA if no ref has it)."""
    check_url(url)
    check_commit(commit)
    with mirror_lock(cache, url) as path:
        repo = _open_mirror(path)
        if not _has_commit(repo, commit):
            _probe(url, "fetching")
            run(["fetch", "--force", "--tags", "--prune", "--", url, "+refs/heads/*:refs/heads/*"],
                cwd=path, what="fetching", url=url)
        if not _has_commit(repo, commit):
            try:
                run(["fetch", "--", url, commit], cwd=path, what=f"fetching {commit[:9]}", url=url)
            except GitError:
                pass
        if not _has_commit(repo, commit):
            raise UnknownRefError(f"commit {commit} not found in {url}")
        return repo


def fetch_commit(cache: Path, url: str, commit: str) -> Mirror:
    """A mirror of url holding `commit`, fetched alone at depth 1 where the server allows it (an
    external source needs one tree, not years of CUTLASS history); else the whole mirror. The
    commit gets a ref of its own so that git never prunes it."""
    check_url(url)
    check_commit(commit)
    with mirror_lock(cache, url) as path:
        repo = _open_mirror(path)
        if _has_commit(repo, commit):
            return repo
        _probe(url, f"fetching {commit[:9]}")
        try:
            run(["fetch", "--depth", "1", "--", url, f"+{commit}:refs/vllm-lock/{commit}"], cwd=path,
                what=f"fetching {commit[:9]}", url=url)
        except GitError:
            pass  # a server that refuses a bare SHA: fetch everything instead
        if _has_commit(repo, commit):
            return repo
        return update_mirror(cache, url, commit)


def _has_commit(repo: Mirror, commit: str) -> bool:
    try:
        run(["cat-file", "-e", "--end-of-options", f"{check_commit(commit)}^{{commit}}"],
            cwd=repo.git_dir, what="looking up a commit")
        return True
    except GitError:
        return False


def commit_date(repo: Mirror, commit: str) -> str:
    """Committer date in ISO 8601 UTC (what SOURCE_DATE_EPOCH is derived from)."""
    stamp = repo.repo().commit(check_commit(commit)).committed_date
    return dt.datetime.fromtimestamp(stamp, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_files(repo: Mirror, commit: str) -> list[str]:
    out = run(["ls-tree", "-r", "--name-only", "--end-of-options", check_commit(commit)],
              cwd=repo.git_dir, what="listing files")
    return out.splitlines()


def read_blob(repo: Mirror, commit: str, path: str) -> bytes:
    blob = repo.repo().commit(check_commit(commit)).tree / path
    return bytes(blob.data_stream.read())


def export_tree(repo: Mirror, commit: str, dest: Path) -> None:
    """The tree of commit, written to dest (no .git): what `git archive` gives. A member that
    leaves the tree (an absolute symlink, `..`) or is a device is a ResolutionError naming it,
    raised before anything is written: every member is checked first."""
    import tarfile  # here: an install that only reads git's answers never unpacks a tree

    data = run(["archive", "--format=tar", "--end-of-options", check_commit(commit)],
               cwd=repo.git_dir, what=f"exporting {commit[:9]}", binary=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        try:
            for member in members:
                if hasattr(tarfile, "data_filter"):
                    tarfile.data_filter(member, str(dest))
                else:  # Python < 3.11.4 (Debian bookworm's 3.11.2): what the data filter checks
                    _check_member(member)
        except (tarfile.TarError, ValueError) as exc:  # FilterError is a TarError
            raise ResolutionError(f"commit {commit[:9]}: the tree cannot be exported safely: {exc}") from None
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)


def export_paths(repo: Mirror, commit: str, dest: Path, pathspecs: Sequence[str]) -> None:
    """Only the files of commit that pathspecs name, written to dest (no .git). The pathspecs are
    fixed by our code; each must match a file of the commit (git archive refuses one that does not)."""
    if not pathspecs:
        raise ValueError("export_paths needs at least one pathspec")
    import tarfile

    data = run(["archive", "--format=tar", check_commit(commit), "--", *pathspecs],
               cwd=repo.git_dir, what=f"exporting {commit[:9]}", binary=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        for member in members:
            _check_member(member)
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, members=members, filter="data")
        else:
            tar.extractall(dest, members=members)


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


def gitmodules_listing(repo: Mirror, commit: str) -> tuple[str, str]:
    """(`.gitmodules` as `git config --list` lines, the commit's gitlinks as ls-tree lines);
    empty strings for a commit without submodules."""
    where = Path(repo.git_dir)
    listing = run(["ls-tree", "-r", "--end-of-options", check_commit(commit)], cwd=where, what="listing submodules")
    links = "\n".join(line for line in listing.splitlines() if line.startswith("160000 "))
    if not links:
        return "", ""
    try:
        config = run(["config", f"--blob={commit}:.gitmodules", "--list"], cwd=where, what="reading .gitmodules")
    except GitError:
        config = ""
    return config, links


def commits_between(repo: Mirror, old: str, new: str, limit: int) -> tuple[int, list[str]]:
    """How many commits lie in old..new, and the subjects of the first `limit` of them."""
    where = Path(repo.git_dir)
    span = f"{check_commit(old)}..{check_commit(new)}"
    count = int(run(["rev-list", "--count", "--end-of-options", span], cwd=where, what="counting commits"))
    subjects = run(["log", "--format=%h %s", f"-n{limit}", "--end-of-options", span], cwd=where,
                   what="listing commits").splitlines()
    return count, subjects



# ---------------------------------------------------------------- the source checkout


def checkout(lock: Lock, cache: Path, src: Path, say: Callable[[str], None]) -> None:
    """src at the locked commit: cloned from the cached mirror, or an existing checkout reused
    (fetch, forced switch, clean; ignored build artefacts are kept for incremental rebuilds).
    A checkout that git cannot bring to the commit (missing objects, a clone killed half-way)
    is cloned again. HEAD must equal the locked commit, with the tags vLLM's version needs.
    The mirror's lock is held throughout: no other install fetches into it while we read it."""
    url = check_url(lock.vllm.url)
    commit = check_commit(lock.vllm.commit)
    with mirror_lock(cache, url) as mirror:
        update_mirror(cache, url, commit)  # UnknownRefError when the remote lost it
        if (src / ".git").exists():
            try:
                _in_checkout(["fetch", "--quiet", "--tags", "--force", "--", str(mirror),
                              "+refs/heads/*:refs/remotes/mirror/*"], src, "updating the checkout")
                _to_commit(src, commit)
                say(f"    reusing the checkout {src}")
                return
            except InstallError as exc:
                say(f"    the checkout {src} is unusable ({exc}); cloning it again")
        partial = src.with_name(f".{src.name}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        _in_checkout(["clone", "--quiet", "--no-checkout", "--", str(mirror), str(partial)], None, "cloning the mirror")
        _in_checkout(["remote", "set-url", "--", "origin", url], partial, "naming the origin")
        _to_commit(partial, commit, clean=False)  # a fresh clone has nothing to clean
        if src.exists() or src.is_symlink():
            shutil.rmtree(src) if src.is_dir() and not src.is_symlink() else src.unlink()
        os.rename(partial, src)
        say(f"    cloned {url} into {src}")


def tracked_files(src: Path) -> list[str]:
    """The paths git tracks at the checkout's HEAD (what resolve listed at the commit)."""
    out = _in_checkout(["ls-tree", "-r", "-z", "--name-only", "HEAD"], src, "listing the checkout's files")
    return [name for name in out.split("\0") if name]


def _in_checkout(args: list[str], cwd: Path | None, what: str) -> str:
    try:
        return run(args, cwd=cwd, what=what)
    except GitError as exc:
        raise InstallError(f"{cwd or 'git'}: {exc}") from None


def _to_commit(src: Path, commit: str, *, clean: bool = True) -> None:
    # checkout.workers=0: files written by one worker per CPU (vLLM's ~8500 files: 2-3x faster)
    _in_checkout(["-c", "checkout.workers=0", "switch", "--quiet", "--force", "--detach", "--end-of-options", commit],
                 src, f"checking out {commit[:9]}")
    if clean:
        _in_checkout(["clean", "-ffdq"], src, "cleaning the checkout")
    head = _in_checkout(["rev-parse", "--verify", "HEAD"], src, "reading HEAD").strip()
    if head != commit:
        raise InstallError(f"{src}: HEAD is {head}, the lock says {commit}")


def head_commit(src: Path) -> str | None:
    """The checkout's HEAD; None when src is no checkout git can read."""
    try:
        return run(["rev-parse", "--verify", "HEAD"], cwd=src, what="reading HEAD").strip()
    except GitError:
        return None


def exact_tag(src: Path) -> str | None:
    """The version tag (v<digit>...) on the checkout's HEAD, if there is one."""
    try:
        out = run(["describe", "--tags", "--exact-match", "--match", "v[0-9]*", "HEAD"], cwd=src,
                  what="describing HEAD")
    except GitError:
        return None
    return out.strip() or None


# ---------------------------------------------------------------- the user's own repository


def work_tree(folder: Path, *, option: str) -> Path:
    """The top of the git work tree that holds folder; UsageError (naming the option that asked
    for git) when there is none or the repository is bare."""
    try:
        git_dir, bare = run(["rev-parse", "--absolute-git-dir", "--is-bare-repository"], cwd=folder,
                            what="finding the repository", users_own=True).splitlines()[:2]
    except (GitError, ValueError):
        raise UsageError(f"{option}: {folder} is not inside a git repository") from None
    if bare == "true":
        raise UsageError(f"{option}: {git_dir} is a bare repository")
    try:
        return Path(run(["rev-parse", "--show-toplevel"], cwd=folder, what="finding the work tree",
                        users_own=True).strip())
    except GitError:  # inside the .git directory of a work tree
        raise UsageError(f"{option}: {git_dir} is a bare repository") from None


def commit_folder(top: Path, folder: Path, message: str) -> str:
    """Everything under folder staged (new files too) and committed, nothing else; the new
    commit's SHA. GitError when git or one of the user's hooks refuses."""
    folder = folder.absolute()
    run(["add", "--all", "--", str(folder)], cwd=top, what=f"staging {folder}", users_own=True)
    run(["commit", "-m", message, "--", str(folder)], cwd=top, what=f"committing {folder}", users_own=True)
    return run(["rev-parse", "--verify", "HEAD"], cwd=top, what="reading HEAD", users_own=True).strip()


def unstage(top: Path, folder: Path) -> None:
    """What commit_folder staged, taken out of the index again (the files stay as they are)."""
    try:
        run(["reset", "-q", "--", str(folder.absolute())], cwd=top, what=f"unstaging {folder}", users_own=True)
    except GitError:
        pass  # no HEAD yet: nothing was committed before, the index entries are harmless
# ---------------------------------------------------------------- offline bundles (vllm-lock bundle)


def has_commits(cache: Path, url: str, commits: Sequence[str]) -> bool:
    """Whether url's mirror already holds every one of commits (no network)."""
    path = mirror_path(cache, url)
    if not (path / "HEAD").exists():
        return False
    with mirror_lock(cache, url):
        repo = _open_mirror(path)
        return all(_has_commit(repo, c) for c in commits)


def submodules_at(cache: Path, url: str, commit: str) -> list[tuple[str, str]]:
    """(url, commit) of each git submodule of url@commit, read from the mirror (which holds it)."""
    from vllm_lock import gitmodules

    with mirror_lock(cache, url) as path:
        config, links = gitmodules_listing(_open_mirror(path), commit)
    found = gitmodules.submodules(url, gitmodules.parse_config(config), gitmodules.parse_gitlinks(links))
    return [(sub.url, sub.commit) for sub in found]


def bundle_repository(cache: Path, url: str, commits: Sequence[str], out: Path, *, with_tags: bool) -> tuple[str, ...]:
    """A `git bundle` of url's mirror at out holding each commit (as refs/vllm-lock/<commit>,
    created in the mirror too, so that nothing prunes it) and, with_tags, every tag merged into
    one of them (setuptools-scm derives vLLM's version from them). Returns the commits at which
    the bundled history stops (the mirror is shallow there): an import must mark them shallow.
    One pack thread: the same mirror bundles to the same bytes."""
    wanted = sorted({check_commit(c) for c in commits})
    with mirror_lock(cache, url) as path:
        repo = _open_mirror(path)
        where = Path(repo.git_dir)
        refs = []
        for commit in wanted:
            if not _has_commit(repo, commit):
                raise UnknownRefError(f"commit {commit} is not in the mirror of {url}")
            run(["update-ref", f"refs/vllm-lock/{commit}", commit], cwd=where, what="naming a bundled commit")
            refs.append(f"refs/vllm-lock/{commit}")
        if with_tags:
            tags: set[str] = set()
            for commit in wanted:
                out_refs = run(["for-each-ref", f"--merged={commit}", "--format=%(refname)", "refs/tags"], cwd=where,
                               what="listing tags")
                tags.update(line.strip() for line in out_refs.splitlines() if line.strip())
            refs.extend(sorted(tags))
        shallow: tuple[str, ...] = ()
        boundary = where / "shallow"
        if boundary.is_file():
            cut = set(boundary.read_text().split())
            reachable = set(run(["rev-list", "--end-of-options", *wanted], cwd=where, what="listing history").split())
            shallow = tuple(sorted(cut & reachable))
        out.parent.mkdir(parents=True, exist_ok=True)
        run(["-c", "pack.threads=1", "bundle", "create", "--quiet", str(out), *refs], cwd=where,
            what=f"bundling {url}")
        return shallow


def import_bundle(cache: Path, url: str, bundle: Path, commits: Sequence[str], shallow: Sequence[str]) -> None:
    """Fetch commits (refs/vllm-lock/<commit>) and the tags the mirror lacks from a git bundle
    file into url's mirror. Shallow commits the mirror does not hold yet are marked shallow first
    (the bundle's history stops there); git checks every object it receives. A failed fetch
    leaves the mirror's shallow list as it was."""
    wanted = sorted({check_commit(c) for c in commits})
    with mirror_lock(cache, url) as path:
        repo = _open_mirror(path)
        if all(_has_commit(repo, c) for c in wanted):
            return
        where = Path(repo.git_dir)
        heads = run(["bundle", "list-heads", "--", str(bundle)], cwd=where, what=f"reading the bundle of {url}")
        listed = {}
        for line in heads.splitlines():
            sha, _, name = line.partition(" ")
            listed[name.strip()] = sha
        refspecs = []
        for commit in wanted:
            if listed.get(f"refs/vllm-lock/{commit}") != commit:
                raise GitError(f"the bundle of {url} does not hold commit {commit}")
            refspecs.append(f"refs/vllm-lock/{commit}:refs/vllm-lock/{commit}")
        have_tags = set(run(["for-each-ref", "--format=%(refname)", "refs/tags"], cwd=where,
                            what="listing tags").split())
        # tags land in a private namespace first: only those merged into a wanted commit become
        # tags of the mirror (a tag the bundle puts on another lock's commit would set that lock's
        # version through setuptools-scm)
        staged_tags = {name: f"refs/vllm-lock-import/{name.removeprefix('refs/')}" for name in sorted(listed)
                       if name.startswith("refs/tags/") and name not in have_tags and _plain_tag_ref(name)}
        refspecs += [f"{name}:{private}" for name, private in staged_tags.items()]
        boundary = where / "shallow"
        before = boundary.read_text() if boundary.is_file() else None
        new_cuts = [check_commit(c) for c in sorted(set(shallow)) if not _has_commit(repo, c)]
        if new_cuts:
            boundary.write_text((before or "") + "".join(f"{c}\n" for c in new_cuts))
        try:
            run(["fetch", "--quiet", "--no-tags", "--", str(bundle), *refspecs], cwd=where,
                what=f"fetching {url} from the bundle")
            if new_cuts:  # only cuts the wanted history reaches stay shallow marks
                reached = set(run(["rev-list", *wanted], cwd=where, what="listing the imported history").split())
                kept = [c for c in new_cuts if c in reached]
                boundary.write_text((before or "") + "".join(f"{c}\n" for c in kept))
                if not boundary.read_text():
                    boundary.unlink()
        except GitError:
            if before is None:
                boundary.unlink(missing_ok=True)
            else:
                boundary.write_text(before)
            raise
        finally:
            _adopt_merged_tags(where, staged_tags, wanted)
        if missing := [c for c in wanted if not _has_commit(repo, c)]:
            raise GitError(f"the bundle of {url} did not bring commit {missing[0]}")


def _adopt_merged_tags(where: Path, staged: dict[str, str], wanted: Sequence[str]) -> None:
    """Tags fetched into the private namespace: those merged into a wanted commit become tags,
    every private ref is deleted."""
    present = set(run(["for-each-ref", "--format=%(refname)", "refs/vllm-lock-import/"], cwd=where,
                      what="listing imported tags").split())
    merged: set[str] = set()
    for commit in wanted:
        merged |= set(run(["for-each-ref", "--format=%(refname)", "--merged", commit, "refs/vllm-lock-import/"],
                          cwd=where, what="listing imported tags").split())
    for name, private in staged.items():
        if private in merged:
            run(["update-ref", name, private], cwd=where, what=f"adopting {name}")
    for private in present:
        run(["update-ref", "-d", private], cwd=where, what="dropping imported refs")


def _plain_tag_ref(name: str) -> bool:
    try:
        check_ref(name.removeprefix("refs/tags/"))
    except UnknownRefError:
        return False
    return True


