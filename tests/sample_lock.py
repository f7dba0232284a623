"""Hand-built locks for the pure tests (no I/O). Never a lock for locks/."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any
from urllib.parse import quote

from vllm_lock.model import (
    BuildRecipe,
    Lock,
    Package,
    PackageSource,
    PatchedFile,
    Pin,
    Provenance,
    SourceLayout,
    Target,
    TorchInput,
    VllmInput,
    Wheel,
)

REPO = "https://github.com/vllm-project/vllm.git"
C1 = "1" * 40
C2 = "2" * 40


def sha(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


TORCH_INDEX = "https://download.pytorch.org/whl/nightly/cu128"
GENERAL_INDEX = "https://pypi.org/simple"


def wheel(name: str, version: str, tag: str = "py3-none-any", seed: str = "", source: str = "general") -> Wheel:
    filename = f"{name.replace('-', '_')}-{version}-{tag}.whl"
    url = (f"{TORCH_INDEX}/{quote(filename)}" if source == "torch"
           else f"https://files.pythonhosted.org/packages/00/11/{filename}")
    suffix = "" if tag == "py3-none-any" else f"-{tag}"
    return Wheel(filename=filename, url=url, size=100, sha256=sha(f"{name}-{version}-{seed}{suffix}"),
                 hash_origin="index")


def package(name: str, version: str, seed: str = "", source: PackageSource = "general",
            tags: tuple[str, ...] = ("py3-none-any",)) -> Package:
    """A package locking one wheel per tag (sorted by file name, as resolve writes them)."""
    wheels = sorted((wheel(name, version, tag, seed, source) for tag in tags), key=lambda w: w.filename)
    return Package(name=name, version=version, source=source, wheels=tuple(wheels))


def torch_packages(date: str) -> tuple[Package, ...]:
    d = date.replace("-", "")
    return (
        package("pytorch-triton", "3.5.0+gitabcdef12", source="torch"),
        package("torch", f"2.10.0.dev{d}+cu128", source="torch"),
        package("torchaudio", f"2.10.0.dev{d}+cu128", source="torch"),
        package("torchvision", f"0.25.0.dev{d}+cu128", source="torch"),
    )


def make_lock(
    *,
    name: str = "dev",
    commit: str = C1,
    commit_date: str = "2026-11-20T10:00:00Z",
    ref: str = "main",
    torch_date: str = "2026-11-05",
    requested: str = "latest",
    url: str = REPO,
    extra: tuple[Package, ...] = (package("filelock", "3.20.0"), package("packaging", "25.0")),
    archs: tuple[str, ...] = ("12.0",),
    **overrides: Any,
) -> Lock:
    """A valid lock; keyword overrides replace whole fields (dataclasses.replace)."""
    d = torch_date.replace("-", "")
    packages = tuple(sorted((*extra, *torch_packages(torch_date)), key=lambda p: p.name))
    lock = Lock(
        name=name,
        phase="development",
        vllm=VllmInput(url=url, ref=ref, commit=commit, commit_date=commit_date),
        torch=TorchInput(
            # a requested release version (2.9.1) only exists on the release channel
            channel="nightly" if requested == "latest" or requested[:1] == "2" and requested.count("-") == 2
            else "release",
            requested=requested,
            cuda="cu128",
            index=TORCH_INDEX,
            version=f"2.10.0.dev{d}+cu128",
            date=torch_date,
            companions=(
                Pin(name="torchvision", version=f"0.25.0.dev{d}+cu128"),
                Pin(name="torchaudio", version=f"2.10.0.dev{d}+cu128"),
                Pin(name="pytorch-triton", version="3.5.0+gitabcdef12"),
            ),
        ),
        general_index=GENERAL_INDEX,
        target=Target(python="3.12", platform="x86_64-manylinux_2_28"),
        build=BuildRecipe(cuda_archs=archs),
        layout=SourceLayout(
            stripping_script="use_existing_torch.py",
            stripping_mode="default",
            runtime_requirements="requirements/cuda.txt",
            build_requirements="requirements/build.txt",
            patched_files=(PatchedFile(path="requirements/cuda.txt", sha256_before=sha("a"), sha256_after=sha("b")),),
            runtime_set=("filelock>=3",),
            build_set=("packaging>=24",),
        ),
        external_sources=(),
        packages=packages,
        provenance=Provenance(tool_version="0.1.0", uv_version="0.9.0", resolved_at="2026-11-20T12:00:00Z"),
    )
    return dataclasses.replace(lock, **overrides)
