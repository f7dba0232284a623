"""Lock + machine facts -> install plan: preflight problems, MAX_JOBS, the build environment
(where a generation lives is generation.py's). Pure: no I/O, no subprocess, no clock (the shell gathers the facts).

MAX_JOBS rule (printed by install, overridable with --max-jobs / $MAX_JOBS):
  vLLM divides MAX_JOBS by NVCC_THREADS, so MAX_JOBS / NVCC_THREADS nvcc processes run at once,
  each with NVCC_THREADS threads. Each such process is budgeted GIB_PER_NVCC_PROCESS of memory
  (GIB_PER_NVCC_PROCESS_BLACKWELL when an arch >= 10.0 is locked: the CUTLASS FP4 templates).
  processes = max(1, min(cpus // NVCC_THREADS, available_GiB // budget))
  MAX_JOBS  = processes * NVCC_THREADS
  Non-CUDA builds: MAX_JOBS = max(1, min(cpus, available_GiB // 1)), NVCC_THREADS = 1.

Toolchain needed (every number comes from the lock, never from the vLLM version alone):
  cmake, ninja   the build set's own specifier (`cmake>=3.26.1`), checked against the locked wheel
                 when the lock has one (the build runs it), else against the machine's tool;
  gcc, g++       found ($CC/$CXX, else PATH) when the lock compiles anything (`empty` compiles
                 nothing); COMPILER_FLOORS: a floor applies when the lock builds the code that
                 needs it (a pinned external source, vLLM's CPU extension on x86_64);
  nvcc           new enough for every locked arch (cuda.py).
These are build_toolchain_problems: with binary caches configured, install checks them only once
no cache gave the build (a container without compilers can substitute).
GPUs (CUDA builds, unless --skip-gpu-check): every GPU covered by the locked archs and a driver
new enough for the lock's CUDA variant (the rule in cuda.py); no GPU present is a warning.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from vllm_lock import cuda as cuda_rules
from vllm_lock import rust as rust_rules
from vllm_lock.model import BuildRecipe, Lock

GIB = 1 << 30
MIB = 1 << 20
FULLY_DISCONNECTED = "-DFETCHCONTENT_FULLY_DISCONNECTED=ON"
GIB_PER_NVCC_PROCESS = 4
GIB_PER_NVCC_PROCESS_BLACKWELL = 8
DEFAULT_NVCC_THREADS = 2
# Disk needed besides the wheels (venv copies of them, source, build tree); MIN_FREE_DISK overrides.
BUILD_DISK_CUDA = 20 * GIB
BUILD_DISK_OTHER = 256 << 20


@dataclass(frozen=True, kw_only=True, slots=True)
class Tool:
    """A compiler or build tool as found: on the machine, or the locked wheel the build runs."""

    name: str  # gcc, g++, cmake, ninja, nvcc, rustc, cargo
    path: str | None  # None: not found
    version: str | None = None  # "12.2.0"; None: found, but its version could not be read
    origin: str = "machine"  # or "locked wheel"

    def describe(self) -> str:
        if self.path is None:
            return f"{self.name} not found"
        where = self.path if self.origin == "machine" else self.origin
        return f"{self.name} {self.version or '(version unreadable)'} ({where})"


@dataclass(frozen=True, kw_only=True, slots=True)
class MachineFacts:
    """What the shell found out about this machine."""

    machine: str  # platform.machine(): x86_64, aarch64
    glibc: tuple[int, int] | None  # None: not glibc (musl, macOS)
    cpus: int
    mem_available: int  # bytes
    free_disk: int  # bytes free where the generation is written
    python_found: str | None  # interpreter for lock.target.python, or None
    python_error: str | None = None  # why looking for it failed (not: none found), e.g. uv's cache unwritable
    nvcc: str | None = None  # path of nvcc, or None
    nvcc_version: tuple[int, int] | None = None
    cache: str = ""  # the cache directory (wheels, mirrors, uv's cache)
    cache_free_disk: int | None = None  # bytes free there; None: not measured
    cache_missing: int = 0  # bytes of locked wheels the cache does not hold yet (to be downloaded)
    toolchain: tuple[Tool, ...] = ()  # the compilers and build tools found (not looked for: absent)
    gpus: cuda_rules.GpuReport | None = None  # None: not looked at (--skip-gpu-check, or no CUDA build)


@dataclass(frozen=True, kw_only=True, slots=True)
class Jobs:
    max_jobs: int
    nvcc_threads: int
    reason: str


def is_cuda(lock: Lock) -> bool:
    return lock.build.target_device == "cuda"


def needed_disk(lock: Lock, override: int | None = None) -> int:
    if override is not None:
        return override
    wheels = sum(p.size for p in lock.packages)
    return 3 * wheels + (BUILD_DISK_CUDA if is_cuda(lock) else BUILD_DISK_OTHER)


def preflight_problems(
    lock: Lock, facts: MachineFacts, *, min_free_disk: int | None = None, build_tools: bool = True
) -> list[str]:
    """Every reason this machine cannot build the lock, each one line; empty when fine.
    build_tools=False leaves out build_toolchain_problems: an install that may substitute the
    build from a binary cache needs no compiler until a build actually has to run."""
    problems: list[str] = []
    target = lock.target
    if facts.machine != target.machine:
        problems.append(f"this machine is {facts.machine}, the lock targets {target.platform}")
    if facts.glibc is None:
        problems.append(f"this machine has no glibc; the lock targets {target.platform}")
    elif facts.glibc < target.glibc:
        problems.append(
            f"glibc {facts.glibc[0]}.{facts.glibc[1]} is older than the lock's target {target.platform}"
        )
    if facts.python_found is None and facts.python_error:
        problems.append(facts.python_error)
    elif facts.python_found is None:
        problems.append(
            f"Python {target.python} is not available (install it, e.g. `uv python install {target.python}`, "
            f"or pass --allow-python-download)"
        )
    if build_tools:
        problems += build_toolchain_problems(lock, facts)
    if is_cuda(lock) and facts.gpus is not None:
        problems += cuda_rules.gpu_problems(facts.gpus, lock.build.cuda_archs, lock.torch.cuda, facts.nvcc_version)
    need = needed_disk(lock, min_free_disk)
    if facts.free_disk < need:
        problems.append(f"not enough free disk: {facts.free_disk / GIB:.1f} GiB free, {need / GIB:.1f} GiB needed")
    if facts.cache_free_disk is not None and facts.cache_free_disk < facts.cache_missing:
        problems.append(
            f"not enough free disk for the cache {facts.cache}: {facts.cache_free_disk / MIB:.1f} MiB free, "
            f"{facts.cache_missing / MIB:.1f} MiB of wheels to download"
        )
    return problems


def build_toolchain_problems(lock: Lock, facts: MachineFacts) -> list[str]:
    """What only the build itself needs of this machine: nvcc able to build every locked arch, a
    C/C++ compiler where the lock compiles anything, the lock's toolchain floors."""
    problems: list[str] = []
    if is_cuda(lock):
        if facts.nvcc is None:
            problems.append("nvcc not found ($CUDA_HOME/bin when CUDA_HOME is set, else /usr/local/cuda/bin, PATH); "
                            "install the CUDA toolkit")
        elif facts.nvcc_version is None:
            problems.append(f"cannot read the version of {facts.nvcc}")
        else:
            for arch in lock.build.cuda_archs:
                problem = cuda_rules.arch_problem(arch, facts.nvcc_version)
                if problem:
                    major, minor = facts.nvcc_version
                    problems.append(f"nvcc {major}.{minor} ({facts.nvcc}) cannot build arch {arch}: {problem}")
    if lock.build.target_device != "empty":
        # a compiler looked for and not found (a Tool without a path); a floor below names its own
        floors = {need.tool for need in toolchain_needs(lock)}
        for tool in facts.toolchain:
            if tool.name in COMPILERS and tool.path is None and tool.name not in floors:
                problems.append(f"{tool.name} not found ({COMPILERS[tool.name]}, else PATH): building vLLM's "
                                f"{lock.build.target_device} extensions needs a C/C++ compiler")
    problems += toolchain_problems(toolchain_needs(lock), facts.toolchain)
    return problems


def preflight_notes(lock: Lock, facts: MachineFacts) -> list[str]:
    """What preflight warns about without refusing."""
    if not is_cuda(lock):
        return []
    if facts.gpus is None:
        return ["GPU check skipped (--skip-gpu-check): the GPUs this build is for are not checked"]
    return cuda_rules.gpu_notes(facts.gpus, lock.build.cuda_archs)


# ---------------------------------------------------------------- toolchain


@dataclass(frozen=True, kw_only=True, slots=True)
class Need:
    tool: str
    spec: str  # a PEP 440 specifier: ">=13"
    why: str


# GCC floors, each with the code that imposes it. The external source names are the lock's own
# (cmake.py/layout.py name them from the FetchContent calls).
COMPILER_FLOORS: tuple[tuple[str, str, str], ...] = (
    # (how the lock shows the code is built, floor, why)
    ("source:deepselect", ">=13", "DeepSelect (pinned since vLLM 0.30) includes <format>: C++20 std::format "
                                  "needs GCC >= 13 (vLLM issue 58158)"),
    ("repository:github.com/vllm-project/DeepGEMM", ">=13", "vLLM's DeepGEMM pin (since vLLM 0.30) includes "
                                                              "<format>: GCC >= 13 (vLLM issue 58158)"),
    ("cpu-extension:x86_64", ">=12.3", "vLLM's CPU extension on x86_64 stops below GCC 12.3 "
                                       "(cmake/cpu_extension.cmake: \"X86 backend requires gcc/g++ >= 12.3\")"),
)
BUILD_SET_TOOLS = ("cmake", "ninja")
COMPILERS = {"gcc": "$CC", "g++": "$CXX"}  # the compilers a build that compiles anything calls


def _floor_applies(lock: Lock, key: str) -> bool:
    kind, _, value = key.partition(":")
    sources = lock.external_sources
    if kind == "source":
        return any(s.name == value for s in sources)
    if kind == "repository":
        return any(value.lower() in s.repository.lower() for s in sources)
    return (lock.build.target_device == "cpu" and lock.target.machine == value
            and any(s.declared_in.endswith("cpu_extension.cmake") for s in sources))


def toolchain_needs(lock: Lock) -> tuple[Need, ...]:
    """What the lock's build needs of the toolchain (the rules in the module docstring)."""
    rust = rust_needs(lock)
    if lock.build.target_device == "empty":
        return rust  # no C++ is compiled, and setup.py runs no CMake; its Rust extensions still build
    needs: list[Need] = list(rust)
    for key, spec, why in COMPILER_FLOORS:
        if _floor_applies(lock, key):
            needs += [Need(tool="gcc", spec=spec, why=why), Need(tool="g++", spec=spec, why=why)]
    for line in lock.layout.build_set:
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        name = canonicalize_name(requirement.name)
        if name in BUILD_SET_TOOLS and str(requirement.specifier):
            needs.append(Need(tool=name, spec=str(requirement.specifier),
                              why=f"the lock's build requirement {line.split(';')[0].strip()}"))
    return tuple(needs)


def rust_needs(lock: Lock) -> tuple[Need, ...]:
    """rustc and cargo at least the channel the commit's rust-toolchain.toml names."""
    if lock.rust is None:
        return ()
    why = f"the commit's Rust frontend ({lock.rust.toolchain_file}: channel {lock.rust.channel})"
    return tuple(Need(tool=tool, spec=f">={lock.rust.channel}", why=why) for tool in ("rustc", "cargo"))


def build_tools(lock: Lock, machine: tuple[Tool, ...]) -> tuple[Tool, ...]:
    """The tools the build runs: a build-set tool (cmake, ninja) the lock installs as a wheel is
    that wheel, whatever the machine has."""
    locked = {name: lock.package(name) for name in BUILD_SET_TOOLS}
    tools = [t for t in machine if locked.get(t.name) is None]
    for name, package in locked.items():
        if package is not None:
            tools.append(Tool(name=name, path=", ".join(w.filename for w in package.wheels), version=package.version,
                              origin="locked wheel"))
    return tuple(sorted(tools, key=lambda t: t.name))


def toolchain_problems(needs: tuple[Need, ...], tools: tuple[Tool, ...]) -> list[str]:
    found = {t.name: t for t in tools}
    problems: list[str] = []
    for need in needs:
        tool = found.get(need.tool)
        if tool is None or tool.path is None:
            problems.append(f"{need.tool} not found: {need.why} needs {need.tool}{need.spec}")
            continue
        try:
            version = Version(tool.version or "")
        except InvalidVersion:
            problems.append(f"cannot read the version of {tool.path}: {need.why} needs {need.tool}{need.spec}")
            continue
        if not SpecifierSet(need.spec).contains(version, prereleases=True):
            problems.append(f"{tool.describe()} is below what the lock needs, {need.tool}{need.spec}: {need.why}")
    return problems


_TOOL_VERSION = re.compile(r"(?<![\d.])(\d+\.\d+(?:\.\d+)?)")


def parse_tool_version(text: str) -> str | None:
    """`gcc -dumpfullversion`, `cmake --version`, `ninja --version`, `rustc --version`... -> "12.2.0"."""
    match = _TOOL_VERSION.search(text)
    return match.group(1) if match else None


def choose_jobs(
    recipe: BuildRecipe, facts: MachineFacts, *, max_jobs: int | None = None, nvcc_threads: int | None = None
) -> Jobs:
    """MAX_JOBS and NVCC_THREADS by the rule in the module docstring; user values win."""
    env = dict(recipe.env)
    cuda = recipe.target_device == "cuda"
    if nvcc_threads is None:
        nvcc_threads = int(env.get("NVCC_THREADS", DEFAULT_NVCC_THREADS if cuda else 1))
    nvcc_threads = max(1, nvcc_threads)
    mem_gib = facts.mem_available // GIB
    if max_jobs is not None:
        return Jobs(max_jobs=max(1, max_jobs), nvcc_threads=nvcc_threads, reason="set by the user")
    if cuda:
        blackwell = any(float(cuda_rules.base_arch(a)) >= 10.0 for a in recipe.cuda_archs)
        budget = GIB_PER_NVCC_PROCESS_BLACKWELL if blackwell else GIB_PER_NVCC_PROCESS
        processes = max(1, min(facts.cpus // nvcc_threads, mem_gib // budget))
        return Jobs(
            max_jobs=processes * nvcc_threads,
            nvcc_threads=nvcc_threads,
            reason=(
                f"{facts.cpus} CPUs, {mem_gib} GiB available, {budget} GiB per nvcc process, "
                f"NVCC_THREADS={nvcc_threads}: {processes} nvcc processes"
            ),
        )
    jobs = max(1, min(facts.cpus, mem_gib))
    return Jobs(max_jobs=jobs, nvcc_threads=1, reason=f"{facts.cpus} CPUs, {mem_gib} GiB available")


def source_date_epoch(commit_date: str) -> int:
    moment = dt.datetime.strptime(commit_date, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    return int(moment.timestamp())


def build_env(
    lock: Lock, jobs: Jobs, base: Mapping[str, str], *, cuda_home: str | None = None,
    external_dirs: Mapping[str, Path] | None = None,
) -> dict[str, str]:
    """The environment of the vLLM build: `base` (the caller's) plus everything the lock fixes,
    and each staged external source's override variable pointing at its tree (so CMake's
    FetchContent uses it instead of cloning). A caller's own override of a locked source is dropped."""
    env = {k: v for k, v in base.items() if k not in ("VLLM_USE_PRECOMPILED", "PIP_CONSTRAINT")}
    env.update(
        {
            "VLLM_TARGET_DEVICE": lock.build.target_device,
            "TORCH_CUDA_ARCH_LIST": lock.build.torch_cuda_arch_list,
            "VLLM_FLASH_ATTN_VERSION": lock.build.flash_attn_version,
            "MAX_JOBS": str(jobs.max_jobs),
            "NVCC_THREADS": str(jobs.nvcc_threads),
            "CMAKE_BUILD_PARALLEL_LEVEL": str(jobs.max_jobs),
            "SOURCE_DATE_EPOCH": str(source_date_epoch(lock.vllm.commit_date)),
            "CCACHE_NOHASHDIR": "true",
            "TORCH_NIGHTLY": "1" if lock.torch.channel == "nightly" else env.get("TORCH_NIGHTLY", "0"),
        }
    )
    if cuda_home:
        env["CUDA_HOME"] = cuda_home
    for key, value in lock.build.env:
        if key != "NVCC_THREADS":
            env[key] = value
    staged = external_dirs or {}
    for source in lock.external_sources:
        env.pop(source.override, None)
        if source.name in staged:
            env[source.override] = str(staged[source.name])
    if lock.external_sources:
        # vLLM's setup.py appends $CMAKE_ARGS to its cmake call: with every pin staged, CMake must
        # download nothing, and a FetchContent the lock does not know fails instead of fetching.
        args = env.get("CMAKE_ARGS", "").split()
        if FULLY_DISCONNECTED not in args:
            env["CMAKE_ARGS"] = " ".join([*args, FULLY_DISCONNECTED])
    return env


def rust_frontend_problem(lock: Lock, tree: rust_rules.RustFacts | None) -> str | None:
    """How the checked-out tree's Rust frontend differs from the lock's, naming the lock field;
    None when they agree. The lock is untrusted: a `[rust]` table dropped or edited (a lower
    channel, another Cargo.lock) must not change what is built without saying so."""
    frontend = lock.rust
    if frontend is None:
        if tree is None:
            return ("build.without-rust: the lock leaves out a Rust frontend the commit does not have"
                    if lock.build.without_rust else None)
        if lock.build.without_rust:
            return None
        return (f"rust: the commit has a Rust frontend ({tree.cargo_lock}, channel {tree.channel}) but the lock "
                "has no [rust] table and no build.without-rust")
    if tree is None:
        return "rust: the lock has a [rust] table but the checked-out commit has no Rust frontend"
    artifacts = tuple((a.target, a.kind) for a in frontend.artifacts)
    crates = tuple((c.name, c.version, c.checksum) for c in frontend.crates)
    checks = (
        ("rust.toolchain-file", frontend.toolchain_file, tree.toolchain_file),
        ("rust.channel", frontend.channel, tree.channel),
        ("rust.cargo-lock", frontend.cargo_lock, tree.cargo_lock),
        ("rust.cargo-lock-sha256", frontend.cargo_lock_sha256, tree.cargo_lock_sha256),
        ("rust.artifacts", artifacts, tuple((a.target, a.kind) for a in tree.artifacts)),
        ("rust.crates", crates, tuple((c.name, c.version, c.checksum) for c in tree.crates)),
    )
    for key, locked, found in checks:
        if locked != found:
            return f"{key}: the lock says {_short(locked)}, the checked-out commit has {_short(found)}"
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def rust_build_env(lock: Lock, base_path: str, *, tools: Path, cargo_home: Path | None) -> dict[str, str]:
    """The Rust part of the build's environment. With a locked frontend: required
    (VLLM_REQUIRE_RUST_FRONTEND=1, so a missing compiler fails the build instead of silently
    dropping the extension), the real rustc/cargo first on PATH, crates only from the vendored
    copies (CARGO_HOME's config), offline. Without one (left out with --no-rust, or a commit that
    has none): `tools` holds a rustc and cargo that refuse to run, so no build ever uses the
    caller's toolchain or CARGO_HOME, and setuptools-rust skips an optional extension."""
    env = {
        "PATH": f"{tools}{os.pathsep}{base_path}" if base_path else str(tools),
        "CARGO": str(tools / "cargo"),
        "RUSTC": str(tools / "rustc"),
        "CARGO_NET_OFFLINE": "true",
        "VLLM_REQUIRE_RUST_FRONTEND": "1" if lock.rust is not None else "0",
    }
    if cargo_home is not None:
        env["CARGO_HOME"] = str(cargo_home)
    return env


def arch_build_env(
    archs: tuple[str, ...], jobs: Jobs, base: Mapping[str, str], *, target_device: str = "cuda",
    cuda_home: str | None = None,
) -> dict[str, str]:
    """The same settings for a build without a lock (build-check on an existing environment)."""
    env = dict(base)
    env.update(
        {
            "VLLM_TARGET_DEVICE": target_device,
            "TORCH_CUDA_ARCH_LIST": ";".join(archs),
            "MAX_JOBS": str(jobs.max_jobs),
            "NVCC_THREADS": str(jobs.nvcc_threads),
            "CCACHE_NOHASHDIR": "true",
        }
    )
    if cuda_home:
        env["CUDA_HOME"] = cuda_home
    return env


_NVCC_RELEASE = re.compile(r"release (\d+)\.(\d+)")


def parse_nvcc_version(text: str) -> tuple[int, int] | None:
    """`nvcc --version` output -> (major, minor)."""
    match = _NVCC_RELEASE.search(text)
    return (int(match.group(1)), int(match.group(2))) if match else None


def version_problem(version: str, commit: str, exact_tag: str | None) -> str | None:
    """Is the built vLLM's version consistent with the locked commit? None when it is. On a tag a
    clean tree gives the tag's version; the stripping script dirties the tree, and setuptools-scm
    then names the commit (`0.33.1.dev0+g<sha>.d<date>`) instead: either is consistent."""
    if f"g{commit[:9]}" in version:
        return None
    if exact_tag is not None:
        base = exact_tag.removeprefix("v")
        if version.split("+")[0] == base or version.startswith(base):
            return None
        return f"the built vLLM's version is {version}, the locked commit is tag {exact_tag}"
    return f"the built vLLM's version is {version}, which does not name the locked commit {commit[:9]}"


_SM = re.compile(r"\bsm_(\d+)[af]?\b")


def cubin_archs(cuobjdump_output: str) -> set[str]:
    """`cuobjdump --list-elf` output -> {'sm_90', 'sm_120'}."""
    return {f"sm_{m}" for m in _SM.findall(cuobjdump_output)}


def missing_archs(archs: tuple[str, ...], found: set[str]) -> list[str]:
    return [cuda_rules.sm_name(a) for a in archs if cuda_rules.sm_name(a) not in found]


def positive_int(text: str) -> int | None:
    """A MAX_JOBS-like setting: a decimal integer >= 1, else None."""
    stripped = text.strip()
    if not stripped.isascii() or not stripped.isdigit():
        return None
    value = int(stripped)
    return value if value >= 1 else None
