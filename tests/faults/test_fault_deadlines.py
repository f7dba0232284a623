"""Servers that never finish: a slow drip (one byte a second), an endless body, a git:// server
that accepts and never answers. resolve and install end within the configured bound with the
right exit code and one `error:` line naming the URL (or the file). Bounds are set small through
the environment variables of docs/faults.md; only the upper bound on time is a timing assertion."""

from __future__ import annotations

import dataclasses
import subprocess
import time
from pathlib import Path

import pytest
from install_support import cli, install_args, resolve_world_lock

from vllm_lock import codec
from vllm_lock.model import Lock
from vllm_lock_testworld import TestWorld

from .faultservers import FaultHTTPServer, SilentListener

pytestmark = pytest.mark.slow

SLACK_S = 45  # process start-up, git and uv work before the fault is met (2 shared cores)


def _error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def _resolve(world: TestWorld, cache: Path, out: Path, env: dict[str, str], **options: str
             ) -> tuple[subprocess.CompletedProcess[str], float]:
    args = {
        "--repo": world.repo_url, "--torch-index": world.torch_nightly_index, "--index": world.general_index,
        "--python": "3.11", "--torch-date": world.latest_consistent_date.isoformat(), "--target-device": "cpu",
        "-o": str(out),
    }
    args.update(options)
    flat = [item for pair in args.items() for item in pair]
    started = time.monotonic()
    result = cli("resolve", *flat, cache=cache, env=env, timeout=600)
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def world_lock(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> Lock:
    root = tmp_path_factory.mktemp("deadlines")
    lock, _ = resolve_world_lock(world, root / "dev.lock.toml", root / "cache")
    return lock


def _moved(lock: Lock, old_base: str, new_base: str, path: Path, **vllm: str) -> Path:
    """The lock with every index and package URL on new_base (content hash recomputed)."""
    moved = dataclasses.replace(
        lock,
        torch=dataclasses.replace(lock.torch, index=lock.torch.index.replace(old_base, new_base)),
        general_index=lock.general_index.replace(old_base, new_base),
        packages=tuple(dataclasses.replace(p, wheels=tuple(dataclasses.replace(w, url=w.url.replace(old_base, new_base))
                                                          for w in p.wheels)) for p in lock.packages),
        vllm=dataclasses.replace(lock.vllm, **vllm),
    )
    path.write_text(codec.dumps(moved), encoding="utf-8")
    return path


def test_a_dripping_torch_index_ends_resolve(world: TestWorld, fault_http: FaultHTTPServer, tmp_path: Path) -> None:
    fault_http.faults["*"] = "drip"
    index = fault_http.base_url + "/whl/nightly/cu128"
    result, elapsed = _resolve(world, tmp_path / "cache", tmp_path / "x.lock.toml",
                               {"VLLM_LOCK_HTTP_DEADLINE": "3"}, **{"--torch-index": index})
    assert fault_http.hit.is_set()
    assert result.returncode == 4, result.stderr[-2000:]
    line = _error_line(result.stderr)
    assert index in line and "within 3 s" in line
    assert elapsed < 3 + SLACK_S
    assert not (tmp_path / "x.lock.toml").exists()


def test_a_hanging_general_index_is_named(world: TestWorld, fault_http: FaultHTTPServer, tmp_path: Path) -> None:
    """uv's own requests: UV_HTTP_TIMEOUT is per read, so the whole `uv pip compile` is bounded."""
    fault_http.faults["*"] = "drip"
    index = fault_http.base_url + "/pypi/simple"
    env = {"VLLM_LOCK_UV_DEADLINE": "8", "VLLM_LOCK_HTTP_DEADLINE": "3"}
    result, elapsed = _resolve(world, tmp_path / "cache", tmp_path / "x.lock.toml", env, **{"--index": index})
    assert fault_http.hit.is_set()
    assert result.returncode == 4, result.stderr[-2000:]
    line = _error_line(result.stderr)
    assert index in line and world.torch_nightly_index not in line  # the torch index answered
    assert elapsed < 8 + 3 + SLACK_S


@pytest.mark.parametrize(("fault", "code"), [("drip", 4), ("endless", 8)])
def test_a_download_that_never_ends_stops_install(
    world: TestWorld, world_lock: Lock, fault_http: FaultHTTPServer, tmp_path: Path, fault: str, code: int
) -> None:
    fault_http.faults["*"] = fault
    lock = _moved(world_lock, world.base_url, fault_http.base_url, tmp_path / "moved.lock.toml")
    env = {"VLLM_LOCK_DOWNLOAD_BASE_S": "3", "VLLM_LOCK_DOWNLOAD_FLOOR_RATE": str(1 << 40)}
    started = time.monotonic()
    result = cli(*install_args(lock, tmp_path / "opt"), cache=tmp_path / "cache", env=env, timeout=600)
    elapsed = time.monotonic() - started
    assert fault_http.hit.is_set()
    assert result.returncode == code, result.stderr[-2000:]
    line = _error_line(result.stderr)
    path = fault_http.faulty_requests[0]
    assert path in line or path.rsplit("/", 1)[-1] in line, line
    assert elapsed < 3 + SLACK_S
    if fault == "endless":  # cut at the lock's size: nothing bigger was ever written
        sizes = {w.size for p in world_lock.packages for w in p.wheels}
        assert all(f.stat().st_size <= max(sizes) for f in (tmp_path / "cache").rglob("*") if f.is_file())


def test_a_silent_git_server_ends_resolve(world: TestWorld, silent_git: SilentListener, tmp_path: Path) -> None:
    url = f"git://127.0.0.1:{silent_git.port}/vllm.git"
    result, elapsed = _resolve(world, tmp_path / "cache", tmp_path / "x.lock.toml",
                               {"VLLM_LOCK_GIT_PROBE_DEADLINE": "3"}, **{"--repo": url})
    assert silent_git.accepted.is_set()
    assert result.returncode == 4, result.stderr[-2000:]
    assert url in _error_line(result.stderr)
    assert elapsed < 3 + SLACK_S


def test_a_silent_git_server_ends_install(world: TestWorld, world_lock: Lock, silent_git: SilentListener,
                                          tmp_path: Path) -> None:
    url = f"git://127.0.0.1:{silent_git.port}/vllm.git"
    lock = _moved(world_lock, world.base_url, world.base_url, tmp_path / "git.lock.toml", url=url)
    started = time.monotonic()
    result = cli(*install_args(lock, tmp_path / "opt"), cache=tmp_path / "cache",
                 env={"VLLM_LOCK_GIT_PROBE_DEADLINE": "3"}, timeout=600)
    elapsed = time.monotonic() - started
    assert silent_git.accepted.is_set()
    assert result.returncode == 4, result.stderr[-2000:]
    assert url in _error_line(result.stderr)
    assert elapsed < 3 + SLACK_S
