"""Resolve speed on the test world, ours against a bare `uv pip compile` of the same set.

    python bench/bench_resolve.py [--runs 5]

Both run in this process's run, with warm caches (one warm-up each). "ours" is the whole
resolve (git, stripping script, index pages, uv compile, lock writing) minus the time spent
downloading-and-hashing files whose index publishes no hash (reported on its own lines: a warm
resolve only asks the server whether their ETag changed; --rehash downloads them again).
Also times parsing a nightly page of 60 versions x 30 files.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from vllm_lock import nightly
from vllm_lock.actions import resolve as resolve_action
from vllm_lock.model import Target
from vllm_lock.progress import Reporter
from vllm_lock.shell import uv as uv_shell
from vllm_lock.testworld import TestWorld


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
    target = Target(python="3.12", platform="x86_64-manylinux_2_28")
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        links = nightly.parse_simple_page(html, "https://download.pytorch.org/whl/nightly/cu128/torch/")
        builds = nightly.nightly_builds(links, cuda="cu128", target=target)
        samples.append(time.perf_counter() - start)
    assert len(links) == 1800 and builds
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = TestWorld.create(root / "world")
        cache = root / "cache"
        request = resolve_action.ResolveRequest(
            repo=world.repo_url, torch_index=world.torch_nightly_index, general_index=world.general_index,
            torch_date=world.latest_consistent_date.isoformat(), output=root / "dev.lock.toml", cache=cache,
        )
        lock, _, _ = resolve_action.resolve(request, Reporter(quiet=True))  # warm-up
        # The bare baseline: the very same requirement set and flags, uv alone.
        # the torch family as this resolve locked it (taken from the commit), pinned exactly
        pins = [f"torch=={lock.torch.version}", *(f"{c.name}=={c.version}" for c in lock.torch.companions)]
        source = resolve_action.SourceFacts(vllm=lock.vllm, layout=lock.layout, external_sources=(),
                                            runtime=lock.layout.runtime_set, build=lock.layout.build_set, removed=())
        project = root / "bare" / "pyproject.toml"
        project.parent.mkdir()
        project.write_text(resolve_action.synthetic_project(
            resolve_action.compile_requirements(source, pins, "pytorch-triton"), world.torch_nightly_index,
            {"torch", *(c.name for c in lock.torch.companions)}))
        argv = uv_shell.compile_argv(project=project, output=project.parent / "pylock.toml", python="3.12",
                                     platform="x86_64-manylinux_2_28", default_index=world.general_index)
        env = uv_shell.uv_env(cache)
        subprocess.run(argv, env=env, check=True)  # warm-up

        ours, hashing, bare = [], [], []
        for _ in range(args.runs):
            reporter = Reporter(quiet=True)
            start = time.perf_counter()
            resolve_action.resolve(request, reporter)
            total = time.perf_counter() - start
            hashing.append(reporter.timings["hashes"])
            ours.append(total - reporter.timings["hashes"])
            start = time.perf_counter()
            subprocess.run(argv, env=env, check=True)
            bare.append(time.perf_counter() - start)
        rehashing = []
        for _ in range(args.runs):
            reporter = Reporter(quiet=True)
            resolve_action.resolve(dataclasses.replace(request, rehash=True), reporter)
            rehashing.append(reporter.timings["hashes"])
        world.close()

    ours_m, bare_m, hash_m = (statistics.median(x) for x in (ours, bare, hashing))
    parse = time_page_parse()
    print(f"resolve (ours, excl. hashing) median {ours_m * 1000:7.1f} ms over {args.runs} runs")
    print(f"uv pip compile (bare)         median {bare_m * 1000:7.1f} ms")
    print(f"ratio ours/bare               {ours_m / bare_m:7.2f}x   (target <= 1.5x)")
    print(f"hashes step, ETag unchanged   median {hash_m * 1000:7.1f} ms (4 unhashed nightlies: HEAD only; excluded above)")
    print(f"hashes step, --rehash         median {statistics.median(rehashing) * 1000:7.1f} ms (the 4 downloaded and hashed again)")
    print(f"nightly page parse 60x30      median {parse * 1000:7.1f} ms   (target <= 50 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
