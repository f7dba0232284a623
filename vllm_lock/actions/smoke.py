"""test: smoke-test an installed environment and write a test receipt.

Checks, in the environment's own Python: torch imports at the locked version, its companions
import at their locked versions, `import vllm`, `vllm --version` (for an `empty` build, which has
no device for the CLI to infer, the installed distribution's version instead). GPU checks run only when a GPU
is present (nvidia-smi on the host, or torch.cuda in the environment): torch must see it, and
each GPU's compute capability must be covered by the locked archs.

Receipts are evidence for promote. They live beside the lock, keyed by the lock's content hash:
    <locks dir>/receipts/<content-hash hex>/<UTC time>-<host>.json
so any lock with exactly that content (whatever its name) finds them, and `promote --commit`
commits them with the locks.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import vllm_lock
from vllm_lock import clock, codec
from vllm_lock import receipt as install_receipts
from vllm_lock.cuda import arch_covers as arch_covers  # the coverage rule lives in cuda.py
from vllm_lock.cuda import coverage_problem
from vllm_lock.defaults import DEFAULT_VENV
from vllm_lock.errors import PreflightError, UsageError
from vllm_lock.model import Lock
from vllm_lock.shell import lockfiles, machine, proc

RECEIPT_VERSION = 1
RECEIPTS_DIR = "receipts"

# Runs inside the environment under test; prints one JSON object. Failures are data, not crashes.
PROBE = r"""
import importlib, importlib.metadata as md, json, sys
out = {"python": sys.version.split()[0], "errors": {}}
def attempt(key, fn):
    try:
        out[key] = fn()
    except BaseException as exc:
        out["errors"][key] = f"{type(exc).__name__}: {exc}"
def torch_facts():
    import torch
    facts = {"version": str(torch.__version__),
             "cuda": getattr(getattr(torch, "version", None), "cuda", None), "devices": []}
    cuda = getattr(torch, "cuda", None)
    facts["cuda_available"] = bool(cuda is not None and cuda.is_available())
    if facts["cuda_available"]:
        for i in range(cuda.device_count()):
            facts["devices"].append({"name": cuda.get_device_name(i),
                                     "capability": list(cuda.get_device_capability(i))})
    return facts
def imported(name):
    importlib.import_module(name)
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None
attempt("torch", torch_facts)
for name in sys.argv[1:]:
    attempt(name, lambda n=name: imported(n))
print("VLLM_LOCK_PROBE " + json.dumps(out))
"""


# ---------------------------------------------------------------- pure core


@dataclass(frozen=True, kw_only=True, slots=True)
class Gpu:
    name: str
    capability: tuple[int, int]
    driver: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Check:
    name: str
    ok: bool
    detail: str


def installed_from(lock: Lock, installed: tuple[str, str] | None) -> Check:
    """Whether the environment's install receipt (build identity, content hash) matches the lock."""
    if installed is None:
        return Check(name="installed from this lock", ok=True,
                     detail="not checked: the environment has no vllm-lock install receipt")
    identity, content = installed
    want = codec.build_identity(lock)
    if identity.split("-", 1)[0] != want:  # the generation id may carry an -editable/-wheel suffix
        return Check(name="installed from this lock", ok=False,
                     detail=f"the environment holds build {identity}, the lock's build identity is {want}")
    same = content == codec.content_hash(lock)
    return Check(name="installed from this lock", ok=True,
                 detail=f"build {identity}" + ("" if same else " (installed from another lock with the same build)"))


def evaluate(lock: Lock, probe: dict[str, Any], version_run: tuple[bool, str], host_gpus: tuple[Gpu, ...],
             installed: tuple[str, str] | None = None) -> tuple[Check, ...]:
    """Every check from the facts gathered; pure. `installed`: (build identity, content hash) from
    the environment's install receipt, when it has one."""
    checks: list[Check] = [installed_from(lock, installed)]
    errors = probe.get("errors", {})
    torch = probe.get("torch")
    if torch is None:
        checks.append(Check(name="import torch", ok=False, detail=errors.get("torch", "no result")))
    else:
        checks.append(Check(name="import torch", ok=True, detail=torch["version"]))
        same = torch["version"] == lock.torch.version
        checks.append(Check(name="torch version", ok=same,
                            detail=f"{torch['version']}" + ("" if same else f", the lock has {lock.torch.version}")))
    for pin in lock.torch.companions:
        if pin.name not in probe and pin.name not in errors:
            continue
        if pin.name in errors:
            checks.append(Check(name=f"import {pin.name}", ok=False, detail=errors[pin.name]))
            continue
        found = probe[pin.name]
        ok = found == pin.version
        checks.append(Check(name=f"import {pin.name}", ok=ok,
                            detail=f"{found}" + ("" if ok else f", the lock has {pin.version}")))
    if "vllm" in errors:
        checks.append(Check(name="import vllm", ok=False, detail=errors["vllm"]))
    else:
        checks.append(Check(name="import vllm", ok="vllm" in probe, detail=str(probe.get("vllm") or "imported")))
    if lock.build.target_device == "empty":
        # `vllm --version` cannot start without a device; the version it would print is the
        # installed distribution's, which the probe read after `import vllm`
        found = probe.get("vllm")
        checks.append(Check(name="vllm version", ok=bool(found),
                            detail=f"{found} (importlib.metadata; `vllm --version` needs a device, an empty build has none)"
                            if found else "not readable: import vllm failed"))
    else:
        ok, output = version_run
        checks.append(Check(name="vllm --version", ok=ok,
                            detail=output.strip().splitlines()[-1] if output.strip() else ""))
    checks.extend(gpu_checks(lock, torch, host_gpus))
    return tuple(checks)


def gpu_checks(lock: Lock, torch: dict[str, Any] | None, host_gpus: tuple[Gpu, ...]) -> list[Check]:
    devices = tuple(
        Gpu(name=d["name"], capability=(int(d["capability"][0]), int(d["capability"][1])))
        for d in (torch or {}).get("devices", [])
    )
    if not host_gpus and not devices:
        return []
    if torch is None:
        return []  # import torch already failed
    if not devices:
        names = ", ".join(g.name for g in host_gpus)
        return [Check(name="torch sees the GPU", ok=False,
                      detail=f"a GPU is present ({names}) but torch.cuda.is_available() is False")]
    checks = [Check(name="torch sees the GPU", ok=True, detail=", ".join(d.name for d in devices))]
    if lock.build.target_device != "cuda":
        checks.append(Check(name="archs cover the GPU", ok=True,
                            detail=f"not checked: the build targets {lock.build.target_device}"))
        return checks
    for device in devices:
        problem = coverage_problem(device.capability, lock.build.cuda_archs, device.name)
        cap = f"{device.capability[0]}.{device.capability[1]}"
        checks.append(Check(name=f"archs cover {device.name}", ok=problem is None,
                            detail=problem or f"capability {cap} covered by {', '.join(lock.build.cuda_archs)}"))
    return checks


def receipt_data(*, lock: Lock, lock_path: Path, venv: Path, checks: tuple[Check, ...], probe: dict[str, Any],
                 host_gpus: tuple[Gpu, ...], host: str, when: str) -> dict[str, Any]:
    torch = probe.get("torch") or {}
    devices = torch.get("devices") or [{"name": g.name, "capability": list(g.capability)} for g in host_gpus]
    present = bool(devices or host_gpus)
    gpu_checked = [c.name for c in checks if "GPU" in c.name or c.name.startswith("archs cover")]
    return {
        "receipt-version": RECEIPT_VERSION,
        "result": "pass" if all(c.ok for c in checks) else "fail",
        "lock": {
            "name": lock.name,
            "path": str(lock_path),
            "content-hash": codec.content_hash(lock),
            "build-identity": codec.build_identity(lock),
        },
        "host": host,
        "date": when,
        "venv": str(venv),
        "python": probe.get("python"),
        "gpu": {
            "present": present,
            "devices": devices,
            "driver-version": next((g.driver for g in host_gpus if g.driver), None),
            "torch-cuda-version": torch.get("cuda"),
            "note": "GPU checks ran: " + ", ".join(gpu_checked) if present
            else "no GPU present: GPU visibility and arch coverage not checked",
        },
        "checked": [c.name for c in checks],
        "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks],
        "tool-version": vllm_lock.__version__,
    }


def receipt_problem(data: dict[str, Any]) -> str | None:
    """What promote cannot use in a receipt (a hand-written or truncated one): the fields its
    summary line reads, each of the right type and printable (the line goes into the stable lock,
    and a control character in `host` would forge lines in a terminal)."""

    def text(value: object) -> bool:
        return isinstance(value, str) and 0 < len(value) <= 256 and value.isprintable()

    for key in ("result", "host", "date"):
        if key not in data:
            return f"no {key!r}"
        if not text(data[key]):
            return f"{key!r} is not a short printable string: {str(data[key])[:40]!r}"
    if data["result"] not in ("pass", "fail"):
        return f"'result' is {data['result']!r}, not pass or fail"
    gpu = data.get("gpu")
    devices = gpu.get("devices") if isinstance(gpu, dict) else None
    if not isinstance(devices, list):
        return "no 'gpu.devices' list"
    for device in devices:
        capability = device.get("capability") if isinstance(device, dict) else None
        if not (isinstance(device, dict) and text(device.get("name")) and isinstance(capability, list)
                and len(capability) == 2 and all(type(n) is int and 0 <= n < 100 for n in capability)):
            return f"a gpu.devices entry is not {{name, capability: [major, minor]}}: {str(device)[:60]!r}"
    return None


def receipt_summary(data: dict[str, Any], relpath: str, sha256: str) -> str:
    """The one-line identity of a receipt kept in a stable lock's provenance."""
    gpu = data["gpu"]
    where = ", ".join(f"{d['name']} {d['capability'][0]}.{d['capability'][1]}" for d in gpu["devices"]) or "no GPU"
    return f"{relpath} sha256:{sha256} {data['result']} on {data['host']} at {data['date']} ({where})"


# ---------------------------------------------------------------- receipts on disk


def receipts_dir(lock_path: Path, content_hash: str) -> Path:
    return lock_path.parent / RECEIPTS_DIR / content_hash.removeprefix("sha256:")


def find_receipts(lock_path: Path, content_hash: str) -> list[tuple[Path, dict[str, Any]]]:
    """Every readable receipt for exactly this content hash, oldest first."""
    folder = receipts_dir(lock_path, content_hash)
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        claimed = data.get("lock") if isinstance(data, dict) else None
        if isinstance(claimed, dict) and claimed.get("content-hash") == content_hash:
            problem = receipt_problem(data)
            if problem:
                raise UsageError(f"test receipt {path} is malformed ({problem}): delete it and run "
                                 "`vllm-lock test` again")
            found.append((path, data))
    return found


def write_receipt(lock_path: Path, data: dict[str, Any]) -> Path:
    folder = receipts_dir(lock_path, data["lock"]["content-hash"])
    folder.mkdir(parents=True, exist_ok=True)
    stamp = data["date"].replace("-", "").replace(":", "")
    host = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in data["host"])[:64]
    path = folder / f"{stamp}-{host}.json"
    lockfiles.atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- the action


@dataclass(frozen=True, kw_only=True, slots=True)
class SmokeResult:
    lock: Lock
    checks: tuple[Check, ...]
    receipt: Path
    data: dict[str, Any]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)


def host_gpus() -> tuple[Gpu, ...]:
    report = machine.gpus(os.environ)
    return tuple(Gpu(name=g.name, capability=g.capability, driver=report.driver_version) for g in report.gpus)


def _now() -> str:
    return clock.utc_timestamp()


def install_receipt(venv: Path) -> install_receipts.Receipt | None:
    """The installer's receipt of the generation `venv` points into, if any."""
    return install_receipts.read(venv.resolve().parent)


def smoke_test(name: str | None = None, *, venv: Path = DEFAULT_VENV) -> SmokeResult:
    """Run the checks in `venv` against lock `name` (default: the lock the environment was
    installed from, else dev) and write the receipt (pass or fail)."""
    python = venv / "bin" / "python"
    if not python.is_file():
        raise PreflightError(f"{venv} is not a virtual environment (no bin/python): install the lock first")
    installed = install_receipt(venv)
    lock, lock_path = lockfiles.read(name or (installed.lock_name if installed else "dev"))
    companions = [p.name for p in lock.torch.companions if p.name in ("torchvision", "torchaudio")]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = proc.run([str(python), "-c", PROBE, *companions, "vllm"], env=env, timeout=600, cwd=venv)
    probe: dict[str, Any] = {"errors": {"torch": f"probe failed: {done.tail(3)}"}}
    for line in done.output.splitlines():
        if line.startswith("VLLM_LOCK_PROBE "):
            probe = json.loads(line.removeprefix("VLLM_LOCK_PROBE "))
    cli = venv / "bin" / "vllm"
    if lock.build.target_device == "empty":
        version_run = (False, "not run: an empty build has no device to infer")
    elif cli.is_file():
        ran = proc.run([str(cli), "--version"], env=env, timeout=600, cwd=venv)
        version_run = (ran.ok, ran.output if ran.ok else f"exit {ran.returncode}: {ran.tail(2)}")
    else:
        version_run = (False, f"{cli} does not exist")
    gpus = host_gpus()
    checks = evaluate(lock, probe, version_run, gpus,
                      (installed.identity, installed.content_hash) if installed else None)
    data = receipt_data(lock=lock, lock_path=lock_path, venv=venv, checks=checks, probe=probe, host_gpus=gpus,
                        host=socket.gethostname() or platform.node() or "unknown", when=_now())
    receipt = write_receipt(lock_path, data)
    return SmokeResult(lock=lock, checks=checks, receipt=receipt, data=data)
