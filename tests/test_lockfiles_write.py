"""lockfiles.write keeps a file that differs only in its resolve time byte-identical, deciding the
usual rerun from the text alone, and rewrites it when anything else differs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sample_lock import make_lock, package

from vllm_lock import codec
from vllm_lock.model import Lock
from vllm_lock.shell import lockfiles


def _at(lock: Lock, when: str) -> Lock:
    return dataclasses.replace(lock, provenance=dataclasses.replace(lock.provenance, resolved_at=when))


def test_a_rerun_at_another_time_keeps_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dev.lock.toml"
    lock = _at(make_lock(), "2026-11-20T10:00:00Z")
    assert lockfiles.write(lock, path)
    before = path.read_bytes()
    assert not lockfiles.write(_at(lock, "2026-11-28T11:00:00Z"), path)
    assert path.read_bytes() == before


def test_the_same_data_in_another_layout_is_still_kept(tmp_path: Path) -> None:
    path = tmp_path / "dev.lock.toml"
    lock = _at(make_lock(), "2026-11-20T10:00:00Z")
    path.write_text("# hand-edited\n" + codec.dumps(lock).replace(" = ", "   =   "), encoding="utf-8")
    before = path.read_bytes()
    assert not lockfiles.write(_at(lock, "2026-11-28T11:00:00Z"), path)
    assert path.read_bytes() == before


def test_a_lock_that_differs_at_the_same_time_is_written(tmp_path: Path) -> None:
    path = tmp_path / "dev.lock.toml"
    when = "2026-11-20T10:00:00Z"
    assert lockfiles.write(_at(make_lock(), when), path)
    moved = _at(make_lock(extra=(package("filelock", "3.20.1"), package("packaging", "25.0"))), when)
    assert lockfiles.write(moved, path)
    assert codec.loads(path.read_text(encoding="utf-8")) == moved
