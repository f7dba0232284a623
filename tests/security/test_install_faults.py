"""install / rollback faults (issue 12 items 10-12, issue 13's error paths), each through the real
CLI on the test world: the bad input, exactly one `error:` line with its wording and exit code,
no traceback, and the running environment (both links, the venv behind them) untouched.

Read-only directories are read-only bind mounts (root ignores mode bits); a full disk is a small
tmpfs. Concurrency is event-based: a process is stopped (SIGSTOP) at a line of its own output."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from install_support import CLI, cli, resolve_world_lock

from vllm_lock.actions import install as install_action
from vllm_lock.build_identity import generation_id
from vllm_lock.errors import OutputError
from vllm_lock.generation import GenerationContainer
from vllm_lock.model import Lock
from vllm_lock.progress import QUIET
from vllm_lock.shell import generations
from vllm_lock_testworld import TestWorld

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="read-only and full filesystems need mount (root)"),
]


# ---------------------------------------------------------------- helpers


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """directory becomes a read-only bind mount of itself until the block ends."""
    subprocess.run(["mount", "--bind", str(directory), str(directory)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(directory)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)], check=True)
    try:
        yield
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def one_error(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with `code` and exactly one `error:` line holding every word."""
    assert result.returncode == code, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


class Links:
    """--venv and --src in two directories (so that each can be made read-only alone)."""

    def __init__(self, root: Path) -> None:
        self.venv = root / "env" / "vllm"
        self.src = root / "code" / "vllm_repo"
        self.generations = self.venv.with_name("vllm.generations")

    def args(self, lock: Path, *more: str) -> list[str]:
        return ["install", str(lock), "--venv", str(self.venv), "--src", str(self.src), *more]

    def state(self) -> tuple[str, str, str]:
        """What a running service sees: both links and the vLLM behind them."""
        version = subprocess.run([str(self.venv / "bin" / "vllm"), "--version"], capture_output=True, text=True)
        return os.readlink(self.venv), os.readlink(self.src), f"{version.returncode} {version.stdout.strip()}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class InstalledLinks:
    """The module's lock (and its file), cache, the installed links, and the temporary root."""

    lock: Lock
    path: Path
    cache: Path
    layout: Links
    root: Path


@pytest.fixture(scope="module")
def env(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> InstalledLinks:
    """A lock, its cache and an installed generation (editable, as the lock says) with links in two directories.
    The `--no-editable` install of the same lock is a second generation that tests build."""
    root = tmp_path_factory.mktemp("install-faults")
    cache = root / "cache"
    lock, path = resolve_world_lock(world, root / "dev.lock.toml", cache)
    layout = Links(root / "opt")
    first = cli(*layout.args(path), cache=cache)
    assert first.returncode == 0, first.stderr
    return InstalledLinks(lock=lock, path=path, cache=cache, layout=layout, root=root)


def _wheel_generation(env: InstalledLinks) -> Path:
    return env.layout.generations / (str(generation_id(env.lock, editable=False)))


def _no_wheel_generation(env: InstalledLinks) -> None:
    """The --no-editable generation gone (never the active one), so that installing it builds."""
    layout, gen = env.layout, _wheel_generation(env)
    assert not os.readlink(layout.venv).startswith(str(gen))
    shutil.rmtree(gen, ignore_errors=True)


def _start(args: list[str], cache: Path) -> subprocess.Popen[str]:
    """The CLI in its own process group (stopped and killed as a whole), output line by line."""
    full = dict(os.environ, VLLM_LOCK_CACHE=str(cache), PYTHONUNBUFFERED="1")
    return subprocess.Popen([*CLI, *args], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _stop_at(proc: subprocess.Popen[str], marker: str) -> list[str]:
    """Read proc's output until a line containing marker, then SIGSTOP its process group."""
    assert proc.stdout is not None
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if marker in line:
            os.killpg(proc.pid, signal.SIGSTOP)
            return seen
    raise AssertionError(f"exited ({proc.wait()}) before {marker!r}:\n{''.join(seen)[-3000:]}")


# ---------------------------------------------------------------- item 12: one line, not a traceback


def test_a_regular_file_as_the_parent_of_venv(env: InstalledLinks, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    venv = tmp_path / "file" / "vllm"
    result = cli("install", str(env.path), "--venv", str(venv), "--src", str(tmp_path / "src"), cache=env.cache)
    one_error(result, 9, f"{tmp_path / 'file'} (--venv's directory) is not a directory")
    assert (tmp_path / "file").read_text() == "not a directory"
    assert not (tmp_path / "src").exists()


def test_a_read_only_venv_directory(env: InstalledLinks) -> None:
    layout = env.layout
    _no_wheel_generation(env)
    before = layout.state()
    with read_only(layout.venv.parent):
        result = cli(*layout.args(env.path, "--no-editable"), cache=env.cache)
    one_error(result, 9, f"cannot write in {layout.venv.parent} (--venv's directory)", "Read-only file system")
    assert "==> " not in result.stderr  # refused before any step: no build ran for nothing
    assert layout.state() == before
    assert not _wheel_generation(env).exists()


def test_a_read_only_src_directory_is_refused_before_the_build(env: InstalledLinks) -> None:
    layout = env.layout
    _no_wheel_generation(env)
    before = layout.state()
    with read_only(layout.src.parent):
        result = cli(*layout.args(env.path, "--no-editable"), cache=env.cache)
    one_error(result, 9, f"cannot write in {layout.src.parent} (--src's directory)", "Read-only file system")
    assert "==> " not in result.stderr
    assert layout.state() == before
    assert not _wheel_generation(env).exists()


def test_a_read_only_cache_says_so(env: InstalledLinks, tmp_path: Path) -> None:
    # Once reported as "Python 3.11 is not available": `uv python find` could not create its cache.
    layout = env.layout
    _no_wheel_generation(env)
    before = layout.state()
    cache = tmp_path / "ro-cache"
    cache.mkdir()
    subprocess.run(["mount", "--bind", str(env.cache), str(cache)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(cache)], check=True)
        result = cli(*layout.args(env.path, "--no-editable"), cache=cache)
    finally:
        subprocess.run(["umount", str(cache)], check=True)
    line = one_error(result, 9, f"cannot write in {cache} (the cache, VLLM_LOCK_CACHE)", "Read-only file system")
    assert "Python" not in line
    assert "==> environment" not in result.stderr
    assert layout.state() == before


def test_uv_failing_to_find_python_is_not_a_missing_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_lock.errors import PreflightError
    from vllm_lock.shell import uv as uv_shell

    with small_tmpfs(tmp_path / "cache", "1m"), read_only(tmp_path / "cache"), monkeypatch.context() as patch:
        patch.setenv("PATH", str(tmp_path / "empty-path"))  # no python3.11 on PATH: uv is asked
        with pytest.raises(PreflightError, match=r"uv python find 3\.11. failed: .*Read-only file system"):
            uv_shell.find_python("3.11", tmp_path / "cache")
    assert uv_shell.find_python("3.99", tmp_path / "other-cache") is None  # uv found none: not an error


def test_a_full_cache_disk(env: InstalledLinks, tmp_path: Path) -> None:
    layout = env.layout
    _no_wheel_generation(env)
    before = layout.state()
    cache = tmp_path / "small-cache"
    with small_tmpfs(cache, "256k"):
        subprocess.run(["dd", "if=/dev/zero", f"of={cache / 'filler'}", "bs=4k"], capture_output=True)  # ENOSPC ends it
        result = cli(*layout.args(env.path, "--no-editable"), cache=cache)
    line = one_error(result, 7, f"not enough free disk for the cache {cache}: 0.0 MiB free",
                     "MiB of wheels to download")
    assert "Python 3.11 is not available" not in line  # the full cache is said as such
    assert "==> environment" not in result.stderr
    assert layout.state() == before


# ---------------------------------------------------------------- item 11: the switch, both links or neither


def test_venv_and_src_that_would_overlap_are_refused(env: InstalledLinks, tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    same = cli("install", str(env.path), "--venv", str(tmp_path / "real" / "x"),
               "--src", str(tmp_path / "alias" / "x"), cache=env.cache)
    one_error(same, 2, "--venv and --src are the same path", str(tmp_path / "real" / "x"))
    inside = cli("install", str(env.path), "--venv", str(tmp_path / "opt" / "vllm"),
                 "--src", str(tmp_path / "opt" / "vllm" / "src"), cache=env.cache)
    one_error(inside, 2, "--src", "is inside --venv")
    in_generations = cli("install", str(env.path), "--venv", str(tmp_path / "opt" / "vllm"),
                         "--src", str(tmp_path / "opt" / "vllm.generations" / "src"), cache=env.cache)
    one_error(in_generations, 2, "is inside the generations directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias", "real"]  # nothing created
    assert not any((tmp_path / "real").iterdir())
    layout = env.layout
    before = layout.state()
    live = cli("install", str(env.path), "--venv", str(layout.venv), "--src", str(layout.venv), cache=env.cache)
    one_error(live, 2, f"--venv and --src are the same path ({layout.venv})")
    assert layout.state() == before


def test_src_directory_turning_read_only_mid_install_switches_neither_link(env: InstalledLinks) -> None:
    layout = env.layout
    _no_wheel_generation(env)
    before = layout.state()
    proc = _start(layout.args(env.path, "--no-editable"), env.cache)
    try:
        _stop_at(proc, "==> build")
        with read_only(layout.src.parent):
            os.killpg(proc.pid, signal.SIGCONT)
            out, _ = proc.communicate(timeout=300)
        result = subprocess.CompletedProcess(proc.args, proc.returncode, "", out)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    one_error(result, 9, f"cannot switch {layout.src} (--src)", "Read-only file system", "nothing was switched")
    assert layout.state() == before  # --venv was not switched alone
    # the generation itself is complete: a rerun only switches, and both links move
    rerun = cli(*layout.args(env.path, "--no-editable"), cache=env.cache)
    assert rerun.returncode == 0 and "switched" in rerun.stdout, rerun.stderr[-3000:]
    gen = _wheel_generation(env)
    assert (os.readlink(layout.venv), os.readlink(layout.src)) == (str(gen / "venv"), str(gen / "src"))
    back = cli(*layout.args(env.path), cache=env.cache)
    assert back.returncode == 0 and "switched" in back.stdout, back.stderr[-3000:]
    assert layout.state() == before


def test_a_crash_between_the_two_renames_is_drift_and_a_rerun_repairs_it(env: InstalledLinks) -> None:
    layout = env.layout
    # two complete generations; the editable one active
    wheel = cli(*layout.args(env.path, "--no-editable"), cache=env.cache)
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    editable = cli(*layout.args(env.path), cache=env.cache)
    assert editable.returncode == 0, editable.stderr[-3000:]
    before = layout.state()
    clean = cli("verify", str(env.path), "--venv", str(layout.venv), cache=env.cache)
    assert clean.returncode == 0, clean.stdout
    # a switch to the wheel generation killed after its first rename: --venv moved, --src did not
    gen = _wheel_generation(env)
    tmp = layout.venv.with_name(".vllm.crash")
    tmp.symlink_to(gen / "venv")
    os.replace(tmp, layout.venv)
    drift = cli("verify", str(env.path), "--venv", str(layout.venv), cache=env.cache)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert f"{layout.src} (--src) points to {before[1]}, not to {gen / 'src'}: a switch did not finish" in drift.stdout
    rerun = cli(*layout.args(env.path, "--no-editable"), cache=env.cache)
    assert rerun.returncode == 0 and "switched" in rerun.stdout, rerun.stderr[-3000:]
    assert os.readlink(layout.src) == str(gen / "src")
    clean = cli("verify", str(env.path), "--venv", str(layout.venv), cache=env.cache)
    assert clean.returncode == 0, clean.stdout
    back = cli(*layout.args(env.path), cache=env.cache)
    assert back.returncode == 0, back.stderr[-3000:]
    assert layout.state() == before


# ---------------------------------------------------------------- item 10 and issue 13: one install at a time


def test_a_second_install_while_one_runs(env: InstalledLinks) -> None:
    layout = env.layout
    _no_wheel_generation(env)
    before = layout.state()
    first = _start(layout.args(env.path, "--no-editable"), env.cache)
    try:
        _stop_at(first, "installing lock")  # printed once the install lock is held
        second = cli(*layout.args(env.path, "--no-editable"), cache=env.cache)
        one_error(second, 6,
                  f"another vllm-lock install or rollback (pid {first.pid}) is running on {layout.generations}")
        same = cli(*layout.args(env.path), cache=env.cache)  # even the active lock's no-op waits its turn
        one_error(same, 6, "another vllm-lock install or rollback")
        back = cli("rollback", "--venv", str(layout.venv), "--src", str(layout.src), cache=env.cache)
        one_error(back, 6, "another vllm-lock install or rollback")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    assert layout.state() == before


def test_the_receipt_is_read_after_the_install_lock_is_taken(env: InstalledLinks, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """An install that waited while another one completed the same generation finds it complete
    (it does not rebuild it in place: `uv venv --clear` on what is now the live environment)."""
    opt = Links(tmp_path / "opt")
    real_exclusive = generations.exclusive
    others: list[subprocess.CompletedProcess[str]] = []

    @contextlib.contextmanager
    def another_install_finishes_first(directory: GenerationContainer) -> Iterator[None]:
        others.append(cli(*opt.args(env.path), cache=env.cache))
        with real_exclusive(directory):
            yield

    monkeypatch.setattr(generations, "exclusive", another_install_finishes_first)
    request = install_action.InstallRequest(lock=str(env.path), venv=opt.venv, src=opt.src, cache=env.cache)
    result = install_action.install(request, QUIET)
    assert others and others[0].returncode == 0, others[0].stderr[-3000:] if others else "hook not called"
    assert result.state == "unchanged"
    assert len(list((result.generation / "logs").glob("install-*.log"))) == 1  # one build: the other's


def test_rollback_reads_the_history_after_taking_the_lock(env: InstalledLinks, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    layout = env.layout
    wheel = cli(*layout.args(env.path, "--no-editable"), cache=env.cache)
    assert wheel.returncode == 0, wheel.stderr[-3000:]
    editable = cli(*layout.args(env.path), cache=env.cache)
    assert editable.returncode == 0, editable.stderr[-3000:]
    active = Path(os.readlink(layout.venv)).parent
    real_exclusive = generations.exclusive

    @contextlib.contextmanager
    def another_rollback_first(directory: GenerationContainer) -> Iterator[None]:
        other = cli("rollback", "--venv", str(layout.venv), "--src", str(layout.src), cache=env.cache)
        assert other.returncode == 0, other.stderr
        with real_exclusive(directory):
            yield

    monkeypatch.setattr(generations, "exclusive", another_rollback_first)
    target = install_action.rollback(layout.venv, layout.src, QUIET)
    # two rollbacks, one after the other: back to where we started (the history says so)
    assert target == active
    assert os.readlink(layout.venv) == str(active / "venv") and os.readlink(layout.src) == str(active / "src")


# ---------------------------------------------------------------- issue 13: error paths


@pytest.mark.parametrize(
    ("args", "environ", "words"),
    [
        (["--max-jobs", "0"], {}, "--max-jobs must be a positive integer, got '0'"),
        (["--max-jobs=-4"], {}, "--max-jobs must be a positive integer, got '-4'"),
        (["--max-jobs", "many"], {}, "--max-jobs must be a positive integer, got 'many'"),
        ([], {"MAX_JOBS": "8x"}, "$MAX_JOBS must be a positive integer, got '8x'"),
        ([], {"MAX_JOBS": "0"}, "$MAX_JOBS must be a positive integer, got '0'"),
        (["--nvcc-threads", "two"], {}, "--nvcc-threads must be a positive integer, got 'two'"),
        ([], {"NVCC_THREADS": "-1"}, "$NVCC_THREADS must be a positive integer, got '-1'"),
    ],
)
def test_a_bad_max_jobs(env: InstalledLinks, args: list[str], environ: dict[str, str], words: str) -> None:
    layout = env.layout
    before = layout.state()
    result = cli(*layout.args(env.path, "--no-editable", *args), cache=env.cache, env=environ)
    one_error(result, 2, words)
    assert "==> " not in result.stderr
    assert layout.state() == before


def test_a_good_max_jobs_from_the_environment_is_used(env: InstalledLinks) -> None:
    layout = env.layout
    result = cli(*layout.args(env.path), cache=env.cache, env={"MAX_JOBS": "3"})
    assert result.returncode == 0, result.stderr  # the active lock: nothing to do, but the value was accepted


@pytest.mark.parametrize("item", ["NOEQUALS", "=value", ""])
def test_a_malformed_build_env_at_resolve(world: TestWorld, tmp_path: Path, item: str) -> None:
    out = tmp_path / "x.lock.toml"
    result = cli("resolve", "--repo", world.repo_url, "--torch-index", world.torch_nightly_index,
                 "--index", world.general_index, "--python", "3.11", "--target-device", "cpu",
                 "--build-env", "CMAKE_BUILD_TYPE=Release", "--build-env", item, "-o", str(out),
                 cache=tmp_path / "cache")
    one_error(result, 2, f"--build-env {item!r} is not KEY=VALUE")
    assert not out.exists()


def test_rollback_with_nothing_to_roll_back_to(env: InstalledLinks, tmp_path: Path) -> None:
    never = cli("rollback", "--venv", str(tmp_path / "vllm"), "--src", str(tmp_path / "vllm_repo"), cache=env.cache)
    one_error(never, 2, f"{tmp_path / 'vllm'} has never been installed", "nothing to roll back")
    assert list(tmp_path.iterdir()) == []  # not even a generations directory

    # one generation only: nothing earlier in the history
    opt = Links(tmp_path / "single")
    installed = cli(*opt.args(env.path), cache=env.cache)
    assert installed.returncode == 0, installed.stderr[-3000:]
    before = opt.state()
    once = cli("rollback", "--venv", str(opt.venv), "--src", str(opt.src), cache=env.cache)
    one_error(once, 2, f"no earlier complete generation in {opt.generations} to roll back to")
    assert opt.state() == before


@pytest.mark.parametrize(("size", "words"), [("2m", "uv could not write"), ("4k", "cannot write")])
def test_a_disk_filling_up_while_the_generation_is_written(env: InstalledLinks, tmp_path: Path, size: str,
                                                           words: str) -> None:
    # Preflight's free-disk estimate waived (VLLM_LOCK_MIN_FREE_DISK=0): the disk fills mid-install,
    # in one of uv's writes (2m) or one of ours (48k).
    opt = Links(tmp_path / "full")
    with small_tmpfs(tmp_path / "full", size):
        result = cli(*opt.args(env.path), cache=env.cache, env={"VLLM_LOCK_MIN_FREE_DISK": "0"})
        assert not opt.venv.is_symlink() and not opt.src.is_symlink()  # nothing switched
    one_error(result, 9, words, "No space left on device")


def test_a_failing_second_rename_puts_the_first_link_back(tmp_path: Path) -> None:
    container = GenerationContainer(venv_link=tmp_path / "vllm", src_link=tmp_path / "vllm_repo")
    old, new = container.generation("old"), container.generation("new")
    for gen in (old, new):
        gen.venv.mkdir(parents=True)
        gen.src.mkdir()
    generations.switch(container, old)
    # --src replaced by a real directory after preflight: the temporary link can be made, the
    # rename onto a non-empty directory fails
    container.src_link.unlink()
    (container.src_link / "keep").mkdir(parents=True)
    with pytest.raises(OutputError, match=r"vllm_repo \(--src\): Is a directory; .*vllm was switched back"):
        generations.switch(container, new)
    assert os.readlink(container.venv_link) == str(old.venv)
    assert generations.read_profile(container) == ["old"]
    # no temporary links left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vllm", "vllm.generations", "vllm_repo"]


def test_a_damaged_generation_is_unfinished_while_it_is_rebuilt(env: InstalledLinks, tmp_path: Path) -> None:
    """Its old receipt goes first: a rebuild killed after the build but before verify is resumed,
    not taken for a verified generation."""
    opt = Links(tmp_path / "opt")
    assert cli(*opt.args(env.path), cache=env.cache).returncode == 0
    (opt.venv / "bin" / "vllm").unlink()
    proc = _start(opt.args(env.path), env.cache)
    try:
        _stop_at(proc, "==> verify")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert (opt.venv / "bin" / "vllm").exists()  # built, not verified
    drift = cli("verify", str(env.path), "--venv", str(opt.venv), cache=env.cache)
    assert drift.returncode == 1 and "no complete receipt" in drift.stdout, drift.stdout
    rerun = cli(*opt.args(env.path), cache=env.cache)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming an unfinished generation" in rerun.stderr and "nothing to do" not in rerun.stderr
