"""The compiler cache end to end: the test world's CUDA extension (CMake + nvcc, --arch 9.0
--arch 12.0) built through sccache 0.16.0 with its objects on a real S3 server (rclone serve s3,
loopback). The second build is of a commit that changes only a Python file, in another generation
folder, with no local cache: its compile steps come from S3, and it produces the same cubins."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_cuda_build
from s3server import S3Server, s3_server
from test_cuda_build import _cuobjdump_dir, resolve_cuda, run

from vllm_lock_testworld import TestWorld

pytestmark = pytest.mark.slow


cuda_env = test_cuda_build.cuda_env  # the fixture: nvcc, cmake and cuobjdump, required by scripts/test.sh


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with s3_server(tmp_path_factory.mktemp("s3") / "root") as server:
        yield server


def _python_only_change(world: TestWorld, where: Path) -> str:
    """A copy of the world's vLLM repository with one more commit, which touches only a Python file."""
    subprocess.run(["git", "clone", "-q", world.repo_url, str(where)], check=True)
    (where / "vllm" / "cache_probe.py").write_text('"""Changed by the compiler-cache test."""\n')
    git = ["git", "-C", str(where), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "add", "vllm/cache_probe.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "python only"], check=True)
    changed = subprocess.run([*git, "diff", "--name-only", "HEAD~1", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.split()
    assert changed == ["vllm/cache_probe.py"]
    return "file://" + str(where)


def _receipt(opt: Path) -> dict[str, object]:
    generation = Path(os.readlink(opt / "vllm")).parent
    return dict(json.loads((generation / "receipt.json").read_text()))


def _cubins(opt: Path) -> dict[str, str]:
    """sha256 of every cubin (per arch) in the built extension, as cuobjdump extracts them."""
    library = next((opt / "vllm").resolve().glob("lib/python3.*/site-packages/vllm/_C*.so"), None)
    if library is None:  # editable: the extension sits in the source tree
        library = next((opt / "vllm_repo").resolve().glob("vllm/_C*.so"))
    out = opt / "cubins"
    out.mkdir()
    cuobjdump_dir = _cuobjdump_dir()
    assert cuobjdump_dir is not None  # the module is skipped without it
    subprocess.run([str(cuobjdump_dir / "cuobjdump"), "--extract-elf", "all", str(library)], cwd=out,
                   check=True, capture_output=True)
    return {p.name.split(".")[-2]: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.iterdir())}


def test_second_build_takes_its_compile_steps_from_the_shared_cache(
    world: TestWorld, cuda_env: dict[str, str], s3: S3Server, tmp_path: Path
) -> None:
    cache_url = f"s3://{s3.bucket('objects')}/vllm?endpoint={s3.endpoint}"
    env = {**cuda_env, **s3.credentials}
    first_lock = resolve_cuda(world, tmp_path / "a.lock.toml", env)
    second = tmp_path / "second-repo"
    result = run("resolve", "--repo", _python_only_change(world, second), "--ref", "main", "--torch-index",
                 world.torch_nightly_index, "--index", world.general_index, "--python", "3.11", "--platform",
                 "x86_64-manylinux_2_28", "--arch", "9.0", "--arch", "12.0", "--target-device", "cuda",
                 "-o", str(tmp_path / "b.lock.toml"), env=env)
    assert result.returncode == 0, result.stderr

    first = run("install", str(first_lock), "--venv", str(tmp_path / "a" / "vllm"), "--src",
                str(tmp_path / "a" / "vllm_repo"), "--compiler-cache", cache_url, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    a = _receipt(tmp_path / "a")["compiler-cache"]
    assert isinstance(a, dict) and a["tool"] == "sccache 0.16.0" and a["errors"] == 0
    assert a["misses"] >= 2 and a["hits"] == 0  # the extension's .cu and .cpp files, compiled for real
    assert any((s3.root / "objects" / "vllm").rglob("*")), "nothing reached the S3 server"

    # another machine: its own generation folder and home, no local compiler cache
    env_b = {**env, "HOME": str(tmp_path / "home-b")}
    second_install = run("install", str(tmp_path / "b.lock.toml"), "--venv", str(tmp_path / "b" / "vllm"), "--src",
                         str(tmp_path / "b" / "vllm_repo"), "--compiler-cache", cache_url, env=env_b)
    assert second_install.returncode == 0, second_install.stderr[-3000:]
    b = _receipt(tmp_path / "b")["compiler-cache"]
    assert isinstance(b, dict) and b["errors"] == 0
    assert b["hits"] + b["misses"] == a["misses"]  # the same compile steps
    assert b["hits"] / (b["hits"] + b["misses"]) >= 0.9, b
    assert f"compiler cache: {b['hits']} of {b['hits'] + b['misses']} compile steps from the cache" in \
        second_install.stderr
    assert _receipt(tmp_path / "a")["identity"] != _receipt(tmp_path / "b")["identity"]  # different commits
    first_cubins = _cubins(tmp_path / "a")
    assert sorted(first_cubins) == ["sm_120", "sm_90"] and first_cubins == _cubins(tmp_path / "b")


def test_a_wrong_sccache_is_refused_before_the_build(world: TestWorld, cuda_env: dict[str, str],
                                                     tmp_path: Path) -> None:
    fake = tmp_path / "sccache"
    fake.write_text("#!/bin/sh\necho 'sccache 0.10.0'\n")
    fake.chmod(0o755)
    lock = resolve_cuda(world, tmp_path / "a.lock.toml", cuda_env)
    result = run("install", str(lock), "--venv", str(tmp_path / "vllm"), "--src", str(tmp_path / "vllm_repo"),
                 "--compiler-cache", str(tmp_path / "objects"), env={**cuda_env, "VLLM_LOCK_SCCACHE": str(fake)})
    assert result.returncode == 7, result.stderr[-2000:]
    assert [line for line in result.stderr.splitlines() if line.startswith("error:")] == [
        f"error: --compiler-cache needs sccache 0.16.0; {fake} is 0.10.0"]
    assert not (tmp_path / "vllm").exists()


def test_a_bad_compiler_cache_url_is_a_usage_error(tmp_path: Path) -> None:
    result = run("install", str(tmp_path / "none.lock.toml"), "--compiler-cache", "ftp://x/y", env=dict(os.environ))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: compiler cache 'ftp://x/y': use a folder, file:///folder or s3://bucket/prefix"
