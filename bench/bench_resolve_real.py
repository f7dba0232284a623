"""Resolve of the newest real vLLM sdist (the corpus of tests/real: PyPI's vLLM 0.33.0 as a git
repository, its external repositories from local stand-ins through --mirror, the torch family from
a local index, the general index PyPI itself) against a bare `uv pip compile` of the same set.

    .venv/bin/python bench/bench_resolve_real.py [--version 0.33.0] [--device cuda|empty] [--runs 5]

  ours      `vllm-lock resolve ... --mirror ...` (a new process): git, the stripping script,
            cmake evaluation, torch index pages, uv pip compile, hashes, lock writing.
  baseline  `uv pip compile` of the very requirement set ours compiled (runtime + build + the
            torch family pinned, routed to the torch index as an explicit index), same target,
            same indexes, same uv cache, a fresh compile (no earlier output file: uv would take
            its pins as preferences, which ours' compile never has), in two forms: as a user
            types it (uv looks for a Python matching --python-version: on this machine through
            pyenv's shims) and told --python (this interpreter, as ours tells uv).

One warm-up run each (fills uv's cache, the git mirrors and the sdist cache), then --runs timed
runs of each, alternating (ours, bare, bare told...), medians printed. Hashing is reported apart
(ours' own "hashes" phase, from its progress output). PyPI's answers vary from run to run (uv
revalidates its cached pages): the spread is printed with the medians.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common, as mypy names it

from bench.common import (  # noqa: E402
    VLLM_LOCK,
    add_ours_options,
    environment,
    kept_uv_cache,
    local_torch_index,
    phases,
    profiled,
    ratio,
    real_corpus_on_path,
    sh,
    spread,
    timed_result,
    told_interpreter,
)

real_corpus_on_path()

from corpus import make_vllm_repo  # noqa: E402
from test_real_cmake import EXPECTED  # noqa: E402

from vllm_lock import resolution  # noqa: E402
from vllm_lock.shell import lockfiles  # noqa: E402
from vllm_lock.shell import uv as uv_shell  # noqa: E402

PY, PLATFORM, PYPI = "3.12", "x86_64-manylinux_2_39", "https://pypi.org/simple"
TORCH = {"0.8.5.post1": "2.6.0", "0.11.2": "2.9.0", "0.20.2": "2.11.0", "0.30.0": "2.13.0", "0.33.0": "2.14.0"}
_HASHES = re.compile(r"^\s*hashes: ([0-9.]+)s", re.MULTILINE)


def timed(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    """The seconds argv took, and its progress output (stderr)."""
    seconds, result = timed_result(lambda: sh(argv, env=env, cwd=cwd))
    return seconds, result.stderr


def bare_project(lock_path: Path, torch_index: str, where: Path) -> Path:
    lock, _ = lockfiles.read(str(lock_path))
    # as ours asks: torch and its family pinned, triton left to torch's own pin
    pins = [f"torch=={lock.torch.version}",
            *(f"{c.name}=={c.version}" for c in lock.torch.companions if not c.name.endswith("triton"))]
    requirements = resolution.compile_requirements(lock.layout.runtime_set, lock.layout.build_set, pins, "triton",
                                                   lock.torch.left_out)
    where.mkdir(parents=True, exist_ok=True)
    project = where / "pyproject.toml"
    project.write_text(resolution.synthetic_project(
        requirements, torch_index, {"torch", "triton", *(c.name for c in lock.torch.companions)}))
    return project


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="0.33.0")
    parser.add_argument("--device", default="cuda", choices=("cuda", "empty"))
    parser.add_argument("--runs", type=int, default=5)
    add_ours_options(parser)
    args = parser.parse_args()
    with local_torch_index() as torch_index:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            repo = make_vllm_repo(args.version, root / "github", EXPECTED[(args.version, "cuda", "x86_64")])
            cache = root / "cache"
            kept_uv_cache(cache)
            env = environment(without=("UV_", "VLLM_LOCK_"), VLLM_LOCK_CACHE=str(cache))
            lock_path = root / "real.lock.toml"
            ours_argv = [
                str(VLLM_LOCK), "resolve", "--repo", repo.url, "--ref", "main", "--torch-channel", "release",
                "--torch-version", TORCH[args.version], "--torch-index", torch_index, "--index", PYPI,
                "--python", PY, "--platform", PLATFORM, "--target-device", args.device, "--arch", "12.0",
                "--mirror", repo.mirror, "-o", str(lock_path),
            ]
            timed(ours_argv, env, root)  # warm-up
            project = bare_project(lock_path, torch_index, root / "bare")
            bare_argv = uv_shell.compile_argv(project=project, output=project.parent / "pylock.toml", python=PY,
                                              platform=PLATFORM, default_index=PYPI)
            bare_env = uv_shell.uv_env(cache)
            told_argv = told_interpreter(bare_argv, sys.executable)  # as ours tells uv: nothing to look for
            timed(bare_argv, bare_env, project.parent)  # warm-up
            ours_runs, bare_runs, told_runs, hashing_runs, stderr = [], [], [], [], ""
            for _ in range(args.runs):
                seconds, stderr = timed(ours_argv, env, root)
                ours_runs.append(seconds)
                found = _HASHES.search(stderr)
                hashing_runs.append(float(found.group(1)) if found else float("nan"))
                # a fresh compile, as ours' is: uv takes an existing --output-file's pins as preferences
                # (0.3-0.6 s less work on a rerun), and ours compiles into a new directory each time
                (project.parent / "pylock.toml").unlink(missing_ok=True)
                bare_runs.append(timed(bare_argv, bare_env, project.parent)[0])
                (project.parent / "pylock.toml").unlink(missing_ok=True)
                told_runs.append(timed(told_argv, bare_env, project.parent)[0])
            if args.ours_log:
                full = re.search(r"^full log: (.+)$", stderr, re.MULTILINE)
                args.ours_log.write_text(stderr + "\n" + (Path(full.group(1)).read_text() if full else ""))
                shutil.copy(project, args.ours_log.with_suffix(".bare-pyproject.toml"))
            if args.profile:
                timed([*profiled(args.profile), *ours_argv[1:]], env, root)
            packages = len(lockfiles.read(str(lock_path))[0].packages)
    ours, bare, told, hashing = (statistics.median(r) for r in (ours_runs, bare_runs, told_runs, hashing_runs))
    print(f"vLLM {args.version}, target {args.device} (--arch 12.0), {packages} packages, general index {PYPI}")
    print(f"one warm-up each, then {args.runs} runs each, alternating; medians (min-max)")
    print(f"resolve (ours)           {ours:7.2f} s   {spread(ours_runs)}   of which hashing {hashing:.2f} s")
    print(f"uv pip compile (bare)    {bare:7.2f} s   {spread(bare_runs)}")
    print(f"uv pip compile (--python) {told:6.2f} s   {spread(told_runs)}   "
          "the same told which interpreter to run, as ours does")
    print(f"ratio ours/bare          {ratio(ours, bare, 7)}  (target <= 1.1x); without hashing "
          f"{ratio(ours - hashing, bare)}; ours/bare told --python {ratio(ours, told)}")
    print("ours' phases: " + phases(stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main())
