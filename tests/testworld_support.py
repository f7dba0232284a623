"""Helpers of the test world's tests (tests/test_testworld_*.py): HTTP fetches, simple-page links,
wheel metadata, git ls-remote."""

from __future__ import annotations

import datetime as dt
import io
import ssl
import urllib.request
import zipfile
from html.parser import HTMLParser
from pathlib import Path

from vllm_lock_testworld.repo import git


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def fetch(url: str, accept: str | None = None, context: ssl.SSLContext | None = None,
          method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=10, context=context) as resp:
        return resp.status, dict(resp.headers), resp.read()


def links(url: str, context: ssl.SSLContext | None = None) -> list[dict[str, str | None]]:
    parser = _Links()
    parser.feed(fetch(url, context=context)[2].decode())
    return parser.links


def metadata(wheel: bytes) -> str:
    with zipfile.ZipFile(io.BytesIO(wheel)) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return zf.read(name).decode()


def requires(wheel: bytes) -> list[str]:
    return [line.split(": ", 1)[1] for line in metadata(wheel).splitlines()
            if line.startswith("Requires-Dist: ")]


def ymd(d: dt.date) -> str:
    return d.strftime("%Y%m%d")


def ls_remote(url: str) -> dict[str, str]:
    out = git(Path.cwd(), "ls-remote", url)
    return {ref: sha for sha, ref in (line.split("\t") for line in out.splitlines())}
