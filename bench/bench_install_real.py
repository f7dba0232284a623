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
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "real"))

from corpus import link_files, local_path, make_vllm_repo, serve_torch_index  # noqa: E402
from sdists import cache_dir  # noqa: E402
from test_real_cmake import EXPECTED  # noqa: E402

from vllm_lock import pylock  # noqa: E402
from vllm_lock.actions.resolve import ResolveRequest, resolve  # noqa: E402
from vllm_lock.mirrors import parse  # noqa: E402
from vllm_lock.progress import QUIET  # noqa: E402
from vllm_lock.shell import uv as uv_shell  # noqa: E402
from vllm_lock.shell.store import Store  # noqa: E402

PY, PLATFORM, PYPI = "3.11", "x86_64-manylinux_2_36", "https://pypi.org/simple"
TORCH = {"0.11.2": "2.9.0", "0.20.2": "2.11.0", "0.30.0": "2.13.0", "0.33.0": "2.14.0"}
VLLM_LOCK = Path(sys.executable).with_name("vllm-lock")
_SHOWN = re.compile(r"^    ([A-Z][A-Z0-9_]*)=(.*)$", re.MULTILINE)
_PHASE = re.compile(r"^    ([A-Za-z][A-Za-z ]*): ([0-9.]+)s$", re.MULTILINE)


def sh(argv: list[str], *, env: dict[str, str], cwd: Path | None = None) -> str:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(argv)}\n{result.stdout[-2000:]}\n"
                         f"{result.stderr[-3000:]}")
    return result.stderr




def build_section(stderr: str) -> str:
    return stderr.split("==> build", 1)[1].split("==> ", 1)[0]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="0.33.0", choices=sorted(TORCH))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ours-log", type=Path, help="write ours' progress output (last run) here")
    parser.add_argument("--profile", type=Path, help="after the timed runs, one more run of ours under "
                        "pyinstrument (`pip install pyinstrument`), its text report written here")
    args = parser.parse_args()
    listener, torch_index = serve_torch_index()
    kept = cache_dir().parent / "real-corpus-wheels"
    root = Path(tempfile.mkdtemp(prefix="bench-install-real-"))
    cache = root / "cache"
    try:
        repo = make_vllm_repo(args.version, root / "github", EXPECTED[(args.version, "cuda", "x86_64")])
        mirrors = parse([repo.mirror], None)
        resolve_cache = root / "resolve-cache"
        resolve_cache.mkdir()
        (cache_dir().parent / "real-corpus-uv").mkdir(parents=True, exist_ok=True)
        os.symlink(cache_dir().parent / "real-corpus-uv", resolve_cache / "uv")
        lock, lock_path, _ = resolve(ResolveRequest(
            repo=repo.url, ref="main", torch_channel="release", torch_version=TORCH[args.version], cuda="cu128",
            torch_index=torch_index, general_index=PYPI, python=PY, platform=PLATFORM, target_device="empty",
            output=root / "empty.lock.toml", cache=resolve_cache, mirrors=mirrors, without_rust=True), QUIET)
        link_files(kept, cache / "cas")

        env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VLLM_LOCK_"))}
        env.update(VLLM_LOCK_CACHE=str(cache))

        def ours(dest: Path, prefix: tuple[str, ...] = (str(VLLM_LOCK),)) -> str:
            return sh([*prefix, "install", str(lock_path), "--venv", str(dest / "vllm"), "--src",
                       str(dest / "vllm_repo"), "--skip-gpu-check", "--max-jobs", "2", "--mirror", repo.mirror],
                       env=env)

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
            start = time.perf_counter()
            sh(argv, env=step_env, cwd=cwd)
            bare_steps[name] = round(time.perf_counter() - start, 2)

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

        binary = uv_shell.find_python(PY, cache)
        assert binary is not None

        def told_venv(dest: Path) -> float:
            start = time.perf_counter()
            sh([uv, "venv", "--python", binary, str(dest / "venv-told")], env=uv_env)
            return time.perf_counter() - start

        bare(root / "bare-prime")
        told_venv(root / "bare-prime")
        ours_runs: list[float] = []
        bare_runs: list[float] = []
        told_runs: list[float] = []
        stderr = ""
        for i in range(args.runs):
            start = time.perf_counter()
            stderr = ours(root / f"ours-{i}")
            ours_runs.append(time.perf_counter() - start)
            start = time.perf_counter()
            bare(root / f"bare-{i}")
            bare_runs.append(time.perf_counter() - start)
            told_runs.append(bare_runs[-1] - bare_steps["venv"] + told_venv(root / f"bare-{i}"))
        if args.ours_log:
            args.ours_log.write_text(stderr)
        if args.profile:
            ours(root / "ours-profiled", (sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-o",
                                          str(args.profile), str(VLLM_LOCK)))
    finally:
        listener.close()
        if (cache / "cas").is_dir():
            link_files(cache / "cas", kept)
        shutil.rmtree(root, ignore_errors=True)
    ours_s, bare_s, told_s = (statistics.median(runs) for runs in (ours_runs, bare_runs, told_runs))
    print(f"vLLM {args.version}, target empty, Python {PY}, {len(lock.packages)} packages (wheels from the local "
          "store)")
    print(f"one priming run each, then {args.runs} runs each, alternating; medians (min-max)")
    print(f"vllm-lock install (ours)  {ours_s:7.2f} s   ({min(ours_runs):.2f}-{max(ours_runs):.2f})")
    print(f"uv venv + uv pip sync + git clone/checkout + strip + uv pip install -e (bare)  "
          f"{bare_s:7.2f} s   ({min(bare_runs):.2f}-{max(bare_runs):.2f})")
    print(f"the same, bare told the interpreter ({binary})  {told_s:7.2f} s   "
          f"({min(told_runs):.2f}-{max(told_runs):.2f})")
    print(f"ratio ours/bare           {ours_s / bare_s:7.2f}x  (target <= 1.1x); bare told the interpreter: "
          f"{ours_s / told_s:.2f}x")
    print("ours' phases (last run): " + ", ".join(f"{name} {seconds}s" for name, seconds in _PHASE.findall(stderr)))
    print("bare's steps (last run): " + ", ".join(f"{name} {seconds}s" for name, seconds in bare_steps.items()))
    shown = dict(_SHOWN.findall(build_section(primed)))
    print("bare build environment: " + " ".join(f"{k}={build_env[k]}" for k in shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
