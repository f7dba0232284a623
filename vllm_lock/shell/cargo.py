"""Rust for the build: the crates a lock names, fetched and checked against their Cargo.lock
checksums, vendored as a cargo "directory source"; a CARGO_HOME whose config points crates-io at
it (offline); and the real rustc/cargo binaries (not rustup's proxies, which would read the source
tree's rust-toolchain.toml and try to download that exact channel).

Why a directory source, not a local registry served over HTTP: cargo needs no index and no network
at all for it (CARGO_NET_OFFLINE=true holds), and it checks each vendored crate against the
`package` checksum in `.cargo-checksum.json`, which is the Cargo.lock checksum the lock carries.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from vllm_lock import rust as rust_rules
from vllm_lock.errors import IntegrityError, OutputError, PreflightError, VllmLockError
from vllm_lock.model import Crate
from vllm_lock.shell import proc
from vllm_lock.shell.store import Store, file_sha256

MAX_CRATE_UNPACKED = 512 << 20  # bytes of one unpacked crate; the largest on crates.io are ~100 MB
LEFT_OUT_MESSAGE = "vllm-lock: this lock leaves the Rust frontend out (resolve --no-rust)"


def fetch(crates: tuple[Crate, ...], registry: str, store: Store, say: Callable[[str], None]) -> dict[Crate, Path]:
    """Each crate's .crate file in the content-addressed cache, its bytes checked against the
    lock's checksum (a mismatch is IntegrityError, exit 8, and nothing is kept)."""
    paths: dict[Crate, Path] = {}
    downloaded = 0
    for crate in crates:
        filename = rust_rules.crate_filename(crate.name, crate.version)
        _, _, fresh = store.fetch(rust_rules.crate_url(registry, crate.name, crate.version), filename,
                                  expected_sha256=crate.checksum)
        path = store.path(crate.checksum, filename)
        if not fresh and file_sha256(path) != crate.checksum:  # a cache file damaged since
            path.unlink()
            raise IntegrityError(f"crate {crate.name} {crate.version}: the cached {path} no longer hashes to the "
                                 f"lock's checksum {crate.checksum}; removed it, rerun install")
        downloaded += fresh
        paths[crate] = path
    say(f"    crates: {len(crates)} checked against Cargo.lock's checksums ({downloaded} downloaded)")
    return paths


def vendor(paths: dict[Crate, Path], dest: Path) -> None:
    """Unpack each crate into dest/<name>-<version> with the .cargo-checksum.json cargo checks a
    directory source against. A crate already there with the same checksum is kept."""
    dest.mkdir(parents=True, exist_ok=True)
    for crate, path in paths.items():
        folder = dest / f"{crate.name}-{crate.version}"
        marker = folder / ".cargo-checksum.json"
        try:
            if json.loads(marker.read_text(encoding="utf-8")).get("package") == crate.checksum:
                continue
        except (OSError, ValueError):
            pass
        shutil.rmtree(folder, ignore_errors=True)
        work = Path(tempfile.mkdtemp(dir=dest, prefix=".unpack."))
        try:
            files = _unpack(path, crate, work)
            (work / ".cargo-checksum.json").write_text(
                json.dumps({"files": files, "package": crate.checksum}, sort_keys=True), encoding="utf-8")
            os.replace(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _unpack(path: Path, crate: Crate, dest: Path) -> dict[str, str]:
    """Regular files under <name>-<version>/ only; returns {relative path: sha256}."""
    import gzip  # here: every install imports this module, few unpack crates
    import tarfile

    prefix = f"{crate.name}-{crate.version}"
    files: dict[str, str] = {}
    total = 0
    try:
        with gzip.open(path) as raw, tarfile.open(fileobj=io.BytesIO(raw.read(MAX_CRATE_UNPACKED + 1))) as tar:
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if not parts or parts[0] != prefix or ".." in parts or PurePosixPath(member.name).is_absolute():
                    raise IntegrityError(
                        f"crate {crate.name} {crate.version}: member {member.name!r} is outside {prefix}/"
                    )
                if member.isdir():
                    continue
                if not member.isfile():
                    continue  # links and devices: cargo publishes none
                total += member.size
                if total > MAX_CRATE_UNPACKED:
                    raise IntegrityError(
                        f"crate {crate.name} {crate.version}: unpacks to more than {MAX_CRATE_UNPACKED} bytes"
                    )
                extracted = tar.extractfile(member)
                assert extracted is not None
                data = extracted.read()
                relative = "/".join(parts[1:])
                target = dest.joinpath(*parts[1:])
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data)
                except OSError as exc:  # the disk, not the archive: never "not a readable .crate"
                    raise _write_failed(exc, target, crate) from None
                files[relative] = hashlib.sha256(data).hexdigest()
    except (OSError, EOFError, tarfile.TarError) as exc:
        raise IntegrityError(f"crate {crate.name} {crate.version}: not a readable .crate archive ({exc})") from None
    return files


def _write_failed(exc: OSError, target: Path, crate: Crate) -> VllmLockError:
    """A full disk is exit 7, as for a wheel staged or downloaded (docs/faults.md); any other
    write failure (read-only, permissions) exit 9, as install reports it elsewhere."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return PreflightError(f"no space left on the device while unpacking crate {crate.name} {crate.version} "
                              f"to {target}")
    return OutputError(f"cannot write {target} (crate {crate.name} {crate.version}): {exc.strerror or exc}")


def write_cargo_home(cargo_home: Path, vendor_dir: Path) -> None:
    cargo_home.mkdir(parents=True, exist_ok=True)
    (cargo_home / "config.toml").write_text(rust_rules.cargo_config(str(vendor_dir)), encoding="utf-8")


def real_binaries(rustc: str, cargo: str) -> tuple[str, str]:
    """The toolchain's own rustc and cargo. Through rustup's proxies a build inside vLLM's tree
    would follow its rust-toolchain.toml (`channel = "1.95"`) and refuse, or download, a toolchain
    named exactly that; the binaries in the sysroot the proxy picks here are the ones preflight
    measured (asked from the same directory as preflight asked their versions)."""
    result = proc.run([rustc, "--print", "sysroot"], timeout=60)
    if not result.ok or not result.output.strip():
        return rustc, cargo
    bin_dir = Path(result.output.strip().splitlines()[-1]) / "bin"
    real_rustc = bin_dir / "rustc"
    real_cargo = bin_dir / "cargo"
    return (str(real_rustc) if real_rustc.is_file() else rustc, str(real_cargo) if real_cargo.is_file() else cargo)


def tool_dir(dest: Path, rustc: str, cargo: str) -> Path:
    """dest/{rustc,cargo} linking to the real binaries: first on the build's PATH."""
    dest.mkdir(parents=True, exist_ok=True)
    for name, target in (("rustc", rustc), ("cargo", cargo)):
        link = dest / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)
    return dest


def left_out_dir(dest: Path) -> Path:
    """dest/{rustc,cargo} that refuse to run: with the frontend left out, setuptools-rust finds no
    compiler whatever the machine has, and skips the optional extension the same way everywhere."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("rustc", "cargo"):
        script = dest / name
        script.write_text(f"#!/bin/sh\necho '{LEFT_OUT_MESSAGE}' >&2\nexit 1\n", encoding="utf-8")
        script.chmod(0o755)
    return dest
