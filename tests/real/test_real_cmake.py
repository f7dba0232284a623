"""vLLM's own release sources (PyPI sdists, downloaded once and cached): the external sources the
configure step fetches, per target. Every expected set below was written by hand from reading
that version's CMakeLists.txt and cmake/**/*.cmake, never produced by the code under test."""

from __future__ import annotations

import tarfile
from functools import cache

import pytest
from sdists import cmake_files, sdist

from vllm_lock import cmake, source_layout

Pin = tuple[str, str, str, str]  # name, repository, ref, override

CUTLASS = "https://github.com/nvidia/cutlass.git"
FLASH_ATTN = "https://github.com/vllm-project/flash-attention.git"
FLASHMLA = "https://github.com/vllm-project/FlashMLA"
QUTLASS = "https://github.com/IST-DASLab/qutlass.git"
TRITON = "https://github.com/triton-lang/triton.git"
ONEDNN = "https://github.com/oneapi-src/oneDNN.git"
ACL = ("arm_compute", "https://github.com/ARM-software/ComputeLibrary.git", "v52.6.0", "ACL_ROOT_DIR")
ONEDNN_AARCH64 = ("onednn", ONEDNN, "9c5be1cc59e368aebf0909e6cf20f981ea61462a", "FETCHCONTENT_SOURCE_DIR_ONEDNN")

EXPECTED: dict[tuple[str, str, str], set[Pin]] = {
    # 0.8.5.post1: CUTLASS in CMakeLists.txt, flashmla + vllm_flash_attn in cmake/external_projects/
    ("0.8.5.post1", "cuda", "x86_64"): {
        ("cutlass", CUTLASS, "v3.9.0", "VLLM_CUTLASS_SRC_DIR"),
        ("flashmla", FLASHMLA + ".git", "575f7724b9762f265bbee5889df9c7d630801845", "FLASH_MLA_SRC_DIR"),
        ("vllm-flash-attn", FLASH_ATTN, "8798f27777fb57f447070301bf33a9f9c607f491", "VLLM_FLASH_ATTN_SRC_DIR"),
    },
    # oneDNN only under `if (AVX512_FOUND AND NOT AVX512_DISABLED)`: the build host's CPU decides
    ("0.8.5.post1", "cpu", "x86_64"): {("onednn", ONEDNN, "v3.7.1", "FETCHCONTENT_SOURCE_DIR_ONEDNN")},
    ("0.8.5.post1", "cpu", "aarch64"): set(),
    ("0.11.2", "cuda", "x86_64"): {
        ("cutlass", CUTLASS, "v4.2.1", "VLLM_CUTLASS_SRC_DIR"),
        ("flashmla", FLASHMLA, "46d64a8ebef03fa50b4ae74937276a5c940e3f95", "FLASH_MLA_SRC_DIR"),
        ("qutlass", QUTLASS, "830d2c4537c7396e14a02a46fbddd18b5d107c65", "QUTLASS_SRC_DIR"),
        ("vllm-flash-attn", FLASH_ATTN, "58e0626a692f09241182582659e3bf8f16472659", "VLLM_FLASH_ATTN_SRC_DIR"),
    },
    ("0.11.2", "cpu", "x86_64"): {("onednn", ONEDNN, "v3.10", "FETCHCONTENT_SOURCE_DIR_ONEDNN")},
    ("0.11.2", "cpu", "aarch64"): {ACL, ("onednn", ONEDNN, "v3.10", "FETCHCONTENT_SOURCE_DIR_ONEDNN")},
    ("0.20.2", "cuda", "x86_64"): {
        ("cutlass", CUTLASS, "v4.4.2", "VLLM_CUTLASS_SRC_DIR"),
        ("deepgemm", "https://github.com/deepseek-ai/DeepGEMM.git", "891d57b4db1071624b5c8fa0d1e51cb317fa709f",
         "DEEPGEMM_SRC_DIR"),
        ("flashmla", FLASHMLA, "a6ec2ba7bd0a7dff98b3f4d3e6b52b159c48d78b", "FLASH_MLA_SRC_DIR"),
        ("qutlass", QUTLASS, "830d2c4537c7396e14a02a46fbddd18b5d107c65", "QUTLASS_SRC_DIR"),
        ("triton_kernels", TRITON, "v3.6.0", "TRITON_KERNELS_SRC_DIR"),
        ("vllm-flash-attn", FLASH_ATTN, "f5bc33cfc02c744d24a2e9d50e6db656de40611c", "VLLM_FLASH_ATTN_SRC_DIR"),
    },
    # two oneDNN declarations under `if(ASIMD_FOUND AND NOT APPLE_SILICON_FOUND)`: the x86 tag here
    ("0.20.2", "cpu", "x86_64"): {("onednn", ONEDNN, "v3.10", "FETCHCONTENT_SOURCE_DIR_ONEDNN")},
    ("0.20.2", "cpu", "aarch64"): {ACL, ONEDNN_AARCH64},
    ("0.30.0", "cuda", "x86_64"): {
        ("cutlass", CUTLASS, "v4.7.1", "VLLM_CUTLASS_SRC_DIR"),
        ("deepgemm", "https://github.com/vllm-project/DeepGEMM.git", "e1f418c2a4f20818221f6b0e578b4c2f634d4c3f",
         "DEEPGEMM_SRC_DIR"),
        ("deepselect", "https://github.com/vllm-project/DeepSelect.git", "d96d33afe1fab0d6066da49cdc91e64c2bee65ea",
         "DEEPSELECT_SRC_DIR"),
        ("flashkda", "https://github.com/vllm-project/FlashKDA.git", "b59532f1f464fbd536272780e30df5bf6a2ccc02",
         "FLASH_KDA_SRC_DIR"),
        ("flashmla", FLASHMLA, "0eee43b12f034b657133cf2afca6a72ebb6efccf", "FLASH_MLA_SRC_DIR"),
        ("fmha_sm100", "https://github.com/vllm-project/MSA.git", "f355c37eb4e1413f21ee2ad8bbad25079e6bef9d",
         "FMHA_SM100_SRC_DIR"),
        ("qutlass", QUTLASS, "e74319e3405ce6d71965732880f5dc1f52371f64", "QUTLASS_SRC_DIR"),
        ("tml_fa4", "https://github.com/vllm-project/tml-fa4.git", "75765e76a9c2c012c1f6ecd64577eb646eb4d303",
         "TML_FA4_SRC_DIR"),
        ("triton_kernels", TRITON, "v3.5.1", "TRITON_KERNELS_SRC_DIR"),
        ("vllm-flash-attn", FLASH_ATTN, "506341a143fcabd4bb79052a7605ada727d6b3f5", "VLLM_FLASH_ATTN_SRC_DIR"),
    },
    ("0.30.0", "rocm", "x86_64"): {
        ("triton_kernels", "https://github.com/ROCm/triton.git", "0f380657dbf3ee86eb57558ff71df24f03b5d4e7",
         "TRITON_KERNELS_SRC_DIR"),
    },
    ("0.30.0", "cpu", "x86_64"): {("onednn", ONEDNN, "v3.13", "FETCHCONTENT_SOURCE_DIR_ONEDNN")},
    ("0.30.0", "cpu", "aarch64"): {ACL, ONEDNN_AARCH64},
    ("0.33.0", "cuda", "x86_64"): {
        ("cutlass", CUTLASS, "v4.7.1", "VLLM_CUTLASS_SRC_DIR"),
        ("deepgemm", "https://github.com/vllm-project/DeepGEMM.git", "0820030756945b2daec208e8e8255268360f337d",
         "DEEPGEMM_SRC_DIR"),
        ("deepselect", "https://github.com/vllm-project/DeepSelect.git", "d96d33afe1fab0d6066da49cdc91e64c2bee65ea",
         "DEEPSELECT_SRC_DIR"),
        ("flashkda", "https://github.com/vllm-project/FlashKDA.git", "17a037d98da546deb4591e967cf961a43c034d8b",
         "FLASH_KDA_SRC_DIR"),
        ("flashmla", FLASHMLA, "e2afa5fd8c220fbd05fe03fc24c9d5e64c24641b", "FLASH_MLA_SRC_DIR"),
        ("fmha_sm100", "https://github.com/vllm-project/MSA.git", "968061ab16cb14991a5c7d4c0e8eabf531be0dcf",
         "FMHA_SM100_SRC_DIR"),
        ("qutlass", QUTLASS, "e74319e3405ce6d71965732880f5dc1f52371f64", "QUTLASS_SRC_DIR"),
        ("tml_fa4", "https://github.com/vllm-project/tml-fa4.git", "75765e76a9c2c012c1f6ecd64577eb646eb4d303",
         "TML_FA4_SRC_DIR"),
        ("triton_kernels", TRITON, "v3.5.1", "TRITON_KERNELS_SRC_DIR"),
        ("vllm-flash-attn", FLASH_ATTN, "b273a02621d3c94bc747df67204f591b67f38fae", "VLLM_FLASH_ATTN_SRC_DIR"),
    },
    # the CUDA build on aarch64 (DGX Spark) fetches the same sources
    ("0.33.0", "cuda", "aarch64"): set(),  # filled below: same as x86_64
    ("0.33.0", "rocm", "x86_64"): {
        ("triton_kernels", "https://github.com/ROCm/triton.git", "669b31acc1dd1b3fd93286afd5db67f65d9f7557",
         "TRITON_KERNELS_SRC_DIR"),
    },
    ("0.33.0", "cpu", "x86_64"): {("onednn", ONEDNN, "v3.13", "FETCHCONTENT_SOURCE_DIR_ONEDNN")},
    ("0.33.0", "cpu", "aarch64"): {ACL, ONEDNN_AARCH64},
}
EXPECTED[("0.33.0", "cuda", "aarch64")] = EXPECTED[("0.33.0", "cuda", "x86_64")]
VERSIONS = ("0.8.5.post1", "0.11.2", "0.20.2", "0.30.0", "0.33.0")
for _version in VERSIONS:  # `empty`: CMakeLists.txt returns before any FetchContent, every version
    EXPECTED[(_version, "empty", "x86_64")] = set()

# Conditions the reader must list: a pin inside, decided by the build host's CPU.
UNDECIDED = {
    ("0.8.5.post1", "cpu", "x86_64"): {("cmake/cpu_extension.cmake", "if(AVX512_FOUND AND NOT AVX512_DISABLED)")},
    ("0.11.2", "cpu", "x86_64"): {("cmake/cpu_extension.cmake",
                                   "if((AVX512_FOUND AND NOT AVX512_DISABLED) OR (ASIMD_FOUND AND NOT "
                                   "APPLE_SILICON_FOUND) OR POWER9_FOUND OR POWER10_FOUND OR POWER11_FOUND)")},
}


@cache
def tree(version: str) -> tuple[frozenset[str], dict[str, str]]:
    with tarfile.open(sdist(version)) as archive:
        paths = frozenset(m.name.split("/", 1)[1] for m in archive.getmembers() if m.isfile() and "/" in m.name)
    return paths, cmake_files(version)


def read_pins(version: str, device: str, processor: str) -> source_layout.ExternalPinsReading:
    paths, files = tree(version)
    return source_layout.external_pins(paths, files.__getitem__, target_device=device, processor=processor)


@pytest.mark.parametrize(("version", "device", "processor"), sorted(EXPECTED))
def test_external_sources_of_real_vllm(version: str, device: str, processor: str) -> None:
    reading = read_pins(version, device, processor)
    assert {(p.name, p.repository, p.ref, p.override) for p in reading.pins} == EXPECTED[(version, device, processor)]
    assert {(u.file, u.condition) for u in reading.undecided} == UNDECIDED.get((version, device, processor), set())
    assert ("cmake/cpu_extension.cmake" in reading.included) == (device == "cpu")


@pytest.mark.parametrize("version", VERSIONS)
def test_sdist_is_cached_and_verified(version: str) -> None:
    path = sdist(version)
    digest, _, name = path.with_name(f"vllm-{version}.sha256").read_text().split()
    assert path.name == name and len(digest) == 64
    assert sdist(version) == path  # a second call uses the cache


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_target_fetches_nothing_by_cmakes_own_logic(version: str) -> None:
    """`empty` locks nothing by rule; vLLM's own CMakeLists.txt agrees when evaluated for it."""
    paths, files = tree(version)
    reading = cmake.evaluate("CMakeLists.txt", paths, files.__getitem__,
                             facts=source_layout.cmake_facts("empty", "x86_64"))
    assert reading.pins == () and reading.stopped is None
    assert "cmake/cpu_extension.cmake" not in reading.included
