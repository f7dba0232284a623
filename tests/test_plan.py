"""plan: preflight, MAX_JOBS rule, build environment, version and arch checks. Pure."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sample_lock import make_lock as sample_lock

from vllm_lock import plan
from vllm_lock.model import BuildRecipe, ExternalSource, Lock, Target

GIB = plan.GIB


def facts(**changes: Any) -> plan.MachineFacts:
    base = plan.MachineFacts(
        machine="x86_64", glibc=(2, 39), cpus=16, mem_available=64 * GIB, free_disk=500 * GIB,
        python_found="/usr/bin/python3.12", nvcc="/usr/local/cuda/bin/nvcc", nvcc_version=(12, 8),
    )
    return dataclasses.replace(base, **changes)


def lock(**build: Any) -> Lock:
    lk = sample_lock()
    return dataclasses.replace(lk, build=dataclasses.replace(lk.build, **build)) if build else lk


def test_fine_machine_has_no_problems() -> None:
    assert plan.preflight_problems(lock(cuda_archs=("12.0",), target_device="cuda"), facts()) == []


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"machine": "aarch64"}, "aarch64"),
        ({"glibc": (2, 17)}, "glibc 2.17"),
        ({"glibc": None}, "no glibc"),
        ({"python_found": None}, "is not available"),
        ({"nvcc": None, "nvcc_version": None}, "nvcc not found"),
        ({"nvcc_version": (12, 4)}, "needs CUDA >= 12.8"),
        ({"free_disk": 1 * GIB}, "not enough free disk"),
        ({"cache": "/c", "cache_free_disk": 1 << 20, "cache_missing": 3 << 20},
         "not enough free disk for the cache /c: 1.0 MiB free, 3.0 MiB of wheels to download"),
        ({"python_found": None, "python_error": "`uv python find 3.12` failed: Read-only file system"},
         "`uv python find 3.12` failed: Read-only file system"),
    ],
)
def test_each_problem_is_one_clear_line(changes: dict[str, object], words: str) -> None:
    problems = plan.preflight_problems(lock(cuda_archs=("12.0",), target_device="cuda"), facts(**changes))
    assert len(problems) == 1 and words in problems[0]


def test_nvcc_is_not_needed_for_cpu_builds() -> None:
    assert plan.preflight_problems(lock(target_device="cpu"), facts(nvcc=None, nvcc_version=None)) == []


def test_min_free_disk_override() -> None:
    assert plan.preflight_problems(lock(target_device="cpu"), facts(), min_free_disk=10**15)


def test_max_jobs_rule() -> None:
    blackwell = lock(cuda_archs=("12.0",), target_device="cuda")
    hopper = lock(cuda_archs=("9.0",), target_device="cuda")
    # 16 CPUs, 64 GiB, NVCC_THREADS 2: Blackwell 8 GiB/process -> 8 processes -> 16 jobs
    assert plan.choose_jobs(blackwell.build, facts()).max_jobs == 16
    # 16 GiB: 2 processes (Blackwell) vs 4 (Hopper)
    assert plan.choose_jobs(blackwell.build, facts(mem_available=16 * GIB)).max_jobs == 4
    assert plan.choose_jobs(hopper.build, facts(mem_available=16 * GIB)).max_jobs == 8
    # tiny machine: at least one process
    assert plan.choose_jobs(blackwell.build, facts(mem_available=2 * GIB, cpus=1)).max_jobs == 2
    assert plan.choose_jobs(blackwell.build, facts(), max_jobs=3).max_jobs == 3
    assert plan.choose_jobs(blackwell.build, facts(), nvcc_threads=8).max_jobs == 16  # 2 processes x 8
    assert plan.choose_jobs(lock(target_device="cpu").build, facts(cpus=2)).max_jobs == 2


def test_build_env_from_the_lock() -> None:
    lk = lock(cuda_archs=("10.0", "12.0"), env=(("CMAKE_BUILD_TYPE", "Release"),))
    env = plan.build_env(lk, plan.Jobs(max_jobs=8, nvcc_threads=2, reason=""),
                         {"PATH": "/bin", "VLLM_USE_PRECOMPILED": "1"})
    assert env["TORCH_CUDA_ARCH_LIST"] == "10.0;12.0"
    assert env["MAX_JOBS"] == "8" and env["NVCC_THREADS"] == "2"
    assert env["CCACHE_NOHASHDIR"] == "true" and env["CMAKE_BUILD_TYPE"] == "Release"
    assert env["SOURCE_DATE_EPOCH"] == str(plan.source_date_epoch(lk.vllm.commit_date))
    assert "VLLM_USE_PRECOMPILED" not in env and env["PATH"] == "/bin"


def test_build_env_points_cmake_at_the_staged_sources_only() -> None:
    cutlass = ExternalSource(name="cutlass", repository="https://github.com/nvidia/cutlass.git", ref="v4.2.1",
                             ref_kind="tag", commit="c" * 40, override="VLLM_CUTLASS_SRC_DIR",
                             declared_in="CMakeLists.txt")
    lk = sample_lock(external_sources=(cutlass,))
    jobs = plan.Jobs(max_jobs=2, nvcc_threads=1, reason="")
    caller = {"VLLM_CUTLASS_SRC_DIR": "/home/me/cutlass-dev", "CMAKE_ARGS": "-DFOO=1"}
    env = plan.build_env(lk, jobs, caller, external_dirs={"cutlass": Path("/g/external/cutlass")})
    assert env["VLLM_CUTLASS_SRC_DIR"] == "/g/external/cutlass"  # the caller's own tree is not what was locked
    assert env["CMAKE_ARGS"] == "-DFOO=1 -DFETCHCONTENT_FULLY_DISCONNECTED=ON"  # nothing else may be fetched
    assert plan.build_env(lk, jobs, {"CMAKE_ARGS": env["CMAKE_ARGS"]})["CMAKE_ARGS"] == env["CMAKE_ARGS"]
    assert "CMAKE_ARGS" not in plan.build_env(sample_lock(), jobs, {})  # no CMake pins, nothing to say


def test_nvcc_version_parsing() -> None:
    text = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 13.0, V13.0.88\n"
    assert plan.parse_nvcc_version(text) == (13, 0)
    assert plan.parse_nvcc_version("garbage") is None


def test_version_consistency() -> None:
    commit = "abc123def4" + "0" * 30
    assert plan.version_problem("0.33.1.dev12+gabc123def.d20261126.cu128", commit, None) is None
    assert plan.version_problem("0.33.1.dev12+g111111111", commit, None)
    assert plan.version_problem("0.33.0", commit, "v0.33.0") is None
    assert plan.version_problem("0.32.0", commit, "v0.33.0")


def test_cubin_archs() -> None:
    out = "ELF file    1: hello.1.sm_90.cubin\nELF file    2: hello.2.sm_120a.cubin\n"
    found = plan.cubin_archs(out)
    assert found == {"sm_90", "sm_120"}
    assert plan.missing_archs(("9.0", "12.0", "10.0"), found) == ["sm_100"]


def test_target_and_recipe_types_are_reused() -> None:
    assert Target(python="3.11", platform="x86_64-manylinux_2_28").machine == "x86_64"
    assert BuildRecipe(cuda_archs=("9.0",)).torch_cuda_arch_list == "9.0"


def test_a_cache_that_holds_every_wheel_needs_no_room() -> None:
    assert plan.preflight_problems(lock(target_device="cpu"), facts(cache_free_disk=0, cache_missing=0)) == []


@pytest.mark.parametrize(("text", "value"), [("8", 8), (" 3 ", 3), ("1", 1), ("0", None), ("-2", None), ("x", None),
                                             ("", None), ("2.5", None), ("\u0663", None)])
def test_positive_int(text: str, value: int | None) -> None:
    assert plan.positive_int(text) == value


# ---------------------------------------------------------------- GPUs and toolchain in preflight


def test_preflight_refuses_gpus_the_locked_archs_do_not_cover() -> None:
    from vllm_lock import cuda

    ada = cuda.GpuReport(gpus=(cuda.Gpu(name="NVIDIA L40S", capability=(8, 9)),), driver_version="570.124.06",
                         driver_cuda=(12, 8))
    cuda_lock = lock(cuda_archs=("12.0",), target_device="cuda")
    problems = plan.preflight_problems(cuda_lock, facts(gpus=ada))
    assert len(problems) == 1 and "NVIDIA L40S (sm_89)" in problems[0] and "--arch 8.9" in problems[0]
    assert plan.preflight_problems(lock(cuda_archs=("8.9", "12.0"), target_device="cuda"), facts(gpus=ada)) == []
    assert plan.preflight_problems(lock(target_device="cpu"), facts(gpus=ada)) == []  # a CPU build runs anywhere
    # not looked at (--skip-gpu-check): no problem, a warning
    assert plan.preflight_problems(cuda_lock, facts(gpus=None)) == []
    assert plan.preflight_notes(cuda_lock, facts(gpus=None)) == [
        "GPU check skipped (--skip-gpu-check): the GPUs this build is for are not checked"]
    assert plan.preflight_notes(cuda_lock, facts(gpus=cuda.GpuReport(absent="no nvidia-smi on PATH"))) == [
        "no GPU present (no nvidia-smi on PATH): the GPUs this build is for are not checked"]


def test_preflight_refuses_a_toolchain_below_the_lock() -> None:
    cpu = dataclasses.replace(lock(target_device="cpu"), external_sources=(ExternalSource(
        name="onednn", repository="https://github.com/oneapi-src/oneDNN.git", ref="v3.13", ref_kind="tag",
        override="FETCHCONTENT_SOURCE_DIR_ONEDNN", declared_in="cmake/cpu_extension.cmake", commit="d" * 40),))
    old = (plan.Tool(name="gcc", path="/usr/bin/gcc", version="12.2.0"),
           plan.Tool(name="g++", path="/usr/bin/g++", version="12.2.0"))
    problems = plan.preflight_problems(cpu, facts(toolchain=old))
    assert [p.split(" is below")[0] for p in problems] == ["gcc 12.2.0 (/usr/bin/gcc)", "g++ 12.2.0 (/usr/bin/g++)"]
    new = tuple(dataclasses.replace(t, version="12.3.0") for t in old)
    assert plan.preflight_problems(cpu, facts(toolchain=new)) == []
    arm = dataclasses.replace(cpu, target=Target(python="3.12", platform="aarch64-manylinux_2_28"))
    assert plan.toolchain_needs(arm) == ()  # the GCC 12.3 stop is the x86 backend's


def test_a_dirty_tag_build_names_the_commit() -> None:
    commit = "7c7c2c2551234567890abcdef1234567890abcde"
    # the stripping script dirties the tree: setuptools-scm names the commit, not the tag
    assert plan.version_problem("0.33.1.dev0+g7c7c2c255.d20261126", commit, "v0.33.0") is None
    assert plan.version_problem("0.33.0", commit, "v0.33.0") is None
    assert plan.version_problem("0.32.0", commit, "v0.33.0") is not None


def test_a_lock_without_a_rust_frontend_always_builds_with_the_refusing_tools(tmp_path: Path) -> None:
    """No [rust] and no build.without-rust: the build still gets rustc/cargo that refuse to run and
    an empty CARGO_HOME, never the caller's toolchain (a [rust] dropped from a lock builds nothing)."""
    lock = sample_lock()
    lock = lock if lock.rust is None else dataclasses.replace(lock, rust=None)
    assert not lock.build.without_rust
    env = plan.rust_build_env(lock, "/usr/bin", tools=tmp_path / "left-out", cargo_home=tmp_path / "home")
    assert env["RUSTC"] == str(tmp_path / "left-out" / "rustc") and env["CARGO"] == str(tmp_path / "left-out" / "cargo")
    assert env["PATH"].split(":")[0] == str(tmp_path / "left-out")
    assert env["VLLM_REQUIRE_RUST_FRONTEND"] == "0" and env["CARGO_HOME"] == str(tmp_path / "home")
