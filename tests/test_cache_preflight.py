"""plan's preflight when a binary cache may give the build (pure): the build toolchain is left out
of preflight_problems and checked by build_toolchain_problems once setup.py has to run."""

from __future__ import annotations

import dataclasses

from sample_lock import make_lock

from vllm_lock import plan
from vllm_lock.model import Lock

GIB = plan.GIB
NO_COMPILER = (plan.Tool(name="gcc", path=None), plan.Tool(name="g++", path=None),
               plan.Tool(name="cmake", path="/usr/bin/cmake", version="3.31.0"))


def facts(**changes: object) -> plan.MachineFacts:
    base: dict[str, object] = dict(machine="x86_64", glibc=(2, 39), cpus=16, mem_available=64 * GIB,
                                   free_disk=500 * GIB, python_found="/usr/bin/python3.12")
    base.update(changes)
    return plan.MachineFacts(**base)  # type: ignore[arg-type]


def lock(target_device: str, archs: tuple[str, ...] = ("12.0",)) -> Lock:
    sample = make_lock()
    return dataclasses.replace(sample, build=dataclasses.replace(sample.build, target_device=target_device,
                                                                 cuda_archs=archs))


def test_a_machine_without_nvcc_or_compilers_passes_preflight_when_a_cache_may_give_the_build() -> None:
    cuda = lock("cuda")
    bare = facts(toolchain=NO_COMPILER)
    assert plan.preflight_problems(cuda, bare, build_tools=False) == []
    problems = plan.build_toolchain_problems(cuda, bare)
    assert problems[0].startswith("nvcc not found")
    assert "gcc not found ($CC, else PATH): building vLLM's cuda extensions needs a C/C++ compiler" in problems
    assert plan.preflight_problems(cuda, bare) == problems  # without a cache: refused at preflight, as before


def test_a_compiler_is_needed_only_where_the_lock_compiles_and_only_when_looked_for() -> None:
    assert plan.build_toolchain_problems(lock("empty"), facts(toolchain=NO_COMPILER)) == []
    assert plan.build_toolchain_problems(lock("cpu"), facts(toolchain=NO_COMPILER)) == [
        "gcc not found ($CC, else PATH): building vLLM's cpu extensions needs a C/C++ compiler",
        "g++ not found ($CXX, else PATH): building vLLM's cpu extensions needs a C/C++ compiler"]
    assert plan.build_toolchain_problems(lock("cpu"), facts()) == []  # not looked at: nothing to say
