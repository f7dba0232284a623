"""shell/git.py beyond mirrors: a checkout's HEAD and version tag (verify), the user's own work
tree (promote --commit), and gitpython left unimported until git runs. Real git, real repositories."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faults.faultservers import SilentListener
from install_support import cli, install_args, resolve_world_lock, vllm_version

from vllm_lock.errors import UsageError
from vllm_lock.shell import git as git_shell
from vllm_lock_testworld import TestWorld


def _git(where: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=where, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """A work tree with one commit and a locks/ folder inside it."""
    top = tmp_path / "project"
    (top / "locks").mkdir(parents=True)
    _git(top, "init", "-q", "-b", "main")
    _git(top, "config", "user.name", "t")
    _git(top, "config", "user.email", "t@t")
    (top / "README").write_text("x\n")
    _git(top, "add", "README")
    _git(top, "commit", "-q", "-m", "one")
    return top


def test_head_and_exact_tag_of_a_checkout(work: Path, tmp_path: Path) -> None:
    head = _git(work, "rev-parse", "HEAD")
    assert git_shell.head_commit(work) == head
    assert git_shell.exact_tag(work) is None
    _git(work, "tag", "not-a-version")
    assert git_shell.exact_tag(work) is None  # only v<digit>... tags name a vLLM version
    _git(work, "tag", "v0.1.0")
    assert git_shell.exact_tag(work) == "v0.1.0"
    assert git_shell.head_commit(tmp_path) is None and git_shell.exact_tag(tmp_path) is None  # no checkout


def test_the_work_tree_is_found_from_a_folder_inside_it(work: Path, tmp_path: Path) -> None:
    assert git_shell.work_tree(work / "locks", option="--commit") == work
    with pytest.raises(UsageError, match=f"^--commit: {tmp_path} is not inside a git repository$"):
        git_shell.work_tree(tmp_path, option="--commit")
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
    with pytest.raises(UsageError, match=f"^--commit: {bare} is a bare repository$"):
        git_shell.work_tree(bare, option="--commit")


def test_commit_folder_commits_only_that_folder_and_obeys_the_users_hooks(work: Path) -> None:
    (work / "locks" / "stable.lock.toml").write_text("a\n")
    (work / "elsewhere").write_text("not ours\n")
    sha = git_shell.commit_folder(work, work / "locks", "promote\n")
    assert sha == _git(work, "rev-parse", "HEAD")
    assert _git(work, "show", "--name-only", "--format=", "HEAD") == "locks/stable.lock.toml"
    assert _git(work, "status", "--porcelain") == "?? elsewhere"

    hook = work / ".git" / "hooks" / "pre-commit"
    hook.write_text("#!/bin/sh\necho 'hook says no' >&2\nexit 1\n")
    hook.chmod(0o755)
    (work / "locks" / "stable.lock.toml").write_text("b\n")
    with pytest.raises(git_shell.GitError, match="hook says no$"):
        git_shell.commit_folder(work, work / "locks", "promote again\n")
    assert _git(work, "rev-parse", "HEAD") == sha
    git_shell.unstage(work, work / "locks")
    assert _git(work, "diff", "--cached", "--name-only") == ""  # nothing left staged
    assert (work / "locks" / "stable.lock.toml").read_text() == "b\n"  # the file itself untouched


def test_gitpython_is_imported_only_when_git_runs() -> None:
    """verify reads a checkout's HEAD through this module: importing it must not cost gitpython's
    ~70 ms import."""
    probe = ("import sys; import vllm_lock.actions.verify, vllm_lock.shell.git; "
             "print('git' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout == "False\n"


def test_a_git_dir_in_the_environment_never_turns_a_fetch_onto_the_users_repository(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from a git hook (GIT_DIR, GIT_INDEX_FILE set) the mirror's `fetch --force --prune`
    went into the user's repository: its branches overwritten or pruned, the mirror left empty."""
    upstream = tmp_path / "upstream"
    _git(tmp_path, "init", "-q", "-b", "main", str(upstream))
    _git(upstream, "commit", "-q", "--allow-empty", "-m", "upstream")
    commit = _git(upstream, "rev-parse", "HEAD")
    _git(work, "checkout", "-q", "-b", "work")
    _git(work, "branch", "keep")
    before = _git(work, "for-each-ref")
    monkeypatch.setenv("GIT_DIR", str(work / ".git"))
    monkeypatch.setenv("GIT_INDEX_FILE", str(work / ".git" / "index"))
    monkeypatch.setenv("GIT_WORK_TREE", str(work))
    mirror = git_shell.update_mirror(tmp_path / "cache", f"file://{upstream}", commit)
    monkeypatch.delenv("GIT_DIR")
    monkeypatch.delenv("GIT_INDEX_FILE")
    monkeypatch.delenv("GIT_WORK_TREE")
    assert _git(work, "for-each-ref") == before
    assert _git(mirror.git_dir, "rev-parse", "refs/heads/main") == commit


def _processes_naming(needle: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"git") and any(needle.encode() in part for part in argv):
            found.append(int(pid))
    return found


def _signals_as_given(nohup: bool) -> None:
    """SIGHUP's and SIGINT's dispositions set either way in the child: a suite started under nohup
    or as a background job (SIGINT ignored) must not make the signal cases nohup cases."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN if nohup else signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT, "nohup"])
def test_a_terminated_command_takes_its_git_with_it(tmp_path: Path, signum: int | str) -> None:
    """git runs in a session of its own (killed with its group at the deadline), so a SIGTERM or
    SIGHUP for vllm-lock (a CI job cancelled, a terminal closed) no longer reaches it: a git://
    ls-remote of a silent server was left running for ever. Now such a signal is an interrupt,
    unless whoever started vllm-lock ignores it (nohup: a SIGHUP changes nothing)."""
    nohup = signum == "nohup"
    silent = SilentListener()
    url = f"git://127.0.0.1:{silent.port}/vllm.git"
    command = subprocess.Popen(
        [sys.executable, "-m", "vllm_lock.cli", "resolve", "--repo", url, "--python", "3.11", "--torch-date",
         "2026-01-01", "--target-device", "cpu", "-o", str(tmp_path / "x.lock.toml"),
         "--index", "http://127.0.0.1:9/simple", "--torch-index", "http://127.0.0.1:9/whl"],
        env=dict(os.environ, VLLM_LOCK_CACHE=str(tmp_path / "cache")), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=lambda: _signals_as_given(nohup))
    try:
        deadline = time.monotonic() + 60
        while not _processes_naming(url) and time.monotonic() < deadline and command.poll() is None:
            time.sleep(0.05)
        assert _processes_naming(url), command.communicate()
        if nohup:
            command.send_signal(signal.SIGHUP)
            time.sleep(1)
            assert command.poll() is None and _processes_naming(url)  # still asking the silent server
            signum = signal.SIGTERM
        assert isinstance(signum, int)
        command.send_signal(signum)
        _, stderr = command.communicate(timeout=30)
        time.sleep(0.2)
        assert _processes_naming(url) == []
        assert command.returncode == 130
        assert [line for line in stderr.splitlines() if line.startswith("error:")] == ["error: interrupted"]
    finally:
        for pid in _processes_naming(url):
            os.kill(pid, signal.SIGKILL)
        command.kill()
        silent.close()


@pytest.mark.parametrize("leftover", ["half-removed", "file"])
def test_a_mirror_path_left_without_head_is_replaced(tmp_path: Path, leftover: str) -> None:
    """A mirror whose removal was killed half-way (HEAD gone, objects/ left), or a file where the
    mirror goes: every rerun failed renaming the new mirror onto it (a traceback); now it is replaced."""
    upstream = tmp_path / "upstream"
    _git(tmp_path, "init", "-q", "-b", "main", str(upstream))
    _git(upstream, "commit", "-q", "--allow-empty", "-m", "upstream")
    commit = _git(upstream, "rev-parse", "HEAD")
    url = f"file://{upstream}"
    path = git_shell.mirror_path(tmp_path / "cache", url)
    if leftover == "file":
        path.parent.mkdir(parents=True)
        path.write_text("not a mirror\n")
    else:
        (path / "objects" / "pack").mkdir(parents=True)
        (path / "objects" / "pack" / "junk").write_text("x")
    mirror = git_shell.update_mirror(tmp_path / "cache", url, commit)
    assert _git(mirror.git_dir, "rev-parse", "refs/heads/main") == commit


def test_an_archive_past_the_output_bound_is_one_error_not_all_of_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit's blobs compress far below what they unpack to (zeros: 1000x): `git archive` of
    an untrusted tree was read whole into memory. Past VLLM_LOCK_GIT_OUTPUT_MAX git is killed."""
    upstream = tmp_path / "upstream"
    _git(tmp_path, "init", "-q", "-b", "main", str(upstream))
    (upstream / "zeros").write_bytes(bytes(8 << 20))
    _git(upstream, "add", "zeros")
    _git(upstream, "commit", "-q", "-m", "zeros")
    commit = _git(upstream, "rev-parse", "HEAD")
    mirror = git_shell.update_mirror(tmp_path / "cache", f"file://{upstream}", commit)
    monkeypatch.setenv("VLLM_LOCK_GIT_OUTPUT_MAX", str(1 << 20))
    with pytest.raises(git_shell.GitError, match=r"^git archive wrote more than 1048576 bytes while exporting"):
        git_shell.export_tree(mirror, commit, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.delenv("VLLM_LOCK_GIT_OUTPUT_MAX")
    git_shell.export_tree(mirror, commit, tmp_path / "out")
    assert (tmp_path / "out" / "zeros").stat().st_size == 8 << 20


def test_install_run_from_a_git_hook_builds_the_locked_commit_not_the_hooks_repository(
        world: TestWorld, work: Path, tmp_path: Path) -> None:
    """The command line forgets the caller's GIT_DIR (and the rest of git's repository variables)
    for every program it starts: the build's setuptools-scm read the hook's repository's version."""
    _git(work, "tag", "v9.9.9")
    lock, path = resolve_world_lock(world, tmp_path / "dev.lock.toml", tmp_path / "cache")
    before = _git(work, "for-each-ref")
    opt = tmp_path / "opt"
    result = cli(*install_args(path, opt), cache=tmp_path / "cache", timeout=900,
                 env={"GIT_DIR": str(work / ".git"), "GIT_INDEX_FILE": str(work / ".git" / "index"),
                      "GIT_WORK_TREE": str(work)})
    assert result.returncode == 0, result.stderr[-3000:]
    assert _git(work, "for-each-ref") == before
    version = vllm_version(opt)
    assert "9.9.9" not in version and lock.vllm.commit[:7] in version, version


@pytest.mark.parametrize(("deadline", "tries"), [("60", 3), ("0.4", 1)])
def test_a_remote_that_never_answers_is_tried_within_the_deadline_and_never_in_a_burst(
    monkeypatch: pytest.MonkeyPatch, deadline: str, tries: int
) -> None:
    """Three tries, 0.5 s then 1 s apart, while the deadline holds the pause; with less left than
    the next pause, no further try (before: sent at once, three tries in a burst at the deadline)."""
    from vllm_lock.errors import UnreachableError

    # each connection closed unanswered: git's "Empty reply from server", a failure like the network's
    listener = SilentListener(answer=lambda conn: conn.close())
    monkeypatch.setenv("VLLM_LOCK_GIT_PROBE_DEADLINE", deadline)
    url = f"http://127.0.0.1:{listener.port}/vllm.git"
    try:
        with pytest.raises(UnreachableError, match=f"repository {url} unreachable while resolving 'main'"):
            git_shell.resolve_ref(url, "main")
    finally:
        listener.close()
    assert listener.connections == tries


def test_ctrl_c_while_a_helper_thread_s_git_waits_on_a_silent_server_ends_at_once(
    world: TestWorld, tmp_path: Path
) -> None:
    """resolve asks for the external sources (git ls-remote) in a pool thread beside uv's compile;
    here a mirror sends those to a server that never answers. git leads a session of its own,
    which Ctrl-C does not reach: before, the interrupted resolve waited for that git until its
    deadline (and a second Ctrl-C left it running). Now Ctrl-C is taken as SIGTERM is: every tool
    of the process killed, the command ends with 130 at once, no git left."""
    silent = SilentListener()
    port = silent.port
    externals = world.external_url("cutlass").split("/nvidia/")[0] + "/"
    command = subprocess.Popen(
        [sys.executable, "-m", "vllm_lock.cli", "resolve", "--repo", world.repo_url, "--torch-index",
         world.torch_nightly_index, "--index", world.general_index, "--python", "3.11", "--target-device", "cpu",
         "--platform", "x86_64-manylinux_2_28", "--torch-date", world.latest_consistent_date.isoformat(),
         "--mirror", f"{externals}=http://127.0.0.1:{port}/", "-o", str(tmp_path / "x.lock.toml")],
        env=dict(os.environ, VLLM_LOCK_CACHE=str(tmp_path / "cache"), VLLM_LOCK_GIT_PROBE_DEADLINE="120"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=lambda: _signals_as_given(False))
    needle = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _processes_naming(needle) and time.monotonic() < deadline and command.poll() is None:
            time.sleep(0.05)
        assert _processes_naming(needle), command.communicate()
        time.sleep(0.5)  # the main thread past uv's compile, waiting on the pool thread
        command.send_signal(signal.SIGINT)
        started = time.monotonic()
        _, stderr = command.communicate(timeout=60)
        took = time.monotonic() - started
        time.sleep(0.2)
        assert _processes_naming(needle) == []
        assert command.returncode == 130, stderr
        assert took < 10, f"the interrupted resolve took {took:.1f} s to end"
        assert [line for line in stderr.splitlines() if line.startswith("error:")] == ["error: interrupted"]
    finally:
        for pid in _processes_naming(needle):
            os.kill(pid, signal.SIGKILL)
        command.kill()
        silent.close()
