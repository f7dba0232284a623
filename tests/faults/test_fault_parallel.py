"""Three installs at once into different --venv, sharing one EMPTY cache (git mirrors, the
content-addressed store, uv's cache), for several rounds: each process succeeds or fails with
one `error:` line, and a rerun of any that failed succeeds and verifies clean.
VLLM_LOCK_FAULT_ROUNDS sets the rounds (2 by default)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from install_support import CLI, cli, install_args, resolve_world_lock

from vllm_lock_testworld import TestWorld

pytestmark = pytest.mark.slow

ROUNDS = int(os.environ.get("VLLM_LOCK_FAULT_ROUNDS", "2"))
INSTALLS = 3


def test_parallel_installs_sharing_an_empty_cache(world: TestWorld, tmp_path: Path) -> None:
    _, lock = resolve_world_lock(world, tmp_path / "dev.lock.toml", tmp_path / "resolve-cache")
    outcomes = []
    for round_ in range(ROUNDS):
        cache = tmp_path / f"cache-{round_}"  # empty: every install races to create everything
        opts = [tmp_path / f"round-{round_}" / f"opt-{i}" for i in range(INSTALLS)]
        env = dict(os.environ, VLLM_LOCK_CACHE=str(cache))
        world.clear_requests()
        procs = [
            subprocess.Popen([*CLI, *install_args(lock, opt)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
            for opt in opts
        ]
        for opt, proc in zip(opts, procs, strict=True):
            _, stderr = proc.communicate(timeout=600)
            outcomes.append(proc.returncode)
            if proc.returncode != 0:
                assert "Traceback" not in stderr, stderr[-3000:]
                errors = [line for line in stderr.splitlines() if line.startswith("error:")]
                assert len(errors) == 1, stderr[-3000:]
                rerun = cli(*install_args(lock, opt), cache=cache)
                assert rerun.returncode == 0, f"the rerun after {errors[0]!r} failed:\n{rerun.stderr[-3000:]}"
            clean = cli("verify", str(lock), "--venv", str(opt / "vllm"), cache=cache)
            assert clean.returncode == 0, clean.stdout + clean.stderr
        wheel_gets = [path for method, path in world.requests if method == "GET" and path.endswith(".whl")]
        assert sorted(wheel_gets) == sorted(set(wheel_gets))  # one download per store entry, not one per install
    # with the locks in place nothing needs a rerun: every install of every round succeeds
    assert outcomes == [0] * (ROUNDS * INSTALLS)


def test_a_checkout_missing_objects_is_cloned_again(world: TestWorld, tmp_path: Path) -> None:
    """What a clone racing a fetch used to leave: a generation whose source misses objects, which
    failed every rerun. The unfinished generation's rerun now clones it again."""
    _, lock = resolve_world_lock(world, tmp_path / "dev.lock.toml", tmp_path / "cache")
    opt = tmp_path / "opt"
    assert cli(*install_args(lock, opt), cache=tmp_path / "cache").returncode == 0
    gen = Path(os.readlink(opt / "vllm")).parent
    (gen / "receipt.json").unlink()  # unfinished: the rerun runs every step again
    objects = gen / "src" / ".git" / "objects"
    for item in objects.iterdir():
        if item.name not in ("info", "pack"):
            for loose in item.iterdir():
                loose.unlink()
    for pack in (objects / "pack").iterdir():
        pack.unlink()
    (gen / "src" / ".git" / "HEAD").write_text("0" * 40 + "\n")  # and a wrong HEAD
    rerun = cli(*install_args(lock, opt), cache=tmp_path / "cache")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "cloning it again" in rerun.stderr
    clean = cli("verify", str(lock), "--venv", str(opt / "vllm"), cache=tmp_path / "cache")
    assert clean.returncode == 0, clean.stdout + clean.stderr
