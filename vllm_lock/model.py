"""The lock as a tree of frozen dataclasses. Pure: no I/O, no clock.

Validation happens once, here, in __post_init__: a lock is untrusted input (it arrives by pull
request and `install` runs it as root), so every field has a rule, and a value that passes can
become neither a command-line option, nor a path outside the tool's directories, nor an
environment variable that changes which code runs, nor a URL of another scheme. The rules and
where each field flows are listed in docs/threat-model.md. Errors name the key path.
Conversion to and from TOML lives in codec.py.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Literal
from urllib.parse import SplitResult, unquote, urlsplit

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

# 2: external sources carry the commit a tag resolved to and their override variable
# 3: a package lists every wheel that fits the target (`wheels = [...]`, as a PEP 751 pylock)
LOCK_VERSION = 3

# fullmatch everywhere: `$` also matches before a trailing newline, `\d` matches non-ASCII digits
_SHA1 = re.compile(r"[0-9a-f]{40}")
_WHITESPACE = re.compile(r"\s")  # str.isspace's characters (re's \s in str patterns)
_SHA256 = re.compile(r"[0-9a-f]{64}")
_ARCH = re.compile(r"[0-9]{1,2}\.[0-9][af]?")
_PLATFORM = re.compile(r"(x86_64|aarch64)-manylinux_([0-9]{1,2})_([0-9]{1,3})")
_PYTHON = re.compile(r"3\.[0-9]{1,2}")
_LOCK_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_CUDA = re.compile(r"cu[0-9]{3}|cpu")  # cpu: PyTorch's CPU variant, for cpu and empty targets
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_TOOL_VERSION = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}")
_EXTERNAL_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# ACL_ROOT_DIR: the Arm Compute Library's source tree (vLLM's cpu_extension.cmake on aarch64)
_OVERRIDE = re.compile(r"[A-Z][A-Z0-9_]{0,63}_SRC_DIR|FETCHCONTENT_SOURCE_DIR_[A-Z0-9_]{1,64}|ACL_ROOT_DIR")
_WHEEL_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!-]{0,254}\.whl")
_QUOTED_WHEEL_CHARS = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+!%-]{0,254}\.whl")
_NETLOC = re.compile(r"[A-Za-z0-9._~-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_GIT_NETLOC = re.compile(r"([A-Za-z0-9._~][A-Za-z0-9._~-]*@)?(" + _NETLOC.pattern + ")")
_TRANSPORT = re.compile(r"[A-Za-z0-9+.-]*::")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_REF_FORBIDDEN = re.compile(r"[~^:?*\[\\]|\.\.|@\{|//")
_RUST_CHANNEL = re.compile(r"[0-9]{1,3}\.[0-9]{1,4}(\.[0-9]{1,4})?")
# crates.io's own rules: ASCII alphanumerics, - and _, starting with a letter, at most 64
_CRATE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_CRATE_VERSION = re.compile(
    r"(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})(-[0-9A-Za-z.-]{1,40})?(\+[0-9A-Za-z.-]{1,40})?")
_RUST_TARGET = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z_][A-Za-z0-9_-]{0,63}){1,8}")
RUST_ARTIFACT_KINDS = ("extension", "executable")
MAX_CRATES = 4096

MAX_STRING = 2048  # any string in a lock; narrower rules below
MAX_PACKAGE_SIZE = 1 << 40  # bytes; the largest nightly wheels are a few GiB
MAX_ARCHS = 32
MAX_WHEELS = 64  # per package: one target admits a handful (manylinux_2_17 and _2_28, abi3 and cpXY)

GIT_URL_SCHEMES = ("https", "http", "ssh", "git", "file")
INDEX_URL_SCHEMES = ("https", "http")
# The hosts an index serves its files from besides its own (the index pages link there).
INDEX_FILE_HOSTS: dict[str, tuple[str, ...]] = {
    "pypi.org": ("files.pythonhosted.org",),
    "download.pytorch.org": ("download-r2.pytorch.org",),
}
TARGET_DEVICES = ("cuda", "rocm", "cpu", "tpu", "xpu", "empty")
STRIPPING_MODES = ("default", "prefix")


def _positive_int(limit: int) -> Callable[[str], bool]:
    return lambda v: bool(re.fullmatch(r"[1-9][0-9]{0,5}", v)) and int(v) <= limit


# The build variables vLLM reads (setup.py, vllm/envs.py) that only tune the output, each typed.
# An allowlist: anything else (LD_*, PATH, PYTHON*, CC/CXX, CFLAGS, CMAKE_ARGS, *_LAUNCHER,
# VLLM_USE_PRECOMPILED, VLLM_PRECOMPILED_*, *_SRC_DIR, ...) could choose which code runs.
BUILD_ENV_RULES: dict[str, tuple[str, Callable[[str], bool]]] = {
    "NVCC_THREADS": ("a positive integer up to 1024", _positive_int(1024)),
    "CMAKE_BUILD_TYPE": (
        "one of Debug, Release, RelWithDebInfo, MinSizeRel",
        lambda v: v in ("Debug", "Release", "RelWithDebInfo", "MinSizeRel"),
    ),
    "VLLM_MAIN_CUDA_VERSION": ("a CUDA version like 12.8", lambda v: bool(re.fullmatch(r"[0-9]{1,2}\.[0-9]{1,2}", v))),
    "VLLM_REQUIRE_RUST_FRONTEND": ("0 or 1", lambda v: v in ("0", "1")),
}

Phase = Literal["development", "stable"]
TorchChannel = Literal["nightly", "release"]
PackageSource = Literal["torch", "general"]
HashOrigin = Literal["index", "downloaded"]


class ModelError(ValueError):
    """A value that cannot be part of a lock, with the key path that holds it (e.g.
    `layout.stripping-script`, or `url` inside a package: codec prefixes `packages[3].`).
    codec turns it into LockInvalidError."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key
        self.message = message

    def within(self, prefix: str) -> ModelError:
        return ModelError(f"{prefix}.{self.key}" if self.key else prefix, self.message)


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ModelError(key, message)


def show(value: object, limit: int = 80) -> str:
    """A value for a one-line message: repr (escapes newlines and control characters), cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_commit_sha(value: str) -> bool:
    return bool(_SHA1.fullmatch(value))


def is_sha256(value: str) -> bool:
    """64 lowercase hex digits: how a lock (and a binary cache entry) writes a sha256."""
    return bool(_SHA256.fullmatch(value))


def is_content_hash(value: str) -> bool:
    """sha256:<64 lowercase hex>: a lock's content hash (codec.content_hash)."""
    return value.startswith("sha256:") and is_sha256(value.removeprefix("sha256:"))


def is_cuda_arch(value: str) -> bool:
    """A CUDA architecture as build.cuda-archs names it (12.0, 9.0a, 10.0f)."""
    return bool(_ARCH.fullmatch(value))


def is_valid_lock_name(value: str) -> bool:
    return bool(_LOCK_NAME.fullmatch(value))


# ---------------------------------------------------------------- field rules (each: a problem or None)


def text_problem(value: str, limit: int = MAX_STRING) -> str | None:
    """Every string in a lock: bounded, and printable (no control, format, separator other than
    the ASCII space, private-use or unassigned characters: nothing that hides in a diff or a terminal)."""
    if len(value) > limit:
        return f"is longer than {limit} characters"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return f"{show(value)} contains the non-printable character {bad!r}"
    return None


def git_url_problem(url: str) -> str | None:
    """https, http, ssh, git and file URLs only; never an option, never git's `transport::` form,
    never scp-like `host:path` (write ssh://host/path instead)."""
    if not url:
        return "is empty"
    if url.startswith("-"):
        return f"{show(url)} starts with '-'"
    if not url.isprintable() or _WHITESPACE.search(url):
        return f"{show(url)} contains whitespace or control characters"
    if _TRANSPORT.match(url):
        return f"{show(url)} uses git's '<transport>::<address>' syntax"
    scheme = _SCHEME.match(url)
    if scheme is None:
        if re.match(r"[^/]*:", url):
            return f"{show(url)} is a scp-like 'host:path'; write it as ssh://host/path"
        return f"{show(url)} is not a URL (https, http, ssh, git or file)"
    if scheme.group(1).lower() not in GIT_URL_SCHEMES:
        return f"{show(url)} has scheme {scheme.group(1)!r}; only {', '.join(GIT_URL_SCHEMES)} are allowed"
    parts = _split(url)
    if isinstance(parts, str):
        return parts
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            return f"{show(url)}: a file URL names no host"
        if not parts.path.startswith("/"):
            return f"{show(url)}: a file URL needs an absolute path"
        return None
    if not _GIT_NETLOC.fullmatch(parts.netloc) or not parts.hostname or parts.hostname.startswith("-"):
        return f"{show(url)} has no plain host"
    if "@" in parts.netloc and parts.scheme.lower() != "ssh":
        # `https://github.com@evil.example/x` reads as github in a review and goes to evil.example
        return f"{show(url)} names a user ('user@host'): only ssh URLs may"
    return _port_problem(url, parts)


def index_url_problem(url: str) -> str | None:
    """A package index: http or https, a plain host, no user, query or fragment."""
    parts = _http_parts(url)
    if isinstance(parts, str):
        return parts
    if parts.query or parts.fragment:
        return f"{show(url)} has a query or fragment"
    return None


def _http_parts(url: str) -> SplitResult | str:
    if not url.isprintable() or _WHITESPACE.search(url):
        return f"{show(url)} contains whitespace or control characters"
    scheme = _SCHEME.match(url)
    if scheme is None or scheme.group(1) not in INDEX_URL_SCHEMES:
        return f"{show(url)} is not an http or https URL"
    parts = _split(url)
    if isinstance(parts, str):
        return parts
    if not _NETLOC.fullmatch(parts.netloc) or not parts.hostname:
        return f"{show(url)} has no plain host (no user, no odd characters)"
    return _port_problem(url, parts) or parts


def _split(url: str) -> SplitResult | str:
    try:
        return urlsplit(url)
    except ValueError:  # an unbalanced or invalid [IPv6] host
        return f"{show(url)} has an invalid host"


def _port_problem(url: str, parts: SplitResult) -> str | None:
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError:
        return f"{show(url)} has an invalid port"
    return None


def ref_problem(ref: str) -> str | None:
    """A branch, tag or SHA as git check-ref-format would accept it, never an option."""
    if not ref:
        return "is empty"
    if len(ref) > 255:
        return "is longer than 255 characters"
    if ref.startswith("-"):
        return f"{show(ref)} starts with '-'"
    if any(c.isspace() or not c.isprintable() or ord(c) == 0x7F for c in ref):
        return f"{show(ref)} contains whitespace or control characters"
    if (
        _REF_FORBIDDEN.search(ref)
        or ref == "@"
        or ref.startswith("/")
        or ref.endswith(("/", ".", ".lock"))
        or any(part.startswith(".") or part.endswith(".lock") for part in ref.split("/"))
    ):
        return f"{show(ref)} is not a valid git ref name"
    return None


def relative_path_problem(path: str) -> str | None:
    """A path inside the source tree: relative POSIX, no `..`, no option, no NUL or backslash."""
    if not path:
        return "is empty"
    if problem := text_problem(path, 1024):
        return problem
    if path.startswith("-"):
        return f"{show(path)} starts with '-'"
    if "\\" in path:
        return f"{show(path)} contains a backslash"
    if path.startswith("/"):
        return f"{show(path)} is absolute"
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return f"{show(path)} is not a plain relative path (empty, '.' or '..' part)"
    return None


def date_problem(value: str) -> str | None:
    if not _DATE.fullmatch(value):
        return f"{show(value)} is not YYYY-MM-DD"
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return f"{show(value)} is not a calendar date"
    return None


def timestamp_problem(value: str) -> str | None:
    if not _TIMESTAMP.fullmatch(value):
        return f"{show(value)} is not YYYY-MM-DDTHH:MM:SSZ (UTC)"
    try:
        dt.datetime.strptime(value, _TIMESTAMP_FORMAT)
    except ValueError:
        return f"{show(value)} is not a valid time"
    return None


def version_problem(value: str) -> str | None:
    if problem := text_problem(value, 128):
        return problem
    if not value.isascii():
        return f"{show(value)} is not ASCII"
    try:
        Version(value)
    except InvalidVersion:
        return f"{show(value)} is not a valid version"
    return None


def build_env_problem(key: str, value: str) -> str | None:
    """A build.env entry: an allowed variable with a value of its type."""
    rule = BUILD_ENV_RULES.get(key)
    if key == "MAX_JOBS":
        return ("MAX_JOBS does not belong in the build recipe: it does not change the output; set it at install time "
                "(--max-jobs)")
    if rule is None:
        return (f"{show(key)} is not an allowed build setting (allowed: {', '.join(sorted(BUILD_ENV_RULES))}; "
                "nothing that names a program, path, library or URL)")
    kind, check = rule
    if len(value) > 64 or not check(value):
        return f"{show(value)} is not {kind}"
    return None


def wheel_filename_problem(filename: str, name: str, version: str) -> str | None:
    """A plain wheel basename (also once URL-unquoted) of exactly this package and version."""
    if filename.startswith(("-", ".")) or any(c in filename for c in "/\\\0"):
        return f"{show(filename)} is not a plain file name"
    if not _QUOTED_WHEEL_CHARS.fullmatch(filename):
        return f"{show(filename)} is not a plain wheel file name"
    plain = unquote(filename)
    if not _WHEEL_CHARS.fullmatch(plain):
        return f"{show(filename)} is not a plain wheel file name once unquoted ({show(plain)})"
    try:
        wheel_name, wheel_version, _, _ = parse_wheel_filename(plain)
    except ValueError:  # InvalidWheelFilename, InvalidVersion, ...
        return f"{show(filename)} is not a valid wheel file name"
    if wheel_name != name:
        return f"{show(filename)} is a wheel of {wheel_name}, not {name}"
    if wheel_version != Version(version):
        return f"{show(filename)} is version {wheel_version}, not {version}"
    return None


def package_url_problem(url: str, filename: str, index: str) -> str | None:
    """On the host of its index (or a file host of that index) and with the index's scheme (an
    https index never yields an http file), ending in the filename; no query, no fragment."""
    parts = _http_parts(url)
    if isinstance(parts, str):
        return parts
    if parts.query or "?" in url:
        return f"{show(url)} has a query"
    if parts.fragment or "#" in url:
        return f"{show(url)} has a fragment"
    index_scheme, index_host, index_netloc = _index_location(index)
    if parts.scheme.lower() != index_scheme:
        return f"{show(url)} is {parts.scheme}, but its index is {index_scheme}"
    last = parts.path.rsplit("/", 1)[-1]
    if unquote(last) != unquote(filename):
        return f"{show(url)} does not end in the filename {filename!r}"
    host = (parts.hostname or "", parts.port)
    if host == index_host:
        return None
    if host[1] is None and host[0] in INDEX_FILE_HOSTS.get(index_host[0] or "", ()):
        return None
    return f"{show(url)} is not on the index's host {index_netloc} (nor a file host of it)"


@functools.lru_cache(maxsize=64)
def _index_location(index: str) -> tuple[str, tuple[str | None, int | None], str]:
    """(scheme, (host, port), netloc) of an index URL, read once for its every wheel."""
    parts = urlsplit(index)
    return parts.scheme.lower(), (parts.hostname, parts.port), parts.netloc


# ---------------------------------------------------------------- the lock


@dataclass(frozen=True, kw_only=True, slots=True)
class VllmInput:
    """The vLLM source: what the user asked for (url, ref) and what it resolved to."""

    url: str
    ref: str
    commit: str
    commit_date: str  # ISO 8601 UTC, e.g. 2026-11-20T10:00:00Z

    def __post_init__(self) -> None:
        _check("inputs.vllm.original.url", git_url_problem(self.url))
        _check("inputs.vllm.original.ref", ref_problem(self.ref))
        _require(is_commit_sha(self.commit), "inputs.vllm.locked.commit", f"{show(self.commit)} is not a 40-hex SHA")
        _check("inputs.vllm.locked.commit-date", timestamp_problem(self.commit_date))

    @property
    def short_commit(self) -> str:
        return self.commit[:9]


def _check(key: str, problem: str | None) -> None:
    if problem is not None:
        raise ModelError(key, problem)


@dataclass(frozen=True, kw_only=True, slots=True)
class Pin:
    """An exact package version, e.g. a torch companion."""

    name: str
    version: str

    def __post_init__(self) -> None:
        _check("name", _package_name_problem(self.name))
        _check("version", version_problem(self.version))


def _package_name_problem(name: str) -> str | None:
    if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,126}[a-z0-9])?", name) or name != canonicalize_name(name):
        return f"{show(name)} is not a canonical package name"
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class TorchInput:
    """The torch family: requested (date, `latest` or a release version) and locked."""

    channel: TorchChannel
    requested: str  # "latest", "2026-11-12" or "2.9.1"
    cuda: str  # "cu128"
    index: str
    version: str  # locked torch version, e.g. 2.10.0.dev20261112+cu128
    date: str | None  # nightly build date YYYY-MM-DD; None for releases
    companions: tuple[Pin, ...]
    left_out: tuple[str, ...] = ()  # members of the commit's torch family left out on purpose (--without)

    def __post_init__(self) -> None:
        _require(self.channel in ("nightly", "release"), "inputs.torch.original.channel",
                 f"{show(self.channel)} is not nightly or release")
        if self.channel == "nightly":
            if self.requested != "latest":
                _check("inputs.torch.original.requested", date_problem(self.requested))
        else:
            _check("inputs.torch.original.requested", version_problem(self.requested))
        _require(bool(_CUDA.fullmatch(self.cuda)), "inputs.torch.original.cuda",
                 f"{show(self.cuda)} is not like cu128 or cpu")
        _check("inputs.torch.original.index", index_url_problem(self.index))
        _check("inputs.torch.locked.version", version_problem(self.version))
        if self.channel == "nightly":
            _require(self.date is not None, "inputs.torch.locked.date", "a nightly torch needs its date")
        if self.date is not None:
            _check("inputs.torch.locked.date", date_problem(self.date))
        _unique("inputs.torch.locked.companions", "name", [c.name for c in self.companions])
        for i, name in enumerate(self.left_out):
            _check(f"inputs.torch.locked.left-out[{i}]", _package_name_problem(name))
            # only a torch-family member can be expected unmet: the name rule of torch_family
            # (torch*; the torch index's own pytorch-* projects). A reader cannot ask the index.
            _require(name.startswith(("torch", "pytorch-")), f"inputs.torch.locked.left-out[{i}]",
                     f"{show(name)} is not a torch-family name (torch*, pytorch-*)")
        _require(list(self.left_out) == sorted(set(self.left_out)), "inputs.torch.locked.left-out",
                 "must be sorted, each name once")
        _require("torch" not in self.left_out, "inputs.torch.locked.left-out", "torch itself cannot be left out")
        _require(not set(self.left_out) & {c.name for c in self.companions}, "inputs.torch.locked.left-out",
                 "names a member that is also locked")


def _unique(key: str, leaf: str, values: list[str]) -> None:
    seen: set[str] = set()
    for i, value in enumerate(values):
        _require(value not in seen, f"{key}[{i}].{leaf}" if leaf else f"{key}[{i}]", f"{show(value)} is listed twice")
        seen.add(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Target:
    """Where the locked environment runs: not the resolving host."""

    python: str  # "3.12"
    platform: str  # "x86_64-manylinux_2_28"

    def __post_init__(self) -> None:
        _require(bool(_PYTHON.fullmatch(self.python)), "target.python", f"{show(self.python)} is not like 3.12")
        _require(bool(_PLATFORM.fullmatch(self.platform)), "target.platform",
                 f"{show(self.platform)} is not like x86_64-manylinux_2_28")

    @property
    def machine(self) -> str:
        return self.platform.split("-", 1)[0]

    @property
    def glibc(self) -> tuple[int, int]:
        match = _PLATFORM.fullmatch(self.platform)
        assert match
        return int(match.group(2)), int(match.group(3))


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildRecipe:
    """Every setting that changes the built output (MAX_JOBS does not, so it is not here)."""

    cuda_archs: tuple[str, ...]
    flash_attn_version: str = "2"
    target_device: str = "cuda"
    editable: bool = True
    env: tuple[tuple[str, str], ...] = ()  # further output-affecting settings, sorted
    without_rust: bool = False  # the commit's Rust frontend left out on purpose (resolve --no-rust)

    def __post_init__(self) -> None:
        _require(bool(self.cuda_archs), "build.cuda-archs", "is empty")
        _require(len(self.cuda_archs) <= MAX_ARCHS, "build.cuda-archs", f"has more than {MAX_ARCHS} entries")
        for i, arch in enumerate(self.cuda_archs):
            _require(is_cuda_arch(arch), f"build.cuda-archs[{i}]", f"{show(arch)} is not like 12.0")
        _unique("build.cuda-archs", "", list(self.cuda_archs))
        _require(bool(re.fullmatch(r"[1-9]", self.flash_attn_version)), "build.flash-attn-version",
                 f"{show(self.flash_attn_version)} is not a single digit like 2")
        _require(self.target_device in TARGET_DEVICES, "build.target-device",
                 f"{show(self.target_device)} is not one of {', '.join(TARGET_DEVICES)}")
        _require(isinstance(self.without_rust, bool), "build.without-rust", "must be true or false")
        _require(list(self.env) == sorted(self.env), "build.env", "must be sorted")
        for key, value in self.env:
            _check(f"build.env.{key}" if re.fullmatch(r"[A-Za-z0-9_]{1,64}", key) else f"build.env.{show(key)}",
                   build_env_problem(key, value))

    @property
    def torch_cuda_arch_list(self) -> str:
        return ";".join(self.cuda_archs)


@dataclass(frozen=True, kw_only=True, slots=True)
class PatchedFile:
    """A file the torch-stripping script rewrote, with its hashes before and after."""

    path: str
    sha256_before: str
    sha256_after: str

    def __post_init__(self) -> None:
        _check("path", relative_path_problem(self.path))
        _require(is_sha256(self.sha256_before), "sha256-before",
                 f"{show(self.sha256_before)} is not a sha256")
        _require(is_sha256(self.sha256_after), "sha256-after",
                 f"{show(self.sha256_after)} is not a sha256")


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceLayout:
    """What the locked commit looks like and what its stripping script produced."""

    stripping_script: str  # "tools/use_existing_torch.py"
    stripping_mode: Literal["default", "prefix"]
    runtime_requirements: str  # "requirements/cuda.txt"
    build_requirements: str  # "requirements/build/cuda.txt"
    patched_files: tuple[PatchedFile, ...]
    runtime_set: tuple[str, ...]  # requirement lines after stripping, in file order
    build_set: tuple[str, ...]

    def __post_init__(self) -> None:
        from vllm_lock.source_layout import SCRIPT_PATHS  # source_layout imports this module

        _require(self.stripping_script in SCRIPT_PATHS, "layout.stripping-script",
                 f"{show(self.stripping_script)} is not one of {', '.join(SCRIPT_PATHS)}")
        _require(self.stripping_mode in STRIPPING_MODES, "layout.stripping-mode",
                 f"{show(self.stripping_mode)} is not default or prefix")
        _check("layout.runtime-requirements", relative_path_problem(self.runtime_requirements))
        _check("layout.build-requirements", relative_path_problem(self.build_requirements))
        _unique("layout.patched-files", "path", [f.path for f in self.patched_files])
        for key, lines in (("layout.runtime-set", self.runtime_set), ("layout.build-set", self.build_set)):
            for i, line in enumerate(lines):
                _check(f"{key}[{i}]", _requirement_problem(line))

    @property
    def stripping_argv(self) -> tuple[str, ...]:
        return (self.stripping_script, "--prefix") if self.stripping_mode == "prefix" else (self.stripping_script,)


def _requirement_problem(line: str) -> str | None:
    if problem := text_problem(line, 1024):
        return problem
    try:
        Requirement(line)
    except ValueError:  # InvalidRequirement and the marker/specifier errors it may let through
        return f"{show(line)} is not a PEP 508 requirement"
    return None


@dataclass(frozen=True, kw_only=True, slots=True)
class ExternalPin:
    """A CMake FetchContent pin as written at a vLLM commit (a tag can still move)."""

    name: str
    repository: str
    ref: str
    ref_kind: Literal["commit", "tag"]
    override: str  # the environment variable that points CMake at a local source tree
    declared_in: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ExternalSource(ExternalPin):
    """A pin with the commit its ref resolved to: what install stages for the build."""

    commit: str

    def __post_init__(self) -> None:
        from vllm_lock.source_layout import is_cmake_pin_file  # source_layout imports this module

        _require(bool(_EXTERNAL_NAME.fullmatch(self.name)), "name",
                 f"external source name {show(self.name)} is not a plain name")
        _check("repository", git_url_problem(self.repository))
        _check("ref", ref_problem(self.ref))
        _require(is_commit_sha(self.commit), "commit",
                 f"external source {self.name}: commit {show(self.commit)} is not a 40-hex SHA")
        _require(self.ref_kind in ("commit", "tag"), "ref-kind", f"{show(self.ref_kind)} is not commit or tag")
        _require(self.ref_kind == "tag" or self.ref == self.commit, "ref",
                 f"external source {self.name}: pinned commit {self.ref} but locked {self.commit}")
        _require(bool(_OVERRIDE.fullmatch(self.override)), "override",
                 f"{show(self.override)} is not an environment variable name like <NAME>_SRC_DIR "
                 "or FETCHCONTENT_SOURCE_DIR_<NAME>")
        _check("declared-in", relative_path_problem(self.declared_in))
        _require(is_cmake_pin_file(self.declared_in), "declared-in",
                 f"{show(self.declared_in)} is not a CMakeLists.txt or *.cmake file")

    @classmethod
    def locked(cls, pin: ExternalPin, commit: str) -> ExternalSource:
        return cls(**{f.name: getattr(pin, f.name) for f in fields(ExternalPin)}, commit=commit)


@dataclass(frozen=True, kw_only=True, slots=True)
class Wheel:
    """One file of a locked package, identified by its sha256. A package may lock several
    (every wheel that fits the target); the installer picks the best one for the machine."""

    filename: str
    url: str
    size: int
    sha256: str
    hash_origin: HashOrigin

    def __post_init__(self) -> None:
        _require(is_sha256(self.sha256), "sha256", f"{show(self.sha256)} is not a sha256")
        _require(0 < self.size <= MAX_PACKAGE_SIZE, "size",
                 f"{show(self.size)} is not between 1 and {MAX_PACKAGE_SIZE}")
        _require(self.hash_origin in ("index", "downloaded"), "hash-origin",
                 f"{show(self.hash_origin)} is not index or downloaded")

    @property
    def plain_filename(self) -> str:
        """The real filename (resolve may record it URL-quoted: torch-2.10%2Bcu128-...)."""
        return unquote(self.filename)


@dataclass(frozen=True, kw_only=True, slots=True)
class Package:
    """One locked distribution: a name, a version and every wheel of it that fits the target."""

    name: str
    version: str
    source: PackageSource
    wheels: tuple[Wheel, ...]

    def __post_init__(self) -> None:
        _check("name", _package_name_problem(self.name))
        _check("version", version_problem(self.version))
        _require(self.source in ("torch", "general"), "source", f"{show(self.source)} is not torch or general")
        _require(bool(self.wheels), "wheels", "is empty: a package locks at least one wheel")
        _require(len(self.wheels) <= MAX_WHEELS, "wheels", f"has more than {MAX_WHEELS} entries")
        for i, wheel in enumerate(self.wheels):
            _check(f"wheels[{i}].filename", wheel_filename_problem(wheel.filename, self.name, self.version))
        plain = [w.plain_filename for w in self.wheels]
        _require(plain == sorted(plain), "wheels", "must be sorted by filename")
        _unique("wheels", "filename", plain)

    @property
    def size(self) -> int:
        """All its wheels' bytes (install fetches and checks every one)."""
        return sum(w.size for w in self.wheels)


@dataclass(frozen=True, kw_only=True, slots=True)
class Crate:
    """One crate Cargo.lock takes from crates.io: install fetches it and checks its bytes
    against the checksum (the sha256 of the .crate file, as Cargo.lock records it)."""

    name: str
    version: str
    checksum: str

    def __post_init__(self) -> None:
        _require(bool(_CRATE_NAME.fullmatch(self.name)), "name", f"{show(self.name)} is not a crate name")
        _require(bool(_CRATE_VERSION.fullmatch(self.version)), "version",
                 f"{show(self.version)} is not a crate version like 1.2.3")
        _require(is_sha256(self.checksum), "checksum", f"{show(self.checksum)} is not a sha256")


@dataclass(frozen=True, kw_only=True, slots=True)
class RustArtifact:
    """What a RustExtension builds: a Python extension module (`vllm._rust_x` -> vllm/_rust_x*.so)
    or an executable (`vllm.vllm-rs` -> vllm/vllm-rs)."""

    target: str
    kind: str

    def __post_init__(self) -> None:
        _require(bool(_RUST_TARGET.fullmatch(self.target)), "target",
                 f"{show(self.target)} is not a dotted module path like vllm._rust_x")
        _require(self.kind in RUST_ARTIFACT_KINDS, "kind", f"{show(self.kind)} is not extension or executable")


@dataclass(frozen=True, kw_only=True, slots=True)
class RustFrontend:
    """The commit's Rust frontend: the toolchain it asks for, its Cargo.lock and every registry
    crate that lock names (the build gets them vendored, offline)."""

    toolchain_file: str
    channel: str  # "1.95": rustc and cargo must be at least this
    cargo_lock: str
    cargo_lock_sha256: str
    artifacts: tuple[RustArtifact, ...]
    crates: tuple[Crate, ...]

    def __post_init__(self) -> None:
        _require(self.toolchain_file in ("rust-toolchain.toml", "rust-toolchain"), "rust.toolchain-file",
                 f"{show(self.toolchain_file)} is not rust-toolchain.toml or rust-toolchain")
        _require(bool(_RUST_CHANNEL.fullmatch(self.channel)), "rust.channel",
                 f"{show(self.channel)} is not a toolchain version like 1.95")
        _check("rust.cargo-lock", relative_path_problem(self.cargo_lock))
        _require(self.cargo_lock == "Cargo.lock" or self.cargo_lock.endswith("/Cargo.lock"), "rust.cargo-lock",
                 f"{show(self.cargo_lock)} is not a Cargo.lock")
        _require(is_sha256(self.cargo_lock_sha256), "rust.cargo-lock-sha256",
                 f"{show(self.cargo_lock_sha256)} is not a sha256")
        _require(len(self.crates) <= MAX_CRATES, "rust.crates", f"has more than {MAX_CRATES} entries")
        keys = [(c.name, c.version) for c in self.crates]
        _require(keys == sorted(keys), "rust.crates", "must be sorted by name and version")
        _unique("rust.crates", "", [f"{c.name} {c.version}" for c in self.crates])
        targets = [a.target for a in self.artifacts]
        _require(targets == sorted(targets), "rust.artifacts", "must be sorted by target")
        _unique("rust.artifacts", "target", targets)

    @property
    def channel_version(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.channel.split("."))


@dataclass(frozen=True, kw_only=True, slots=True)
class Promotion:
    """How a stable lock came to be: promoted from which lock, with which evidence."""

    from_name: str
    from_content_hash: str
    promoted_at: str
    forced: bool
    test_receipts: tuple[str, ...]  # content of the passing receipts' identities (host/date/result)

    def __post_init__(self) -> None:
        key = "provenance.promotion"
        _require(is_valid_lock_name(self.from_name), f"{key}.from-name", f"{show(self.from_name)} is not a lock name")
        _require(is_content_hash(self.from_content_hash),
                 f"{key}.from-content-hash", f"{show(self.from_content_hash)} is not sha256:<64 hex>")
        _check(f"{key}.promoted-at", timestamp_problem(self.promoted_at))
        _require(len(self.test_receipts) <= 100, f"{key}.test-receipts", "has more than 100 entries")
        for i, receipt in enumerate(self.test_receipts):
            _check(f"{key}.test-receipts[{i}]", text_problem(receipt, 1024))


@dataclass(frozen=True, kw_only=True, slots=True)
class Provenance:
    tool_version: str
    uv_version: str
    resolved_at: str  # ISO 8601 UTC
    promotion: Promotion | None = None

    def __post_init__(self) -> None:
        for key, value in (("tool-version", self.tool_version), ("uv-version", self.uv_version)):
            _require(bool(_TOOL_VERSION.fullmatch(value)), f"provenance.{key}", f"{show(value)} is not a version")
        _check("provenance.resolved-at", timestamp_problem(self.resolved_at))


@dataclass(frozen=True, kw_only=True, slots=True)
class Lock:
    name: str
    phase: Phase
    vllm: VllmInput
    torch: TorchInput
    general_index: str
    target: Target
    build: BuildRecipe
    layout: SourceLayout
    external_sources: tuple[ExternalSource, ...]
    packages: tuple[Package, ...]
    provenance: Provenance
    rust: RustFrontend | None = None  # None: the commit has none, or build.without-rust
    lock_version: int = field(default=LOCK_VERSION)

    def __post_init__(self) -> None:
        _require(is_valid_lock_name(self.name), "name", f"{show(self.name)} must match {_LOCK_NAME.pattern}")
        _require(self.phase in ("development", "stable"), "phase", f"{show(self.phase)} is not development or stable")
        _check("inputs.general-index.original.url", index_url_problem(self.general_index))
        names = [p.name for p in self.packages]
        _require(names == sorted(names), "packages", "must be sorted by name")
        _unique("packages", "name", names)
        for i, name in enumerate(self.torch.left_out):
            _require(name not in names, f"inputs.torch.locked.left-out[{i}]", f"{show(name)} is a locked package")
        _require(self.torch.cuda != "cpu" or self.build.target_device in ("cpu", "empty"), "inputs.torch.original.cuda",
                 f"a CPU torch cannot build for target device {show(self.build.target_device)}")
        _require(not (self.build.without_rust and self.rust is not None), "build.without-rust",
                 "the lock leaves the Rust frontend out but also locks it ([rust])")
        _unique("external-sources", "name", [s.name for s in self.external_sources])
        _unique("external-sources", "override", [s.override for s in self.external_sources])
        for i, package in enumerate(self.packages):
            index = self.torch.index if package.source == "torch" else self.general_index
            for j, wheel in enumerate(package.wheels):
                _check(f"packages[{i}].wheels[{j}].url", package_url_problem(wheel.url, wheel.filename, index))

    def package(self, name: str) -> Package | None:
        wanted = canonicalize_name(name)
        return next((p for p in self.packages if p.name == wanted), None)
