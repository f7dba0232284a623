"""The install receipt: `<generation>/receipt.json`, written last (atomically) when a generation is
complete and verified. A generation without one is unfinished and gets resumed."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vllm_lock.cuda import GpuReport

RECEIPT_NAME = "receipt.json"
RECEIPT_VERSION = 1


@dataclass(frozen=True, kw_only=True)
class Receipt:
    lock_name: str
    content_hash: str
    identity: str
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
    substituted_from: dict[str, str] = field(default_factory=dict)  # the binary cache's origin; empty when built
    receipt_version: int = RECEIPT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def gpu_record(report: GpuReport | None) -> dict[str, Any]:
    if report is None:
        return {}
    return {
        "devices": [{"name": g.name, "capability": f"{g.capability[0]}.{g.capability[1]}"} for g in report.gpus],
        "driver-version": report.driver_version,
        "driver-cuda": f"{report.driver_cuda[0]}.{report.driver_cuda[1]}" if report.driver_cuda else None,
        "absent": report.absent,
    }


def path(generation: Path) -> Path:
    return generation / RECEIPT_NAME


def read(generation: Path) -> Receipt | None:
    """The receipt, or None when the generation is unfinished (missing or unreadable receipt)."""
    try:
        data: dict[str, Any] = json.loads(path(generation).read_text(encoding="utf-8"))
        if data.get("receipt_version") != RECEIPT_VERSION:
            return None
        return Receipt(**data)
    except (OSError, ValueError, TypeError):
        return None


def write(generation: Path, receipt: Receipt) -> None:
    write_json_atomic(path(generation), receipt.to_json())


def write_json_atomic(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
