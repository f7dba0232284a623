"""The two receipts, as typed records with one key style on disk (the lock's kebab-case keys).

Install receipt: `<generation>/receipt.json`, written last (atomically) when a generation is
complete and verified. A generation without one is unfinished and gets resumed.

Test receipt: evidence for promote, written by `vllm-lock test` beside the lock, keyed by the
lock's content hash:
    <locks dir>/receipts/<content-hash hex>/<UTC time>-<host>.json
so any lock with exactly that content (whatever its name) finds them, and `promote --commit`
commits them with the locks.

Receipts written before the key styles were made one (an install receipt's `receipt_version`,
`vllm_version`, ...) are still read.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import vllm_lock
from vllm_lock import codec
from vllm_lock.acceptance import Check, Gpu
from vllm_lock.build_identity import build_identity
from vllm_lock.compiler_cache import CompilerCacheSession
from vllm_lock.cuda import GpuReport
from vllm_lock.errors import UsageError
from vllm_lock.generation import Generation
from vllm_lock.model import Lock
from vllm_lock.shell import files

RECEIPT_VERSION = 1
TEST_RECEIPTS_DIR = "receipts"


def _kebab(name: str) -> str:
    return name.replace("_", "-")


# ---------------------------------------------------------------- the install receipt

SOURCES = ("store", "checkout")


@dataclass(frozen=True, kw_only=True)
class InstallReceipt:
    lock_name: str
    content_hash: str
    identity: str  # the generation id (build_identity.py)
    vllm_commit: str
    vllm_version: str
    torch_version: str
    python: str
    target_device: str
    cuda_archs: list[str]
    editable: bool
    packages: dict[str, str]  # name -> version, as locked
    patched_files: dict[str, str]  # path -> sha256 after stripping
    build_env: dict[str, str]  # the settings the lock and the plan fixed (not the whole environ)
    max_jobs: int
    nvcc_threads: int
    timings: dict[str, float]
    log: str
    venv: str
    src: str
    installed_at: str
    tool_version: str
    cubins: list[str] = field(default_factory=list)
    external_sources: dict[str, str] = field(default_factory=dict)  # name -> staged commit
    version_checked_by: str = "vllm --version"  # or "import vllm + importlib.metadata" (target empty)
    toolchain: dict[str, dict[str, str | None]] = field(default_factory=dict)  # name -> version, path
    gpus: dict[str, Any] = field(default_factory=dict)  # what preflight saw; empty when not looked at
    compiler_cache: dict[str, Any] = field(default_factory=dict)  # sccache's version, cache and counts; empty: none
    substituted_from: dict[str, str] = field(default_factory=dict)  # the binary cache's origin; empty when built
    # "store": src links to the source store's shared tree (a non-editable substitution built
    # nothing: no external sources were staged); "checkout": a checkout of the generation's own
    source: str = "checkout"
    receipt_version: int = RECEIPT_VERSION

    def to_data(self) -> dict[str, Any]:
        """Kebab-case keys at the top; the values' own keys (package names, variables) as they are."""
        return {_kebab(f.name): getattr(self, f.name) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> InstallReceipt | None:
        """The receipt, in either key style; None when it is not one this version reads."""
        known = {_kebab(f.name): f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = known.get(_kebab(key))
            if name is None or name in values:
                return None  # an unknown key, or one given in both styles
            values[name] = value
        if values.get("receipt_version") != RECEIPT_VERSION:
            return None
        if "source" not in values:  # written before receipts said: a non-editable substitution used the store
            values["source"] = "store" if values.get("substituted_from") and not values.get("editable") else "checkout"
        if values["source"] not in SOURCES:
            return None
        try:
            return cls(**values)
        except TypeError:  # a field missing
            return None


def compiler_cache_record(session: CompilerCacheSession | None) -> dict[str, Any]:
    if session is None:
        return {}
    stats = session.stats
    counts = {} if stats is None else {"hits": stats.hits, "misses": stats.misses,
                                       "not-cacheable": stats.not_cacheable, "errors": stats.errors}
    return {"tool": f"sccache {session.version}", "cache": session.cache.describe(), **counts,
            **({"problem": session.problem} if session.problem else {})}


def gpu_record(report: GpuReport | None) -> dict[str, Any]:
    if report is None:
        return {}
    return {
        "devices": [{"name": g.name, "capability": f"{g.capability[0]}.{g.capability[1]}"} for g in report.gpus],
        "driver-version": report.driver_version,
        "driver-cuda": f"{report.driver_cuda[0]}.{report.driver_cuda[1]}" if report.driver_cuda else None,
        "absent": report.absent,
    }


def read(generation: Generation) -> InstallReceipt | None:
    """The receipt, or None when the generation is unfinished (missing or unreadable receipt)."""
    try:
        data = json.loads(generation.receipt.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return InstallReceipt.from_data(data) if isinstance(data, dict) else None


def write(generation: Generation, receipt: InstallReceipt) -> None:
    files.write_atomically(generation.receipt, receipt.to_json())


# ---------------------------------------------------------------- the test receipt


class MalformedReceipt(ValueError):
    """A test receipt promote cannot use; the message says what is wrong with it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class TestedLock:
    name: str | None
    path: str | None
    content_hash: str
    build_identity: str | None


@dataclass(frozen=True, kw_only=True, slots=True)
class GpusSeen:
    present: bool
    devices: tuple[Gpu, ...]
    driver_version: str | None
    torch_cuda_version: str | None
    note: str


@dataclass(frozen=True, kw_only=True, slots=True)
class TestReceipt:
    """What `vllm-lock test` found in an environment, for one lock content."""

    __test__ = False  # not a pytest test class, whatever its name

    result: Literal["pass", "fail"]
    lock: TestedLock
    host: str
    date: str  # UTC, 2026-11-20T10:00:00Z
    venv: str | None
    python: str | None
    gpu: GpusSeen
    checked: tuple[str, ...]
    checks: tuple[Check, ...]
    tool_version: str | None
    receipt_version: int = RECEIPT_VERSION

    @property
    def passed(self) -> bool:
        return self.result == "pass"

    def to_data(self) -> dict[str, Any]:
        return {
            "receipt-version": self.receipt_version,
            "result": self.result,
            "lock": {
                "name": self.lock.name,
                "path": self.lock.path,
                "content-hash": self.lock.content_hash,
                "build-identity": self.lock.build_identity,
            },
            "host": self.host,
            "date": self.date,
            "venv": self.venv,
            "python": self.python,
            "gpu": {
                "present": self.gpu.present,
                "devices": [{"name": d.name, "capability": list(d.capability)} for d in self.gpu.devices],
                "driver-version": self.gpu.driver_version,
                "torch-cuda-version": self.gpu.torch_cuda_version,
                "note": self.gpu.note,
            },
            "checked": list(self.checked),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "tool-version": self.tool_version,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_data(), indent=2, sort_keys=True) + "\n"

    def summary(self, relpath: str, sha256: str) -> str:
        """The one-line identity of a receipt kept in a stable lock's provenance."""
        where = ", ".join(f"{d.name} {d.capability[0]}.{d.capability[1]}" for d in self.gpu.devices) or "no GPU"
        return f"{relpath} sha256:{sha256} {self.result} on {self.host} at {self.date} ({where})"

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> TestReceipt:
        """The record of a receipt as read (a hand-written or truncated one included): the
        fields promote's summary line reads must be there, each of the right type and printable
        (the line goes into the stable lock, and a control character in `host` would forge lines
        in a terminal); MalformedReceipt names the first that is not. The rest is optional."""
        if problem := _test_receipt_problem(data):
            raise MalformedReceipt(problem)
        lock: dict[str, Any] = _of_type(data.get("lock"), dict, {})
        gpu: dict[str, Any] = data["gpu"]
        checks: list[Any] = _of_type(data.get("checks"), list, [])
        checked: list[Any] = _of_type(data.get("checked"), list, [])
        return cls(
            result=data["result"],
            lock=TestedLock(name=_text(lock.get("name")), path=_text(lock.get("path")),
                            content_hash=str(lock.get("content-hash", "")),
                            build_identity=_text(lock.get("build-identity"))),
            host=data["host"],
            date=data["date"],
            venv=_text(data.get("venv")),
            python=_text(data.get("python")),
            gpu=GpusSeen(
                present=bool(gpu.get("present", bool(gpu["devices"]))),
                devices=tuple(Gpu(name=d["name"], capability=(d["capability"][0], d["capability"][1]))
                              for d in gpu["devices"]),
                driver_version=_text(gpu.get("driver-version")),
                torch_cuda_version=_text(gpu.get("torch-cuda-version")),
                note=str(gpu.get("note", "")),
            ),
            checked=tuple(str(name) for name in checked),
            checks=tuple(Check(name=str(c.get("name", "")), ok=c.get("ok") is True, detail=str(c.get("detail", "")))
                         for c in checks if isinstance(c, dict)),
            tool_version=_text(data.get("tool-version")),
            receipt_version=version if isinstance(version := data.get("receipt-version"), int) else RECEIPT_VERSION,
        )


def _of_type(value: Any, kind: type, default: Any) -> Any:
    return value if isinstance(value, kind) else default


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _test_receipt_problem(data: dict[str, Any]) -> str | None:
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


def new_test_receipt(*, lock: Lock, lock_path: Path, venv: Path, checks: tuple[Check, ...], probe: dict[str, Any],
                 host_gpus: tuple[Gpu, ...], host: str, when: str) -> TestReceipt:
    """The receipt of one run of the checks (acceptance.py) on this host."""
    torch = probe.get("torch") or {}
    seen = tuple(Gpu(name=d["name"], capability=(int(d["capability"][0]), int(d["capability"][1])))
                 for d in torch.get("devices") or ())
    devices = seen or tuple(Gpu(name=g.name, capability=g.capability) for g in host_gpus)
    present = bool(devices or host_gpus)
    gpu_checked = [c.name for c in checks if "GPU" in c.name or c.name.startswith("archs cover")]
    return TestReceipt(
        result="pass" if all(c.ok for c in checks) else "fail",
        lock=TestedLock(name=lock.name, path=str(lock_path), content_hash=codec.content_hash(lock),
                        build_identity=build_identity(lock)),
        host=host,
        date=when,
        venv=str(venv),
        python=probe.get("python"),
        gpu=GpusSeen(
            present=present,
            devices=devices,
            driver_version=next((g.driver for g in host_gpus if g.driver), None),
            torch_cuda_version=torch.get("cuda"),
            note="GPU checks ran: " + ", ".join(gpu_checked) if present
            else "no GPU present: GPU visibility and arch coverage not checked",
        ),
        checked=tuple(c.name for c in checks),
        checks=checks,
        tool_version=vllm_lock.__version__,
    )


def receipts_folder(lock_path: Path, content_hash: str) -> Path:
    return lock_path.parent / TEST_RECEIPTS_DIR / content_hash.removeprefix("sha256:")


def find_test_receipts(lock_path: Path, content_hash: str) -> list[tuple[Path, TestReceipt]]:
    """Every readable receipt for exactly this content hash, oldest first; UsageError for one
    that claims this content but is malformed."""
    folder = receipts_folder(lock_path, content_hash)
    found = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        claimed = data.get("lock") if isinstance(data, dict) else None
        if isinstance(claimed, dict) and claimed.get("content-hash") == content_hash:
            try:
                found.append((path, TestReceipt.from_data(data)))
            except MalformedReceipt as exc:
                raise UsageError(f"test receipt {path} is malformed ({exc}): delete it and run "
                                 "`vllm-lock test` again") from None
    return found


def write_test_receipt(lock_path: Path, receipt: TestReceipt) -> Path:
    folder = receipts_folder(lock_path, receipt.lock.content_hash)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = receipt.date.replace("-", "").replace(":", "")
    host = "".join(ch if ch.isalnum() or ch in "-." else "_" for ch in receipt.host)[:64]
    path = folder / f"{stamp}-{host}.json"
    files.write_output(path, receipt.to_json())
    return path


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
