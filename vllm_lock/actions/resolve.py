"""resolve: (vLLM ref, torch nightly date, build deps) -> a hashed lock."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import re
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import vllm_lock
from vllm_lock import cuda as cuda_rules
from vllm_lock import nightly, torch_family
from vllm_lock import requirements as requirement_rules
from vllm_lock import rust as rust_rules
from vllm_lock import source_layout as layout_rules
from vllm_lock.defaults import DEFAULT_GENERAL_INDEX, DEFAULT_PLATFORM, DEFAULT_REPO
from vllm_lock.errors import (
    CompanionMismatchError,
    NoNightlyError,
    OutputError,
    ResolutionError,
    UnknownRefError,
    UnknownTorchVersionError,
    UnreachableError,
    UsageError,
    VllmLockError,
)
from vllm_lock.mirrors import NO_MIRRORS, Mirrors
from vllm_lock.model import (
    BuildRecipe,
    Crate,
    ExternalPin,
    ExternalSource,
    HashOrigin,
    Lock,
    ModelError,
    Package,
    PackageSource,
    PatchedFile,
    Pin,
    Provenance,
    RustArtifact,
    RustFrontend,
    SourceLayout,
    Target,
    TorchInput,
    VllmInput,
    Wheel,
    build_env_problem,
    show,
)
from vllm_lock.progress import Reporter
from vllm_lock.shell import git as git_shell
from vllm_lock.shell import http, lockfiles, mirroring
from vllm_lock.shell import uv as uv_shell
from vllm_lock.shell.store import Store, cache_root
from vllm_lock.shell.stripping import run_stripping_script, snapshot

LATEST_MAX_TRIES = 10
PEP691_JSON = "application/vnd.pypi.simple.v1+json"  # the JSON form of a simple index page
NightlyBuilds = dict[dt.date, nightly.WheelLink]


def default_torch_index(channel: str, cuda: str) -> str:
    if channel == "nightly":
        return f"https://download.pytorch.org/whl/nightly/{cuda}"
    return f"https://download.pytorch.org/whl/{cuda}"


@dataclass(frozen=True, kw_only=True)
class ResolveRequest:
    repo: str = DEFAULT_REPO
    ref: str = "main"
    torch_channel: Literal["nightly", "release"] = "nightly"
    torch_date: str = "latest"
    torch_version: str | None = None
    cuda: str = "cu128"
    torch_index: str | None = None
    general_index: str = DEFAULT_GENERAL_INDEX
    archs: tuple[str, ...] = ("12.0",)
    python: str = "3.12"
    platform: str = DEFAULT_PLATFORM
    flash_attn_version: str = "2"
    target_device: str = "cuda"
    build_env: tuple[tuple[str, str], ...] = ()
    editable: bool = True
    name: str = "dev"
    phase: Literal["development", "stable"] = "development"
    output: Path | None = None
    cache: Path = field(default_factory=cache_root)
    rehash: bool = False  # download unhashed files again even when the server's ETag did not change
    without: tuple[str, ...] = ()  # torch-family members left out on purpose (recorded in the lock)
    without_rust: bool = False  # leave the commit's Rust frontend out on purpose (build.without-rust)
    mirrors: Mirrors = NO_MIRRORS  # where bytes come from; never in the lock (docs/mirrors.md)

    @property
    def torch_index_url(self) -> str:
        return (self.torch_index or default_torch_index(self.torch_channel, self.cuda)).rstrip("/")

    @property
    def output_path(self) -> Path:
        return self.output if self.output is not None else lockfiles.path_for_name(self.name)


def validate(request: ResolveRequest) -> tuple[Target, BuildRecipe]:
    """Everything checkable before touching the network; UsageError otherwise."""
    try:
        variant = None if request.cuda == "cpu" else cuda_rules.parse_variant(request.cuda)
        if variant is None and request.target_device not in ("cpu", "empty"):
            raise ValueError(f"--cuda cpu builds only for --target-device cpu or empty, not {request.target_device}")
        target = Target(python=request.python, platform=request.platform)
        recipe = BuildRecipe(
            cuda_archs=request.archs,
            flash_attn_version=request.flash_attn_version,
            target_device=request.target_device,
            editable=request.editable,
            env=tuple(sorted(request.build_env)),
            without_rust=request.without_rust,
        )
    except (ValueError, ModelError) as exc:
        raise UsageError(str(exc)) from None
    for arch in request.archs:
        if variant is not None and (problem := cuda_rules.arch_problem(arch, variant)):
            raise UsageError(f"cannot build arch {arch} with {request.cuda}: {problem}")
    if request.torch_channel == "release" and not request.torch_version:
        raise UsageError("--torch-channel release needs --torch-version (e.g. 2.9.1)")
    if request.torch_channel == "nightly" and request.torch_date != "latest":
        try:
            nightly.parse_requested_date(request.torch_date)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return target, recipe


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceFacts:
    vllm: VllmInput
    layout: SourceLayout
    external_sources: tuple[ExternalSource, ...]
    runtime: tuple[str, ...]  # what the build declares for the target (setup.py's rules applied)
    build: tuple[str, ...]
    removed: tuple[str, ...]  # requirement lines the stripping script removed from the files read
    rust: RustFrontend | None = None


LOGS_KEPT = 20


def resolve(request: ResolveRequest, reporter: Reporter) -> tuple[Lock, Path, bool]:
    """Resolve and write the lock; returns (lock, path, whether the file changed). Everything it
    says and uv's whole output go to a log file under <cache>/logs (the newest 20 are kept)."""
    target, recipe = validate(request)
    output = request.output_path
    if request.output is None:  # the first resolve in a directory: locks/ is ours to create
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create {output.parent}: {exc.strerror or exc}") from None
    lockfiles.check_writable(output)
    logs = request.cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    log_path = logs / f"resolve-{request.name}-{stamp}.log"
    with log_path.open("w", encoding="utf-8") as log:
        rep = reporter.with_log(log)
        rep.say(f"full log: {log_path}")
        try:
            with mirroring.using(request.mirrors):
                return _resolve(request, target, recipe, output, rep)
        finally:
            reporter.timings.update(rep.timings)
            for old in sorted(logs.glob("resolve-*.log"), key=lambda p: p.stat().st_mtime)[:-LOGS_KEPT]:
                old.unlink(missing_ok=True)


def _resolve(
    request: ResolveRequest, target: Target, recipe: BuildRecipe, output: Path, reporter: Reporter
) -> tuple[Lock, Path, bool]:
    pages = IndexPages(request.torch_index_url)
    # The torch index pages do not depend on the vLLM source: fetched while git and the
    # stripping script run (a failure there is reported when the pages are used).
    with ThreadPoolExecutor(max_workers=2) as pool:
        pool.submit(pages.prefetch, (torch_family.TORCH,))
        with reporter.step("vLLM source"):
            compiled_part, rest_of_source = read_source(request, target, reporter)
        # The CMake external sources (git ls-remote) and the Rust frontend (Cargo.lock) do not feed
        # the compile: read while uv runs. Their lines follow the compile's; their errors come first,
        # as when they were read before it.
        aside = io.StringIO()
        pending = pool.submit(rest_of_source, Reporter(quiet=True, log=aside))
        try:
            with reporter.step("torch and the package set"):
                torch_input, pylock, family = resolve_packages(request, target, compiled_part, pages, reporter)
        finally:
            externals, rust = pending.result()
            for line in aside.getvalue().splitlines():
                reporter.say(line)
    source = dataclasses.replace(compiled_part, external_sources=externals, rust=rust)
    with reporter.step("hashes"):
        packages = hash_packages(pylock, request, pages, reporter)
    lock = Lock(
        name=request.name,
        phase=request.phase,
        vllm=source.vllm,
        torch=torch_input,
        general_index=request.general_index.rstrip("/"),
        target=target,
        build=recipe,
        layout=dataclasses.replace(source.layout, runtime_set=source.runtime),
        external_sources=source.external_sources,
        rust=source.rust,
        packages=packages,
        provenance=Provenance(
            tool_version=vllm_lock.__version__, uv_version=uv_shell.uv_version(), resolved_at=_now()
        ),
    )
    changed = lockfiles.write(lock, output)
    return lock, output, changed


def _now() -> str:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    moment = (
        dt.datetime.fromtimestamp(int(epoch), tz=dt.UTC) if epoch else dt.datetime.now(dt.UTC)
    )
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- vLLM source


SourceRest = Callable[[Reporter], tuple[tuple[ExternalSource, ...], RustFrontend | None]]


def read_source(request: ResolveRequest, target: Target, reporter: Reporter) -> tuple[SourceFacts, SourceRest]:
    """The source facts the compile needs (no external sources, no Rust frontend yet), and the
    reading of those two, which does not feed the compile (resolve runs it beside uv)."""
    commit = git_shell.resolve_ref(request.repo, request.ref)
    reporter.say(f"    {request.ref} -> {commit}")
    repo = git_shell.update_mirror(request.cache, request.repo, commit)
    files = git_shell.list_files(repo, commit)

    def read(path: str) -> str:
        return git_shell.read_blob(repo, commit, path).decode("utf-8", errors="replace")

    try:
        detected = layout_rules.detect_layout(files, read, target_device=request.target_device)
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
    reporter.say(f"    layout: {detected.stripping_script} ({detected.stripping_mode}), {detected.build_requirements}")
    try:
        rules = requirement_rules.read_rules(read("setup.py") if "setup.py" in files else None)
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
    with tempfile.TemporaryDirectory(prefix="vllm-lock-src-") as tmp:
        tree = Path(tmp)
        try:
            git_shell.export_paths(repo, commit, tree, stripping_pathspecs(files, detected.stripping_script))
        except ValueError as exc:
            raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
        stripped = strip_and_read(tree, detected, rules, request, reporter)
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


def cuda_major(request: ResolveRequest) -> int | None:
    """The torch's CUDA major (setup.py reads torch.version.cuda): the variant's, for cuda."""
    if request.target_device != "cuda" or request.cuda == "cpu":
        return None
    return cuda_rules.parse_variant(request.cuda)[0]


def strip_and_read(
    tree: Path,
    detected: layout_rules.DetectedLayout,
    rules: requirement_rules.RequirementRules,
    request: ResolveRequest,
    reporter: Reporter,
) -> StrippedTree:
    before = snapshot(tree)
    prefix = ("--prefix",) if detected.stripping_mode == "prefix" else ()
    argv = (detected.stripping_script, *prefix)
    result = run_stripping_script(tree, argv, log=reporter.log)
    if not result.ok:
        raise ResolutionError(f"{detected.stripping_script} failed: {result.tail(1)}")
    after = snapshot(tree)
    patched = layout_rules.patched_files(before, after)
    reporter.say(f"    stripping script patched {len(patched)} files")

    def read(path: str) -> str:
        full = tree / path
        if not full.is_file():
            raise layout_rules.LayoutError(f"{path} is missing")
        return full.read_text(encoding="utf-8")

    try:
        declared = requirement_rules.declared_requirements(
            rules, read, target_device=request.target_device, cuda_major=cuda_major(request))
        build = layout_rules.parse_requirement_file(detected.build_requirements, read)
        if (tree / "pyproject.toml").is_file():
            build += layout_rules.build_system_requires(read("pyproject.toml"))
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"cannot read requirements: {exc}") from None
    source = "setup.py" if rules.from_setup_py else "one file per device"
    reporter.say(f"    runtime requirements for {request.target_device} ({source}): {declared.file}, "
                 f"{len(declared.requirements)} declared")
    for line in declared.dropped:
        reporter.say(f"    setup.py drops for CUDA {cuda_major(request)}: {line.strip()}")
    for old, new in declared.rewritten:
        reporter.say(f"    setup.py rewrites for CUDA {cuda_major(request)}: {old.strip()} -> {new.strip()}")
    removed: list[str] = []
    for path in (*declared.files_read, detected.build_requirements):
        if path in before:
            removed += torch_family.removed_lines(before[path].decode("utf-8", errors="replace"),
                                                  after.get(path, b"").decode("utf-8", errors="replace"))
    return StrippedTree(patched=patched, declared=declared, build=tuple(dict.fromkeys(build)),
                        removed=torch_family.removed_requirements(removed))


# ---------------------------------------------------------------- torch + uv


class IndexPages:
    """PEP 503 pages of one index, each fetched at most once per resolve; `routed` is the set of
    packages this resolve takes from it (torch, its triton and the commit's family)."""

    def __init__(self, index: str) -> None:
        self.index = index
        self._pages: dict[str, tuple[nightly.Link, ...]] = {}
        self.routed: frozenset[str] = frozenset({torch_family.TORCH, *torch_family.TRITON.values()})
        self._projects: frozenset[str] | None = None

    def links(self, project: str) -> tuple[nightly.Link, ...]:
        if project not in self._pages:
            url = f"{self.index}/{project}/"
            try:
                page = http.get_text(url)
            except http.NotFound:
                self._pages[project] = ()
            else:
                self._pages[project] = nightly.parse_simple_page(page, url)
        return self._pages[project]

    def prefetch(self, projects: tuple[str, ...]) -> None:
        """Fetch these pages and the root page now, ignoring failures (links() retries them)."""
        try:
            self.projects()
            for project in projects:
                self.links(project)
        except VllmLockError:
            pass

    def projects(self) -> frozenset[str]:
        """The projects the index's root page lists (one request; none if it has no root page)."""
        if self._projects is None:
            try:
                page = http.get_text(f"{self.index}/")
            except http.NotFound:
                page = ""
            links = nightly.parse_simple_page(page, self.index)
            self._projects = frozenset(canonicalize_name(link.filename) for link in links)
        return self._projects

    def link(self, project: str, url: str) -> nightly.Link | None:
        """The link with this URL on the project's page. Outside the torch family only projects
        the index lists are looked at (a torch index mirrors a few general packages)."""
        if project not in self._pages and project not in self.routed and project not in self.projects():
            return None
        return next((link for link in self.links(project) if link.url == url), None)


@dataclass(frozen=True, kw_only=True, slots=True)
class Family:
    """The commit's torch family for this target, less what --without left out."""

    members: tuple[torch_family.Member, ...]
    left_out: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)


def family_for(request: ResolveRequest, target: Target, source: SourceFacts, pages: IndexPages,
               reporter: Reporter) -> Family:
    reading = torch_family.family_members(source.removed, source.runtime, carried=lambda name: bool(pages.links(name)),
                                          environment=torch_family.target_environment(target))
    members = reading.members
    for line in reading.not_locked:
        reporter.say(f"    {line}: removed by the stripping script, not a torch-index package: not locked "
                     "(the build will not declare it)")
    try:
        kept, left_out = torch_family.leave_out(members, request.without)
    except torch_family.FamilyError as exc:
        raise UsageError(str(exc)) from None
    for member in members:
        how = "left out (--without)" if member.name in left_out else ", ".join(member.lines)
        reporter.say(f"    torch family: {member.name} ({member.origin}: {how})")
    pages.routed = pages.routed | {m.name for m in kept}
    return Family(members=kept, left_out=left_out)


def resolve_packages(
    request: ResolveRequest, target: Target, source: SourceFacts, pages: IndexPages, reporter: Reporter
) -> tuple[TorchInput, str, Family]:
    index = request.torch_index_url
    torch_wheels = pages.links("torch")
    if not torch_wheels:
        raise UnreachableError(f"torch index {index} lists no torch wheels")
    family = family_for(request, target, source, pages, reporter)
    if request.torch_channel == "release":
        return (*_resolve_release(request, target, source, family, pages, torch_wheels, reporter), family)
    builds = nightly.nightly_builds(torch_wheels, cuda=request.cuda, target=target)
    if not builds:
        raise NoNightlyError(f"no torch nightly for {request.cuda}, Python {target.python}, {target.platform} on "
                             f"{index}")
    member_builds = {
        m.name: {d: w.version for d, w in nightly.nightly_builds(pages.links(m.name), cuda=request.cuda,
                                                                 target=target).items()}
        for m in family.members
    }
    if request.torch_date == "latest":
        tried = []
        for date in nightly.latest_first(builds)[:LATEST_MAX_TRIES]:
            try:
                return (*_resolve_nightly(request, target, source, family, date, builds, member_builds, reporter),
                        family)
            except CompanionMismatchError as exc:
                reporter.say(f"    {date}: skipped ({exc})")
                tried.append(str(date))
        raise CompanionMismatchError(
            f"no nightly among the newest {len(tried)} ({tried[-1]} .. {tried[0]}) resolves with its companions"
        )
    wanted = nightly.parse_requested_date(request.torch_date)
    if wanted not in builds:
        near = ", ".join(str(d) for d in nightly.nearest_dates(builds, wanted))
        raise NoNightlyError(f"no torch nightly on {wanted} for {request.cuda}/{target.python}; nearest: {near}")
    return (*_resolve_nightly(request, target, source, family, wanted, builds, member_builds, reporter), family)


def _member_error(exc: torch_family.FamilyError, request: ResolveRequest, target: Target) -> ResolutionError:
    """A member the index lacks (no build of it at all): no other date can help."""
    return ResolutionError(f"{exc} ({request.cuda}, Python {target.python}, {target.platform}) on "
                           f"{request.torch_index_url}; `--without {exc.member}` leaves it out on purpose")


def nightly_choices(
    family: Family, date: dt.date, member_builds: dict[str, dict[dt.date, Version]], request: ResolveRequest,
    target: Target,
) -> list[torch_family.MemberChoice]:
    """What uv is asked for each member with the torch of `date`."""
    choices, gaps = [], []
    for member in family.members:
        try:
            choices.append(torch_family.choose_nightly(member, member_builds[member.name], date))
        except torch_family.CompanionGap as exc:
            gaps.append(exc.member)
        except torch_family.FamilyError as exc:
            raise _member_error(exc, request, target) from None
    if gaps:
        raise CompanionMismatchError(f"no {' or '.join(gaps)} nightly built on {date} or the day after")
    return choices


def _resolve_nightly(
    request: ResolveRequest,
    target: Target,
    source: SourceFacts,
    family: Family,
    date: dt.date,
    builds: NightlyBuilds,
    member_builds: dict[str, dict[dt.date, Version]],
    reporter: Reporter,
) -> tuple[TorchInput, str]:
    torch_wheel = builds[date]
    choices = nightly_choices(family, date, member_builds, request, target)
    reporter.say(f"    torch nightly {date}: {torch_wheel.version}")
    pylock = compile_preferring(request, target, source, family, f"torch=={torch_wheel.version}", choices, reporter)
    locked = _locked_versions(pylock)
    version = locked.get("torch")
    if version != str(torch_wheel.version):
        raise ResolutionError(f"uv resolved torch {version}, expected {torch_wheel.version}")
    torch_input = TorchInput(
        channel="nightly",
        requested=request.torch_date,
        cuda=request.cuda,
        index=request.torch_index_url,
        version=version,
        date=date.isoformat(),
        companions=_companions(family, locked),
        left_out=family.left_out,
    )
    return torch_input, pylock


def _companions(family: Family, locked: dict[str, str]) -> tuple[Pin, ...]:
    names = (*family.names, *sorted(set(torch_family.TRITON.values()) - set(family.names)))
    return tuple(Pin(name=n, version=locked[n]) for n in names if n in locked)


def _resolve_release(
    request: ResolveRequest,
    target: Target,
    source: SourceFacts,
    family: Family,
    pages: IndexPages,
    torch_links: tuple[nightly.Link, ...],
    reporter: Reporter,
) -> tuple[TorchInput, str]:
    releases = nightly.release_versions(torch_links, cuda=request.cuda, target=target)
    wanted = (request.torch_version or "").split("+")[0]
    if wanted not in releases:
        known = sorted(releases, key=Version)
        near = ", ".join(known[-5:]) or "none"
        raise UnknownTorchVersionError(
            f"torch {wanted} does not exist for {request.cuda}/{target.python} on {request.torch_index_url}; "
            f"newest available: {near}"
        )
    version = str(releases[wanted].version)
    try:
        choices = [torch_family.choose_release(m, nightly.release_builds(pages.links(m.name), cuda=request.cuda,
                                                                         target=target))
                   for m in family.members]
    except torch_family.FamilyError as exc:
        raise _member_error(exc, request, target) from None
    pylock = compile_preferring(request, target, source, family, f"torch=={version}", choices, reporter)
    locked = _locked_versions(pylock)
    return (
        TorchInput(
            channel="release",
            requested=wanted,
            cuda=request.cuda,
            index=request.torch_index_url,
            version=version,
            date=None,
            companions=_companions(family, locked),
            left_out=family.left_out,
        ),
        pylock,
    )


def compile_preferring(
    request: ResolveRequest,
    target: Target,
    source: SourceFacts,
    family: Family,
    torch_pin: str,
    choices: list[torch_family.MemberChoice],
    reporter: Reporter,
) -> str:
    """Compile with each member at the commit's own pin where one was chosen; when uv finds no
    solution and names such a member, that pin does not fit this torch (its metadata says
    otherwise): compile once more with what fits instead."""
    for choice in choices:
        reporter.say(f"    asking for {choice.requirement}" + (" (the commit's pin)" if choice.preferred else ""))
    pins = [torch_pin, *(c.requirement for c in choices)]
    ok, output = _run_compile(request, target, source, family, pins, reporter)
    if ok:
        return output
    preferred = [c for c in choices if c.fallback]
    if not preferred or "no solution" not in output.lower():
        raise _compile_error(output, pins, target, _routed(request, family))
    unfit = [c for c in preferred if c.member.name in output.lower()] or preferred
    for choice in unfit:
        reporter.say(f"    {choice.requirement} (the commit's pin) does not fit {torch_pin}: asking for "
                     f"{choice.fallback}")
    retry = [dataclasses.replace(c, requirement=c.fallback, preferred=False, fallback=None) if c in unfit and c.fallback
             else c for c in choices]
    return compile_set(request, target, source, family, [torch_pin, *(c.requirement for c in retry)], reporter)


def _locked_versions(pylock: str) -> dict[str, str]:
    return {canonicalize_name(p["name"]): p["version"] for p in tomllib.loads(pylock).get("packages", [])}


def synthetic_project(requirements: list[str], torch_index: str, routed: Iterable[str]) -> str:
    """A pyproject whose dependencies are the whole set, with the torch family pinned to an
    explicit index: uv then takes those only from there and everything else only from the
    general index (no dependency confusion)."""
    import tomlkit

    doc = tomlkit.document()
    doc["project"] = {"name": "vllm-lock-resolution", "version": "0", "dependencies": requirements}
    index = tomlkit.aot()
    index.append(tomlkit.item({"name": "torch-index", "url": torch_index, "explicit": True}))
    doc["tool"] = {"uv": {"index": index, "sources": {n: {"index": "torch-index"} for n in sorted(routed)}}}
    return tomlkit.dumps(doc)


def compile_requirements(source: SourceFacts, torch_pins: list[str], triton: str,
                         left_out: Iterable[str] = ()) -> list[str]:
    """The whole set: what the build declares and needs, less the members left out on purpose,
    and the torch family's pins. Triton is listed directly (unpinned, torch pins it) so that
    the explicit-index source applies to it: nightlies use pytorch-triton, releases triton."""
    skipped = set(left_out)
    requirements = [r for r in (*source.runtime, *source.build)
                    if canonicalize_name(Requirement(r).name) not in skipped]
    requirements += torch_pins
    requirements.append(f"{triton}; platform_system == 'Linux' and platform_machine == 'x86_64'")
    return list(dict.fromkeys(requirements))


def _routed(request: ResolveRequest, family: Family) -> frozenset[str]:
    return frozenset({torch_family.TORCH, torch_family.TRITON[request.torch_channel], *family.names})


def compile_set(
    request: ResolveRequest, target: Target, source: SourceFacts, family: Family, torch_pins: list[str],
    reporter: Reporter,
) -> str:
    ok, output = _run_compile(request, target, source, family, torch_pins, reporter)
    if not ok:
        raise _compile_error(output, torch_pins, target, _routed(request, family))
    return output


def _run_compile(
    request: ResolveRequest, target: Target, source: SourceFacts, family: Family, torch_pins: list[str],
    reporter: Reporter,
) -> tuple[bool, str]:
    """(True, the pylock) or (False, uv's output)."""
    triton = torch_family.TRITON[request.torch_channel]
    requirements = compile_requirements(source, torch_pins, triton, family.left_out)
    with tempfile.TemporaryDirectory(prefix="vllm-lock-compile-") as tmp:
        project = Path(tmp) / "pyproject.toml"
        project.write_text(synthetic_project(requirements, request.torch_index_url, _routed(request, family)))
        output = Path(tmp) / "pylock.toml"
        argv = uv_shell.compile_argv(
            project=project,
            output=output,
            python=target.python,
            platform=target.platform,
            default_index=request.general_index,
        )
        result = uv_shell.run_compile(argv, cwd=Path(tmp), cache=request.cache, log=reporter.log,
                                      indexes=(request.general_index, request.torch_index_url))
        return (True, output.read_text()) if result.ok else (False, result.output)


_NO_WHEEL_PLATFORM = re.compile(
    r"Wheels are available for `(?P<name>[^`]+)` \((?P<version>[^)]*)\) on the following platforms?: (?P<tags>.+)")
_NO_WHEEL_PYTHON = re.compile(
    r"we only found wheels for `(?P<name>[^`]+)` \((?P<version>[^)]*)\) with the following Python "
    r"(?:implementation|ABI) tags?: (?P<tags>.+)")
_NO_WHEEL_CAUSE = re.compile(r"Because (?:only )?(?P<name>[A-Za-z0-9._-]+)[=<>!~ ][^ ]* has no wheels with a matching "
                             r"(?P<what>platform|Python implementation|Python ABI) tag")


def no_wheel_message(output: str, target: Target) -> str | None:
    """When uv found no solution because a package ships no wheel for the target: one line
    naming the package and the platforms (or Python tags) it does ship. None otherwise."""
    flat = " ".join(output.split())
    for pattern, what, wanted in ((_NO_WHEEL_PLATFORM, "platforms", target.platform),
                                  (_NO_WHEEL_PYTHON, "Python tags", f"Python {target.python}")):
        if match := pattern.search(flat):
            tags = ", ".join(re.findall(r"`([^`]+)`", match.group("tags"))) or match.group("tags")
            return (f"{match.group('name')} {match.group('version')} ships no wheel for {wanted}; "
                    f"its wheels are for these {what}: {tags}")
    if match := _NO_WHEEL_CAUSE.search(flat):
        return (f"{match.group('name')} ships no wheel for {target.platform}, Python {target.python} (no "
                f"{match.group('what')} tag matches)")
    return None


def _compile_error(output: str, torch_pins: list[str], target: Target, routed: frozenset[str]) -> Exception:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    detail = next((line for line in lines if "because" in line or "No solution" in line), lines[-1] if lines else "?")
    for line in lines:
        if line.startswith(("error:", "×")) and "No solution" not in line:
            detail = line
            break
    lowered = output.lower()
    if any(tok in lowered for tok in ("failed to fetch", "connection", "dns", "timed out", "certificate")):
        return UnreachableError(f"an index was unreachable while resolving: {detail}")
    if (no_wheel := no_wheel_message(output, target)) is not None:
        if canonicalize_name(no_wheel.split()[0]) in routed:  # another nightly may have it
            return CompanionMismatchError(f"torch companions cannot match ({', '.join(torch_pins)}): {no_wheel}")
        return ResolutionError(no_wheel)
    members = routed - {torch_family.TORCH, *torch_family.TRITON.values()}
    if "no solution" in lowered and any(name in lowered for name in members):
        return CompanionMismatchError(f"torch companions cannot match ({', '.join(torch_pins)}): {_uv_reason(lines)}")
    return ResolutionError(f"uv could not resolve the package set: {_uv_reason(lines)}")


def _uv_reason(lines: list[str]) -> str:
    body = [line.lstrip("╰─▶ ").strip() for line in lines if not line.startswith("×")]
    return " ".join(body[:2])[:400] if body else "?"


# ---------------------------------------------------------------- hashes


def hash_packages(pylock: str, request: ResolveRequest, pages: IndexPages, reporter: Reporter) -> tuple[Package, ...]:
    """Every package with every wheel uv lists for the target (several can fit: manylinux_2_17
    and _2_28, abi3 and cpXY, a platform wheel beside py3-none-any; the installer picks one for
    the machine), each with URL, size and sha256."""
    store = Store(request.cache)
    packages = []
    for entry in tomllib.loads(pylock).get("packages", []):
        name = canonicalize_name(entry["name"])
        source: PackageSource = "torch" if name in pages.routed else "general"
        listed = entry.get("wheels", [])
        if not listed:
            raise ResolutionError(f"{name}: uv locked no wheel for the target")
        wheels = sorted((hash_wheel(name, source, wheel, request, pages, store, reporter) for wheel in listed),
                        key=lambda w: w.plain_filename)
        try:
            packages.append(Package(name=name, version=entry["version"], source=source, wheels=tuple(wheels)))
        except ModelError as exc:
            raise ResolutionError(f"{name} {entry['version']} cannot be locked: {exc}") from None
    return tuple(sorted(packages, key=lambda p: p.name))


def hash_wheel(
    name: str, source: PackageSource, wheel: dict[str, Any], request: ResolveRequest, pages: IndexPages,
    store: Store, reporter: Reporter,
) -> Wheel:
    """One wheel's sha256 and size. The general index publishes hashes (uv reports them); for
    torch-index files only a #sha256= on the page counts, otherwise the file is downloaded into
    the content-addressed cache (so install does not download it again) and hashed here,
    whatever uv may have computed on its own. A hash without a size is completed by asking
    (HEAD, then the index's JSON form), not by downloading."""
    torch_index = request.torch_index_url
    url = wheel["url"]
    filename = unquote(wheel.get("name") or url.rsplit("/", 1)[-1])
    if source == "torch":
        link = pages.link(name, url)
        if link is None:
            raise ResolutionError(f"{name}: {url} is not listed on the torch index {torch_index}: refusing")
        sha256 = link.sha256
        size = wheel.get("size") if sha256 else None
    else:
        if pages.link(name, url) is not None:
            raise ResolutionError(f"{name} was taken from the torch index, not the general index: refusing")
        sha256, size = wheel.get("hashes", {}).get("sha256"), wheel.get("size")
        if not sha256:
            raise ResolutionError(f"{name}: the general index publishes no sha256 for {filename}")
    origin: HashOrigin = "index" if sha256 else "downloaded"
    known = None if sha256 or request.rehash else store.unchanged(url, filename)
    if known is not None:
        sha256, size = known
        reporter.say(f"    {filename}: same ETag and size as when hashed, hash from the cache")
    elif sha256 and not size:
        index = torch_index if source == "torch" else request.general_index.rstrip("/")
        size, how = size_without_download(url, filename, f"{index}/{name}/")
        if size:
            reporter.say(f"    {filename}: hash from the index, size from {how}")
    if not sha256 or not size:
        reporter.say(f"    downloading {filename} to hash it (the index publishes no "
                     f"{'hash' if not sha256 else 'size'})")
        sha256, size, _ = store.fetch(url, filename, expected_sha256=sha256, on_progress=_progress(reporter, filename))
    return Wheel(filename=filename, url=url, size=int(size), sha256=sha256, hash_origin=origin)


def size_without_download(url: str, filename: str, project_page: str) -> tuple[int | None, str]:
    """A file's size without its bytes: the server's Content-Length (HEAD), else the `size` the
    index's PEP 691 JSON page gives it (PEP 700). (None, "") when neither says."""
    try:
        length = http.head(url).size
    except (http.NotFound, UnreachableError):
        length = None
    if length:
        return length, "HEAD"
    try:
        page = json.loads(http.get_text(project_page, accept=PEP691_JSON))
    except (http.NotFound, UnreachableError, ValueError):
        return None, ""
    files = page.get("files") if isinstance(page, dict) else None
    for item in files if isinstance(files, list) else ():
        size = item.get("size") if isinstance(item, dict) else None
        if isinstance(item, dict) and unquote(str(item.get("filename"))) == filename and _is_size(size):
            return size, "the index's JSON page"
    return None, ""


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _progress(reporter: Reporter, filename: str) -> Callable[[int, int | None], None]:
    marks: set[int] = set()

    def show(done: int, total: int | None) -> None:
        if total and total > (8 << 20):
            tenth = done * 10 // total
            if tenth not in marks:
                marks.add(tenth)
                reporter.say(f"    {filename}: {done >> 20}/{total >> 20} MiB")

    return show


def parse_build_env(items: list[str]) -> tuple[tuple[str, str], ...]:
    """--build-env KEY=VALUE, by the rule a lock's build.env is read with (model.build_env_problem)."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--build-env {show(item)} is not KEY=VALUE")
        if problem := build_env_problem(key, value):
            raise UsageError(f"--build-env {show(key)}: {problem}")
        if key in pairs:
            raise UsageError(f"--build-env {key} is given twice")
        pairs[key] = value
    return tuple(sorted(pairs.items()))
