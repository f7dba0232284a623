"""vllm-lock bundle and install --from-bundle end to end on a test world of this module's own
(it is taken down half-way): real git bundles, real uv, a real build, no network at install."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from install_support import cli, install_args, resolve_world_lock, vllm_version, write_variant

from vllm_lock import bundle_manifest as bm
from vllm_lock.model import Lock
from vllm_lock.shell.store import file_sha256
from vllm_lock_testworld import TestWorld

pytestmark = pytest.mark.slow


@dataclasses.dataclass(frozen=True, kw_only=True)
class Bundled:
    """The module's lock (and its file), the bundle and a second bundle of the same lock, the tag
    `git describe` gave the locked commit, and the module's temporary root."""

    lock: Lock
    path: Path
    root: Path
    bundle: Path
    again: Path
    described: str


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Bundled:
    """A lock of a test world bundled twice; then the world is gone: its index and crate servers
    stopped and its git repositories (vLLM and the external sources) moved out of reach."""
    root = tmp_path_factory.mktemp("bundle")
    world = TestWorld.create(root / "world")
    try:
        cache = root / "resolve-cache"
        lock, path = resolve_world_lock(world, root / "dev.lock.toml", cache)
        described = subprocess.run(["git", "-C", str(world.repo_path), "describe", "--tags", "--abbrev=0",
                                    lock.vllm.commit],
                                   capture_output=True, text=True, check=True).stdout.strip()
        started = time.monotonic()
        first = cli("bundle", str(path), "-o", str(root / "dev.tar"), cache=cache)
        seconds = time.monotonic() - started
        assert first.returncode == 0, first.stderr
        again = cli("bundle", str(path), "-o", str(root / "again.tar"), cache=cache)
        assert again.returncode == 0, again.stderr
    finally:
        world.close()
    gone = root / "gone"
    gone.mkdir()
    for repos in (world.repo_path, world.external_root):
        repos.rename(gone / repos.name)
    shutil.rmtree(cache)
    print(f"\nbundle of the test world: {(root / 'dev.tar').stat().st_size} bytes in {seconds:.2f} s")
    return Bundled(lock=lock, path=path, root=root, bundle=root / "dev.tar", again=root / "again.tar",
                   described=described)


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    assert handle is not None, member.name  # a bundle holds regular files only
    return handle.read()


def _members(bundle: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(bundle) as tar:
        return tar.getmembers()


def test_the_same_lock_bundles_to_the_same_bytes(offline: Bundled) -> None:
    assert offline.bundle.read_bytes() == offline.again.read_bytes()
    members = _members(offline.bundle)
    names = [m.name for m in members]
    assert names[-1] == bm.MANIFEST and names[:-1] == sorted(names[:-1])
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {(0, 0, 0, "", "", 0o644)}


def test_the_bundle_holds_every_wheel_the_sources_and_a_manifest(offline: Bundled) -> None:
    lock = offline.lock
    with tarfile.open(offline.bundle) as tar:
        manifest = bm.loads(_read_member(tar, tar.getmember(bm.MANIFEST)))
    listed = {m.path: m for m in manifest.members}
    for package in lock.packages:
        for wheel in package.wheels:
            member = listed[bm.wheel_member(wheel.sha256, wheel.filename)]
            assert (member.sha256, member.size) == (wheel.sha256, wheel.size)
    repos = {r.url: set(r.commits) for r in manifest.repositories}
    assert lock.vllm.commit in repos[lock.vllm.url]
    for source in lock.external_sources:
        assert source.commit in repos[source.repository]
    assert manifest.content_hash and manifest.lock_name == lock.name


def test_install_from_the_bundle_needs_no_network_and_verifies(offline: Bundled, tmp_path: Path) -> None:
    cache, opt = tmp_path / "fresh-cache", tmp_path / "opt"
    started = time.monotonic()
    result = cli(*install_args(offline.path, opt), "--from-bundle", str(offline.bundle), cache=cache, timeout=600)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr[-3000:]
    print(f"\ninstall --from-bundle: {seconds:.1f} s")
    lock = offline.lock
    assert f"g{lock.vllm.commit[:9]}" in vllm_version(opt)
    clean = cli("verify", str(offline.path), "--venv", str(opt / "vllm"), cache=cache)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "importing bundle" in result.stderr
    # the tags came along: setuptools-scm counts from the same tag as at the origin
    tag = subprocess.run(["git", "-C", str(opt / "vllm_repo"), "describe", "--tags", "--abbrev=0", "HEAD"],
                         capture_output=True, text=True)
    assert tag.stdout.strip() == offline.described, tag.stderr


# ---------------------------------------------------------------- bad bundles


def _rewrite(bundle: Path, out: Path, edit: Callable[[str, bytes], list[tuple[str, bytes]]]) -> Path:
    """out: bundle's members passed through edit(name, bytes) -> [(name, bytes)], manifest redone
    to match (a forger's consistent bundle) unless edit handles manifest.json itself."""
    with tarfile.open(bundle) as tar:
        members = [(m.name, _read_member(tar, m)) for m in tar.getmembers()]
    with tarfile.open(out, "w") as tar:
        for name, data in members:
            for new_name, new_data in edit(name, data):
                info = tarfile.TarInfo(new_name)
                info.size = len(new_data)
                tar.addfile(info, io.BytesIO(new_data))
    return out


def _redo_manifest(members: dict[str, bytes], manifest: bytes) -> bytes:
    import hashlib

    data = json.loads(manifest)
    data["members"] = [{"path": n, "sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
                       for n, b in sorted(members.items())]
    return json.dumps(data).encode()


def _tampered_wheel(bundle: Path, out: Path, *, fix_manifest: bool) -> Path:
    with tarfile.open(bundle) as tar:
        members = {m.name: _read_member(tar, m) for m in tar.getmembers()}
    victim = next(n for n in sorted(members) if n.startswith("wheels/"))
    members[victim] = members[victim] + b"\0"
    manifest = members.pop(bm.MANIFEST)
    if fix_manifest:
        manifest = _redo_manifest(members, manifest)
    members[bm.MANIFEST] = manifest
    return _rewrite(bundle, out, lambda name, data: [(name, members[name])])


def _case(name: str, bundle: Path, tmp: Path) -> Path:
    out = tmp / f"{name}.tar"
    if name == "truncated":
        data = bundle.read_bytes()
        out.write_bytes(data[: len(data) // 2])
        return out
    if name == "dotdot":
        def add_escape(member: str, data: bytes) -> list[tuple[str, bytes]]:
            return [("../escaped.txt", b"out\n"), (member, data)] if member == bm.LOCK_MEMBER else [(member, data)]
        return _rewrite(bundle, out, add_escape)
    if name == "wheel-hash":
        return _tampered_wheel(bundle, out, fix_manifest=True)
    if name == "manifest-mismatch":
        return _tampered_wheel(bundle, out, fix_manifest=False)
    if name == "no-manifest":
        return _rewrite(bundle, out, lambda member, data: [] if member == bm.MANIFEST else [(member, data)])
    raise AssertionError(name)


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("truncated", 8, "truncated"),
        ("dotdot", 8, "leaves the bundle"),
        ("wheel-hash", 8, "the lock says sha256:"),
        ("manifest-mismatch", 8, "does not match its manifest"),
        ("no-manifest", 8, "has no manifest.json"),
    ],
)
def test_a_bad_bundle_is_one_line_and_installs_nothing(offline: Bundled, tmp_path: Path, case: str, code: int,
                                                       words: str) -> None:
    bad = _case(case, offline.bundle, tmp_path)
    cache, opt = tmp_path / "cache", tmp_path / "work" / "opt"
    result = cli(*install_args(offline.path, opt), "--from-bundle", str(bad), cache=cache)
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    _nothing_installed(cache, opt)
    assert not (tmp_path / "cache" / "escaped.txt").exists() and not list(tmp_path.rglob("escaped.txt"))


def test_a_bundle_of_another_lock_is_refused(offline: Bundled, tmp_path: Path) -> None:
    other = write_variant(offline.lock, tmp_path / "other.lock.toml", name="other")
    cache, opt = tmp_path / "cache", tmp_path / "opt"
    result = cli(*install_args(other, opt), "--from-bundle", str(offline.bundle), cache=cache)
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the bundle is for lock 'dev'" in errors[0], result.stderr
    _nothing_installed(cache, opt)


def test_a_missing_bundle_file_is_one_line(offline: Bundled, tmp_path: Path) -> None:
    result = cli(*install_args(offline.path, tmp_path / "opt"), "--from-bundle", str(tmp_path / "nope.tar"),
                 cache=tmp_path / "cache")
    assert result.returncode == 8 and result.stderr.count("error:") == 1, result.stderr


def _nothing_installed(cache: Path, opt: Path) -> None:
    assert not (opt / "vllm").exists() and not (opt / "vllm").is_symlink()
    generations = opt.with_name("opt") / "vllm.generations"
    assert not generations.exists() or not [p for p in generations.iterdir() if not p.name.startswith(".")]
    cas = cache / "cas" / "sha256"
    assert not cas.exists() or not any(cas.iterdir()), sorted(cas.iterdir())
    assert not (cache / "git").exists() or not list((cache / "git").glob("*.git"))
    incoming = cache / "incoming"
    assert not incoming.exists() or not any(incoming.iterdir())


def test_bundle_output_that_cannot_be_written_is_one_line(offline: Bundled, tmp_path: Path) -> None:
    result = cli("bundle", str(offline.path), "-o", str(tmp_path / "missing-dir" / "x.tar"), cache=tmp_path / "c")
    assert result.returncode == 9 and result.stderr.count("error:") == 1, result.stderr
    assert not os.path.exists(tmp_path / "missing-dir")


# ---------------------------------------------------------------- Rust crates, and the manifest's rules


def test_a_rust_lock_bundles_its_crates_and_imports_them(world: TestWorld, tmp_path: Path) -> None:
    from vllm_lock.actions import bundle as bundle_action
    from vllm_lock.progress import QUIET
    from vllm_lock.shell.store import Store
    from vllm_lock_testworld.repo import RUST_BRANCH

    cache = tmp_path / "cache"
    lock, path = resolve_world_lock(world, tmp_path / "rust.lock.toml", cache, ref=RUST_BRANCH, target_device="empty")
    assert lock.rust is not None and lock.rust.crates
    out = tmp_path / "rust.tar"
    made = cli("bundle", str(path), "-o", str(out), "--crate-registry", world.crate_registry, cache=cache)
    assert made.returncode == 0, made.stderr
    names = {m.name for m in _members(out)}
    for crate in lock.rust.crates:
        assert bm.crate_member(crate.checksum, f"{crate.name}-{crate.version}.crate") in names
    fresh = tmp_path / "fresh"
    bundle_action.import_bundle(out, lock, fresh, QUIET)
    store = Store(fresh)

    def intact(sha256: str, filename: str) -> bool:
        return store.has(sha256, filename) and file_sha256(store.path(sha256, filename)) == sha256

    assert all(intact(c.checksum, f"{c.name}-{c.version}.crate") for c in lock.rust.crates)
    assert all(intact(w.sha256, w.filename) for p in lock.packages for w in p.wheels)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("lock.toml", None),
        ("wheels/" + "a" * 64 + "/torch-2.10.0.dev20261112%2Bcu128-cp312-cp312-manylinux_2_28_x86_64.whl", None),
        ("git/0123456789abcdef.bundle", None),
        ("../lock.toml", "leaves the bundle"),
        ("wheels/" + "a" * 64 + "/../../x", "leaves the bundle"),
        ("/etc/passwd", "absolute path"),
        ("wheels/" + "a" * 63 + "/x.whl", "not a name a bundle holds"),
        ("wheels/" + "a" * 64 + "/-rf.whl", "not a name a bundle holds"),
        ("git/config", "not a name a bundle holds"),
    ],
)
def test_member_names_follow_the_schema(name: str, problem: str | None) -> None:
    got = bm.path_problem(name)
    assert (got is None) if problem is None else (got is not None and problem in got), got


@pytest.mark.parametrize("text", [b"", b"[]", b'{"bundle-version": 2}', b"\xff", b'{"bundle-version": 1, "lock": {}}'])
def test_a_malformed_manifest_is_a_bundle_error(text: bytes) -> None:
    from vllm_lock.errors import BundleError

    with pytest.raises(BundleError, match="manifest.json"):
        bm.loads(text)


def test_a_damaged_store_file_is_not_bundled(world: TestWorld, tmp_path: Path) -> None:
    from vllm_lock.shell.store import Store

    cache = tmp_path / "cache"
    lock, path = resolve_world_lock(world, tmp_path / "dev.lock.toml", cache)
    torch = next(w for p in lock.packages if p.name == "torch" for w in p.wheels)
    stored = Store(cache).path(torch.sha256, torch.filename)
    stored.write_bytes(stored.read_bytes()[::-1])  # same size, other bytes
    out = tmp_path / "dev.tar"
    result = cli("bundle", str(path), "-o", str(out), cache=cache)
    assert result.returncode == 8 and result.stderr.count("error:") == 1, result.stderr
    assert "no longer hashes to the lock's sha256" in result.stderr
    assert not out.exists() and not list(tmp_path.glob(".dev.tar*"))
