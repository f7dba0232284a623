"""Install of a real vLLM tree: the `empty` lock of a release sdist (the corpus of tests/real, as
test_real_corpus installs it: Python 3.11, x86_64-manylinux_2_36, every wheel from PyPI, the torch
family from the local stand-in index), ours against the bare flow a user would run for the same work.
Resolved with --no-rust: 0.33.0's Rust frontend needs its crates from static.crates.io, which the
development machines cannot reach (both sides then build vLLM without it).

    .venv/bin/python bench/bench_install_real.py [--version 0.33.0] [--runs 3]

  ours   `vllm-lock install LOCK --mirror ... --skip-gpu-check --max-jobs 2` (a new process):
         preflight, uv venv, wheels staged from the content-addressed cache, offline uv pip sync,
         clone from its git mirror, strip (patched hashes checked), build, verify, receipt, switch.
  bare   the same steps as a user types them, each a process: uv venv --python 3.11; uv pip sync (offline) of a
         pylock whose wheels are the same local files (the cache's wheel store); git clone of the
         same repository + checkout of the locked commit; the stripping script; uv pip install
         --no-build-isolation --no-deps -e . with ours' build environment (the variables ours
         prints in its build step, over the same uv environment and the same uv cache).

Ours makes its venv from the interpreter binary it found (uv need not look; on this machine uv's
looking goes through pyenv's shims), so a second figure is printed for bare told that binary too:
each run's total less its venv step plus a venv from the binary (timed after the run, apart).

Both sides share the cache: the wheel store (linked from the suite cache, so no wheel is
downloaded) and uv's cache (filled by one priming run of each side). Then --runs runs of each,
alternating, each into a new directory; medians (min-max) printed.
"""

from __future__ import annotations

import argparse
import functools
import re
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common, as mypy names it

from bench.common import (  # noqa: E402
    VLLM_LOCK,
    add_ours_options,
    environment,
    install_argv,
    interpreter_binary,
    kept_uv_cache,
    kept_wheels,
    local_torch_index,
    phases,
    profiled,
    ratio,
    real_corpus_on_path,
    sh,
    spread,
    timed,
    timed_result,
)

real_corpus_on_path()

from corpus import local_path, make_vllm_repo  # noqa: E402
from test_real_cmake import EXPECTED  # noqa: E402

from vllm_lock import pylock  # noqa: E402
from vllm_lock.actions.resolve import ResolveRequest, resolve  # noqa: E402
from vllm_lock.mirrors import parse  # noqa: E402
from vllm_lock.progress import QUIET  # noqa: E402
from vllm_lock.shell import uv as uv_shell  # noqa: E402
from vllm_lock.shell.store import Store  # noqa: E402

PY, PLATFORM, PYPI = "3.11", "x86_64-manylinux_2_36", "https://pypi.org/simple"
TORCH = {"0.11.2": "2.9.0", "0.20.2": "2.11.0", "0.30.0": "2.13.0", "0.33.0": "2.14.0"}
_SHOWN = re.compile(r"^    ([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)


def build_section(stderr: str) -> str:
    return stderr.split("==> build", 1)[1].split("==> ", 1)[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="0.33.0", choices=sorted(TORCH))
    parser.add_argument("--runs", type=int, default=3)
    add_ours_options(parser)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-install-real-"))
    cache = root / "cache"
    with ExitStack() as cleanup:  # undone in reverse: the store's new wheels kept, the index stopped, root removed
        cleanup.callback(shutil.rmtree, root, ignore_errors=True)
        torch_index = cleanup.enter_context(local_torch_index())
        repo = make_vllm_repo(args.version, root / "github", EXPECTED[(args.version, "cuda", "x86_64")])
        mirrors = parse([repo.mirror], None)
        resolve_cache = root / "resolve-cache"
        kept_uv_cache(resolve_cache)
        lock, lock_path, _ = resolve(ResolveRequest(
            repo=repo.url, ref="main", torch_channel="release", torch_version=TORCH[args.version], cuda="cu128",
            torch_index=torch_index, general_index=PYPI, python=PY, platform=PLATFORM, target_device="empty",
            output=root / "empty.lock.toml", cache=resolve_cache, mirrors=mirrors, without_rust=True), QUIET)
        cleanup.enter_context(kept_wheels(cache))

        env = environment(without=("UV_", "VLLM_LOCK_"), VLLM_LOCK_CACHE=str(cache))

        def ours(dest: Path, prefix: Sequence[str] = (str(VLLM_LOCK),)) -> str:
            argv = install_argv(lock_path, dest, "--skip-gpu-check", "--max-jobs", "2", "--mirror", repo.mirror)
            return sh([*prefix, *argv[1:]], env=env).stderr

        store = Store(root=cache)
        pylock_path = root / "pylock.local.toml"  # the user's lock file, its wheels the same local files
        pylock_path.write_text(pylock.to_pylock(lock, local_path=lambda _, w: str(store.path(w.sha256, w.filename))))
        uv = uv_shell.uv_bin()
        uv_env = uv_shell.uv_env(cache, offline=True)
        vllm_repo = local_path(repo.github_root, repo.url)
        primed = ours(root / "ours-prime")
        build_env = dict(uv_env, **dict(_SHOWN.findall(build_section(primed))))

        bare_steps: dict[str, float] = {}

        def step(name: str, argv: list[str], step_env: dict[str, str], cwd: Path | None = None) -> None:
            bare_steps[name] = round(timed(lambda: sh(argv, env=step_env, cwd=cwd)), 2)

        def bare(dest: Path) -> None:
            venv, src = dest / "venv", dest / "src"
            python = str(venv / "bin" / "python")
            step("venv", [uv, "venv", "--python", PY, str(venv)], uv_env)
            step("sync", [uv, "pip", "sync", "--preview-features", "pylock", "--python", python, "--offline",
                          "--no-index", str(pylock_path)], uv_env)
            step("clone", ["git", "clone", "-q", "--no-checkout", str(vllm_repo), str(src)], env)
            step("checkout", ["git", "checkout", "-q", lock.vllm.commit], env, src)
            step("strip", [python, *lock.layout.stripping_argv], env, src)
            step("build", [uv, "pip", "install", "--python", python, "--no-build-isolation", "--no-deps", "--offline",
                           "--no-index", "-e", str(src)], build_env)

        binary = interpreter_binary(PY, cache)

        def told_venv(dest: Path) -> float:
            return timed(lambda: sh([uv, "venv", "--python", binary, str(dest / "venv-told")], env=uv_env))

        bare(root / "bare-prime")
        told_venv(root / "bare-prime")
        ours_runs: list[float] = []
        bare_runs: list[float] = []
        told_runs: list[float] = []
        stderr = ""
        for i in range(args.runs):
            seconds, stderr = timed_result(functools.partial(ours, root / f"ours-{i}"))
            ours_runs.append(seconds)
            bare_runs.append(timed(functools.partial(bare, root / f"bare-{i}")))
            told_runs.append(bare_runs[-1] - bare_steps["venv"] + told_venv(root / f"bare-{i}"))
        if args.ours_log:
            args.ours_log.write_text(stderr)
        if args.profile:
            ours(root / "ours-profiled", profiled(args.profile))
    ours_s, bare_s, told_s = (statistics.median(runs) for runs in (ours_runs, bare_runs, told_runs))
    print(f"vLLM {args.version}, target empty, Python {PY}, {len(lock.packages)} packages (wheels from the local "
          "store)")
    print(f"one priming run each, then {args.runs} runs each, alternating; medians (min-max)")
    print(f"vllm-lock install (ours)  {ours_s:7.2f} s   {spread(ours_runs)}")
    print(f"uv venv + uv pip sync + git clone/checkout + strip + uv pip install -e (bare)  "
          f"{bare_s:7.2f} s   {spread(bare_runs)}")
    print(f"the same, bare told the interpreter ({binary})  {told_s:7.2f} s   {spread(told_runs)}")
    print(f"ratio ours/bare           {ratio(ours_s, bare_s, 7)}  (target <= 1.1x); bare told the interpreter: "
          f"{ratio(ours_s, told_s)}")
    print("ours' phases (last run): " + phases(stderr))
    print("bare's steps (last run): " + ", ".join(f"{name} {seconds}s" for name, seconds in bare_steps.items()))
    shown = dict(_SHOWN.findall(build_section(primed)))
    print("bare build environment: " + " ".join(f"{k}={build_env[k]}" for k in shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
