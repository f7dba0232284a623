"""The Rust frontend end to end on the test world's `rust-frontend` branch: resolve locks the
toolchain, the Cargo.lock and its crates; install refuses a machine without rustc/cargo before any
build, fetches the crates from a registry served on loopback, refuses one whose bytes differ from
Cargo.lock's checksum, builds offline against the vendored copies, and verify finds the `_rust_*.so`;
`--no-rust` is another build identity, built without it. Real uv, real cargo, real setuptools-rust."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from install_support import ResolvedLock, cli, install_args, resolve_world_lock

from vllm_lock import codec
from vllm_lock.build_identity import build_identity
from vllm_lock.shell.cargo import LEFT_OUT_MESSAGE
from vllm_lock_testworld import TestWorld
from vllm_lock_testworld import crates as tw_crates
from vllm_lock_testworld.repo import RUST_BRANCH

pytestmark = pytest.mark.slow


def _with_rust_path() -> str:
    """PATH with the Rust toolchain (rustup's bin folder, where the suite's CARGO_HOME points)."""
    path = os.environ.get("PATH", "")
    cargo_home = os.environ.get("CARGO_HOME")
    if cargo_home and (Path(cargo_home) / "bin" / "rustc").exists():
        path = f"{cargo_home}/bin:{path}"
    return path


def _without_rust_path() -> str:
    return ":".join(p for p in _with_rust_path().split(":")
                    if p and not (Path(p) / "rustc").exists() and not (Path(p) / "cargo").exists())


@pytest.fixture(scope="module")
def rust(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> ResolvedLock:
    if shutil.which("rustc", path=_with_rust_path()) is None:
        if os.environ.get("VLLM_LOCK_REQUIRE_RUST") == "1":  # scripts/test.sh: these tests must run
            pytest.fail("no rustc on this machine: the Rust build tests need rustc and cargo >= 1.95 (rustup)")
        pytest.skip("no rustc on this machine (rustc and cargo >= 1.95, e.g. from rustup)")
    root = tmp_path_factory.mktemp("rust")
    cache = root / "cache"
    lock, path = resolve_world_lock(world, root / "rust.lock.toml", cache, ref=RUST_BRANCH, target_device="empty")
    return ResolvedLock(lock=lock, path=path, cache=cache, root=root)


def _install(world: TestWorld, lock: Path, opt: Path, cache: Path, path: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": path, "RUSTC": "", "CARGO": ""}
    return cli(*install_args(lock, opt), "--crate-registry", world.crate_registry, cache=cache, env=env, timeout=600)


def _rust_modules(opt: Path) -> list[str]:
    site = next((opt / "vllm" / "lib").glob("python3*/site-packages"))
    return sorted(p.name for root in (site / "vllm", opt / "vllm_repo" / "vllm") for p in root.glob("_rust_*.so"))


def test_resolve_locks_the_toolchain_the_cargo_lock_and_its_crates(rust: ResolvedLock, world: TestWorld) -> None:
    frontend = rust.lock.rust
    assert frontend is not None
    assert (frontend.channel, frontend.toolchain_file, frontend.cargo_lock) == ("1.95", "rust-toolchain.toml",
                                                                               "rust/Cargo.lock")
    text = subprocess.run(["git", "-C", str(world.repo_path), "show", f"{RUST_BRANCH}:rust/Cargo.lock"],
                          capture_output=True, check=True).stdout
    assert frontend.cargo_lock_sha256 == hashlib.sha256(text).hexdigest()
    served = {c.name: hashlib.sha256(tw_crates.crate_bytes(c)).hexdigest() for c in tw_crates.DEPENDENCIES}
    assert [(c.name, c.version, c.checksum) for c in frontend.crates] == [
        ("tw-answer", "0.1.0", served["tw-answer"]), ("tw-offset", "1.2.3", served["tw-offset"])]
    assert [(a.target, a.kind) for a in frontend.artifacts] == [("vllm._rust_hello", "extension")]
    assert not rust.lock.build.without_rust


def test_missing_toolchain_fails_at_preflight_before_any_build(rust: ResolvedLock, world: TestWorld,
                                                               tmp_path: Path) -> None:
    result = _install(world, rust.path, tmp_path / "opt", rust.cache, _without_rust_path())
    assert result.returncode == 7, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "rustc not found" in errors[0] and "rustc>=1.95" in errors[0] and "cargo>=1.95" in errors[0]
    assert "Traceback" not in result.stderr
    assert "==> build" not in result.stderr and "==> packages" not in result.stderr
    assert not (tmp_path / "opt" / "vllm").exists()


def test_install_builds_the_frontend_offline_and_verify_checks_it(rust: ResolvedLock, world: TestWorld,
                                                                  tmp_path: Path) -> None:
    opt = tmp_path / "opt"
    result = _install(world, rust.path, opt, rust.cache, _with_rust_path())
    assert result.returncode == 0, result.stderr[-4000:]
    assert "crates: 2 checked against Cargo.lock's checksums (2 downloaded)" in result.stderr
    assert "VLLM_REQUIRE_RUST_FRONTEND=1" in result.stderr and "CARGO_NET_OFFLINE=true" in result.stderr
    assert "Compiling tw-answer v0.1.0" in result.stderr  # the vendored crate, not a download
    assert _rust_modules(opt) == ["_rust_hello.cpython-311-x86_64-linux-gnu.so"]
    gen = Path(os.readlink(opt / "vllm")).parent
    assert (gen / "rust" / "vendor" / "tw-offset-1.2.3" / "src" / "lib.rs").is_file()
    # the built library is the crate's: its dependencies' values (40 + 2) through the C ABI
    so = next((opt / "vllm_repo" / "vllm").glob("_rust_hello*.so"))
    answer = subprocess.run([str(opt / "vllm" / "bin" / "python"), "-c",
                             f"import ctypes; print(ctypes.CDLL({str(so)!r}).vllm_rust_answer())"],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert answer == "42"
    clean = cli("verify", str(rust.path), "--venv", str(opt / "vllm"), cache=rust.cache)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    so.unlink()
    drift = cli("verify", str(rust.path), "--venv", str(opt / "vllm"), cache=rust.cache)
    assert drift.returncode == 1, drift.stdout + drift.stderr
    assert "Rust extension vllm._rust_hello (vllm/_rust_hello*.so) is not installed" in drift.stdout


def test_a_crate_whose_bytes_differ_from_its_checksum_is_refused(rust: ResolvedLock, world: TestWorld,
                                                                 tmp_path: Path) -> None:
    world.tamper_crate("tw-offset")
    try:
        cache = tmp_path / "cache"  # nothing cached: the crate is downloaded now
        result = _install(world, rust.path, tmp_path / "opt", cache, _with_rust_path())
    finally:
        world.restore_crates()
    assert result.returncode == 8, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "tw-offset-1.2.3.crate" in errors[0], result.stderr[-3000:]
    assert "==> build" not in result.stderr
    assert not list((cache / "cas" / "sha256").glob("*/tw-offset-1.2.3.crate"))
    # the registry serves the right bytes again: a rerun repairs the unfinished generation
    rerun = _install(world, rust.path, tmp_path / "opt", cache, _with_rust_path())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming an unfinished generation" in rerun.stderr


def test_no_rust_is_another_build_identity_installed_without_the_extension(rust: ResolvedLock, world: TestWorld,
                                                                           tmp_path: Path) -> None:
    lock, path = resolve_world_lock(world, tmp_path / "norust.lock.toml", rust.cache, ref=RUST_BRANCH,
                                    target_device="empty", without_rust=True)
    assert lock.rust is None and lock.build.without_rust
    assert "without-rust = true" in path.read_text()
    assert build_identity(lock) != build_identity(rust.lock)
    opt = tmp_path / "opt"
    result = _install(world, path, opt, rust.cache, _with_rust_path())  # a toolchain is there, and unused
    assert result.returncode == 0, result.stderr[-4000:]
    assert "VLLM_REQUIRE_RUST_FRONTEND=1" not in result.stderr
    assert "can't find Rust compiler" in result.stderr  # setuptools-rust skipped the optional extension
    assert LEFT_OUT_MESSAGE in result.stderr  # because the build's rustc is the one that refuses to run
    assert _rust_modules(opt) == []
    assert cli("verify", str(path), "--venv", str(opt / "vllm"), cache=rust.cache).returncode == 0


def _edited(rust: ResolvedLock, tmp_path: Path, edit: Callable[[dict[str, Any]], None]) -> Path:
    """The rust-frontend lock edited as an attacker would: any field, the content hash recomputed."""
    import tomllib

    import tomlkit

    data = tomllib.loads(rust.path.read_text(encoding="utf-8"))
    data.pop("content-hash")
    edit(data)
    digest = "sha256:" + hashlib.sha256(codec.canonical_json(data)).hexdigest()
    path = tmp_path / "edited.lock.toml"
    path.write_text(tomlkit.dumps({"content-hash": digest, **data}), encoding="utf-8")
    return path


def _drop_rust(data: dict[str, Any]) -> None:
    del data["rust"]


def _lower_channel(data: dict[str, Any]) -> None:
    data["rust"]["channel"] = "1.90"


def _other_cargo_lock(data: dict[str, Any]) -> None:
    data["rust"]["cargo-lock-sha256"] = "0" * 64


@pytest.mark.parametrize(("edit", "field"), [
    (_drop_rust, "rust: the commit has a Rust frontend (rust/Cargo.lock"),
    (_lower_channel, "rust.channel: the lock says '1.90'"),
    (_other_cargo_lock, "rust.cargo-lock-sha256"),
])
def test_a_lock_whose_rust_frontend_differs_from_the_tree_is_refused_before_the_build(
        rust: ResolvedLock, world: TestWorld, tmp_path: Path, edit: Callable[[dict[str, Any]], None], field: str
) -> None:
    path = _edited(rust, tmp_path, edit)
    opt = tmp_path / "opt"
    result = _install(world, path, opt, rust.cache, _with_rust_path())
    assert result.returncode == 8, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and field in errors[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "==> build" not in result.stderr
    assert not (opt / "vllm").exists()
