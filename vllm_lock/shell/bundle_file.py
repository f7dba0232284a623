"""The bundle file: one uncompressed tar (vllm_lock/bundle_manifest.py names its members).

Written deterministically (members sorted, mtime 0, uid/gid 0, no user or group names, mode
0644, the manifest last) through a temporary name, so the same inputs give the same bytes and a
failed write leaves nothing. Read as untrusted input: regular files only, names from the schema
only (no absolute path, no `..`, no link, device or sparse member), each name once, bounded
counts and sizes, every byte hashed on its way to disk."""

from __future__ import annotations

import errno
import hashlib
import os
import tarfile
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from vllm_lock.bundle_manifest import MANIFEST, MAX_MANIFEST, Member, path_problem
from vllm_lock.errors import BundleError, OutputError, PreflightError
from vllm_lock.shell import limits
from vllm_lock.shell.store import Store, entry_lock, inside

CHUNK = 1 << 20
# a PAX or GNU long-name header is read whole into memory by tarfile before any member check runs:
# a bundle's own names are a few hundred bytes, so anything past this is refused unread
MAX_HEADER_BYTES = 1 << 20
_HEADER_TYPES = frozenset({tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                           tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK})


class _HugeHeader(tarfile.TarError):
    pass


class _BoundedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses an extended header larger than MAX_HEADER_BYTES before reading it."""

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise _HugeHeader(f"an extended header of {self.size} bytes (at most {MAX_HEADER_BYTES})")
        return super()._proc_member(tarfile_)  # type: ignore[misc,no-any-return]


def max_members() -> int:
    return int(limits.setting("VLLM_LOCK_BUNDLE_MAX_MEMBERS", 100_000))


def max_bytes() -> int:
    """Bytes a bundle may unpack to, all members together (VLLM_LOCK_BUNDLE_MAX_BYTES, 512 GiB)."""
    return int(limits.setting("VLLM_LOCK_BUNDLE_MAX_BYTES", 512 << 30))


class _Hashing:
    """A file object that hashes what tarfile reads from it."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(n)
        self.digest.update(data)
        self.size += len(data)
        return data


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def write(out: Path, files: Sequence[tuple[str, Path]], manifest_for: Callable[[list[Member]], bytes]) -> list[Member]:
    """out holding files (member name, source file), sorted by name, then the manifest that
    manifest_for makes from the members written (it may raise: then nothing is written)."""
    out = out.absolute()
    try:
        fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    tmp = Path(tmp_name)
    members: list[Member] = []
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, source in sorted(files, key=lambda f: f[0]):
                size = source.stat().st_size
                with source.open("rb") as stream:
                    hashing = _Hashing(stream)
                    tar.addfile(_info(name, size), hashing)
                if hashing.size != size:
                    raise OutputError(f"{source} changed while it was bundled")
                members.append(Member(path=name, sha256=hashing.digest.hexdigest(), size=size))
            manifest = manifest_for(members)
            tar.addfile(_info(MANIFEST, len(manifest)), _Bytes(manifest))
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return members


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.at + n
        chunk, self.at = self.data[self.at:end], min(end, len(self.data))
        return chunk


def read(bundle: Path, dest: Path) -> tuple[dict[str, Member], bytes]:
    """Every member but the manifest unpacked under dest (hashed on the way), and the manifest's
    bytes. BundleError for anything a bundle never holds, or an archive that ends early."""
    seen: dict[str, Member] = {}
    manifest: bytes | None = None
    total = 0
    try:
        tar = tarfile.open(bundle, mode="r:", tarinfo=_BoundedTarInfo)
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle} not found") from None
    except _HugeHeader as exc:
        raise BundleError(f"refusing the bundle: {exc}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise BundleError(f"{bundle} is not a readable bundle (not an uncompressed tar: {exc})") from None
    with tar:
        try:
            for member in tar:
                name = member.name
                if manifest is not None:
                    raise BundleError(f"bundle member {name!r} follows {MANIFEST}, which must come last")
                if problem := path_problem(name):
                    raise BundleError(f"refusing the bundle: {problem}")
                if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.issparse():
                    raise BundleError(f"refusing the bundle: member {name!r} is not a regular file "
                                      f"(a link, directory or device)")
                if name in seen or name == MANIFEST and manifest is not None:
                    raise BundleError(f"refusing the bundle: member {name!r} appears twice")
                total += member.size
                if len(seen) >= max_members() or total > max_bytes():
                    raise BundleError(f"refusing the bundle: more than {max_members()} members or "
                                      f"{max_bytes()} bytes")
                stream = tar.extractfile(member)
                assert stream is not None
                if name == MANIFEST:
                    if member.size > MAX_MANIFEST:
                        raise BundleError(f"refusing the bundle: {MANIFEST} is larger than {MAX_MANIFEST} bytes")
                    manifest = stream.read()
                    if len(manifest) != member.size:
                        raise BundleError(f"{bundle} ends inside {MANIFEST} (truncated)")
                    continue
                seen[name] = _unpack(stream, member, inside(dest, *name.split("/")), bundle)
        except _HugeHeader as exc:
            raise BundleError(f"refusing the bundle: {exc}") from None
        except (tarfile.TarError, EOFError) as exc:
            raise BundleError(f"{bundle} is truncated or damaged ({exc})") from None
    if manifest is None:
        raise BundleError(f"{bundle} has no {MANIFEST} (truncated, or not a vllm-lock bundle)")
    return seen, manifest


def _unpack(stream: IO[bytes], member: tarfile.TarInfo, target: Path, bundle: Path) -> Member:
    digest = hashlib.sha256()
    size = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as out:
            while chunk := stream.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise PreflightError(f"no space left on the device while unpacking {bundle} into {target.parent}") from None
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
    if size != member.size:
        raise BundleError(f"{bundle} ends inside member {member.name!r} (truncated)")
    return Member(path=member.name, sha256=digest.hexdigest(), size=size)


def adopt(store: Store, sha256: str, filename: str, source: Path) -> bool:
    """Move a file whose bytes were hashed to sha256 on their way in into the store under its
    entry lock; an entry already there is kept. Returns whether the file was added."""
    target = store.path(sha256, filename)
    with entry_lock(store.root, sha256):
        if target.is_file():
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return True
