"""export_paths (what resolve exports of a commit: the stripping script's part of the tree) and
resolve on a commit whose requirements/ holds a link leaving the tree. Real git, real repositories."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.actions.resolve.source import stripping_pathspecs
from vllm_lock.errors import ExitCode, ResolutionError
from vllm_lock.progress import QUIET
from vllm_lock.shell import git as git_shell
from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.repo import git


def _repo(tmp_path: Path, links: dict[str, str]) -> tuple[Path, str]:
    path = tmp_path / "repo"
    (path / "requirements").mkdir(parents=True)
    (path / "requirements" / "common.txt").write_text("numpy\n")
    (path / "requirements" / "cuda.txt").write_text("-r common.txt\ntorch==2.9.0\n")
    (path / "requirements-old.txt").write_text("torch\n")
    (path / "pyproject.toml").write_text('[build-system]\nrequires = ["torch == 2.9.0"]\n')
    (path / "use_existing_torch.py").write_text("print('strip')\n")
    (path / "csrc").mkdir()
    (path / "csrc" / "kernel.cu").write_text("// not needed by resolve\n")
    for name, target in links.items():
        os.symlink(target, path / name)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "tree")
    return path, git(path, "rev-parse", "HEAD")


def test_only_the_named_paths_are_exported(tmp_path: Path) -> None:
    path, commit = _repo(tmp_path, {"requirements/same.txt": "common.txt"})
    repo = git_shell.update_mirror(tmp_path / "cache", "file://" + str(path), commit)
    files = git_shell.list_files(repo, commit)
    dest = tmp_path / "out"
    git_shell.export_paths(repo, commit, dest, stripping_pathspecs(files, "use_existing_torch.py"))
    exported = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if not p.is_dir())
    assert exported == ["pyproject.toml", "requirements-old.txt", "requirements/common.txt", "requirements/cuda.txt",
                        "requirements/same.txt", "use_existing_torch.py"]
    assert (dest / "requirements" / "same.txt").read_text() == "numpy\n"  # a link inside the tree is kept


@pytest.mark.parametrize("target", ["/etc/passwd", "../../outside.txt", "../.."])
def test_a_link_leaving_the_tree_is_refused(tmp_path: Path, target: str) -> None:
    path, commit = _repo(tmp_path, {"requirements/evil.txt": target})
    repo = git_shell.update_mirror(tmp_path / "cache", "file://" + str(path), commit)
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match=r"archive link 'requirements/evil.txt' -> .* leaves the tree"):
        git_shell.export_paths(repo, commit, dest, ["requirements"])
    assert not dest.exists() or not any(dest.iterdir())


def test_resolve_refuses_a_requirements_link_leaving_the_tree(world: TestWorld, tmp_path: Path) -> None:
    clone = tmp_path / "vllm"
    git(tmp_path, "clone", "-q", str(world.repo_path), str(clone))
    os.symlink("/etc/passwd", clone / "requirements" / "passwd.txt")
    git(clone, "add", "-A")
    git(clone, "commit", "-qm", "a link out of the tree")
    commit = git(clone, "rev-parse", "HEAD")
    out = tmp_path / "x.lock.toml"
    request = ResolveRequest(repo="file://" + str(clone), ref=commit, torch_index=world.torch_nightly_index,
                             general_index=world.general_index, python="3.11", output=out, cache=tmp_path / "cache")
    with pytest.raises(ResolutionError, match=(rf"^commit {commit[:9]}: archive link 'requirements/passwd.txt' -> "
                                               r"'/etc/passwd' leaves the tree$")) as err:
        resolve(dataclasses.replace(request), QUIET)
    assert err.value.exit_code == ExitCode.RESOLUTION and not out.exists()
