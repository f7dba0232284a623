"""What `vllm-lock test` checks in an installed environment, decided on the facts gathered
(actions/test_env.py gathers them; receipt.py records the result). Pure.

Checks, in the environment's own Python: torch imports at the locked version, its companions
import at their locked versions, `import vllm`, `vllm --version` (for an `empty` build, which has
no device for the CLI to infer, the installed distribution's version instead). GPU checks run only
when a GPU is present (nvidia-smi on the host, or torch.cuda in the environment): torch must see
it, and each GPU's compute capability must be covered by the locked archs (the rule in cuda.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from vllm_lock.build_identity import match_installed
from vllm_lock.cuda import coverage_problem
from vllm_lock.model import Lock

PROBE_MARK = "VLLM_LOCK_PROBE "

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


def parse_probe(output: str, failure: str) -> dict[str, Any]:
    """The probe's JSON line from its output; `failure` (why it printed none) as torch's error else."""
    probe: dict[str, Any] = {"errors": {"torch": f"probe failed: {failure}"}}
    for line in output.splitlines():
        if line.startswith(PROBE_MARK):
            probe = json.loads(line.removeprefix(PROBE_MARK))
    return probe


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
    """Whether the environment's install receipt (generation id, content hash) holds the lock's build."""
    if installed is None:
        return Check(name="installed from this lock", ok=True,
                     detail="not checked: the environment has no vllm-lock install receipt")
    generation, content = installed
    match = match_installed(lock, generation=generation, content_hash=content)
    if not match.same_build:
        return Check(name="installed from this lock", ok=False,
                     detail=f"the environment holds build {generation}, the lock's build identity is {match.wanted}")
    other = "" if match.kind == "this-lock" else " (installed from another lock with the same build)"
    return Check(name="installed from this lock", ok=True, detail=f"build {generation}{other}")


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
                            detail=f"{found} (importlib.metadata; `vllm --version` needs a device, an empty build has "
                                   "none)"
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
