"""A vLLM tree is as untrusted as a lock: what its CMake, setup.py, Cargo.lock and symlinks can make
resolve do. Each case ends in the reader's own error (resolve: exit 5, one line) within seconds,
never a hang, a RecursionError or a MemoryError (exit 70)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import git
import pytest
from install_support import cli

import vllm_lock_testworld
from vllm_lock import cmake, pysource, requirements, rust, source_layout
from vllm_lock.actions.resolve import ResolveRequest
from vllm_lock.actions.resolve.source import Stripping, read_stripped
from vllm_lock.errors import ExitCode, PreflightError, ResolutionError
from vllm_lock.model import Crate
from vllm_lock.progress import QUIET
from vllm_lock.shell import cargo
from vllm_lock.shell import git as git_shell
from vllm_lock_testworld import TestWorld

UNKNOWN = "CMAKE_CXX_COMPILER_VERSION"  # known only on the build machine: if() keeps both branches
SECONDS = 20  # each hostile case, on this 2-core machine; the unbounded ones ran for minutes


def pins(files: dict[str, str]) -> source_layout.ExternalPinsReading:
    return source_layout.external_pins(files, files.__getitem__, target_device="cuda", processor="x86_64")


def _include_bomb() -> dict[str, str]:
    files = {"CMakeLists.txt": "include(cmake/f0.cmake)\ninclude(cmake/f0.cmake)\n"}
    for index in range(30):
        body = f"include(cmake/f{index + 1}.cmake)\n" * 2 if index < 29 else "set(X 1)\n"
        files[f"cmake/f{index}.cmake"] = body
    return files


# (the tree's files, what the error says)
HOSTILE_CMAKE: dict[str, tuple[Callable[[], dict[str, str]], str]] = {
    "include twice, 30 files deep (2^30 includes)": (
        _include_bomb, rf"cmake/f\d+\.cmake:[12]: more than {cmake.MAX_INCLUDES} include\(\) calls followed"),
    "a variable doubled 60 times": (
        lambda: {"CMakeLists.txt": 'set(A "x")\n' + 'set(A "${A}${A}")\n' * 60},
        rf"CMakeLists.txt:22: a value longer than {cmake.MAX_VALUE_LENGTH} characters"),
    "one argument naming a long value 10,000 times": (
        lambda: {"CMakeLists.txt": 'set(A "x")\n' + 'set(A "${A}${A}")\n' * 19 + "set(B " + "${A}" * 10_000 + ")\n"},
        rf"CMakeLists.txt:21: a value longer than {cmake.MAX_VALUE_LENGTH} characters"),
    "${} nested 50,000 deep": (
        lambda: {"CMakeLists.txt": "set(A " + "${" * 50_000 + "X" + "}" * 50_000 + ")\n"},
        rf"CMakeLists.txt:1: variable references nested deeper than {cmake.MAX_NESTING}"),
    "3,000 nested if()": (
        lambda: {"CMakeLists.txt": f"if({UNKNOWN})\n" * 3000 + "endif()\n" * 3000},
        rf"CMakeLists.txt:{cmake.MAX_NESTING + 1}: blocks nested deeper than {cmake.MAX_NESTING}"),
    "5,000 nested parentheses": (
        lambda: {"CMakeLists.txt": "if(" + "(" * 5000 + "A" + ")" * 5000 + ")\nendif()\n"},
        rf"CMakeLists.txt:1: parentheses nested deeper than {cmake.MAX_NESTING}"),
    "200,000 commands of an include() repeated": (
        lambda: {"CMakeLists.txt": "include(cmake/many.cmake)\n" * 1000, "cmake/many.cmake": "set(X 1)\n" * 300},
        rf"cmake/many.cmake:\d+: more than {cmake.MAX_COMMANDS} commands evaluated"),
    "nesting over the include chain": (
        lambda: {"CMakeLists.txt": f"if({UNKNOWN})\n" * 90 + "include(cmake/a.cmake)\n" + "endif()\n" * 90,
                 "cmake/a.cmake": f"if({UNKNOWN})\n" * 90 + "set(X 1)\n" + "endif()\n" * 90},
        rf"cmake/a.cmake:\d+: blocks nested deeper than {cmake.MAX_NESTING} over the included files"),
    "an elseif() chain of unknowns over 100,000 variables": (
        lambda: {"CMakeLists.txt": "".join(f"set(V{i} {i})\n" for i in range(100_000))
                 + "".join(f"{'else' if i else ''}if(CMAKE_UNKNOWN_{i})\n" for i in range(99_000)) + "endif()\n"},
        rf"CMakeLists.txt:\d+: more than {cmake.MAX_COPIED} variables copied"),
    "a MATCHES pattern of 1,001 characters": (
        lambda: {"CMakeLists.txt": 'set(A "x")\nif(A MATCHES "' + "(a+)" * 250 + 'b")\nendif()\n'},
        rf"CMakeLists.txt:2: MATCHES '\(a\+\)\(a\+\).*\.\.\.': a regular expression longer than "
        rf"{cmake.MAX_REGEX_PATTERN} characters"),
    "a MATCHES string of 131,072 characters": (
        lambda: {"CMakeLists.txt": 'set(A "a")\n' + 'set(A "${A}${A}")\n' * 17 + 'if(A MATCHES "b")\nendif()\n'},
        rf"CMakeLists.txt:19: MATCHES 'b': the string matched is longer than {cmake.MAX_REGEX_SUBJECT} characters"),
    "MATCHES work over the budget (400 stars against 65,536 characters)": (
        lambda: {"CMakeLists.txt": 'set(A "a")\n' + 'set(A "${A}${A}")\n' * 16 + 'if(A MATCHES "' + "a*" * 400
                 + 'b")\nendif()\n'},
        rf"CMakeLists.txt:18: MATCHES 'a\*a\*.*': more than {cmake.MAX_REGEX_WORK} steps of regular-expression "
        "matching"),
}


@pytest.mark.parametrize("case", list(HOSTILE_CMAKE), ids=[
    "include_bomb", "doubling", "long_argument", "nested_references", "nested_ifs", "nested_parens",
    "command_budget", "nesting_over_includes", "copies", "regex_pattern", "regex_subject", "regex_work"])
def test_hostile_cmake_is_a_layout_error_within_bounds(case: str) -> None:
    make, message = HOSTILE_CMAKE[case]
    files = make()
    started = time.monotonic()
    with pytest.raises(source_layout.LayoutError, match=message):
        pins(files)
    assert time.monotonic() - started < SECONDS


def test_unbounded_forms_that_are_not_errors_are_read_without_recursion() -> None:
    declare = ("FetchContent_Declare(dep GIT_REPOSITORY https://example.invalid/dep.git GIT_TAG "
               + "ab" * 20 + ")\n")
    # NOT counted, not recursed: 100,000 of them (an even count) leave A's truth as it is
    files = {"CMakeLists.txt": "set(A ON)\nif(" + "NOT " * 100_000 + "A)\n" + declare + "endif()\n"}
    assert [p.name for p in pins(files).pins] == ["dep"]
    # an elseif() chain of 10,000 unknown conditions: a loop, every branch kept
    chain = "".join(f"{'else' if i else ''}if(CMAKE_UNKNOWN_{i})\n" for i in range(10_000)) + declare + "endif()\n"
    reading = pins({"CMakeLists.txt": chain})
    assert [p.name for p in reading.pins] == ["dep"]
    assert [u.condition for u in reading.undecided[:2]] == ["elseif(CMAKE_UNKNOWN_9999)", "elseif(CMAKE_UNKNOWN_9998)"]
    # a version of 5,000 digits is compared, not handed to int()
    big = "9" * 5000
    files = {"CMakeLists.txt": f"if(1.0 VERSION_LESS {big}.0)\n" + declare + "endif()\n"}
    assert [p.name for p in pins(files).pins] == ["dep"]


def test_the_deepest_blocks_conditions_and_regex_groups_together_stay_within_the_stack() -> None:
    """Blocks and parentheses each at their bound and a MATCHES pattern of nested groups at the
    innermost: a RecursionError (an internal error, not the tree's) before the regex compiler took
    CMake's own limit of 9 groups (it allowed 100 nested, 4 frames each)."""
    depth = cmake.MAX_NESTING - 2
    groups = "(" * 100 + "a" + ")" * 100
    condition = "(" * (cmake.MAX_NESTING - 1) + f'A MATCHES "{groups}"' + ")" * (cmake.MAX_NESTING - 1)
    files = {"CMakeLists.txt": "set(A a)\n" + "if(1)\n" * depth + f"if({condition})\nset(X 1)\nendif()\n"
             + "endif()\n" * depth}

    def below(frames: int) -> source_layout.ExternalPinsReading:  # the CLI's own frames above the evaluator
        return below(frames - 1) if frames else pins(files)

    assert below(60).pins == ()


def test_a_catastrophically_backtracking_matches_is_decided_in_linear_time() -> None:
    """`(a+)+$` against a run of `a` and a `b`: Python's re backtracks 2^n ways (30 a's: minutes);
    CMake's dialect has no backreferences, so one NFA pass decides it, exactly."""
    declare = ("FetchContent_Declare(dep GIT_REPOSITORY https://example.invalid/dep.git GIT_TAG "
               + "ab" * 20 + ")\n")
    run = 'set(A "' + "a" * 30_000 + 'b")\n'
    started = time.monotonic()
    for pattern, pinned in (("(a+)+$", []), ("(a+)+b$", ["dep"]), ("^(a|aa)+$", []), ("(a|a)*c", []),
                            ("a*a*a*a*a*a*a*a*a*a*c", []), ("^(a|aa)+b$", ["dep"])):
        files = {"CMakeLists.txt": run + f'if(A MATCHES "{pattern}")\n' + declare + "endif()\n"}
        assert [p.name for p in pins(files).pins] == pinned, pattern
    assert time.monotonic() - started < SECONDS


# ---------------------------------------------------------------- setup.py, Cargo.lock, toolchain, pyproject

DEEP_SUM = "X = " + "+".join(["a"] * 30_000) + "\n"


def test_setup_py_too_deep_to_parse_is_the_readers_error() -> None:
    with pytest.raises(source_layout.LayoutError, match=r"^setup\.py: nested too deeply to parse$"):
        requirements.read_rules(DEEP_SUM)
    with pytest.raises(rust.RustError, match=r"^cannot parse tools/build_rust\.py: nested too deeply"):
        rust.rust_extension_targets({"tools/build_rust.py": "from setuptools_rust import RustExtension\n" + DEEP_SUM})
    # deep enough to parse, too deep for ast.unparse (which names a rule it cannot read)
    shallow = "X = " + "+".join(["a"] * 500) + "\n"
    with pytest.raises(source_layout.LayoutError, match=rf"^setup\.py:1: nested deeper than {pysource.MAX_AST_DEPTH}$"):
        requirements.read_rules(shallow)
    with pytest.raises(source_layout.LayoutError, match=r"^setup\.py: source code string cannot contain null bytes$"):
        requirements.read_rules("x = 1\0")


@pytest.mark.parametrize("text", [
    "x = " + "[" * 100_000 + "]" * 100_000 + "\n",
    "x = " + "{a = " * 100_000 + "1" + "}" * 100_000 + "\n",
    "x = " + "1" * 5000 + "\n",
])
def test_toml_of_the_tree_too_deep_or_too_long_is_the_readers_error(text: str) -> None:
    with pytest.raises(rust.RustError, match=r"^rust/Cargo\.lock: "):
        rust.parse_cargo_lock("rust/Cargo.lock", text)
    with pytest.raises(rust.RustError, match=r"^rust-toolchain\.toml: "):
        rust.parse_toolchain("rust-toolchain.toml", text)
    with pytest.raises(source_layout.LayoutError, match=r"^pyproject\.toml: "):
        source_layout.build_system_requires(text)


@pytest.mark.parametrize(("text", "message"), [
    ('build-system = "x"\n', "not a list of strings"),
    ("[build-system]\nrequires = [1]\n", "not a list of strings"),
    ('[build-system]\nrequires = ["not a requirement!"]\n', "requires: "),
])
def test_pyproject_build_requires_of_the_wrong_shape_is_a_layout_error(text: str, message: str) -> None:
    with pytest.raises(source_layout.LayoutError, match=message):
        source_layout.build_system_requires(text)


def test_a_chain_of_requirement_includes_is_bounded() -> None:
    files = {f"requirements/r{i}.txt": f"-r r{i + 1}.txt\n" for i in range(5000)}
    with pytest.raises(source_layout.LayoutError,
                       match=rf"-r includes nested deeper than {source_layout.MAX_REQUIREMENT_INCLUDE_DEPTH}"):
        source_layout.parse_requirement_file("requirements/r0.txt", files.__getitem__)


# ---------------------------------------------------------------- the exported tree


def _repo_with_link(tmp_path: Path, target: str) -> tuple[git_shell.Mirror, str]:
    work = tmp_path / "repo"
    (work / "requirements").mkdir(parents=True)
    (work / "requirements" / "common.txt").write_text("numpy\n")
    os.symlink(target, work / "requirements" / "cpu.txt")
    (work / "setup.py").write_text("# after the link in the archive\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for argv in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "hostile"]):
        subprocess.run(["git", *argv], cwd=work, env=env, check=True)
    repo = git.Repo(work)
    return git_shell.Mirror(git_dir=Path(repo.git_dir)), repo.head.commit.hexsha


@pytest.mark.parametrize("link", ["absolute", "parent"])
def test_a_link_leaving_the_tree_is_refused_before_anything_is_written(tmp_path: Path, link: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "x"
    secret.write_text("outside the tree\n")
    target = str(secret) if link == "absolute" else "../../outside/x"
    repo, commit = _repo_with_link(tmp_path, target)
    dest = tmp_path / "export"
    dest.mkdir()
    with pytest.raises(ResolutionError, match=rf"^commit {commit[:9]}: the tree cannot be exported safely: "
                                              r"'requirements/cpu\.txt'") as err:
        git_shell.export_tree(repo, commit, dest)
    assert err.value.exit_code == ExitCode.RESOLUTION
    assert list(dest.iterdir()) == []  # every member checked first: nothing half-written
    assert [p.name for p in outside.iterdir()] == ["x"] and secret.read_text() == "outside the tree\n"


def test_a_link_inside_the_tree_is_exported(tmp_path: Path) -> None:
    repo, commit = _repo_with_link(tmp_path, "common.txt")
    dest = tmp_path / "export"
    dest.mkdir()
    git_shell.export_tree(repo, commit, dest)
    assert (dest / "requirements" / "cpu.txt").read_text() == "numpy\n" and (dest / "setup.py").is_file()


# ---------------------------------------------------------------- a full disk while crates are unpacked


def _crate_file(tmp_path: Path, name: str, version: str, size: int) -> tuple[Crate, Path]:
    """A real .crate (a gzipped tar of <name>-<version>/) with one file of `size` random bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for member, data in ((f"{name}-{version}/Cargo.toml", b'[package]\nname = "x"\n'),
                             (f"{name}-{version}/src/data.bin", os.urandom(size))):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path = tmp_path / rust.crate_filename(name, version)
    path.write_bytes(gzip.compress(raw.getvalue()))
    return Crate(name=name, version=version, checksum=hashlib.sha256(path.read_bytes()).hexdigest()), path


def test_a_full_disk_while_unpacking_a_crate_is_exit_7_naming_the_file(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    crate, path = _crate_file(tmp_path, "bigcrate", "1.0.0", 1 << 20)
    vendor = tmp_path / "vendor"
    vendor.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(vendor)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs")
    try:
        with pytest.raises(PreflightError, match=r"^no space left on the device while unpacking crate bigcrate "
                                                 r"1\.0\.0 to .*/vendor/\.unpack\.[^/]+/src/data\.bin$") as err:
            cargo.vendor({crate: path}, vendor)
        assert err.value.exit_code == ExitCode.PREFLIGHT
        assert list(vendor.iterdir()) == []  # the half-unpacked folder is gone
    finally:
        subprocess.run(["umount", str(vendor)], check=True)
    cargo.vendor({crate: path}, vendor)  # a rerun with room repairs it
    assert (vendor / "bigcrate-1.0.0" / "src" / "data.bin").stat().st_size == 1 << 20


# ---------------------------------------------------------------- through the CLI, on a branch of the test world


def _hostile_branch(world: TestWorld, name: str, files: dict[str, str | bytes], *, append: bool = False) -> None:
    """A branch off main with files written (or text appended); main is left as it was."""
    from vllm_lock_testworld.repo import git as world_git

    world_git(world.repo_path, "checkout", "-q", "-b", name, "main")
    try:
        for path, text in files.items():
            target = world.repo_path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("ab" if append else "wb") as handle:
                handle.write(text if isinstance(text, bytes) else text.encode("utf-8"))
        world_git(world.repo_path, "add", "-A")
        world_git(world.repo_path, "commit", "-q", "-m", f"test: {name}")
    finally:
        world_git(world.repo_path, "checkout", "-q", "main")


@pytest.mark.parametrize(("branch", "files", "message"), [
    ("hostile-include-bomb", {"CMakeLists.txt": "include(cmake/f0.cmake)\n", **{
        f"cmake/f{i}.cmake": f"include(cmake/f{i + 1}.cmake)\n" * 2 for i in range(30)}, "cmake/f30.cmake": ""},
     "include() calls followed"),
    ("hostile-deep-setup-py", {"setup.py": "\n" + DEEP_SUM}, "setup.py: nested too deeply to parse"),
    # the commit's own stripping script meets it first (it reads every requirements file as text)
    ("hostile-latin-1-requirements", {"requirements/common.txt": b"# caf\xe9\n"}, "UnicodeDecodeError"),
])
def test_resolve_of_a_hostile_tree_is_exit_5_in_one_line(world: TestWorld, tmp_path: Path, branch: str,
                                                         files: dict[str, str | bytes], message: str) -> None:
    _hostile_branch(world, branch, files, append=True)
    out = tmp_path / "x.lock.toml"
    started = time.monotonic()
    result = cli("resolve", "--repo", world.repo_url, "--ref", branch, "--torch-index", world.torch_nightly_index,
                 "--index", world.general_index, "--python", "3.11", "--target-device", "cuda", "-o", str(out),
                 cache=tmp_path / "cache")
    assert time.monotonic() - started < 120
    assert result.returncode == ExitCode.RESOLUTION, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not out.exists()


def test_a_declared_requirements_file_that_is_not_utf8_is_a_resolution_error(tmp_path: Path) -> None:
    """Past the stripping script (which may read the file another way), the requirements files
    are read as UTF-8 text: anything else is one clear error, not a traceback."""
    tree = tmp_path / "tree"
    shutil.copytree(Path(vllm_lock_testworld.__file__).parent / "skeleton" / "vllm", tree)
    files = [str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()]
    detected = source_layout.detect_layout(files, lambda p: (tree / p).read_text(), target_device="cpu")
    rules = requirements.read_rules((tree / "setup.py").read_text())
    (tree / "requirements" / "cpu.txt").write_bytes(b"numpy # caf\xe9\n")
    request = ResolveRequest(repo="file:///nowhere", target_device="cpu", output=tmp_path / "x.lock.toml",
                             cache=tmp_path / "cache")
    with pytest.raises(ResolutionError, match=r"^cannot read requirements: requirements/cpu\.txt is not UTF-8 text"):
        read_stripped(tree, Stripping(before={}, after={}, patched=()), detected, rules, request, QUIET)
