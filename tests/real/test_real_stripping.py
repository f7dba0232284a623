"""The stripping script on the part of the tree resolve exports (resolve.stripping_pathspecs)
patches exactly the files, with exactly the hashes, it patches on the whole tree: on each of the
five real vLLM sdists, both modes of the commit's script."""

from __future__ import annotations

from pathlib import Path

import pytest
from corpus import git as run_git
from sdists import extract_sdist
from test_real_cmake import VERSIONS

from vllm_lock import source_layout as layout_rules
from vllm_lock.actions.resolve.source import stripping_pathspecs
from vllm_lock.model import PatchedFile
from vllm_lock.shell import git as git_shell
from vllm_lock.shell.stripping import run_stripping_script, snapshot

pytestmark = pytest.mark.real_corpus


def sdist_repo(version: str, where: Path) -> tuple[git_shell.Mirror, str]:
    where.mkdir(parents=True)
    extract_sdist(version, where)
    run_git("init", "-q", "-b", "main", cwd=where)
    run_git("add", "-A", cwd=where)
    run_git("commit", "-q", "--no-verify", "-m", f"vLLM {version}", cwd=where)
    return git_shell.Mirror(git_dir=where / ".git"), run_git("rev-parse", "HEAD", cwd=where)


def patched(tree: Path, argv: tuple[str, ...]) -> tuple[PatchedFile, ...]:
    before = snapshot(tree)
    assert run_stripping_script(tree, argv).ok
    return layout_rules.patched_files(before, snapshot(tree))


@pytest.mark.parametrize("version", VERSIONS)
def test_partial_export_patches_what_the_whole_tree_patches(version: str, tmp_path: Path) -> None:
    repo, commit = sdist_repo(version, tmp_path / "repo")
    files = git_shell.list_files(repo, commit)
    detected = layout_rules.detect_layout(
        files, lambda p: git_shell.read_blob(repo, commit, p).decode(), target_device="cuda")
    modes: list[tuple[str, ...]] = [(detected.stripping_script,)]
    if detected.stripping_mode == "prefix":
        modes.append((detected.stripping_script, "--prefix"))
    for number, argv in enumerate(modes):
        whole, part = tmp_path / f"whole{number}", tmp_path / f"part{number}"
        git_shell.export_tree(repo, commit, whole)
        git_shell.export_paths(repo, commit, part, stripping_pathspecs(files, detected.stripping_script))
        exported = [p for p in part.rglob("*") if p.is_file()]
        assert len(exported) < len(files) / 10  # the point: a small part of the tree
        assert snapshot(part) == snapshot(whole)  # every file any script may rewrite is there
        expected = patched(whole, argv)
        assert expected  # every release strips torch from some file
        assert patched(part, argv) == expected
