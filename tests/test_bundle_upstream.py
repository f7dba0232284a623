"""Upstream deletion: after resolve and install, the nightly disappears from the index and the
vLLM repository (and the external sources') is gone; a reinstall into a new path succeeds from
the local store and mirrors alone, and a `store gc` that keeps the live lock keeps it possible."""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path

import pytest
from install_support import cli, install_args, resolve_world_lock, vllm_version

from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.world import NIGHTLY

pytestmark = pytest.mark.slow


def delete_nightly(world: TestWorld, filenames: set[str]) -> list[str]:
    """The nightly index forgets these files (page and bytes), as download.pytorch.org drops a
    nightly after ~60 days. Done on the world's in-memory index from here: the test world has
    no such method (and is not ours to change)."""
    store = world._store
    removed = []
    with store._lock:
        for files in store._projects[NIGHTLY].values():
            for filename in list(files):
                if urllib.parse.unquote(filename) in filenames:
                    entry = files.pop(filename)
                    store._files.pop(urllib.parse.unquote(entry.path), None)
                    removed.append(filename)
    return removed


def test_reinstall_after_the_nightly_and_the_repository_are_gone(tmp_path: Path) -> None:
    world = TestWorld.create(tmp_path / "world")
    try:
        cache = tmp_path / "cache"
        locks = tmp_path / "locks"
        locks.mkdir()
        lock, path = resolve_world_lock(world, locks / "dev.lock.toml", cache)
        first = cli(*install_args(path, tmp_path / "one"), cache=cache, timeout=600)
        assert first.returncode == 0, first.stderr[-3000:]

        torch_files = {w.plain_filename for p in lock.packages if p.source == "torch" for w in p.wheels}
        assert delete_nightly(world, torch_files)
        assert not torch_files & {urllib.parse.unquote(f) for f in world.filenames("nightly")}
        gone = tmp_path / "gone"
        gone.mkdir()
        for repos in (world.repo_path, world.external_root):
            repos.rename(gone / repos.name)

        # upstream really is gone: a fresh cache cannot install the lock any more
        fresh = cli(*install_args(path, tmp_path / "fresh"), cache=tmp_path / "fresh-cache", timeout=600)
        # (one line, exit 4: a 404 for a locked wheel was an internal error, exit 70, before)
        errors = [line for line in fresh.stderr.splitlines() if line.startswith("error:")]
        assert fresh.returncode == 4 and len(errors) == 1 and "no longer published" in errors[0], fresh.stderr[-2000:]

        # store gc with the lock live (and no generation named) keeps everything the reinstall needs
        gc = cli("store", "gc", "--venv", str(tmp_path / "elsewhere" / "vllm"), cache=cache,
                 env={"VLLM_LOCK_LOCKS_DIR": str(locks)})
        assert gc.returncode == 0, gc.stderr
        again = cli(*install_args(path, tmp_path / "two"), cache=cache, timeout=600)
        assert again.returncode == 0, again.stderr[-3000:]
        assert f"g{lock.vllm.commit[:9]}" in vllm_version(tmp_path / "two")
        clean = cli("verify", str(path), "--venv", str(tmp_path / "two" / "vllm"), cache=cache)
        assert clean.returncode == 0, clean.stdout + clean.stderr
        # a new generation built from the cache, not the first one switched to
        assert ": installed, vllm" in again.stdout
    finally:
        world.close()
        shutil.rmtree(tmp_path / "gone", ignore_errors=True)
