"""What a vLLM commit looks like: stripping script, requirement files, CMake pins. Pure:
functions take file listings and file readers, never the file system."""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from packaging.requirements import InvalidRequirement, Requirement

from vllm_lock.model import ExternalPin, PatchedFile, is_commit_sha

SCRIPT_PATHS = ("tools/use_existing_torch.py", "use_existing_torch.py")
BUILD_REQUIREMENT_PATHS = ("requirements/build/cuda.txt", "requirements/build.txt")
RUNTIME_REQUIREMENT_PATHS = ("requirements/cuda.txt",)
TORCH_FAMILY = ("torch", "torchvision", "torchaudio")


class LayoutError(ValueError):
    """The commit does not look like a vLLM tree this tool understands."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DetectedLayout:
    stripping_script: str
    stripping_mode: Literal["default", "prefix"]
    runtime_requirements: str
    build_requirements: str


def detect_layout(paths: Iterable[str], read: Callable[[str], str]) -> DetectedLayout:
    """Find the stripping script (and whether it supports --prefix) and the requirement files."""
    present = set(paths)
    script = next((p for p in SCRIPT_PATHS if p in present), None)
    if script is None:
        raise LayoutError("no use_existing_torch.py (root or tools/) at this commit")
    build = next((p for p in BUILD_REQUIREMENT_PATHS if p in present), None)
    if build is None:
        raise LayoutError("no build requirements (requirements/build/cuda.txt or requirements/build.txt)")
    runtime = next((p for p in RUNTIME_REQUIREMENT_PATHS if p in present), None)
    if runtime is None:
        raise LayoutError("no requirements/cuda.txt at this commit")
    mode: Literal["default", "prefix"] = "prefix" if "--prefix" in read(script) else "default"
    return DetectedLayout(
        stripping_script=script, stripping_mode=mode, runtime_requirements=runtime, build_requirements=build
    )


def parse_requirement_file(path: str, read: Callable[[str], str], _seen: frozenset[str] = frozenset()) -> tuple[str, ...]:
    """Requirement strings of a requirements file, following -r/-c includes; index options
    (which vllm-lock decides itself) are skipped. Raises LayoutError on what it cannot read."""
    if path in _seen:
        raise LayoutError(f"{path}: include cycle")
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
    requires = data.get("build-system", {}).get("requires", [])
    return tuple(str(Requirement(r)) for r in requires)


def without_torch_family(requirements: Iterable[str]) -> tuple[str, ...]:
    """Drop torch-family pins the stripping script left (e.g. an unpinned `torchvision; marker`):
    the lock pins the family itself, from the torch index only."""
    return tuple(r for r in requirements if Requirement(r).name.lower() not in TORCH_FAMILY)


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


_SET = re.compile(r"set\(\s*([A-Za-z_][A-Za-z0-9_]*)\s+\"?([^\s\")]+)\"?", re.IGNORECASE)
_DECLARE = re.compile(r"FetchContent_Declare\(\s*([A-Za-z0-9_\-]+)(.*?)\)", re.IGNORECASE | re.DOTALL)
_KEY = r"{}\s+\"?([^\s\")]+)\"?"
_SOURCE_DIR = re.compile(r"SOURCE_DIR\s+\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# vLLM's documented overrides (build facts, section 5), for pins whose cmake file does not show one.
KNOWN_OVERRIDES = {
    "cutlass": "VLLM_CUTLASS_SRC_DIR",
    "vllm-flash-attn": "VLLM_FLASH_ATTN_SRC_DIR",
    "flashmla": "FLASH_MLA_SRC_DIR",
    "deepgemm": "DEEPGEMM_SRC_DIR",
    "deepselect": "DEEPSELECT_SRC_DIR",
    "flashkda": "FLASH_KDA_SRC_DIR",
    "fmha_sm100": "FMHA_SM100_SRC_DIR",
    "tml-fa4": "TML_FA4_SRC_DIR",
    "qutlass": "QUTLASS_SRC_DIR",
    "triton_kernels": "TRITON_KERNELS_SRC_DIR",
}


def override_variable(name: str, declared: Mapping[str, str]) -> str:
    """The variable that points CMake at a local tree for `name`: the one its cmake file reads in
    `FetchContent_Declare(name SOURCE_DIR ${VAR})`, else vLLM's documented one, else FetchContent's
    own FETCHCONTENT_SOURCE_DIR_<NAME>."""
    if name in declared:
        return declared[name]
    if name in KNOWN_OVERRIDES:
        return KNOWN_OVERRIDES[name]
    return "FETCHCONTENT_SOURCE_DIR_" + re.sub(r"[^A-Z0-9_]", "_", name.upper())


def external_pins(files: Mapping[str, str]) -> tuple[ExternalPin, ...]:
    """FetchContent GIT_REPOSITORY/GIT_TAG pins in CMakeLists.txt and cmake/external_projects/*.cmake."""
    found = []
    # set() anywhere counts (CMakeLists.txt sets revisions that included files use); a file's own wins
    everywhere = {m.group(1): m.group(2) for path in sorted(files) for m in _SET.finditer(files[path])}
    for path in sorted(files):
        text = files[path]
        variables = {**everywhere, **{m.group(1): m.group(2) for m in _SET.finditer(text)}}
        declared: dict[str, str] = {}
        pins: list[tuple[str, str, str]] = []
        for match in _DECLARE.finditer(text):
            name, body = match.group(1).lower(), match.group(2)
            if source_dir := _SOURCE_DIR.search(body):
                declared[name] = source_dir.group(1)
            repo = re.search(_KEY.format("GIT_REPOSITORY"), body)
            tag = re.search(_KEY.format("GIT_TAG"), body)
            if repo and tag:
                pins.append((name, _expand(repo.group(1), variables), _expand(tag.group(1), variables)))
        for name, repository, ref in pins:
            if "${" in repository + ref:
                raise LayoutError(f"{path}: the pin of {name} uses a variable set nowhere in the cmake files "
                                  f"({repository} {ref})")
            found.append(
                ExternalPin(
                    name=name,
                    repository=repository,
                    ref=ref,
                    ref_kind="commit" if is_commit_sha(ref) else "tag",
                    override=override_variable(name, declared),
                    declared_in=path,
                )
            )
    return tuple(sorted(found, key=lambda s: (s.name, s.declared_in)))


def _expand(value: str, variables: Mapping[str, str]) -> str:
    return re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)


def is_cmake_pin_file(path: str) -> bool:
    """CMakeLists.txt and every cmake/**/*.cmake: besides cmake/external_projects/, vLLM declares
    some sources next to the code that uses them (oneDNN in cmake/cpu_extension.cmake)."""
    return path == "CMakeLists.txt" or (path.startswith("cmake/") and path.endswith(".cmake"))


def is_strippable(path: str) -> bool:
    """Files any version of the stripping script may rewrite (we snapshot them before/after)."""
    return path == "pyproject.toml" or (path.startswith("requirements") and path.endswith((".txt", ".in")))
