"""The external source repositories (CUTLASS, flash-attention, FlashMLA): tags, roles, the
submodule, and deterministic retags."""

from __future__ import annotations

from pathlib import Path

import pytest
from testworld_support import ls_remote

from vllm_lock_testworld import TestWorld, externals
from vllm_lock_testworld.repo import git


def test_external_repositories(world: TestWorld, tmp_path: Path) -> None:
    root = world.external_root
    assert root == world.root / "external" and world.urls()["external_root"] == str(root)
    assert world.external_url("cutlass") == f"file://{root}/nvidia/cutlass"
    assert world.external_url("vllm-flash-attn") == f"file://{root}/vllm-project/flash-attention"
    assert world.external_url("flashmla") == f"file://{root}/vllm-project/FlashMLA"
    cutlass = root / "nvidia" / "cutlass"
    remote = ls_remote(world.external_url("cutlass"))
    tags = {r for r in remote if r.startswith("refs/tags/")}
    assert tags == {"refs/tags/v4.0.0", "refs/tags/v4.1.0", "refs/tags/v4.2.1",
                    "refs/tags/v4.2.1^{}"}
    for tag in ("v4.0.0", "v4.1.0", "v4.2.1"):
        sha = world.external_commit("cutlass", tag)
        assert git(cutlass, "show", f"{sha}:SOURCE_ID") + "\n" == f"cutlass {tag}\n"
        assert "#define CUTLASS_MAJOR 4" in git(cutlass, "show", f"{sha}:include/cutlass/version.h")
    # lightweight tags name the commit; the annotated one peels to it
    assert remote["refs/tags/v4.0.0"] == world.external_commit("cutlass", "v4.0.0")
    assert git(cutlass, "cat-file", "-t", "refs/tags/v4.2.1") == "tag"
    assert remote["refs/tags/v4.2.1"] != remote["refs/tags/v4.2.1^{}"]
    assert remote["refs/tags/v4.2.1^{}"] == world.external_commit("cutlass", "v4.2.1")
    fa = root / "vllm-project" / "flash-attention"
    for role in ("old", "new", "newest"):
        sha = world.external_commit("vllm-flash-attn", role)
        assert git(fa, "show", f"{sha}:SOURCE_ID") == f"flash-attention {role}"
        assert git(fa, "ls-tree", sha, "csrc/cutlass") == (
            f"160000 commit {world.external_commit('cutlass', 'v4.2.1')}\tcsrc/cutlass")
        assert git(fa, "config", "--blob", f"{sha}:.gitmodules", "--get",
                   "submodule.csrc/cutlass.url") == "../../nvidia/cutlass"
    mla = root / "vllm-project" / "FlashMLA"
    for role in ("1", "2"):
        assert git(mla, "show", f"{world.external_commit('flashmla', role)}:SOURCE_ID") == (
            f"flashmla {role}")
    with pytest.raises(KeyError, match="external source 'cutlass' has no tag or role 'v9.9.9'"):
        world.external_commit("cutlass", "v9.9.9")
    with pytest.raises(KeyError, match="no external source 'deepgemm'"):
        world.external_url("deepgemm")
    # the relative submodule URL resolves next to the superproject, as on GitHub
    clone = tmp_path / "fa"
    git(tmp_path, "-c", "protocol.file.allow=always", "clone", "-q", "--recurse-submodules",
        world.external_url("vllm-flash-attn"), str(clone))
    assert (clone / "csrc" / "cutlass" / "SOURCE_ID").read_text() == "cutlass v4.2.1\n"


def test_moved_external_tags_are_deterministic(tmp_path: Path) -> None:
    a, b = (externals.build_externals(tmp_path / name / "external") for name in ("a", "b"))
    assert a.commits == b.commits
    for _ in range(2):  # a second move of the same tag also matches
        assert externals.move_tag(a, "cutlass", "v4.1.0") == externals.move_tag(b, "cutlass", "v4.1.0")
    moved = externals.move_tag(a, "flashmla", "v1")  # no such tag yet: created on HEAD
    assert externals.tag_commit(a.path("flashmla"), "v1") == moved
    assert git(a.path("flashmla"), "rev-parse", f"{moved}^") == a.commit("flashmla", "2")
