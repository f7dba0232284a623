"""verify's METADATA reader against email's parser, which it replaces for speed: the same Name,
Version and Requires-Dist for every distribution installed in this interpreter and in uv's own
environment, and for the header shapes the format allows (folding, CRLF, a body that looks like
headers)."""

from __future__ import annotations

import re
import sys
from email.parser import HeaderParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vllm_lock.actions.verify import metadata_headers

FIELDS = ("Name", "Version", "Requires-Dist")


def _by_email(text: str) -> dict[str, list[str]]:
    message = HeaderParser().parsestr(text)
    return {f.lower(): list(message.get_all(f) or []) for f in FIELDS}


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
            assert ours.get(field.lower(), []) == list(message.get_all(field) or []), wheel_file


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


# Shapes a hostile METADATA can take to make a reader see other headers than importlib.metadata
# (email's parser) sees: each must read as importlib.metadata reads the same file on disk, or an
# unmet requirement pip check reports (or a name, a version) is one verify never sees.
HOSTILE = [
    # a line of blanks is a continuation to email, not the end of the header block
    "Metadata-Version: 2.1\nName: blank-line\nVersion: 1.0\nRequires-Dist: a\n  \nRequires-Dist: hidden\n",
    "Metadata-Version: 2.1\nName: tab-line\nVersion: 1.0\nRequires-Dist: a\n\t\nRequires-Dist: hidden\n",
    # a `From ` line inside the block is an envelope defect to email: skipped, the block goes on
    "Metadata-Version: 2.1\nName: from-line\nVersion: 1.0\nFrom nobody\nRequires-Dist: hidden\n",
    "From nobody Sat Jan  1 00:00:00 2000\nMetadata-Version: 2.1\nName: unix-from\nVersion: 1.0\n"
    "Requires-Dist: x\n",
    # a field name with a blank, a control or a non-ASCII character ends email's block there
    "Metadata-Version: 2.1\nName: spaced\nVersion : 9.9\nRequires-Dist : hidden\n",
    "Metadata-Version: 2.1\nName: vertical-tab\n\x0bVersion: 9.9\n",
    "Metadata-Version: 2.1\nName: control\nRequires-Dist\x1c: hidden\nVersion: 9.9\n",
    "Metadata-Version: 2.1\nName: non-ascii\nVérsion: 1\nVersion: 9.9\n",
    "\ufeffMetadata-Version: 2.1\nName: bom\nVersion: 9.9\n",
    # an empty field name is skipped, and so are the lines folded under it
    "Metadata-Version: 2.1\nName: empty-name\n: x\n Version: 9.9\nVersion: 1.0\n",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_shapes_read_as_importlib_metadata_reads_them(text: str, tmp_path: Path) -> None:
    from importlib.metadata import PathDistribution

    info = tmp_path / "hostile-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(text, encoding="utf-8")
    distribution = PathDistribution(info)
    theirs = {
        "name": list(distribution.metadata.get_all("Name") or []),
        "version": list(distribution.metadata.get_all("Version") or []),
        "requires-dist": [" ".join(r.split()) for r in distribution.requires or []],
    }
    ours = _by_us((info / "METADATA").read_text(encoding="utf-8", errors="replace"))
    ours["requires-dist"] = [" ".join(r.split()) for r in ours["requires-dist"]]
    assert ours == theirs
    assert _by_us(text) == _by_email(text)


_PIECES = ["Name", "Version", "Requires-Dist", "From ", ":", ": ", " ", "\t", "\n", "\r\n", "\r", "\x0b", "\x1c",
           "\x85", "\xa0", "\ufeff", "é", "x", "1.0", ";", "\u2028"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=40))
def test_any_text_of_header_pieces_reads_as_email_reads_it(pieces: list[str]) -> None:
    text = "".join(pieces)
    # a folded value keeps its line break: email the one it read, ours "\n" (what read_text gives)
    theirs = {name: [re.sub(r"\r\n?", "\n", v) for v in values] for name, values in _by_email(text).items()}
    assert _by_us(text) == theirs
