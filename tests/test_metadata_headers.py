"""verify's METADATA reader against email's parser, which it replaces for speed: the same Name,
Version and Requires-Dist for every distribution installed in this interpreter and in uv's own
environment, and for the header shapes the format allows (folding, CRLF, a body that looks like
headers)."""

from __future__ import annotations

import sys
from email.parser import HeaderParser
from pathlib import Path

import pytest

from vllm_lock.actions.verify import metadata_headers

FIELDS = ("Name", "Version", "Requires-Dist")


def _by_email(text: str) -> dict[str, list[str]]:
    message = HeaderParser().parsestr(text)
    return {f.lower(): [v.rstrip() for v in message.get_all(f) or []] for f in FIELDS}


def _by_us(text: str) -> dict[str, list[str]]:
    headers = metadata_headers(text)
    return {f.lower(): headers.get(f.lower(), []) for f in FIELDS}


def _installed_metadata() -> list[Path]:
    return sorted({m for entry in sys.path if Path(entry).is_dir() for m in Path(entry).glob("*.dist-info/METADATA")})


def test_every_installed_distribution_reads_as_email_reads_it() -> None:
    files = _installed_metadata()
    assert len(files) >= 20, files  # this project's own environment: typer, tomlkit, uv, pytest, ...
    with_requirements = 0
    for metadata in files:
        text = metadata.read_text(encoding="utf-8", errors="replace")
        assert _by_us(text) == _by_email(text), metadata
        with_requirements += bool(_by_us(text)["requires-dist"])
    assert with_requirements >= 5


def test_every_installed_wheel_file_reads_as_email_reads_it() -> None:
    """The WHEEL files (Tag, Build: the same format) that verify reads to tell which locked wheel
    was installed."""
    wheel_files = sorted({m.with_name("WHEEL") for m in _installed_metadata() if m.with_name("WHEEL").is_file()})
    assert len(wheel_files) >= 20
    for wheel_file in wheel_files:
        text = wheel_file.read_text(encoding="utf-8", errors="replace")
        message = HeaderParser().parsestr(text)
        ours = metadata_headers(text)
        for field in ("Wheel-Version", "Tag", "Build", "Root-Is-Purelib"):
            assert ours.get(field.lower(), []) == [v.rstrip() for v in message.get_all(field) or []], wheel_file


@pytest.mark.parametrize("text", [
    "Metadata-Version: 2.1\nName: folded\nVersion: 1.0\nRequires-Dist: a>=1;\n extra == 'x'\nRequires-Dist: b\n"
    "\nbody\n",
    "Metadata-Version: 2.1\r\nName: crlf\r\nVersion: 2.0\r\nRequires-Dist: c (>=1)\r\n"
    "\r\nRequires-Dist: not-a-header\r\n",
    "Metadata-Version: 2.1\rName: cr-only\rVersion: 3\rRequires-Dist: d\r\rRequires-Dist: e\r",
    "Metadata-Version: 1.0\nName: body-early\nVersion: 4\nthis line has no colon\nRequires-Dist: f\n",
    "Metadata-Version: 2.1\nName: sep\nVersion: 5\nSummary: a\u2028line separator is not a line break\n"
    "Requires-Dist: g\n",
    "name: lower-case-fields\nVERSION: 6\nrequires-dist: h\n",
])
def test_header_shapes_read_as_email_reads_them(text: str) -> None:
    assert _by_us(text) == _by_email(text)
    assert _by_us(text)["name"]
