"""verify: an installed environment against its lock. Missing, extra and different packages,
files changed since install (RECORD hashes), the source commit and patched files, the receipt.
Reads files only (dist-info directories, RECORD, git HEAD): no interpreter is started."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from io import BufferedReader
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from vllm_lock import codec, plan, torch_family
from vllm_lock import receipt as receipts
from vllm_lock import requirements as requirement_rules
from vllm_lock import rust as rust_rules
from vllm_lock.build_identity import match_installed
from vllm_lock.errors import InstallError, UsageError
from vllm_lock.generation import Generation
from vllm_lock.model import Lock, Package, Wheel
from vllm_lock.shell import generations, lockfiles
from vllm_lock.shell import git as git_shell

OWN = "vllm"  # built from source: present, any version, not in the lock's package list
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_HEADER_FILE = 16 << 20  # bytes of a METADATA or WHEEL file read: its header block comes first
MAX_RECORD = 256 << 20


@dataclass
class Report:
    lock: str
    venv: str
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    different: list[dict[str, str]] = field(default_factory=list)
    modified_files: list[str] = field(default_factory=list)
    # files (and linked directories) in site-packages that no installed distribution's RECORD
    # lists: a planted `.pth` or `sitecustomize.py` runs at every start of the environment
    unowned: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    receipt: list[str] = field(default_factory=list)
    vllm_version: str | None = None
    wheels: dict[str, str] = field(default_factory=dict)  # package -> the locked wheel that is installed
    # the built vLLM's own Requires-Dist against the environment: how many apply to the target,
    # the unmet ones (drift), and the unmet ones the lock leaves out on purpose (notes)
    requires_dist_checked: int = 0
    unmet: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def drift(self) -> bool:
        return bool(self.package_drift or self.modified_files or self.unowned or self.source or self.receipt
                    or self.unmet)

    @property
    def package_drift(self) -> str | None:
        """The package set's differences from the lock (missing, extra, different) in one line, or None."""
        return "; ".join(parts) if (parts := self._package_parts()) else None

    def _package_parts(self) -> list[str]:
        parts = []
        if self.missing:
            parts.append("missing " + ", ".join(self.missing))
        if self.extra:
            parts.append("extra " + ", ".join(self.extra))
        if self.different:
            parts.append("different " + ", ".join(f"{d['name']} {d['installed']} (lock {d['locked']})"
                                                  for d in self.different))
        return parts

    def summary(self) -> str:
        parts = self._package_parts()
        if self.modified_files:
            parts.append(f"{len(self.modified_files)} files changed since install ({self.modified_files[0]}, ...)")
        if self.unowned:
            parts.append(f"{len(self.unowned)} files no package installed ({self.unowned[0]}, ...)")
        parts += self.source + self.receipt + self.unmet
        return "; ".join(parts) or "clean"

    def to_json(self) -> str:
        data: dict[str, Any] = asdict(self)
        data["drift"] = self.drift
        return json.dumps(data, indent=2)

    def render(self) -> str:
        lines = [f"verify {self.venv} against {self.lock}: {'DRIFT' if self.drift else 'clean'}"]
        if self.vllm_version:
            lines.append(f"  vllm {self.vllm_version}")
        for name in self.missing:
            lines.append(f"  missing    {name}")
        for name in self.extra:
            lines.append(f"  extra      {name}")
        for d in self.different:
            lines.append(f"  different  {d['name']}: installed {d['installed']}, lock {d['locked']}")
        for path in self.modified_files:
            lines.append(f"  changed    {path}")
        for path in self.unowned:
            lines.append(f"  unowned    {path}")
        for line in self.source:
            lines.append(f"  source     {line}")
        for line in self.receipt:
            lines.append(f"  receipt    {line}")
        for line in self.unmet:
            lines.append(f"  unmet      {line}")
        for line in self.notes:
            lines.append(f"  note       {line}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Dist:
    name: str
    version: str
    dist_info: Path
    requires_dist: tuple[str, ...] = ()


def site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise UsageError(f"{venv} is not a virtual environment (no lib/python3*/site-packages)")
    return found[0]


def metadata_headers(text: str) -> dict[str, list[str]]:
    """The header block of a METADATA file (email header format, as the core metadata spec
    writes it): lower-cased field name -> its values in order (a folded one keeps its line
    breaks, as email's). Read by hand: email's parser costs ~0.2 ms a file, an environment has
    hundreds, and only the header block before the first empty line matters here. Its grammar is
    email's, line for line, since importlib.metadata (and pip through it) reads the file with
    email's parser: a hostile file must not show verify other names, versions or requirements
    than those tools see (a line of blanks, a `From ` line, a field name with a blank)."""
    fields: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in _LINE_BREAK.split(text):  # the breaks email's parser knows, not str.splitlines' many
        if line[:1] in (" ", "\t"):  # a continuation, a line of blanks included
            if last is not None:
                last[-1] += "\n" + line
            continue
        if line.startswith("From "):  # an envelope line (a defect past the first): no field, the block goes on
            last = None
            continue
        name, colon, value = line.partition(":")
        if not colon or not (name.isascii() and name.isprintable()) or " " in name:
            break  # the empty line, or what email's parser takes for the body's first line (its field
            # names are printable ASCII without a blank)
        last = fields.setdefault(name.lower(), [])  # "" (no name): read by no one, as email skips it
        last.append(value.lstrip(" \t"))  # email's value: only these blanks go
    return fields


@contextmanager
def _plain(path: Path) -> Iterator[BufferedReader]:
    """path opened to read; OSError unless it is a plain file (a FIFO planted in the venv is not
    waited on, O_NONBLOCK: verify must report the drift, not stall on it)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a plain file")
        with open(fd, "rb", closefd=False) as stream:
            yield stream
    finally:
        os.close(fd)


def _plain_file(path: Path, limit: int) -> bytes:
    with _plain(path) as stream:
        return stream.read(limit)


def _file_digest(path: Path) -> str:
    """The plain file's sha256 as RECORD writes it (read in chunks, not whole into memory)."""
    with _plain(path) as stream:
        digest = hashlib.file_digest(stream, "sha256").digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def installed(site: Path) -> dict[str, Dist]:
    """Each *.dist-info's distribution; one whose METADATA does not read (gone, not a file) is
    named by its directory, version "?": drift, never passed over. A second *.dist-info of one
    name is kept as `NAME (DIR)`, a name no lock has: drift too (which one an importer reads
    depends on the directory listing)."""
    dists: dict[str, Dist] = {}
    for info in sorted(site.glob("*.dist-info")):
        try:
            text = _plain_file(info / "METADATA", MAX_HEADER_FILE).decode("utf-8", errors="replace")
        except OSError:
            text = ""
        meta = metadata_headers(text)
        name: str = canonicalize_name(meta.get("name", [info.name.split("-")[0]])[0])
        if name in dists:
            name = f"{name} ({info.name})"
        dists[name] = Dist(name=name, version=meta.get("version", ["?"])[0], dist_info=info,
                           requires_dist=tuple(meta.get("requires-dist", ())))
    return dists


def _same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


@dataclass(frozen=True)
class _Unreadable:
    problem: str  # "missing", "larger than N bytes"


def installed_record(dist: Dist) -> str | _Unreadable:
    """The text of the distribution's RECORD, read once (a plain file, at most MAX_RECORD bytes)."""
    try:
        data = _plain_file(dist.dist_info / "RECORD", MAX_RECORD + 1)
        if len(data) > MAX_RECORD:
            return _Unreadable(f"larger than {MAX_RECORD} bytes")
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return _Unreadable("missing")


def _record_entries(text: str) -> list[tuple[str, str]]:
    """Each RECORD row's (path, hash field: `sha256=...` or empty)."""
    entries = []
    for row in text.splitlines():
        parts = row.rsplit(",", 2)
        if len(parts) == 3:
            entries.append((parts[0].strip('"'), parts[1]))
    return entries


def changed_files(site: Path, dist: Dist, record: str | _Unreadable) -> list[str]:
    """Files of a distribution whose bytes differ from its RECORD (or that are gone)."""
    if isinstance(record, _Unreadable):
        return [f"{dist.dist_info.name}/RECORD ({record.problem})"]
    out = []
    for rel, hashed in _record_entries(record):
        if not hashed.startswith("sha256="):
            continue
        try:
            got = _file_digest(site / rel)
        except FileNotFoundError:
            out.append(f"{rel} (deleted)")
            continue
        except OSError:
            out.append(f"{rel} (not a plain file, or unreadable)")
            continue
        if got != hashed.removeprefix("sha256="):
            out.append(rel)
    return out


def unowned_files(site: Path, records: Iterable[str | _Unreadable]) -> list[str]:
    """Every file of site-packages that no *.dist-info's RECORD lists (relative, sorted), outside
    the *.dist-info directories themselves and the bytecode Python writes into __pycache__; and
    every linked directory (a wheel cannot install one). An unreadable RECORD owns nothing
    (changed_files reports it)."""
    owned = {os.path.normpath(path) for record in records if isinstance(record, str)
             for path, _ in _record_entries(record) if path}
    found: list[str] = []
    for root, dirs, names in os.walk(site):
        rel_root = os.path.relpath(root, site)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if not d.endswith(".dist-info") or os.path.islink(os.path.join(root, d))]
        bytecode = os.path.basename(root) == "__pycache__"
        for name in dirs:
            if os.path.islink(os.path.join(root, name)):
                found.append(os.path.normpath(os.path.join(rel_root, name)) + "/ (a link)")
        for name in names:
            rel = os.path.normpath(os.path.join(rel_root, name))
            if rel not in owned and not (bytecode and name.endswith(".pyc")):
                found.append(rel)
    return sorted(found)


def _wheel_tags(dist: Dist) -> tuple[frozenset[str], str]:
    """The tags and build tag the installed distribution's WHEEL file records (its format is
    METADATA's)."""
    try:
        text = _plain_file(dist.dist_info / "WHEEL", MAX_HEADER_FILE).decode("utf-8", errors="replace")
    except OSError:
        return frozenset(), ""
    meta = metadata_headers(text)
    return frozenset(meta.get("tag", ())), (meta.get("build", [""])[0]).strip()


def _filename_tags(wheel: Wheel) -> tuple[frozenset[str], str]:
    _, _, build, tags = parse_wheel_filename(wheel.plain_filename)
    return frozenset(str(t) for t in tags), "".join(str(part) for part in build)


def _record_rows(text: str) -> set[tuple[str, str]]:
    """(path, hash) of a RECORD's hashed files outside *.dist-info and *.data (an installer moves
    .data files and writes its own dist-info files)."""
    return {(path, hashed) for path, hashed in _record_entries(text)
            if hashed.startswith("sha256=") and not path.split("/", 1)[0].endswith((".dist-info", ".data"))}


def _record_matches(dist: Dist, wheel_file: Path) -> bool:
    """Whether every file the wheel's own RECORD lists is installed with that hash."""
    import zipfile  # here: only a wheel whose WHEEL file disagrees with its name is opened

    try:
        with zipfile.ZipFile(wheel_file) as archive:
            name = next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith(".dist-info/RECORD"))
            wanted = _record_rows(archive.read(name).decode("utf-8", errors="replace"))
    except (OSError, StopIteration, zipfile.BadZipFile, KeyError):
        return False
    installed = installed_record(dist)  # the installed one as verify reads it: never waits on a FIFO
    return bool(wanted) and isinstance(installed, str) and wanted <= _record_rows(installed)


def installed_wheel(package: Package, dist: Dist, staged: Path | None) -> Wheel | None:
    """The locked wheel of package that dist was installed from: the one whose file name carries
    the tags (and build tag) of the installed WHEEL file; failing that (a wheel whose WHEEL file
    disagrees with its name), the one whose own RECORD the installed files match, read from the
    generation's staged wheels. None: no locked wheel was installed."""
    tags = _wheel_tags(dist)
    by_tags = [w for w in package.wheels if _filename_tags(w) == tags]
    if len(by_tags) == 1:
        return by_tags[0]
    if staged is not None:
        for wheel in by_tags or package.wheels:
            if _record_matches(dist, staged / wheel.plain_filename):
                return wheel
    return None


def inspect_packages(lock: Lock, venv: Path, *, check_files: bool = True) -> Report:
    """The installed set against the lock, and the built vLLM's own requirements against it; with
    check_files, every installed file against its RECORD hash too, and every file in site-packages
    against the RECORDs (install skips both: uv has just written them from sha256-checked wheels)."""
    site = site_packages(venv)
    dists = installed(site)
    report = Report(lock=lock.name, venv=str(venv))
    locked = {p.name: p.version for p in lock.packages}
    staged = Generation.of_venv(venv).wheels  # the generation's staged wheels (install), when still there
    for package in lock.packages:
        name, version = package.name, package.version
        dist = dists.get(name)
        if dist is None:
            report.missing.append(f"{name}=={version}")
        elif not _same_version(dist.version, version):
            report.different.append({"name": name, "installed": dist.version, "locked": version})
        elif (wheel := installed_wheel(package, dist, staged if staged.is_dir() else None)) is None:
            tags = ".".join(sorted(_wheel_tags(dist)[0])) or "no WHEEL tags"
            report.different.append({
                "name": name,
                "installed": f"{version} wheel {tags}",
                "locked": " or ".join(w.plain_filename for w in package.wheels),
            })
        else:
            report.wheels[name] = wheel.plain_filename
    for name in sorted(dists):
        if name not in locked and name != OWN:
            report.extra.append(f"{name}=={dists[name].version}")
    if OWN not in dists:
        report.missing.append(OWN)
    else:
        report.vllm_version = dists[OWN].version
    if check_files:
        records = {name: installed_record(dist) for name, dist in dists.items()}
        for name in sorted(dists):
            report.modified_files += changed_files(site, dists[name], records[name])
        report.unowned = unowned_files(site, records.values())
    check_requires_dist(lock, dists, report)
    return report


def check_requires_dist(lock: Lock, dists: dict[str, Dist], report: Report) -> None:
    """The installed vLLM's own metadata (the Requires-Dist its build declared) against the
    environment, markers evaluated for the lock's target: an unmet requirement is drift, named
    with what is installed. The torch-family members the lock leaves out on purpose
    (inputs.torch.locked.left-out, `resolve --without`) are expected to be unmet: notes."""
    built = dists.get(OWN)
    if built is None:
        return  # reported as missing
    check = requirement_rules.check_requires_dist(
        built.requires_dist,
        {name: dist.version for name, dist in dists.items()},
        lambda name: dists[name].requires_dist if name in dists else (),
        environment=torch_family.target_environment(lock.target),
        left_out=lock.torch.left_out,
    )
    report.requires_dist_checked = check.checked
    report.unmet += [u.describe() for u in check.unmet]
    report.notes += [f"{u.describe()} (left out on purpose by the lock: resolve --without {u.name})"
                     for u in check.expected]


def require_built_requirements(report: Report) -> list[str]:
    """install's verify step: InstallError naming every unmet requirement of the built vLLM (and
    what is installed instead); the notes on the expected ones otherwise."""
    if report.unmet:
        raise InstallError(f"the built vLLM's own requirements are not met: {'; '.join(report.unmet)}")
    return [f"{report.requires_dist_checked} requirements of the built vLLM met", *report.notes]


def rust_artifact_problems(lock: Lock, venv: Path, src: Path) -> list[str]:
    """Each Rust artifact the lock's frontend builds (a `_rust_*.so` module, an executable), in
    site-packages or, for an editable install, in the source tree: one line per missing one."""
    if lock.rust is None:
        return []
    site = site_packages(venv)
    problems = []
    for artifact in lock.rust.artifacts:
        folder, pattern = rust_rules.artifact_globs(artifact.kind, artifact.target)
        if not any(f.is_file() for root in (site, src) for f in (root / folder).glob(pattern)):
            problems.append(f"Rust {artifact.kind} {artifact.target} ({folder}/{pattern}) is not installed")
    return problems


def verify(lock_ref: str, venv: Path) -> Report:
    lock, path = lockfiles.read(lock_ref)
    venv = Path(os.path.abspath(venv))
    if not venv.exists():
        raise UsageError(f"{venv} does not exist")
    real = venv.resolve()
    report = inspect_packages(lock, real)
    report.lock = str(path)
    if half_switch := generations.half_switch_problem(venv):
        report.source.append(half_switch)
    generation = Generation.of_venv(real)
    done = receipts.read(generation)
    if done is None:
        report.receipt.append(f"no complete receipt in {generation.root}")
        src = generation.src
    else:
        src = Path(done.src)
        # the same build from another lock file (renamed, promoted) is not drift
        if not match_installed(lock, generation=done.identity, content_hash=done.content_hash).same_build:
            report.receipt.append(
                f"installed from {done.lock_name} {done.content_hash}, not this lock {codec.content_hash(lock)}"
            )
    if src.is_dir():
        head = git_shell.head_commit(src)
        if head != lock.vllm.commit:
            report.source.append(f"{src}: HEAD {head}, lock {lock.vllm.commit}")
        # the installed distribution's version (what `vllm --version` prints, read without running
        # it: an `empty` build's CLI cannot start) must name the locked commit
        if report.vllm_version is not None and (
            problem := plan.version_problem(report.vllm_version, lock.vllm.commit, git_shell.exact_tag(src))
        ):
            report.source.append(problem)
        for patched in lock.layout.patched_files:
            file = src / patched.path
            got = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
            if got != patched.sha256_after:
                report.source.append(f"{patched.path} differs from the lock's patched file")
    elif src.is_symlink():  # a source store path removed by hand (store gc keeps what a generation links to)
        report.source.append(f"source checkout {src} links to {os.readlink(src)}, which is gone: "
                             "rerun install to make it again")
    else:
        report.source.append(f"source checkout {src} is missing")
    report.source += rust_artifact_problems(lock, real, src)
    # a non-editable substitution built nothing: it staged no external source (its src is a store link)
    built_nothing = done is not None and done.source == "store"
    for source in () if built_nothing else lock.external_sources:
        stamp = generation.external_stamp(source.name)
        staged = stamp.read_text().strip() if stamp.is_file() else None
        if staged != source.commit:
            report.source.append(
                f"external source {source.name}: staged {staged[:12] if staged else 'nothing'}, lock "
                f"{source.commit[:12]}"
            )
    return report
