"""receipt.py: install and test receipts as typed records, one key style (kebab-case) on disk,
and receipts written before that change still read (tests/data/receipts_v1 was written by the
code before it: an install receipt with `receipt_version`, a passing test receipt)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vllm_lock import codec
from vllm_lock import receipt as receipts
from vllm_lock.actions import promote as promote_action
from vllm_lock.build_identity import build_identity
from vllm_lock.errors import UsageError
from vllm_lock.generation import Generation
from vllm_lock.shell import lockfiles

DATA = Path(__file__).parent / "data" / "receipts_v1"
GOLDEN = Path(__file__).parent / "golden"


def _generation(tmp_path: Path, text: str) -> Generation:
    gen = Generation(root=tmp_path / "vllm.generations" / "716396686355e6f5")
    gen.root.mkdir(parents=True)
    gen.receipt.write_text(text, encoding="utf-8")
    return gen


def test_an_install_receipt_written_before_the_change_is_read(tmp_path: Path) -> None:
    old = (DATA / "install-receipt.json").read_text(encoding="utf-8")
    assert '"receipt_version": 1' in old  # the snake-case keys of before
    done = receipts.read(_generation(tmp_path, old))
    assert done is not None
    lock = codec.loads((GOLDEN / "before.lock.toml").read_text(encoding="utf-8"))
    assert (done.identity, done.content_hash, done.lock_name) == (build_identity(lock), codec.content_hash(lock),
                                                                  "before")
    assert done.build_env == {"MAX_JOBS_X": "1", "TORCH_CUDA_ARCH_LIST": "9.0"}  # values' keys kept as they are
    assert done.toolchain == {"gcc": {"version": "12.2.0", "path": "/usr/bin/gcc"}}


def test_an_install_receipt_is_written_in_kebab_case_and_read_back(tmp_path: Path) -> None:
    done = receipts.InstallReceipt.from_data(json.loads((DATA / "install-receipt.json").read_text()))
    assert done is not None
    text = done.to_json()
    data = json.loads(text)
    assert data["receipt-version"] == 1 and data["vllm-version"] == done.vllm_version
    assert not [key for key in data if "_" in key]  # one style at the top; the build env's own keys below
    assert "TORCH_CUDA_ARCH_LIST" in data["build-env"]
    assert receipts.read(_generation(tmp_path, text)) == done


@pytest.mark.parametrize("edit", [
    lambda d: d.update({"receipt_version": 2}),  # a version this code does not know
    lambda d: d.pop("vllm_version"),  # a field missing
    lambda d: d.update({"vllm-version": d["vllm_version"]}),  # a field in both styles
    lambda d: d.update({"surprise": 1}),  # an unknown key
])
def test_an_install_receipt_this_code_cannot_read_is_an_unfinished_generation(
        tmp_path: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    data = json.loads((DATA / "install-receipt.json").read_text())
    edit(data)
    assert receipts.read(_generation(tmp_path, json.dumps(data))) is None


def test_a_test_receipt_written_before_the_change_round_trips_byte_for_byte() -> None:
    text = (DATA / "test-receipt.json").read_text(encoding="utf-8")
    record = receipts.TestReceipt.from_data(json.loads(text))
    assert record.passed and record.host == "box" and record.gpu.devices[0].capability == (9, 0)
    assert record.to_json() == text


def test_a_passing_test_receipt_written_before_the_change_lets_promote_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pinned lock and the receipt today's `vllm-lock test` wrote for it, both copied as bytes."""
    locks = tmp_path / "locks"
    locks.mkdir()
    monkeypatch.setenv("VLLM_LOCK_LOCKS_DIR", str(locks))
    monkeypatch.setenv("VLLM_LOCK_CACHE", str(tmp_path / "cache"))
    path = locks / "before.lock.toml"
    shutil.copyfile(GOLDEN / "before.lock.toml", path)
    content = codec.content_hash(lockfiles.read("before")[0])
    folder = receipts.receipts_folder(path, content)
    folder.mkdir(parents=True)
    written = folder / "20261120T100000Z-box.json"
    shutil.copyfile(DATA / "test-receipt.json", written)
    result = promote_action.promote("before")
    assert result.written and not result.forced
    assert result.receipts == (
        f"receipts/{folder.name}/{written.name} sha256:{receipts.file_sha256(written)} "
        "pass on box at 2026-11-20T10:00:00Z (NVIDIA H200 9.0)",
    )


def test_a_malformed_test_receipt_for_this_content_is_refused(tmp_path: Path) -> None:
    lock_path = tmp_path / "dev.lock.toml"
    data = json.loads((DATA / "test-receipt.json").read_text())
    data["host"] = "box\n[SUCCESS]"
    folder = receipts.receipts_folder(lock_path, data["lock"]["content-hash"])
    folder.mkdir(parents=True)
    (folder / "x.json").write_text(json.dumps(data))
    with pytest.raises(UsageError, match="is malformed \\('host' is not a short printable string"):
        receipts.find_test_receipts(lock_path, data["lock"]["content-hash"])


@pytest.mark.parametrize("changes, source", [
    ({}, "checkout"),  # built: a checkout of its own
    ({"substituted-from": {"cache": "file:///c"}}, "store"),  # written before receipts said where src came from
    ({"substituted-from": {"cache": "file:///c"}, "editable": True}, "checkout"),
    ({"source": "checkout", "substituted-from": {"cache": "file:///c"}}, "checkout"),  # what it says wins
    ({"source": "store"}, "store"),
    ({"source": "elsewhere"}, None),  # not a source this version knows: not a receipt it reads
    ({"source": 1}, None),
])
def test_an_install_receipt_says_where_its_source_came_from(changes: dict[str, Any], source: str | None) -> None:
    data = json.loads((DATA / "install-receipt.json").read_text())
    data.pop("editable")
    data.update({"editable": False, **changes})
    done = receipts.InstallReceipt.from_data(data)
    assert (done.source if done is not None else None) == source
