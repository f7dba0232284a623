from __future__ import annotations

import pytest

from vllm_lock import cuda, layout


def reader(files: dict[str, str]):  # type: ignore[no-untyped-def]
    def read(path: str) -> str:
        if path not in files:
            raise layout.LayoutError(f"{path} is missing")
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
    found = layout.detect_layout(files, reader(files))
    assert (found.stripping_script, found.stripping_mode, found.build_requirements) == expected


def test_detect_layout_explains_what_is_missing() -> None:
    with pytest.raises(layout.LayoutError, match="no use_existing_torch.py"):
        layout.detect_layout({"setup.py": ""}, reader({}))


def test_requirement_files_follow_includes_and_skip_options() -> None:
    files = {
        "requirements/cuda.txt": "-r common.txt\n--extra-index-url https://download.pytorch.org/whl/cu128\n"
        "numba == 0.61.2 # pinned\n",
        "requirements/common.txt": "# needed by torch.compile\nregex\nfastapi[standard] >= 0.115.0 ; python_version > '3.9'\n"
        "long-name \\\n  >= 1.0\nregex\n",
    }
    got = layout.parse_requirement_file("requirements/cuda.txt", reader(files))
    assert got == ("regex", "fastapi[standard]>=0.115.0; python_version > \"3.9\"", "long-name>=1.0", "numba==0.61.2")


def test_requirement_file_errors_name_file_and_line() -> None:
    files = {"requirements/cuda.txt": "ok\nthis is not a requirement\n"}
    with pytest.raises(layout.LayoutError, match=r"requirements/cuda.txt:2"):
        layout.parse_requirement_file("requirements/cuda.txt", reader(files))
    with pytest.raises(layout.LayoutError, match="include cycle"):
        layout.parse_requirement_file("a.txt", reader({"a.txt": "-r a.txt\n"}))


def test_torch_family_leftovers_are_dropped() -> None:
    kept = layout.without_torch_family(["torchvision; platform_machine == 'x86_64'", "torchcodec>=0.14", "regex"])
    assert kept == ("torchcodec>=0.14", "regex")


def test_patched_files_lists_only_changes() -> None:
    before = {"a.txt": b"torch==2.9\nx\n", "b.txt": b"y\n"}
    after = {"a.txt": b"x\n", "b.txt": b"y\n"}
    (patched,) = layout.patched_files(before, after)
    assert patched.path == "a.txt" and patched.sha256_before != patched.sha256_after


def test_pin_variables_come_from_any_cmake_file_and_must_be_set() -> None:
    declare = "FetchContent_Declare(qutlass\n GIT_REPOSITORY https://github.com/IST-DASLab/qutlass.git\n GIT_TAG ${QUTLASS_REV}\n)\n"
    files = {"CMakeLists.txt": 'set(QUTLASS_REV "' + "ab" * 20 + '")\n', "cmake/external_projects/qutlass.cmake": declare}
    (pin,) = layout.external_pins(files)
    assert (pin.ref, pin.ref_kind, pin.override) == ("ab" * 20, "commit", "QUTLASS_SRC_DIR")
    with pytest.raises(layout.LayoutError, match="qutlass uses a variable set nowhere"):
        layout.external_pins({"cmake/external_projects/qutlass.cmake": declare})


@pytest.mark.parametrize(
    ("path", "pins"),
    [("CMakeLists.txt", True), ("cmake/external_projects/flashmla.cmake", True), ("cmake/cpu_extension.cmake", True),
     ("csrc/CMakeLists.txt", False), ("cmake/utils.py", False), ("docs/cmake/x.cmake", False)],
)
def test_which_files_hold_cmake_pins(path: str, pins: bool) -> None:
    assert layout.is_cmake_pin_file(path) is pins


def test_external_pins_from_cmake() -> None:
    files = {
        "CMakeLists.txt": 'set(CUTLASS_REVISION "v4.2.1" CACHE STRING "CUTLASS revision")\n'
        "if(CUTLASS_DIR)\n  FetchContent_Declare(cutlass SOURCE_DIR ${CUTLASS_DIR})\nelse()\n"
        "FetchContent_Declare(\n  cutlass\n  GIT_REPOSITORY https://github.com/nvidia/cutlass.git\n"
        "  GIT_TAG ${CUTLASS_REVISION}\n  GIT_SHALLOW TRUE\n)\nendif()\n",
        "cmake/external_projects/vllm_flash_attn.cmake": "FetchContent_Declare(\n vllm-flash-attn\n"
        " GIT_REPOSITORY https://github.com/vllm-project/flash-attention.git\n GIT_TAG " + "ab" * 20 + "\n)\n",
        "cmake/external_projects/onednn.cmake": "FetchContent_Declare(oneDNN\n GIT_REPOSITORY "
        "https://github.com/oneapi-src/oneDNN.git\n GIT_TAG v3.13\n)\n",
    }
    cutlass, onednn, fa = layout.external_pins(files)
    assert (cutlass.name, cutlass.ref, cutlass.ref_kind) == ("cutlass", "v4.2.1", "tag")
    assert cutlass.override == "CUTLASS_DIR"  # what its own cmake file reads wins
    assert (fa.name, fa.ref_kind, fa.declared_in) == ("vllm-flash-attn", "commit", "cmake/external_projects/vllm_flash_attn.cmake")
    assert fa.override == "VLLM_FLASH_ATTN_SRC_DIR"  # vLLM's documented variable
    assert onednn.override == "FETCHCONTENT_SOURCE_DIR_ONEDNN"  # FetchContent's own


@pytest.mark.parametrize(
    ("arch", "variant", "ok"),
    [("12.0", "cu128", True), ("12.0", "cu126", False), ("10.0", "cu128", True), ("9.0", "cu118", True),
     ("12.0a", "cu130", True), ("11.0", "cu128", False), ("7.0", "cu130", False)],
)
def test_arch_rules(arch: str, variant: str, ok: bool) -> None:
    assert (cuda.arch_problem(arch, cuda.parse_variant(variant)) is None) == ok


def test_sm_names() -> None:
    assert cuda.sm_name("12.0") == "sm_120" and cuda.sm_name("9.0a") == "sm_90"
