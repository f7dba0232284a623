"""Benchmark the second install of a lock from the binary cache on the test world (loopback only).

  prime      `vllm-lock install LOCK --push file://CACHE` builds vLLM and pushes its wheel with a
             signed entry (not timed)
  ours       `vllm-lock install LOCK --cache file://CACHE --trusted-cache-key PUB` into a new
             target (one process, the console script of this virtualenv): preflight, venv, locked
             wheels from the store, the entry and wheel from the cache (signature, size, sha256),
             checkout + strip, install of the wheel, verification, receipt, switch; compiler calls
             counted through CC/CXX wrappers and asserted zero
  uv         `uv venv` + one `uv pip install --offline --no-index --no-deps` of the same files: the
             locked wheels this machine installs (from the same store) plus the cached vLLM wheel
             (from the same cache directory); the same warm uv cache

One run each (the brief's rule); ratio printed.

    .venv/bin/python bench/bench_cache_install.py [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename

from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.progress import QUIET
from vllm_lock.shell import staging
from vllm_lock.shell import uv as uv_shell
from vllm_lock.shell.store import Store
from vllm_lock_testworld import TestWorld

PY = "3.11"
VLLM_LOCK = Path(sys.executable).with_name("vllm-lock")


def sh(argv: list[str], *, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(argv)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    fn()
    return time.monotonic() - start


def compiler_wrappers(where: Path) -> tuple[dict[str, str], Path]:
    where.mkdir(parents=True, exist_ok=True)
    calls = where / "calls.log"
    calls.touch()
    env = {}
    for variable, real in (("CC", "gcc"), ("CXX", "g++")):
        wrapper = where / f"counting-{real}"
        wrapper.write_text(f'#!/bin/sh\necho "{real} $*" >> "{calls}"\nexec {shutil.which(real)} "$@"\n')
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
        env[variable] = str(wrapper)
    return env, calls


def compiles(calls: Path) -> int:
    """Compiler calls that compile or link (not preflight's `-dumpversion` probes)."""
    return sum("-dump" not in line for line in calls.read_text().splitlines())


def installed_wheels(lock, store: Store) -> list[Path]:  # type: ignore[no-untyped-def]
    """Per locked package, the store's file of the wheel this machine installs (best tag)."""
    rank = {tag: i for i, tag in enumerate(sys_tags())}
    chosen = []
    for package in lock.packages:
        fits = []
        for wheel in package.wheels:
            tags = parse_wheel_filename(staging.staged_name(wheel))[3]
            best = min((rank[t] for t in tags if t in rank), default=None)
            if best is not None:
                fits.append((best, wheel))
        if fits:
            wheel = min(fits, key=lambda pair: pair[0])[1]
            chosen.append(store.path(wheel.sha256, wheel.filename))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cache-install-"))
    work.mkdir(parents=True, exist_ok=True)
    with TestWorld.create(work / "world") as world:
        store_root = work / "cache"
        lock, lock_path, _ = resolve(
            ResolveRequest(repo=world.repo_url, torch_index=world.torch_nightly_index,
                           general_index=world.general_index, python=PY, platform="x86_64-manylinux_2_28",
                           torch_date=world.latest_consistent_date.isoformat(), target_device="cpu",
                           editable=False, output=work / "dev.lock.toml", cache=store_root, name="dev"),
            QUIET,
        )
        binary_cache = work / "binary-cache"
        key = work / "bench.secret"
        public = sh([str(VLLM_LOCK), "key", "generate", "--name", "bench", "-o", str(key)]).strip()
        cc_env, calls = compiler_wrappers(work / "cc")
        env = dict(os.environ, VLLM_LOCK_CACHE=str(store_root), **cc_env)
        # as an installed vllm-lock runs: pip writes its bytecode at install time (this sandbox's
        # PYTHONDONTWRITEBYTECODE=1 would compile ~60 modules from source on every run); the
        # priming install below writes it
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        sh([str(VLLM_LOCK), "install", str(lock_path), "--venv", str(work / "prime/vllm"), "--src",
            str(work / "prime/vllm_repo"), "--push", f"file://{binary_cache}", "--cache-signing-key", str(key)], env=env)
        built_compiles = compiles(calls)
        assert built_compiles > 0, "the priming build made no compiler call: the wrappers are not used"

        before = compiles(calls)
        ours = timed(lambda: sh([
            str(VLLM_LOCK), "install", str(lock_path), "--venv", str(work / "ours/vllm"), "--src",
            str(work / "ours/vllm_repo"), "--cache", f"file://{binary_cache}", "--trusted-cache-key", public,
        ], env=env))
        ours_compiles = compiles(calls) - before
        receipt = json.loads((Path(os.readlink(work / "ours/vllm")).parent / "receipt.json").read_text())
        assert receipt["substituted-from"], "the second install did not substitute"
        assert ours_compiles == 0, f"the second install made {ours_compiles} compiler calls"

        vllm_wheel = next(binary_cache.glob("wheels/*/vllm-*.whl"))
        files = [*installed_wheels(lock, Store(store_root)), vllm_wheel]
        uv_env = uv_shell.uv_env(store_root)
        uv = uv_shell.uv_bin()
        venv = work / "uv" / "venv"

        def bare() -> None:
            sh([uv, "venv", "--python", PY, str(venv)], env=uv_env)
            sh([uv, "pip", "install", "--python", str(venv / "bin/python"), "--offline", "--no-index", "--no-deps",
                *map(str, files)], env=uv_env)

        baseline = timed(bare)

    print(f"priming build: {built_compiles} compiler calls")
    print(f"ours (install from the binary cache) {ours:7.2f} s   compiler calls: {ours_compiles}")
    print(f"uv venv + uv pip install ({len(files)} wheels) {baseline:7.2f} s")
    steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in receipt["timings"].items())
    print(f"ours' steps (s): {steps}")
    print(f"ours / uv = {ours / baseline:.2f}x (target <= 1.2x); one run each")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
