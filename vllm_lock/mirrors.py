"""Mirrors: where bytes come from, never what they are (like Nix substituters).

A mirror `FROM=TO` says: a URL that starts with FROM is fetched from TO + the rest instead. The
lock keeps FROM's URLs; its content hashes and build identity do not change; what the mirror
serves is checked against them as if the original had served it. Pages and uv's output are read
back through `restore`, so that the mirror's own links read as the original's (a mirror that
serves relative or TO-based links is transparent).

Pure: parsing (from `--mirror` options and VLLM_LOCK_MIRRORS) and rewriting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from vllm_lock.errors import UsageError

_PAIR_SEPARATORS = re.compile(r"[\s,]+")
MIRROR_SCHEMES = ("https", "http", "file")  # what a mirror's TO may be (git takes all three; indexes http(s))


@dataclass(frozen=True, kw_only=True, slots=True)
class Mirror:
    source: str  # FROM: a URL prefix as the lock writes it
    target: str  # TO: where those URLs are fetched from instead


@dataclass(frozen=True, kw_only=True, slots=True)
class Mirrors:
    entries: tuple[Mirror, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.entries)

    def rewrite(self, url: str) -> str:
        """The URL to fetch for url: the longest matching FROM wins (as git's insteadOf does)."""
        best = _longest(url, ((m.source, m.target) for m in self.entries))
        return url if best is None else best[1] + url[len(best[0]):]

    def restore(self, text: str) -> str:
        """text (a page, uv's output) with every TO-prefixed URL read back as its FROM URL."""
        for mirror in sorted(self.entries, key=lambda m: len(m.target), reverse=True):
            text = text.replace(mirror.target, mirror.source)
        return text

    def describe(self, url: str) -> str:
        """url as an error names it: the mirror it was fetched from, when there was one."""
        fetched = self.rewrite(url)
        return url if fetched == url else f"{fetched} (mirror of {url})"


NO_MIRRORS = Mirrors()


def _longest(url: str, pairs: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    best: tuple[str, str] | None = None
    for source, target in pairs:
        if url.startswith(source) and (best is None or len(source) > len(best[0])):
            best = (source, target)
    return best


def _scheme(url: str) -> str | None:
    scheme, sep, rest = url.partition("://")
    return scheme.lower() if sep and rest is not None and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme) else None


def parse_one(spec: str, origin: str) -> Mirror:
    """One `FROM=TO`. FROM and TO are absolute URLs (TO of https, http or file); both end with
    `/` or neither does, so that a prefix never glues two path segments into one."""
    source, sep, target = spec.partition("=")
    if not sep or not source or not target:
        raise UsageError(f"{origin}: mirror {spec!r} is not FROM=TO")
    for url in (source, target):
        if any(ord(c) <= 0x20 or c == "\x7f" for c in url):
            raise UsageError(f"{origin}: mirror {spec!r} holds a space or control character")
    if _scheme(source) is None:
        raise UsageError(f"{origin}: mirror {spec!r}: FROM must be an absolute URL (scheme://...)")
    scheme = _scheme(target)
    if scheme not in MIRROR_SCHEMES:
        raise UsageError(f"{origin}: mirror {spec!r}: TO must be an {', '.join(MIRROR_SCHEMES)} URL")
    if source.endswith("/") != target.endswith("/"):
        raise UsageError(f"{origin}: mirror {spec!r}: FROM and TO must both end with '/' or neither")
    return Mirror(source=source, target=target)


def parse(options: Iterable[str], environment: str | None) -> Mirrors:
    """`--mirror` options, then VLLM_LOCK_MIRRORS (space- or comma-separated FROM=TO pairs). An
    option wins over the environment for the same FROM; the same FROM twice in one place is an
    error (which of two mirrors was meant cannot be guessed)."""
    chosen: dict[str, Mirror] = {}
    for origin, specs in (("--mirror", list(options)),
                          ("VLLM_LOCK_MIRRORS", [s for s in _PAIR_SEPARATORS.split(environment or "") if s])):
        seen: set[str] = set()
        for spec in specs:
            mirror = parse_one(spec, origin)
            if mirror.source in seen:
                raise UsageError(f"{origin}: two mirrors for {mirror.source}")
            seen.add(mirror.source)
            chosen.setdefault(mirror.source, mirror)
    return Mirrors(entries=tuple(chosen.values()))
