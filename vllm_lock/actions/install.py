"""install: a lock -> a verified generation, then an atomic switch of --venv/--src to it.

Steps (each logged with its duration, the whole output also in the generation's logs):
preflight, python, environment (beside [substitute and] wheels), [toolchain,] packages, source, external sources,
strip, build (or, substituted: nothing, the wheel went in with the packages; editable: install
cached build), verify, [push,] receipt, switch; each a function of its own below (the binary
cache's: substitute.py, docs/cache.md). A generation without a receipt is
unfinished: rerunning resumes it (every step is idempotent). Paths: generation.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import errno
import io
import os
import platform
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Generic, TypeVar

import vllm_lock
from vllm_lock import clock, codec, plan, pylock
from vllm_lock import cuda as cuda_rules
from vllm_lock import receipt as receipts
from vllm_lock import rust as rust_rules
from vllm_lock.actions import substitute
from vllm_lock.build_identity import generation_id
from vllm_lock.compiler_cache import CompilerCache, CompilerCacheSession
from vllm_lock.defaults import DEFAULT_SRC, DEFAULT_VENV
from vllm_lock.errors import InstallError, IntegrityError, OutputError, PreflightError, UsageError, VllmLockError
from vllm_lock.generation import Generation, GenerationContainer
from vllm_lock.mirrors import NO_MIRRORS, Mirrors
from vllm_lock.model import BuildRecipe, Lock, PatchedFile, index_url_problem
from vllm_lock.progress import Reporter
from vllm_lock.shell import build as build_shell
from vllm_lock.shell import cargo, cuda_tools, generations, lockfiles, machine, mirroring, proc, sccache
from vllm_lock.shell import uv as uv_shell
from vllm_lock.shell.store import Store, cache_root

T = TypeVar("T")

if TYPE_CHECKING:  # imported where verify runs: an install that finds its generation never does
    from vllm_lock.actions import verify as verify_action

DEFAULT_CRATE_REGISTRY = "https://static.crates.io/crates"
MAX_RUST_SOURCE = 64 << 20  # bytes of one file the Rust frontend's detection reads from the checkout


@dataclass(frozen=True, kw_only=True)
class InstallRequest:
    lock: str
    # the Lock from a signature check's verified bytes: installed as is, the path never re-read
    verified: Lock | None = None
    venv: Path = DEFAULT_VENV
    src: Path = DEFAULT_SRC
    editable: bool | None = None  # None: as the lock says
    max_jobs: int | None = None
    nvcc_threads: int | None = None
    allow_python_download: bool = False
    min_free_disk: int | None = None
    cache: Path = field(default_factory=cache_root)
    skip_gpu_check: bool = False  # a build host building for other machines' GPUs
    crate_registry: str = DEFAULT_CRATE_REGISTRY  # <registry>/<name>/<name>-<version>.crate
    mirrors: Mirrors = NO_MIRRORS  # where bytes come from; never in the lock (docs/mirrors.md)
    compiler_cache: CompilerCache | None = None  # sccache for the build; never in the lock or the identity
    caches: substitute.CacheSettings = substitute.NO_CACHES  # binary caches: substitute, push
    from_bundle: Path | None = None  # an offline bundle imported into the cache first (actions/bundle.py)


@dataclass(frozen=True, kw_only=True)
class InstallResult:
    generation: Path  # the generation's directory
    state: str  # "unchanged", "switched", "installed"
    version: str
    log: Path | None


def install(request: InstallRequest, reporter: Reporter) -> InstallResult:
    if problem := index_url_problem(request.crate_registry):
        raise UsageError(f"--crate-registry: {problem}")
    lock = request.verified if request.verified is not None else lockfiles.read(request.lock)[0]
    editable = lock.build.editable if request.editable is None else request.editable
    container = generations.container_for(request.venv, request.src)
    generations.check_container(container)
    gen = container.generation(str(generation_id(lock, editable)))
    if request.from_bundle is not None:
        from vllm_lock.actions import bundle as bundle_action

        bundle_action.import_bundle(request.from_bundle, lock, request.cache, reporter)
        if (bundled := bundle_action.bundled_cache_url(lock, request.cache)) is not None:
            # the bundle's built vLLM is asked first (no network); its signature is checked as any cache's
            caches = request.caches
            request = dataclasses.replace(request, caches=dataclasses.replace(
                caches, caches=(bundled, *(url for url in caches.caches if url != bundled))))
    try:
        container.root.mkdir(parents=True, exist_ok=True)
        with generations.exclusive(container), mirroring.using(request.mirrors):
            return _install_locked(request, lock, container, gen, editable, reporter)
    except OSError as exc:
        if exc.errno not in _CANNOT_WRITE:
            raise
        where = exc.filename or f"in {container.root}"  # a file object's write names no file
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}; rerun install once it is fixed") from None


# A write that failed for want of space or permission (the disk filled after preflight, a mount
# turned read-only): one line naming the file, not a traceback.
_CANNOT_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _install_locked(
    request: InstallRequest, lock: Lock, container: GenerationContainer, gen: Generation, editable: bool,
    reporter: Reporter,
) -> InstallResult:
    """Holding the install lock: everything that decides what to do is read now, not before
    (another install may have completed or switched this generation meanwhile)."""
    done = receipts.read(gen)
    if done is not None and not gen.src.is_dir():
        # its source is gone (a source store path removed by hand, its link left dangling): the
        # generation is unfinished again and resumed, which makes the source anew
        reporter.say(f"{gen.src} is gone: installing generation {gen.id} again")
        gen.receipt.unlink()
        done = None
    if done is not None and generations.active(container) == gen and generations.links_point_at(container, gen):
        reporter.say(f"{container.venv_link} already holds lock {lock.name} ({done.vllm_version}); nothing to do")
        return InstallResult(generation=gen.root, state="unchanged", version=done.vllm_version, log=None)
    if done is not None and gen.vllm_cli.exists():
        generations.switch(container, gen)
        reporter.say(f"switched {container.venv_link} to the existing generation {gen.id} ({done.vllm_version})")
        return InstallResult(generation=gen.root, state="switched", version=done.vllm_version, log=None)
    if done is not None:
        # complete but damaged: unfinished again before any step touches it, so that a failed
        # rebuild is never taken for a good generation
        gen.receipt.unlink()
    return _build_generation(request, lock, container, gen, editable, reporter)


def _build_generation(
    request: InstallRequest, lock: Lock, container: GenerationContainer, gen: Generation, editable: bool,
    reporter: Reporter,
) -> InstallResult:
    resumed = gen.root.exists()
    gen.logs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    log_path = gen.install_log(stamp)
    try:
        with log_path.open("w", encoding="utf-8") as log:
            rep = reporter.with_log(log)
            rep.say(f"installing lock {lock.name} ({codec.content_hash(lock)}) into generation {gen.root}")
            rep.say(f"full log: {log_path}")
            if resumed:
                rep.say("    resuming an unfinished generation")
            result = _steps(request, lock, container, gen, editable, rep, log, log_path)
            reporter.timings.update(rep.timings)
            return result
    except VllmLockError:
        if not resumed and list(gen.root.iterdir()) == [gen.logs]:
            # refused before any step wrote into it (preflight): no half generation stays behind;
            # the log, whose words the console showed, moves to the cache's logs folder
            kept = request.cache / "logs" / f"install-{gen.id}-{stamp}.log"
            try:
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(log_path, kept)  # the cache may be on another file system
            except OSError:
                pass  # the log stays where it is: the refusal is what the user must see
            else:
                shutil.rmtree(gen.root, ignore_errors=True)
                reporter.say(f"nothing was installed; the log is now {kept}")
        raise


@dataclass(frozen=True, kw_only=True)
class _Run:
    """What every step of one install reads: the request, the lock, where it goes, the log."""

    request: InstallRequest
    lock: Lock
    gen: Generation
    store: Store
    rep: Reporter
    log: IO[str]
    log_path: Path


def _steps(
    request: InstallRequest, lock: Lock, container: GenerationContainer, gen: Generation, editable: bool,
    rep: Reporter, log: IO[str], log_path: Path,
) -> InstallResult:
    run = _Run(request=request, lock=lock, gen=gen, store=Store(request.cache), rep=rep, log=log, log_path=log_path)
    with rep.step("preflight"):
        facts, jobs = preflight(run, container)
    if facts.python_found is None:
        with rep.step("python"):
            uv_shell.install_python(lock.target.python, request.cache, log, rep.line)
    uv_env = uv_shell.uv_env(request.cache, offline=True)
    hit: substitute.Substitution | None = None
    # the venv is made beside the cache lookup and the staging of the wheels, whose lines stay live
    environment = _Beside(run, lambda beside: _environment_step(beside, uv_env, facts.python_found))
    with environment.joined_on_failure(rep):
        if request.caches.caches:
            with rep.step("substitute"):
                hit = substitute.step(request.caches, lock, editable, gen.dist, rep.say, run.store)
        with rep.step("wheels"):
            # a substituted wheel goes in with the locked packages: one uv call
            stage_packages(run, vllm_wheel=hit if hit is not None and not editable else None)
    environment.join(rep)
    if request.caches.caches and (hit is None or editable):
        with rep.step("toolchain"):  # setup.py runs: a build, or an editable install of the cached modules
            facts = check_toolchain(run, facts, must_build=hit is None)
    # a substituted non-editable install builds nothing from its source: a shared read-only store path
    stored_source = hit is not None and not editable
    sources = _Beside(run, _then_verify_imported(_stored_source_steps if stored_source else _source_steps))
    with sources.joined_on_failure(rep), rep.step("packages"):
        install_packages(run, uv_env)
    external_dirs = sources.join(rep)
    if not stored_source:
        with rep.step("strip"):
            strip_source(run)
    env = build_environment(run, facts, jobs, uv_env, external_dirs)
    compiler_cache: CompilerCacheSession | None = None
    if hit is not None and editable:
        with rep.step("install cached build"):
            build_shell.build_vllm(
                python=str(gen.python), src=gen.src, env=substitute.precompiled_env(hit, env), editable=True,
                dist=gen.dist, log=log, on_line=build_shell.build_filter(rep.line), log_path=log_path,
            )
    elif hit is None:
        cache_session = contextlib.nullcontext(None) if request.compiler_cache is None else sccache.running(
            sccache.find_sccache(os.environ), request.compiler_cache, basedir=gen.root, work=gen.root / "sccache",
            env=env)
        with rep.step("build"), cache_session as compiler_cache:
            if compiler_cache is not None:
                env.update(compiler_cache.build_env)
                rep.say(f"    compiler cache: sccache {compiler_cache.version} at {compiler_cache.cache.describe()}")
            build(run, env, editable)
        if compiler_cache is not None:
            stats = compiler_cache.stats
            rep.say(f"    compiler cache: {stats.describe() if stats else compiler_cache.problem}")
    with rep.step("verify"):
        version, found = verify_step(run, env)
    # a substitution records the toolchain its entry says the build used
    tools = receipt_toolchain(lock, facts.toolchain, gen.venv_bin) if hit is None else hit.toolchain()
    if hit is None and request.caches.push and not editable:
        with rep.step("push"):
            substitute.push_built(
                request.caches, lock, gen.dist, version=version, cubins=sorted(found),
                toolchain={n: t["version"] for n, t in tools.items()},
                build_seconds=rep.timings.get("build", 0.0), say=rep.say,
            )
    with rep.step("receipt"):
        receipt = make_receipt(lock, gen, editable, version, env, jobs, rep.timings, log_path, found,
                               toolchain=tools, gpus=facts.gpus, compiler_cache=compiler_cache)
        if hit is not None:
            receipt = dataclasses.replace(receipt, substituted_from=hit.origin())
        if stored_source:
            receipt = dataclasses.replace(receipt, source="store")
        receipts.write(gen, receipt)
    with rep.step("switch"):
        generations.switch(container, gen)
        rep.say(f"    {container.venv_link} -> {gen.venv}")
        rep.say(f"    {container.src_link} -> {gen.src}")
    return InstallResult(generation=gen.root, state="installed", version=version, log=log_path)


def _then_verify_imported(steps: Callable[[_Run], T]) -> Callable[[_Run], T]:
    """steps, then the verify step's modules imported: beside the uv sync, while this process only
    waits for uv (~30 ms of imports taken off the path to the switch)."""

    def steps_then_import(run: _Run) -> T:
        result = steps(run)
        from vllm_lock.actions import verify  # noqa: F401
        from vllm_lock.shell import git  # noqa: F401

        return result

    return steps_then_import


def _environment_step(run: _Run, uv_env: dict[str, str], python: str | None) -> None:
    with run.rep.step("environment"):
        create_environment(run, uv_env, python)


def _source_steps(run: _Run) -> dict[str, Path]:
    with run.rep.step("source"):
        if run.gen.src.is_symlink():  # a substituted attempt's store link: this one needs its own checkout
            run.gen.src.unlink()
        check_out_source(run)
    return _external_steps(run)


def _stored_source_steps(run: _Run) -> dict[str, Path]:
    """Nothing is built: no external source trees or Rust crates to stage either."""
    with run.rep.step("source"):
        use_stored_source(run)
    return {}


def _external_steps(run: _Run) -> dict[str, Path]:
    external_dirs: dict[str, Path] = {}
    if run.lock.external_sources or run.lock.rust is not None:
        with run.rep.step("external sources"):
            external_dirs = stage_external_sources(run)
    return external_dirs


@dataclass
class _Held(Reporter):
    """A reporter whose output waits: what is said, each line of a subprocess's output, and what
    the subprocess runner writes to the log (log_writer), in order."""

    held: list[tuple[str, str]] = field(default_factory=list)  # ("say" | "line" | "log", text)

    def say(self, message: str) -> None:
        self.held.append(("say", message))

    def line(self, text: str) -> None:
        self.held.append(("line", text))

    def log_writer(self) -> IO[str]:
        return _HeldLog(self.held)


class _HeldLog(io.StringIO):
    """The log as a beside-thread's steps see it: what they write waits with their other output,
    so that the log shows them as one block once they are joined, not scattered under the steps
    the main thread ran meanwhile."""

    def __init__(self, held: list[tuple[str, str]]) -> None:
        super().__init__()
        self._held = held

    def write(self, text: str) -> int:
        self._held.append(("log", text))
        return len(text)


class _Beside(Generic[T]):
    """Steps run in a thread beside the main thread's, their lines (what they say, a subprocess's
    output) held back and written after, in order, as if they had run after."""

    def __init__(self, run: _Run, steps: Callable[[_Run], T]) -> None:
        self._rep = _Held(quiet=True)
        self._log = run.log
        self._result: T | None = None
        self._error: BaseException | None = None
        self._ended = threading.Event()
        beside = dataclasses.replace(run, rep=self._rep, log=self._rep.log_writer())
        self._thread = threading.Thread(target=self._run, args=(beside, steps), daemon=True)
        self._thread.start()

    def _run(self, run: _Run, steps: Callable[[_Run], T]) -> None:
        try:
            self._result = steps(run)
        except BaseException as exc:  # handed to the main thread by join
            self._error = exc
        finally:
            self._ended.set()

    def join(self, rep: Reporter, *, reraise: bool = True, cancel: bool = False) -> T:
        """The steps' result once they end; cancel (the main thread was interrupted): their programs
        killed first. So are they when this wait is interrupted: each program leads a session of its
        own, which Ctrl-C does not reach, and none may go on writing into the generation after us."""
        interrupted: BaseException | None = None
        try:
            if cancel:
                self._cancel()
            # not Thread.join: interrupted, it takes the thread for ended (Python 3.11's bpo-45274 mend)
            self._ended.wait()
        except BaseException as exc:
            self._cancel()
            interrupted = exc
        for kind, text in self._rep.held:
            if kind == "log":
                self._log.write(text)
            else:
                (rep.line if kind == "line" else rep.say)(text)
        self._log.flush()
        rep.timings.update(self._rep.timings)
        if interrupted is not None:
            raise interrupted
        if self._error is not None and reraise:
            raise self._error
        return self._result  # type: ignore[return-value]  # set when the steps returned

    @contextlib.contextmanager
    def joined_on_failure(self, rep: Reporter) -> Iterator[None]:
        """The main thread's steps beside these: when they fail, these are joined (their programs
        killed first on an interrupt) before the failure goes on; when they succeed, join is the caller's."""
        try:
            yield
        except BaseException as failure:
            self.join(rep, reraise=False, cancel=isinstance(failure, KeyboardInterrupt))
            raise

    def _cancel(self) -> None:
        """Every program of this process killed until the steps end (one may start the next, or
        try again, when the one before is killed)."""
        while True:
            proc.kill_own_sessions()
            if self._ended.wait(0.05):
                return


def preflight(run: _Run, container: GenerationContainer) -> tuple[plan.MachineFacts, plan.Jobs]:
    """Every reason this machine cannot install the lock, refused at once; MAX_JOBS chosen. With
    binary caches configured the build toolchain is not looked at yet: check_toolchain does, once
    setup.py has to run (a container without compilers can substitute)."""
    request, lock, rep = run.request, run.lock, run.rep
    generations.check_writable_dir(request.cache, "the cache, VLLM_LOCK_CACHE")
    may_substitute = bool(request.caches.caches)
    facts = machine_facts(lock, container.root, request.cache, check_gpus=not request.skip_gpu_check,
                          toolchain=not may_substitute)
    for note in plan.preflight_notes(lock, facts):
        rep.say(f"    warning: {note}")
    problems = plan.preflight_problems(lock, facts, min_free_disk=request.min_free_disk, build_tools=not may_substitute)
    if facts.python_found is None and request.allow_python_download:
        problems = [p for p in problems if not p.startswith("Python ")]
    if problems:
        raise PreflightError("; ".join(problems))
    jobs = plan.choose_jobs(lock.build, facts, max_jobs=request.max_jobs, nvcc_threads=request.nvcc_threads)
    rep.say(f"    MAX_JOBS={jobs.max_jobs} NVCC_THREADS={jobs.nvcc_threads} ({jobs.reason})")
    if may_substitute:
        rep.say("    toolchain: looked at only if no cache gives the build")
    else:
        rep.say("    toolchain: " + ", ".join(t.describe() for t in facts.toolchain))
    if facts.gpus is not None and facts.gpus.gpus:
        gpus = ", ".join(f"{g.name} (sm_{g.capability[0]}{g.capability[1]})" for g in facts.gpus.gpus)
        rep.say(f"    GPUs: {gpus}; driver {facts.gpus.driver_version} (CUDA {_cuda(facts.gpus.driver_cuda)})")
    return facts, jobs


def check_toolchain(run: _Run, facts: plan.MachineFacts, *, must_build: bool) -> plan.MachineFacts:
    """The build toolchain, looked at once setup.py has to run; when no cache gave the build
    (must_build), what preflight would have refused is refused now."""
    lock = run.lock
    nvcc = machine.find_nvcc(os.environ) if plan.is_cuda(lock) else None
    facts = dataclasses.replace(facts, nvcc=nvcc, nvcc_version=machine.nvcc_version(nvcc) if nvcc else None,
                                toolchain=plan.build_tools(lock, machine.toolchain(os.environ)))
    run.rep.say("    toolchain: " + ", ".join(t.describe() for t in facts.toolchain))
    if must_build and (problems := plan.build_toolchain_problems(lock, facts)):
        raise PreflightError("no cache gave the build, and this machine cannot build it: " + "; ".join(problems))
    return facts


def create_environment(run: _Run, uv_env: dict[str, str], python: str | None) -> None:
    """The venv, from the interpreter preflight found (uv need not look for one again), or from
    the Python uv just installed."""
    uv_shell.run_uv(uv_shell.venv_argv(python or run.lock.target.python, run.gen.venv), env=uv_env,
                       what="creating the venv", log=run.log, on_line=run.rep.line)
    wanted = run.lock.target.python
    made = uv_shell.venv_python_version(run.gen.venv)
    if made is None or (made != wanted and not made.startswith(f"{wanted}.")):
        # a remembered interpreter that is another Python now (its memo rewritten by hand, say)
        uv_shell.forget_python(wanted, run.request.cache)
        raise PreflightError(f"{python or wanted} made a Python {made or '(unknown)'} environment, the lock is for "
                             f"Python {wanted}; the remembered interpreter is forgotten: rerun to look again")


def stage_packages(run: _Run, *, vllm_wheel: substitute.Substitution | None = None) -> None:
    """Every locked wheel staged from the cache and named in the generation's pylock.toml: uv
    picks the best one for this machine. A substituted vLLM wheel (verified) is named there too."""
    lock, gen = run.lock, run.gen
    from vllm_lock.shell import staging  # not imported by an install that finds its generation in place

    staged = staging.stage_wheels(lock, run.store, gen.wheels, run.rep.say)
    text = pylock.to_pylock(lock, local_path=lambda _, w: str(staged[w.sha256, w.filename]))
    if vllm_wheel is not None:
        text += vllm_wheel.pylock_package()
    gen.pylock.write_text(text, encoding="utf-8")


def install_packages(run: _Run, uv_env: dict[str, str]) -> None:
    """The staged wheels (stage_packages) into the generation's venv: one uv call."""
    uv_shell.run_uv(uv_shell.sync_argv(run.gen.venv, run.gen.pylock), env=uv_env,
                    what="installing the locked packages", log=run.log, on_line=run.rep.line)


def check_out_source(run: _Run) -> None:
    from vllm_lock.shell import git as git_shell  # gitpython: not for an install that finds its generation

    git_shell.checkout(run.lock, run.request.cache, run.gen.src, run.rep.say)
    check_rust_frontend(run.lock, run.gen.src)


def use_stored_source(run: _Run) -> None:
    """gen.src a link to the lock's stripped source tree in the source store (made there once,
    from the mirror at the commit, stripped and checked as a checkout of its own would be), its
    patched files checked against the lock on every use; the Rust frontend too (a lock's question)."""
    from vllm_lock import source_store as source_rules
    from vllm_lock.shell import source_store

    lock, say = run.lock, run.rep.say
    stored = source_store.ensure(run.request.cache, source_rules.source_key(lock),
                                 lambda partial: make_stored_source(run, partial))
    if stored.removed_partial:
        say("    removed the unfinished store path an interrupted install left")
    found = source_store.file_digests(stored.path, (f.path for f in lock.layout.patched_files))
    if altered := source_rules.altered_patched_file(lock, found):
        path, got, want = altered
        raise IntegrityError(
            f"the source store path {stored.path} was altered: {path} "
            f"{'is missing' if got is None else f'has sha256 {got[:12]}'}, the lock says {want[:12]}; "
            f"delete it (chmod -R u+w {stored.path} && rm -rf {stored.path}) and rerun install"
        )
    if not stored.made:  # the tree's Rust facts as read when it was made (~0.1 s to read again on vLLM)
        kept = source_store.read_rust_facts(stored.path)
        require_rust_frontend(lock, rust_facts(stored.path) if kept is None else kept.facts)
    source_store.link(run.gen.src, stored.path)
    say(f"    {'made' if stored.made else 'reused'} the stripped source {stored.path} (read-only, shared)")


def make_stored_source(run: _Run, tree: Path) -> None:
    """A new store path's tree: the checkout and the stripping a build's own checkout gets, the
    script run by this interpreter (as resolve ran it: the tree belongs to no one environment)."""
    import sys

    from vllm_lock import source_layout
    from vllm_lock.shell import git as git_shell
    from vllm_lock.shell import source_store
    from vllm_lock.shell.stripping import run_stripping_script, snapshot

    lock = run.lock
    git_shell.checkout(lock, run.request.cache, tree, run.rep.say)
    facts = rust_facts(tree)
    require_rust_frontend(lock, facts)
    source_store.write_rust_facts(tree, facts)
    before = snapshot(tree)
    result = run_stripping_script(tree, lock.layout.stripping_argv, python=sys.executable, log=run.log)
    if not result.ok:
        raise InstallError(f"{lock.layout.stripping_script} failed: {result.tail(1)}")
    check_patched(lock, source_layout.patched_files(before, snapshot(tree)))


def stage_external_sources(run: _Run) -> dict[str, Path]:
    """The external CMake sources at their locked commits and the Rust crates, vendored."""
    lock, gen = run.lock, run.gen
    from vllm_lock.shell import staging

    external_dirs = staging.stage(lock.external_sources, run.request.cache, gen, run.rep.say)
    if lock.rust is not None:
        crates = cargo.fetch(lock.rust.crates, run.request.crate_registry, run.store, run.rep.say)
        cargo.vendor(crates, gen.rust_vendor)
        cargo.write_cargo_home(gen.cargo_home, gen.rust_vendor)
    return external_dirs


def strip_source(run: _Run) -> None:
    """The commit's own stripping script, its result checked against the lock's patched files."""
    lock, src = run.lock, run.gen.src
    from vllm_lock import source_layout
    from vllm_lock.shell.stripping import run_stripping_script, snapshot

    before = snapshot(src)
    result = run_stripping_script(src, lock.layout.stripping_argv, python=str(run.gen.python), log=run.log)
    if not result.ok:
        raise InstallError(f"{lock.layout.stripping_script} failed: {result.tail(1)}")
    check_patched(lock, source_layout.patched_files(before, snapshot(src)))


def build_environment(
    run: _Run, facts: plan.MachineFacts, jobs: plan.Jobs, uv_env: dict[str, str], external_dirs: dict[str, Path]
) -> dict[str, str]:
    env = plan.build_env(run.lock, jobs, uv_env, external_dirs=external_dirs)
    env.update(rust_env(run.lock, facts, run.gen, env.get("PATH", os.environ.get("PATH", ""))))
    env.pop("UV_OFFLINE", None)
    env["UV_OFFLINE"] = "1"
    return env


def build(run: _Run, env: dict[str, str], editable: bool) -> None:
    lock, gen, rep = run.lock, run.gen, run.rep
    shown = ("VLLM_TARGET_DEVICE", "TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "NVCC_THREADS", "SOURCE_DATE_EPOCH",
             "VLLM_REQUIRE_RUST_FRONTEND", "CARGO_NET_OFFLINE", "CARGO_HOME")
    for key in (*shown, "CMAKE_ARGS", *(s.override for s in lock.external_sources)):
        if key in env:
            rep.say(f"    {key}={env[key]}")
    build_shell.build_vllm(
        python=str(gen.python), src=gen.src, env=env, editable=editable, dist=gen.dist, log=run.log,
        on_line=build_shell.build_filter(rep.line), log_path=run.log_path,
    )


def verify_step(run: _Run, env: dict[str, str]) -> tuple[str, set[str]]:
    from vllm_lock.actions import verify as verify_action

    lock, gen, rep = run.lock, run.gen, run.rep
    version, found, report = verify_built(lock, gen.venv, gen.src, env)
    rep.say(f"    {version_check(lock)}: {version}")
    if found:
        rep.say(f"    cubins: {', '.join(sorted(found))}")
    for note in verify_action.require_built_requirements(report):
        rep.say(f"    {note}")
    return version, found


def check_patched(lock: Lock, got: tuple[PatchedFile, ...]) -> None:
    want = {f.path: f.sha256_after for f in lock.layout.patched_files}
    have = {f.path: f.sha256_after for f in got}
    if want != have:
        differing = sorted(set(want.items()) ^ set(have.items()))
        path = differing[0][0] if differing else "?"
        raise IntegrityError(
            f"the stripping script's result differs from the lock at {path} "
            f"(lock: {sorted(want)}, got: {sorted(have)})"
        )


def version_check(lock: Lock) -> str:
    """How the built version is read. An `empty` build's `vllm --version` cannot start ("Failed to
    infer device type": no device to run on), so it is read from `import vllm` and the installed
    distribution's metadata, which is what `vllm --version` prints."""
    return "import vllm + importlib.metadata" if lock.build.target_device == "empty" else "vllm --version"


def built_version(lock: Lock, venv: Path) -> tuple[bool, str]:
    if lock.build.target_device == "empty":
        return build_shell.imported_vllm_version(venv / "bin" / "python")
    return build_shell.vllm_version(venv / "bin")


def verify_built(
    lock: Lock, venv: Path, src: Path, env: dict[str, str]
) -> tuple[str, set[str], verify_action.Report]:
    """The built version consistent with the commit; the exact package set; for CUDA, every arch.
    The report also holds the built vLLM's own requirements checked against the environment: the
    caller decides what an unmet one means."""
    from vllm_lock.actions import verify as verify_action
    from vllm_lock.shell import git as git_shell

    with ThreadPoolExecutor(max_workers=1) as pool:  # vLLM imported in its process while we read
        imported = pool.submit(built_version, lock, venv)
        tag = git_shell.exact_tag(src)
        report = verify_action.inspect_packages(lock, venv, check_files=False)
        ok, version = imported.result()
    if not ok:
        raise InstallError(f"{version_check(lock)} failed in {venv}: {version}")
    problem = plan.version_problem(version, lock.vllm.commit, tag)
    if problem:
        raise InstallError(problem)
    if drift := report.package_drift:
        raise InstallError(f"the installed environment does not match the lock: {drift}")
    if rust_problems := verify_action.rust_artifact_problems(lock, venv, src):
        raise InstallError("; ".join(rust_problems))
    found: set[str] = set()
    if plan.is_cuda(lock):
        libraries = cuda_tools.compiled_libraries(src) + cuda_tools.compiled_libraries(venv)
        found = cuda_tools.cubins(libraries, env)
        missing = plan.missing_archs(lock.build.cuda_archs, found)
        if missing:
            raise InstallError(f"the built libraries lack code for {', '.join(missing)} (found: {sorted(found)})")
    return version, found, report


def rust_env(lock: Lock, facts: plan.MachineFacts, gen: Generation, path: str) -> dict[str, str]:
    """The Rust part of the build environment (plan.rust_build_env), with the binaries preflight
    measured (their real files, not rustup's proxies) or, left out, ones that refuse to run."""
    found = {t.name: t.path for t in facts.toolchain}
    rustc, cargo_bin = found.get("rustc"), found.get("cargo")
    if lock.rust is not None and rustc is not None and cargo_bin is not None:
        # (without them preflight refused the lock, unless a cache may give the build)
        tools = cargo.tool_dir(gen.rust_tools, *cargo.real_binaries(rustc, cargo_bin))
        return plan.rust_build_env(lock, path, tools=tools, cargo_home=gen.cargo_home)
    # no frontend locked (or none to build it with where a cache gives the build): refusing tools,
    # and an empty CARGO_HOME in place of the caller's
    gen.empty_cargo_home.mkdir(parents=True, exist_ok=True)
    return plan.rust_build_env(lock, path, tools=cargo.left_out_dir(gen.refusing_tools),
                               cargo_home=gen.empty_cargo_home)


def check_rust_frontend(lock: Lock, src: Path) -> None:
    """The checked-out tree's Rust frontend (detected as resolve detects it) must be the lock's:
    presence, toolchain, Cargo.lock path and sha256, artifacts, crates. Before any build."""
    require_rust_frontend(lock, rust_facts(src))


def require_rust_frontend(lock: Lock, tree: rust_rules.RustFacts | None) -> None:
    if problem := plan.rust_frontend_problem(lock, tree):
        raise IntegrityError(problem)


def rust_facts(src: Path) -> rust_rules.RustFacts | None:
    from vllm_lock.shell import git as git_shell

    files = frozenset(git_shell.tracked_files(src))

    def read(path: str) -> str:
        full = src / path
        if full.is_symlink():  # git stores a link as its target's text, which is what resolve read
            return os.readlink(full)
        with full.open("rb") as stream:
            data = stream.read(MAX_RUST_SOURCE + 1)
        if len(data) > MAX_RUST_SOURCE:
            raise rust_rules.RustError(f"{path} is larger than {MAX_RUST_SOURCE} bytes")
        return data.decode("utf-8", errors="replace")

    try:
        return rust_rules.detect(files, read)
    except (rust_rules.RustError, OSError) as exc:
        raise IntegrityError(f"rust: the checked-out commit's Rust frontend cannot be read: {exc}") from None


def _cuda(version: tuple[int, int] | None) -> str:
    return f"{version[0]}.{version[1]}" if version else "?"


def machine_facts(
    lock: Lock, where: Path, cache: Path, *, check_gpus: bool, toolchain: bool = True
) -> plan.MachineFacts:
    """Everything preflight decides on, gathered from the machine (nothing decided here);
    toolchain=False leaves the build toolchain (nvcc included) out: not looked at."""
    nvcc = machine.find_nvcc(os.environ) if plan.is_cuda(lock) and toolchain else None
    try:
        python_found, python_error = uv_shell.find_python(lock.target.python, cache), None
    except PreflightError as exc:
        python_found, python_error = None, str(exc)
    store = Store(cache)
    missing = sum(w.size for p in lock.packages for w in p.wheels if not store.has(w.sha256, w.filename))
    return plan.MachineFacts(
        machine=platform.machine(),
        glibc=machine.glibc(),
        cpus=machine.cpus(),
        mem_available=machine.mem_available(),
        free_disk=machine.free_disk(where),
        python_found=python_found,
        python_error=python_error,
        nvcc=nvcc,
        nvcc_version=machine.nvcc_version(nvcc) if nvcc else None,
        cache=str(cache),
        cache_free_disk=machine.free_disk(cache),
        cache_missing=missing,
        toolchain=plan.build_tools(lock, machine.toolchain(os.environ)) if toolchain else (),
        gpus=machine.gpus(os.environ) if check_gpus and plan.is_cuda(lock) else None,
    )


def receipt_toolchain(lock: Lock, tools: tuple[plan.Tool, ...], venv_bin: Path) -> dict[str, dict[str, str | None]]:
    """The toolchain as built with: the machine's compilers, the environment's cmake and ninja
    where a locked wheel put them there."""
    chosen = {t.name: t for t in tools}
    for name in plan.BUILD_SET_TOOLS:
        if (tool := machine.tool_in(venv_bin, name)) is not None:
            chosen[name] = tool
    return {name: {"version": t.version, "path": t.path} for name, t in sorted(chosen.items())}


def make_receipt(
    lock: Lock, gen: Generation, editable: bool, version: str, env: dict[str, str], jobs: plan.Jobs,
    timings: dict[str, float], log_path: Path, found: set[str], *,
    toolchain: dict[str, dict[str, str | None]] | None = None, gpus: cuda_rules.GpuReport | None = None,
    compiler_cache: CompilerCacheSession | None = None,
) -> receipts.InstallReceipt:
    keys = (
        "VLLM_TARGET_DEVICE", "TORCH_CUDA_ARCH_LIST", "VLLM_FLASH_ATTN_VERSION", "SOURCE_DATE_EPOCH",
        "CCACHE_NOHASHDIR", "TORCH_NIGHTLY", "CUDA_HOME", "CMAKE_ARGS", *dict(lock.build.env),
        *(s.override for s in lock.external_sources),
    )
    return receipts.InstallReceipt(
        lock_name=lock.name,
        content_hash=codec.content_hash(lock),
        identity=gen.id,
        vllm_commit=lock.vllm.commit,
        vllm_version=version,
        torch_version=lock.torch.version,
        python=lock.target.python,
        target_device=lock.build.target_device,
        cuda_archs=list(lock.build.cuda_archs),
        editable=editable,
        packages={p.name: p.version for p in lock.packages},
        patched_files={f.path: f.sha256_after for f in lock.layout.patched_files},
        build_env={k: env[k] for k in keys if k in env},
        max_jobs=jobs.max_jobs,
        nvcc_threads=jobs.nvcc_threads,
        timings=dict(timings),
        log=str(log_path),
        venv=str(gen.venv),
        src=str(gen.src),
        installed_at=clock.utc_timestamp(),
        tool_version=vllm_lock.__version__,
        cubins=sorted(found),
        external_sources={s.name: s.commit for s in lock.external_sources},
        version_checked_by=version_check(lock),
        toolchain=toolchain or {},
        gpus=receipts.gpu_record(gpus),
        compiler_cache=receipts.compiler_cache_record(compiler_cache),
    )


def rollback(venv: Path, src: Path, reporter: Reporter) -> Path:
    container = generations.container_for(venv, src)
    generations.check_container(container)
    if not container.root.is_dir():
        raise UsageError(f"{container.venv_link} has never been installed ({container.root} does not exist): "
                         "nothing to roll back")
    with generations.exclusive(container):
        # the history and the active generation are read under the lock: a concurrent install or
        # rollback may have moved them
        target = generations.rollback_target(container)
        generations.switch(container, target)
        done = receipts.read(target)
    reporter.say(f"{container.venv_link} -> {target.venv} "
                 f"({done.lock_name if done else '?'}, {done.vllm_version if done else '?'})")
    return target.root


# ---------------------------------------------------------------- build-check (existing environment)


@dataclass(frozen=True, kw_only=True)
class BuildCheckRequest:
    src: Path
    python: str
    archs: tuple[str, ...]
    target_device: str = "cuda"
    max_jobs: int | None = None
    nvcc_threads: int | None = None
    out: Path = Path("build-check")


def build_check(request: BuildCheckRequest, reporter: Reporter) -> tuple[Path, set[str]]:
    """The build step and the arch check on an existing environment (its own Python with torch
    installed): builds a vLLM-shaped source tree as a wheel (not installed) with the same
    build settings, then lists the cubins of its libraries."""
    import zipfile

    request.out.mkdir(parents=True, exist_ok=True)
    log_path = request.out / "build.log"
    with log_path.open("w", encoding="utf-8") as log:
        rep = reporter.with_log(log)
        rep.say(f"full log: {log_path}")
        with rep.step("preflight"):
            nvcc = machine.find_nvcc(os.environ)
            if request.target_device == "cuda":
                version = machine.nvcc_version(nvcc) if nvcc else None
                if version is None:
                    raise PreflightError("nvcc not found or unreadable ($CUDA_HOME/bin, /usr/local/cuda/bin, PATH)")
                for arch in request.archs:
                    if problem := cuda_rules.arch_problem(arch, version):
                        raise PreflightError(f"nvcc {version[0]}.{version[1]} cannot build arch {arch}: {problem}")
                rep.say(f"    nvcc {version[0]}.{version[1]} at {nvcc}")
            facts = plan.MachineFacts(
                machine="", glibc=None, cpus=machine.cpus(), mem_available=machine.mem_available(),
                free_disk=0, python_found=request.python,
            )
            jobs = _jobs_for_archs(request, facts)
            rep.say(f"    MAX_JOBS={jobs.max_jobs} NVCC_THREADS={jobs.nvcc_threads} ({jobs.reason})")
        env = plan.arch_build_env(
            request.archs, jobs, uv_shell.uv_env(request.out / "cache", offline=True),
            target_device=request.target_device, cuda_home=str(Path(nvcc).parent.parent) if nvcc else None,
        )
        with rep.step("build"):
            wheel = build_shell.build_vllm(
                python=request.python, src=request.src.resolve(), env=env, editable=False, dist=request.out / "dist",
                log=log, on_line=build_shell.build_filter(rep.line), log_path=log_path, install=False,
            )
        assert wheel is not None
        found: set[str] = set()
        with rep.step("arch check"):
            unpacked = request.out / "unpacked"
            with zipfile.ZipFile(wheel) as zf:
                zf.extractall(unpacked)
            libraries = sorted(unpacked.rglob("*.so"))
            rep.say(f"    libraries: {', '.join(str(p.relative_to(unpacked)) for p in libraries)}")
            if request.target_device == "cuda":
                found = cuda_tools.cubins(libraries, env)
                rep.say(f"    cubins: {', '.join(sorted(found)) or 'none'}")
                missing = plan.missing_archs(request.archs, found)
                if missing:
                    raise InstallError(f"{wheel.name} lacks code for {', '.join(missing)}")
        return wheel, found


def _jobs_for_archs(request: BuildCheckRequest, facts: plan.MachineFacts) -> plan.Jobs:
    recipe = BuildRecipe(cuda_archs=request.archs, target_device=request.target_device)
    return plan.choose_jobs(recipe, facts, max_jobs=request.max_jobs, nvcc_threads=request.nvcc_threads)


__all__ = ["DEFAULT_SRC", "DEFAULT_VENV", "InstallRequest", "build_check", "install", "rollback"]
