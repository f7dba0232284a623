"""What a vLLM commit looks like: stripping script, requirement files, CMake pins. Pure:
functions take file listings and file readers, never the file system."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from packaging.requirements import InvalidRequirement, Requirement

from vllm_lock.model import ExternalPin, PatchedFile, git_url_problem, is_commit_sha, ref_problem

if TYPE_CHECKING:  # the evaluator is imported by the functions that run it: reading a lock needs this module, not it
    from vllm_lock import cmake

SCRIPT_PATHS = ("tools/use_existing_torch.py", "use_existing_torch.py")
# The build requirements of a target device, newest layout first. vLLM's Dockerfile.cpu and its
# CPU install docs use requirements/build/cpu.txt (0.20 on), requirements/cpu-build.txt (0.9 to
# 0.11) and the general file before that (0.8.5); ROCm and TPU have files of their own where the
# layout carries them (rocm-build.txt, then build/rocm.txt; build/tpu.txt from 0.30). Every other
# device (cuda, xpu, empty), and a device whose layout has no file of its own, builds with the
# general file, the one pyproject.toml's [build-system] requires mirrors.
BUILD_REQUIREMENT_PATHS = ("requirements/build/cuda.txt", "requirements/build.txt")
DEVICE_BUILD_REQUIREMENT_PATHS = {
    "cpu": ("requirements/build/cpu.txt", "requirements/cpu-build.txt"),
    "rocm": ("requirements/build/rocm.txt", "requirements/rocm-build.txt"),
    "tpu": ("requirements/build/tpu.txt",),
}


MAX_REQUIREMENT_INCLUDE_DEPTH = 20


class LayoutError(ValueError):
    """The commit does not look like a vLLM tree this tool understands."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectedLayout:
    stripping_script: str
    stripping_mode: Literal["default", "prefix"]
    build_requirements: str  # the runtime file depends on the target: requirements.py


def build_requirement_candidates(target_device: str) -> tuple[str, ...]:
    """The files that can hold a target device's build requirements, the first present wins."""
    return (*DEVICE_BUILD_REQUIREMENT_PATHS.get(target_device, ()), *BUILD_REQUIREMENT_PATHS)


def build_requirements_file(paths: Iterable[str], target_device: str) -> str:
    """The build requirement file of a tree (its file listing) for a target device."""
    present = set(paths)
    candidates = build_requirement_candidates(target_device)
    found = next((p for p in candidates if p in present), None)
    if found is None:
        raise LayoutError(f"no build requirements for target device {target_device} "
                          f"({', '.join(candidates[:-1])} or {candidates[-1]})")
    return found


def detect_layout(paths: Iterable[str], read: Callable[[str], str], *, target_device: str) -> DetectedLayout:
    """Find the stripping script (and whether it supports --prefix) and the build requirements
    of the target device."""
    present = set(paths)
    script = next((p for p in SCRIPT_PATHS if p in present), None)
    if script is None:
        raise LayoutError("no use_existing_torch.py (root or tools/) at this commit")
    build = build_requirements_file(present, target_device)
    mode: Literal["default", "prefix"] = "prefix" if "--prefix" in read(script) else "default"
    return DetectedLayout(
        stripping_script=script, stripping_mode=mode, build_requirements=build
    )


def parse_requirement_file(path: str, read: Callable[[str], str],
                           _seen: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """Requirement strings of a requirements file, following -r/-c includes; index options
    (which vllm-lock decides itself) are skipped. Raises LayoutError on what it cannot read."""
    if path in _seen:
        raise LayoutError(f"{path}: include cycle")
    if len(_seen) >= MAX_REQUIREMENT_INCLUDE_DEPTH:  # vLLM's deepest: cuda.txt -r common.txt
        raise LayoutError(f"{path}: -r includes nested deeper than {MAX_REQUIREMENT_INCLUDE_DEPTH} files")
    result: list[str] = []
    for number, line in _logical_lines(read(path)):
        if line.startswith(("-r ", "--requirement ", "-c ", "--constraint ")):
            included = posixpath.normpath(posixpath.join(posixpath.dirname(path), line.split(None, 1)[1].strip()))
            if line.startswith(("-r", "--requirement")):
                result.extend(parse_requirement_file(included, read, _seen | {path}))
            continue
        if line.startswith("-"):
            continue  # --extra-index-url and friends: index routing belongs to the lock
        try:
            result.append(str(Requirement(line)))
        except InvalidRequirement as exc:
            raise LayoutError(f"{path}:{number}: {exc}") from None
    return tuple(dict.fromkeys(result))


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield start, line


def build_system_requires(pyproject_text: str) -> tuple[str, ...]:
    """[build-system] requires of a pyproject.toml (after stripping)."""
    import tomllib

    try:
        data = tomllib.loads(pyproject_text)
    except tomllib.TOMLDecodeError as exc:
        raise LayoutError(f"pyproject.toml: {exc}") from None
    except RecursionError:  # tomllib recurses once per nested array or inline table
        raise LayoutError("pyproject.toml: arrays or tables nested too deeply to read") from None
    except ValueError as exc:  # an integer past Python's digit limit (int_max_str_digits)
        raise LayoutError(f"pyproject.toml: {str(exc).split(';')[0][:120]}") from None
    build_system = data.get("build-system", {})
    requires = build_system.get("requires", []) if isinstance(build_system, dict) else None
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise LayoutError("pyproject.toml: [build-system] requires is not a list of strings")
    try:
        return tuple(str(Requirement(r)) for r in requires)
    except InvalidRequirement as exc:
        raise LayoutError(f"pyproject.toml: [build-system] requires: {exc}") from None


def sha256_text(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def patched_files(before: Mapping[str, bytes], after: Mapping[str, bytes]) -> tuple[PatchedFile, ...]:
    """The files whose bytes the stripping script changed, sorted by path."""
    changed = []
    for path in sorted(before):
        if path in after and after[path] != before[path]:
            changed.append(
                PatchedFile(path=path, sha256_before=sha256_text(before[path]), sha256_after=sha256_text(after[path]))
            )
    return tuple(changed)


# vLLM's documented overrides (build facts, section 5), for pins whose cmake file does not show one.
KNOWN_OVERRIDES = {
    "cutlass": "VLLM_CUTLASS_SRC_DIR",
    "vllm-flash-attn": "VLLM_FLASH_ATTN_SRC_DIR",
    "flashmla": "FLASH_MLA_SRC_DIR",
    "deepgemm": "DEEPGEMM_SRC_DIR",
    "deepselect": "DEEPSELECT_SRC_DIR",
    "flashkda": "FLASH_KDA_SRC_DIR",
    "fmha_sm100": "FMHA_SM100_SRC_DIR",
    "tml_fa4": "TML_FA4_SRC_DIR",
    "qutlass": "QUTLASS_SRC_DIR",
    "triton_kernels": "TRITON_KERNELS_SRC_DIR",
    "arm_compute": "ACL_ROOT_DIR",  # cpu_extension.cmake: `if(DEFINED ENV{ACL_ROOT_DIR} ...)`
}

# What CMake would learn on the build machine, as far as the target decides it: the processor's
# own ISA probes (cpu_extension.cmake greps /proc/cpuinfo; an x86_64 host never has "asimd").
_OTHER_ISA_PROBES = ("POWER9_FOUND", "POWER10_FOUND", "POWER11_FOUND", "S390_FOUND", "RVV_FP16_FOUND",
                     "RVV_BF16_FOUND")
_ISA_PROBES = {
    "x86_64": dict.fromkeys(("ASIMD_FOUND", "ARM_BF16_FOUND", "ARM_I8MM_FOUND", *_OTHER_ISA_PROBES), "OFF"),
    "aarch64": {"ASIMD_FOUND": "ON", "AVX2_FOUND": "OFF", "AVX512_FOUND": "OFF", "AVX512BF16_FOUND": "OFF",
                **dict.fromkeys(_OTHER_ISA_PROBES, "OFF")},
}


def cmake_facts(target_device: str, processor: str) -> dict[str, str]:
    """The variables vLLM's configure step starts from for a target: what setup.py passes with
    -D, what find_package(Torch) reports for the device's torch, and the processor."""
    from vllm_lock import cmake

    facts = {
        "VLLM_TARGET_DEVICE": target_device,
        "VLLM_PYTHON_EXECUTABLE": "/usr/bin/python3",
        "FETCHCONTENT_BASE_DIR": cmake.SOURCE_ROOT + "/.deps",
        "CMAKE_SYSTEM_PROCESSOR": processor,
        "CMAKE_HOST_SYSTEM_PROCESSOR": processor,
        "CUDA_FOUND": "ON" if target_device == "cuda" else "OFF",
        "HIP_FOUND": "ON" if target_device == "rocm" else "OFF",
        "PYTORCH_FOUND_HIP": "ON" if target_device == "rocm" else "OFF",
    }
    return {**facts, **_ISA_PROBES.get(processor, {})}


def override_variable(name: str, declared: str | None) -> str:
    """The variable that points CMake at a local tree for `name`: the one its cmake file reads in
    a `SOURCE_DIR ${VAR}` declaration, else vLLM's documented one, else FetchContent's own
    FETCHCONTENT_SOURCE_DIR_<NAME>."""
    if declared:
        return declared
    if name in KNOWN_OVERRIDES:
        return KNOWN_OVERRIDES[name]
    return "FETCHCONTENT_SOURCE_DIR_" + re.sub(r"[^A-Z0-9_]", "_", name.upper())


@dataclass(frozen=True, kw_only=True, slots=True)
class ExternalPinsReading:
    pins: tuple[ExternalPin, ...]
    undecided: tuple[cmake.Undecided, ...]  # conditions kept both ways, with a pin inside
    included: tuple[str, ...]


def external_pins(
    paths: Iterable[str], read: Callable[[str], str], *, target_device: str, processor: str
) -> ExternalPinsReading:
    """The git sources vLLM's configure step fetches for this target, by evaluating
    CMakeLists.txt and what it includes. LayoutError (naming file and line) for text it cannot
    read, a pin it cannot read, two pins for one override variable, or a configure step that
    stops (FATAL_ERROR) on every path."""
    from vllm_lock import cmake

    present = frozenset(paths)
    # `empty` compiles no device code: vLLM's CMakeLists.txt returns before any FetchContent for
    # it (every release in tests/real), and a tree whose CMake does not say so fetches nothing
    # for it either.
    if "CMakeLists.txt" not in present or target_device == "empty":
        return ExternalPinsReading(pins=(), undecided=(), included=())
    facts = cmake_facts(target_device, processor)
    try:
        reading = cmake.evaluate("CMakeLists.txt", present, read, facts=facts)
    except cmake.CMakeError as exc:
        raise LayoutError(str(exc)) from None
    if reading.stopped is not None:
        stop = reading.stopped
        raise LayoutError(f"{stop.file}:{stop.line}: CMake stops for target {target_device} on {processor}: "
                          f"{stop.message}")
    found: list[ExternalPin] = []
    by_override: dict[str, cmake.CMakePin] = {}
    for pin in reading.pins:
        name = pin.name.lower()
        override = override_variable(name, pin.source_dir_variable)
        if (first := by_override.get(override)) is not None:
            raise LayoutError(
                f"{pin.file}:{pin.line}: {pin.name} {pin.repository} {pin.ref} and "
                f"{first.file}:{first.line}: {first.name} {first.repository} {first.ref} "
                f"are both pinned for {override}"
            )
        by_override[override] = pin
        # the tree is as untrusted as a lock: its URLs meet the lock's rule before any git call
        for what, problem in (("GIT_REPOSITORY", git_url_problem(pin.repository)), ("GIT_TAG", ref_problem(pin.ref))):
            if problem:
                raise LayoutError(f"{pin.file}:{pin.line}: {pin.name} {what} {problem}")
        found.append(ExternalPin(
            name=name,
            repository=pin.repository,
            ref=pin.ref,
            ref_kind="commit" if is_commit_sha(pin.ref) else "tag",
            override=override,
            declared_in=pin.file,
        ))
    return ExternalPinsReading(
        pins=tuple(sorted(found, key=lambda s: (s.name, s.declared_in))),
        undecided=reading.undecided,
        included=reading.included,
    )


def is_cmake_pin_file(path: str) -> bool:
    """A file CMake reads pins from: CMakeLists.txt or a *.cmake file that include() reached
    (vLLM keeps them under cmake/, and oneDNN's pin in cmake/cpu_extension.cmake)."""
    return path.rsplit("/", 1)[-1] == "CMakeLists.txt" or path.endswith(".cmake")


def is_strippable(path: str) -> bool:
    """Files any version of the stripping script may rewrite (we snapshot them before/after)."""
    return path == "pyproject.toml" or (path.startswith("requirements") and path.endswith((".txt", ".in")))
