"""A real CUDA build of the test world's extension (CMake + nvcc, --arch 9.0 --arch 12.0) against
its substitution from the binary cache, and a rebuild through the compiler cache (sccache).

Each side is `vllm-lock install` run as a user runs it (a process, the same lock, the same warm
store of locked wheels); nvcc is a counting wrapper (a CUDA_HOME whose bin/nvcc logs each call
and runs the real one), so "compiler calls" counts every nvcc the build runs.

  build        install LOCK: compiles the extension (no compiler cache)              [timed]
  push build   install LOCK --push file://CACHE --compiler-cache DIR: the same build, through a
               cold sccache, pushed with its signed entry                             [timed]
  substitute   install LOCK --cache file://CACHE into a new target: no compiler call  [timed]
  rebuild      install LOCK2 --compiler-cache DIR, LOCK2 a commit that changes only a Python
               file (another build identity, another generation folder)             [timed]

Printed: each time, nvcc calls, sccache's hits, whether the rebuild's cubins equal the build's,
and the ratios computed from the times measured. One run each.

    .venv/bin/python bench/bench_cache_cuda.py [--workdir DIR] [--cuda-home /usr/local/cuda]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from vllm_lock.actions.demo import host_platform
from vllm_lock_testworld import TestWorld

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench.common, as mypy names it

from bench.common import VLLM_LOCK, environment, install_argv, ratio, receipt, sh, signing_key, timed  # noqa: E402

ARCHS = ("9.0", "12.0")


def counting_cuda_home(real: Path, where: Path) -> tuple[Path, Path]:
    """A CUDA_HOME that is the real one except bin/nvcc, which logs its calls first."""
    where.mkdir(parents=True)
    for entry in real.iterdir():
        if entry.name != "bin":
            (where / entry.name).symlink_to(entry)
    (where / "bin").mkdir()
    for tool in (real / "bin").iterdir():
        if tool.name != "nvcc":
            (where / "bin" / tool.name).symlink_to(tool)
    calls = where / "nvcc-calls.log"
    calls.touch()
    nvcc = where / "bin" / "nvcc"
    nvcc.write_text(f'#!/bin/sh\ncase "$1" in --version) ;; *) echo "$*" >> "{calls}";; esac\n'
                    f'exec "{real / "bin" / "nvcc"}" "$@"\n')
    nvcc.chmod(0o755)
    return where, calls


def nvcc_calls(calls: Path) -> int:
    return len(calls.read_text().splitlines())


def resolve(world: TestWorld, repo_url: str, out: Path, env: dict[str, str]) -> Path:
    arch_args = [arg for arch in ARCHS for arg in ("--arch", arch)]
    sh([str(VLLM_LOCK), "resolve", "--repo", repo_url, "--ref", "main", "--torch-index", world.torch_nightly_index,
        "--index", world.general_index, "--python", f"{sys.version_info[0]}.{sys.version_info[1]}", "--platform",
        host_platform(), *arch_args, "--target-device", "cuda", "--no-editable", "-o", str(out)], env=env)
    return out


def python_only_change(world: TestWorld, where: Path) -> str:
    sh(["git", "clone", "-q", world.repo_url, str(where)])
    (where / "vllm" / "bench_probe.py").write_text('"""Changed by bench_cache_cuda."""\n')
    git = ["git", "-C", str(where), "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    sh([*git, "add", "vllm/bench_probe.py"])
    sh([*git, "commit", "-q", "-m", "python only"])
    return "file://" + str(where)


def install(lock: Path, target: Path, env: dict[str, str], *extra: str) -> float:
    return timed(lambda: sh(install_argv(lock, target, "--skip-gpu-check", *extra), env=env))


def find_cuobjdump(cuda_home: Path) -> Path:
    """The CUDA toolkit's cuobjdump, else the one of the nvidia-cuda-cuobjdump wheel (the test extra)."""
    import sysconfig

    found = [cuda_home / "bin" / "cuobjdump",
             *sorted(Path(sysconfig.get_paths()["purelib"]).glob("nvidia/*/bin/cuobjdump"))]
    return next(p for p in found if p.is_file())


def cubins(target: Path, cuobjdump: Path) -> dict[str, str]:
    library = next((target / "vllm").resolve().glob("lib/python3.*/site-packages/vllm/_C*.so"))
    out = target / "cubins"
    out.mkdir()
    sh([str(cuobjdump), "--extract-elf", "all", str(library)], cwd=out)
    return {p.name.split(".")[-2]: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--cuda-home", type=Path, default=Path(os.environ.get("CUDA_HOME") or "/usr/local/cuda"))
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-cache-cuda-"))
    work.mkdir(parents=True, exist_ok=True)
    cuda_home, calls = counting_cuda_home(args.cuda_home, work / "cuda")
    store = work / "store"
    cuobjdump = find_cuobjdump(args.cuda_home)
    env = environment(without=("UV_", "PIP_"), VLLM_LOCK_CACHE=str(store), CUDA_HOME=str(cuda_home),
                      PATH=f"{cuobjdump.parent}:{os.environ.get('PATH', '')}")  # install's verify lists cubins with it
    with TestWorld.create(work / "world") as world:
        lock = resolve(world, world.repo_url, work / "cuda.lock.toml", env)
        changed = resolve(world, python_only_change(world, work / "changed-repo"), work / "changed.lock.toml", env)
        key = work / "bench.secret"
        public = signing_key(key)
        binary_cache, objects = f"file://{work / 'binary-cache'}", str(work / "sccache-objects")

        build = install(lock, work / "build", env)
        build_calls = nvcc_calls(calls)
        push_build = install(lock, work / "push", env, "--push", binary_cache, "--cache-signing-key", str(key),
                             "--compiler-cache", objects)
        push_calls = nvcc_calls(calls) - build_calls
        before = nvcc_calls(calls)
        substitute = install(lock, work / "substitute", env, "--cache", binary_cache, "--trusted-cache-key", public)
        substitute_calls = nvcc_calls(calls) - before
        before = nvcc_calls(calls)
        rebuild = install(changed, work / "rebuild", env, "--compiler-cache", objects)
        rebuild_calls = nvcc_calls(calls) - before

    substituted = receipt(work / "substitute").get("substituted-from")
    cold, warm = receipt(work / "push")["compiler-cache"], receipt(work / "rebuild")["compiler-cache"]
    assert substituted and substitute_calls == 0, (substituted, substitute_calls)
    assert isinstance(cold, dict) and isinstance(warm, dict)
    same = cubins(work / "build", cuobjdump) == cubins(work / "rebuild", cuobjdump)
    print(f"machine: {os.cpu_count()} CPUs; nvcc at {args.cuda_home}; archs {', '.join(ARCHS)}")
    print(f"build       {build:7.2f} s  nvcc calls {build_calls}")
    print(f"push build  {push_build:7.2f} s  nvcc calls {push_calls}  sccache: {cold['hits']} hits, "
          f"{cold['misses']} misses (cold)")
    print(f"substitute  {substitute:7.2f} s  nvcc calls {substitute_calls}  from {substituted}")
    print(f"rebuild     {rebuild:7.2f} s  nvcc calls {rebuild_calls}  sccache: {warm['hits']} hits, "
          f"{warm['misses']} misses; cubins equal to the build's: {same}")
    print(f"substitute / build = {ratio(substitute, build)}; rebuild / build = {ratio(rebuild, build)}; "
          f"one run each")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
