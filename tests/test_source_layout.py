from __future__ import annotations

from collections.abc import Callable

import pytest

from vllm_lock import cuda, source_layout


def reader(files: dict[str, str]) -> Callable[[str], str]:
    def read(path: str) -> str:
        if path not in files:
            raise source_layout.LayoutError(f"{path} is missing")
        return files[path]

    return read


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"use_existing_torch.py": "import glob", "requirements/build.txt": "", "requirements/cuda.txt": ""},
         ("use_existing_torch.py", "default", "requirements/build.txt")),
        ({"use_existing_torch.py": "parser.add_argument('--prefix')", "requirements/build/cuda.txt": "",
          "requirements/cuda.txt": ""}, ("use_existing_torch.py", "prefix", "requirements/build/cuda.txt")),
        ({"tools/use_existing_torch.py": "--prefix", "requirements/build/cuda.txt": "", "requirements/cuda.txt": ""},
         ("tools/use_existing_torch.py", "prefix", "requirements/build/cuda.txt")),
    ],
)
def test_detect_layout(files: dict[str, str], expected: tuple[str, str, str]) -> None:
    found = source_layout.detect_layout(files, reader(files), target_device="cuda")
    assert (found.stripping_script, found.stripping_mode, found.build_requirements) == expected


def test_detect_layout_explains_what_is_missing() -> None:
    with pytest.raises(source_layout.LayoutError, match="no use_existing_torch.py"):
        source_layout.detect_layout({"setup.py": ""}, reader({}), target_device="cuda")


def test_requirement_files_follow_includes_and_skip_options() -> None:
    files = {
        "requirements/cuda.txt": "-r common.txt\n--extra-index-url https://download.pytorch.org/whl/cu128\n"
        "numba == 0.61.2 # pinned\n",
        "requirements/common.txt": "# needed by torch.compile\nregex\nfastapi[standard] >= 0.115.0 ; python_version > "
                                   "'3.9'\n"
        "long-name \\\n  >= 1.0\nregex\n",
    }
    got = source_layout.parse_requirement_file("requirements/cuda.txt", reader(files))
    assert got == ("regex", "fastapi[standard]>=0.115.0; python_version > \"3.9\"", "long-name>=1.0", "numba==0.61.2")


def test_requirement_file_errors_name_file_and_line() -> None:
    files = {"requirements/cuda.txt": "ok\nthis is not a requirement\n"}
    with pytest.raises(source_layout.LayoutError, match=r"requirements/cuda.txt:2"):
        source_layout.parse_requirement_file("requirements/cuda.txt", reader(files))
    with pytest.raises(source_layout.LayoutError, match="include cycle"):
        source_layout.parse_requirement_file("a.txt", reader({"a.txt": "-r a.txt\n"}))


def test_patched_files_lists_only_changes() -> None:
    before = {"a.txt": b"torch==2.9\nx\n", "b.txt": b"y\n"}
    after = {"a.txt": b"x\n", "b.txt": b"y\n"}
    (patched,) = source_layout.patched_files(before, after)
    assert patched.path == "a.txt" and patched.sha256_before != patched.sha256_after


SHA = "ab" * 20
VLLM_LIKE = {
    "CMakeLists.txt": (
        'set(VLLM_TARGET_DEVICE "cuda" CACHE STRING "Target device backend for vLLM")\n'
        "include(${CMAKE_CURRENT_LIST_DIR}/cmake/utils.cmake)\n"
        'if (NOT VLLM_TARGET_DEVICE STREQUAL "cuda" AND\n    NOT VLLM_TARGET_DEVICE STREQUAL "rocm")\n'
        '    if (VLLM_TARGET_DEVICE STREQUAL "cpu")\n'
        "        include(${CMAKE_CURRENT_LIST_DIR}/cmake/cpu_extension.cmake)\n"
        "    else()\n        return()\n    endif()\n    return()\nendif()\n"
        'set(CUTLASS_REVISION "v4.2.1" CACHE STRING "CUTLASS revision to use")\n'
        "if (DEFINED ENV{VLLM_CUTLASS_SRC_DIR})\n  set(VLLM_CUTLASS_SRC_DIR $ENV{VLLM_CUTLASS_SRC_DIR})\nendif()\n"
        "if(VLLM_CUTLASS_SRC_DIR)\n  FetchContent_Declare(cutlass SOURCE_DIR ${VLLM_CUTLASS_SRC_DIR})\nelse()\n"
        "  FetchContent_Declare(\n    cutlass\n    GIT_REPOSITORY https://github.com/nvidia/cutlass.git\n"
        "    GIT_TAG ${CUTLASS_REVISION}\n    GIT_SHALLOW TRUE\n  )\nendif()\n"
        "include(cmake/external_projects/vllm_flash_attn.cmake)\n"
    ),
    "cmake/utils.cmake": "macro(find_isa CPUINFO TARGET OUT)\nendmacro()\n",
    "cmake/external_projects/vllm_flash_attn.cmake": (
        "FetchContent_Declare(\n  vllm-flash-attn\n  GIT_REPOSITORY "
        "https://github.com/vllm-project/flash-attention.git\n"
        f"  GIT_TAG {SHA}\n)\n"
    ),
    "cmake/cpu_extension.cmake": (
        'find_isa(${CPUINFO} "asimd" ASIMD_FOUND)\n'
        'set(FETCHCONTENT_SOURCE_DIR_ONEDNN "$ENV{FETCHCONTENT_SOURCE_DIR_ONEDNN}" CACHE PATH "oneDNN")\n'
        "if(FETCHCONTENT_SOURCE_DIR_ONEDNN)\n  FetchContent_Declare(oneDNN SOURCE_DIR "
        "${FETCHCONTENT_SOURCE_DIR_ONEDNN})\n"
        "elseif(ASIMD_FOUND)\n"
        f"  FetchContent_Declare(oneDNN GIT_REPOSITORY https://github.com/oneapi-src/oneDNN.git GIT_TAG {SHA})\n"
        "else()\n  FetchContent_Declare(oneDNN GIT_REPOSITORY https://github.com/oneapi-src/oneDNN.git GIT_TAG v3.13)\n"
        "endif()\n"
    ),
}


def pins_for(files: dict[str, str], device: str, processor: str = "x86_64") -> set[tuple[str, str, str, str, str]]:
    reading = source_layout.external_pins(files, reader(files), target_device=device, processor=processor)
    return {(p.name, p.repository, p.ref, p.ref_kind, p.override) for p in reading.pins}


@pytest.mark.parametrize(
    ("device", "processor", "expected"),
    [
        ("cuda", "x86_64", {
            ("cutlass", "https://github.com/nvidia/cutlass.git", "v4.2.1", "tag", "VLLM_CUTLASS_SRC_DIR"),
            ("vllm-flash-attn", "https://github.com/vllm-project/flash-attention.git", SHA, "commit",
             "VLLM_FLASH_ATTN_SRC_DIR"),
        }),
        ("cpu", "x86_64", {("onednn", "https://github.com/oneapi-src/oneDNN.git", "v3.13", "tag",
                            "FETCHCONTENT_SOURCE_DIR_ONEDNN")}),
        ("cpu", "aarch64", {("onednn", "https://github.com/oneapi-src/oneDNN.git", SHA, "commit",
                             "FETCHCONTENT_SOURCE_DIR_ONEDNN")}),
        ("empty", "x86_64", set()),
    ],
)
def test_external_pins_for_the_target(device: str, processor: str, expected: set[tuple[str, ...]]) -> None:
    assert pins_for(VLLM_LIKE, device, processor) == expected


def test_two_pins_for_one_override_name_both() -> None:
    files = {**VLLM_LIKE, "cmake/cpu_extension.cmake": VLLM_LIKE["cmake/cpu_extension.cmake"].replace("ASIMD", "NEON")}
    with pytest.raises(source_layout.LayoutError, match=(
            r"cmake/cpu_extension.cmake:8: oneDNN https://github.com/oneapi-src/oneDNN.git v3.13 and "
            r"cmake/cpu_extension.cmake:6: oneDNN .* are both pinned for FETCHCONTENT_SOURCE_DIR_ONEDNN")):
        pins_for(files, "cpu")


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"CMakeLists.txt": 'message(FATAL_ERROR "Unsupported vLLM target device")\n'},
         r"CMakeLists.txt:1: CMake stops for target cuda on x86_64: Unsupported vLLM target device"),
        ({"CMakeLists.txt": "FetchContent_Declare(x GIT_REPOSITORY ${NOWHERE} GIT_TAG v1)\n"},
         r"CMakeLists.txt:1: cannot read the GIT_REPOSITORY of x"),
    ],
)
def test_unreadable_cmake_is_a_layout_error(files: dict[str, str], message: str) -> None:
    with pytest.raises(source_layout.LayoutError, match=message):
        pins_for(files, "cuda")


def test_no_cmakelists_no_pins_and_known_overrides() -> None:
    assert pins_for({"setup.py": ""}, "cuda") == set()
    assert pins_for({"CMakeLists.txt": "FetchContent_Declare(x GIT_REPOSITORY r GIT_TAG v1)\n"}, "empty") == set()
    files = {"CMakeLists.txt": f"FetchContent_Populate(qutlass GIT_REPOSITORY https://q.invalid/q.git GIT_TAG {SHA})\n"
                               "FetchContent_Declare(new-thing GIT_REPOSITORY https://n.invalid/n.git GIT_TAG v1)\n"}
    assert {p[0]: p[4] for p in pins_for(files, "cuda")} == {
        "qutlass": "QUTLASS_SRC_DIR", "new-thing": "FETCHCONTENT_SOURCE_DIR_NEW_THING"}


@pytest.mark.parametrize(
    ("arch", "variant", "ok"),
    [("12.0", "cu128", True), ("12.0", "cu126", False), ("10.0", "cu128", True), ("9.0", "cu118", True),
     ("12.0a", "cu130", True), ("11.0", "cu128", False), ("7.0", "cu130", False)],
)
def test_arch_rules(arch: str, variant: str, ok: bool) -> None:
    assert (cuda.arch_problem(arch, cuda.parse_variant(variant)) is None) == ok


def test_sm_names() -> None:
    assert cuda.sm_name("12.0") == "sm_120" and cuda.sm_name("9.0a") == "sm_90"
