"""The test world as a whole: two worlds are identical, a world's mutations (swap, publish, commit,
retag), and `python -m vllm_lock_testworld serve`."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from testworld_support import fetch, links, ls_remote

from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.repo import git


def test_mutations_swap_publish_commit(tmp_path: Path) -> None:
    with TestWorld.create(tmp_path / "w") as w:
        fn = w.filenames("nightly", "torch")[0]
        before = hashlib.sha256(fetch(w.file_url(fn))[2]).hexdigest()
        w.swap_nightly_file(fn)
        after = hashlib.sha256(fetch(w.file_url(fn))[2]).hexdigest()
        assert before != after == w.file_sha256(fn)
        assert fn in {a["href"].split("/")[-1].replace("%2B", "+")
                      for a in links(w.torch_nightly_index + "/torch/") if a["href"]}
        new = dt.date(2026, 11, 20)
        w.publish_nightly(new)
        assert w.nightly_dates[-1] == new and w.latest_consistent_date == new
        with pytest.raises(ValueError, match=r"^nightly files for 2026-11-20 already published: torch-"):
            w.publish_nightly(new)
        head = w.commits[-1]
        shas = w.commit_to_main(2)
        assert len(shas) == 2 and w.commits[-3:] == [head, *shas]
        assert git(w.repo_path, "rev-parse", "HEAD") == shas[-1]
        assert git(w.repo_path, "status", "--porcelain") == ""
        desc = git(w.repo_path, "describe", "--tags", "--long", "--match", "v[0-9]*")
        assert desc.startswith("v0.32.0-4-g")
        _check_move_external_tag(w)


def _check_move_external_tag(w: TestWorld) -> None:
    cutlass = w.external_root / "nvidia" / "cutlass"
    head = git(cutlass, "rev-parse", "HEAD")
    for tag, kind in (("v4.2.1", "tag"), ("v4.0.0", "commit")):  # annotated stays annotated
        before = w.external_commit("cutlass", tag)
        sha = w.move_external_tag("cutlass", tag)
        assert sha != before and w.external_commit("cutlass", tag) == sha
        assert git(cutlass, "rev-parse", f"{sha}^") == before
        assert git(cutlass, "cat-file", "-t", tag) == kind
        assert git(cutlass, "show", f"{tag}:SOURCE_ID") == f"cutlass {tag} (retagged)"
        remote = ls_remote(w.external_url("cutlass"))
        assert remote[f"refs/tags/{tag}" + ("^{}" if kind == "tag" else "")] == sha
    assert git(cutlass, "rev-parse", "HEAD") == head  # no branch or work tree moved
    assert git(cutlass, "status", "--porcelain") == ""


def _log(repo: Path, rev: str) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%s|%ad|%cd|%an|%ae", "--date=iso-strict",
               rev).splitlines()


def test_two_worlds_are_identical(world: TestWorld, tmp_path: Path) -> None:
    with TestWorld.create(tmp_path / "other") as other:
        for index in ("nightly", "release", "general"):
            names = world.filenames(index)
            assert names == other.filenames(index)
            assert [world.file_sha256(n) for n in names] == [other.file_sha256(n) for n in names]
        # external repositories: byte-identical histories, whatever the world's path
        for name in ("cutlass", "vllm-flash-attn", "flashmla"):
            assert ls_remote(other.external_url(name)) == ls_remote(world.external_url(name))
        for name, role in (("vllm-flash-attn", "old"), ("vllm-flash-attn", "newest"),
                           ("flashmla", "1"), ("flashmla", "2"), ("cutlass", "v4.2.1")):
            assert other.external_commit(name, role) == world.external_commit(name, role)
        # vLLM: its cmake files carry the world's path, so only subjects, dates and count match
        n = len(other.commits)
        assert len(world.commits) >= n
        assert _log(other.repo_path, "HEAD") == _log(world.repo_path, world.commits[n - 1])
        assert set(other.tags) == set(world.tags)
        assert set(other.layout_commits) == set(world.layout_commits)
        assert other.nightly_dates == world.nightly_dates


def test_serve_command_prints_urls(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "vllm_lock_testworld", "serve",
                             str(tmp_path / "served")], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        assert fetch(urls["torch_nightly_index"] + "/torch/")[0] == 200
        ctx = ssl.create_default_context(cafile=urls["ca_cert"])
        assert fetch(urls["https_general_index"] + "/wheel/", context=ctx)[0] == 200
        assert urls["repo_url"].startswith("file://")
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
