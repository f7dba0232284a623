"""`vllm-lock test`: the acceptance checks (pure: GPU/arch logic in tables), the test receipt they
make, then the action on a real installed environment."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sample_lock import make_lock
from typer.testing import CliRunner

from vllm_lock import acceptance, codec, cuda
from vllm_lock import receipt as receipts
from vllm_lock.actions import test_env
from vllm_lock.actions.install import InstallRequest, install
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.build_identity import build_identity
from vllm_lock.cli import app
from vllm_lock.errors import PreflightError
from vllm_lock.progress import QUIET
from vllm_lock_testworld import TestWorld

# ---------------------------------------------------------------- arch coverage (pure)


@pytest.mark.parametrize(
    ("capability", "archs", "covered"),
    [
        ((12, 0), ("12.0",), True),
        ((12, 0), ("10.0",), False),
        ((12, 1), ("12.0",), True),  # same major, higher minor: cubins are binary compatible
        ((12, 0), ("12.1",), False),
        ((8, 9), ("8.0", "9.0"), True),
        ((9, 0), ("8.0",), False),  # another major never runs sm_80 cubins (no PTX is locked)
        ((9, 0), ("9.0a",), True),
        ((10, 3), ("10.0a",), False),  # arch-specific code runs only on exactly that arch
        ((10, 3), ("10.0f",), True),  # family-specific code runs on the family
        ((10, 0), ("9.0", "12.0"), False),
    ],
)
def test_coverage_table(capability: tuple[int, int], archs: tuple[str, ...], covered: bool) -> None:
    problem = cuda.coverage_problem(capability, archs, "NVIDIA RTX PRO 6000")
    assert (problem is None) is covered


def test_uncovered_gpu_message_says_so() -> None:
    problem = cuda.coverage_problem((12, 0), ("10.0",), "NVIDIA RTX PRO 6000")
    assert problem == (
        "NVIDIA RTX PRO 6000 has compute capability 12.0 (sm_120), which the locked archs 10.0 do not cover: "
        "this build cannot run on this machine (re-resolve with --arch 12.0)"
    )


def test_host_gpus_come_from_nvidia_smi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: a stand-in nvidia-smi prints the real output of an H200 (driver 580.159.04)."""
    smi = tmp_path / "nvidia-smi"
    smi.write_text('#!/bin/sh\ncase "$*" in\n  *--query-gpu*) echo "9.0, NVIDIA H200" ;;\n'
                   '  *) echo "| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0   '
                   '  |" ;;\n'
                   'esac\n')
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    assert test_env.host_gpus() == (acceptance.Gpu(name="NVIDIA H200", capability=(9, 0), driver="580.159.04"),)


def test_empty_build_is_checked_by_its_installed_version_not_its_cli() -> None:
    """`vllm --version` of an empty build fails ("Failed to infer device type"): not a failure."""
    empty = dataclasses.replace(LOCK, build=dataclasses.replace(LOCK.build, target_device="empty"))
    checks = {c.name: c for c in acceptance.evaluate(empty, GOOD_PROBE, (False, "not run"), ())}
    assert "vllm --version" not in checks
    assert checks["vllm version"].ok and checks["vllm version"].detail.startswith("0.11.1 (importlib.metadata")
    broken = {**GOOD_PROBE, "errors": {"vllm": "ImportError: boom"}}
    broken.pop("vllm")
    assert not {c.name: c for c in acceptance.evaluate(empty, broken, (False, ""), ())}["vllm version"].ok


# ---------------------------------------------------------------- evaluate (pure)

LOCK = make_lock()
GOOD_PROBE = {
    "python": "3.12.3",
    "errors": {},
    "torch": {"version": LOCK.torch.version, "cuda": "12.8", "cuda_available": False, "devices": []},
    "torchvision": LOCK.torch.companions[0].version,
    "torchaudio": LOCK.torch.companions[1].version,
    "vllm": "0.11.1",
}
H100 = acceptance.Gpu(name="NVIDIA H100", capability=(9, 0), driver="570.1")


def _with_devices(*devices: tuple[str, tuple[int, int]]) -> dict[str, Any]:
    probe: dict[str, Any] = json.loads(json.dumps(GOOD_PROBE))
    probe["torch"]["cuda_available"] = bool(devices)
    probe["torch"]["devices"] = [{"name": n, "capability": list(c)} for n, c in devices]
    return probe


def _failed(checks: tuple[acceptance.Check, ...]) -> dict[str, str]:
    return {c.name: c.detail for c in checks if not c.ok}


def test_no_gpu_passes_without_gpu_checks() -> None:
    checks = acceptance.evaluate(LOCK, GOOD_PROBE, (True, "0.11.1\n"), ())
    assert all(c.ok for c in checks)
    assert [c.name for c in checks] == [
        "installed from this lock", "import torch", "torch version", "import torchvision", "import torchaudio",
        "import vllm", "vllm --version",
    ]


@pytest.mark.parametrize(
    ("probe", "host", "failed"),
    [
        # a GPU on the host that torch cannot see
        (GOOD_PROBE, (H100,), {"torch sees the GPU"}),
        # torch sees a GPU the locked archs (12.0) do not cover
        (_with_devices(("NVIDIA H100", (9, 0))), (H100,), {"archs cover NVIDIA H100"}),
        # covered
        (_with_devices(("NVIDIA RTX PRO 6000", (12, 0))), (), set()),
    ],
)
def test_gpu_checks(probe: dict[str, Any], host: tuple[acceptance.Gpu, ...], failed: set[str]) -> None:
    checks = acceptance.evaluate(LOCK, probe, (True, "0.11.1"), host)
    assert set(_failed(checks)) == failed


def test_uncovered_gpu_fails_with_a_message() -> None:
    lock = make_lock(archs=("10.0",))
    checks = acceptance.evaluate(lock, _with_devices(("NVIDIA RTX PRO 6000", (12, 0))), (True, "x"), ())
    assert "compute capability 12.0 (sm_120), which the locked archs 10.0 do not cover" in (
        _failed(checks)["archs cover NVIDIA RTX PRO 6000"]
    )


def test_cpu_build_skips_arch_coverage() -> None:
    lock = dataclasses.replace(LOCK, build=dataclasses.replace(LOCK.build, target_device="cpu"))
    checks = acceptance.evaluate(lock, _with_devices(("NVIDIA H100", (9, 0))), (True, "x"), (H100,))
    assert not _failed(checks)
    assert any("not checked: the build targets cpu" in c.detail for c in checks)


def test_version_mismatch_and_import_errors_fail() -> None:
    probe = json.loads(json.dumps(GOOD_PROBE))
    probe["torch"]["version"] = "2.9.0"
    probe["errors"]["vllm"] = "ModuleNotFoundError: No module named 'vllm'"
    del probe["vllm"]
    failed = _failed(acceptance.evaluate(LOCK, probe, (False, "exit 1: boom"), ()))
    assert failed["torch version"] == f"2.9.0, the lock has {LOCK.torch.version}"
    assert failed["import vllm"].startswith("ModuleNotFoundError")
    assert failed["vllm --version"] == "exit 1: boom"


def test_installed_from_another_build_fails() -> None:
    ok = acceptance.installed_from(LOCK, (build_identity(LOCK) + "-wheel", "sha256:x"))
    assert ok.ok and "another lock with the same build" in ok.detail
    other = acceptance.installed_from(LOCK, ("0123456789abcdef", codec.content_hash(LOCK)))
    assert not other.ok


def test_receipt_without_gpu_says_so_and_what_was_checked(tmp_path: Path) -> None:
    checks = acceptance.evaluate(LOCK, GOOD_PROBE, (True, "0.11.1"), ())
    receipt = receipts.new_test_receipt(lock=LOCK, lock_path=tmp_path / "dev.lock.toml", venv=tmp_path,
                                        checks=checks, probe=GOOD_PROBE, host_gpus=(), host="box",
                                        when="2026-11-20T10:00:00Z")
    data = receipt.to_data()
    assert data["result"] == "pass" and receipt.passed
    assert data["lock"]["content-hash"] == codec.content_hash(LOCK)
    assert data["gpu"]["present"] is False
    assert data["gpu"]["note"] == "no GPU present: GPU visibility and arch coverage not checked"
    assert "import vllm" in data["checked"]
    path = receipts.write_test_receipt(tmp_path / "dev.lock.toml", receipt)
    assert path.parent == tmp_path / "receipts" / codec.content_hash(LOCK).removeprefix("sha256:")
    assert path.name == "20261120T100000Z-box.json"
    assert receipts.find_test_receipts(tmp_path / "dev.lock.toml", codec.content_hash(LOCK)) == [(path, receipt)]
    assert receipts.find_test_receipts(tmp_path / "dev.lock.toml", "sha256:" + "0" * 64) == []


def test_receipt_with_gpu_names_it() -> None:
    probe = _with_devices(("NVIDIA RTX PRO 6000", (12, 0)))
    gpu = acceptance.Gpu(name="NVIDIA RTX PRO 6000", capability=(12, 0), driver="575.1")
    checks = acceptance.evaluate(LOCK, probe, (True, "x"), (gpu,))
    receipt = receipts.new_test_receipt(lock=LOCK, lock_path=Path("dev.lock.toml"), venv=Path("/opt/vllm"),
                                        checks=checks, probe=probe, host_gpus=(gpu,), host="box", when="t")
    data = receipt.to_data()
    assert data["gpu"]["present"] is True
    assert data["gpu"]["driver-version"] == "575.1"
    assert data["gpu"]["torch-cuda-version"] == "12.8"
    line = receipt.summary("receipts/x/t-box.json", "ab" * 32)
    assert line.endswith("pass on box at t (NVIDIA RTX PRO 6000 12.0)")


# ---------------------------------------------------------------- a real installed environment


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, world: TestWorld) -> tuple[Path, Path]:
    """A dev lock resolved from the shared test world and installed (read-only use of the world)."""
    root = tmp_path_factory.mktemp("acceptance")
    (root / "locks").mkdir()
    lock_path = root / "locks" / "dev.lock.toml"
    resolve(ResolveRequest(repo=world.repo_url, torch_index=world.torch_nightly_index,
                           general_index=world.general_index, python="3.11", target_device="cpu",
                           platform="x86_64-manylinux_2_28",
                           output=lock_path, cache=root / "cache"), QUIET)
    install(InstallRequest(lock=str(lock_path), venv=root / "opt" / "vllm", src=root / "opt" / "vllm_repo",
                           cache=root / "cache"), QUIET)
    return lock_path, root / "opt" / "vllm"


def test_check_an_installed_env(installed: tuple[Path, Path]) -> None:
    lock_path, venv = installed
    result = test_env.check_environment(str(lock_path), venv=venv)
    assert result.passed, [c for c in result.checks if not c.ok]
    assert result.receipt_path.parent.parent == lock_path.parent / "receipts"
    data = json.loads(result.receipt_path.read_text())
    assert data == result.receipt.to_data()
    assert data["result"] == "pass"
    assert data["gpu"]["present"] is False  # the test world's torch is fake: it sees no GPU
    assert data["lock"]["content-hash"] == codec.content_hash(result.lock)


def test_cli_test_finds_the_installed_lock(installed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    lock_path, venv = installed
    monkeypatch.setenv("VLLM_LOCK_LOCKS_DIR", str(lock_path.parent))
    result = CliRunner().invoke(app, ["test", "--venv", str(venv)])  # NAME from the install receipt
    assert result.exit_code == 0, result.output
    assert "ok    import vllm" in result.output
    assert "no GPU present" in result.output


def test_broken_env_fails_and_writes_a_failing_receipt(installed: tuple[Path, Path], tmp_path: Path) -> None:
    lock_path, _ = installed
    bare = tmp_path / "bare"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    result = test_env.check_environment(str(lock_path), venv=bare)
    assert not result.passed
    assert {c.name for c in result.checks if not c.ok} >= {"import torch", "import vllm", "vllm --version"}
    assert json.loads(result.receipt_path.read_text())["result"] == "fail"


def test_not_a_venv(installed: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(PreflightError, match="not a virtual environment"):
        test_env.check_environment(str(installed[0]), venv=tmp_path)
