"""update (only floating inputs move) and the diff command, on a test world of their own."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from sample_lock import C1, C2, make_lock
from typer.testing import CliRunner

from vllm_lock.actions import update as update_action
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.cli import app
from vllm_lock.model import ExternalSource
from vllm_lock.progress import QUIET
from vllm_lock.shell import lockfiles
from vllm_lock_testworld import TestWorld

# ---------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("ref", "requested", "channel", "expected"),
    [
        ("main", "latest", "nightly", {"vllm": True, "torch": True}),
        (C1, "latest", "nightly", {"vllm": False, "torch": True}),
        ("main", "2026-11-05", "nightly", {"vllm": True, "torch": False}),
        ("v0.11.0", "2.9.1", "release", {"vllm": True, "torch": False}),
    ],
)
def test_floating(ref: str, requested: str, channel: Literal["nightly", "release"], expected: dict[str, bool]) -> None:
    lock = make_lock(ref=ref, requested=requested)
    lock = dataclasses.replace(lock, torch=dataclasses.replace(lock.torch, channel=channel))
    assert update_action.floating(lock) == expected


def test_request_pins_what_is_not_selected(tmp_path: Path) -> None:
    lock = make_lock()
    both = update_action.request_for(lock, output=tmp_path / "x", cache=tmp_path, move_vllm=True, move_torch=True)
    assert (both.ref, both.torch_date) == ("main", "latest")
    only_torch = update_action.request_for(lock, output=tmp_path / "x", cache=tmp_path, move_vllm=False,
                                           move_torch=True)
    assert (only_torch.ref, only_torch.torch_date) == (C1, "latest")
    only_vllm = update_action.request_for(lock, output=tmp_path / "x", cache=tmp_path, move_vllm=True,
                                          move_torch=False)
    assert (only_vllm.ref, only_vllm.torch_date) == ("main", "2026-11-05")
    # every other original input is the lock's own
    assert (both.repo, both.torch_index, both.general_index, both.archs, both.python, both.platform, both.name,
            both.phase, both.cuda) == (lock.vllm.url, lock.torch.index, lock.general_index, lock.build.cuda_archs,
                                       lock.target.python, lock.target.platform, "dev", "development", "cu128")


def test_restore_originals() -> None:
    old = make_lock()
    pinned = make_lock(ref=C1, requested="2026-11-05")
    restored = update_action.restore_originals(old, pinned)
    assert (restored.vllm.ref, restored.torch.requested) == ("main", "latest")


# ---------------------------------------------------------------- against a test world


@pytest.fixture
def own_world(tmp_path: Path) -> Iterator[TestWorld]:
    """A world of this test's own: these tests publish nightlies and commit to main."""
    with TestWorld.create(tmp_path / "world") as w:
        yield w


@pytest.fixture
def locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "locks"
    folder.mkdir()
    monkeypatch.setenv("VLLM_LOCK_LOCKS_DIR", str(folder))
    monkeypatch.setenv("VLLM_LOCK_CACHE", str(tmp_path / "cache"))
    return folder


def _resolve(world: TestWorld, locks: Path, name: str = "dev", torch_date: str = "latest") -> Path:
    _, path, _ = resolve(ResolveRequest(repo=world.repo_url, torch_index=world.torch_nightly_index,
                                        general_index=world.general_index, python="3.11", target_device="cpu",
                                        torch_date=torch_date, name=name, output=locks / f"{name}.lock.toml",
                                        cache=locks.parent / "cache"), QUIET)
    return path


def _update(*, vllm: bool = False, torch: bool = False) -> update_action.UpdateResult:
    return update_action.update("dev", vllm=vllm, torch=torch, reporter=QUIET)


def test_nothing_moved_keeps_the_file_byte_identical(own_world: TestWorld, locks: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = _resolve(own_world, locks)
    before = path.read_bytes()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1900000000")  # a later clock changes nothing either
    for flags in ({}, {"vllm": True}, {"torch": True}):
        result = _update(**flags)
        assert not result.written
        assert path.read_bytes() == before
    assert update_action.report_lines(result)[-1].endswith("unchanged (nothing moved)")


def test_update_moves_only_what_is_selected(own_world: TestWorld, locks: Path) -> None:
    path = _resolve(own_world, locks)
    old, _ = lockfiles.read("dev")
    new_commits = own_world.commit_to_main(2)
    own_world.publish_nightly(dt.date(2026, 11, 20))

    # --torch: vLLM is not selected, it keeps its commit even though main moved
    result = _update(torch=True)
    assert result.written
    lock, _ = lockfiles.read("dev")
    assert lock.vllm.commit == old.vllm.commit and lock.vllm.ref == "main"
    assert lock.torch.date == "2026-11-20" and lock.torch.requested == "latest"
    lines = update_action.report_lines(result)
    assert lines[0] == f"vllm main: {old.vllm.short_commit} ({old.vllm.commit_date[:10]}) (not selected, kept)"
    assert lines[1] == (f"torch latest: {old.torch.version} (2026-11-12) -> 2.10.0.dev20261120+cu128 (2026-11-20)")
    assert "build identity changed: vLLM must be rebuilt" in lines

    # --vllm: main moved to the newest commit, torch stays at its (new) locked nightly
    result = _update(vllm=True)
    lock, _ = lockfiles.read("dev")
    assert lock.vllm.commit == new_commits[-1] and lock.vllm.ref == "main"
    assert lock.torch.date == "2026-11-20"
    assert update_action.report_lines(result)[0].startswith(f"vllm main: {old.vllm.short_commit} (")
    assert " -> " + new_commits[-1][:9] in update_action.report_lines(result)[0]

    # and now nothing floats any further
    before = path.read_bytes()
    assert not _update().written
    assert path.read_bytes() == before


def test_pinned_inputs_never_move(own_world: TestWorld, locks: Path) -> None:
    path = _resolve(own_world, locks, torch_date="2026-11-05")
    before = path.read_bytes()
    own_world.publish_nightly(dt.date(2026, 11, 20))
    result = _update(torch=True)
    assert not result.written and path.read_bytes() == before
    assert update_action.report_lines(result)[1].endswith("(pinned, not floating)")


def test_cli_update_prints_old_new(own_world: TestWorld, locks: Path) -> None:
    _resolve(own_world, locks)
    own_world.commit_to_main(1)
    result = CliRunner().invoke(app, ["update", "dev"])
    assert result.exit_code == 0, result.output
    assert "vllm main: " in result.output and " -> " in result.output
    assert "dev.lock.toml: updated" in result.output


# ---------------------------------------------------------------- the diff command


def test_cli_diff_exit_codes_and_formats(own_world: TestWorld, locks: Path) -> None:
    _resolve(own_world, locks)
    (locks / "copy.lock.toml").write_bytes((locks / "dev.lock.toml").read_bytes())
    runner = CliRunner()
    same = runner.invoke(app, ["diff", "dev", str(locks / "copy.lock.toml")])
    assert same.exit_code == 0, same.output
    assert ": equal" in same.output

    _resolve(own_world, locks, name="old", torch_date="2026-11-05")
    own_world.commit_to_main(3, message="[Core] move forward")
    assert _update().written
    text = runner.invoke(app, ["diff", "old", "dev"])
    assert text.exit_code == 1, text.output
    assert "3 new commits from old to dev" in text.output
    assert "[Core] move forward" in text.output
    assert "7 days newer" in text.output
    assert "vLLM must be rebuilt" in text.output
    assert "compare:" not in text.output  # the test world's repository is not on GitHub

    md = runner.invoke(app, ["diff", "old", "dev", "--format", "markdown"])
    assert md.exit_code == 1 and md.output.startswith("### vllm-lock diff: `old` → `dev`")
    js = runner.invoke(app, ["diff", "old", "dev", "--format", "json"])
    assert js.exit_code == 1 and json.loads(js.output)["vllm"]["history"]["ahead"] == 3

    assert runner.invoke(app, ["diff", "old", "missing"]).exit_code == 2
    assert runner.invoke(app, ["diff", "old", "dev", "--format", "html"]).exit_code == 2
    (locks / "bad.lock.toml").write_text("lock-version = 99\n")
    assert runner.invoke(app, ["diff", "old", "bad"]).exit_code == 2


def test_diff_goes_on_when_the_repository_is_unreachable(own_world: TestWorld, locks: Path) -> None:
    _resolve(own_world, locks, name="old", torch_date="2026-11-05")
    own_world.commit_to_main(1)
    _resolve(own_world, locks, name="dev", torch_date="2026-11-05")
    # the new commit was never fetched into a mirror that is now gone, and the repository is away
    import shutil

    shutil.rmtree(locks.parent / "cache" / "git")
    shutil.move(str(own_world.repo_path), str(own_world.repo_path) + ".away")
    result = CliRunner().invoke(app, ["diff", "old", "dev"])
    assert result.exit_code == 1, result.output
    assert "history: repository not reachable" in result.output


def test_external_sources_stay_locked_while_the_vllm_commit_stays() -> None:
    cutlass = ExternalSource(name="cutlass", repository="https://github.com/nvidia/cutlass.git", ref="v4.2.1",
                             ref_kind="tag", commit="c" * 40, override="VLLM_CUTLASS_SRC_DIR",
                             declared_in="CMakeLists.txt")
    retagged = dataclasses.replace(cutlass, commit="d" * 40)
    old = make_lock(external_sources=(cutlass,))
    # torch moved, vLLM did not: the re-resolve saw the moved tag, the update keeps the locked commit
    same_commit = update_action.restore_originals(old, make_lock(external_sources=(retagged,)))
    assert same_commit.external_sources == (cutlass,)
    # vLLM moved: its pins are read afresh, so the new commit of the tag is taken
    moved = update_action.restore_originals(old, make_lock(commit=C2, external_sources=(retagged,)))
    assert moved.external_sources == (retagged,)
