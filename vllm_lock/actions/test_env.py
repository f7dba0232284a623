"""test: run the acceptance checks (acceptance.py) in an installed environment and write a test
receipt (receipt.py), passing or failing: promote needs a passing one for the lock's content."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path

from vllm_lock import acceptance, clock
from vllm_lock import receipt as receipts
from vllm_lock.defaults import DEFAULT_VENV
from vllm_lock.errors import PreflightError
from vllm_lock.generation import Generation
from vllm_lock.model import Lock
from vllm_lock.shell import lockfiles, machine, proc


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvironmentTest:
    lock: Lock
    checks: tuple[acceptance.Check, ...]
    receipt: receipts.TestReceipt
    receipt_path: Path

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


def host_gpus() -> tuple[acceptance.Gpu, ...]:
    report = machine.gpus(os.environ)
    return tuple(acceptance.Gpu(name=g.name, capability=g.capability, driver=report.driver_version)
                 for g in report.gpus)


def install_receipt(venv: Path) -> receipts.InstallReceipt | None:
    """The installer's receipt of the generation `venv` points into, if any."""
    return receipts.read(Generation.of_venv(venv.resolve()))


def check_environment(name: str | None = None, *, venv: Path = DEFAULT_VENV) -> EnvironmentTest:
    """Run the checks in `venv` against lock `name` (default: the lock the environment was
    installed from, else dev) and write the receipt (pass or fail)."""
    python = venv / "bin" / "python"
    if not python.is_file():
        raise PreflightError(f"{venv} is not a virtual environment (no bin/python): install the lock first")
    installed = install_receipt(venv)
    lock, lock_path = lockfiles.read(name or (installed.lock_name if installed else "dev"))
    companions = [p.name for p in lock.torch.companions if p.name in ("torchvision", "torchaudio")]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = proc.run([str(python), "-c", acceptance.PROBE, *companions, "vllm"], env=env, timeout=600, cwd=venv)
    probe = acceptance.parse_probe(done.output, done.tail(3))
    cli = venv / "bin" / "vllm"
    if lock.build.target_device == "empty":
        version_run = (False, "not run: an empty build has no device to infer")
    elif cli.is_file():
        ran = proc.run([str(cli), "--version"], env=env, timeout=600, cwd=venv)
        version_run = (ran.ok, ran.output if ran.ok else f"exit {ran.returncode}: {ran.tail(2)}")
    else:
        version_run = (False, f"{cli} does not exist")
    gpus = host_gpus()
    checks = acceptance.evaluate(lock, probe, version_run, gpus,
                                 (installed.identity, installed.content_hash) if installed else None)
    receipt = receipts.new_test_receipt(lock=lock, lock_path=lock_path, venv=venv, checks=checks, probe=probe,
                                        host_gpus=gpus, host=socket.gethostname() or platform.node() or "unknown",
                                        when=clock.utc_timestamp())
    path = receipts.write_test_receipt(lock_path, receipt)
    return EnvironmentTest(lock=lock, checks=checks, receipt=receipt, receipt_path=path)
