"""Every wheel of the resolved set with its URL, size and sha256, and where the hash came from."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from packaging.utils import canonicalize_name

from vllm_lock import resolution
from vllm_lock.actions.resolve.request import ResolveRequest
from vllm_lock.actions.resolve.torch import IndexPages
from vllm_lock.errors import ResolutionError, UnreachableError
from vllm_lock.model import HashOrigin, ModelError, Package, PackageSource, Wheel
from vllm_lock.progress import Reporter
from vllm_lock.shell import http
from vllm_lock.shell.store import Store

PEP691_JSON = "application/vnd.pypi.simple.v1+json"  # the JSON form of a simple index page


def hash_packages(pylock: str, request: ResolveRequest, pages: IndexPages, reporter: Reporter) -> tuple[Package, ...]:
    """Every package with every wheel uv lists for the target (several can fit: manylinux_2_17
    and _2_28, abi3 and cpXY, a platform wheel beside py3-none-any; the installer picks one for
    the machine), each with URL, size and sha256."""
    store = Store(request.cache)
    packages = []
    for entry in resolution.pylock_packages(pylock):
        name = canonicalize_name(entry["name"])
        source: PackageSource = "torch" if name in pages.routed else "general"
        listed = entry.get("wheels", [])
        if not listed:
            raise ResolutionError(f"{name}: uv locked no wheel for the target")
        wheels = sorted((hash_wheel(name, source, wheel, request, pages, store, reporter) for wheel in listed),
                        key=lambda w: w.plain_filename)
        try:
            packages.append(Package(name=name, version=entry["version"], source=source, wheels=tuple(wheels)))
        except ModelError as exc:
            raise ResolutionError(f"{name} {entry['version']} cannot be locked: {exc}") from None
    return tuple(sorted(packages, key=lambda p: p.name))


def hash_wheel(
    name: str, source: PackageSource, wheel: dict[str, Any], request: ResolveRequest, pages: IndexPages,
    store: Store, reporter: Reporter,
) -> Wheel:
    """One wheel's sha256 and size. The general index publishes hashes (uv reports them); for
    torch-index files only a #sha256= on the page counts, otherwise the file is downloaded into
    the content-addressed cache (so install does not download it again) and hashed here,
    whatever uv may have computed on its own. A hash without a size is completed by asking
    (HEAD, then the index's JSON form), not by downloading."""
    torch_index = request.torch_index_url
    url = wheel["url"]
    filename = unquote(wheel.get("name") or url.rsplit("/", 1)[-1])
    if source == "torch":
        link = pages.link(name, url)
        if link is None:
            raise ResolutionError(f"{name}: {url} is not listed on the torch index {torch_index}: refusing")
        sha256 = link.sha256
        size = wheel.get("size") if sha256 else None
    else:
        if pages.link(name, url) is not None:
            raise ResolutionError(f"{name} was taken from the torch index, not the general index: refusing")
        sha256, size = wheel.get("hashes", {}).get("sha256"), wheel.get("size")
        if not sha256:
            raise ResolutionError(f"{name}: the general index publishes no sha256 for {filename}")
    origin: HashOrigin = "index" if sha256 else "downloaded"
    known = None if sha256 or request.rehash else store.unchanged(url, filename)
    if known is not None:
        sha256, size = known
        reporter.say(f"    {filename}: same ETag and size as when hashed, hash from the cache")
    elif sha256 and not size:
        index = torch_index if source == "torch" else request.general_index.rstrip("/")
        size, how = size_without_download(url, filename, f"{index}/{name}/")
        if size:
            reporter.say(f"    {filename}: hash from the index, size from {how}")
    if not sha256 or not size:
        missing = "hash" if not sha256 else "size"
        reporter.say(f"    downloading {filename} to hash it (the index publishes no {missing})")
        sha256, size, _ = store.fetch(url, filename, expected_sha256=sha256, on_progress=_progress(reporter, filename))
    return Wheel(filename=filename, url=url, size=int(size), sha256=sha256, hash_origin=origin)


def size_without_download(url: str, filename: str, project_page: str) -> tuple[int | None, str]:
    """A file's size without its bytes: the server's Content-Length (HEAD), else the `size` the
    index's PEP 691 JSON page gives it (PEP 700). (None, "") when neither says."""
    try:
        length = http.head(url).size
    except (http.NotFound, UnreachableError):
        length = None
    if length:
        return length, "HEAD"
    try:
        page = json.loads(http.get_text(project_page, accept=PEP691_JSON))
    except (http.NotFound, UnreachableError, ValueError):
        return None, ""
    files = page.get("files") if isinstance(page, dict) else None
    for item in files if isinstance(files, list) else ():
        size = item.get("size") if isinstance(item, dict) else None
        if isinstance(item, dict) and unquote(str(item.get("filename"))) == filename and _is_size(size):
            return size, "the index's JSON page"
    return None, ""


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _progress(reporter: Reporter, filename: str) -> Callable[[int, int | None], None]:
    marks: set[int] = set()

    def show(done: int, total: int | None) -> None:
        if total and total > (8 << 20):
            tenth = done * 10 // total
            if tenth not in marks:
                marks.add(tenth)
                reporter.say(f"    {filename}: {done >> 20}/{total >> 20} MiB")

    return show
