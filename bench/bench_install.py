"""Benchmark `vllm-lock install` on the test world (loopback only); every flow is run as a user
runs it, each command its own process, every figure printed computed from what was measured.

  ours       `vllm-lock install LOCK` (the console script of this virtualenv: preflight, venv,
             CAS -> offline uv pip sync, clone, external sources staged from the mirrors, strip,
             build, verify, receipt, switch)
  uv-bare    uv venv + uv pip sync of the exported pylock (index URLs) + git clone + stripping
             script + the same build command (uv pip install --no-build-isolation -e) with the
             same external source trees (staged once, before timing) handed over through the same
             override variables and CMAKE_ARGS=-DFETCHCONTENT_FULLY_DISCONNECTED=ON
  uv-told    uv-bare with `uv venv --python <the interpreter binary>` instead of `--python 3.x`:
             ours makes its venv from the binary it found, so uv does not look for one (on this
             machine uv's looking runs pyenv's shims); this takes that difference out (warm only)
  pip        the Phoenix flow: python -m venv, pip install torch torchvision torchaudio (torch
             index), git clone, stripping script, pip install -r build requirements,
             pip install --no-build-isolation -e . (PIP_CONFIG_FILE=/dev/null --isolated: only
             the test world's indexes), with the same staged external sources

Warm: the tool's own caches already filled by an earlier run of the same flow (another
target directory); the median of --repeat runs, each into a new directory. Cold: empty caches,
one run. Also the no-op rerun of ours (median).

    .venv/bin/python bench/bench_install.py [--workdir DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from vllm_lock import plan, pylock
from vllm_lock.actions.demo import host_platform
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.generation import Generation
from vllm_lock.model import Lock
from vllm_lock.progress import QUIET
from vllm_lock.shell import staging
from vllm_lock.shell import uv as uv_shell
from vllm_lock_testworld import TestWorld

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common, as mypy names it

from bench.common import (  # noqa: E402
    byte_compile_vllm_lock,
    environment,
    install_argv,
    interpreter_binary,
    ratio,
    sh,
    timed,
)

PY = "3.11"


def median_of(repeat: int, fn: Callable[[int], object]) -> float:
    """fn(i) for i in range(repeat), timed; the median (one slow outlier does not decide a ratio)."""
    return statistics.median(timed(functools.partial(fn, i)) for i in range(repeat))


def ours(lock: Path, opt: Path, cache: Path) -> None:
    sh(install_argv(lock, opt), env=dict(os.environ, VLLM_LOCK_CACHE=str(cache)))


def clone_and_strip(world: TestWorld, lock: Lock, src: Path, python: Path) -> None:
    sh(["git", "clone", "-q", world.repo_url.removeprefix("file://"), str(src)])
    sh(["git", "checkout", "-q", lock.vllm.commit], cwd=src)
    sh([str(python), *lock.layout.stripping_argv], cwd=src)


def external_env(lock: Lock, staged: dict[str, Path]) -> dict[str, str]:
    """The override variables and CMAKE_ARGS ours gives its build, for the baselines' builds."""
    env = {s.override: str(staged[s.name]) for s in lock.external_sources}
    if lock.external_sources:
        env["CMAKE_ARGS"] = plan.FULLY_DISCONNECTED
    return env


def uv_bare(world: TestWorld, lock: Lock, pylock_path: Path, dest: Path, uv_cache: Path,
            externals: dict[str, str], python: str = PY) -> None:
    env = uv_shell.uv_env(uv_cache)
    uv = uv_shell.uv_bin()
    venv = dest / "venv"
    sh([uv, "venv", "--python", python, str(venv)], env=env)
    sh([uv, "pip", "sync", "--preview-features", "pylock", "--python", str(venv / "bin/python"), str(pylock_path)],
       env=env)
    clone_and_strip(world, lock, dest / "src", venv / "bin/python")
    build_env = dict(env, VLLM_TARGET_DEVICE=lock.build.target_device, MAX_JOBS="2", **externals)
    sh([uv, "pip", "install", "--python", str(venv / "bin/python"), "--no-build-isolation", "--no-deps",
        "-e", str(dest / "src")], env=build_env)


def pip_flow(world: TestWorld, lock: Lock, dest: Path, pip_cache: Path | None,
             externals: dict[str, str]) -> None:
    env = environment(without=("PIP_", "UV_"), PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
                      PIP_NO_INPUT="1", VLLM_TARGET_DEVICE=lock.build.target_device, MAX_JOBS="2", **externals)
    cache = ["--cache-dir", str(pip_cache)] if pip_cache else ["--no-cache-dir"]
    venv = dest / "venv"
    sh([f"python{PY}", "-m", "venv", str(venv)], env=env)
    pip = [str(venv / "bin/python"), "-m", "pip", "--isolated", *cache]
    torch_family = [f"torch=={lock.torch.version}"] + [
        f"{c.name}=={c.version}" for c in lock.torch.companions if c.name in ("torchvision", "torchaudio")
    ]
    sh([*pip, "install", "--pre", *torch_family, "--index-url", world.torch_nightly_index,
        "--extra-index-url", world.general_index], env=env)  # download.pytorch.org mirrors torch's deps
    clone_and_strip(world, lock, dest / "src", venv / "bin/python")
    sh([*pip, "install", "-r", lock.layout.build_requirements, "--index-url", world.general_index],
       env=env, cwd=dest / "src")
    sh([*pip, "install", "--no-build-isolation", "-e", ".", "--index-url", world.general_index],
       env=env, cwd=dest / "src")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5, help="warm runs per flow (median reported)")
    parser.add_argument("--no-cold", action="store_true", help="skip the cold (empty cache) runs")
    args = parser.parse_args()
    byte_compile_vllm_lock()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-install-"))
    work.mkdir(parents=True, exist_ok=True)
    with TestWorld.create(work / "world") as world:
        cache = work / "cache"
        lock, lock_path, _ = resolve(
            ResolveRequest(repo=world.repo_url, torch_index=world.torch_nightly_index,
                           general_index=world.general_index, python=PY, platform=host_platform(),
                           torch_date=world.latest_consistent_date.isoformat(), target_device="cpu",
                           output=work / "dev.lock.toml", cache=cache, name="dev"),
            QUIET,
        )
        pylock_path = work / "pylock.dev.toml"
        pylock_path.write_text(pylock.to_pylock(lock))
        # The baselines get the external sources ours stages, exported once before any timing.
        externals = external_env(lock,
                                 staging.stage(lock.external_sources, cache, Generation(root=work), lambda _: None))
        results: dict[str, float] = {}
        # cold: empty caches (ours: an empty vllm-lock cache, so even the resolve downloads are redone)
        if not args.no_cold:
            results["ours cold"] = timed(lambda: ours(lock_path, work / "o-cold", work / "cache-cold"))
            results["uv-bare cold"] = timed(
                lambda: uv_bare(world, lock, pylock_path, work / "u-cold", work / "uvc-cold", externals))
            results["pip cold"] = timed(lambda: pip_flow(world, lock, work / "p-cold", None, externals))
        # warm: caches filled by a first run into another directory; then the flows take turns
        # (one run of each per round), so that a change in the machine's load hits all of them
        binary = interpreter_binary(PY, cache)
        flows: dict[str, Callable[[Path], None]] = {
            "ours": lambda d: ours(lock_path, d, cache),
            "uv-bare": lambda d: uv_bare(world, lock, pylock_path, d, work / "uvc", externals),
            "uv-told": lambda d: uv_bare(world, lock, pylock_path, d, work / "uvc", externals, binary),
            "pip": lambda d: pip_flow(world, lock, d, work / "pipc", externals),
        }
        samples: dict[str, list[float]] = {name: [] for name in flows}
        for name, flow in flows.items():
            flow(work / f"{name}-prime")
        for i in range(args.repeat):
            for name, flow in flows.items():
                samples[name].append(timed(functools.partial(flow, work / f"{name}-warm{i}")))
        for name, values in samples.items():
            results[f"{name} warm"] = statistics.median(values)
        results["ours no-op rerun"] = median_of(args.repeat, lambda i: ours(lock_path, work / "ours-warm0", cache))

    for name, seconds in results.items():
        print(f"{name:18s} {seconds:7.2f} s")
    print("ours: vllm-lock install (one process, its modules byte-compiled as pip installs them); uv-bare: uv venv, uv "
          "pip sync, git clone, stripping script,")
    print("uv pip install -e (processes), with the same staged external sources and "
          "-DFETCHCONTENT_FULLY_DISCONNECTED=ON;")
    print("pip: the Phoenix flow with the same staged external sources")
    for mode in ("warm",) if args.no_cold else ("warm", "cold"):
        o, u, p = results[f"ours {mode}"], results[f"uv-bare {mode}"], results[f"pip {mode}"]
        print(f"{mode}: ours / uv-bare = {ratio(o, u)} (target <= 1.2x); pip / ours = {ratio(p, o)} (target >= 3x)")
        if f"uv-told {mode}" in results:
            print(f"{mode}: ours / uv-told = {ratio(o, results[f'uv-told {mode}'])} (bare told the interpreter binary)")
    print(f"warm figures: median of {args.repeat} runs each; cold: one run each")
    print(f"no-op rerun: {results['ours no-op rerun']:.2f} s (target < 2 s)")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
