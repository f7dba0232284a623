"""The CMake reader: tokenizer and evaluator, pure (files in a dict)."""

from __future__ import annotations

import pytest

from vllm_lock import cmake

SHA = "ab" * 20


def run(files: dict[str, str], **facts: str) -> cmake.Reading:
    return cmake.evaluate("CMakeLists.txt", files, files.__getitem__, facts=facts)


def pins(reading: cmake.Reading) -> set[tuple[str, str, str]]:
    return {(p.name, p.repository, p.ref) for p in reading.pins}


def declare(name: str = "dep", repo: str = "https://example.invalid/dep.git", tag: str = "v1") -> str:
    return f"FetchContent_Declare({name}\n  GIT_REPOSITORY {repo}\n  GIT_TAG {tag}\n)\n"


# ---------------------------------------------------------------- tokenizer


def test_tokenizer_reads_every_argument_form() -> None:
    text = (
        "# a line comment (with parentheses\n"
        "#[[ a bracket comment\n ) spanning lines ]]\n"
        'set(A "quoted \\"x\\" ${B}" unquoted [=[bracket ) "arg"]=] a\\ b)\n'
        "if((X OR Y) AND NOT Z)\n"
        "endif()\n"
    )
    first, second, third = cmake.tokenize(text)
    assert (first.name, first.line) == ("set", 4)
    assert [(a.kind, a.text) for a in first.arguments] == [
        ("unquoted", "A"), ("quoted", 'quoted \\"x\\" ${B}'), ("unquoted", "unquoted"),
        ("bracket", 'bracket ) "arg"'), ("unquoted", "a\\ b"),
    ]
    assert [a.text for a in second.arguments] == ["(", "X", "OR", "Y", ")", "AND", "NOT", "Z"]
    assert [a.kind for a in second.arguments][:1] == ["paren"] and third.name == "endif"


def test_comment_with_parentheses_inside_a_call_does_not_end_it() -> None:
    """vLLM 0.33.0's triton_kernels.cmake: `# TODO (varun) : ...` inside FetchContent_Declare."""
    (call,) = cmake.tokenize(
        "FetchContent_Declare(\n  triton_kernels\n  # TODO (varun) : Fetch just the triton_kernels directory)\n"
        "  GIT_REPOSITORY ${TRITON_GIT}\n  GIT_TAG ${TRITON_KERNELS_TAG}\n)\n"
    )
    assert [a.text for a in call.arguments] == [
        "triton_kernels", "GIT_REPOSITORY", "${TRITON_GIT}", "GIT_TAG", "${TRITON_KERNELS_TAG}"]
    assert call.arguments[-1].line == 5


def test_bracket_comment_with_equals_and_case_insensitive_names() -> None:
    (call,) = cmake.tokenize("#[=[ ]] still a comment ]=]\nSET(X 1)\n")
    assert call.name == "set" and call.line == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("set(A\n  b\n", r"x.cmake:1: set\( is never closed"),
        ('set(A "open\n)\n', r"x.cmake:1: unterminated quoted argument"),
        ("#[[ never closed\n", r"x.cmake:1: unterminated bracket comment"),
        ("set(A)\n= 1\n", r"x.cmake:2: expected a command"),
        ("set (A) set\n", r"x.cmake:1: expected '\(' after set"),
    ],
)
def test_tokenizer_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(cmake.CMakeError, match=message):
        cmake.tokenize(text, "x.cmake")


# ---------------------------------------------------------------- evaluator: values and includes


def test_set_in_order_and_quoted_references() -> None:
    """vLLM 0.33.0's qutlass.cmake: FetchContent_Populate with quoted `"${_QUTLASS_UPSTREAM_REPO}"`."""
    files = {"CMakeLists.txt": (
        'set(_QUTLASS_UPSTREAM_REPO "https://example.invalid/old.git")\n'
        'set(_QUTLASS_UPSTREAM_REPO "https://example.invalid/qutlass.git")\n'
        f'set(_QUTLASS_UPSTREAM_TAG "{SHA}")\n'
        'FetchContent_Populate(\n  qutlass\n  SOURCE_DIR "${FETCHCONTENT_BASE_DIR}/qutlass-src"\n'
        '  GIT_REPOSITORY "${_QUTLASS_UPSTREAM_REPO}"\n  GIT_TAG "${_QUTLASS_UPSTREAM_TAG}"\n  GIT_PROGRESS TRUE\n)\n'
        'set(_QUTLASS_UPSTREAM_TAG "v9")\n'
    )}
    (pin,) = run(files, FETCHCONTENT_BASE_DIR="/x/.deps").pins
    assert (pin.repository, pin.ref, pin.command, pin.line) == ("https://example.invalid/qutlass.git", SHA,
                                                                "fetchcontent_populate", 4)
    assert pin.source_dir_variable is None  # a download's SOURCE_DIR is not a local-tree override


@pytest.mark.parametrize(
    ("setting", "facts", "ref"),
    [
        ('set(REV "v2" CACHE STRING "doc")', {}, "v2"),
        ('set(REV "v2" CACHE STRING "doc")', {"REV": "v7"}, "v7"),  # -D wins over a cache default
        ('set(REV "v2" CACHE STRING "doc" FORCE)', {"REV": "v7"}, "v2"),
        ('set(REV v3 PARENT_SCOPE)', {}, "v3"),
        ("option(REV \"doc\" v4)", {}, "v4"),
        ('set(REV "v5")\nlist(APPEND REV)\n', {}, "v5"),
    ],
)
def test_set_forms(setting: str, facts: dict[str, str], ref: str) -> None:
    files = {"CMakeLists.txt": setting + "\n" + declare(tag="${REV}")}
    assert pins(run(files, **facts)) == {("dep", "https://example.invalid/dep.git", ref)}


def test_include_is_followed_with_current_list_dir_and_relative_paths() -> None:
    files = {
        "CMakeLists.txt": "include(${CMAKE_CURRENT_LIST_DIR}/cmake/utils.cmake)\n"
                          "include(cmake/external_projects/dep.cmake)\n",
        "cmake/utils.cmake": 'set(DEP_TAG "v3")\nset(WHERE "${CMAKE_CURRENT_LIST_DIR}")\n',
        "cmake/external_projects/dep.cmake": declare(tag="${DEP_TAG}"),
    }
    reading = run(files)
    assert pins(reading) == {("dep", "https://example.invalid/dep.git", "v3")}
    assert reading.included == ("CMakeLists.txt", "cmake/utils.cmake", "cmake/external_projects/dep.cmake")
    (pin,) = reading.pins
    assert (pin.file, pin.line) == ("cmake/external_projects/dep.cmake", 1)


def test_include_of_a_missing_file_is_an_error_unless_optional() -> None:
    with pytest.raises(cmake.CMakeError, match=r"CMakeLists.txt:2: include\(cmake/gone.cmake\) names"):
        run({"CMakeLists.txt": "set(A 1)\ninclude(cmake/gone.cmake)\n"})
    assert run({"CMakeLists.txt": "include(cmake/gone.cmake OPTIONAL)\ninclude(FetchContent)\n"}).pins == ()


def test_a_file_not_included_for_the_target_is_not_read() -> None:
    """A CUDA build does not include cpu_extension.cmake: its oneDNN is not a pin."""
    files = {
        "CMakeLists.txt": 'if(NOT VLLM_TARGET_DEVICE STREQUAL "cuda")\n'
                          '  if(VLLM_TARGET_DEVICE STREQUAL "cpu")\n    include(cmake/cpu_extension.cmake)\n'
                          "  endif()\n  return()\nendif()\n" + declare("cutlass"),
        "cmake/cpu_extension.cmake": declare("oneDNN"),
    }
    assert {p[0] for p in pins(run(files, VLLM_TARGET_DEVICE="cuda"))} == {"cutlass"}
    assert {p[0] for p in pins(run(files, VLLM_TARGET_DEVICE="cpu"))} == {"oneDNN"}
    empty = run(files, VLLM_TARGET_DEVICE="empty")
    assert empty.pins == () and empty.included == ("CMakeLists.txt",)


# ---------------------------------------------------------------- evaluator: conditions


@pytest.mark.parametrize(
    ("condition", "facts", "expected"),
    [
        ('VLLM_TARGET_DEVICE STREQUAL "rocm"', {"VLLM_TARGET_DEVICE": "rocm"}, True),
        ('VLLM_TARGET_DEVICE STREQUAL "rocm"', {"VLLM_TARGET_DEVICE": "cuda"}, False),
        ('"${VLLM_TARGET_DEVICE}" STREQUAL "cuda"', {"VLLM_TARGET_DEVICE": "cuda"}, True),
        ('CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64"', {"CMAKE_SYSTEM_PROCESSOR": "x86_64"}, True),
        ('CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|amd64"', {"CMAKE_SYSTEM_PROCESSOR": "aarch64"}, False),
        ("DEFINED ENV{DEP_SRC_DIR}", {}, False),  # a clean build sets no environment
        ("NOT DEFINED ENV{DEP_SRC_DIR}", {}, True),
        ("DEFINED SOME_VAR", {}, False),
        ("DEFINED SOME_VAR", {"SOME_VAR": ""}, True),
        ("SOME_VAR", {"SOME_VAR": "OFF"}, False),
        ("SOME_VAR", {"SOME_VAR": "/src/x"}, True),
        ("UNSET_VAR", {}, False),
        ('V VERSION_GREATER_EQUAL "12.8"', {"V": "12.10"}, True),
        ("V VERSION_LESS 12.8", {"V": "12.10"}, False),
        ("V VERSION_EQUAL 3.0", {"V": "3"}, True),
        ("N GREATER 5", {"N": "10"}, True),
        ("N EQUAL abc", {"N": "10"}, False),
        ("A AND B", {"A": "ON", "B": "OFF"}, False),
        ("A OR B", {"A": "ON", "B": "OFF"}, True),
        ("NOT A AND NOT B", {"A": "OFF", "B": "OFF"}, True),
        ("ON OR OFF AND OFF", {}, False),  # AND and OR: same precedence, left to right
        ("ON OR (OFF AND OFF)", {}, True),
        ('(A STREQUAL "x" OR A STREQUAL "y") AND NOT B', {"A": "y", "B": "0"}, True),
        ("X IN_LIST L", {"X": "b", "L": "a;b;c"}, True),
        ("EXISTS ${CMAKE_SOURCE_DIR}/csrc/main.cu", {}, True),
        ("EXISTS ${FETCHCONTENT_BASE_DIR}/dep-src/x.h", {"FETCHCONTENT_BASE_DIR": "/build/.deps"}, None),
        ('EXISTS "${CMAKE_BINARY_DIR}/dep-src/x.h"', {}, False),  # a clean build directory
        ("IS_ABSOLUTE DEP_DIR", {}, False),
        # what CMake learns on the build machine is unknown: both branches kept
        ('CMAKE_CXX_COMPILER_VERSION VERSION_LESS "13"', {}, None),
        ("${CMAKE_CUDA_COMPILER_VERSION} VERSION_GREATER_EQUAL 13.0", {}, None),
        ("A AND CMAKE_CUDA_COMPILER_VERSION", {"A": "OFF"}, False),  # unknown AND false is false
        ("A OR CMAKE_CUDA_COMPILER_VERSION", {"A": "ON"}, True),
        ("NOT CMAKE_CUDA_COMPILER_VERSION", {}, None),
    ],
)
def test_conditions(condition: str, facts: dict[str, str], expected: bool | None) -> None:
    files = {"CMakeLists.txt": f"if({condition})\n{declare()}endif()\n", "csrc/main.cu": ""}
    reading = run(files, **facts)
    assert bool(reading.pins) == (expected is not False)
    assert bool(reading.undecided) == (expected is None)
    if expected is None:
        (undecided,) = reading.undecided
        assert (undecided.file, undecided.line, undecided.condition) == ("CMakeLists.txt", 1, f"if({condition})")
        assert reading.pins[0].conditional


def test_elseif_else_take_the_first_true_branch() -> None:
    """vLLM 0.33.0's triton_kernels.cmake: ROCm's fork for rocm, triton-lang otherwise."""
    files = {"CMakeLists.txt": (
        "if (DEFINED ENV{TRITON_KERNELS_SRC_DIR})\n"
        "  FetchContent_Declare(triton_kernels SOURCE_DIR $ENV{TRITON_KERNELS_SRC_DIR})\n"
        "else()\n"
        '  if (VLLM_TARGET_DEVICE STREQUAL "rocm")\n'
        '    set(TRITON_GIT "https://github.com/ROCm/triton.git")\n'
        f'    set(TRITON_KERNELS_TAG "{SHA}")\n'
        '  elseif (VLLM_TARGET_DEVICE STREQUAL "xpu")\n'
        '    set(TRITON_GIT "https://example.invalid/xpu.git")\n'
        '    set(TRITON_KERNELS_TAG "x")\n'
        "  else()\n"
        '    set(TRITON_GIT "https://github.com/triton-lang/triton.git")\n'
        '    set(TRITON_KERNELS_TAG "v3.5.1")\n'
        "  endif()\n"
        "  FetchContent_Declare(\n    triton_kernels\n    # TODO (varun) : Fetch just the triton_kernels directory\n"
        "    GIT_REPOSITORY ${TRITON_GIT}\n    GIT_TAG ${TRITON_KERNELS_TAG}\n  )\nendif()\n"
    )}
    cuda = run(files, VLLM_TARGET_DEVICE="cuda")
    assert pins(cuda) == {("triton_kernels", "https://github.com/triton-lang/triton.git", "v3.5.1")}
    assert cuda.undecided == () and cuda.pins[0].source_dir_variable == "TRITON_KERNELS_SRC_DIR"
    rocm = pins(run(files, VLLM_TARGET_DEVICE="rocm"))
    assert rocm == {("triton_kernels", "https://github.com/ROCm/triton.git", SHA)}


ONEDNN = (
    'set(FETCHCONTENT_SOURCE_DIR_ONEDNN "$ENV{FETCHCONTENT_SOURCE_DIR_ONEDNN}" CACHE PATH "local oneDNN")\n'
    "find_isa(${CPUINFO} \"asimd\" ASIMD_FOUND)\n"
    "if(FETCHCONTENT_SOURCE_DIR_ONEDNN)\n"
    "  FetchContent_Declare(oneDNN SOURCE_DIR ${FETCHCONTENT_SOURCE_DIR_ONEDNN})\n"
    "else()\n"
    "  if(ASIMD_FOUND AND NOT APPLE_SILICON_FOUND)\n"
    f"    FetchContent_Declare(oneDNN GIT_REPOSITORY https://github.com/oneapi-src/oneDNN.git GIT_TAG {SHA})\n"
    "  else()\n"
    "    FetchContent_Declare(oneDNN GIT_REPOSITORY https://github.com/oneapi-src/oneDNN.git GIT_TAG v3.13)\n"
    "  endif()\n"
    "endif()\n"
)


def test_two_onednn_declarations_under_asimd() -> None:
    """vLLM 0.33.0's cpu_extension.cmake: an aarch64 commit and an x86 tag, one name. With the
    processor's probe known, one is taken; when it is not, both are kept and the condition listed."""
    files = {"CMakeLists.txt": ONEDNN}
    assert pins(run(files, ASIMD_FOUND="OFF")) == {("oneDNN", "https://github.com/oneapi-src/oneDNN.git", "v3.13")}
    assert pins(run(files, ASIMD_FOUND="ON")) == {("oneDNN", "https://github.com/oneapi-src/oneDNN.git", SHA)}
    unknown = run(files)  # find_isa() is not run: ASIMD_FOUND is whatever /proc/cpuinfo says
    assert {p[2] for p in pins(unknown)} == {SHA, "v3.13"}
    assert [u.line for u in unknown.undecided] == [6]
    assert {p.source_dir_variable for p in unknown.pins} == {"FETCHCONTENT_SOURCE_DIR_ONEDNN"}


def test_first_declaration_of_a_name_wins() -> None:
    files = {"CMakeLists.txt": declare(tag="v1") + declare(tag="v2")}
    assert pins(run(files)) == {("dep", "https://example.invalid/dep.git", "v1")}


def test_variables_set_in_an_undecided_branch_become_unknown() -> None:
    files = {"CMakeLists.txt": "if(CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)\n  set(T v1)\nelse()\n  set(T v2)\n"
                               "endif()\n" + declare(tag="${T}")}
    with pytest.raises(cmake.CMakeError,
                       match=r"CMakeLists.txt:6: cannot read the GIT_TAG of dep \(a value it cannot know\)"):
        run(files)


def test_return_and_fatal_error_stop_their_path() -> None:
    files = {"CMakeLists.txt": "include(cmake/a.cmake)\n" + declare("after"),
             "cmake/a.cmake": "if(STOP)\n  return()\nendif()\n" + declare("skipped")}
    assert {p[0] for p in pins(run(files, STOP="ON"))} == {"after"}
    assert {p[0] for p in pins(run(files, STOP="OFF"))} == {"after", "skipped"}
    fatal = run({"CMakeLists.txt": 'message(FATAL_ERROR "Unsupported" " target")\n' + declare()})
    assert fatal.pins == () and fatal.stopped == cmake.Stop(file="CMakeLists.txt", line=1,
                                                            message="Unsupported  target")
    survived = run({"CMakeLists.txt": "if(CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)\n message(FATAL_ERROR old)\n"
                                      "endif()\n" + declare()})
    assert survived.stopped is None and len(survived.pins) == 1


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("ExternalProject_Add(dep GIT_REPOSITORY https://example.invalid/dep.git GIT_TAG v1 CONFIGURE_COMMAND \"\")",
         ("dep", "v1", None)),
        ('FetchContent_Populate(dep SOURCE_DIR "${B}/dep" GIT_REPOSITORY https://example.invalid/dep.git '
         'GIT_TAG v1 GIT_SUBMODULES "third-party/cutlass" "third-party/deep_jit" GIT_PROGRESS TRUE)',
         ("dep", "v1", ("third-party/cutlass", "third-party/deep_jit"))),
        ("FetchContent_Declare(dep GIT_REPOSITORY https://example.invalid/dep.git GIT_TAG v1 GIT_SUBMODULES cutlass)",
         ("dep", "v1", ("cutlass",))),
        ('FetchContent_Declare(dep GIT_REPOSITORY https://example.invalid/dep.git GIT_TAG v1 GIT_SUBMODULES "")',
         ("dep", "v1", ())),
    ],
)
def test_pin_commands(body: str, expected: tuple[str, str, tuple[str, ...] | None]) -> None:
    (pin,) = run({"CMakeLists.txt": body + "\n"}).pins
    assert (pin.name, pin.ref, pin.submodules) == expected


def test_local_tree_declarations_and_one_argument_populate_are_not_pins() -> None:
    files = {"CMakeLists.txt": "FetchContent_Declare(dep SOURCE_DIR /src/dep)\nFetchContent_Populate(dep)\n"
                               "FetchContent_MakeAvailable(dep)\nif(NOT dep_SOURCE_DIR)\n  message(FATAL_ERROR "
                               "x)\nendif()\n"}
    reading = run(files)
    assert reading.pins == () and reading.stopped is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FetchContent_Declare(dep GIT_REPOSITORY https://example.invalid/dep.git)\n", "names no GIT_TAG"),
        ("FetchContent_Declare(dep URL https://example.invalid/dep.tar.gz)\n", "other than git"),
        ("FetchContent_Declare(dep GIT_REPOSITORY ${NOWHERE} GIT_TAG v1)\n",
         r"cannot read the GIT_REPOSITORY of dep \(nothing\)"),
        ("string(REGEX MATCH x T y)\n" + "FetchContent_Declare(dep GIT_REPOSITORY r GIT_TAG ${T})\n",
         "cannot read the GIT_TAG of dep"),
        ("function(fetch)\n  FetchContent_Declare(dep GIT_REPOSITORY r GIT_TAG v1)\nendfunction()\n",
         r"fetchcontent_declare\(\) inside function\(\) \(line 1\)"),
        ("foreach(x a b)\n  ExternalProject_Add(dep GIT_REPOSITORY r GIT_TAG v1)\nendforeach()\n", "inside foreach"),
        ("if(A)\nelse()\nelse()\nendif()\n", "else"),
        ("endif()\n", r"endif\(\) without its opening command"),
        ("if(A)\n", r"if\(\) is never closed"),
        ("include(${CMAKE_CXX_COMPILER_ID}/x.cmake)\n", "cannot tell which file"),
    ],
)
def test_what_cannot_be_read_is_an_error_naming_file_and_line(text: str, message: str) -> None:
    with pytest.raises(cmake.CMakeError, match=message) as err:
        run({"CMakeLists.txt": text})
    assert str(err.value).startswith("CMakeLists.txt:")


def test_loops_and_unrun_commands_make_what_they_mention_unknown() -> None:
    files = {"CMakeLists.txt": "set(T v1)\nforeach(n 1 2)\n  set(T v${n})\nendforeach()\n"
                               "if(T STREQUAL v1)\n" + declare() + "endif()\n"}
    assert len(run(files).undecided) == 1
    protected = {
        "CMakeLists.txt": "find_isa(${CPUINFO} asimd ASIMD_FOUND)\nif(ASIMD_FOUND)\n" + declare() + "endif()\n"}
    assert run(protected, ASIMD_FOUND="OFF").pins == ()  # a fact outlives the probe we do not run


def test_environment_is_empty_until_set() -> None:
    files = {"CMakeLists.txt": (
        "if(DEFINED ENV{A})\n" + declare("a") + "endif()\n"
        "set(ENV{A} x)\n"
        'if(DEFINED ENV{A} AND "$ENV{A}" STREQUAL x)\n' + declare("b") + "endif()\n"
        "if(CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)\n  set(ENV{C} 1)\nendif()\n"
        "if(DEFINED ENV{C})\n" + declare("c") + "endif()\n"
    )}
    reading = run(files)
    assert {p[0] for p in pins(reading)} == {"b", "c"}
    assert [u.line for u in reading.undecided] == [17]  # ENV{C} is set on one path only


def test_conditions_are_shown_as_written() -> None:
    (command,) = cmake.tokenize('if((A OR "b c") AND NOT [[x]]) # why\n')
    assert command.raw() == '(A OR "b c") AND NOT [[x]]'
