"""vLLM 0.33.0's Rust frontend, read from its PyPI sdist (downloaded once and cached) by resolve's
detection. The expected values were written by hand from reading the sdist's rust-toolchain.toml,
rust/Cargo.lock (624 [[package]] entries: 606 from crates.io, 3 from git, 15 workspace members),
setup.py and tools/build_rust.py; the Cargo.lock digest is `sha256sum rust/Cargo.lock`."""

from __future__ import annotations

import tarfile
from functools import cache

from sdists import sdist

from vllm_lock import rust


@cache
def tree(version: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with tarfile.open(sdist(version)) as archive:
        for member in archive.getmembers():
            if member.isfile():
                extracted = archive.extractfile(member)
                assert extracted is not None
                files[member.name.split("/", 1)[1]] = extracted.read()
    return files


def test_vllm_0_33_0_rust_frontend() -> None:
    files = tree("0.33.0")
    facts = rust.detect(set(files), lambda path: files[path].decode("utf-8"))
    assert facts is not None
    assert facts.toolchain_file == "rust-toolchain.toml"
    assert facts.channel == "1.95"
    assert facts.cargo_lock == "rust/Cargo.lock"
    assert facts.cargo_lock_sha256 == "0d2e817a9517c00f409c7a7afc9231fe76c41ad987a60bfcea1bd8a4593d6b16"
    assert len(facts.crates) == 606
    assert rust.CrateRecord(name="serde", version="1.0.228",
                            checksum="9a8e94ea7f378bd32cbbd37198a4a91436180c5bb472411e48b5ec2e2124ae9e") in facts.crates
    assert len(facts.git_sources) == 3  # llm-multimodal, oss-harmony, zeromq: not from a registry
    # tools/build_rust.py (loaded by setup.py) builds the vllm-rs executable; its PyO3 module
    # `vllm._rust_tool_parser` is commented out in 0.33.0
    assert facts.artifacts == (rust.ArtifactRecord(target="vllm.vllm-rs", kind="executable"),)


def test_vllm_0_30_0_rust_frontend_builds_a_rust_module_too() -> None:
    # 0.30.0: the same channel; rust/Cargo.lock with 619 crates.io crates and 2 from git;
    # tools/build_rust.py builds vllm-rs and the PyO3 module vllm._rust_tool_parser (a _rust_*.so)
    files = tree("0.30.0")
    facts = rust.detect(set(files), lambda path: files[path].decode("utf-8"))
    assert facts is not None
    assert (facts.channel, facts.cargo_lock) == ("1.95", "rust/Cargo.lock")
    assert facts.cargo_lock_sha256 == "01996fbf4da0c9a86bd0b77232923fefc11dcf3c20bc8e8267941813622c1f05"
    assert (len(facts.crates), len(facts.git_sources)) == (619, 2)
    assert facts.artifacts == (rust.ArtifactRecord(target="vllm._rust_tool_parser", kind="extension"),
                               rust.ArtifactRecord(target="vllm.vllm-rs", kind="executable"))
    assert rust.artifact_globs("extension", "vllm._rust_tool_parser") == ("vllm", "_rust_tool_parser*.so")


def test_vllm_0_20_2_has_no_rust_frontend() -> None:
    files = tree("0.20.2")
    assert rust.detect(set(files), lambda path: files[path].decode("utf-8", errors="replace")) is None
