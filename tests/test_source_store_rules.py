"""The source store's key and its use check (pure), and its making on a real file system: a
maker that fails leaves nothing behind, a made path is read-only and reused."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest
from sample_lock import C2, make_lock, sha

from vllm_lock import source_store as rules
from vllm_lock.model import PatchedFile
from vllm_lock.shell import source_store


def test_the_key_names_the_tree_not_the_rest_of_the_lock() -> None:
    lock = make_lock()
    key = rules.source_key(lock)
    assert rules.is_key(key)
    assert rules.source_key(make_lock(name="other", torch_date="2026-11-02", archs=("9.0",))) == key
    patched = (PatchedFile(path="requirements/cuda.txt", sha256_before=sha("a"), sha256_after=sha("c")),)
    changed = [
        make_lock(commit=C2),
        make_lock(url="https://github.com/someone/vllm.git"),
        make_lock(layout=dataclasses.replace(lock.layout, stripping_mode="prefix")),
        make_lock(layout=dataclasses.replace(lock.layout, patched_files=patched)),
    ]
    assert len({rules.source_key(x) for x in changed} | {key}) == 5


def test_the_use_check_names_the_first_altered_patched_file() -> None:
    lock = make_lock()
    assert rules.altered_patched_file(lock, {"requirements/cuda.txt": sha("b")}) is None
    assert rules.altered_patched_file(lock, {"requirements/cuda.txt": sha("x")}) == (
        "requirements/cuda.txt", sha("x"), sha("b"))
    assert rules.altered_patched_file(lock, {}) == ("requirements/cuda.txt", None, sha("b"))


def test_a_failed_maker_leaves_nothing_and_a_made_path_is_read_only_and_reused(tmp_path: Path) -> None:
    key = "a" * 64

    def broken(partial: Path) -> None:
        (partial / "sub").mkdir(parents=True)
        (partial / "sub" / "file").write_text("half\n")
        raise RuntimeError("the stripping's result differs")

    with pytest.raises(RuntimeError):
        source_store.ensure(tmp_path, key, broken)
    assert list((tmp_path / "sources").iterdir()) == []

    def good(partial: Path) -> None:
        (partial / "bin").mkdir(parents=True)
        (partial / "bin" / "tool").write_text("#!/bin/sh\n")
        (partial / "bin" / "tool").chmod(0o755)
        (partial / "README").write_text("x\n")

    made = source_store.ensure(tmp_path, key, good)
    assert made.made and made.path == tmp_path / "sources" / key
    modes = {p.relative_to(made.path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in made.path.rglob("*")}
    assert modes == {"bin": 0o555, "bin/tool": 0o555, "README": 0o444}
    inode = made.path.stat().st_ino
    again = source_store.ensure(tmp_path, key, broken)  # in place: the maker is not called
    assert not again.made and again.path.stat().st_ino == inode
    source_store.remove_tree(made.path)
    assert not os.path.lexists(made.path)
