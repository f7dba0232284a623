"""bundle: a lock's offline closure in one file; and its import before `install --from-bundle`.

`vllm-lock bundle LOCK -o FILE.tar` writes every locked wheel (from the content-addressed store,
fetched first where missing), the vLLM source at the locked commit and every external source at
its pinned commit (their git submodules too) as `git bundle`s of the cache's mirrors, the Rust
crates where the lock has them, the built vLLM wheel with its signed entry where a configured
binary cache has one for the lock's build identity, and a manifest last (bundle_manifest.py names
the members).

`install LOCK --from-bundle FILE` first imports the bundle into the cache: wheels and crates into
the store by sha256, the git bundles into the mirrors; then the normal install runs and finds
everything there, so it needs no network; a bundled built vLLM goes into a file:// binary cache
in the cache (bundled_cache) that the install substitutes from first, its entry's signature
checked against the install's trusted keys. The bundle is untrusted: every member is checked
against the manifest and every wheel and crate against the lock's sha256 before anything enters
the cache (shell/bundle_file.py reads it)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vllm_lock import bundle_manifest as bm
from vllm_lock import codec
from vllm_lock.actions.substitute import NO_CACHES, CacheSettings
from vllm_lock.build_identity import build_identity
from vllm_lock.errors import (
    BundleError,
    CacheEntryError,
    IntegrityError,
    LockInvalidError,
    OutputError,
    UnknownRefError,
    UnreachableError,
    UsageError,
)
from vllm_lock.mirrors import NO_MIRRORS, Mirrors
from vllm_lock.model import Lock
from vllm_lock.progress import Reporter
from vllm_lock.shell import bundle_file, cargo, lockfiles, mirroring
from vllm_lock.shell import git as git_shell
from vllm_lock.shell.store import Store, cache_root

DEFAULT_CRATE_REGISTRY = "https://static.crates.io/crates"
MAX_SUBMODULE_DEPTH = 4  # as shell/staging.py stages them


@dataclass(frozen=True, kw_only=True)
class BundleRequest:
    lock: str
    output: Path
    cache: Path = field(default_factory=cache_root)
    crate_registry: str = DEFAULT_CRATE_REGISTRY
    mirrors: Mirrors = NO_MIRRORS
    caches: CacheSettings = NO_CACHES  # binary caches: the built vLLM of the lock's identity, when one has it


@dataclass(frozen=True, kw_only=True)
class BundleResult:
    path: Path
    members: int
    size: int
    seconds: float


def bundle(request: BundleRequest, reporter: Reporter) -> BundleResult:
    started = time.monotonic()
    lock, path = lockfiles.read(request.lock)
    lockfiles.check_writable(request.output)
    store = Store(request.cache)
    files: list[tuple[str, Path]] = [(bm.LOCK_MEMBER, path)]
    work = Path(tempfile.mkdtemp(dir=request.output.absolute().parent, prefix=f".{request.output.name}.git-"))
    try:
        with mirroring.using(request.mirrors):
            with reporter.step("wheels"):
                for package in lock.packages:
                    for wheel in package.wheels:
                        store.fetch(wheel.url, wheel.filename, expected_sha256=wheel.sha256, expected_size=wheel.size)
                        files.append((bm.wheel_member(wheel.sha256, wheel.filename),
                                      store.path(wheel.sha256, wheel.filename)))
                reporter.say(f"    {len(files) - 1} wheels")
            if lock.rust is not None:
                with reporter.step("crates"):
                    fetched = cargo.fetch(lock.rust.crates, request.crate_registry, store, reporter.say)
                    for crate, crate_path in fetched.items():
                        files.append((bm.crate_member(crate.checksum, crate_path.name), crate_path))
            with reporter.step("sources"):
                repositories = []
                for url, commits in sorted(source_closure(lock, request.cache, fetch=True).items()):
                    member = bm.git_member(url)
                    out = work / member.removeprefix("git/")
                    shallow = git_shell.bundle_repository(request.cache, url, sorted(commits), out,
                                                          with_tags=url == lock.vllm.url)
                    files.append((member, out))
                    repositories.append(bm.GitRepository(url=url, path=member, commits=tuple(sorted(commits)),
                                                         shallow=shallow))
                    reporter.say(f"    {url}: {len(commits)} commit{'s' if len(commits) != 1 else ''}")
            if request.caches.caches:
                with reporter.step("built vLLM"):
                    files.extend(built_wheel_members(lock, request.caches, work, reporter.say))
            for name, _ in files:  # what the import would refuse is never written
                if problem := bm.path_problem(name):
                    raise UsageError(f"cannot bundle lock {lock.name}: {problem}")
            with reporter.step("write"):
                members = bundle_file.write(request.output, files, _manifest_maker(lock, tuple(repositories)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    size = request.output.stat().st_size
    return BundleResult(path=request.output, members=len(members) + 1, size=size, seconds=time.monotonic() - started)


def _manifest_maker(lock: Lock, repositories: tuple[bm.GitRepository, ...]) -> Callable[[list[bm.Member]], bytes]:
    def make(members: list[bm.Member]) -> bytes:
        written = {m.path: m for m in members}
        for name, (sha256, _) in bm.lock_members(lock).items():
            if written[name].sha256 != sha256:  # the store's copy was damaged since it was hashed
                raise IntegrityError(f"the cached {name.split('/')[-1]} no longer hashes to the lock's sha256:"
                                     f"{sha256}; remove {name.split('/')[1]} from the cache and bundle again")
        return bm.dumps(bm.Manifest(lock_name=lock.name, content_hash=codec.content_hash(lock),
                                    build_identity=build_identity(lock), members=tuple(members),
                                    repositories=repositories))

    return make


def built_wheel_members(
    lock: Lock, caches: CacheSettings, work: Path, say: Callable[[str], None]
) -> list[tuple[str, Path]]:
    """The built vLLM wheel and its signed entry from the first configured binary cache that has
    them for the lock's identity, as `built/<identity>.entry` and `built/<wheel file name>`; none
    when no cache has one. The wheel is checked against the entry's signed size and sha256, the
    entry against the trusted keys where some are configured (else it must carry a signature:
    the install that substitutes from the bundle checks it against its own trusted keys)."""
    from vllm_lock import cache_entry
    from vllm_lock.actions import substitute

    if not caches.caches:
        return []
    identity = cache_entry.wheel_build_identity(lock)
    built = work / "built"
    built.mkdir(parents=True, exist_ok=True)

    def fetched(offer: substitute.Offer) -> tuple[substitute.Offer, Path]:
        if caches.trusted:
            substitute.trusted_signer(offer.entry, offer.origin, caches.trusted)
        elif not offer.entry.signatures:
            raise CacheEntryError(f"{offer.origin}: unsigned")
        wheel = built / offer.entry.wheel
        substitute.fetch_verified(offer.backend, offer.entry, wheel)
        return offer, wheel

    hit = substitute.first_taken(caches.caches, identity, say, fetched)
    if hit is None:
        say(f"    no configured cache has a built vLLM of identity {identity}: the bundle carries none")
        return []
    offer, wheel = hit
    name = offer.entry.name
    (built / name).write_bytes(offer.data)
    say(f"    built vLLM {offer.entry.wheel} ({name}) from {offer.url}")
    return [(_built(name), built / name), (_built(offer.entry.wheel), wheel)]


def _built(name: str) -> str:
    return f"built/{name}"


def bundled_cache(cache: Path) -> Path:
    """The binary cache (a file:// layout) that install --from-bundle fills from a bundle's built
    members and substitutes from first."""
    return cache / "bundled-builds"


def bundled_cache_url(lock: Lock, cache: Path) -> str | None:
    """file:// URL of the bundled builds when they hold an entry for the lock's identity."""
    from vllm_lock import cache_entry

    where = bundled_cache(cache)
    if not (where / cache_entry.entry_name(cache_entry.wheel_build_identity(lock))).is_file():
        return None
    return f"file://{where.absolute()}"


def import_built_members(lock: Lock, cache: Path, unpacked: dict[str, Path]) -> bool:
    """The `built/*` members (already checked against the manifest) into bundled_cache(cache),
    the wheel first and the entry last, as a push writes them. Their shape is checked here (one
    entry of this lock's identity, its wheel with the signed size and sha256, nothing else); the
    signature is checked by the install's substitute step against its trusted keys."""
    from vllm_lock import cache_entry
    from vllm_lock.shell import cache_backends

    if not unpacked:
        return False
    identity = cache_entry.wheel_build_identity(lock)
    name = cache_entry.entry_name(identity)
    entry_path = unpacked.get(_built(name))
    if entry_path is None:
        raise BundleError(f"the bundle's built members {sorted(unpacked)} hold no entry {name} of the lock's identity")
    try:
        with entry_path.open("rb") as stream:
            data = stream.read(cache_entry.MAX_ENTRY_BYTES + 1)
        entry = cache_entry.parse(data, origin=f"the bundle's {_built(name)}")
    except CacheEntryError as exc:
        raise BundleError(str(exc)) from None
    wheel = unpacked.get(_built(entry.wheel))
    extra = sorted(set(unpacked) - {_built(name), _built(entry.wheel)})
    if wheel is None or extra:
        raise BundleError(f"the bundle's built members must be {name} and the wheel it names, {entry.wheel}; "
                          f"found {sorted(unpacked)}")
    from vllm_lock.shell.files import sha256_and_size

    sha256, size = sha256_and_size(wheel)
    if (sha256, size) != (entry.wheel_sha256, entry.wheel_size):
        raise BundleError(f"the bundle's {_built(entry.wheel)} is not the wheel its entry signs "
                          f"({size} bytes, sha256 {sha256})")
    backend = cache_backends.open_backend(f"file://{bundled_cache(cache).absolute()}")
    backend.write(entry.wheel_path, wheel)
    backend.write(name, data)
    return True


# ---------------------------------------------------------------- sources


def source_closure(lock: Lock, cache: Path, *, fetch: bool) -> dict[str, set[str]]:
    """{url: commits} of every repository an install of the lock reads: vLLM at its commit, each
    external source at its pin and, recursively, their git submodules (read from the mirrors).
    fetch: bring what the mirrors lack first (network); else what they lack is left out."""
    repos: dict[str, set[str]] = {}
    if fetch:
        git_shell.update_mirror(cache, lock.vllm.url, lock.vllm.commit)
    repos.setdefault(lock.vllm.url, set()).add(lock.vllm.commit)
    pending = [(s.repository, s.commit, 0) for s in lock.external_sources]
    while pending:
        url, commit, depth = pending.pop()
        if commit in repos.get(url, set()):
            continue
        if fetch:
            git_shell.fetch_commit(cache, url, commit)
        elif not git_shell.has_commits(cache, url, [commit]):
            continue
        repos.setdefault(url, set()).add(commit)
        if depth < MAX_SUBMODULE_DEPTH:
            pending.extend((sub, at, depth + 1) for sub, at in git_shell.submodules_at(cache, url, commit))
    return repos


# ---------------------------------------------------------------- import (install --from-bundle)


def import_bundle(bundle_path: Path, lock: Lock, cache: Path, reporter: Reporter) -> None:
    """The bundle's contents in the cache, every byte checked first; BundleError (exit 8) for a
    bad bundle, WrongBundleError (exit 2) for another lock's: then nothing entered the cache."""
    reporter.say(f"importing bundle {bundle_path}")
    store = Store(cache)
    incoming = cache / "incoming"
    try:
        incoming.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(dir=incoming, prefix=".bundle-"))
    except OSError as exc:
        raise OutputError(f"cannot unpack the bundle into {incoming}: {exc.strerror or exc}") from None
    try:
        seen, manifest_bytes = bundle_file.read(bundle_path, work)
        manifest = bm.loads(manifest_bytes)
        bm.check_members(manifest, seen)
        if bm.LOCK_MEMBER not in seen:
            raise BundleError(f"the bundle lacks {bm.LOCK_MEMBER}")
        bm.check_against_lock(manifest, lock, codec.content_hash(lock), seen)
        try:
            bundled_lock = codec.loads((work / bm.LOCK_MEMBER).read_text(encoding="utf-8"), origin="the bundle's lock")
        except (LockInvalidError, UnicodeDecodeError) as exc:
            raise BundleError(f"the bundle's {bm.LOCK_MEMBER} is not a valid lock: {exc}") from None
        if codec.content_hash(bundled_lock) != manifest.content_hash:
            raise BundleError(f"the bundle's {bm.LOCK_MEMBER} is not the lock its manifest names")
        added = 0
        for name in sorted(bm.lock_members(lock)):
            _, sha256, filename = name.split("/")
            added += bundle_file.adopt(store, sha256, filename, work / name)
        import_built_members(lock, cache, {p: work / p for p in seen if bm.member_kind(p) == "built"})
        repositories = _import_sources(lock, cache, manifest, work)
        reporter.say(f"    {len(bm.lock_members(lock))} wheels and crates checked ({added} new in the cache), "
                     f"{repositories} repositories")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _import_sources(lock: Lock, cache: Path, manifest: bm.Manifest, work: Path) -> int:
    """Each repository the install reads, fetched from its git bundle into the mirror where the
    mirror lacks the commit; submodules are followed from the imported trees, as staging does."""
    by_url = {r.url: r for r in manifest.repositories}
    pending = [(lock.vllm.url, lock.vllm.commit, 0, False)]
    pending += [(s.repository, s.commit, 0, True) for s in lock.external_sources]
    done: set[tuple[str, str]] = set()
    while pending:
        url, commit, depth, walk = pending.pop()
        if (url, commit) in done:
            continue
        done.add((url, commit))
        if not git_shell.has_commits(cache, url, [commit]):
            entry = by_url.get(url)
            if entry is None or commit not in entry.commits:
                raise BundleError(f"the bundle lacks {url} at {commit[:12]}, which the lock needs")
            try:
                git_shell.import_bundle(cache, url, work / entry.path, entry.commits, entry.shallow)
            except (git_shell.GitError, UnknownRefError, UnreachableError) as exc:
                raise BundleError(f"the bundle's {entry.path} for {url}: {exc}") from None
        if walk and depth < MAX_SUBMODULE_DEPTH:
            pending.extend((sub, at, depth + 1, True) for sub, at in git_shell.submodules_at(cache, url, commit))
    return len({url for url, _ in done})

