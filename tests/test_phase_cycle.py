"""The whole phase cycle on a test world of its own (issue 4, section 5):

resolve dev on main with the newest nightly -> install -> test -> promote -> new commits on main
and a newer nightly -> update dev -> diff dev stable (both moves, rebuild needed) -> the installed
stable environment is still the old one, untouched.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vllm_lock import codec
from vllm_lock.actions.install import InstallRequest, install
from vllm_lock.cli import app
from vllm_lock.progress import QUIET
from vllm_lock.shell import lockfiles
from vllm_lock_testworld import TestWorld

pytestmark = pytest.mark.slow


@pytest.fixture
def own_world(tmp_path: Path) -> Iterator[TestWorld]:
    with TestWorld.create(tmp_path / "world") as w:
        yield w


def test_phase_cycle(own_world: TestWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = own_world
    locks = tmp_path / "locks"
    locks.mkdir()
    monkeypatch.setenv("VLLM_LOCK_LOCKS_DIR", str(locks))
    monkeypatch.setenv("VLLM_LOCK_CACHE", str(tmp_path / "cache"))
    venv, src = tmp_path / "opt" / "vllm", tmp_path / "opt" / "vllm_repo"
    runner = CliRunner()

    def cli(*args: str, code: int = 0) -> str:
        result = runner.invoke(app, list(args))
        assert result.exit_code == code, result.output
        return result.output

    # phase 1: dev follows main and the newest consistent nightly
    cli("resolve", "--repo", world.repo_url, "--torch-index", world.torch_nightly_index,
        "--index", world.general_index, "--python", "3.11", "--target-device", "cpu", "--name", "dev",
        "--platform", "x86_64-manylinux_2_28")
    dev, _ = lockfiles.read("dev")
    assert dev.vllm.ref == "main" and dev.torch.date == world.latest_consistent_date.isoformat()
    cli("install", "dev", "--venv", str(venv), "--src", str(src))
    installed_generation = os.readlink(venv)
    assert "passed; receipt" in cli("test", "dev", "--venv", str(venv))

    # phase 2: promote the tested dev lock
    out = cli("promote", "dev", "--to", "stable")
    assert "first stable lock" in out
    stable_bytes = (locks / "stable.lock.toml").read_bytes()
    stable, _ = lockfiles.read("stable")
    assert stable.phase == "stable" and stable.vllm.ref == dev.vllm.commit
    assert stable.provenance.promotion is not None
    assert stable.provenance.promotion.from_content_hash == codec.content_hash(dev)
    assert len(stable.provenance.promotion.test_receipts) == 1
    # the same build; only what `update` follows differs (stable follows the pinned commit and date)
    promoted_diff = cli("diff", "dev", "stable", code=1)
    assert promoted_diff.splitlines()[0].endswith(": different")
    assert "build identity unchanged" in promoted_diff
    assert "inputs.vllm.original.ref: main -> " + dev.vllm.commit in promoted_diff

    # upstream moves on
    new_commits = world.commit_to_main(3, message="[Kernel] upstream change")
    world.publish_nightly(dt.date(2026, 11, 20))

    out = cli("update", "dev")
    assert f"vllm main: {dev.vllm.short_commit} (" in out and f"-> {new_commits[-1][:9]} (" in out
    assert f"torch latest: {dev.torch.version} ({dev.torch.date}) -> 2.10.0.dev20261120+cu128 (2026-11-20)" in out

    # the diff shows both moves and says a rebuild is needed
    out = cli("diff", "dev", "stable", code=1)
    assert "stable is 3 commits behind dev" in out
    assert "[Kernel] upstream change" in out
    assert "2.10.0.dev20261120+cu128 (nightly 2026-11-20) -> " in out and "8 days older" in out
    assert "vLLM must be rebuilt" in out
    md = cli("diff", "stable", "dev", "--format", "markdown", code=1)
    assert "**Rebuild needed**" in md and "3 new commits from stable to dev" in md

    # the stable lock and the installed environment are untouched
    assert (locks / "stable.lock.toml").read_bytes() == stable_bytes
    assert os.readlink(venv) == installed_generation
    result = install(InstallRequest(lock="stable", venv=venv, src=src, cache=tmp_path / "cache"), QUIET)
    assert result.state == "unchanged"  # stable is exactly what is installed: nothing to rebuild
    assert os.readlink(venv) == installed_generation
    # and `update stable` moves nothing: its references are pinned
    assert "unchanged (nothing moved)" in cli("update", "stable")
    assert (locks / "stable.lock.toml").read_bytes() == stable_bytes
