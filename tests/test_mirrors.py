"""Mirrors (--mirror FROM=TO, VLLM_LOCK_MIRRORS) and the user's git configuration: the pure
parsing and rewriting, then real git and a real resolve through mirrors on loopback."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.build_identity import build_identity
from vllm_lock.cli import app
from vllm_lock.errors import ExitCode, UnreachableError, UsageError
from vllm_lock.mirrors import Mirror, Mirrors, parse
from vllm_lock.progress import QUIET
from vllm_lock.shell import git as git_shell
from vllm_lock.shell import http, mirroring
from vllm_lock_testworld import TestWorld

# ---------------------------------------------------------------- pure


def test_longest_prefix_wins_and_the_rest_is_kept() -> None:
    m = parse(["https://github.com/=file:///srv/gh/", "https://github.com/NVIDIA/=file:///srv/nv/"], None)
    assert m.rewrite("https://github.com/vllm-project/vllm.git") == "file:///srv/gh/vllm-project/vllm.git"
    assert m.rewrite("https://github.com/NVIDIA/cutlass.git") == "file:///srv/nv/cutlass.git"
    assert m.rewrite("https://gitlab.com/x/y.git") == "https://gitlab.com/x/y.git"
    assert m.describe("https://github.com/a/b") == "file:///srv/gh/a/b (mirror of https://github.com/a/b)"
    assert m.describe("https://gitlab.com/a") == "https://gitlab.com/a"


def test_restore_reads_mirror_links_back_as_the_original() -> None:
    m = parse(["https://pypi.org/simple/=http://127.0.0.1:9/simple/"], None)
    page = '<a href="http://127.0.0.1:9/simple/files/a-1-py3-none-any.whl#sha256=00">a</a>'
    assert m.restore(page) == '<a href="https://pypi.org/simple/files/a-1-py3-none-any.whl#sha256=00">a</a>'


def test_environment_pairs_by_space_or_comma_and_options_win() -> None:
    m = parse(["https://a.example/=https://opt.example/"],
              " https://a.example/=https://env.example/, https://b.example/=http://b.local/ ,,")
    assert m.entries == (Mirror(source="https://a.example/", target="https://opt.example/"),
                         Mirror(source="https://b.example/", target="http://b.local/"))
    assert not parse([], "") and not parse([], None)


@pytest.mark.parametrize(("spec", "why"), [
    ("https://github.com/", "not FROM=TO"),
    ("=file:///x/", "not FROM=TO"),
    ("github.com/=file:///x/", "FROM must be an absolute URL"),
    ("https://github.com/=ssh://host/x/", "TO must be an https, http, file URL"),
    ("https://github.com/=/srv/x/", "TO must be an https, http, file URL"),
    ("https://github.com/=file:///srv/x", "both end with '/' or neither"),
    ("https://github.com/=file:///srv/ x/", "space or control character"),
])
def test_bad_mirror_is_a_usage_error(spec: str, why: str) -> None:
    with pytest.raises(UsageError, match=why):
        parse([spec], None)


def test_same_source_twice_in_one_place_is_an_error() -> None:
    with pytest.raises(UsageError, match="two mirrors for https://a/"):
        parse(["https://a/=https://b/", "https://a/=https://c/"], None)


def test_cli_bad_mirror_one_error_line_exit_usage(tmp_path: Path) -> None:
    result = CliRunner().invoke(app,
                                ["resolve", "--mirror", "https://github.com/=ftp://x/", "-o", str(tmp_path / "l.toml")])
    assert result.exit_code == ExitCode.USAGE
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: --mirror: mirror 'https://github.com/=ftp://x/'"), lines
    assert not (tmp_path / "l.toml").exists()


def test_cli_bad_environment_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_LOCK_MIRRORS", "https://github.com/")
    result = CliRunner().invoke(app, ["update", str(tmp_path / "missing.lock.toml")])
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.strip() == "error: VLLM_LOCK_MIRRORS: mirror 'https://github.com/' is not FROM=TO"


# ---------------------------------------------------------------- git


def _git(*args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, str]:
    """A local repository standing in for github.com/org/lib (one commit, tag v1)."""
    repo = tmp_path / "mirror-root" / "org" / "lib"
    repo.mkdir(parents=True)
    _git("init", "-q", "-b", "main", cwd=repo)
    (repo / "README").write_text("lib\n")
    _git("add", "README", cwd=repo)
    _git("commit", "-q", "-m", "lib", cwd=repo)
    _git("tag", "v1", cwd=repo)
    return tmp_path / "mirror-root", _git("rev-parse", "HEAD", cwd=repo)


ORIGINAL = "https://github.invalid/org/lib"  # never reachable: only a mirror can serve it


def test_git_fetches_through_the_mirror_and_keeps_the_original_url(upstream: tuple[Path, str], tmp_path: Path) -> None:
    root, commit = upstream
    cache = tmp_path / "cache"
    with pytest.raises(UnreachableError, match="github.invalid"):
        git_shell.resolve_ref(ORIGINAL, "v1")
    with mirroring.using(parse([f"https://github.invalid/=file://{root}/"], None)):
        assert git_shell.resolve_ref(ORIGINAL, "v1") == commit
        repo = git_shell.fetch_commit(cache, ORIGINAL, commit)
    # the cache is keyed by the lock's URL, not by where the bytes came from
    assert Path(repo.git_dir) == git_shell.mirror_path(cache, ORIGINAL)
    assert git_shell.read_blob(repo, commit, "README") == b"lib\n"


def test_git_mirror_error_names_mirror_and_original(tmp_path: Path) -> None:
    with mirroring.using(parse([f"https://github.invalid/=file://{tmp_path}/none/"], None)), \
            pytest.raises(UnreachableError) as caught:
        git_shell.resolve_ref(ORIGINAL, "v1")
    assert f"file://{tmp_path}/none/org/lib (mirror of {ORIGINAL})" in str(caught.value)


def test_users_insteadof_is_honoured(upstream: tuple[Path, str], tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root, commit = upstream
    config = tmp_path / "user.gitconfig"
    config.write_text(f'[url "file://{root}/"]\n\tinsteadOf = https://github.invalid/\n')
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    assert git_shell.resolve_ref(ORIGINAL, "v1") == commit


def test_users_hooks_never_run(upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A hooks path in the user's config (or a template's hooks) runs nothing under vllm-lock:
    reference-transaction runs on every ref update of a fetch."""
    root, commit = upstream
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    marker = tmp_path / "hook-ran"
    for name in ("reference-transaction", "post-checkout"):
        (hooks / name).write_text(f"#!/bin/sh\necho ran >> {marker}\n")
        (hooks / name).chmod(0o755)
    config = tmp_path / "user.gitconfig"
    config.write_text(f"[core]\n\thooksPath = {hooks}\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    git_shell.fetch_commit(tmp_path / "cache", f"file://{root}/org/lib", commit)
    assert not marker.exists()
    # the same fetch by plain git with this config does run it: the config is live
    _git("init", "-q", "--bare", str(tmp_path / "plain.git"))
    _git("fetch", "-q", f"file://{root}/org/lib", "+refs/heads/*:refs/heads/*", cwd=tmp_path / "plain.git")
    assert marker.exists()


# ---------------------------------------------------------------- http and a whole resolve


def test_http_fetches_from_the_mirror_and_pages_read_as_the_original(world: TestWorld, tmp_path: Path) -> None:
    original = "https://pkgs.invalid"
    index = original + world.general_index.removeprefix(world.base_url)
    filename = world.filenames("general")[0]
    project = filename.split("-")[0].replace("_", "-").lower()
    with mirroring.using(parse([f"{original}/={world.base_url}/"], None)):
        page = http.get_text(f"{index}/{project}/")
        got = http.download(original + world.file_url(filename).removeprefix(world.base_url), tmp_path / "w",
                            name=filename)
    assert world.base_url not in page and f"{original}/" in page  # the mirror's links, read back
    assert got.sha256 == world.file_sha256(filename)
    with pytest.raises(UnreachableError, match="pkgs.invalid"):
        http.get_text(f"{index}/{project}/")


def test_http_mirror_to_file_is_refused_for_an_index(tmp_path: Path) -> None:
    with mirroring.using(parse([f"https://pypi.invalid/=file://{tmp_path}/"], None)), \
            pytest.raises(UnreachableError, match="only http and https"):
        http.get_text("https://pypi.invalid/simple/x/")


def test_resolve_through_mirrors_locks_the_original_urls(world: TestWorld, tmp_path: Path) -> None:
    """Every byte from the test world, every URL in the lock the original's; the build identity
    equals a direct resolve's (mirrors change where bytes come from, never what they are)."""
    repo_dir = Path(world.repo_url.removeprefix("file://"))
    host = "https://pkgs.invalid"
    originals = {
        "repo": f"https://github.invalid/vllm-project/{repo_dir.name}",
        "torch": host + world.torch_nightly_index.removeprefix(world.base_url),
        "general": host + world.general_index.removeprefix(world.base_url),
    }
    mirrors = parse([f"https://github.invalid/vllm-project/=file://{repo_dir.parent}/", f"{host}/={world.base_url}/"],
                    None)
    base = ResolveRequest(repo=world.repo_url, torch_index=world.torch_nightly_index, general_index=world.general_index,
                          python="3.11", output=tmp_path / "direct.lock.toml", cache=tmp_path / "cache")
    direct, _, _ = resolve(base, QUIET)
    mirrored, path, _ = resolve(dataclasses.replace(
        base, repo=originals["repo"], torch_index=originals["torch"], general_index=originals["general"],
        output=tmp_path / "mirrored.lock.toml", mirrors=mirrors), QUIET)
    assert mirrored.vllm.url == originals["repo"] and mirrored.vllm.commit == direct.vllm.commit
    assert build_identity(mirrored) == build_identity(direct)
    text = path.read_text()
    assert world.base_url not in text and str(repo_dir) not in text
    urls = [w.url for p in mirrored.packages for w in p.wheels]
    assert urls and all(u.startswith(host + "/") for u in urls), urls
    assert mirroring.active() == Mirrors()  # the setting ends with the resolve


def test_cli_resolve_takes_mirrors_from_option_and_environment(world: TestWorld, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`--mirror` for the vLLM repository, VLLM_LOCK_MIRRORS (three pairs, comma and space) for the
    indexes: the lock names only the original URLs."""
    repo_dir = Path(world.repo_url.removeprefix("file://"))
    host = "https://pkgs.invalid"
    monkeypatch.setenv("VLLM_LOCK_MIRRORS", f"{host}/whl/={world.base_url}/whl/,{host}/r2/={world.base_url}/r2/ "
                                            f"{host}/pypi/={world.base_url}/pypi/")
    out = tmp_path / "cli.lock.toml"
    result = CliRunner().invoke(app, [
        "resolve", "--repo", f"https://github.invalid/vllm-project/{repo_dir.name}",
        "--mirror", f"https://github.invalid/vllm-project/=file://{repo_dir.parent}/",
        "--torch-index", host + world.torch_nightly_index.removeprefix(world.base_url),
        "--index", host + world.general_index.removeprefix(world.base_url),
        "--python", "3.11", "-o", str(out),
    ])
    assert result.exit_code == 0, result.stderr
    text = out.read_text()
    assert world.base_url not in text and f"file://{repo_dir}" not in text
    assert f'"https://github.invalid/vllm-project/{repo_dir.name}"' in text


@pytest.mark.slow
def test_install_fetches_through_mirrors(world: TestWorld, tmp_path: Path) -> None:
    """A lock naming only unreachable originals installs with `--mirror` (a fresh cache: vLLM's
    repository and every wheel are fetched through the mirrors) and fails without them."""
    from install_support import cli, install_args, resolve_world_lock

    repo_dir = Path(world.repo_url.removeprefix("file://"))
    host = "https://pkgs.invalid"
    specs = [f"https://github.invalid/vllm-project/=file://{repo_dir.parent}/", f"{host}/={world.base_url}/"]
    _, path = resolve_world_lock(
        world, tmp_path / "dev.lock.toml", tmp_path / "resolve-cache",
        repo=f"https://github.invalid/vllm-project/{repo_dir.name}",
        torch_index=host + world.torch_nightly_index.removeprefix(world.base_url),
        general_index=host + world.general_index.removeprefix(world.base_url), mirrors=parse(specs, None))
    assert world.base_url not in path.read_text()
    without = cli(*install_args(path, tmp_path / "opt"), cache=tmp_path / "install-cache")
    errors = [line for line in without.stderr.splitlines() if line.startswith("error:")]
    assert without.returncode == ExitCode.UNREACHABLE, without.stderr
    assert len(errors) == 1 and "pkgs.invalid" in errors[0], without.stderr
    mirrored = cli(*install_args(path, tmp_path / "opt"), "--mirror", specs[0], cache=tmp_path / "install-cache",
                   env={"VLLM_LOCK_MIRRORS": specs[1]})
    assert mirrored.returncode == 0, mirrored.stderr
    assert cli("verify", str(path), "--venv", str(tmp_path / "opt" / "vllm"),
               cache=tmp_path / "install-cache").returncode == 0


def test_update_moves_through_mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`update --mirror`: a lock naming an unreachable original moves to the mirror's new commit
    and keeps naming the original."""
    with TestWorld.create(tmp_path / "world") as world:
        repo_dir = Path(world.repo_url.removeprefix("file://"))
        original = f"https://github.invalid/vllm-project/{repo_dir.name}"
        spec = f"https://github.invalid/vllm-project/=file://{repo_dir.parent}/"
        locks = tmp_path / "locks"
        locks.mkdir()
        monkeypatch.setenv("VLLM_LOCK_LOCKS_DIR", str(locks))
        monkeypatch.setenv("VLLM_LOCK_CACHE", str(tmp_path / "cache"))
        resolve(ResolveRequest(repo=original, torch_index=world.torch_nightly_index, general_index=world.general_index,
                               python="3.11", target_device="cpu", output=locks / "dev.lock.toml",
                               cache=tmp_path / "cache", mirrors=parse([spec], None)), QUIET)
        old_lock = tmp_path / "old.lock.toml"
        old_lock.write_text((locks / "dev.lock.toml").read_text())
        (new,) = world.commit_to_main(1)
        failed = CliRunner().invoke(app, ["update", "dev", "--vllm"])
        assert failed.exit_code == ExitCode.UNREACHABLE and "github.invalid" in failed.stderr
        moved = CliRunner().invoke(app, ["update", "dev", "--vllm", "--mirror", spec])
        assert moved.exit_code == 0, moved.stderr
        text = (locks / "dev.lock.toml").read_text()
        assert new in text and f'"{original}"' in text and str(repo_dir) not in text
        # diff on a fresh cache: the commits between the locks come through the mirror only
        monkeypatch.setenv("VLLM_LOCK_CACHE", str(tmp_path / "fresh-cache"))
        args = ["diff", str(old_lock), "dev", "--format", "json"]
        blind, seen = CliRunner().invoke(app, args), CliRunner().invoke(app, [*args, "--mirror", spec])
        assert (blind.exit_code, seen.exit_code) == (ExitCode.DIFFERENT, ExitCode.DIFFERENT)
        assert json.loads(blind.stdout)["vllm"]["history"]["reachable"] is False
        assert json.loads(seen.stdout)["vllm"]["history"]["reachable"] is True
