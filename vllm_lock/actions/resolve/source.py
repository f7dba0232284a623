"""The vLLM commit: its tree read once, its layout and stripping, the requirements its build
declares, its external CMake sources and its Rust frontend."""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vllm_lock import requirements as requirement_rules
from vllm_lock import rust as rust_rules
from vllm_lock import source_layout as layout_rules
from vllm_lock import torch_family
from vllm_lock.actions.resolve.request import ResolveRequest
from vllm_lock.errors import ResolutionError, UnknownRefError, UnreachableError
from vllm_lock.model import (
    Crate,
    ExternalPin,
    ExternalSource,
    ModelError,
    PatchedFile,
    RustArtifact,
    RustFrontend,
    SourceLayout,
    Target,
    VllmInput,
)
from vllm_lock.progress import Reporter
from vllm_lock.shell import git as git_shell
from vllm_lock.shell.stripping import run_stripping_script, snapshot


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceFacts:
    vllm: VllmInput
    layout: SourceLayout
    external_sources: tuple[ExternalSource, ...]
    runtime: tuple[str, ...]  # what the build declares for the target (setup.py's rules applied)
    build: tuple[str, ...]
    removed: tuple[str, ...]  # requirement lines the stripping script removed from the files read
    rust: RustFrontend | None = None


SourceRest = Callable[[Reporter], tuple[tuple[ExternalSource, ...], RustFrontend | None]]


def read_source(request: ResolveRequest, target: Target, reporter: Reporter) -> tuple[SourceFacts, SourceRest]:
    """The source facts the compile needs (no external sources, no Rust frontend yet), and the
    reading of those two, which does not feed the compile (resolve runs it beside uv)."""
    commit = git_shell.resolve_ref(request.repo, request.ref)
    reporter.say(f"    {request.ref} -> {commit}")
    repo = git_shell.update_mirror(request.cache, request.repo, commit)
    files = git_shell.list_files(repo, commit)

    @functools.cache  # layout, setup.py's rules, CMake and Rust read some files more than once
    def read(path: str) -> str:
        return git_shell.read_blob(repo, commit, path).decode("utf-8", errors="replace")

    try:
        detected = layout_rules.detect_layout(files, read, target_device=request.target_device)
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
    reporter.say(f"    layout: {detected.stripping_script} ({detected.stripping_mode}), {detected.build_requirements}")
    setup_py = read("setup.py") if "setup.py" in files else None
    # setup.py's rules (an ast walk of ~70 KB) are read while git exports the tree and the
    # stripping script runs
    with ThreadPoolExecutor(max_workers=1) as aside, tempfile.TemporaryDirectory(prefix="vllm-lock-src-") as tmp:
        pending_rules = aside.submit(_read_rules, setup_py, commit)
        tree = Path(tmp)
        try:
            try:
                git_shell.export_paths(repo, commit, tree, stripping_pathspecs(files, detected.stripping_script))
            except ValueError as exc:
                raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
            stripping = run_stripping(tree, detected, reporter)
        except Exception:
            pending_rules.result()  # setup.py's error first, as when it was read before the export
            raise
        stripped = read_stripped(tree, stripping, detected, pending_rules.result(), request, reporter)
    patched, runtime, build = stripped.patched, stripped.declared.requirements, stripped.build
    layout = SourceLayout(
        stripping_script=detected.stripping_script,
        stripping_mode=detected.stripping_mode,
        runtime_requirements=stripped.declared.file,
        build_requirements=detected.build_requirements,
        patched_files=patched,
        runtime_set=runtime,
        build_set=build,
    )
    vllm = VllmInput(url=request.repo, ref=request.ref, commit=commit, commit_date=git_shell.commit_date(repo, commit))

    def rest(reporter: Reporter) -> tuple[tuple[ExternalSource, ...], RustFrontend | None]:
        try:
            reading = layout_rules.external_pins(files, read, target_device=request.target_device,
                                                 processor=target.machine)
        except layout_rules.LayoutError as exc:
            raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
        reporter.say(f"    cmake for {request.target_device} on {target.machine}: "
                     f"read {', '.join(reading.included) or 'nothing'}")
        for undecided in reading.undecided:
            reporter.say(f"    cmake: cannot evaluate {undecided.condition} ({undecided.file}:{undecided.line}) "
                         "for this target: both branches kept")
        externals = lock_external_sources(reading.pins, reporter)
        return externals, lock_rust_frontend(files, read, commit, without=request.without_rust, reporter=reporter)

    return SourceFacts(vllm=vllm, layout=layout, external_sources=(), runtime=runtime, build=build,
                       removed=stripped.removed, rust=None), rest


def stripping_pathspecs(files: Iterable[str], script: str) -> list[str]:
    """What the stripping script and the requirement readers see of the tree: the script, every
    requirements file (root requirements*.txt of old layouts, the requirements/ folder of new ones,
    which the scripts glob), pyproject.toml and setup.py. The rest of the tree (some 9,600 files)
    is not exported; install runs the script on the whole tree and checks the patched hashes."""
    present = set(files)
    specs = [script, *(name for name in ("pyproject.toml", "setup.py") if name in present)]
    if any(path.startswith("requirements/") for path in present):
        specs.append("requirements")
    if any(path.startswith("requirements") and "/" not in path for path in present):
        specs.append(":(glob)requirements*")
    return specs


def lock_rust_frontend(
    files: Iterable[str], read: Callable[[str], str], commit: str, *, without: bool, reporter: Reporter
) -> RustFrontend | None:
    """The commit's Rust frontend as the lock records it; None when it has none or --no-rust."""
    try:
        facts = rust_rules.detect(frozenset(files), read)
    except rust_rules.RustError as exc:
        raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
    if facts is None:
        if without:
            raise ResolutionError(f"commit {commit[:9]} has no Rust frontend: --no-rust has nothing to leave out")
        return None
    if without:
        reporter.say(f"    rust: frontend left out on purpose (--no-rust; {facts.cargo_lock} not locked)")
        return None
    reporter.say(f"    rust: toolchain {facts.channel} ({facts.toolchain_file}), {facts.cargo_lock} "
                 f"({len(facts.crates)} registry crates), builds "
                 f"{', '.join(a.target for a in facts.artifacts) or 'nothing'}")
    if facts.git_sources:
        reporter.say(f"    rust: warning: {len(facts.git_sources)} crates come from git, not a registry: "
                     "they are not vendored, and an offline build cannot fetch them")
    try:
        return RustFrontend(
            toolchain_file=facts.toolchain_file, channel=facts.channel, cargo_lock=facts.cargo_lock,
            cargo_lock_sha256=facts.cargo_lock_sha256,
            artifacts=tuple(RustArtifact(target=a.target, kind=a.kind) for a in facts.artifacts),
            crates=tuple(Crate(name=c.name, version=c.version, checksum=c.checksum) for c in facts.crates),
        )
    except ModelError as exc:
        raise ResolutionError(f"commit {commit[:9]}: {facts.cargo_lock} cannot be locked: {exc}") from None


def lock_external_sources(pins: tuple[ExternalPin, ...], reporter: Reporter) -> tuple[ExternalSource, ...]:
    """Each pin with the commit it names now: a tag is looked up in its repository (tags move;
    the lock keeps the commit); a commit pin is its own commit."""
    locked = []
    for pin in pins:
        if pin.ref_kind == "commit":
            commit = pin.ref
        else:
            try:
                commit = git_shell.resolve_ref(pin.repository, pin.ref)
            except (UnknownRefError, UnreachableError) as exc:
                raise type(exc)(f"external source {pin.name} ({pin.declared_in}): {exc}") from None
        try:
            source = ExternalSource.locked(pin, commit)
        except ModelError as exc:
            raise ResolutionError(f"external source {pin.name} ({pin.declared_in}) cannot be locked: {exc}") from None
        reporter.say(f"    external {pin.name}: {pin.ref} -> {commit[:12]} (via {pin.override})")
        locked.append(source)
    return tuple(locked)


@dataclass(frozen=True, kw_only=True, slots=True)
class StrippedTree:
    patched: tuple[PatchedFile, ...]
    declared: requirement_rules.DeclaredRequirements
    build: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class Stripping:
    before: dict[str, bytes]  # the strippable files before the script ran, and after
    after: dict[str, bytes]
    patched: tuple[PatchedFile, ...]


def _read_rules(setup_py: str | None, commit: str) -> requirement_rules.RequirementRules:
    try:
        return requirement_rules.read_rules(setup_py)
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"commit {commit[:9]}: {exc}") from None


def strip_and_read(
    tree: Path,
    detected: layout_rules.DetectedLayout,
    rules: requirement_rules.RequirementRules,
    request: ResolveRequest,
    reporter: Reporter,
) -> StrippedTree:
    return read_stripped(tree, run_stripping(tree, detected, reporter), detected, rules, request, reporter)


def run_stripping(tree: Path, detected: layout_rules.DetectedLayout, reporter: Reporter) -> Stripping:
    """The commit's stripping script run on the exported tree, and what it changed (its output
    goes to the log; read_stripped says what it patched)."""
    before = snapshot(tree)
    script = detected.stripping_script
    argv = (script, "--prefix") if detected.stripping_mode == "prefix" else (script,)
    result = run_stripping_script(tree, argv, log=reporter.log)
    if not result.ok:
        raise ResolutionError(f"{detected.stripping_script} failed: {result.tail(1)}")
    after = snapshot(tree)
    return Stripping(before=before, after=after, patched=layout_rules.patched_files(before, after))


def read_stripped(
    tree: Path,
    stripping: Stripping,
    detected: layout_rules.DetectedLayout,
    rules: requirement_rules.RequirementRules,
    request: ResolveRequest,
    reporter: Reporter,
) -> StrippedTree:
    """The requirements of the stripped tree: the runtime set the build declares for the target,
    the build set, and the lines the script removed from the files read."""
    before, after = stripping.before, stripping.after
    reporter.say(f"    stripping script patched {len(stripping.patched)} files")

    def read(path: str) -> str:
        full = tree / path
        if not full.is_file():
            raise layout_rules.LayoutError(f"{path} is missing")
        try:
            return full.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise layout_rules.LayoutError(f"{path} is not UTF-8 text (byte {exc.start})") from None

    try:
        declared = requirement_rules.declared_requirements(
            rules, read, target_device=request.target_device, cuda_major=request.cuda_major)
        build = layout_rules.parse_requirement_file(detected.build_requirements, read)
        if (tree / "pyproject.toml").is_file():
            build += layout_rules.build_system_requires(read("pyproject.toml"))
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"cannot read requirements: {exc}") from None
    source = "setup.py" if rules.from_setup_py else "one file per device"
    reporter.say(f"    runtime requirements for {request.target_device} ({source}): {declared.file}, "
                 f"{len(declared.requirements)} declared")
    for line in declared.dropped:
        reporter.say(f"    setup.py drops for CUDA {request.cuda_major}: {line.strip()}")
    for old, new in declared.rewritten:
        reporter.say(f"    setup.py rewrites for CUDA {request.cuda_major}: {old.strip()} -> {new.strip()}")
    removed: list[str] = []
    for path in (*declared.files_read, detected.build_requirements):
        if path in before:
            removed += torch_family.removed_lines(before[path].decode("utf-8", errors="replace"),
                                                  after.get(path, b"").decode("utf-8", errors="replace"))
    return StrippedTree(patched=stripping.patched, declared=declared, build=tuple(dict.fromkeys(build)),
                        removed=torch_family.removed_requirements(removed))
