"""Benchmark the second install of a lock from the binary cache on the test world (loopback only).

  prime      `vllm-lock install LOCK --push file://CACHE` builds vLLM and pushes its wheel with a
             signed entry; then one substituted install of each side below (not timed: the
             verified wheel enters the store, uv's cache is warm for the same paths on both sides)
  ours       `vllm-lock install LOCK --cache file://CACHE --trusted-cache-key PUB` into a new
             target (one process, the console script of this virtualenv): preflight, venv, the
             entry from the cache (signature) and its wheel from the store (sha256 checked when it
             entered), one uv sync of the locked wheels and it with the checkout beside it, strip,
             verification, receipt, switch; compiler calls counted through CC/CXX wrappers and
             asserted zero
  uv         `uv venv --python 3.x` + one `uv pip install --offline --no-index --no-deps` of the same
             files: the locked wheels this machine installs (from the same store) plus the cached
             vLLM wheel (from the same cache directory); the same warm uv cache
  uv-told    the same with `uv venv --python <the interpreter binary>`, as ours makes its venv
             (uv does not look for a Python; on this machine its looking runs pyenv's shims)
  uv+check   uv, then the check ours runs on every new environment, built or substituted
             (`vllm --version`; for an `empty` build `import vllm`, which is what it prints), as
             Phoenix's own flow checks `vllm --version` after its pip install: the same work
  told+check uv-told, then the same check: the same work with no search for a Python on either side

With --lock LOCK (and no test world or real tree) the same comparison on any lock, e.g. a CUDA lock
on a machine that can fetch its wheels and build it once: the priming build is the real one.

The same comparison on a real tree (--real, on by default; --no-real skips it): vLLM 0.33.0's
`empty` lock as tests/real/test_real_corpus.py resolves it (its sdist as the repository, every
wheel from PyPI, kept in the suite cache so none is downloaded again, the torch family from the
local stand-in index, --no-rust), primed the same way; there uv's work is seconds, not tenths.

One run each side by default (the issue's rule); --runs N times each side N times, the sides taking
turns (ours, uv, uv-told, ours, ...), each into a new path, and prints every run, the medians and the
ratio of the medians: on a shared machine one run can be off by a factor of two. Both ratios printed.

    .venv/bin/python bench/bench_cache_install.py [--workdir DIR] [--no-real] [--runs N]
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
from dataclasses import dataclass
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename

from vllm_lock.actions.install import built_version, version_check
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.model import Lock
from vllm_lock.progress import QUIET
from vllm_lock.shell import lockfiles, staging
from vllm_lock.shell import uv as uv_shell
from vllm_lock.shell.store import Store
from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.compilers import compiler_calls, compiler_wrappers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common, as mypy names it

from bench.common import (  # noqa: E402
    environment,
    install_argv,
    interpreter_binary,
    kept_uv_cache,
    kept_wheels,
    local_torch_index,
    ratio,
    real_corpus_on_path,
    receipt,
    sh,
    signing_key,
    timed,
)

PY = "3.11"


def installed_wheels(lock: Lock, store: Store) -> list[Path]:
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


@dataclass(frozen=True, kw_only=True)
class Compared:
    what: str
    lock: Lock
    built_compiles: int
    runs: dict[str, list[float]]  # side ("ours", "uv", "uv-told", "uv+check", "told+check") -> seconds
    ours_compiles: int
    wheels: int
    steps: dict[str, float]

    def median(self, side: str) -> float:
        return statistics.median(self.runs[side])


def compare(what: str, lock: Lock, lock_path: Path, store_root: Path, work: Path, extra: list[str],
            env: dict[str, str], runs: int) -> Compared:
    """Prime (build + push, not timed), then `runs` timed substituted installs and baselines, in turns."""
    binary_cache = work / "binary-cache"
    key = work / "bench.secret"
    public = signing_key(key, env)
    cc_env, calls = compiler_wrappers(work / "cc")
    env = dict(env, VLLM_LOCK_CACHE=str(store_root), **cc_env)
    # as an installed vllm-lock runs: pip writes its bytecode at install time (this sandbox's
    # PYTHONDONTWRITEBYTECODE=1 would compile ~60 modules from source on every run); the
    # priming install below writes it
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    sh(install_argv(lock_path, work / "prime", "--push", f"file://{binary_cache}", "--cache-signing-key", str(key),
                    *extra), env=env)
    built_compiles = compiler_calls(calls)

    def substituted(dest: Path) -> None:
        sh(install_argv(lock_path, dest, "--cache", f"file://{binary_cache}", "--trusted-cache-key", public, *extra),
           env=env)

    substituted(work / "ours-prime")  # not timed: the verified wheel enters the store, uv's cache is warm
    vllm_wheel = next(binary_cache.glob("wheels/*/vllm-*.whl"))
    files = [*installed_wheels(lock, Store(store_root)), vllm_wheel]
    uv_env = uv_shell.uv_env(store_root)
    uv = uv_shell.uv_bin()

    binary = interpreter_binary(PY, store_root)

    def bare(venv: Path, python: str = PY) -> None:
        sh([uv, "venv", "--python", python, str(venv)], env=uv_env)
        sh([uv, "pip", "install", "--python", str(venv / "bin/python"), "--offline", "--no-index", "--no-deps",
            *map(str, files)], env=uv_env)

    def checked(venv: Path, python: str = PY) -> None:
        bare(venv, python)
        ok, version = built_version(lock, venv)
        assert ok, version

    bare(work / "uv-prime" / "venv")  # not timed: uv's cache warm for these paths, as ours' is
    sides: dict[str, Callable[[Path], None]] = {
        "ours": substituted, "uv": bare, "uv-told": functools.partial(bare, python=binary),
        "uv+check": checked, "told+check": functools.partial(checked, python=binary),
    }
    timings: dict[str, list[float]] = {side: [] for side in sides}
    for run in range(runs):  # in turns: a slow moment of the machine falls on every side alike
        for side, install in sides.items():
            timings[side].append(timed(functools.partial(install, work / f"{side}-{run}" / "venv")))
    ours_compiles = compiler_calls(calls) - built_compiles
    ours_receipt = receipt(work / "ours-0" / "venv")
    assert ours_receipt["substituted-from"], "the second install did not substitute"
    assert ours_compiles == 0, f"the second installs made {ours_compiles} compiler calls"
    return Compared(what=what, lock=lock, built_compiles=built_compiles, runs=timings, ours_compiles=ours_compiles,
                    wheels=len(files), steps=dict(ours_receipt["timings"]))


def world_lock(world: TestWorld, work: Path, store_root: Path) -> tuple[Lock, Path]:
    lock, lock_path, _ = resolve(
        ResolveRequest(repo=world.repo_url, torch_index=world.torch_nightly_index,
                       general_index=world.general_index, python=PY, platform="x86_64-manylinux_2_28",
                       torch_date=world.latest_consistent_date.isoformat(), target_device="cpu",
                       editable=False, output=work / "dev.lock.toml", cache=store_root, name="dev"),
        QUIET,
    )
    return lock, lock_path


def real_compare(work: Path, runs: int, version: str = "0.33.0") -> Compared:
    """The real tree, resolved and primed as tests/real and bench_install_real.py do."""
    real_corpus_on_path()
    from corpus import make_vllm_repo
    from test_real_cmake import EXPECTED

    from vllm_lock.mirrors import parse

    store_root = work / "cache"
    with local_torch_index() as torch_index:
        repo = make_vllm_repo(version, work / "github", EXPECTED[(version, "cuda", "x86_64")])
        resolve_cache = work / "resolve-cache"
        kept_uv_cache(resolve_cache)
        lock, lock_path, _ = resolve(ResolveRequest(
            repo=repo.url, ref="main", torch_channel="release", torch_version="2.14.0", cuda="cu128",
            torch_index=torch_index, general_index="https://pypi.org/simple", python=PY,
            platform="x86_64-manylinux_2_36", target_device="empty", editable=False,
            output=work / "empty.lock.toml", cache=resolve_cache, mirrors=parse([repo.mirror], None),
            without_rust=True), QUIET)
        with kept_wheels(store_root):
            return compare(f"vLLM {version} `empty` lock ({len(lock.packages)} packages, real PyPI wheels)", lock,
                           lock_path, store_root, work, ["--skip-gpu-check", "--mirror", repo.mirror],
                           environment(without=("UV_", "VLLM_LOCK_")), runs)


def report(result: Compared) -> None:
    many = len(result.runs["ours"]) > 1
    each = f"median of {len(result.runs['ours'])} runs" if many else "one run"
    ours, uv, told, checked, told_checked = map(result.median, ("ours", "uv", "uv-told", "uv+check", "told+check"))

    def runs(side: str) -> str:
        return f"   runs: {' '.join(f'{v:.2f}' for v in result.runs[side])}" if many else ""

    print(f"== {result.what}")
    print(f"   priming build: {result.built_compiles} compiler calls")
    print(f"   ours: vllm-lock install LOCK --cache file://CACHE (substituted) {ours:7.2f} s   "
          f"compiler calls: {result.ours_compiles}{runs('ours')}")
    print(f"   uv:   uv venv + uv pip install --offline --no-deps of the same {result.wheels} wheel files "
          f"{uv:7.2f} s{runs('uv')}")
    print(f"   uv-told: the same, uv venv --python <binary>                              {told:7.2f} s"
          f"{runs('uv-told')}")
    print(f"   uv+check: uv, then the check ours runs ({version_check(result.lock)})      {checked:7.2f} s"
          f"{runs('uv+check')}")
    print(f"   told+check: uv-told, then the same check                                  {told_checked:7.2f} s"
          f"{runs('told+check')}")
    print("   ours' steps (s): " + ", ".join(f"{name} {seconds:.2f}" for name, seconds in result.steps.items()))
    print(f"   ours / uv = {ours:.2f} / {uv:.2f} = {ratio(ours, uv)} (target <= 1.2x); ours / uv-told = "
          f"{ratio(ours, told)}; ours / uv+check = {ratio(ours, checked)}, ours / told+check = "
          f"{ratio(ours, told_checked)} (the same work); uv+check / uv = {ratio(checked, uv)} (the check alone); "
          f"{each}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--real", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--runs", type=int, default=1, help="timed runs of each side, in turns (medians printed)")
    parser.add_argument("--lock", type=Path, default=None,
                        help="compare on this lock only (its wheels fetched, its vLLM built once to prime)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cache-install-"))
    work.mkdir(parents=True, exist_ok=True)
    results = []
    try:
        if args.lock is not None:
            lock_path = args.lock.resolve()
            (work / "lock-run").mkdir()
            results.append(compare(f"the lock {lock_path}", lockfiles.read(str(lock_path))[0], lock_path,
                                   work / "lock-run" / "cache", work / "lock-run", [], dict(os.environ), args.runs))
            return
        with TestWorld.create(work / "world") as world:
            store_root = work / "world-run" / "cache"
            lock, lock_path = world_lock(world, work, store_root)
            results.append(compare("the test world's lock (tiny wheels)", lock, lock_path, store_root,
                                   work / "world-run", [], dict(os.environ), args.runs))
        if args.real:
            results.append(real_compare(work / "real-run", args.runs))
    finally:
        for result in results:
            report(result)
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
