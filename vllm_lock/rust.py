"""vLLM's Rust frontend as a commit declares it: rust-toolchain.toml's channel, Cargo.lock's crates,
and the RustExtension targets setup.py builds. Pure: file texts in, data out.

Detection (per commit, never by version): a `rust-toolchain.toml` (or legacy `rust-toolchain`) at
the root, exactly one `Cargo.lock` in the tree (vLLM 0.33.0: `rust/Cargo.lock`), and a setup.py
that imports setuptools_rust. The RustExtension calls are read with ast from setup.py and from the
repository's own Python files setup.py names (0.33.0 loads `tools/build_rust.py`), so a call
commented out is not a target.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass

from vllm_lock import pysource

CRATES_IO_SOURCES = (
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
)
TOOLCHAIN_FILES = ("rust-toolchain.toml", "rust-toolchain")
# setuptools-rust's bindings: Exec installs an executable, every other one a Python extension
EXECUTABLE_BINDINGS = ("Exec",)
MAX_TOML_CHARS = 16 << 20  # vLLM 0.33.0's Cargo.lock: 159 KB
_CHANNEL = re.compile(r"([0-9]{1,3})\.([0-9]{1,4})(?:\.([0-9]{1,4}))?")


class RustError(ValueError):
    """A Rust frontend that cannot be locked: the message names the file."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CrateRecord:
    name: str
    version: str
    checksum: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ArtifactRecord:
    target: str  # dotted, as RustExtension(target=...): "vllm._rust_hello", "vllm.vllm-rs"
    kind: str  # "extension" (a Python module, a .so) or "executable"


@dataclass(frozen=True, kw_only=True, slots=True)
class RustFacts:
    toolchain_file: str
    channel: str  # "1.95"
    cargo_lock: str  # its path in the tree
    cargo_lock_sha256: str
    crates: tuple[CrateRecord, ...]  # from the crates.io registry, sorted by (name, version)
    git_sources: tuple[str, ...]  # `source = "git+..."` entries (not fetched from a registry)
    artifacts: tuple[ArtifactRecord, ...]


def channel_version(channel: str) -> tuple[int, ...] | None:
    """"1.95" -> (1, 95); a named channel ("stable", "nightly-2026-01-01") -> None."""
    match = _CHANNEL.fullmatch(channel)
    return tuple(int(g) for g in match.groups() if g is not None) if match else None


def _toml(path: str, text: str) -> dict[str, object]:
    """tomllib recurses once per nested array or inline table: 100,000 `[` end in RecursionError."""
    if len(text) > MAX_TOML_CHARS:
        raise RustError(f"{path}: larger than {MAX_TOML_CHARS} characters")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RustError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise RustError(f"{path}: arrays or tables nested too deeply to read") from None
    except ValueError as exc:  # an integer past Python's digit limit (int_max_str_digits)
        raise RustError(f"{path}: not valid TOML ({str(exc).split(';')[0][:120]})") from None


def parse_toolchain(path: str, text: str) -> str:
    """The channel of a rust-toolchain(.toml); only a numeric channel can be checked against a
    machine's rustc, so a named one is refused."""
    if path.endswith(".toml"):
        data = _toml(path, text)
        toolchain = data.get("toolchain")
        channel = toolchain.get("channel") if isinstance(toolchain, dict) else None
    else:
        channel = text.strip() or None
    if not isinstance(channel, str):
        raise RustError(f"{path}: no [toolchain] channel")
    if channel_version(channel) is None:
        raise RustError(f"{path}: channel {channel!r} is not a version like 1.95 (a named channel cannot be checked)")
    return channel


def parse_cargo_lock(path: str, text: str) -> tuple[tuple[CrateRecord, ...], tuple[str, ...]]:
    """(crates from crates.io with their checksums, git sources). Workspace members have no
    source; a crate from another registry, or one without a checksum, is an error."""
    data = _toml(path, text)
    packages = data.get("package", [])
    if not isinstance(packages, list):
        raise RustError(f"{path}: [[package]] is not a list")
    crates: dict[tuple[str, str], CrateRecord] = {}
    git: list[str] = []
    for i, package in enumerate(packages):
        if not isinstance(package, dict):
            raise RustError(f"{path}: package[{i}] is not a table")
        name, version, source = package.get("name"), package.get("version"), package.get("source")
        if not isinstance(name, str) or not isinstance(version, str):
            raise RustError(f"{path}: package[{i}] lacks a name or version")
        if source is None:
            continue
        if not isinstance(source, str):
            raise RustError(f"{path}: {name} {version}: source is not a string")
        if source.startswith("git+"):
            git.append(source)
            continue
        if source not in CRATES_IO_SOURCES:
            raise RustError(f"{path}: {name} {version} comes from {source!r}, not crates.io")
        checksum = package.get("checksum")
        if not isinstance(checksum, str):
            raise RustError(f"{path}: {name} {version} has no checksum")
        crates[(name, version)] = CrateRecord(name=name, version=version, checksum=checksum)
    return tuple(crates[key] for key in sorted(crates)), tuple(sorted(set(git)))


def rust_extension_targets(sources: dict[str, str]) -> tuple[ArtifactRecord, ...]:
    """Every RustExtension(target=..., binding=Binding.X) call in these Python files."""
    found: dict[str, ArtifactRecord] = {}
    for path, text in sorted(sources.items()):
        if "RustExtension" not in text and text.isascii():
            # no such call can be in it (0.33.0's 68 KB setup.py, vllm/envs.py): not parsed. Python
            # folds identifiers to NFKC, so a file with any non-ASCII character is parsed whatever it spells.
            continue
        try:
            tree = pysource.parse(text, path)
        except pysource.PythonSourceError as exc:
            raise RustError(f"cannot parse {exc}") from None
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or _call_name(node.func) != "RustExtension":
                continue
            keywords = {k.arg: k.value for k in node.keywords if k.arg}
            target = keywords.get("target", node.args[0] if node.args else None)
            if not isinstance(target, ast.Constant) or not isinstance(target.value, str):
                raise RustError(f"{path}:{node.lineno}: RustExtension target is not a string literal")
            binding = keywords.get("binding")
            binding_name = _call_name(binding) if binding is not None else "PyO3"
            kind = "executable" if binding_name in EXECUTABLE_BINDINGS else "extension"
            found[target.value] = ArtifactRecord(target=target.value, kind=kind)
    return tuple(found[t] for t in sorted(found))


def _call_name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def setup_py_modules(setup_py: str, files: frozenset[str]) -> tuple[str, ...]:
    """The repository's Python files setup.py names by path (0.33.0 loads tools/build_rust.py)."""
    named = {m for m in re.findall(r"[\"']([A-Za-z0-9_./-]+\.py)[\"']", setup_py) if m in files}
    for parts in re.findall(r"os\.path\.join\(\s*ROOT_DIR\s*,\s*((?:[\"'][A-Za-z0-9_.-]+[\"']\s*,?\s*)+)\)", setup_py):
        path = "/".join(re.findall(r"[\"']([A-Za-z0-9_.-]+)[\"']", parts))
        if path in files:
            named.add(path)
    return tuple(sorted(named))


def detect(files: frozenset[str] | set[str], read: Callable[[str], str]) -> RustFacts | None:
    """The commit's Rust frontend, or None when it has none."""
    toolchain_file = next((f for f in TOOLCHAIN_FILES if f in files), None)
    locks = sorted(f for f in files if f == "Cargo.lock" or f.endswith("/Cargo.lock"))
    setup_py = read("setup.py") if "setup.py" in files else ""
    if "setuptools_rust" not in setup_py:
        return None
    if toolchain_file is None:
        raise RustError("setup.py builds Rust extensions (setuptools_rust) but the tree has no rust-toolchain.toml")
    if len(locks) != 1:
        raise RustError(f"setup.py builds Rust extensions but the tree has {len(locks)} Cargo.lock files "
                        f"({', '.join(locks) or 'none'}); exactly one is needed")
    cargo_lock = locks[0]
    lock_text = read(cargo_lock)
    crates, git = parse_cargo_lock(cargo_lock, lock_text)
    modules = {"setup.py": setup_py}
    for path in setup_py_modules(setup_py, frozenset(files)):
        modules[path] = read(path)
    return RustFacts(
        toolchain_file=toolchain_file,
        channel=parse_toolchain(toolchain_file, read(toolchain_file)),
        cargo_lock=cargo_lock,
        cargo_lock_sha256=hashlib.sha256(lock_text.encode()).hexdigest(),
        crates=crates,
        git_sources=git,
        artifacts=rust_extension_targets(modules),
    )


FACTS_FORMAT = "vllm-lock rust facts 1"


def facts_to_json(facts: RustFacts | None) -> str:
    """What detect found in a tree, as the source store keeps it beside the tree it read."""
    data = None if facts is None else {
        "toolchain-file": facts.toolchain_file, "channel": facts.channel, "cargo-lock": facts.cargo_lock,
        "cargo-lock-sha256": facts.cargo_lock_sha256, "git-sources": list(facts.git_sources),
        "crates": [[c.name, c.version, c.checksum] for c in facts.crates],
        "artifacts": [[a.target, a.kind] for a in facts.artifacts],
    }
    return json.dumps({"format": FACTS_FORMAT, "facts": data}, sort_keys=True)


def facts_from_json(text: str) -> RustFacts | None:
    """facts_to_json's text back; RustError for anything else (the caller detects again)."""
    try:
        raw = json.loads(text)
        if raw["format"] != FACTS_FORMAT:
            raise RustError(f"not {FACTS_FORMAT}")
        data = raw["facts"]
        if data is None:
            return None
        strings = [data["toolchain-file"], data["channel"], data["cargo-lock"], data["cargo-lock-sha256"],
                   *data["git-sources"], *(x for c in data["crates"] for x in c),
                   *(x for a in data["artifacts"] for x in a)]
        if not all(isinstance(x, str) for x in strings):
            raise RustError("a value that is not a string")
        return RustFacts(
            toolchain_file=data["toolchain-file"], channel=data["channel"], cargo_lock=data["cargo-lock"],
            cargo_lock_sha256=data["cargo-lock-sha256"], git_sources=tuple(data["git-sources"]),
            crates=tuple(CrateRecord(name=n, version=v, checksum=c) for n, v, c in data["crates"]),
            artifacts=tuple(ArtifactRecord(target=t, kind=k) for t, k in data["artifacts"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RustError(f"unreadable rust facts: {exc}") from None


def crate_filename(name: str, version: str) -> str:
    return f"{name}-{version}.crate"


def crate_url(registry: str, name: str, version: str) -> str:
    """Where a registry serves a .crate file, in static.crates.io's layout:
    <registry>/<name>/<name>-<version>.crate."""
    return f"{registry.rstrip('/')}/{name}/{crate_filename(name, version)}"


def cargo_config(vendor_dir: str) -> str:
    """A cargo config that replaces crates.io with a directory source (the vendored crates) and
    keeps cargo off the network."""
    quoted = vendor_dir.replace("\\", "\\\\").replace('"', '\\"')
    return (
        "# written by vllm-lock: crates come from the lock's vendored copies only\n"
        "[source.crates-io]\n"
        'replace-with = "vllm-lock-vendored"\n\n'
        "[source.vllm-lock-vendored]\n"
        f'directory = "{quoted}"\n\n'
        "[net]\n"
        "offline = true\n"
    )


def artifact_globs(kind: str, target: str) -> tuple[str, str]:
    """(folder relative to site-packages or the source tree, file glob) of a built artifact."""
    *package, last = target.split(".")
    folder = "/".join(package)
    return folder, (last if kind == "executable" else f"{last}*.so")
