"""The real-vLLM corpus: `vllm-lock resolve` of vLLM's own release sources (five PyPI sdists made
into git repositories), external repositories served from local stand-ins through `--mirror`, the
torch family from a local index, and the general index PyPI itself (https://pypi.org/simple).

Asserted is what does not drift with PyPI's daily uploads: the external sources per target (name,
repository as the cmake files write it, ref, override, commit), the layout and the torch family;
every expectation written by hand from reading that version's files (the external sources are
test_real_cmake.py's hand-written sets; the torch versions each version's requirements/cuda.txt).
uv's cache lives in the suite cache ($VLLM_LOCK_TEST_CACHE/real-corpus-uv): a rerun reads PyPI's
metadata from there (uv revalidates pages, it does not download wheels again)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpus import (
    GITHUB,
    TORCH_INDEX_PATH,
    TORCH_RELEASES,
    VllmRepo,
    link_files,
    local_path,
    make_vllm_repo,
    serve_torch_index,
)
from sdists import cache_dir
from test_real_cmake import EXPECTED, VERSIONS

from vllm_lock import codec
from vllm_lock.actions import verify as verify_action
from vllm_lock.actions.install import InstallRequest, install
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.errors import PreflightError
from vllm_lock.mirrors import parse
from vllm_lock.model import Lock
from vllm_lock.progress import QUIET

pytestmark = pytest.mark.real_corpus

PYPI = "https://pypi.org/simple"

# (script, stripping mode, build requirements of a CUDA build), read from each sdist's file list
# and its use_existing_torch.py (`--prefix` from 0.20 on; tools/ from 0.33)
LAYOUT = {
    "0.8.5.post1": ("use_existing_torch.py", "default", "requirements/build.txt"),
    "0.11.2": ("use_existing_torch.py", "default", "requirements/build.txt"),
    "0.20.2": ("use_existing_torch.py", "prefix", "requirements/build/cuda.txt"),
    "0.30.0": ("use_existing_torch.py", "prefix", "requirements/build/cuda.txt"),
    "0.33.0": ("tools/use_existing_torch.py", "prefix", "requirements/build/cuda.txt"),
}
RUNTIME = {"cuda": "requirements/cuda.txt", "empty": "requirements/common.txt"}
# torch == the version requirements/cuda.txt pins; the CUDA build's companions as the commit pins
# them (torchaudio stays at 2.11.0 from 0.20 on; torchcodec >= 0.14 from 0.30 on: the index's 0.14.0)
TORCH = {"0.8.5.post1": "2.6.0", "0.11.2": "2.9.0", "0.20.2": "2.11.0", "0.30.0": "2.13.0", "0.33.0": "2.14.0"}
COMPANIONS = {
    "0.8.5.post1": {"torchaudio": "2.6.0", "torchvision": "0.21.0"},
    "0.11.2": {"torchaudio": "2.9.0", "torchvision": "0.24.0"},
    "0.20.2": {"torchaudio": "2.11.0", "torchvision": "0.26.0"},
    "0.30.0": {"torchaudio": "2.11.0", "torchcodec": "0.14.0", "torchvision": "0.28.0"},
    "0.33.0": {"torchaudio": "2.11.0", "torchcodec": "0.14.0", "torchvision": "0.29.0"},
}


def _uv_cache() -> Path:
    return cache_dir().parent / "real-corpus-uv"


@pytest.fixture(scope="module")
def torch_index() -> Iterator[str]:
    listener, url = serve_torch_index()
    try:
        yield url
    finally:
        listener.close()


class Repos:
    """Each version's github.com stand-in (vLLM and its external repositories), made the first
    time a test asks for it."""

    def __init__(self, factory: pytest.TempPathFactory) -> None:
        self.factory = factory
        self.made: dict[str, VllmRepo] = {}

    def __getitem__(self, version: str) -> VllmRepo:
        if version not in self.made:
            self.made[version] = make_vllm_repo(version, self.factory.mktemp(f"github-{version}"),
                                                EXPECTED[(version, "cuda", "x86_64")])
        return self.made[version]


@pytest.fixture(scope="module")
def repos(tmp_path_factory: pytest.TempPathFactory) -> Repos:
    return Repos(tmp_path_factory)


def _resolve(repo: VllmRepo, version: str, device: str, torch_index: str, tmp_path: Path) -> Lock:
    cache = tmp_path / "cache"
    cache.mkdir()
    _uv_cache().mkdir(parents=True, exist_ok=True)
    os.symlink(_uv_cache(), cache / "uv")
    request = ResolveRequest(
        repo=repo.url, ref="main", torch_channel="release", torch_version=TORCH[version], cuda="cu128",
        torch_index=torch_index, general_index=PYPI, archs=("12.0",), python="3.12", target_device=device,
        output=tmp_path / f"{device}.lock.toml", cache=cache, mirrors=parse([repo.mirror], None),
    )
    lock, path, _ = resolve(request, QUIET)
    assert codec.loads(path.read_text()) == lock
    return lock


def _expected_sources(version: str, device: str, repo: VllmRepo) -> set[tuple[str, str, str, str, str]]:
    if device == "empty":
        return set()
    expected = set()
    for name, repository, ref, override in EXPECTED[(version, "cuda", "x86_64")]:
        moved = repo.moved.get(ref, ref)
        commit = moved if ref in repo.moved else _tag_commit(repo.github_root, repository, ref)
        expected.add((name, repository, moved, override, commit))
    return expected


def _tag_commit(root: Path, repository: str, tag: str) -> str:
    from corpus import git

    return git("rev-parse", f"{tag}^{{commit}}", cwd=local_path(root, repository))


@pytest.mark.parametrize("device", ["empty", "cuda"])
@pytest.mark.parametrize("version", VERSIONS)
def test_resolve_real_vllm(version: str, device: str, repos: Repos, torch_index: str, tmp_path: Path) -> None:
    repo = repos[version]
    lock = _resolve(repo, version, device, torch_index, tmp_path)
    assert (lock.vllm.url, lock.vllm.commit) == (repo.url, repo.head)
    sources = {(s.name, s.repository, s.ref, s.override, s.commit) for s in lock.external_sources}
    assert sources == _expected_sources(version, device, repo)
    assert all(s.repository.startswith(GITHUB) for s in lock.external_sources)  # the mirror is not in the lock
    script, mode, build = LAYOUT[version]
    assert (lock.layout.stripping_script, lock.layout.stripping_mode, lock.layout.runtime_requirements) == \
        (script, mode, RUNTIME[device])
    if device == "cuda":
        assert lock.layout.build_requirements == build
    assert lock.torch.version == f"{TORCH[version]}+cu128"
    companions = {p.name: p.version for p in lock.torch.companions}
    # triton: the one the local index's torch requires (every target: torch's own dependency)
    family = {} if device == "empty" else {n: f"{v}+cu128" for n, v in COMPANIONS[version].items()}
    assert companions == {**family, "triton": TORCH_RELEASES[TORCH[version]][0]}
    files = torch_index.removesuffix(TORCH_INDEX_PATH) + "/whl/files/"
    urls = [w.url for p in lock.packages for w in p.wheels]
    assert urls and all(u.startswith(("https://files.pythonhosted.org/", files)) for u in urls), urls


# `import vllm` (what verify runs on an `empty` build) works on the corpus's inert torch from
# 0.11 on; 0.8.5.post1's `import vllm` imports the whole engine, which needs a real torch.
INSTALLED = ("0.11.2", "0.20.2", "0.30.0", "0.33.0")
# setuptools-scm's version one commit after the tag v<X.Y.Z>: the next patch's dev1
BUILT_VERSION = {"0.11.2": "0.11.3.dev1", "0.20.2": "0.20.3.dev1", "0.30.0": "0.30.1.dev1", "0.33.0": "0.33.1.dev1"}




RUST_FRONTEND = ("0.30.0", "0.33.0")  # the sdists with rust/ and rust-toolchain.toml (tests/real/test_real_rust.py)


@pytest.mark.parametrize("version", INSTALLED)
def test_install_empty_lock_of_real_vllm(version: str, repos: Repos, torch_index: str, tmp_path: Path) -> None:
    """resolve --target-device empty for this host (Python 3.11, glibc 2.36), install (vLLM's own
    setup.py builds it; every wheel from PyPI, checked against the lock) and verify. The wheel
    store's files are kept in the suite cache ($VLLM_LOCK_TEST_CACHE/real-corpus-wheels, linked
    into the install's cache and back): a rerun downloads no wheel. The install's own uv cache
    (an unpacked copy of every wheel, per install) is removed after the test."""
    repo = repos[version]
    mirrors = parse([repo.mirror], None)
    resolve_cache = tmp_path / "resolve-cache"
    resolve_cache.mkdir()
    _uv_cache().mkdir(parents=True, exist_ok=True)
    os.symlink(_uv_cache(), resolve_cache / "uv")
    _, path, _ = resolve(ResolveRequest(
        repo=repo.url, ref="main", torch_channel="release", torch_version=TORCH[version], cuda="cu128",
        torch_index=torch_index, general_index=PYPI, python="3.11", platform="x86_64-manylinux_2_36",
        target_device="empty", output=tmp_path / "empty.lock.toml", cache=resolve_cache, mirrors=mirrors,
        # the Rust frontend's crates come from crates.io, which this machine cannot reach (and
        # 0.33.0's Cargo.lock names git crates too): left out on purpose, as a user offline would
        without_rust=version in RUST_FRONTEND), QUIET)
    kept = cache_dir().parent / "real-corpus-wheels"
    cache = tmp_path / "install-cache"
    link_files(kept, cache / "cas")
    try:
        result = install(InstallRequest(lock=str(path), venv=tmp_path / "venv", src=tmp_path / "src", cache=cache,
                                        skip_gpu_check=True, mirrors=mirrors), QUIET)
        assert result.state == "installed"
        assert result.version.startswith(f"{BUILT_VERSION[version]}+g{repo.head[:9]}")
        assert result.version.endswith(".empty")
        report = verify_action.verify(str(path), tmp_path / "venv")
        assert not report.drift, report.render()
    finally:
        link_files(cache / "cas", kept)
        shutil.rmtree(cache / "uv", ignore_errors=True)


def test_newest_real_vllm_without_a_rust_toolchain_fails_at_preflight(
    repos: Repos, torch_index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest sdist's lock keeps its Rust frontend (no --without-rust): on a machine without
    rustc and cargo, install stops at preflight with the versions rust-toolchain.toml asks for,
    before a venv, a download or a build. (With the toolchain present the build needs the 606
    crates Cargo.lock names from crates.io, which this machine cannot reach: the Rust build itself
    is proven on the test world, tests/test_rust_install.py.)"""
    version = VERSIONS[-1]
    repo = repos[version]
    mirrors = parse([repo.mirror], None)
    resolve_cache = tmp_path / "resolve-cache"
    resolve_cache.mkdir()
    _uv_cache().mkdir(parents=True, exist_ok=True)
    os.symlink(_uv_cache(), resolve_cache / "uv")
    lock, path, _ = resolve(ResolveRequest(
        repo=repo.url, ref="main", torch_channel="release", torch_version=TORCH[version], cuda="cu128",
        torch_index=torch_index, general_index=PYPI, python="3.11", platform="x86_64-manylinux_2_36",
        target_device="empty", output=tmp_path / "empty.lock.toml", cache=resolve_cache, mirrors=mirrors), QUIET)
    assert lock.rust is not None and not lock.build.without_rust
    assert (lock.rust.channel, len(lock.rust.crates)) == ("1.95", 606)
    no_rust = ":".join(p for p in os.environ["PATH"].split(":")
                       if p and not (Path(p) / "rustc").exists() and not (Path(p) / "cargo").exists())
    monkeypatch.setenv("PATH", no_rust)
    monkeypatch.delenv("RUSTC", raising=False)
    monkeypatch.delenv("CARGO", raising=False)
    with pytest.raises(PreflightError, match=r"rustc not found") as raised:
        install(InstallRequest(lock=str(path), venv=tmp_path / "venv", src=tmp_path / "src",
                               cache=tmp_path / "install-cache", skip_gpu_check=True, mirrors=mirrors), QUIET)
    assert "rustc>=1.95" in str(raised.value) and "cargo>=1.95" in str(raised.value)
    assert not (tmp_path / "venv").exists()
    assert not any((tmp_path / "install-cache").rglob("*.whl"))
