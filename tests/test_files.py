"""shell/files.py, the one atomic writer: the old bytes or the new ones at the path, never a mix,
durable once it returns (file and directory synced), no temporary file left behind on failure.
Real files; a real `File too large` from the kernel (RLIMIT_FSIZE) for the failing write."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_lock.errors import OutputError
from vllm_lock.shell import files


def test_bytes_and_text_land_whole_with_mode_0644(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    files.write_atomically(target, "{}\n")
    assert target.read_bytes() == b"{}\n"
    files.write_atomically(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644  # mkstemp's 0600 would hide a receipt from verify
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_the_file_then_its_directory_are_synced_after_the_rename(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The real fsync runs; the spy notes what each call synced and whether the rename had happened."""
    target = tmp_path / "lock.toml"
    synced: list[tuple[str, bool]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), target.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    files.write_atomically(target, "x\n")
    assert len(synced) == 2
    (first, renamed_before_first), (second, renamed_before_second) = synced
    assert Path(first).parent == tmp_path and Path(first).name.startswith(".lock.toml.") and not renamed_before_first
    assert (Path(second), renamed_before_second) == (tmp_path, True)


_FAILING_WRITE = """
import resource, signal, sys
from pathlib import Path
from vllm_lock.errors import OutputError
from vllm_lock.shell import files
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
try:
    files.write_output(Path(sys.argv[1]), b"y" * 4096)
except OutputError as exc:
    print(exc)
"""


def test_a_failed_write_keeps_the_old_bytes_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "stable.lock.toml"
    target.write_bytes(b"old\n")
    result = subprocess.run([sys.executable, "-c", _FAILING_WRITE, str(target)], capture_output=True, text=True,
                            check=True)
    assert result.stdout == f"cannot write {target}: File too large\n"
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stable.lock.toml"]


def test_an_output_that_cannot_be_written_is_refused_before_anything(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="^cannot write .*: it is a directory$"):
        files.write_output(tmp_path, "x")
    with pytest.raises(OutputError, match="directory .*missing does not exist$"):
        files.write_output(tmp_path / "missing" / "x.toml", "x")
    assert list(tmp_path.iterdir()) == []
