"""install: a lock -> a verified generation, then an atomic switch of --venv/--src to it.

Steps (each logged with its duration, the whole output also in <generation>/logs/*.log):
preflight, python, environment, packages, source, strip, build, verify, receipt, switch.
A generation without a receipt is unfinished: rerunning resumes it (every step is idempotent).
"""

from __future__ import annotations

import datetime as dt
import errno
import os
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import vllm_lock
from vllm_lock import codec, plan, pylock
from vllm_lock import cuda as cuda_rules
from vllm_lock import layout as layout_rules
from vllm_lock import receipt as receipts
from vllm_lock import rust as rust_rules
from vllm_lock.actions import verify as verify_action
from vllm_lock.defaults import DEFAULT_SRC, DEFAULT_VENV
from vllm_lock.errors import InstallError, IntegrityError, OutputError, PreflightError, UsageError, VllmLockError
from vllm_lock.mirrors import NO_MIRRORS, Mirrors
from vllm_lock.model import BuildRecipe, Lock, PatchedFile, index_url_problem
from vllm_lock.progress import Reporter
from vllm_lock.shell import build as build_shell
from vllm_lock.shell import cargo, generations, lockfiles, machine, mirroring, staging
from vllm_lock.shell import uv as uv_shell
from vllm_lock.shell.store import Store, cache_root
from vllm_lock.shell.stripping import run_stripping_script, snapshot

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
    from_bundle: Path | None = None  # an offline bundle imported into the cache first (actions/bundle.py)


@dataclass(frozen=True, kw_only=True)
class InstallResult:
    generation: Path
    state: str  # "unchanged", "switched", "installed"
    version: str
    log: Path | None


def generation_id(lock: Lock, editable: bool) -> str:
    identity = codec.build_identity(lock)
    if editable == lock.build.editable:
        return identity
    return identity + ("-editable" if editable else "-wheel")


def layout_for(venv: Path, src: Path) -> plan.Layout:
    return plan.Layout(venv_link=Path(os.path.abspath(venv)), src_link=Path(os.path.abspath(src)))


def install(request: InstallRequest, reporter: Reporter) -> InstallResult:
    if problem := index_url_problem(request.crate_registry):
        raise UsageError(f"--crate-registry: {problem}")
    lock = request.verified if request.verified is not None else lockfiles.read(request.lock)[0]
    editable = lock.build.editable if request.editable is None else request.editable
    layout = layout_for(request.venv, request.src)
    generations.check_layout(layout)
    gen = layout.generation(generation_id(lock, editable))
    if request.from_bundle is not None:
        from vllm_lock.actions import bundle as bundle_action

        bundle_action.import_bundle(request.from_bundle, lock, request.cache, reporter)
    try:
        layout.generations.mkdir(parents=True, exist_ok=True)
        with generations.exclusive(layout.generations), mirroring.using(request.mirrors):
            return _install_locked(request, lock, layout, gen, editable, reporter)
    except OSError as exc:
        if exc.errno not in _CANNOT_WRITE:
            raise
        where = exc.filename or f"in {layout.generations}"  # a file object's write names no file
        raise OutputError(f"cannot write {where}: {exc.strerror or exc}; rerun install once it is fixed") from None


# A write that failed for want of space or permission (the disk filled after preflight, a mount
# turned read-only): one line naming the file, not a traceback.
_CANNOT_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})


def _install_locked(
    request: InstallRequest, lock: Lock, layout: plan.Layout, gen: Path, editable: bool, reporter: Reporter
) -> InstallResult:
    """Holding the install lock: everything that decides what to do is read now, not before
    (another install may have completed or switched this generation meanwhile)."""
    done = receipts.read(gen)
    if done is not None and generations.active(layout) == gen and _links_ok(layout, gen):
        reporter.say(f"{layout.venv_link} already holds lock {lock.name} ({done.vllm_version}); nothing to do")
        return InstallResult(generation=gen, state="unchanged", version=done.vllm_version, log=None)
    if done is not None and (gen / "venv" / "bin" / "vllm").exists():
        generations.switch(layout, gen)
        reporter.say(f"switched {layout.venv_link} to the existing generation {gen.name} ({done.vllm_version})")
        return InstallResult(generation=gen, state="switched", version=done.vllm_version, log=None)
    if done is not None:
        # complete but damaged: unfinished again before any step touches it, so that a failed
        # rebuild is never taken for a good generation
        receipts.path(gen).unlink()
    return _build_generation(request, lock, layout, gen, editable, reporter)


def _links_ok(layout: plan.Layout, gen: Path) -> bool:
    return (
        layout.src_link.is_symlink()
        and Path(os.readlink(layout.src_link)) == gen / "src"
        and (layout.venv_link / "bin" / "python").exists()
        and (layout.venv_link / "bin" / "vllm").exists()  # a damaged generation is rebuilt, not skipped
    )


def _build_generation(
    request: InstallRequest, lock: Lock, layout: plan.Layout, gen: Path, editable: bool, reporter: Reporter
) -> InstallResult:
    resumed = gen.exists()
    (gen / "logs").mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    log_path = gen / "logs" / f"install-{stamp}.log"
    try:
        with log_path.open("w", encoding="utf-8") as log:
            rep = reporter.with_log(log)
            rep.say(f"installing lock {lock.name} ({codec.content_hash(lock)}) into generation {gen}")
            rep.say(f"full log: {log_path}")
            if resumed:
                rep.say("    resuming an unfinished generation")
            result = _steps(request, lock, layout, gen, editable, rep, log, log_path)
            reporter.timings.update(rep.timings)
            return result
    except VllmLockError:
        if not resumed and {p.name for p in gen.iterdir()} == {"logs"}:
            # refused before any step wrote into it (preflight): no half generation stays behind;
            # the log, whose words the console showed, moves to the cache's logs folder
            kept = request.cache / "logs" / f"install-{gen.name}-{stamp}.log"
            try:
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(log_path, kept)  # the cache may be on another file system
            except OSError:
                pass  # the log stays where it is: the refusal is what the user must see
            else:
                shutil.rmtree(gen, ignore_errors=True)
                reporter.say(f"nothing was installed; the log is now {kept}")
        raise


def _steps(
    request: InstallRequest, lock: Lock, layout: plan.Layout, gen: Path, editable: bool, rep: Reporter,
    log: IO[str], log_path: Path,
) -> InstallResult:
    store = Store(request.cache)
    venv = gen / "venv"
    src = gen / "src"
    python = venv / "bin" / "python"
    on_line = rep.line

    with rep.step("preflight"):
        generations.check_writable_dir(request.cache, "the cache, VLLM_LOCK_CACHE")
        facts = machine_facts(lock, layout.generations, request.cache, check_gpus=not request.skip_gpu_check)
        for note in plan.preflight_notes(lock, facts):
            rep.say(f"    warning: {note}")
        problems = plan.preflight_problems(lock, facts, min_free_disk=request.min_free_disk)
        if facts.python_found is None and request.allow_python_download:
            problems = [p for p in problems if not p.startswith("Python ")]
        if problems:
            raise PreflightError("; ".join(problems))
        jobs = plan.choose_jobs(lock.build, facts, max_jobs=request.max_jobs, nvcc_threads=request.nvcc_threads)
        rep.say(f"    MAX_JOBS={jobs.max_jobs} NVCC_THREADS={jobs.nvcc_threads} ({jobs.reason})")
        rep.say("    toolchain: " + ", ".join(t.describe() for t in facts.toolchain))
        if facts.gpus is not None and facts.gpus.gpus:
            gpus = ", ".join(f"{g.name} (sm_{g.capability[0]}{g.capability[1]})" for g in facts.gpus.gpus)
            rep.say(f"    GPUs: {gpus}; driver {facts.gpus.driver_version} (CUDA {_cuda(facts.gpus.driver_cuda)})")

    if facts.python_found is None:
        with rep.step("python"):
            build_shell.install_python(lock.target.python, request.cache, log, on_line)

    uv_env = uv_shell.uv_env(request.cache, offline=True)
    with rep.step("environment"):
        build_shell.run_uv(
            build_shell.venv_argv(lock.target.python, venv), env=uv_env, what="creating the venv", log=log, on_line=on_line
        )

    with rep.step("packages"):
        staged = build_shell.stage_wheels(lock, store, gen / "wheels", rep.say)
        pylock_path = gen / "pylock.toml"  # every locked wheel: uv picks the best one for this machine
        pylock_path.write_text(pylock.to_pylock(lock, local_path=lambda _, w: str(staged[w.sha256, w.filename])), encoding="utf-8")
        build_shell.run_uv(
            build_shell.sync_argv(venv, pylock_path), env=uv_env, what="installing the locked packages", log=log,
            on_line=on_line,
        )

    with rep.step("source"):
        build_shell.checkout(lock, request.cache, src, rep.say)
        check_rust_frontend(lock, src)

    external_dirs: dict[str, Path] = {}
    if lock.external_sources or lock.rust is not None:
        with rep.step("external sources"):
            external_dirs = staging.stage(lock.external_sources, request.cache, gen / "external", rep.say)
            if lock.rust is not None:
                crates = cargo.fetch(lock.rust.crates, request.crate_registry, store, rep.say)
                cargo.vendor(crates, gen / "rust" / "vendor")
                cargo.write_cargo_home(gen / "rust" / "cargo-home", gen / "rust" / "vendor")

    with rep.step("strip"):
        before = snapshot(src)
        result = run_stripping_script(src, lock.layout.stripping_argv, python=str(python), log=log)
        if not result.ok:
            raise InstallError(f"{lock.layout.stripping_script} failed: {result.tail(1)}")
        check_patched(lock, layout_rules.patched_files(before, snapshot(src)))

    env = plan.build_env(lock, jobs, uv_env, external_dirs=external_dirs)
    env.update(rust_env(lock, facts, gen / "rust", env.get("PATH", os.environ.get("PATH", ""))))
    env.pop("UV_OFFLINE", None)
    env["UV_OFFLINE"] = "1"
    with rep.step("build"):
        shown = ("VLLM_TARGET_DEVICE", "TORCH_CUDA_ARCH_LIST", "MAX_JOBS", "NVCC_THREADS", "SOURCE_DATE_EPOCH",
                 "VLLM_REQUIRE_RUST_FRONTEND", "CARGO_NET_OFFLINE", "CARGO_HOME")
        for key in (*shown, "CMAKE_ARGS", *(s.override for s in lock.external_sources)):
            if key in env:
                rep.say(f"    {key}={env[key]}")
        build_shell.build_vllm(
            python=str(python), src=src, env=env, editable=editable, dist=gen / "dist", log=log,
            on_line=build_shell.build_filter(on_line), log_path=log_path,
        )

    with rep.step("verify"):
        version, found = verify_built(lock, venv, src, env)
        rep.say(f"    {version_check(lock)}: {version}")
        if found:
            rep.say(f"    cubins: {', '.join(sorted(found))}")
        for note in verify_action.require_built_requirements(lock, venv):
            rep.say(f"    {note}")

    with rep.step("receipt"):
        tools = receipt_toolchain(lock, facts.toolchain, venv / "bin")
        receipts.write(gen, make_receipt(lock, gen, editable, version, env, jobs, rep.timings, log_path, found,
                                         toolchain=tools, gpus=facts.gpus))

    with rep.step("switch"):
        generations.switch(layout, gen)
        rep.say(f"    {layout.venv_link} -> {venv}")
        rep.say(f"    {layout.src_link} -> {src}")
    return InstallResult(generation=gen, state="installed", version=version, log=log_path)


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


def verify_built(lock: Lock, venv: Path, src: Path, env: dict[str, str]) -> tuple[str, set[str]]:
    """The built version consistent with the commit; the exact package set; for CUDA, every arch."""
    ok, version = built_version(lock, venv)
    if not ok:
        raise InstallError(f"{version_check(lock)} failed in {venv}: {version}")
    problem = plan.version_problem(version, lock.vllm.commit, build_shell.exact_tag(src))
    if problem:
        raise InstallError(problem)
    report = verify_action.inspect_packages(lock, venv, check_files=False)
    if report.drift:
        raise InstallError(f"the installed environment does not match the lock: {report.summary()}")
    if rust_problems := verify_action.rust_artifact_problems(lock, venv, src):
        raise InstallError("; ".join(rust_problems))
    found: set[str] = set()
    if plan.is_cuda(lock):
        libraries = build_shell.compiled_libraries(src) + build_shell.compiled_libraries(venv)
        found = build_shell.cubins(libraries, env)
        missing = plan.missing_archs(lock.build.cuda_archs, found)
        if missing:
            raise InstallError(f"the built libraries lack code for {', '.join(missing)} (found: {sorted(found)})")
    return version, found


def rust_env(lock: Lock, facts: plan.MachineFacts, where: Path, path: str) -> dict[str, str]:
    """The Rust part of the build environment (plan.rust_build_env), with the binaries preflight
    measured (their real files, not rustup's proxies) or, left out, ones that refuse to run."""
    if lock.rust is not None:
        found = {t.name: t.path for t in facts.toolchain}
        rustc, cargo_bin = found.get("rustc"), found.get("cargo")
        assert rustc is not None and cargo_bin is not None  # preflight refused a lock without them
        tools = cargo.tool_dir(where / "bin", *cargo.real_binaries(rustc, cargo_bin))
        return plan.rust_build_env(lock, path, tools=tools, cargo_home=where / "cargo-home")
    # no frontend locked: refusing tools, and an empty CARGO_HOME in place of the caller's
    empty_home = where / "left-out-home"
    empty_home.mkdir(parents=True, exist_ok=True)
    return plan.rust_build_env(lock, path, tools=cargo.left_out_dir(where / "left-out"), cargo_home=empty_home)


def check_rust_frontend(lock: Lock, src: Path) -> None:
    """The checked-out tree's Rust frontend (detected as resolve detects it) must be the lock's:
    presence, toolchain, Cargo.lock path and sha256, artifacts, crates. Before any build."""
    files = frozenset(build_shell.tracked_files(src))

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
        tree = rust_rules.detect(files, read)
    except (rust_rules.RustError, OSError) as exc:
        raise IntegrityError(f"rust: the checked-out commit's Rust frontend cannot be read: {exc}") from None
    if problem := plan.rust_frontend_problem(lock, tree):
        raise IntegrityError(problem)


def _cuda(version: tuple[int, int] | None) -> str:
    return f"{version[0]}.{version[1]}" if version else "?"


def machine_facts(lock: Lock, where: Path, cache: Path, *, check_gpus: bool) -> plan.MachineFacts:
    """Everything preflight decides on, gathered from the machine (nothing decided here)."""
    nvcc = machine.find_nvcc(os.environ) if plan.is_cuda(lock) else None
    try:
        python_found, python_error = build_shell.find_python(lock.target.python, cache), None
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
        toolchain=plan.build_tools(lock, machine.toolchain(os.environ)),
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
    lock: Lock, gen: Path, editable: bool, version: str, env: dict[str, str], jobs: plan.Jobs,
    timings: dict[str, float], log_path: Path, found: set[str], *,
    toolchain: dict[str, dict[str, str | None]] | None = None, gpus: cuda_rules.GpuReport | None = None,
) -> receipts.Receipt:
    keys = (
        "VLLM_TARGET_DEVICE", "TORCH_CUDA_ARCH_LIST", "VLLM_FLASH_ATTN_VERSION", "SOURCE_DATE_EPOCH",
        "CCACHE_NOHASHDIR", "TORCH_NIGHTLY", "CUDA_HOME", "CMAKE_ARGS", *dict(lock.build.env),
        *(s.override for s in lock.external_sources),
    )
    return receipts.Receipt(
        lock_name=lock.name,
        content_hash=codec.content_hash(lock),
        identity=gen.name,
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
        venv=str(gen / "venv"),
        src=str(gen / "src"),
        installed_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        tool_version=vllm_lock.__version__,
        cubins=sorted(found),
        external_sources={s.name: s.commit for s in lock.external_sources},
        version_checked_by=version_check(lock),
        toolchain=toolchain or {},
        gpus=receipts.gpu_record(gpus),
    )


def rollback(venv: Path, src: Path, reporter: Reporter) -> Path:
    layout = layout_for(venv, src)
    generations.check_layout(layout)
    if not layout.generations.is_dir():
        raise UsageError(f"{layout.venv_link} has never been installed ({layout.generations} does not exist): nothing to roll back")
    with generations.exclusive(layout.generations):
        # the history and the active generation are read under the lock: a concurrent install or
        # rollback may have moved them
        target = generations.rollback_target(layout)
        generations.switch(layout, target)
        done = receipts.read(target)
    reporter.say(f"{layout.venv_link} -> {target / 'venv'} ({done.lock_name if done else '?'}, {done.vllm_version if done else '?'})")
    return target


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
                found = build_shell.cubins(libraries, env)
                rep.say(f"    cubins: {', '.join(sorted(found)) or 'none'}")
                missing = plan.missing_archs(request.archs, found)
                if missing:
                    raise InstallError(f"{wheel.name} lacks code for {', '.join(missing)}")
        return wheel, found


def _jobs_for_archs(request: BuildCheckRequest, facts: plan.MachineFacts) -> plan.Jobs:
    recipe = BuildRecipe(cuda_archs=request.archs, target_device=request.target_device)
    return plan.choose_jobs(recipe, facts, max_jobs=request.max_jobs, nvcc_threads=request.nvcc_threads)


__all__ = ["DEFAULT_SRC", "DEFAULT_VENV", "InstallRequest", "build_check", "install", "rollback"]
