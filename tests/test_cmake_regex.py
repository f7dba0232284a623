"""cmake_regex: CMake's MATCHES dialect, decided in one NFA pass. On every pattern vLLM's CMake
uses (each release in tests/real) and on random patterns of the dialect, it answers exactly as
Python's re did; a pattern CMake would not compile is a RegexSyntaxError."""

from __future__ import annotations

import pathlib
import random
import re
import shutil
import subprocess
import time

import pytest

from vllm_lock import cmake_regex

# every MATCHES pattern of vLLM's CMake, releases 0.8.5.post1 to 0.33.0 (after CMake's unescaping)
CORPUS = ["[af]$", "riscv64", "x86_64|amd64", "Darwin", r"\+PTX$", "zvl128b", "f$", "x86_64", "gfx1100",
          "code=.*compute_[0-9]+[af]?", "auto strptr = new std::string", r"\-flto", "gfx942|gfx1100",
          r"^csrc/rocm/attention_paged_attn_.*\.cu$", r"12\.[01][af]?", r"12\.0a", r"10\.0a", r"10\.(0a|3a|0f)",
          "flash_attn[,)]"]
SUBJECTS = ["", "9.0a", "9.0", "10.0f", "12.1a", "12.0", "8.0+PTX", "10.3a", "x86_64", "AMD64", "amd64", "riscv64",
            "Darwin", "Linux", "gfx942;gfx1100", "-O2 -flto=auto", "-gencode arch=compute_90a,code=compute_90a",
            "csrc/rocm/attention_paged_attn_x.cu", "csrc/rocm/attention.cu", "zvl128b", "flash_attn)", "flash_attn",
            "int main() { auto strptr = new std::string(); }", "f"]


def matches(pattern: str, subject: str) -> bool:
    return cmake_regex.search(cmake_regex.compile_pattern(pattern), subject, lambda work: None)


@pytest.mark.parametrize("pattern", CORPUS)
def test_the_corpus_patterns_match_as_python_re_did(pattern: str) -> None:
    for subject in SUBJECTS:
        assert matches(pattern, subject) == (re.search(pattern, subject) is not None), (pattern, subject)


def _random_pattern(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth > 3 or roll < 0.3:
        return rng.choice(["a", "b", ".", "[ab]", "[^a]", "[a-b]", r"\.", "^", "$"])
    if roll < 0.55:
        return _random_pattern(rng, depth + 1) + _random_pattern(rng, depth + 1)
    if roll < 0.7:
        return f"({_random_pattern(rng, depth + 1)}|{_random_pattern(rng, depth + 1)})"
    return f"({_random_pattern(rng, depth + 1)}){rng.choice('*+?')}"


def test_random_patterns_of_the_dialect_match_as_python_re() -> None:
    rng = random.Random(20261128)
    compared = 0
    for _ in range(4000):
        pattern = _random_pattern(rng)
        subject = "".join(rng.choice("ab.") for _ in range(rng.randint(0, 9)))
        try:
            got = matches(pattern, subject)
        except cmake_regex.RegexSyntaxError:
            continue  # e.g. `(^)*`: CMake refuses a star over what can be empty
        assert got == (re.search(pattern, subject) is not None), (pattern, subject)
        compared += 1
    assert compared > 2000


@pytest.mark.parametrize("pattern", ["(a", "a)", "a**", "*a", "(a*)*", "(^)+", "[ab", "a\\", "[b-a]",
                                     "(a)" * 10, "(" * 10 + "a" + ")" * 10])
def test_what_cmake_would_not_compile_is_a_syntax_error(pattern: str) -> None:
    with pytest.raises(cmake_regex.RegexSyntaxError):
        cmake_regex.compile_pattern(pattern)


def test_anchors_are_the_strings_ends_and_an_escape_is_its_character() -> None:
    assert not matches("c$", "abc\n")  # Python's $ would match before the newline; CMake's does not
    assert matches(r"\d", "d") and not matches(r"\d", "1")  # no classes in CMake's dialect
    assert matches("[]a]", "]") and matches("a{2}", "a{2}")


def test_the_work_is_linear_and_reported() -> None:
    spent: list[int] = []
    regex = cmake_regex.compile_pattern("(a+)+$")
    assert not cmake_regex.search(regex, "a" * 20_000 + "b", spent.append)
    assert sum(spent) < 20 * 20_001  # a few states per character, never 2^n


# (pattern, subject): where CMake's compiler differs from Python's re. After a range, a `-` starts
# a range from the previous range's end (`[a-c-e]` holds d and e, not `-`); CMake matches bytes,
# so `.` is one byte of UTF-8, never one character.
CMAKE_ONLY = [("(a)" * 9, "a" * 9), ("(" * 9 + "a" + ")" * 9, "a"),
              ("[a-c-e]", "d"), ("[a-c-e]", "e"), ("[a-c-e]", "-"), ("[a-c-e]", "c"), ("[a-c-c]", "c"),
              ("^.$", "é"), ("^..$", "é"), ("^[é]$", "é"), ("^[^a]$", "é"), ("é", "é"), ("^.é$", "xé")]


def _cmake_answers(cases: list[tuple[str, str]], tmp_path: pathlib.Path) -> list[bool]:
    """What real CMake says of each `subject MATCHES pattern` (bracket arguments: no unescaping)."""
    script = tmp_path / "matches.cmake"
    script.write_text("".join(f'if([=[{subject}]=] MATCHES [=[{pattern}]=])\n message("{i} 1")\nelse()\n'
                              f' message("{i} 0")\nendif()\n' for i, (pattern, subject) in enumerate(cases)),
                      encoding="utf-8")
    out = subprocess.run(["cmake", "-P", str(script)], capture_output=True, text=True, check=True)
    answers = dict(line.split() for line in out.stderr.splitlines())
    return [answers[str(i)] == "1" for i in range(len(cases))]


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_ranges_after_ranges_and_non_ascii_match_as_cmake_does(tmp_path: pathlib.Path) -> None:
    assert [matches(p, s) for p, s in CMAKE_ONLY] == _cmake_answers(CMAKE_ONLY, tmp_path)
    with pytest.raises(cmake_regex.RegexSyntaxError):
        cmake_regex.compile_pattern("[a-c-b]")  # CMake: invalid range (d to b)
    assert matches("^...$", "\ud800")  # a lone surrogate (no UTF-8 of its own) is its 3 bytes, not an error


def test_a_long_class_costs_what_one_character_does() -> None:
    """The work budget counts states, one per class: a class of 1,000 characters must cost no more
    per character of the subject than `a` does, or a tree's MATCHES runs ~50x past its budget."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    long_class = cmake_regex.compile_pattern("[" + "".join(alphabet[i % 62] for i in range(998)) + "]")
    one_character = cmake_regex.compile_pattern("a")
    subject = "-" * cmake_regex.MAX_SUBJECT_LENGTH

    def fastest(regex: cmake_regex.Regex) -> float:
        times = []
        for _ in range(3):
            started = time.perf_counter()
            assert not cmake_regex.search(regex, subject, lambda work: None)
            times.append(time.perf_counter() - started)
        return min(times)

    assert fastest(long_class) < 4 * fastest(one_character)
