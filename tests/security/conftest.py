"""A lock is untrusted input: helpers that edit a real lock as an attacker would (any field, then
the content hash recomputed, as anyone can) and run the real CLI on it in a sandbox of tmp dirs."""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomlkit

from vllm_lock import codec
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.progress import QUIET
from vllm_lock_testworld import TestWorld

CLI = [sys.executable, "-m", "vllm_lock.cli"]


def with_hash(data: dict[str, Any]) -> str:
    """TOML text of `data` with the content hash an attacker computes for it."""
    digest = "sha256:" + hashlib.sha256(codec.canonical_json(data)).hexdigest()
    return tomlkit.dumps({"content-hash": digest, **data})


@dataclass
class Sandbox:
    """tmp_path split into the places the tool may use; everything else must stay untouched."""

    root: Path
    world_lock: dict[str, Any]

    def __post_init__(self) -> None:
        for name in ("home", "cache", "locks", "work", "input"):
            (self.root / name).mkdir(parents=True, exist_ok=True)

    @property
    def marker(self) -> Path:
        """What a payload would create if it ran."""
        return self.root / "MARKER"

    def data(self) -> dict[str, Any]:
        return copy.deepcopy(self.world_lock)

    def write(self, data: dict[str, Any], name: str = "dev") -> Path:
        path = self.root / "input" / f"{name}.lock.toml"
        path.write_text(with_hash(data), encoding="utf-8")
        return path

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "VLLM_LOCK_DEBUG"}
        env.update(
            HOME=str(self.root / "home"),
            XDG_CACHE_HOME=str(self.root / "home" / ".cache"),
            VLLM_LOCK_CACHE=str(self.root / "cache"),
            VLLM_LOCK_LOCKS_DIR=str(self.root / "locks"),
        )
        return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=self.root / "work",
                              timeout=timeout)

    def install(self, lock: Path) -> subprocess.CompletedProcess[str]:
        opt = self.root / "opt"
        return self.run("install", str(lock), "--venv", str(opt / "vllm"), "--src", str(opt / "vllm_repo"))

    def written(self) -> list[str]:
        """Every file under the sandbox except the locks it was given: what the tool wrote."""
        return sorted(
            str(p.relative_to(self.root)) for p in self.root.rglob("*")
            if (p.is_file() or p.is_symlink()) and p.parent != self.root / "input"
        )


def refused(result: subprocess.CompletedProcess[str], key: str, code: int = 3) -> str:
    """Exactly one stderr line, `error: ...` naming the key path; exit `code`. Returns the line."""
    lines = result.stderr.splitlines()
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    assert key in lines[0], (key, lines[0])
    return lines[0]


@pytest.fixture(scope="session")
def world_lock(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real lock, resolved on the test world (Python 3.11 target, cpu build, external sources),
    as plain data without its content hash."""
    tmp = tmp_path_factory.mktemp("world-lock")
    request = ResolveRequest(
        repo=world.repo_url, torch_index=world.torch_nightly_index, general_index=world.general_index,
        python="3.11", torch_date=world.latest_consistent_date.isoformat(), target_device="cpu",
        output=tmp / "dev.lock.toml", cache=tmp / "cache", name="dev",
    )
    _, path, _ = resolve(request, QUIET)
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.pop("content-hash")
    assert data["external-sources"], "the test world's lock should carry external sources"
    return data


@pytest.fixture
def sandbox(tmp_path: Path, world_lock: dict[str, Any]) -> Sandbox:
    return Sandbox(tmp_path, world_lock)


Edit = Callable[[dict[str, Any]], None]
