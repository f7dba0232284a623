"""What the benchmarks share: a command run as a user runs it (its own process, a failure ending
the benchmark with the command and its output), timing, the environment a side starts from, the
baseline told which interpreter to run, the figures printed (ratios, spreads, ours' phases), and
the real corpus of tests/real (its local torch index, its kept uv cache and wheels).

A benchmark runs as `.venv/bin/python bench/bench_x.py`, so it puts the repository on sys.path and
imports this module as `bench.common`: the name mypy gives it (the repository is its package base).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import vllm_lock
from vllm_lock.shell import uv as uv_shell

T = TypeVar("T")

VLLM_LOCK = Path(sys.executable).with_name("vllm-lock")  # the console script of this virtualenv
REAL_CORPUS = Path(__file__).resolve().parent.parent / "tests" / "real"
_PHASE = re.compile(r"^    ([A-Za-z][A-Za-z ]*): ([0-9.]+)s$", re.MULTILINE)


def sh(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
       cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """argv run to its end, its output captured; a failure ends the benchmark (the command and the
    tails of its output: a figure from a failed run would mean nothing)."""
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {shlex.join(argv)}\n{result.stdout[-2000:]}\n"
                         f"{result.stderr[-4000:]}")
    return result


def timed_result(fn: Callable[[], T]) -> tuple[float, T]:
    """The seconds fn took (wall clock), and what it returned."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def timed(fn: Callable[[], object]) -> float:
    """The seconds fn took (wall clock)."""
    return timed_result(fn)[0]


def environment(*, without: tuple[str, ...], **values: str) -> dict[str, str]:
    """This process's environment less the variables whose names start with one of `without` (the
    caller's own settings, which would change a side's work), with values set."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith(without)}, **values}


def byte_compile_vllm_lock() -> None:
    """What pip does when it installs vllm-lock: its modules byte-compiled once, so a run does not
    compile them again (an editable install under PYTHONDONTWRITEBYTECODE=1 would, every time)."""
    compileall.compile_dir(str(Path(vllm_lock.__file__).parent), quiet=1)


def interpreter_binary(python: str, cache: Path) -> str:
    """The interpreter binary ours makes its venvs from (uv_shell.find_python), for a baseline told
    that binary: uv need not look for a Python (on this machine uv's looking runs pyenv's shims)."""
    binary = uv_shell.find_python(python, cache)
    if binary is None:
        raise SystemExit(f"no Python {python} found")
    return binary


def told_interpreter(argv: Sequence[str], binary: str) -> list[str]:
    """The same uv command told which interpreter to run, as ours tells uv: the work without the looking."""
    return [*argv, "--python", binary]


def install_argv(lock: Path, dest: Path, *extra: str) -> list[str]:
    """`vllm-lock install LOCK` into dest (dest/vllm the venv link, dest/vllm_repo the checkout)."""
    return [str(VLLM_LOCK), "install", str(lock), "--venv", str(dest / "vllm"), "--src", str(dest / "vllm_repo"),
            *extra]


def receipt(dest: Path) -> dict[str, Any]:
    """The receipt of the generation dest/vllm links to (what install_argv(..., dest) installed)."""
    return dict(json.loads((Path(os.readlink(dest / "vllm")).parent / "receipt.json").read_text()))


def signing_key(path: Path, env: Mapping[str, str] | None = None) -> str:
    """A new cache signing key written to path; its public key."""
    return sh([str(VLLM_LOCK), "key", "generate", "--name", "bench", "-o", str(path)], env=env).stdout.strip()


def ratio(numerator: float, denominator: float, width: int = 0) -> str:
    """numerator / denominator as printed: two decimals and an x, right-aligned in width."""
    return f"{numerator / denominator:{width}.2f}x"


def spread(runs: Sequence[float]) -> str:
    """The fastest and the slowest of runs (seconds), as printed beside their median."""
    return f"({min(runs):.2f}-{max(runs):.2f})"


def phases(stderr: str) -> str:
    """Ours' phase timings, from its progress output (the `    name: 1.23s` lines)."""
    return ", ".join(f"{name} {seconds}s" for name, seconds in _PHASE.findall(stderr))


def add_ours_options(parser: argparse.ArgumentParser) -> None:
    """--ours-log and --profile, for a look inside ours' time."""
    parser.add_argument("--ours-log", type=Path, help="write ours' progress output (last run) here")
    parser.add_argument("--profile", type=Path, help="after the timed runs, one more run of ours under "
                        "pyinstrument (`pip install pyinstrument`), its text report written here")


def profiled(report: Path) -> list[str]:
    """vllm-lock run under pyinstrument, its text report written to report (put before its arguments)."""
    return [sys.executable, "-m", "pyinstrument", "-r", "text", "--show-all", "-o", str(report), str(VLLM_LOCK)]


# ---------------------------------------------------------------- the real corpus (tests/real)


def real_corpus_on_path() -> None:
    """tests/real's harness importable (corpus, sdists, test_real_cmake), as pytest makes it for its tests."""
    if str(REAL_CORPUS) not in sys.path:
        sys.path.insert(0, str(REAL_CORPUS))


@contextmanager
def local_torch_index() -> Iterator[str]:
    """The URL of the local stand-in of the torch index, served while inside."""
    real_corpus_on_path()
    from corpus import serve_torch_index

    listener, url = serve_torch_index()
    try:
        yield url
    finally:
        listener.close()


def kept_uv_cache(cache: Path) -> None:
    """cache/uv a link to the suite cache's uv cache of the real corpus (PyPI's pages and wheels
    kept from run to run, as tests/real keep them)."""
    real_corpus_on_path()
    from sdists import SUITE_CACHE

    kept = SUITE_CACHE / "real-corpus-uv"
    kept.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    os.symlink(kept, cache / "uv")


@contextmanager
def kept_wheels(store_root: Path) -> Iterator[None]:
    """The store under store_root given the suite cache's kept real-corpus wheels (hard links), and
    the wheels it gained linked back when done: no wheel is downloaded twice."""
    real_corpus_on_path()
    from corpus import link_files
    from sdists import SUITE_CACHE

    kept = SUITE_CACHE / "real-corpus-wheels"
    link_files(kept, store_root / "cas")
    try:
        yield
    finally:
        if (store_root / "cas").is_dir():
            link_files(store_root / "cas", kept)
