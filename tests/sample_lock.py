"""A hand-built Lock for pure tests of the core (no I/O). Not a fixture file for locks/."""

from __future__ import annotations

import dataclasses
from typing import Any

from vllm_lock.model import (
    BuildRecipe,
    ExternalSource,
    Layout,
    Lock,
    Package,
    PatchedFile,
    Pin,
    Provenance,
    Target,
    TorchInput,
    VllmInput,
)


def make_lock(**overrides: Any) -> Lock:
    lock = Lock(
        name="dev",
        phase="development",
        vllm=VllmInput(
            url="https://github.com/vllm-project/vllm.git",
            ref="main",
            commit="a" * 40,
            commit_date="2026-11-20T10:00:00Z",
        ),
        torch=TorchInput(
            channel="nightly",
            requested="latest",
            cuda="cu128",
            index="https://download.pytorch.org/whl/nightly/cu128",
            version="2.10.0.dev20261112+cu128",
            date="2026-11-12",
            companions=(
                Pin(name="torchvision", version="0.25.0.dev20261112+cu128"),
                Pin(name="torchaudio", version="2.10.0.dev20261112+cu128"),
            ),
        ),
        general_index="https://pypi.org/simple",
        target=Target(python="3.12", platform="x86_64-manylinux_2_28"),
        build=BuildRecipe(cuda_archs=("12.0",), flash_attn_version="2"),
        layout=Layout(
            stripping_script="tools/use_existing_torch.py",
            stripping_mode="prefix",
            runtime_requirements="requirements/cuda.txt",
            build_requirements="requirements/build/cuda.txt",
            patched_files=(PatchedFile(path="requirements/cuda.txt", sha256_before="1" * 64, sha256_after="2" * 64),),
            runtime_set=("filelock", "typing-extensions>=4.10"),
            build_set=("setuptools<80,>=77", "wheel"),
        ),
        external_sources=(
            ExternalSource(
                name="cutlass",
                repository="https://github.com/nvidia/cutlass.git",
                ref="v4.2.1",
                ref_kind="tag",
                declared_in="CMakeLists.txt",
            ),
        ),
        packages=(
            Package(
                name="filelock",
                version="3.16.1",
                source="general",
                filename="filelock-3.16.1-py3-none-any.whl",
                url="https://files.pythonhosted.org/filelock-3.16.1-py3-none-any.whl",
                size=16163,
                sha256="3" * 64,
                hash_origin="index",
            ),
            Package(
                name="torch",
                version="2.10.0.dev20261112+cu128",
                source="torch",
                filename="torch-2.10.0.dev20261112+cu128-cp312-cp312-manylinux_2_28_x86_64.whl",
                url="https://download-r2.pytorch.org/whl/nightly/cu128/torch-2.10.0.dev20261112%2Bcu128-cp312-cp312-manylinux_2_28_x86_64.whl",
                size=900_000_000,
                sha256="4" * 64,
                hash_origin="downloaded",
            ),
        ),
        provenance=Provenance(tool_version="0.1.0", uv_version="0.13.9", resolved_at="2026-11-26T12:00:00Z"),
    )
    return dataclasses.replace(lock, **overrides)
