"""The Rust facts a source store path keeps in its .git (shell/source_store.read_rust_facts): a
memo that is not a plain file of bounded size (a symbolic link, a FIFO, a directory, a huge file)
is passed over at once, never followed nor waited on: the caller reads the tree again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_lock import rust as rust_rules
from vllm_lock.shell import source_store

FACTS = rust_rules.RustFacts(toolchain_file="rust-toolchain.toml", channel="1.95", cargo_lock="Cargo.lock",
                             cargo_lock_sha256="a" * 64, git_sources=(), crates=(), artifacts=())


def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    (tree / ".git").mkdir(parents=True)
    return tree


def _read_in_a_child(tree: Path) -> subprocess.CompletedProcess[str]:
    """read_rust_facts in a process of its own: one that blocks is killed, not left in the suite's."""
    code = ("import sys; from pathlib import Path; from vllm_lock.shell import source_store; "
            "print(source_store.read_rust_facts(Path(sys.argv[1])))")
    return subprocess.run([sys.executable, "-c", code, str(tree)], capture_output=True, text=True, timeout=10)


def test_a_memo_written_reads_back(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    source_store.write_rust_facts(tree, FACTS)
    kept = source_store.read_rust_facts(tree)
    assert kept is not None and kept.facts == FACTS


def test_a_fifo_in_the_memos_place_is_passed_over_not_waited_on(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    os.mkfifo(tree / source_store.RUST_FACTS)
    try:
        read = _read_in_a_child(tree)
    except subprocess.TimeoutExpired:
        pytest.fail("read_rust_facts blocked opening a FIFO planted as the memo")
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == "None"


@pytest.mark.parametrize("shape", ["symlink", "directory", "huge"])
def test_a_memo_that_is_no_plain_file_of_bounded_size_is_passed_over(tmp_path: Path, shape: str) -> None:
    tree = _tree(tmp_path)
    memo = tree / source_store.RUST_FACTS
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(rust_rules.facts_to_json(FACTS), encoding="utf-8")
    if shape == "symlink":
        memo.symlink_to(elsewhere)
    elif shape == "directory":
        memo.mkdir()
    else:
        text = rust_rules.facts_to_json(FACTS)
        memo.write_text(text + " " * (source_store.MAX_RUST_FACTS + 1 - len(text)), encoding="utf-8")
        assert rust_rules.facts_from_json(memo.read_text(encoding="utf-8")) == FACTS  # it would read
    assert source_store.read_rust_facts(tree) is None


def test_a_fifo_fed_with_readable_facts_is_still_passed_over(tmp_path: Path) -> None:
    """Only a plain file is a memo: a FIFO a process keeps feeding would answer what it likes."""
    tree = _tree(tmp_path)
    fifo = tree / source_store.RUST_FACTS
    os.mkfifo(fifo)
    feeder = os.open(fifo, os.O_RDWR)  # a reader and a writer at once: opening it does not wait
    try:
        os.write(feeder, rust_rules.facts_to_json(FACTS).encode())
        assert source_store.read_rust_facts(tree) is None
    finally:
        os.close(feeder)
