"""What a resolve is asked for, and everything about it that can be checked before any I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from vllm_lock import cuda as cuda_rules
from vllm_lock import nightly
from vllm_lock.defaults import DEFAULT_GENERAL_INDEX, DEFAULT_PLATFORM, DEFAULT_REPO
from vllm_lock.errors import UsageError
from vllm_lock.mirrors import NO_MIRRORS, Mirrors
from vllm_lock.model import BuildRecipe, ModelError, Target, build_env_problem, show
from vllm_lock.shell import lockfiles
from vllm_lock.shell.store import cache_root


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

    @property
    def cuda_major(self) -> int | None:
        """The torch's CUDA major (setup.py reads torch.version.cuda): the variant's, for cuda."""
        if self.target_device != "cuda" or self.cuda == "cpu":
            return None
        return cuda_rules.parse_variant(self.cuda)[0]


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
