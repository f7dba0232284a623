"""vllm-lock store gc: what live locks and generations reference stays, the rest goes, the figures
are what was deleted, and a fetch running beside it is not broken (real store, real git mirrors,
a real slow HTTP server on loopback)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from install_support import cli, install_args, resolve_world_lock

from vllm_lock import store_gc
from vllm_lock.model import Lock
from vllm_lock.shell import git as git_shell
from vllm_lock.shell.store import Store
from vllm_lock_testworld import TestWorld

# ---------------------------------------------------------------- the plan (pure)


def test_the_plan_keeps_roots_and_what_was_written_since_the_start() -> None:
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    entries = [store_gc.Entry(key=k, files=1, size=10, newest=t) for k, t in ((a, 1.0), (b, 1.0), (c, 99.0))]
    mirrors = [store_gc.Mirror(key="1" * 16, files=3, size=30, newest=1.0, holds=frozenset({"f" * 40})),
               store_gc.Mirror(key="2" * 16, files=4, size=40, newest=1.0)]
    plan = store_gc.plan(store_gc.Roots(sha256s=frozenset({a}), commits=frozenset({"f" * 40})), entries, mirrors,
                         started=50.0)
    assert [e.key for e in plan.keep_entries] == [a, c]  # c: written after the start
    assert [e.key for e in plan.delete_entries] == [b]
    assert [m.key for m in plan.keep_mirrors] == ["1" * 16] and [m.key for m in plan.delete_mirrors] == ["2" * 16]
    assert (plan.freed_files, plan.freed_bytes) == (5, 50)


# ---------------------------------------------------------------- end to end


def _entry_dirs(cache: Path) -> set[str]:
    base = cache / "cas" / "sha256"
    return {p.name for p in base.iterdir()} if base.is_dir() else set()


def _tree_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    return len(files), sum(p.stat().st_size for p in files)


def _age(root: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in [root, *root.rglob("*")]:
        os.utime(path, (then, then), follow_symlinks=False)


def _shas(lock: Lock) -> set[str]:
    return {w.sha256 for p in lock.packages for w in p.wheels}


@pytest.mark.slow
def test_gc_keeps_live_locks_and_generations_and_reports_what_it_freed(world: TestWorld, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cache, locks = tmp_path / "cache", tmp_path / "locks"
    locks.mkdir()
    monkeypatch.setenv("VLLM_LOCK_CACHE", str(cache))
    live, _ = resolve_world_lock(world, locks / "dev.lock.toml", cache)
    kept_by_generation, gen_path = resolve_world_lock(world, tmp_path / "old.lock.toml", cache,
                                                      torch_date="2026-11-05", name="old")
    dead, _ = resolve_world_lock(world, tmp_path / "dead.lock.toml", cache, torch_date="2026-11-02", name="dead")
    opt = tmp_path / "opt"
    installed = cli(*install_args(gen_path, opt), cache=cache, timeout=600)
    assert installed.returncode == 0, installed.stderr[-3000:]
    gen_path.unlink()  # only its generation refers to it now

    # a mirror of a repository no lock names
    extra = tmp_path / "extra"
    subprocess.run(["git", "init", "-q", str(extra)], check=True)
    (extra / "f").write_text("x\n")
    subprocess.run(["git", "-C", str(extra), "add", "f"], check=True)
    subprocess.run(["git", "-C", str(extra), "commit", "-qm", "x"], check=True)
    head = subprocess.run(["git", "-C", str(extra), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    git_shell.fetch_commit(cache, f"file://{extra}", head)
    extra_mirror = git_shell.mirror_path(cache, f"file://{extra}")
    assert extra_mirror.is_dir()

    _age(cache / "cas", 3600)  # all of it written well before the collection begins
    _age(cache / "git", 3600)
    doomed = (_shas(dead) - _shas(live) - _shas(kept_by_generation)) & _entry_dirs(cache)
    assert doomed  # the dead lock's own torch nightlies were downloaded by its resolve
    files = bytes_ = 0
    for sha in doomed:
        f, b = _tree_size(cache / "cas" / "sha256" / sha)
        files, bytes_ = files + f, bytes_ + b
    f, b = _tree_size(extra_mirror)
    files, bytes_ = files + f, bytes_ + b
    before = _entry_dirs(cache)
    mirrors_before = sorted(p.name for p in (cache / "git").glob("*.git"))
    env = {"VLLM_LOCK_LOCKS_DIR": str(locks)}

    dry = cli("store", "gc", "--venv", str(opt / "vllm"), "--dry-run", cache=cache, env=env)
    assert dry.returncode == 0, dry.stderr
    assert f"would free {files} files, {bytes_} bytes" in dry.stdout
    assert _entry_dirs(cache) == before and extra_mirror.is_dir()

    gc = cli("store", "gc", "--venv", str(opt / "vllm"), cache=cache, env=env)
    assert gc.returncode == 0, gc.stderr
    assert f"freed {files} files, {bytes_} bytes" in gc.stdout
    assert re.search(rf"{len(doomed)} store entries, 1 mirrors", gc.stdout), gc.stdout
    assert _entry_dirs(cache) == before - doomed
    assert (_shas(live) | _shas(kept_by_generation)) & before <= _entry_dirs(cache)
    assert not extra_mirror.exists()
    remaining = sorted(p.name for p in (cache / "git").glob("*.git"))
    assert remaining == [m for m in mirrors_before if m != extra_mirror.name]

    again = cli("store", "gc", "--venv", str(opt / "vllm"), cache=cache, env=env)
    assert "freed 0 files, 0 bytes" in again.stdout


def test_gc_refuses_an_unreadable_live_lock(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    (locks / "bad.lock.toml").write_text("lock-version = 3\n")
    result = cli("store", "gc", "--venv", str(tmp_path / "v"), cache=tmp_path / "cache",
                 env={"VLLM_LOCK_LOCKS_DIR": str(locks)})
    assert result.returncode == 3 and result.stderr.count("error:") == 1, result.stderr


def test_an_unknown_store_action_is_a_usage_error(tmp_path: Path) -> None:
    result = cli("store", "clean", cache=tmp_path / "cache")
    assert result.returncode == 2 and result.stderr.startswith("error: No such command 'clean'"), result.stderr


# ---------------------------------------------------------------- a fetch beside the collection


class _Slow(BaseHTTPRequestHandler):
    body = b""
    halfway = threading.Event()
    pause = 5.0

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        half = len(self.body) // 2
        self.wfile.write(self.body[:half])
        self.wfile.flush()
        self.halfway.set()
        time.sleep(self.pause)
        self.wfile.write(self.body[half:])


def test_a_fetch_running_beside_gc_is_not_broken(tmp_path: Path) -> None:
    """An unreferenced entry directory (left empty by a download killed before its rename) is
    being filled by a fetch when gc runs: gc waits for the entry's lock, then sees it was
    written meanwhile and leaves it alone."""
    cache = tmp_path / "cache"
    body = os.urandom(1 << 20)
    sha = hashlib.sha256(body).hexdigest()
    entry = cache / "cas" / "sha256" / sha
    entry.mkdir(parents=True)
    old = time.time() - 3600
    os.utime(entry, (old, old))
    _Slow.body = body
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    outcome: dict[str, object] = {}

    def fetch() -> None:
        try:
            outcome["result"] = Store(cache).fetch(f"http://127.0.0.1:{server.server_port}/x.whl", "x.whl",
                                                   expected_sha256=sha, expected_size=len(body))
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=fetch)
    try:
        worker.start()
        assert _Slow.halfway.wait(30)
        locks = tmp_path / "locks"
        locks.mkdir()
        gc = cli("store", "gc", "--venv", str(tmp_path / "v"), cache=cache, env={"VLLM_LOCK_LOCKS_DIR": str(locks)})
        worker.join(60)
    finally:
        server.shutdown()
    assert gc.returncode == 0, gc.stderr
    assert "error" not in outcome, outcome.get("error")
    assert (entry / "x.whl").is_file() and hashlib.sha256((entry / "x.whl").read_bytes()).hexdigest() == sha
    assert "left 1 alone" in gc.stdout, gc.stdout

