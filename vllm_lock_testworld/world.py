"""TestWorld: package indexes over HTTP/HTTPS plus a vLLM-shaped git repository.

Nightly scenarios (torch 2.10.0.devYYYYMMDD+cu128, cp311/cp312, manylinux_2_28_x86_64):
  2026-11-02  consistent (torchvision/torchaudio of the same date pin it)
  2026-11-03  broken companions: torch only, nothing pins it
  2026-11-05  consistent
  2026-11-09  lagging: torchaudio same date; torchvision only as the 2026-11-10 file
  2026-11-10  (no torch) torchvision pinning torch 2026-11-09
  2026-11-12  consistent, also manylinux_2_28_aarch64  -> latest_consistent_date
  2026-11-13  newest torch + torchvision, torchaudio missing -> not consistent
pytorch-triton 3.5.0+git<8 hex> changes on 2026-11-07. The nightly index also mirrors a
decoy typing-extensions 4.99.0 (dependency confusion), and a third index, a "merging mirror"
(`confused_general_index`, like a proxy that aggregates PyPI and the torch index), lists every
general file plus that decoy at its torch-index URL: uv resolves typing-extensions from the torch
index through it. Releases: torch 2.9.0/2.9.1+cu128, and torchcodec 0.8.0/0.9.0+cu128
(each fits any torch >= 2.9.0).

External sources (externals.py): real git repositories under <root>/external/ for CUTLASS
(tags v4.0.0, v4.1.0, v4.2.1), flash-attention (roles old/new/newest, csrc/cutlass submodule)
and FlashMLA (roles 1/2); the vLLM repository's cmake files pin them by file:// URL.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from . import crates, externals
from . import packages as pk
from .certs import make_tls
from .pypi import PYPI_WHEELS, fetch_pypi_wheels
from .repo import RepoInfo, add_commits, build_repo, history
from .repo_files import RepoState
from .server import IndexConfig, IndexStore, Listener, start_listener
from .wheels import WheelSpec, build_wheel, normalize

NIGHTLY = "/whl/nightly/cu128"
RELEASE = "/whl/cu128"
GENERAL = "/pypi/simple"
MIRROR = "/mirror/simple"
CRATES = "/crates"  # the Rust frontend's dependency crates, in static.crates.io's layout

D = dt.date
NIGHTLY_PLAN: tuple[pk.NightlyPlan, ...] = (
    pk.NightlyPlan(D(2026, 11, 2), vision_pins=D(2026, 11, 2), audio_pins=D(2026, 11, 2)),
    # broken: torch only, no companion pins it
    pk.NightlyPlan(D(2026, 11, 3)),
    pk.NightlyPlan(D(2026, 11, 5), vision_pins=D(2026, 11, 5), audio_pins=D(2026, 11, 5)),
    # lagging: torchaudio same day, torchvision only in the next day's file
    pk.NightlyPlan(D(2026, 11, 9), audio_pins=D(2026, 11, 9)),
    pk.NightlyPlan(D(2026, 11, 10), torch=False, vision_pins=D(2026, 11, 9)),
    # newest consistent date, also built for aarch64
    pk.NightlyPlan(D(2026, 11, 12), vision_pins=D(2026, 11, 12), audio_pins=D(2026, 11, 12),
                   aarch64=True),
    # newest torch, but torchaudio not uploaded yet
    pk.NightlyPlan(D(2026, 11, 13), vision_pins=D(2026, 11, 13)),
)
BROKEN_DATE = D(2026, 11, 3)
LAGGING_DATE = D(2026, 11, 9)
AARCH64_DATE = D(2026, 11, 12)


@dataclass
class _State:
    """Mutable bookkeeping behind the frozen TestWorld."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    specs: dict[str, tuple[str, WheelSpec]] = field(default_factory=dict)  # filename -> (index, spec)
    plans: list[pk.NightlyPlan] = field(default_factory=list)
    tritons: set[str] = field(default_factory=set)
    swaps: int = 0
    repo_state: RepoState | None = None
    commits: list[str] = field(default_factory=list)


@dataclass(frozen=True, eq=False)
class TestWorld:
    """A self-contained world of indexes and a git repo; see module docs for the scenarios."""

    __test__ = False  # not a pytest test class

    root: Path
    repo_path: Path
    external_root: Path  # <root>/external: the external source repositories (bind-mount it)
    ca_cert: Path
    tags: dict[str, str]
    layout_commits: dict[str, str]
    broken_companion_date: dt.date
    lagging_companion_date: dt.date
    aarch64_date: dt.date
    release_versions: list[str]
    _store: IndexStore
    _http: Listener
    _https: Listener
    _state: _State
    _externals: externals.ExternalsInfo

    # ---- construction -------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, pypi_cache: Path | None = None) -> TestWorld:
        """Build everything under root and start the HTTP and HTTPS listeners."""
        root = Path(root).resolve()
        root.mkdir(parents=True, exist_ok=True)
        cache = fetch_pypi_wheels(pypi_cache)
        store = IndexStore()
        store.add_index(IndexConfig(NIGHTLY, "/r2" + NIGHTLY, hashes=False, json=False))
        store.add_index(IndexConfig(RELEASE, "/r2" + RELEASE, hashes=True, json=False))
        store.add_index(IndexConfig(GENERAL, "/pypi/files", hashes=True, json=True))
        state = _State()
        for wheel in PYPI_WHEELS:
            project = wheel.filename.split("-")[0]
            store.add_file(GENERAL, project, wheel.filename, (cache / wheel.filename).read_bytes(),
                           wheel.requires_python)
        for spec in pk.general_generated_wheels():
            _publish(store, state, GENERAL, spec)
        for spec in (*pk.release_wheels(), *pk.codec_wheels()):
            _publish(store, state, RELEASE, spec)
        for spec in pk.decoy_wheels():
            _publish(store, state, NIGHTLY, spec)
        for plan in NIGHTLY_PLAN:
            _publish_plan(store, state, plan)
        _merge_mirror(store)
        for crate in crates.DEPENDENCIES:
            store.put_file(f"{CRATES}/{crate.name}/{crate.filename}", crates.crate_bytes(crate))
        ext = externals.build_externals(root / "external")
        info: RepoInfo = build_repo(root / "vllm", ext)
        state.repo_state = info.head_state
        state.commits = list(info.commits)
        tls = make_tls(root / "tls")
        http = start_listener(store)
        try:
            https = start_listener(store, tls.server_cert, tls.server_key)
        except Exception:
            http.close()
            raise
        return cls(
            root=root,
            repo_path=info.path,
            external_root=ext.root,
            ca_cert=tls.ca_cert,
            tags=dict(info.tags),
            layout_commits=dict(info.layout_commits),
            broken_companion_date=BROKEN_DATE,
            lagging_companion_date=LAGGING_DATE,
            aarch64_date=AARCH64_DATE,
            release_versions=[r[0] for r in pk.RELEASES],
            _store=store,
            _http=http,
            _https=https,
            _state=state,
            _externals=ext,
        )

    # ---- URLs ---------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self._http.base

    @property
    def https_base_url(self) -> str:
        return self._https.base

    @property
    def repo_url(self) -> str:
        return "file://" + str(self.repo_path)

    @property
    def torch_nightly_index(self) -> str:
        return self.base_url + NIGHTLY

    @property
    def torch_release_index(self) -> str:
        return self.base_url + RELEASE

    @property
    def general_index(self) -> str:
        return self.base_url + GENERAL

    @property
    def confused_general_index(self) -> str:
        """A general index that also serves the torch index's typing-extensions decoy (at its
        torch-index URL, with its sha256): the dependency-confusion case resolve must refuse."""
        return self.base_url + MIRROR

    def https_url(self, url: str) -> str:
        """The same URL on the HTTPS listener."""
        if url.startswith(self.base_url):
            return self.https_base_url + url[len(self.base_url):]
        return url

    def file_url(self, filename: str, https: bool = False) -> str:
        """Direct download URL of any served generated or PyPI file."""
        for prefix in (NIGHTLY, RELEASE, GENERAL):
            for project in self._store.projects(prefix):
                for e in self._store.entries(prefix, project) or []:
                    if e.filename == filename:
                        return (self.https_base_url if https else self.base_url) + e.path
        raise KeyError(filename)

    def file_sha256(self, filename: str) -> str:
        """sha256 of the bytes currently served for filename."""
        for prefix in (NIGHTLY, RELEASE, GENERAL):
            for project in self._store.projects(prefix):
                for e in self._store.entries(prefix, project) or []:
                    if e.filename == filename:
                        return e.sha256
        raise KeyError(filename)

    def filenames(self, index: str = "nightly", project: str | None = None) -> list[str]:
        """Filenames served on an index ("nightly", "release", "general")."""
        prefix = {"nightly": NIGHTLY, "release": RELEASE, "general": GENERAL}[index]
        names = [project] if project else self._store.projects(prefix)
        return sorted(e.filename for n in names
                      for e in (self._store.entries(prefix, normalize(n)) or []))

    # ---- nightly scenarios --------------------------------------------------------
    @property
    def nightly_dates(self) -> list[dt.date]:
        with self._state.lock:
            return sorted(p.date for p in self._state.plans if p.torch)

    @property
    def latest_consistent_date(self) -> dt.date:
        """Newest torch date that torchvision and torchaudio (of any date) both pin."""
        with self._state.lock:
            plans = list(self._state.plans)
        vision = {p.vision_pins for p in plans if p.vision_pins}
        audio = {p.audio_pins for p in plans if p.audio_pins}
        ok = [p.date for p in plans if p.torch and p.date in vision and p.date in audio]
        return max(ok)

    def nightly_versions(self, d: dt.date) -> dict[str, str]:
        """torch/torchvision/torchaudio/pytorch-triton versions that resolve for torch date d."""
        with self._state.lock:
            plans = list(self._state.plans)
        out = {"torch": pk.nightly_torch_version(d), "pytorch-triton": pk.triton_version(d)}
        for p in plans:
            if p.vision_pins == d:
                out["torchvision"] = pk.nightly_vision_version(p.date)
            if p.audio_pins == d:
                out["torchaudio"] = pk.nightly_audio_version(p.date)
        return out

    def nightly_filename(self, project: str, d: dt.date, python: str = "cp312",
                         platform: str = pk.X86) -> str:
        """Filename of a torch/torchvision/torchaudio nightly dated d (whether published or not)."""
        version = {"torch": pk.nightly_torch_version, "torchvision": pk.nightly_vision_version,
                   "torchaudio": pk.nightly_audio_version}[project](d)
        return f"{project}-{version}-{python}-{python}-{platform}.whl"

    def swap_nightly_file(self, filename: str) -> None:
        """Serve different bytes under the same nightly filename from now on."""
        with self._state.lock:
            index, spec = self._state.specs[filename]
            self._state.swaps += 1
            top = spec.files[0][0].split("/")[0] if spec.files else "swap"
            new = spec.with_extra(f"{top}/_rebuild.txt", f"rebuild {self._state.swaps}\n")
            self._state.specs[filename] = (index, new)
        self._store.replace_bytes(index, filename, build_wheel(new))

    def publish_nightly(self, d: dt.date) -> None:
        """Publish a consistent torch+torchvision+torchaudio(+pytorch-triton) nightly for d."""
        plan = pk.NightlyPlan(d, vision_pins=d, audio_pins=d)
        with self._state.lock:
            clash = [s.filename for s in pk.nightly_wheels(plan) if s.filename in self._state.specs]
        if clash:
            raise ValueError(f"nightly files for {d} already published: {clash[0]}")
        _publish_plan(self._store, self._state, plan)

    # ---- git ----------------------------------------------------------------------
    @property
    def commits(self) -> list[str]:
        with self._state.lock:
            return list(self._state.commits)

    def commit_to_main(self, n: int = 1, message: str = "[Misc] update on main") -> list[str]:
        """Add n deterministic commits to main; return their SHAs (oldest first)."""
        with self._state.lock:
            assert self._state.repo_state is not None
            start = len(self._state.commits)
            state, shas = add_commits(self.repo_path, self._state.repo_state, n, message, start)
            self._state.repo_state = state
            self._state.commits.extend(shas)
        return shas

    # ---- external sources -----------------------------------------------------------
    def external_url(self, name: str) -> str:
        """GIT_REPOSITORY of FetchContent pin name ("cutlass", "vllm-flash-attn", "flashmla")."""
        return self._externals.url(name)

    def external_commit(self, name: str, ref: str) -> str:
        """The commit of a role ("old"/"new"/"newest", "1"/"2") as built, or the commit a tag
        points at now (after move_external_tag: the new one). KeyError if unknown."""
        spec = externals.spec(name)
        if not spec.tagged and ref in spec.refs:
            return self._externals.commit(name, ref)
        with self._state.lock:
            sha = externals.tag_commit(self._externals.path(name), ref)
        if sha is None:
            raise KeyError(f"external source {name!r} has no tag or role {ref!r}")
        return sha

    def move_external_tag(self, name: str, tag: str) -> str:
        """Add a commit (SOURCE_ID "<label> <tag> (retagged)") on top of tag's commit and
        force-move tag to it (an annotated tag stays annotated); return the new SHA."""
        with self._state.lock:
            return externals.move_tag(self._externals, name, tag)

    # ---- Rust crates ----------------------------------------------------------------
    @property
    def crate_registry(self) -> str:
        """Where the Rust frontend's crates are served: <registry>/<name>/<name>-<version>.crate."""
        return self.base_url + CRATES

    def tamper_crate(self, name: str) -> None:
        """Serve other bytes under a dependency crate's URL (Cargo.lock's checksum no longer fits)."""
        crate = next(c for c in crates.DEPENDENCIES if c.name == name)
        self._store.put_file(f"{CRATES}/{crate.name}/{crate.filename}", crates.crate_bytes(crate, "tampered\n"))

    def restore_crates(self) -> None:
        """Serve every dependency crate's own bytes again."""
        for crate in crates.DEPENDENCIES:
            self._store.put_file(f"{CRATES}/{crate.name}/{crate.filename}", crates.crate_bytes(crate))

    # ---- request log / lifecycle --------------------------------------------------
    @property
    def requests(self) -> list[tuple[str, str]]:
        return self._store.requests()

    @property
    def requests_with_agents(self) -> list[tuple[str, str, str]]:
        """(method, path, User-Agent) of every request, oldest first."""
        return self._store.requests_with_agents()

    def clear_requests(self) -> None:
        self._store.clear_requests()

    def close(self) -> None:
        """Stop both listeners."""
        self._http.close()
        self._https.close()

    def __enter__(self) -> TestWorld:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def urls(self) -> dict[str, str]:
        """Everything a client needs, as plain strings (for `serve` and the demo)."""
        return {
            "base_url": self.base_url,
            "https_base_url": self.https_base_url,
            "torch_nightly_index": self.torch_nightly_index,
            "torch_release_index": self.torch_release_index,
            "general_index": self.general_index,
            "https_torch_nightly_index": self.https_url(self.torch_nightly_index),
            "https_torch_release_index": self.https_url(self.torch_release_index),
            "https_general_index": self.https_url(self.general_index),
            "ca_cert": str(self.ca_cert),
            "repo_url": self.repo_url,
            "repo_path": str(self.repo_path),
            "external_root": str(self.external_root),
            "latest_consistent_date": self.latest_consistent_date.isoformat(),
        }


def _publish(store: IndexStore, state: _State, index: str, spec: WheelSpec) -> None:
    with state.lock:
        state.specs[spec.filename] = (index, spec)
    store.add_file(index, spec.project, spec.filename, build_wheel(spec), spec.requires_python)


def _merge_mirror(store: IndexStore) -> None:
    """The merging mirror: the general index's files, plus the torch nightly index's files of
    every project the general index also has (the decoy), each at its original URL."""
    store.add_index(IndexConfig(MIRROR, "/mirror/files", hashes=True, json=True))
    general = set(store.projects(GENERAL))
    for prefix in (GENERAL, NIGHTLY):
        for project in store.projects(prefix):
            if project in general:
                for entry in store.entries(prefix, project) or []:
                    store.list_entry(MIRROR, entry)


def _publish_plan(store: IndexStore, state: _State, plan: pk.NightlyPlan) -> None:
    specs = pk.nightly_wheels(plan)
    if plan.torch:
        tv = pk.triton_version(plan.date)
        with state.lock:
            new_triton = tv not in state.tritons
            state.tritons.add(tv)
        if new_triton:
            specs += pk.triton_wheels({tv})
    for spec in specs:
        _publish(store, state, NIGHTLY, spec)
    with state.lock:
        state.plans.append(plan)


_ = history  # re-exported for introspection
