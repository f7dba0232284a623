"""The source store end to end on the test world: a substituted non-editable install links its
generation's src to <cache>/sources/<key>, a read-only stripped tree made once and reused (real
git, counted through a wrapper on PATH; real uv; a real signed file:// binary cache), while a build
and an editable substitution keep a checkout of their own. The installs and gc run without root's
power over file modes (setpriv drops CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER), so a
read-only path is read-only to them as to any user."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from install_support import CLI, cli, install_args, resolve_world_lock, vllm_version, write_variant

from vllm_lock import source_store as source_rules
from vllm_lock.generation import Generation
from vllm_lock.model import Lock
from vllm_lock_testworld import TestWorld

pytestmark = pytest.mark.slow

# root without the capabilities that let it write read-only files and directories
NO_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner", "--inh-caps=-all"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Primed:
    """A non-editable lock built once (install A) and pushed, signed, to a file:// binary cache;
    the environment of the installs after it (a git that logs its argv first on PATH)."""

    root: Path
    lock: Lock
    path: Path
    public: str
    url: str
    env: dict[str, str]
    git_log: Path


@pytest.fixture(scope="module")
def primed(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Primed]:
    root = tmp_path_factory.mktemp("source-store")
    lock, path = resolve_world_lock(world, root / "dev.lock.toml", root / "cache-a", editable=False)
    key = root / "store.secret"
    made = cli("key", "generate", "--name", "store-1", "-o", str(key), cache=root / "cache-a")
    assert made.returncode == 0, made.stderr
    url = f"file://{root / 'binary-cache'}"
    built = cli(*install_args(path, root / "opt-a"), "--push", url, "--cache-signing-key", str(key),
                cache=root / "cache-a")
    assert built.returncode == 0, built.stderr[-3000:]
    bin_dir, git_log = root / "bin", root / "git.log"
    bin_dir.mkdir()
    real_git = shutil.which("git")
    assert real_git is not None
    (bin_dir / "git").write_text(f'#!/bin/sh\nprintf "%s\\n" "$*" >> {git_log}\nexec {real_git} "$@"\n')
    (bin_dir / "git").chmod(0o755)
    git_log.touch()
    yield Primed(root=root, lock=lock, path=path, public=made.stdout.strip(), url=url,
                 env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, git_log=git_log)


def as_user(*args: str, cache: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, VLLM_LOCK_CACHE=str(cache), **(env or {}))
    prefix = NO_DAC if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *CLI, *args], capture_output=True, text=True, env=full, timeout=300)


def substitute(primed: Primed, opt: Path, cache: Path, lock: Path | None = None) -> subprocess.CompletedProcess[str]:
    return as_user(*install_args(lock or primed.path, opt), "--cache", primed.url, "--trusted-cache-key",
                   primed.public, "--substitute-only", cache=cache, env=primed.env)


def clones(primed: Primed) -> int:
    return sum(1 for line in primed.git_log.read_text().splitlines() if " clone " in f" {line} ")


def store_path(primed: Primed, cache: Path) -> Path:
    return cache / "sources" / source_rules.source_key(primed.lock)


def generation_src(opt: Path) -> Path:
    return Path(os.readlink(opt / "vllm")).parent / "src"


def remove_by_hand(path: Path) -> None:
    """What the error message tells the user to do."""
    subprocess.run(["sh", "-c", f"chmod -R u+w {path} && rm -rf {path}"], check=True)


def tree_bytes(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _, names in os.walk(path):
        for name in names:
            files, size = files + 1, size + os.lstat(os.path.join(root, name)).st_size
    return files, size


def test_a_substituted_install_links_a_read_only_store_path_and_the_next_one_reuses_it(
    primed: Primed, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    clones_before = clones(primed)
    first = substitute(primed, tmp_path / "opt-1", cache)
    assert first.returncode == 0, first.stderr[-3000:]
    stored = store_path(primed, cache)
    assert f"made the stripped source {stored} (read-only, shared)" in first.stderr
    assert "==> strip" not in first.stderr and "==> build" not in first.stderr
    assert "==> external sources" not in first.stderr  # nothing is built: no CMake trees to stage
    assert clones(primed) > clones_before  # it was made: cloned from the mirror (the wrapper sees git)
    src = generation_src(tmp_path / "opt-1")
    assert src.is_symlink() and Path(os.readlink(src)) == stored
    assert Path(os.readlink(tmp_path / "opt-1" / "vllm_repo")) == src  # --src -> the generation's link
    # read-only: every directory 0555, every file 0444 (0555 where executable)
    for root, dirs, names in os.walk(stored):
        for name in dirs:
            mode = os.lstat(os.path.join(root, name)).st_mode
            assert stat.S_ISLNK(mode) or stat.S_IMODE(mode) == 0o555, os.path.join(root, name)
        for name in names:
            mode = os.lstat(os.path.join(root, name)).st_mode
            assert stat.S_ISLNK(mode) or stat.S_IMODE(mode) in (0o444, 0o555), os.path.join(root, name)
    assert stat.S_IMODE(stored.stat().st_mode) == 0o555
    for patched in primed.lock.layout.patched_files:  # stripped
        assert (stored / patched.path).is_file()
    assert f"g{primed.lock.vllm.commit[:9]}" in vllm_version(tmp_path / "opt-1")
    assert "==> verify" in first.stderr
    assert json.loads((src.parent / "receipt.json").read_text())["source"] == "store"
    clean = as_user("verify", str(primed.path), "--venv", str(tmp_path / "opt-1" / "vllm"), cache=cache)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    inode, clones_then = stored.stat().st_ino, clones(primed)
    second = substitute(primed, tmp_path / "opt-2", cache)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"reused the stripped source {stored} (read-only, shared)" in second.stderr
    log = next((generation_src(tmp_path / "opt-2").parent / "logs").glob("install-*.log")).read_text()
    assert f"reused the stripped source {stored}" in log
    assert stored.stat().st_ino == inode  # not made again
    assert clones(primed) == clones_then  # no git clone
    assert Path(os.readlink(generation_src(tmp_path / "opt-2"))) == stored
    clean = as_user("verify", str(primed.path), "--venv", str(tmp_path / "opt-2" / "vllm"), cache=cache)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_a_build_and_an_editable_substitution_keep_a_writable_checkout_of_their_own(
    primed: Primed, tmp_path: Path
) -> None:
    built = generation_src(primed.root / "opt-a")
    assert built.is_dir() and not built.is_symlink()
    assert json.loads((built.parent / "receipt.json").read_text())["source"] == "checkout"
    assert os.stat(built / "setup.py").st_mode & stat.S_IWUSR
    editable = write_variant(primed.lock, tmp_path / "editable.lock.toml",
                             build=dataclasses.replace(primed.lock.build, editable=True))
    result = substitute(primed, tmp_path / "opt", tmp_path / "cache", lock=editable)
    assert result.returncode == 0, result.stderr[-3000:]
    src = generation_src(tmp_path / "opt")
    assert src.is_dir() and not src.is_symlink()
    assert "==> strip" in result.stderr and "stripped source" not in result.stderr
    assert list((src / "vllm").glob("_C*.so"))  # the compiled modules written into its own tree
    assert json.loads((src.parent / "receipt.json").read_text())["source"] == "checkout"
    assert not (tmp_path / "cache" / "sources").exists()


def test_two_installs_at_once_share_one_store_path(primed: Primed, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    argvs = [[*(NO_DAC if os.geteuid() == 0 else []), *CLI, *install_args(primed.path, tmp_path / name), "--cache",
              primed.url, "--trusted-cache-key", primed.public] for name in ("opt-1", "opt-2")]
    env = dict(os.environ, VLLM_LOCK_CACHE=str(cache), **primed.env)
    running = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for argv in argvs]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in running]
    for proc in running:
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    assert [code for code, _ in results] == [0, 0], [err[-2000:] for _, err in results]
    stored = store_path(primed, cache)
    said = sorted("made" if "made the stripped source" in err else "reused" for _, err in results)
    assert said == ["made", "reused"]
    assert [Path(os.readlink(generation_src(tmp_path / n))) for n in ("opt-1", "opt-2")] == [stored, stored]
    assert [p.name for p in (cache / "sources").iterdir()] == [stored.name]  # no partial, no second copy


def test_a_tampered_store_path_is_refused_in_one_line(primed: Primed, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert substitute(primed, tmp_path / "opt-1", cache).returncode == 0
    stored = store_path(primed, cache)
    patched = sorted(primed.lock.layout.patched_files, key=lambda f: f.path)[0].path
    target = stored / patched
    target.chmod(0o644)  # as root, the way a careless hand would
    with target.open("a") as handle:
        handle.write("torch==9.9.9\n")
    result = substitute(primed, tmp_path / "opt-2", cache)
    assert result.returncode == 8, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [result.stderr.splitlines()[-1]] and len(errors) == 1
    assert f"the source store path {stored} was altered: {patched} has sha256 " in errors[0]
    assert f"delete it (chmod -R u+w {stored} && rm -rf {stored}) and rerun install" in errors[0]
    assert "Traceback" not in result.stderr and "==> build" not in result.stderr
    assert not os.path.lexists(tmp_path / "opt-2" / "vllm")  # nothing switched
    assert Path(os.readlink(generation_src(tmp_path / "opt-1"))) == stored  # the other install untouched

    remove_by_hand(stored)  # the fix the line names
    again = substitute(primed, tmp_path / "opt-2", cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"made the stripped source {stored}" in again.stderr


def test_a_partial_store_path_left_by_a_killed_run_is_removed_and_the_path_made_again(
    primed: Primed, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    assert substitute(primed, tmp_path / "opt-1", cache).returncode == 0
    stored = store_path(primed, cache)
    # killed after its tree was made read-only, before the rename: a complete tree (with ignored
    # build debris no store path may hold) under the .partial name, and no store path
    partial = stored.with_name(source_rules.partial_name(stored.name))
    subprocess.run(["cp", "-a", str(stored), str(partial)], check=True)
    (partial / "vllm").chmod(0o755)
    (partial / "vllm" / "_C.debris.so").write_bytes(b"\x7fELF")
    (partial / "vllm").chmod(0o555)
    remove_by_hand(stored)
    result = substitute(primed, tmp_path / "opt-2", cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "removed the unfinished store path an interrupted install left" in result.stderr
    assert f"made the stripped source {stored}" in result.stderr
    assert not os.path.lexists(partial) and stored.is_dir()
    assert not (stored / "vllm" / "_C.debris.so").exists()
    assert sorted(p.name for p in (cache / "sources").iterdir()) == [stored.name]


def _age(root: Path, seconds: float) -> None:
    import time

    then = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (then, then), follow_symlinks=False)


def test_gc_keeps_a_linked_source_path_and_frees_an_unlinked_one(primed: Primed, tmp_path: Path) -> None:
    cache, locks = tmp_path / "cache", tmp_path / "locks"
    locks.mkdir()
    shutil.copy(primed.path, locks / "dev.lock.toml")
    opt = tmp_path / "opt"
    assert substitute(primed, opt, cache).returncode == 0
    stored = store_path(primed, cache)
    dead = stored.with_name("f" * 64)  # another commit's tree that no generation links to any more
    subprocess.run(["cp", "-a", str(stored), str(dead)], check=True)
    for folder in ("cas", "git", "sources"):
        _age(cache / folder, 3600)
    files, size = tree_bytes(dead)
    env = {"VLLM_LOCK_LOCKS_DIR": str(locks)}

    gc = as_user("store", "gc", "--venv", str(opt / "vllm"), cache=cache, env=env)
    assert gc.returncode == 0, gc.stderr
    assert f"    deleted sources/{dead.name} ({size} bytes)" in gc.stderr.splitlines()
    assert gc.stdout.startswith(f"freed {files} files, {size} bytes "), gc.stdout
    assert "0 store entries, 0 mirrors, 1 source paths; kept " in gc.stdout and "and 1 source paths (" in gc.stdout
    assert not os.path.lexists(dead) and stored.is_dir()
    clean = as_user("verify", str(primed.path), "--venv", str(opt / "vllm"), cache=cache)
    assert clean.returncode == 0, clean.stdout + clean.stderr

    # its generation gone, nothing links to it: freed
    files, size = tree_bytes(stored)
    shutil.rmtree(opt)
    gc = as_user("store", "gc", "--venv", str(opt / "vllm"), cache=cache, env=env)
    assert gc.returncode == 0, gc.stderr
    assert f"    deleted sources/{stored.name} ({size} bytes)" in gc.stderr.splitlines()
    assert not os.path.lexists(stored)


def test_a_dangling_source_link_fails_verify_and_a_rerun_of_install_repairs_it(primed: Primed, tmp_path: Path) -> None:
    cache, opt = tmp_path / "cache", tmp_path / "opt"
    assert substitute(primed, opt, cache).returncode == 0
    stored = store_path(primed, cache)
    remove_by_hand(stored)
    src = generation_src(opt)
    drift = as_user("verify", str(primed.path), "--venv", str(opt / "vllm"), cache=cache)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert f"source checkout {src} links to {stored}, which is gone: rerun install to make it again" in drift.stdout

    again = substitute(primed, opt, cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{src} is gone: installing generation {src.parent.name} again" in again.stderr
    assert f"made the stripped source {stored}" in again.stderr
    assert stored.is_dir() and generation_src(opt) == src
    clean = as_user("verify", str(primed.path), "--venv", str(opt / "vllm"), cache=cache)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_a_build_in_a_generation_a_substitution_linked_checks_out_its_own_and_leaves_the_store_alone(
    primed: Primed, tmp_path: Path
) -> None:
    cache, opt = tmp_path / "cache", tmp_path / "opt"
    assert substitute(primed, opt, cache).returncode == 0
    stored = store_path(primed, cache)
    src = generation_src(opt)
    (src.parent / "venv" / "bin" / "vllm").unlink()  # damaged: the next install redoes the generation
    # as plain root, whose writes a read-only mode does not stop: only the code keeps it off the store
    rebuilt = cli(*install_args(primed.path, opt), cache=cache, env=primed.env)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert "==> build" in rebuilt.stderr and "==> strip" in rebuilt.stderr
    assert src.is_dir() and not src.is_symlink()
    for patched in primed.lock.layout.patched_files:
        assert hashlib.sha256((stored / patched.path).read_bytes()).hexdigest() == patched.sha256_after
    assert stat.S_IMODE(stored.stat().st_mode) == 0o555
    assert not list(stored.rglob("*.so"))  # nothing built into it


def test_a_substitution_in_a_generation_a_build_checked_out_replaces_its_checkout_with_the_link(
    primed: Primed, tmp_path: Path
) -> None:
    cache, opt = tmp_path / "cache", tmp_path / "opt"
    built = as_user(*install_args(primed.path, opt), cache=cache, env=primed.env)
    assert built.returncode == 0, built.stderr[-3000:]
    src = generation_src(opt)
    assert src.is_dir() and not src.is_symlink()
    (src.parent / "venv" / "bin" / "vllm").unlink()  # damaged: the next install redoes the generation
    result = substitute(primed, opt, cache)
    assert result.returncode == 0, result.stderr[-3000:]
    assert src.is_symlink() and Path(os.readlink(src)) == store_path(primed, cache)
    clean = as_user("verify", str(primed.path), "--venv", str(opt / "vllm"), cache=cache)
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_a_built_generation_with_a_linked_source_still_has_its_external_sources_checked(primed: Primed) -> None:
    """Only a non-editable substitution (its receipt says so) is spared the external sources'
    stamps; a built generation whose src someone made a link keeps that check."""
    src = generation_src(primed.root / "opt-a")
    generation = Generation(root=src.parent)
    assert primed.lock.external_sources
    source = primed.lock.external_sources[0]
    stamp = generation.external_stamp(source.name)
    moved, hidden = src.with_name("src-moved"), stamp.with_name(stamp.name + ".hidden")
    os.rename(src, moved)
    src.symlink_to(moved)
    os.rename(stamp, hidden)
    try:
        drift = cli("verify", str(primed.path), "--venv", str(primed.root / "opt-a" / "vllm"),
                    cache=primed.root / "cache-a")
        assert drift.returncode == 1, drift.stdout + drift.stderr
        assert f"external source {source.name}: staged nothing" in drift.stdout
    finally:
        os.rename(hidden, stamp)
        src.unlink()
        os.rename(moved, src)
    clean = cli("verify", str(primed.path), "--venv", str(primed.root / "opt-a" / "vllm"),
                cache=primed.root / "cache-a")
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_a_reused_path_checks_each_lock_against_the_rust_facts_kept_when_it_was_made(
    primed: Primed, tmp_path: Path
) -> None:
    """Reading the tree's Rust frontend again costs ~0.1 s on vLLM: a reuse checks the lock against
    the facts detect found when the path was made (kept in its .git). A memo that claims another
    frontend is what the lock is then checked against; one that does not read is passed over."""
    from vllm_lock import rust as rust_rules
    from vllm_lock.shell import source_store as source_shell

    cache = tmp_path / "cache"
    assert substitute(primed, tmp_path / "opt-1", cache).returncode == 0
    stored = store_path(primed, cache)
    memo = stored / source_shell.RUST_FACTS
    kept = source_shell.read_rust_facts(stored)
    assert kept is not None and stat.S_IMODE(memo.stat().st_mode) == 0o444
    claimed = rust_rules.RustFacts(toolchain_file="rust-toolchain.toml", channel="1.1", cargo_lock="Cargo.lock",
                                   cargo_lock_sha256="0" * 64, crates=(), git_sources=(), artifacts=())
    memo.parent.chmod(0o755)
    memo.chmod(0o644)
    memo.write_text(rust_rules.facts_to_json(claimed))
    refused = substitute(primed, tmp_path / "opt-2", cache)
    assert refused.returncode == 8, refused.stderr[-3000:]
    assert refused.stderr.splitlines()[-1].startswith("error: rust: ")
    assert not os.path.lexists(tmp_path / "opt-2" / "vllm")

    memo.write_text("{not json")  # unreadable: the tree is read again, as for a path made before memos
    again = substitute(primed, tmp_path / "opt-2", cache)
    assert again.returncode == 0, again.stderr[-3000:]
    assert Path(os.readlink(generation_src(tmp_path / "opt-2"))) == stored
