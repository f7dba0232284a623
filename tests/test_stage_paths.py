"""What install's offline sync reads, and the stripping snapshot's walk. Real files, a real
index on loopback (the test world's file server)."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from vllm_lock import source_layout as layout_rules
from vllm_lock.shell import staging
from vllm_lock.shell.store import Store
from vllm_lock.shell.stripping import snapshot
from vllm_lock_testworld import TestWorld

WHEEL = "packaging-25.0-py3-none-any.whl"


def test_the_sync_reads_the_same_store_file_on_every_install(tmp_path: Path, world: TestWorld) -> None:
    """uv keys its unpacked wheels by path: a new path per generation would unpack every wheel
    again on every install. A URL-quoted store name is not a wheel filename uv can read: that
    wheel is read from its staged link (the real filename) instead."""
    store = Store(tmp_path / "cache")
    with urllib.request.urlopen(world.file_url(WHEEL)) as response:
        size = len(response.read())
    # stand-ins, not model records: the lock model refuses this pair (one package version, a wheel
    # named for another), and staging reads only these fields
    plain = SimpleNamespace(filename=WHEEL, plain_filename=WHEEL, url=world.file_url(WHEEL),
                            sha256=world.file_sha256(WHEEL), size=size)
    quoted_name = WHEEL.replace("25.0-", "25.0%2Blocal-")
    quoted = SimpleNamespace(**{**vars(plain), "filename": quoted_name,
                                "plain_filename": quoted_name.replace("%2B", "+")})
    lock = SimpleNamespace(packages=(SimpleNamespace(name="packaging", wheels=(plain, quoted)),))
    first = staging.stage_wheels(lock, store, tmp_path / "gen1" / "wheels", lambda _: None)  # type: ignore[arg-type]
    second = staging.stage_wheels(lock, store, tmp_path / "gen2" / "wheels", lambda _: None)  # type: ignore[arg-type]
    key = (plain.sha256, WHEEL)
    assert first[key] == second[key] == store.path(plain.sha256, WHEEL)
    for gen in ("gen1", "gen2"):  # still staged (verify reads the generation's wheels), the store's inode untouched
        link = tmp_path / gen / "wheels" / WHEEL
        assert link.is_symlink() and link.resolve() == store.path(plain.sha256, WHEEL)
    assert store.path(plain.sha256, WHEEL).stat().st_nlink == 1
    qkey = (plain.sha256, quoted_name)
    assert first[qkey] == tmp_path / "gen1" / "wheels" / "packaging-25.0+local-py3-none-any.whl"
    assert second[qkey] == tmp_path / "gen2" / "wheels" / "packaging-25.0+local-py3-none-any.whl"


def test_snapshot_reads_every_strippable_file_and_no_other(tmp_path: Path) -> None:
    files = ["pyproject.toml", "requirements/common.txt", "requirements/build/cuda.txt", "requirements/test/cuda.in",
             "requirements/README.md", "requirements-cuda.txt", "requirementsold/x.txt", "csrc/requirements.txt",
             "docs/pyproject.toml", ".git/requirements.txt", "setup.py"]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    os.symlink("requirements", tmp_path / "requirements-link")  # a linked folder is not walked into
    os.symlink("requirements/common.txt", tmp_path / "requirements-file.txt")  # a linked file is read
    reference = {p.relative_to(tmp_path).as_posix(): p.read_bytes() for p in tmp_path.rglob("*")
                 if p.is_file() and layout_rules.is_strippable(p.relative_to(tmp_path).as_posix())}
    assert snapshot(tmp_path) == reference
    assert sorted(reference) == ["pyproject.toml", "requirements-cuda.txt", "requirements-file.txt",
                                 "requirements/build/cuda.txt", "requirements/common.txt",
                                 "requirements/test/cuda.in", "requirementsold/x.txt"]
