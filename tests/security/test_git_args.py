"""Hostile repository URLs and refs handed straight to the git shell (the lock reader bypassed):
nothing runs, each ends as a VllmLockError. Two guards hold independently: the shell's own
refusal of option-like values, and the `--` / `--end-of-options` before every such argument
(checked with the refusal switched off). Real git, real repositories."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
from sample_lock import make_lock

from vllm_lock.errors import VllmLockError
from vllm_lock.shell import git as git_shell


@pytest.fixture()
def repo(tmp_path: Path) -> tuple[str, str]:
    """A real repository: (file:// URL, its commit on main)."""
    path = tmp_path / "repo"
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=path, check=True, capture_output=True, text=True)

    path.mkdir()
    run("init", "-q", "-b", "main")
    (path / "f").write_text("x\n")
    run("add", "f")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    return "file://" + str(path), run("rev-parse", "HEAD").stdout.strip()


def _hostile_url(marker: Path) -> str:
    return f"--upload-pack=touch {marker};"


def _calls(url: str, ref: str, commit: str, cache: Path, src: Path) -> dict[str, Callable[[], object]]:
    """Every shell entry point a lock's URL, ref or commit reaches."""
    lock = SimpleNamespace(vllm=SimpleNamespace(url=url, commit=commit))
    return {
        "resolve_ref": lambda: git_shell.resolve_ref(url, ref),
        "update_mirror": lambda: git_shell.update_mirror(cache, url, commit),
        "fetch_commit": lambda: git_shell.fetch_commit(cache, url, commit),
        "checkout": lambda: git_shell.checkout(lock, cache, src, lambda _: None),  # type: ignore[arg-type]
    }


def _assert_refused_and_nothing_ran(calls: dict[str, Callable[[], object]], marker: Path) -> None:
    for name, call in calls.items():
        with pytest.raises(VllmLockError) as caught:
            call()
        assert str(caught.value).strip() and "\n" not in str(caught.value), name
        assert not marker.exists(), f"{name} ran the hostile command"


def test_an_upload_pack_url_runs_nothing(tmp_path: Path, repo: tuple[str, str]) -> None:
    marker = tmp_path / "marker"
    _, commit = repo
    calls = _calls(_hostile_url(marker), "main", commit, tmp_path / "cache", tmp_path / "src")
    _assert_refused_and_nothing_ran(calls, marker)


def test_the_double_dash_alone_holds(tmp_path: Path, repo: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With the shell's refusal switched off, git itself reads the value as a repository path."""
    monkeypatch.setattr(git_shell, "check_url", lambda url: url)
    marker = tmp_path / "marker"
    _, commit = repo
    calls = _calls(_hostile_url(marker), "main", commit, tmp_path / "cache", tmp_path / "src")
    _assert_refused_and_nothing_ran(calls, marker)


def test_a_ref_or_commit_starting_with_a_dash_runs_nothing(tmp_path: Path, repo: tuple[str, str]) -> None:
    url, _ = repo
    marker = tmp_path / "marker"
    hostile = _hostile_url(marker)
    calls = _calls(url, hostile, hostile, tmp_path / "cache", tmp_path / "src")
    _assert_refused_and_nothing_ran(calls, marker)
    for ref in ("-h", "main:refs/heads/x", "a..b"):
        with pytest.raises(VllmLockError, match="refusing ref"):
            git_shell.resolve_ref(url, ref)


def test_a_dash_ref_is_only_a_pattern_to_git(tmp_path: Path, repo: tuple[str, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(git_shell, "check_ref", lambda ref: ref)
    url, _ = repo
    marker = tmp_path / "marker"
    with pytest.raises(VllmLockError, match="not found"):
        git_shell.resolve_ref(url, _hostile_url(marker))
    assert not marker.exists()


def test_commits_are_passed_after_end_of_options(tmp_path: Path, repo: tuple[str, str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    url, commit = repo
    mirror = git_shell.update_mirror(tmp_path / "cache", url, commit)
    monkeypatch.setattr(git_shell, "check_commit", lambda c: c)
    marker = tmp_path / "out"
    for call in (
        lambda: git_shell.list_files(mirror, f"--output={marker}"),
        lambda: git_shell.export_tree(mirror, f"--output={marker}", tmp_path / "tree"),
        lambda: git_shell.commits_between(mirror, commit, f"--output={marker}", 5),
    ):
        with pytest.raises(VllmLockError):
            call()
        assert not marker.exists()


@pytest.mark.parametrize("url", ["ext::sh -c touch% {marker}", "fd::17", "ftp://example.org/x.git"])
def test_other_transports_are_errors_not_tracebacks(tmp_path: Path, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ext-marker"
    url = url.format(marker=marker)
    with pytest.raises(VllmLockError, match="only https, http, ssh, git, file"):
        git_shell.resolve_ref(url, "main")
    # and git itself refuses the transport when the shell's check is switched off
    monkeypatch.setattr(git_shell, "check_url", lambda u: u)
    with pytest.raises(VllmLockError):
        git_shell.update_mirror(tmp_path / "cache", url, "1" * 40)
    assert not marker.exists()


def test_a_plain_repository_still_resolves(repo: tuple[str, str], tmp_path: Path) -> None:
    url, commit = repo
    assert git_shell.resolve_ref(url, "main") == commit
    src = tmp_path / "src"
    git_shell.checkout(make_lock(url=url, commit=commit), tmp_path / "cache", src, lambda _: None)
    assert (src / "f").read_text() == "x\n"
