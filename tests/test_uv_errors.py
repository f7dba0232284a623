"""uv's output of a failed compile -> the error resolve reports (vllm_lock.uv_errors): pure, no I/O.
The outputs are uv 0.13's own wording (captured from real runs; the last lines of each kept)."""

from __future__ import annotations

import pytest

from vllm_lock import uv_errors
from vllm_lock.errors import CompanionMismatchError, ExitCode, ResolutionError, UnreachableError
from vllm_lock.model import Target

X86 = Target(python="3.12", platform="x86_64-manylinux_2_28")
ARM = Target(python="3.12", platform="aarch64-manylinux_2_28")
NIGHTLY_ROUTED = frozenset({"torch", "torchvision", "pytorch-triton"})
RELEASE_ROUTED = frozenset({"torch", "torchaudio", "triton"})

LLGUIDANCE = (
    "error: No solution found when resolving dependencies\n  cause: Because llguidance==1.7.0 has no wheels "
    "with a matching platform tag (e.g., `manylinux_2_28_x86_64`) and only llguidance==1.7.0 is available, we "
    "can conclude that all versions of llguidance cannot be used.\n\nhint: Wheels are available for "
    "`llguidance` (v1.7.0) on the following platforms: `manylinux_2_31_x86_64`,\n `manylinux_2_28_aarch64`\n")
UNREACHABLE = (
    "error: Request failed after 3 retries in 7.3s\n  cause: Failed to fetch: http://127.0.0.1:9/simple/torchvision/\n"
    "  cause: error sending request for url (http://127.0.0.1:9/simple/torchvision/)\n  cause: client error (Connect)\n"
    "  cause: tcp connect error\n  cause: Connection refused (os error 111)\n")
AUDIO_UNFIT = (
    "  × No solution found when resolving dependencies:\n"
    "  ╰─▶ Because torchaudio==2.9.0 depends on torch==2.9.0 and you require torch==2.9.1+cu128, we can conclude "
    "that you require torchaudio!=2.9.0.\n      And because you require torchaudio==2.9.0, we can conclude that "
    "your requirements are unsatisfiable.\n")
NOT_FOUND = (
    "error: No solution found when resolving dependencies\n  cause: Because vllm-fake-missing was not found in the "
    "package registry and you require vllm-fake-missing, we can conclude that your requirements are unsatisfiable.\n")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (LLGUIDANCE,
         "llguidance v1.7.0 ships no wheel for x86_64-manylinux_2_28; its wheels are for these platforms: "
         "manylinux_2_31_x86_64, manylinux_2_28_aarch64"),
        ("hint: You require CPython 3.12 (`cp312`), but we only found wheels for `fake` (v1.0.0) with the following "
         "Python implementation tag: `cp311`",
         "fake v1.0.0 ships no wheel for Python 3.12; its wheels are for these Python tags: cp311"),
        ("hint: You require CPython 3.12 (`cp312`), but we only found wheels for `fake` (v1.0.0) with the following "
         "Python ABI tags: `cp311`, `abi3`",
         "fake v1.0.0 ships no wheel for Python 3.12; its wheels are for these Python tags: cp311, abi3"),
        ("  cause: Because fake==1.0.0 has no wheels with a matching platform tag (e.g., `manylinux_2_28_x86_64`)",
         "fake ships no wheel for x86_64-manylinux_2_28, Python 3.12 (no platform tag matches)"),
        ("  cause: Because torch==2.10 depends on missing-thing, we can conclude ...", None),
        (NOT_FOUND, None),
    ],
)
def test_no_wheel_message_names_the_package_and_what_it_ships(output: str, expected: str | None) -> None:
    assert uv_errors.no_wheel_message(output, X86) == expected


def test_a_package_without_a_wheel_for_the_target_is_a_resolution_error_naming_it() -> None:
    error = uv_errors.compile_error(LLGUIDANCE, ["torch==2.14.0"], X86, RELEASE_ROUTED)
    assert type(error) is ResolutionError and error.exit_code == ExitCode.RESOLUTION
    assert str(error) == ("llguidance v1.7.0 ships no wheel for x86_64-manylinux_2_28; its wheels are for these "
                          "platforms: manylinux_2_31_x86_64, manylinux_2_28_aarch64")


def test_a_torch_family_member_without_a_wheel_lets_latest_try_an_older_nightly() -> None:
    output = ("hint: Wheels are available for `torchvision` (v0.25.0.dev20261113+cu128) on the following platforms: "
              "`manylinux_2_28_x86_64`")
    error = uv_errors.compile_error(output, ["torch==2.10.0"], ARM, NIGHTLY_ROUTED)
    assert isinstance(error, CompanionMismatchError)
    assert str(error) == ("torch companions cannot match (torch==2.10.0): torchvision v0.25.0.dev20261113+cu128 "
                          "ships no wheel for aarch64-manylinux_2_28; its wheels are for these platforms: "
                          "manylinux_2_28_x86_64")


def test_an_index_that_does_not_answer_is_unreachable_with_uvs_first_error_line() -> None:
    error = uv_errors.compile_error(UNREACHABLE, ["torch==2.10.0"], X86, NIGHTLY_ROUTED)
    assert isinstance(error, UnreachableError) and error.exit_code == ExitCode.UNREACHABLE
    assert str(error) == "an index was unreachable while resolving: error: Request failed after 3 retries in 7.3s"


def test_an_unsolvable_set_naming_a_member_is_a_companion_mismatch() -> None:
    error = uv_errors.compile_error(AUDIO_UNFIT, ["torch==2.9.1+cu128", "torchaudio==2.9.0"], X86, RELEASE_ROUTED)
    assert isinstance(error, CompanionMismatchError)
    assert str(error).startswith("torch companions cannot match (torch==2.9.1+cu128, torchaudio==2.9.0): Because "
                                 "torchaudio==2.9.0 depends on torch==2.9.0")


def test_torch_or_triton_alone_in_an_unsolvable_set_is_not_a_companion_mismatch() -> None:
    output = AUDIO_UNFIT.replace("torchaudio", "numpy")  # names torch, no member
    error = uv_errors.compile_error(output, ["torch==2.9.1+cu128"], X86, RELEASE_ROUTED)
    assert type(error) is ResolutionError
    assert str(error) == ("uv could not resolve the package set: Because numpy==2.9.0 depends on torch==2.9.0 and you "
                          "require torch==2.9.1+cu128, we can conclude that you require numpy!=2.9.0. And because you "
                          "require numpy==2.9.0, we can conclude that your requirements are unsatisfiable.")


def test_any_other_failure_is_a_resolution_error_with_uvs_reason_cut_to_400_characters() -> None:
    error = uv_errors.compile_error(NOT_FOUND, ["torch==2.10.0"], X86, NIGHTLY_ROUTED)
    assert type(error) is ResolutionError
    assert str(error).startswith("uv could not resolve the package set: error: No solution found when resolving "
                                 "dependencies cause: Because vllm-fake-missing was not found")
    long = "error: No solution found\n  cause: " + "x" * 1000
    assert len(str(uv_errors.compile_error(long, [], X86, NIGHTLY_ROUTED))) == len(
        "uv could not resolve the package set: ") + 400
    assert str(uv_errors.compile_error("", [], X86, NIGHTLY_ROUTED)) == "uv could not resolve the package set: ?"


def test_found_no_solution_and_named_in() -> None:
    assert uv_errors.found_no_solution(AUDIO_UNFIT) and uv_errors.found_no_solution(NOT_FOUND)
    assert not uv_errors.found_no_solution(UNREACHABLE)
    assert uv_errors.named_in(AUDIO_UNFIT, ["torchvision", "torchaudio", "torch"]) == ["torchaudio", "torch"]
    assert uv_errors.named_in("× No solution: Because TorchCodec==0.8 ...", ["torchcodec"]) == ["torchcodec"]
