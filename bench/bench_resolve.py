"""Resolve speed on the test world: `vllm-lock resolve` against a bare `uv pip compile` of the
same package set, each run as a user runs it (a new process per run, warm caches).

    .venv/bin/python bench/bench_resolve.py [--runs 5]

  ours      `vllm-lock resolve ... -o LOCK` (the console script of this virtualenv): git ls-remote,
            mirror, stripping script, torch index pages, one `uv pip compile`, hashes (a warm
            resolve only sends a HEAD per unhashed nightly: its ETag did not change), lock writing.
  baseline  `uv pip compile` of the very requirement set ours compiles (runtime + build + the
            torch family pinned to the torch index as an explicit index), same target, same
            indexes, same uv cache, in two forms:
            as typed      the command a user types: uv looks for a Python matching --python-version
                          (on this machine through pyenv's shims, ~0.5 s of bash scripts)
            --python      the same command told which interpreter to run (this one), as ours tells
                          uv: the work without the looking; ratios against both are printed

Both get one warm-up run first; the figures are medians of --runs runs, interleaved. The
nightly-page parse is timed in-process (it is a pure function). Every printed figure is
computed from what this script measured.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from vllm_lock import nightly, resolution
from vllm_lock.model import Target
from vllm_lock.shell import lockfiles
from vllm_lock.shell import uv as uv_shell
from vllm_lock_testworld import TestWorld

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common, as mypy names it

from bench.common import (  # noqa: E402
    VLLM_LOCK,
    byte_compile_vllm_lock,
    environment,
    ratio,
    sh,
    timed,
    told_interpreter,
)

PY, PLATFORM = "3.12", "x86_64-manylinux_2_28"


def nightly_page(versions: int = 60, files_per_version: int = 30) -> str:
    pythons = ["cp310", "cp311", "cp312", "cp313", "cp313t", "cp314"]
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "macosx_11_0_arm64", "linux_s390x"]
    rows = []
    for v in range(versions):
        day = f"202609{1 + v // 30:02d}" if v < 30 else f"202610{1 + (v - 30):02d}"
        for f in range(files_per_version):
            py, plat = pythons[f % 6], platforms[f // 6 % 5]
            name = f"torch-2.10.0.dev{day}%2Bcu128-{py}-{py}-{plat}.whl"
            rows.append(f'<a href="https://download-r2.pytorch.org/whl/nightly/cu128/{name}">{name}</a><br/>')
    return "<!DOCTYPE html><html><body><h1>Links for torch</h1>\n" + "\n".join(rows) + "\n</body></html>"


def time_page_parse(repeats: int = 20) -> float:
    html = nightly_page()
    target = Target(python=PY, platform=PLATFORM)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        links = nightly.parse_simple_page(html, "https://download.pytorch.org/whl/nightly/cu128/torch/")
        builds = nightly.nightly_builds(links, cuda="cu128", target=target)
        samples.append(time.perf_counter() - start)
    assert len(links) == 1800 and builds
    return statistics.median(samples)


def timed_run(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    return timed(lambda: sh(argv, env=env, cwd=cwd))


def baseline_project(world: TestWorld, lock_path: Path, where: Path) -> Path:
    """The requirement set of the lock ours wrote, as the synthetic project ours hands to uv: the
    torch family as that resolve locked it (taken from the commit), pinned exactly."""
    lock, _ = lockfiles.read(str(lock_path))
    pins = [f"torch=={lock.torch.version}", *(f"{c.name}=={c.version}" for c in lock.torch.companions)]
    requirements = resolution.compile_requirements(lock.layout.runtime_set, lock.layout.build_set, pins,
                                                   "pytorch-triton")
    project = where / "pyproject.toml"
    where.mkdir(parents=True, exist_ok=True)
    project.write_text(resolution.synthetic_project(
        requirements, world.torch_nightly_index, {"torch", *(c.name for c in lock.torch.companions)}))
    return project


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    byte_compile_vllm_lock()
    with tempfile.TemporaryDirectory() as tmp, TestWorld.create(Path(tmp) / "world") as world:
        root = Path(tmp)
        cache = root / "cache"
        env = environment(without=("UV_", "VLLM_LOCK_"), VLLM_LOCK_CACHE=str(cache), HOME=str(root / "home"))
        lock_path = root / "dev.lock.toml"
        ours_argv = [
            str(VLLM_LOCK), "resolve", "--repo", world.repo_url, "--torch-index", world.torch_nightly_index,
            "--index", world.general_index, "--torch-date", world.latest_consistent_date.isoformat(),
            "--python", PY, "--platform", PLATFORM, "-o", str(lock_path),
        ]
        timed_run(ours_argv, env, root)  # warm-up: mirror, hashes, uv cache
        project = baseline_project(world, lock_path, root / "bare")
        bare_argv = uv_shell.compile_argv(project=project, output=project.parent / "pylock.toml", python=PY,
                                          platform=PLATFORM, default_index=world.general_index)
        bare_env = uv_shell.uv_env(cache)  # the same uv cache and settings ours gives uv
        told_argv = told_interpreter(bare_argv, sys.executable)
        timed_run(bare_argv, bare_env, project.parent)  # warm-up
        timed_run(told_argv, bare_env, project.parent)
        ours, bare, told = [], [], []
        for _ in range(args.runs):
            ours.append(timed_run(ours_argv, env, root))
            bare.append(timed_run(bare_argv, bare_env, project.parent))
            told.append(timed_run(told_argv, bare_env, project.parent))

    ours_m, bare_m, told_m = statistics.median(ours), statistics.median(bare), statistics.median(told)
    parse = time_page_parse()
    print("ours:     vllm-lock resolve (new process, its modules byte-compiled as pip installs them: start-up,")
    print("          git, stripping script, index pages, uv pip compile,")
    print("          hashes with a HEAD per unhashed nightly, lock writing)")
    print("baseline: uv pip compile of the same requirement set (new process, same indexes, same uv cache),")
    print("          as typed (uv looks for a Python), and told --python (this interpreter, as ours does)")
    print(f"runs: {args.runs} each after one warm-up, interleaved; medians")
    print(f"resolve (ours)           median {ours_m * 1000:7.1f} ms  (min {min(ours) * 1000:.1f}, max "
          f"{max(ours) * 1000:.1f})")
    print(f"uv pip compile (bare)    median {bare_m * 1000:7.1f} ms  (min {min(bare) * 1000:.1f}, max "
          f"{max(bare) * 1000:.1f})")
    print(f"uv pip compile (--python)  median {told_m * 1000:5.1f} ms  (min {min(told) * 1000:.1f}, max "
          f"{max(told) * 1000:.1f})")
    print(f"ratio ours/bare as typed        {ratio(ours_m, bare_m, 7)}   (target <= 1.5x)")
    print(f"ratio ours/bare told --python   {ratio(ours_m, told_m, 7)}   (uv's looking left out of both sides)")
    print(f"nightly page parse 60x30 median {parse * 1000:7.1f} ms   (in-process, target <= 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
