"""store gc removes what an interrupted collection left: it renames an entry, mirror or source
store path to .gc-<key>-<pid> under the entry's lock and removes it after; killed in between (a
source tree of ~10,000 read-only files takes a while), the folder stayed for ever, collected by
no later run. Real CLI, real files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

KEY = "ab" * 32
DEAD_PID = 999_999_999  # no process has it (Linux pids stop at 2^22)


def _read_only_tree(root: Path) -> None:
    (root / "csrc").mkdir(parents=True)
    (root / "csrc" / "ops.cu").write_text("x")
    (root / "setup.py").write_text("x")
    for path in (root / "csrc" / "ops.cu", root / "setup.py"):
        path.chmod(0o444)
    (root / "csrc").chmod(0o555)
    root.chmod(0o555)


def test_gc_removes_the_trash_of_a_collection_killed_while_removing(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    left = [cache / "sources" / f".gc-{KEY}-{DEAD_PID}", cache / "cas" / "sha256" / f".gc-{KEY}-{DEAD_PID}",
            cache / "git" / f".gc-{KEY[:16]}-{DEAD_PID}"]
    for path in left:
        _read_only_tree(path)
    alive = cache / "sources" / f".gc-{'cd' * 32}-{os.getpid()}"  # a collection still removing it
    _read_only_tree(alive)
    (tmp_path / "locks").mkdir()
    env = dict(os.environ, VLLM_LOCK_CACHE=str(cache), VLLM_LOCK_LOCKS_DIR=str(tmp_path / "locks"))
    result = subprocess.run([sys.executable, "-m", "vllm_lock.cli", "store", "gc"], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [p for p in left if os.path.lexists(p)] == []
    assert alive.is_dir()
    assert "removed 3 folder(s) an interrupted collection left" in result.stdout + result.stderr
    for root, dirs, _ in os.walk(alive):  # tmp_path's own removal needs the write bits back
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
    alive.chmod(0o755)
