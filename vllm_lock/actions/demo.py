"""demo: the main job end to end on the bundled test world (loopback only)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from vllm_lock.actions import show
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.progress import Reporter
from vllm_lock.testworld import TestWorld


def host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def run(workdir: Path, reporter: Reporter) -> Path:
    """Build a fresh test world under workdir, resolve locks/dev.lock.toml from it (target: this
    machine's Python, so that it can be installed here) and show it."""
    world_dir = workdir / "world"
    if world_dir.exists():
        shutil.rmtree(world_dir)
    (workdir / "locks").mkdir(parents=True, exist_ok=True)
    with reporter.step("test world"):
        world = TestWorld.create(world_dir)
        reporter.say(f"    vLLM-shaped repo {world.repo_url}")
        reporter.say(f"    torch nightly index {world.torch_nightly_index}, general index {world.general_index}")
    try:
        request = ResolveRequest(
            repo=world.repo_url,
            ref="main",
            torch_index=world.torch_nightly_index,
            general_index=world.general_index,
            python=host_python(),
            target_device="cpu",  # the test world's torch is not a CUDA build
            name="dev",
            output=workdir / "locks" / "dev.lock.toml",
            cache=workdir / "cache",
        )
        lock, path, _ = resolve(request, reporter)
        show.render(lock, path)
        return path
    finally:
        world.close()
