"""The fake vLLM builds for real: an editable CPU build with uv (external sources fetched or
overridden) and a regular wheel at a tag."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import uv

from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.repo import git, git_env


def test_fake_vllm_builds_with_uv(world: TestWorld, tmp_path: Path) -> None:
    uv_bin = uv.find_uv_bin()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never",
               UV_NO_CONFIG="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")

    def run(*args: object, cwd: Path | None = None, extra: dict[str, str] | None = None) -> str:
        proc = subprocess.run([str(a) for a in args], cwd=cwd, env={**env, **(extra or {})},
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    checkout = tmp_path / "vllm"
    run("git", "clone", "-q", world.repo_url, checkout)
    venv = tmp_path / "venv"
    py = venv / "bin" / "python"
    run(uv_bin, "venv", "-q", "--python", sys.executable, venv)
    versions = world.nightly_versions(world.latest_consistent_date)
    run(uv_bin, "pip", "install", "-q", "--python", py, "--index-url", world.general_index,
        "setuptools>=77,<80", "setuptools-scm>=8", "wheel", "packaging>=24.2")
    run(uv_bin, "pip", "install", "-q", "--python", py, "--no-deps",
        "--index-url", world.https_url(world.torch_nightly_index), "--cert", world.ca_cert,
        f"torch=={versions['torch']}", f"pytorch-triton=={versions['pytorch-triton']}",
        f"torchaudio=={versions['torchaudio']}", f"torchvision=={versions['torchvision']}")
    out = run(py, "tools/use_existing_torch.py", "--prefix", cwd=checkout)
    assert "removed: torch==2.10.0" in out
    epoch = int(dt.datetime(2026, 11, 20, 12, tzinfo=dt.UTC).timestamp())
    # the CPU build (a plain C extension); the CUDA one (CMake + nvcc) is tests/test_cuda_build.py's
    build_env = {"VLLM_TARGET_DEVICE": "cpu", "SOURCE_DATE_EPOCH": str(epoch), "TORCH_CUDA_ARCH_LIST": "12.0",
                 "VLLM_FLASH_ATTN_VERSION": "2", "MAX_JOBS": "3", "NVCC_THREADS": "2"}
    run(uv_bin, "pip", "install", "-q", "--python", py, "--index-url", world.general_index,
        "--no-build-isolation", "-e", checkout, extra=build_env)
    version = run(venv / "bin" / "vllm", "--version").strip()
    assert version == f"0.32.1.dev2+g{world.commits[-1][:9]}.d20261120"
    info = json.loads(run(py, "-c", "import vllm,pathlib;print(pathlib.Path(vllm.__file__)"
                                    ".with_name('_build_info.json').read_text())"))
    assert info["torch_version"] == versions["torch"] and info["torch_cuda"] == "12.8"
    assert info["TORCH_CUDA_ARCH_LIST"] == "12.0" and info["VLLM_FLASH_ATTN_VERSION"] == "2"
    assert info["MAX_JOBS"] == "3" and info["NVCC_THREADS"] == "2"
    assert info["extension"] == "c" and info["version"] == version
    assert run(py, "-c", "import vllm._C; print(vllm._C.answer())").strip() == "42"
    assert "usage" in run(py, "-m", "vllm.entrypoints.openai.api_server", "--help")
    installed = run(uv_bin, "pip", "list", "--python", py, "--format", "json")
    names = {p["name"] for p in json.loads(installed)}
    assert {"vllm-fake-dep-a", "vllm-fake-dep-b", "open-clip-torch-fake", "filelock"} <= names
    # no override variable: every pin fetched like FetchContent (file://, with the submodule)
    assert info["external_sources"] == {
        "cutlass": {"from": "fetched", "source_id": "cutlass v4.2.1"},
        "vllm-flash-attn": {"from": "fetched", "source_id": "flash-attention newest",
                            "submodule_source_id": "cutlass v4.2.1"},
        "flashmla": {"from": "fetched", "source_id": "flashmla 2"},
    }
    fetched = checkout / ".deps" / "vllm-flash-attn-src"
    assert git(fetched, "rev-parse", "HEAD") == world.external_commit("vllm-flash-attn", "newest")
    assert git(checkout, "check-ignore", ".deps") == ".deps"
    _check_external_overrides(world, tmp_path, py, checkout, {**env, **build_env})


def _export_external_sources(world: TestWorld, into: Path) -> dict[str, str]:
    """Stage sources the way an installer would: a cutlass tag checkout, a flash-attention commit
    with its submodules, a FlashMLA `git archive` (no .git at all)."""
    into.mkdir()
    cutlass, fa, mla = into / "cutlass", into / "flash-attention", into / "FlashMLA"
    git(into, "clone", "-q", "--branch", "v4.1.0", world.external_url("cutlass"), str(cutlass))
    git(into, "clone", "-q", "--no-checkout", world.external_url("vllm-flash-attn"), str(fa))
    git(fa, "checkout", "-q", world.external_commit("vllm-flash-attn", "new"))
    git(fa, "-c", "protocol.file.allow=always", "submodule", "update", "-q", "--init", "--recursive")
    archive = subprocess.run(["git", "archive", world.external_commit("flashmla", "1")],
                             cwd=world.external_root / "vllm-project" / "FlashMLA", env=git_env(),
                             check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tar.extractall(mla, filter="data")
        else:
            tar.extractall(mla)
    return {"VLLM_CUTLASS_SRC_DIR": str(cutlass), "VLLM_FLASH_ATTN_SRC_DIR": str(fa),
            "FLASH_MLA_SRC_DIR": str(mla)}


def _check_external_overrides(world: TestWorld, tmp_path: Path, py: Path, checkout: Path,
                              env: dict[str, str]) -> None:
    """setup.py takes each pin from its override variable when set, and fails clearly on a
    directory that is not a (complete) source tree."""

    def setup_py(extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(py), "setup.py", "--version"], cwd=checkout,
                              env={**env, **extra}, capture_output=True, text=True, timeout=120)

    staged = _export_external_sources(world, tmp_path / "staged")
    proc = setup_py(staged)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads((checkout / "vllm" / "_build_info.json").read_text())
    assert info["external_sources"] == {
        "cutlass": {"from": "override", "source_id": "cutlass v4.1.0"},
        "vllm-flash-attn": {"from": "override", "source_id": "flash-attention new",
                            "submodule_source_id": "cutlass v4.2.1"},
        "flashmla": {"from": "override", "source_id": "flashmla 1"},
    }
    # one override, the rest fetched (the .deps checkouts are reused); empty counts as unset
    proc = setup_py({"FLASH_MLA_SRC_DIR": staged["FLASH_MLA_SRC_DIR"], "VLLM_CUTLASS_SRC_DIR": ""})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    sources = json.loads((checkout / "vllm" / "_build_info.json").read_text())["external_sources"]
    assert {k: v["from"] for k, v in sources.items()} == {
        "cutlass": "fetched", "vllm-flash-attn": "fetched", "flashmla": "override"}
    # flash-attention without its csrc/cutlass submodule (vLLM issue 13424)
    no_sub = tmp_path / "fa-without-submodule"
    git(tmp_path, "clone", "-q", world.external_url("vllm-flash-attn"), str(no_sub))
    proc = setup_py({**staged, "VLLM_FLASH_ATTN_SRC_DIR": str(no_sub)})
    assert proc.returncode != 0
    assert "the git submodule csrc/cutlass is not checked out" in proc.stderr
    assert "13424" in proc.stderr
    # not a directory / not a source tree
    proc = setup_py({**staged, "VLLM_CUTLASS_SRC_DIR": str(tmp_path / "missing")})
    assert proc.returncode != 0 and "VLLM_CUTLASS_SRC_DIR=" in proc.stderr
    assert "is not a directory" in proc.stderr
    proc = setup_py({**staged, "FLASH_MLA_SRC_DIR": str(tmp_path / "staged")})
    assert proc.returncode != 0 and "flashmla: FLASH_MLA_SRC_DIR=" in proc.stderr
    assert "holds no SOURCE_ID" in proc.stderr


def test_fake_vllm_regular_wheel_at_tag(world: TestWorld, tmp_path: Path) -> None:
    """Non-editable build of the clean v0.32.0 checkout: version is the bare tag."""
    uv_bin = uv.find_uv_bin()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VIRTUAL_ENV"))}
    env.update(UV_CACHE_DIR=str(tmp_path / "uv-cache"), UV_PYTHON_DOWNLOADS="never",
               UV_NO_CONFIG="1", GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1",
               VLLM_TARGET_DEVICE="empty")

    def run(*args: object, cwd: Path | None = None) -> str:
        proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    checkout = tmp_path / "vllm"
    run("git", "clone", "-q", "--branch", "v0.32.0", world.repo_url, checkout)
    venv = tmp_path / "venv"
    py = venv / "bin" / "python"
    run(uv_bin, "venv", "-q", "--python", sys.executable, venv)
    torch = world.nightly_versions(world.latest_consistent_date)["torch"]
    run(uv_bin, "pip", "install", "-q", "--python", py, "--index-url", world.general_index,
        "setuptools", "wheel")
    run(uv_bin, "pip", "install", "-q", "--python", py, "--no-deps",
        "--index-url", world.torch_nightly_index, f"torch=={torch}")
    run(uv_bin, "pip", "install", "-q", "--python", py, "--index-url", world.general_index,
        "--no-build-isolation", checkout)
    # like vLLM's, the CLI of an empty build cannot infer a device; the installed version is there
    cli = subprocess.run([str(venv / "bin" / "vllm"), "--version"], capture_output=True, text=True)
    assert cli.returncode != 0 and "Failed to infer device type" in cli.stderr
    assert run(py, "-c", "import importlib.metadata as m; print(m.version('vllm'))", cwd=tmp_path).strip() == "0.32.0"
    code = ("import importlib.resources as r, json; "
            "print(r.files('vllm').joinpath('_build_info.json').read_text())")
    info = json.loads(run(py, "-c", code, cwd=tmp_path))
    assert info["target_device"] == "empty" and info["extension"] == "none"
    assert {k: (v["from"], v["source_id"]) for k, v in info["external_sources"].items()} == {
        "cutlass": ("fetched", "cutlass v4.2.1"),
        "vllm-flash-attn": ("fetched", "flash-attention newest"),
        "flashmla": ("fetched", "flashmla 1"),
    }
    assert "site-packages" in run(py, "-c", "import vllm; print(vllm.__file__)", cwd=tmp_path)
