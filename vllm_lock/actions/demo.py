"""demo: the main job end to end on the bundled test world (loopback only)."""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

from vllm_lock.actions import install as install_action
from vllm_lock.actions import show
from vllm_lock.actions import verify as verify_action
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.errors import InstallError
from vllm_lock.progress import Reporter
from vllm_lock.shell import machine, proc


def host_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def host_platform() -> str:
    """This machine as a target: the lock's default (Ubuntu 24.04's glibc) may be newer."""
    major, minor = machine.glibc() or (2, 17)
    return f"{platform.machine()}-manylinux_{major}_{minor}"


def run(workdir: Path, reporter: Reporter) -> str:
    """On a fresh test world under workdir: resolve locks/dev.lock.toml (target: this machine's
    Python, so it installs here), show it, install it into workdir/opt/vllm (+ vllm_repo), verify
    the environment against the lock and run `vllm --version` from it. Returns that version."""
    from vllm_lock_testworld import TestWorld  # the test world ships for the demo only

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
            platform=host_platform(),
            target_device="cpu",  # the test world's torch is not a CUDA build
            name="dev",
            output=workdir / "locks" / "dev.lock.toml",
            cache=workdir / "cache",
        )
        lock, path, _ = resolve(request, reporter)
        show.render(lock, path)
        venv, src = workdir / "opt" / "vllm", workdir / "opt" / "vllm_repo"
        venv.parent.mkdir(parents=True, exist_ok=True)
        install_action.install(
            install_action.InstallRequest(lock=str(path), venv=venv, src=src, cache=request.cache), reporter
        )
        with reporter.step("verify"):
            report = verify_action.verify(str(path), venv)
            reporter.say(report.render())
            if report.drift:
                raise InstallError(f"{venv} does not match {path}: {report.summary()}")
        result = proc.run([str(venv / "bin" / "vllm"), "--version"], timeout=60)
        if not result.ok:
            raise InstallError(f"{venv}/bin/vllm --version failed: {result.tail(3)}")
        version = result.output.strip()
        reporter.say(f"$ {venv}/bin/vllm --version")  # the command prints the version itself (stdout)
        return version
    finally:
        world.close()
