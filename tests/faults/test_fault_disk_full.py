"""Disk full while the wheels are copied into the generation (a small tmpfs as the generation's
location; the cache on another filesystem, so the wheels are copied, not hard-linked): one
`error:` line naming the file, nothing truncated left under the wheel's name, and with space
available the rerun succeeds and verifies clean, even over a truncated staged copy."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from install_support import cli, install_args, resolve_world_lock

from vllm_lock.shell.staging import staged_name
from vllm_lock_testworld import TestWorld

pytestmark = pytest.mark.slow

ROOM = 600 * 1024  # the venv, the logs and the small wheels fit; setuptools (1.2 MB) does not


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "opt"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(mount: Path, room: int) -> Path:
    """A filler file leaving `room` bytes free on the mount."""
    filler = mount / "filler"
    stat = os.statvfs(mount)
    with filler.open("wb") as out:
        out.truncate(0)
        out.write(b"\0" * max(0, stat.f_bavail * stat.f_frsize - room))
    return filler


def test_disk_full_at_the_wheel_copy_names_the_file_and_the_rerun_repairs(world: TestWorld, small_disk: Path,
                                                                          tmp_path: Path) -> None:
    lock, path = resolve_world_lock(world, tmp_path / "dev.lock.toml", tmp_path / "cache")
    (setuptools,) = next(p for p in lock.packages if p.name == "setuptools").wheels
    assert setuptools.size > ROOM
    filler = _fill(small_disk, ROOM)
    env = {"VLLM_LOCK_MIN_FREE_DISK": "0"}

    failed = cli(*install_args(path, small_disk), cache=tmp_path / "cache", env=env)
    assert failed.returncode == 7, failed.stderr[-3000:]
    assert "Traceback" not in failed.stderr
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, failed.stderr[-3000:]
    # the source checkout is written beside the staging (another thread): which copy meets the
    # full disk first depends on how far each got, setuptools' at the latest
    names = [staged_name(w) for p in lock.packages for w in p.wheels]
    named = [name for name in names if name in errors[0]]
    assert "no space left" in errors[0] and len(named) == 1, errors[0]
    assert "Errno" not in errors[0]
    wheels = next(small_disk.glob("vllm.generations/*/wheels"))
    assert not (wheels / named[0]).exists()  # never a partial file under its name
    assert not list(wheels.glob(".*.partial"))

    # space again, and a truncated copy under the wheel's name (what a kill used to leave)
    filler.unlink()
    (wheels / staged_name(setuptools)).write_bytes(b"PK\x03\x04 truncated")
    rerun = cli(*install_args(path, small_disk), cache=tmp_path / "cache", env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (wheels / staged_name(setuptools)).stat().st_size == setuptools.size
    clean = cli("verify", str(path), "--venv", str(small_disk / "vllm"), cache=tmp_path / "cache")
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_a_copy_killed_half_way_leaves_nothing_under_the_wheel_name(tmp_path: Path, small_disk: Path) -> None:
    """SIGKILL in the middle of the copy (the store entry is a pipe we feed one megabyte of, on
    another filesystem than the generation, so it is copied): the wheel's own name never holds
    a partial file, so no rerun can mistake one for the wheel."""
    import errno
    import signal
    import sys
    import time

    source = tmp_path / "store-entry.whl"
    os.mkfifo(source)
    target = small_disk / "wheels" / "w-1.0-py3-none-any.whl"
    target.parent.mkdir()
    code = (
        "import sys; from pathlib import Path; from vllm_lock.shell.staging import _stage_one; "
        "_stage_one(Path(sys.argv[1]), Path(sys.argv[2]))"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(source), str(target)])
    deadline = time.monotonic() + 60
    try:
        while True:  # the event: the child opened the pipe for reading
            try:
                fd = os.open(source, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError as exc:
                if exc.errno != errno.ENXIO or time.monotonic() > deadline or child.poll() is not None:
                    pytest.fail(f"the copy never read its source ({exc})")
                time.sleep(0.05)
        os.set_blocking(fd, True)
        os.write(fd, b"\1" * (1 << 20))
        while not [p for p in target.parent.iterdir() if p.stat().st_size >= (1 << 20)]:  # the bytes reached the disk
            if time.monotonic() > deadline:
                pytest.fail("the copy never wrote the first megabyte")
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        os.close(fd)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    assert not target.exists()
