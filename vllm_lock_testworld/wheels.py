"""Deterministic wheel factory: same spec -> byte-identical wheel."""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass, field, replace

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_name(name: str) -> str:
    """Wheel filename form of a project name."""
    return re.sub(r"[-_.]+", "_", name).lower()


@dataclass(frozen=True)
class WheelSpec:
    """Everything that determines a wheel's bytes."""

    name: str
    version: str
    tag: str  # e.g. "cp312-cp312-manylinux_2_28_x86_64" or "py3-none-any"
    files: tuple[tuple[str, str], ...] = ()
    requires_dist: tuple[str, ...] = ()
    requires_python: str | None = None
    summary: str = "vllm-lock test world package"
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def filename(self) -> str:
        return f"{dist_name(self.name)}-{self.version}-{self.tag}.whl"

    @property
    def project(self) -> str:
        return normalize(self.name)

    @property
    def purelib(self) -> bool:
        return self.tag.endswith("-none-any")

    def with_extra(self, path: str, text: str) -> WheelSpec:
        """Same wheel, one more (or replaced) file: used to 'rebuild' a filename."""
        kept = tuple((p, t) for p, t in self.extra if p != path)
        return replace(self, extra=kept + ((path, text),))


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _metadata(spec: WheelSpec) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {spec.name}",
        f"Version: {spec.version}",
        f"Summary: {spec.summary}",
    ]
    if spec.requires_python:
        lines.append(f"Requires-Python: {spec.requires_python}")
    lines += [f"Requires-Dist: {r}" for r in spec.requires_dist]
    return "\n".join(lines) + "\n\n"


def _wheel_file(spec: WheelSpec) -> str:
    return (
        "Wheel-Version: 1.0\n"
        "Generator: vllm-lock-testworld (1.0)\n"
        f"Root-Is-Purelib: {'true' if spec.purelib else 'false'}\n"
        f"Tag: {spec.tag}\n\n"
    )


def build_wheel(spec: WheelSpec) -> bytes:
    """Return the bytes of a valid, deterministic wheel for spec."""
    info = f"{dist_name(spec.name)}-{spec.version}.dist-info"
    payload = dict(spec.files)
    payload.update(dict(spec.extra))
    entries: list[tuple[str, bytes]] = [
        (p, payload[p].encode()) for p in sorted(payload)
    ]
    entries.append((f"{info}/METADATA", _metadata(spec).encode()))
    entries.append((f"{info}/WHEEL", _wheel_file(spec).encode()))
    record_lines = [f"{p},{_record_hash(d)},{len(d)}" for p, d in entries]
    record_lines.append(f"{info}/RECORD,,")
    entries.append((f"{info}/RECORD", ("\n".join(record_lines) + "\n").encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in entries:
            zi = zipfile.ZipInfo(path, date_time=ZIP_DATE)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.create_system = 3
            zi.external_attr = FILE_MODE << 16
            zf.writestr(zi, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return buf.getvalue()
