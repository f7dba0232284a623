"""vLLM release sdists from PyPI, downloaded once into a cache and checked against PyPI's sha256."""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
import urllib.parse
import urllib.request
from pathlib import Path

PYPI_JSON = "https://pypi.org/pypi/vllm/json"


# The suite cache, as tests/conftest.py decides it: read at import (collection), before the
# session moves HOME into a temporary directory; else every session would download again.
SUITE_CACHE = Path(os.environ.get("VLLM_LOCK_TEST_CACHE") or Path.home() / ".cache" / "vllm-lock-tests")


def cache_dir() -> Path:
    return SUITE_CACHE / "sdists"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sdist(version: str) -> Path:
    """The sdist of vLLM `version`, from the cache when its bytes match PyPI's published digest."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest_file = folder / f"vllm-{version}.sha256"
    if not digest_file.is_file():
        with urllib.request.urlopen(PYPI_JSON, timeout=60) as response:
            releases = json.load(response)["releases"]
        (entry,) = [u for u in releases[version] if u["packagetype"] == "sdist"]
        url = urllib.parse.urljoin(PYPI_JSON, entry["url"])  # some PyPI mirrors give relative URLs
        digest_file.write_text(f"{entry['digests']['sha256']} {url} {entry['filename']}\n")
    expected, url, filename = digest_file.read_text().split()
    path = folder / filename
    if path.is_file() and _sha256(path) == expected:
        return path
    partial = path.with_name(path.name + ".part")
    with urllib.request.urlopen(url, timeout=300) as response, partial.open("wb") as out:
        while block := response.read(1 << 20):
            out.write(block)
    if (got := _sha256(partial)) != expected:
        partial.unlink()
        raise RuntimeError(f"{filename}: sha256 {got} differs from PyPI's {expected}")
    partial.replace(path)
    return path


def cmake_files(version: str) -> dict[str, str]:
    """CMakeLists.txt and cmake/**, relative to the tree root, as the resolver reads them."""
    files: dict[str, str] = {}
    with tarfile.open(sdist(version)) as archive:
        for member in archive.getmembers():
            if not member.isfile():
                continue
            relative = member.name.split("/", 1)[1] if "/" in member.name else member.name
            if relative == "CMakeLists.txt" or (relative.startswith("cmake/") and relative.endswith(".cmake")):
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[relative] = extracted.read().decode("utf-8")
    return files


def extract_sdist(version: str, dest: Path) -> None:
    """The sdist's tree (files and folders only: no links) into dest, without its top folder."""
    prefix = f"vllm-{version}/"
    with tarfile.open(sdist(version)) as archive:
        members = []
        for member in archive.getmembers():
            if member.name.startswith(prefix) and (member.isfile() or member.isdir()):
                member.name = member.name.removeprefix(prefix)
                if member.name:
                    members.append(member)
        archive.extractall(dest, members=members, filter="data")
