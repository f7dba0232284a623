"""PyTorch's CPU variant (`--cuda cpu`): accepted for the cpu and empty targets only."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest
from sample_lock import make_lock

from vllm_lock import codec
from vllm_lock.errors import LockInvalidError
from vllm_lock.model import BuildRecipe, Lock, ModelError


def _cpu_lock(target_device: str) -> Lock:
    lock = make_lock()
    torch = dataclasses.replace(lock.torch, cuda="cpu")
    return dataclasses.replace(lock, torch=torch, build=BuildRecipe(cuda_archs=("12.0",), target_device=target_device))


@pytest.mark.parametrize("device", ["cpu", "empty"])
def test_a_cpu_torch_locks_for_cpu_and_empty(device: str) -> None:
    lock = _cpu_lock(device)
    assert codec.loads(codec.dumps(lock)).torch.cuda == "cpu"


def test_a_cpu_torch_cannot_build_for_cuda() -> None:
    with pytest.raises(ModelError, match="a CPU torch cannot build for target device 'cuda'"):
        _cpu_lock("cuda")


def test_a_read_lock_with_cpu_torch_and_cuda_target_is_refused() -> None:
    text = codec.dumps(_cpu_lock("cpu")).replace('target-device = "cpu"', 'target-device = "cuda"')
    with pytest.raises(LockInvalidError, match="inputs.torch.original.cuda"):
        codec.loads(text, check_hash=False)


@pytest.mark.parametrize("variant", ["cpux", "rocm6.4", "cu12"])
def test_other_variants_are_refused(variant: str) -> None:
    lock = make_lock()
    with pytest.raises(ModelError, match="is not like cu128 or cpu"):
        dataclasses.replace(lock, torch=dataclasses.replace(lock.torch, cuda=variant))


def test_resolve_refuses_cpu_torch_for_a_cuda_build(tmp_path: Path) -> None:
    """Checked before any network access: exit 2 and one line."""
    result = subprocess.run(
        [sys.executable, "-m", "vllm_lock.cli", "resolve", "--repo", "https://127.0.0.1:9/none.git",
         "--cuda", "cpu", "--target-device", "cuda", "-o", str(tmp_path / "x.lock.toml")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: --cuda cpu builds only for --target-device cpu or empty, not cuda"
    assert not (tmp_path / "x.lock.toml").exists()
