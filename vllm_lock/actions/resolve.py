"""resolve: (vLLM ref, torch nightly date, build deps) -> a hashed lock."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import unquote

from packaging.utils import canonicalize_name
from packaging.version import Version

import vllm_lock
from vllm_lock import cuda as cuda_rules
from vllm_lock import layout as layout_rules
from vllm_lock import nightly
from vllm_lock.defaults import DEFAULT_GENERAL_INDEX, DEFAULT_REPO
from vllm_lock.errors import (
    CompanionMismatchError,
    NoNightlyError,
    ResolutionError,
    UnknownRefError,
    UnknownTorchVersionError,
    UnreachableError,
    UsageError,
)
from vllm_lock.model import (
    BuildRecipe,
    ExternalPin,
    ExternalSource,
    HashOrigin,
    Layout,
    Lock,
    ModelError,
    Package,
    PackageSource,
    PatchedFile,
    Pin,
    Provenance,
    Target,
    TorchInput,
    VllmInput,
)
from vllm_lock.progress import Reporter
from vllm_lock.shell import git as git_shell
from vllm_lock.shell import http, lockfiles
from vllm_lock.shell import uv as uv_shell
from vllm_lock.shell.store import Store, cache_root
from vllm_lock.shell.stripping import run_stripping_script, snapshot

COMPANIONS = ("torchvision", "torchaudio")
# Routed to the torch index only; everything else comes from the general index only.
TORCH_INDEX_PACKAGES = ("torch", "torchvision", "torchaudio", "pytorch-triton", "triton")
LATEST_MAX_TRIES = 10
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
    platform: str = "x86_64-manylinux_2_28"
    flash_attn_version: str = "2"
    target_device: str = "cuda"
    build_env: tuple[tuple[str, str], ...] = ()
    editable: bool = True
    name: str = "dev"
    phase: Literal["development", "stable"] = "development"
    output: Path | None = None
    cache: Path = field(default_factory=cache_root)
    rehash: bool = False  # download unhashed files again even when the server's ETag did not change

    @property
    def torch_index_url(self) -> str:
        return (self.torch_index or default_torch_index(self.torch_channel, self.cuda)).rstrip("/")

    @property
    def output_path(self) -> Path:
        return self.output if self.output is not None else lockfiles.path_for_name(self.name)


def validate(request: ResolveRequest) -> tuple[Target, BuildRecipe]:
    """Everything checkable before touching the network; UsageError otherwise."""
    try:
        variant = cuda_rules.parse_variant(request.cuda)
        target = Target(python=request.python, platform=request.platform)
        recipe = BuildRecipe(
            cuda_archs=request.archs,
            flash_attn_version=request.flash_attn_version,
            target_device=request.target_device,
            editable=request.editable,
            env=tuple(sorted(request.build_env)),
        )
    except (ValueError, ModelError) as exc:
        raise UsageError(str(exc)) from None
    for arch in request.archs:
        if problem := cuda_rules.arch_problem(arch, variant):
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
    layout: Layout
    external_sources: tuple[ExternalSource, ...]
    runtime: tuple[str, ...]
    build: tuple[str, ...]


LOGS_KEPT = 20


def resolve(request: ResolveRequest, reporter: Reporter) -> tuple[Lock, Path, bool]:
    """Resolve and write the lock; returns (lock, path, whether the file changed). Everything it
    says and uv's whole output go to a log file under <cache>/logs (the newest 20 are kept)."""
    target, recipe = validate(request)
    output = request.output_path
    lockfiles.check_writable(output)
    logs = request.cache / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    log_path = logs / f"resolve-{request.name}-{stamp}.log"
    with log_path.open("w", encoding="utf-8") as log:
        rep = reporter.with_log(log)
        rep.say(f"full log: {log_path}")
        try:
            return _resolve(request, target, recipe, output, rep)
        finally:
            reporter.timings.update(rep.timings)
            for old in sorted(logs.glob("resolve-*.log"), key=lambda p: p.stat().st_mtime)[:-LOGS_KEPT]:
                old.unlink(missing_ok=True)


def _resolve(
    request: ResolveRequest, target: Target, recipe: BuildRecipe, output: Path, reporter: Reporter
) -> tuple[Lock, Path, bool]:
    with reporter.step("vLLM source"):
        source = read_source(request, reporter)
    pages = IndexPages(request.torch_index_url)
    with reporter.step("torch and the package set"):
        torch_input, pylock = resolve_packages(request, target, source, pages, reporter)
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
        layout=source.layout,
        external_sources=source.external_sources,
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


def read_source(request: ResolveRequest, reporter: Reporter) -> SourceFacts:
    commit = git_shell.resolve_ref(request.repo, request.ref)
    reporter.say(f"    {request.ref} -> {commit}")
    repo = git_shell.update_mirror(request.cache, request.repo, commit)
    files = git_shell.list_files(repo, commit)

    def read(path: str) -> str:
        return git_shell.read_blob(repo, commit, path).decode("utf-8", errors="replace")

    try:
        detected = layout_rules.detect_layout(files, read)
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
    reporter.say(f"    layout: {detected.stripping_script} ({detected.stripping_mode}), {detected.build_requirements}")
    cmake = {p: read(p) for p in files if layout_rules.is_cmake_pin_file(p)}
    with tempfile.TemporaryDirectory(prefix="vllm-lock-src-") as tmp:
        tree = Path(tmp)
        git_shell.export_tree(repo, commit, tree)
        patched, runtime, build = strip_and_read(tree, detected, reporter)
    layout = Layout(
        stripping_script=detected.stripping_script,
        stripping_mode=detected.stripping_mode,
        runtime_requirements=detected.runtime_requirements,
        build_requirements=detected.build_requirements,
        patched_files=patched,
        runtime_set=runtime,
        build_set=build,
    )
    vllm = VllmInput(url=request.repo, ref=request.ref, commit=commit, commit_date=git_shell.commit_date(repo, commit))
    try:
        pins = layout_rules.external_pins(cmake)
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"commit {commit[:9]}: {exc}") from None
    externals = lock_external_sources(pins, reporter)
    return SourceFacts(vllm=vllm, layout=layout, external_sources=externals, runtime=runtime, build=build)


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
        reporter.say(f"    external {pin.name}: {pin.ref} -> {commit[:12]} (via {pin.override})")
        locked.append(ExternalSource.locked(pin, commit))
    return tuple(locked)


def strip_and_read(
    tree: Path, detected: layout_rules.DetectedLayout, reporter: Reporter
) -> tuple[tuple[PatchedFile, ...], tuple[str, ...], tuple[str, ...]]:
    before = snapshot(tree)
    argv = (detected.stripping_script, "--prefix") if detected.stripping_mode == "prefix" else (detected.stripping_script,)
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
        runtime = layout_rules.parse_requirement_file(detected.runtime_requirements, read)
        build = layout_rules.parse_requirement_file(detected.build_requirements, read)
        if (tree / "pyproject.toml").is_file():
            build += layout_rules.build_system_requires(read("pyproject.toml"))
    except layout_rules.LayoutError as exc:
        raise ResolutionError(f"cannot read requirements: {exc}") from None
    runtime = layout_rules.without_torch_family(runtime)
    build = layout_rules.without_torch_family(tuple(dict.fromkeys(build)))
    return patched, runtime, build


# ---------------------------------------------------------------- torch + uv


class IndexPages:
    """PEP 503 pages of one index, each fetched at most once per resolve."""

    def __init__(self, index: str) -> None:
        self.index = index
        self._pages: dict[str, tuple[nightly.Link, ...]] = {}

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

    def link(self, project: str, url: str) -> nightly.Link | None:
        """The link with this URL on the project's page (pages already fetched only, for
        packages outside the torch family)."""
        if project not in self._pages and project not in TORCH_INDEX_PACKAGES:
            return None
        return next((link for link in self.links(project) if link.url == url), None)


def resolve_packages(
    request: ResolveRequest, target: Target, source: SourceFacts, pages: IndexPages, reporter: Reporter
) -> tuple[TorchInput, str]:
    index = request.torch_index_url
    torch_wheels = pages.links("torch")
    if not torch_wheels:
        raise UnreachableError(f"torch index {index} lists no torch wheels")
    if request.torch_channel == "release":
        return _resolve_release(request, target, source, torch_wheels, reporter)
    builds = nightly.nightly_builds(torch_wheels, cuda=request.cuda, target=target)
    if not builds:
        raise NoNightlyError(f"no torch nightly for {request.cuda}, Python {target.python}, {target.platform} on {index}")
    companion_builds = {
        name: nightly.nightly_builds(pages.links(name), cuda=request.cuda, target=target) for name in COMPANIONS
    }
    if request.torch_date == "latest":
        tried = []
        for date in nightly.latest_first(builds)[:LATEST_MAX_TRIES]:
            try:
                return _resolve_nightly(request, target, source, date, builds, companion_builds, reporter)
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
    return _resolve_nightly(request, target, source, wanted, builds, companion_builds, reporter)


def nightly_pins(
    date: dt.date, builds: NightlyBuilds, companion_builds: dict[str, NightlyBuilds]
) -> list[str]:
    """uv requirements for the torch of `date`: torch exactly, each companion within the
    nightlies built that day or the next (uv picks the one whose metadata pins this torch)."""
    torch_wheel = builds[date]
    pins = [f"torch=={torch_wheel.version}"]
    for name in COMPANIONS:
        candidates = nightly.companion_candidates(companion_builds[name], date)
        if not candidates:
            raise CompanionMismatchError(f"no {name} nightly built on {date} or the day after for torch {torch_wheel.version}")
        low = min(c.version for c in candidates)
        high = max(c.version for c in candidates)
        pins.append(f"{name}>={low.public},<={high.public}")
    return pins


def _resolve_nightly(
    request: ResolveRequest,
    target: Target,
    source: SourceFacts,
    date: dt.date,
    builds: NightlyBuilds,
    companion_builds: dict[str, NightlyBuilds],
    reporter: Reporter,
) -> tuple[TorchInput, str]:
    torch_wheel = builds[date]
    pins = nightly_pins(date, builds, companion_builds)
    reporter.say(f"    torch nightly {date}: {torch_wheel.version}")
    pylock = compile_set(request, target, source, pins, reporter)
    locked = _locked_versions(pylock)
    version = locked.get("torch")
    if version != str(torch_wheel.version):
        raise ResolutionError(f"uv resolved torch {version}, expected {torch_wheel.version}")
    companions = tuple(
        Pin(name=name, version=locked[name]) for name in (*COMPANIONS, "pytorch-triton", "triton") if name in locked
    )
    torch_input = TorchInput(
        channel="nightly",
        requested=request.torch_date,
        cuda=request.cuda,
        index=request.torch_index_url,
        version=version,
        date=date.isoformat(),
        companions=companions,
    )
    return torch_input, pylock


def _resolve_release(
    request: ResolveRequest,
    target: Target,
    source: SourceFacts,
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
    pylock = compile_set(request, target, source, [f"torch=={version}", *COMPANIONS], reporter)
    locked = _locked_versions(pylock)
    companions = tuple(Pin(name=n, version=locked[n]) for n in (*COMPANIONS, "pytorch-triton", "triton") if n in locked)
    return (
        TorchInput(
            channel="release",
            requested=wanted,
            cuda=request.cuda,
            index=request.torch_index_url,
            version=version,
            date=None,
            companions=companions,
        ),
        pylock,
    )


def _locked_versions(pylock: str) -> dict[str, str]:
    return {canonicalize_name(p["name"]): p["version"] for p in tomllib.loads(pylock).get("packages", [])}


def synthetic_project(requirements: list[str], torch_index: str) -> str:
    """A pyproject whose dependencies are the whole set, with the torch family pinned to an
    explicit index: uv then takes those only from there and everything else only from the
    general index (no dependency confusion)."""
    import tomlkit

    doc = tomlkit.document()
    doc["project"] = {"name": "vllm-lock-resolution", "version": "0", "dependencies": requirements}
    index = tomlkit.aot()
    index.append(tomlkit.item({"name": "torch-index", "url": torch_index, "explicit": True}))
    doc["tool"] = {"uv": {"index": index, "sources": {n: {"index": "torch-index"} for n in TORCH_INDEX_PACKAGES}}}
    return tomlkit.dumps(doc)


def compile_requirements(source: SourceFacts, torch_pins: list[str], triton: str) -> list[str]:
    """The whole set. Triton is listed directly (unpinned, torch pins it) so that the
    explicit-index source applies to it: nightlies use pytorch-triton, releases triton."""
    requirements = [*source.runtime, *source.build, *torch_pins]
    requirements.append(f"{triton}; platform_system == 'Linux' and platform_machine == 'x86_64'")
    return list(dict.fromkeys(requirements))


def compile_set(
    request: ResolveRequest, target: Target, source: SourceFacts, torch_pins: list[str], reporter: Reporter
) -> str:
    triton = "pytorch-triton" if request.torch_channel == "nightly" else "triton"
    requirements = compile_requirements(source, torch_pins, triton)
    with tempfile.TemporaryDirectory(prefix="vllm-lock-compile-") as tmp:
        project = Path(tmp) / "pyproject.toml"
        project.write_text(synthetic_project(requirements, request.torch_index_url))
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
        if not result.ok:
            raise _compile_error(result.output, torch_pins)
        return output.read_text()


def _compile_error(output: str, torch_pins: list[str]) -> Exception:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    detail = next((line for line in lines if "because" in line or "No solution" in line), lines[-1] if lines else "?")
    for line in lines:
        if line.startswith(("error:", "×")) and "No solution" not in line:
            detail = line
            break
    lowered = output.lower()
    if any(tok in lowered for tok in ("failed to fetch", "connection", "dns", "timed out", "certificate")):
        return UnreachableError(f"an index was unreachable while resolving: {detail}")
    if "no solution" in lowered and any(name in lowered for name in COMPANIONS):
        return CompanionMismatchError(f"torch companions cannot match ({', '.join(torch_pins)}): {_uv_reason(lines)}")
    return ResolutionError(f"uv could not resolve the package set: {_uv_reason(lines)}")


def _uv_reason(lines: list[str]) -> str:
    body = [line.lstrip("╰─▶ ").strip() for line in lines if not line.startswith("×")]
    return " ".join(body[:2])[:400] if body else "?"


# ---------------------------------------------------------------- hashes


def hash_packages(pylock: str, request: ResolveRequest, pages: IndexPages, reporter: Reporter) -> tuple[Package, ...]:
    """Every artifact with URL, size and sha256. The general index publishes hashes (uv reports
    them); for torch-index files only a #sha256= on the page counts, otherwise the file is
    downloaded into the content-addressed cache (so install does not download it again) and
    hashed here, whatever uv may have computed on its own."""
    store = Store(request.cache)
    torch_index = request.torch_index_url
    packages = []
    for entry in tomllib.loads(pylock).get("packages", []):
        name = canonicalize_name(entry["name"])
        wheels = entry.get("wheels", [])
        if len(wheels) != 1:
            raise ResolutionError(f"{name}: expected exactly one wheel for the target, uv gave {len(wheels)}")
        wheel = wheels[0]
        source: PackageSource = "torch" if name in TORCH_INDEX_PACKAGES else "general"
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
        elif not sha256 or not size:
            reporter.say(f"    downloading {filename} to hash it (the index publishes no {'hash' if not sha256 else 'size'})")
            sha256, size, _ = store.fetch(url, filename, expected_sha256=sha256, on_progress=_progress(reporter, filename))
        packages.append(
            Package(
                name=name,
                version=entry["version"],
                source=source,
                filename=filename,
                url=url,
                size=int(size),
                sha256=sha256,
                hash_origin=origin,
            )
        )
    return tuple(sorted(packages, key=lambda p: p.name))


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
    pairs = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--build-env {item!r} is not KEY=VALUE")
        if key == "MAX_JOBS":
            raise UsageError("MAX_JOBS does not change the build output; set it at install time (--max-jobs)")
        pairs.append((key, value))
    return tuple(sorted(pairs))
