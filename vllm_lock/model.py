"""The lock as a tree of frozen dataclasses. Pure: no I/O, no clock.

Validation happens once, here, in __post_init__; errors name what is wrong.
Conversion to and from TOML lives in codec.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Literal

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

LOCK_VERSION = 2  # 2: external sources carry the commit a tag resolved to and their override variable

_SHA1 = re.compile(r"^[0-9a-f]{40}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ARCH = re.compile(r"^\d+\.\d+[af]?$")
_PLATFORM = re.compile(r"^(x86_64|aarch64)-manylinux_(\d+)_(\d+)$")
_PYTHON = re.compile(r"^3\.\d+$")
_LOCK_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

Phase = Literal["development", "stable"]
TorchChannel = Literal["nightly", "release"]
PackageSource = Literal["torch", "general"]
HashOrigin = Literal["index", "downloaded"]


class ModelError(ValueError):
    """A value that cannot be part of a lock; codec turns it into LockInvalidError."""


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ModelError(message)


def is_commit_sha(value: str) -> bool:
    return bool(_SHA1.match(value))


def is_valid_lock_name(value: str) -> bool:
    return bool(_LOCK_NAME.match(value))


@dataclass(frozen=True, kw_only=True, slots=True)
class VllmInput:
    """The vLLM source: what the user asked for (url, ref) and what it resolved to."""

    url: str
    ref: str
    commit: str
    commit_date: str  # ISO 8601 UTC, e.g. 2026-11-20T10:00:00Z

    def __post_init__(self) -> None:
        _require(bool(self.url), "vllm.url is empty")
        _require(bool(self.ref), "vllm.ref is empty")
        _require(is_commit_sha(self.commit), f"vllm.commit {self.commit!r} is not a 40-hex SHA")
        _require(self.commit_date.endswith("Z"), f"vllm.commit-date {self.commit_date!r} is not UTC")

    @property
    def short_commit(self) -> str:
        return self.commit[:9]


@dataclass(frozen=True, kw_only=True, slots=True)
class Pin:
    """An exact package version, e.g. a torch companion."""

    name: str
    version: str

    def __post_init__(self) -> None:
        _require(self.name == canonicalize_name(self.name), f"name {self.name!r} is not canonical")
        try:
            Version(self.version)
        except InvalidVersion:
            raise ModelError(f"{self.name}: invalid version {self.version!r}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class TorchInput:
    """The torch family: requested (date, `latest` or a release version) and locked."""

    channel: TorchChannel
    requested: str  # "latest", "2026-11-12" or "2.9.1"
    cuda: str  # "cu128"
    index: str
    version: str  # locked torch version, e.g. 2.10.0.dev20261112+cu128
    date: str | None  # nightly build date YYYY-MM-DD; None for releases
    companions: tuple[Pin, ...]

    def __post_init__(self) -> None:
        _require(self.channel in ("nightly", "release"), f"torch.channel {self.channel!r} unknown")
        _require(bool(re.match(r"^cu\d{3}$", self.cuda)), f"torch.cuda {self.cuda!r} is not like cu128")
        try:
            Version(self.version)
        except InvalidVersion:
            raise ModelError(f"torch.version {self.version!r} is invalid") from None
        if self.channel == "nightly":
            _require(self.date is not None, "a nightly torch needs torch.date")

    @property
    def cuda_version(self) -> tuple[int, int]:
        digits = self.cuda[2:]
        return int(digits[:-1]), int(digits[-1])


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """Where the locked environment runs: not the resolving host."""

    python: str  # "3.12"
    platform: str  # "x86_64-manylinux_2_28"

    def __post_init__(self) -> None:
        _require(bool(_PYTHON.match(self.python)), f"target.python {self.python!r} is not like 3.12")
        _require(
            bool(_PLATFORM.match(self.platform)),
            f"target.platform {self.platform!r} is not like x86_64-manylinux_2_28",
        )

    @property
    def machine(self) -> str:
        return self.platform.split("-", 1)[0]

    @property
    def glibc(self) -> tuple[int, int]:
        match = _PLATFORM.match(self.platform)
        assert match
        return int(match.group(2)), int(match.group(3))


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildRecipe:
    """Every setting that changes the built output (MAX_JOBS does not, so it is not here)."""

    cuda_archs: tuple[str, ...]
    flash_attn_version: str = "2"
    target_device: str = "cuda"
    editable: bool = True
    env: tuple[tuple[str, str], ...] = ()  # further output-affecting settings, sorted

    def __post_init__(self) -> None:
        _require(bool(self.cuda_archs), "build.cuda-archs is empty")
        for arch in self.cuda_archs:
            _require(bool(_ARCH.match(arch)), f"build.cuda-archs: {arch!r} is not like 12.0")
        _require(list(self.env) == sorted(self.env), "build.env must be sorted")
        _require("MAX_JOBS" not in dict(self.env), "MAX_JOBS does not belong in the build recipe")

    @property
    def torch_cuda_arch_list(self) -> str:
        return ";".join(self.cuda_archs)


@dataclass(frozen=True, kw_only=True, slots=True)
class PatchedFile:
    """A file the torch-stripping script rewrote, with its hashes before and after."""

    path: str
    sha256_before: str
    sha256_after: str

    def __post_init__(self) -> None:
        _require(bool(_SHA256.match(self.sha256_before)), f"{self.path}: bad sha256-before")
        _require(bool(_SHA256.match(self.sha256_after)), f"{self.path}: bad sha256-after")


@dataclass(frozen=True, kw_only=True, slots=True)
class Layout:
    """What the locked commit looks like and what its stripping script produced."""

    stripping_script: str  # "tools/use_existing_torch.py"
    stripping_mode: Literal["default", "prefix"]
    runtime_requirements: str  # "requirements/cuda.txt"
    build_requirements: str  # "requirements/build/cuda.txt"
    patched_files: tuple[PatchedFile, ...]
    runtime_set: tuple[str, ...]  # requirement lines after stripping, in file order
    build_set: tuple[str, ...]

    @property
    def stripping_argv(self) -> tuple[str, ...]:
        return (self.stripping_script, "--prefix") if self.stripping_mode == "prefix" else (self.stripping_script,)


@dataclass(frozen=True, kw_only=True, slots=True)
class ExternalPin:
    """A CMake FetchContent pin as written at a vLLM commit (a tag can still move)."""

    name: str
    repository: str
    ref: str
    ref_kind: Literal["commit", "tag"]
    override: str  # the environment variable that points CMake at a local source tree
    declared_in: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ExternalSource(ExternalPin):
    """A pin with the commit its ref resolved to: what install stages for the build."""

    commit: str

    def __post_init__(self) -> None:
        _require(bool(re.match(r"^[a-z0-9][a-z0-9_\-]*$", self.name)), f"external source name {self.name!r} is not a plain name")
        _require(is_commit_sha(self.commit), f"external source {self.name}: commit {self.commit!r} is not a 40-hex SHA")
        _require(self.ref_kind in ("commit", "tag"), f"external source {self.name}: ref-kind {self.ref_kind!r}")
        _require(self.ref_kind == "tag" or self.ref == self.commit,
                 f"external source {self.name}: pinned commit {self.ref} but locked {self.commit}")
        _require(bool(re.match(r"^[A-Z_][A-Z0-9_]*$", self.override)),
                 f"external source {self.name}: override {self.override!r} is not an environment variable name")

    @classmethod
    def locked(cls, pin: ExternalPin, commit: str) -> ExternalSource:
        return cls(**{f.name: getattr(pin, f.name) for f in fields(ExternalPin)}, commit=commit)


@dataclass(frozen=True, kw_only=True, slots=True)
class Package:
    """One artifact of the locked environment, identified by its sha256."""

    name: str
    version: str
    source: PackageSource
    filename: str
    url: str
    size: int
    sha256: str
    hash_origin: HashOrigin

    def __post_init__(self) -> None:
        _require(self.name == canonicalize_name(self.name), f"package {self.name!r}: name not canonical")
        _require(bool(_SHA256.match(self.sha256)), f"package {self.name}: sha256 {self.sha256!r} invalid")
        _require(self.size > 0, f"package {self.name}: size must be positive")
        _require(self.filename.endswith(".whl"), f"package {self.name}: only wheels are locked")


@dataclass(frozen=True, kw_only=True, slots=True)
class Promotion:
    """How a stable lock came to be: promoted from which lock, with which evidence."""

    from_name: str
    from_content_hash: str
    promoted_at: str
    forced: bool
    test_receipts: tuple[str, ...]  # content of the passing receipts' identities (host/date/result)


@dataclass(frozen=True, kw_only=True, slots=True)
class Provenance:
    tool_version: str
    uv_version: str
    resolved_at: str  # ISO 8601 UTC
    promotion: Promotion | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Lock:
    name: str
    phase: Phase
    vllm: VllmInput
    torch: TorchInput
    general_index: str
    target: Target
    build: BuildRecipe
    layout: Layout
    external_sources: tuple[ExternalSource, ...]
    packages: tuple[Package, ...]
    provenance: Provenance
    lock_version: int = field(default=LOCK_VERSION)

    def __post_init__(self) -> None:
        _require(is_valid_lock_name(self.name), f"lock name {self.name!r} must match {_LOCK_NAME.pattern}")
        _require(self.phase in ("development", "stable"), f"phase {self.phase!r} unknown")
        names = [p.name for p in self.packages]
        _require(names == sorted(names), "packages must be sorted by name")
        _require(len(set(names)) == len(names), "a package is listed twice")

    def package(self, name: str) -> Package | None:
        wanted = canonicalize_name(name)
        return next((p for p in self.packages if p.name == wanted), None)
