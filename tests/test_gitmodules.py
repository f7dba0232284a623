"""Submodule parsing and URL resolution (pure)."""

from __future__ import annotations

import pytest

from vllm_lock.gitmodules import SubmoduleError, parse_config, parse_gitlinks, resolve_url, submodules

SHA = "a" * 40


@pytest.mark.parametrize(
    ("superproject", "url", "expected"),
    [
        ("https://github.com/vllm-project/flash-attention.git", "../../NVIDIA/cutlass.git",
         "https://github.com/NVIDIA/cutlass.git"),
        ("https://github.com/vllm-project/flash-attention.git", "../cutlass", "https://github.com/vllm-project/cutlass"),
        ("file:///w/external/vllm-project/flash-attention", "../../nvidia/cutlass", "file:///w/external/nvidia/cutlass"),
        ("https://example.org/a/b/", "./c", "https://example.org/a/b/c"),
        ("https://github.com/x/y", "https://github.com/NVIDIA/cutlass.git", "https://github.com/NVIDIA/cutlass.git"),
    ],
)
def test_relative_urls_resolve_like_git(superproject: str, url: str, expected: str) -> None:
    assert resolve_url(superproject, url) == expected


def test_relative_url_cannot_climb_above_the_host() -> None:
    with pytest.raises(SubmoduleError, match="climbs above"):
        resolve_url("https://github.com/x", "../../../y")


def test_submodules_join_gitmodules_and_gitlinks() -> None:
    config = parse_config(
        "submodule.csrc/cutlass.path=csrc/cutlass\nsubmodule.csrc/cutlass.url=../../nvidia/cutlass\n"
        "core.bare=false\n"
    )
    links = parse_gitlinks(f"100644 blob {'b' * 40}\tREADME.md\n160000 commit {SHA}\tcsrc/cutlass\n")
    (sub,) = submodules("file:///w/vllm-project/fa", config, links)
    assert (sub.path, sub.url, sub.commit) == ("csrc/cutlass", "file:///w/nvidia/cutlass", SHA)


@pytest.mark.parametrize(
    ("config", "links", "message"),
    [
        ({}, {"csrc/cutlass": SHA}, "no url in .gitmodules"),
        ({"x": {"path": "../evil", "url": "https://e"}}, {"../evil": SHA}, "leaves the source tree"),
        ({"x": {"path": "/etc", "url": "https://e"}}, {"/etc": SHA}, "leaves the source tree"),
    ],
)
def test_unsafe_or_incomplete_submodules_are_refused(
        config: dict[str, dict[str, str]], links: dict[str, str], message: str) -> None:
    with pytest.raises(SubmoduleError, match=message):
        submodules("https://github.com/x/y", config, links)
