"""A bundle carries the built vLLM of the lock's identity from a configured binary cache, and
install --from-bundle substitutes from it with no network at all (the test world, its git
repositories and the binary cache gone), the entry's signature checked against trusted keys."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest
from install_support import cli, install_args, resolve_world_lock
from test_cache_support import free_port

from vllm_lock import bundle_manifest as bm
from vllm_lock import cache_entry
from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.compilers import compiler_calls, compiler_wrappers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A non-editable lock built and pushed to a file:// cache, bundled with that cache
    configured; then the world, its repositories and the binary cache are gone."""
    root = tmp_path_factory.mktemp("bundle-built")
    world = TestWorld.create(root / "world")
    binary_cache = root / "binary-cache"
    try:
        cache = root / "cache-a"
        lock, path = resolve_world_lock(world, root / "dev.lock.toml", cache, editable=False)
        key = root / "phoenix-1.secret"
        made = cli("key", "generate", "--name", "phoenix-1", "-o", str(key), cache=cache)
        assert made.returncode == 0, made.stderr
        cc_env, calls = compiler_wrappers(root / "cc")
        first = cli(*install_args(path, root / "opt-a"), "--push", f"file://{binary_cache}", "--cache-signing-key",
                    str(key), cache=cache, env=cc_env)
        assert first.returncode == 0, first.stderr
        bundled = cli("bundle", str(path), "-o", str(root / "dev.tar"), "--cache", f"file://{binary_cache}",
                      cache=cache)
        assert bundled.returncode == 0, bundled.stderr
        plain = cli("bundle", str(path), "-o", str(root / "plain.tar"), cache=cache)
        assert plain.returncode == 0, plain.stderr
    finally:
        world.close()
    gone = root / "gone"
    gone.mkdir()
    for repos in (world.repo_path, world.external_root, binary_cache):
        repos.rename(gone / repos.name)
    return {"root": root, "lock": lock, "path": path, "public": made.stdout.strip(), "cc_env": cc_env,
            "calls": calls, "bundled": bundled}


def _names(bundle: Path) -> list[str]:
    with tarfile.open(bundle) as tar:
        return tar.getnames()


def test_the_bundle_carries_the_built_wheel_and_its_signed_entry(built: dict[str, Any]) -> None:
    name = cache_entry.entry_name(cache_entry.wheel_build_identity(built["lock"]))
    names = _names(built["root"] / "dev.tar")
    wheels = [n for n in names if n.startswith("built/vllm-") and n.endswith(".whl")]
    assert f"built/{name}" in names and len(wheels) == 1
    with tarfile.open(built["root"] / "dev.tar") as tar:
        manifest = bm.loads(tar.extractfile(bm.MANIFEST).read())  # type: ignore[union-attr]
        entry = tar.extractfile(f"built/{name}").read().decode()  # type: ignore[union-attr]
    assert {f"built/{name}", wheels[0]} <= {m.path for m in manifest.members}
    assert "\nSig: phoenix-1:" in entry and f"Wheel: {wheels[0].removeprefix('built/')}\n" in entry
    assert "built vLLM vllm-" in built["bundled"].stderr
    assert not [n for n in _names(built["root"] / "plain.tar") if n.startswith("built/")]  # no cache configured


def test_install_from_the_bundle_substitutes_with_no_network(built: dict[str, Any], tmp_path: Path) -> None:
    before = compiler_calls(built["calls"])
    opt = tmp_path / "opt"
    result = cli(*install_args(built["path"], opt), "--from-bundle", str(built["root"] / "dev.tar"),
                 cache=tmp_path / "c",
                 env={**built["cc_env"], "VLLM_LOCK_TRUSTED_CACHE_KEYS": built["public"]})
    assert result.returncode == 0, result.stderr[-3000:]
    assert compiler_calls(built["calls"]) == before  # not one compiler call
    bundled = f"file://{tmp_path / 'c' / 'bundled-builds'}"
    assert f"substituted from {bundled}: vllm-" in result.stderr and "==> build" not in result.stderr
    receipt = json.loads((Path(os.readlink(opt / "vllm")).parent / "receipt.json").read_text())
    assert receipt["substituted-from"]["cache"] == bundled and receipt["substituted-from"]["key"] == "phoenix-1"
    clean = cli("verify", str(built["path"]), "--venv", str(opt / "vllm"), cache=tmp_path / "c")
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_the_bundled_entry_is_refused_without_a_trusted_key(built: dict[str, Any], tmp_path: Path) -> None:
    other = cli("key", "generate", "--name", "someone-else", "-o", str(tmp_path / "other.secret"), cache=tmp_path / "c")
    dead = f"http://127.0.0.1:{free_port()}/cache"
    result = cli(*install_args(built["path"], tmp_path / "opt"), "--from-bundle", str(built["root"] / "dev.tar"),
                 "--cache", dead, "--substitute-only", "--trusted-cache-key", other.stdout.strip(),
                 cache=tmp_path / "c",
                 env=built["cc_env"])
    assert result.returncode == 6, result.stderr[-3000:]
    refusals = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("refused ")]
    assert refusals[0].startswith(f"refused file://{tmp_path / 'c' / 'bundled-builds'}: ")
    assert "signed only by keys that are not trusted (phoenix-1)" in refusals[0]
    assert result.stderr.splitlines()[-1].startswith(
        "error: --substitute-only: no configured cache has a verified build")


def test_a_bundle_whose_built_wheel_differs_from_its_entry_is_refused(built: dict[str, Any], tmp_path: Path) -> None:
    """The manifest is rewritten to match the altered wheel: only the entry's signed sha256 catches it."""
    source, altered = built["root"] / "dev.tar", tmp_path / "altered.tar"
    work = tmp_path / "unpacked"
    with tarfile.open(source) as tar:
        tar.extractall(work, filter="data")
        names = tar.getnames()
    wheel = next(work / n for n in names if n.startswith("built/vllm-"))
    data = wheel.read_bytes()
    wheel.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    manifest = json.loads((work / bm.MANIFEST).read_text())
    for member in manifest["members"]:
        data = (work / member["path"]).read_bytes()
        member["sha256"], member["size"] = hashlib.sha256(data).hexdigest(), len(data)
    (work / bm.MANIFEST).write_text(json.dumps(manifest))
    with tarfile.open(altered, "w") as tar:
        for name in names:
            tar.add(work / name, arcname=name)
    result = cli(*install_args(built["path"], tmp_path / "opt"), "--from-bundle", str(altered), cache=tmp_path / "c",
                 env={"VLLM_LOCK_TRUSTED_CACHE_KEYS": built["public"]})
    assert result.returncode == 8, result.stderr[-2000:]
    assert result.stderr.splitlines()[-1].startswith("error: the bundle's built/vllm-")
    assert "is not the wheel its entry signs" in result.stderr and not (tmp_path / "c" / "bundled-builds").exists()
    shutil.rmtree(work)
