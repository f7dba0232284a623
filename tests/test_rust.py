"""The Rust frontend in the core: rust-toolchain and Cargo.lock parsing, detection, the lock's
[rust] table (strict model, deterministic codec), the build identity, the preflight needs and the
build environment. Pure: no I/O besides temporary files."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from sample_lock import make_lock as sample_lock

from vllm_lock import codec, plan, rust
from vllm_lock.build_identity import build_identity
from vllm_lock.errors import LockInvalidError
from vllm_lock.model import Crate, ModelError, RustArtifact, RustFrontend
from vllm_lock_testworld import crates as tw_crates
from vllm_lock_testworld.repo_files import SETUP_PY, _with_rust

SHA = "a" * 64


def frontend(**changes: Any) -> RustFrontend:
    base = RustFrontend(
        toolchain_file="rust-toolchain.toml", channel="1.95", cargo_lock="rust/Cargo.lock", cargo_lock_sha256=SHA,
        artifacts=(RustArtifact(target="vllm._rust_hello", kind="extension"),),
        crates=(Crate(name="tw-answer", version="0.1.0", checksum="b" * 64),
                Crate(name="tw-offset", version="1.2.3", checksum="c" * 64)),
    )
    return dataclasses.replace(base, **changes)


# ---------------------------------------------------------------- parsing and detection


def test_toolchain_channel_is_read_and_a_named_channel_refused() -> None:
    assert rust.parse_toolchain("rust-toolchain.toml", '[toolchain]\nchannel = "1.95"\n') == "1.95"
    assert rust.parse_toolchain("rust-toolchain", "1.95.0\n") == "1.95.0"
    with pytest.raises(rust.RustError, match="'stable' is not a version"):
        rust.parse_toolchain("rust-toolchain.toml", '[toolchain]\nchannel = "stable"\n')
    with pytest.raises(rust.RustError, match="no \\[toolchain\\] channel"):
        rust.parse_toolchain("rust-toolchain.toml", '[toolchain]\ncomponents = ["rustfmt"]\n')


def test_cargo_lock_registry_crates_git_sources_and_members() -> None:
    text = tw_crates.cargo_lock() + (
        '\n[[package]]\nname = "zmq"\nversion = "0.10.0"\n'
        'source = "git+https://github.com/zeromq/zmq.rs?rev=67dcba9#67dcba97559ebe8e8206dab753710d8b9cb07591"\n'
    )
    crates, git = rust.parse_cargo_lock("rust/Cargo.lock", text)
    assert [(c.name, c.version, c.checksum) for c in crates] == [
        (c.name, c.version, tw_crates.checksum(c)) for c in tw_crates.DEPENDENCIES]
    assert git == ("git+https://github.com/zeromq/zmq.rs?rev=67dcba9#67dcba97559ebe8e8206dab753710d8b9cb07591",)


@pytest.mark.parametrize(("row", "message"), [
    ('source = "registry+https://example.com/index"\nchecksum = "' + SHA + '"', "not crates.io"),
    ('source = "registry+https://github.com/rust-lang/crates.io-index"', "has no checksum"),
])
def test_cargo_lock_refuses_other_registries_and_missing_checksums(row: str, message: str) -> None:
    with pytest.raises(rust.RustError, match=message):
        rust.parse_cargo_lock("Cargo.lock", f'version = 3\n[[package]]\nname = "x"\nversion = "1.0.0"\n{row}\n')


def test_detection_reads_the_extension_targets_with_ast_not_comments() -> None:
    files = {**tw_crates.rust_files(), "setup.py": _with_rust(SETUP_PY)}
    files["setup.py"] += '\n# RustExtension(target="vllm._rust_commented_out")\n'
    facts = rust.detect(set(files), files.__getitem__)
    assert facts is not None
    assert (facts.channel, facts.toolchain_file, facts.cargo_lock) == ("1.95", "rust-toolchain.toml", "rust/Cargo.lock")
    assert facts.artifacts == (rust.ArtifactRecord(target="vllm._rust_hello", kind="extension"),)
    assert len(facts.crates) == 2


def test_only_modules_that_can_call_rust_extension_are_parsed() -> None:
    # a module without the word is not parsed (0.33.0's 68 KB setup.py): its syntax is not ours to judge here
    assert rust.rust_extension_targets({"setup.py": "def broken(:\n", "tools/x.py": "import os\n"}) == ()
    # Python folds identifiers to NFKC: a fullwidth R still names RustExtension, so non-ASCII text is parsed
    folded = 'from setuptools_rust import RustExtension\nX = \uff32ustExtension(target="vllm._folded")\n'
    assert rust.rust_extension_targets({"tools/build_rust.py": folded.replace("RustExtension\n", "*\n")}) == (
        rust.ArtifactRecord(target="vllm._folded", kind="extension"),)
    with pytest.raises(rust.RustError, match=r"^cannot parse tools/x\.py"):
        rust.rust_extension_targets({"tools/x.py": "RustExtension(:\n"})


def test_detection_needs_setuptools_rust_and_exactly_one_cargo_lock() -> None:
    files = {**tw_crates.rust_files(), "setup.py": SETUP_PY}
    assert rust.detect(set(files), files.__getitem__) is None  # no setuptools_rust: no frontend
    files = {**tw_crates.rust_files(), "setup.py": _with_rust(SETUP_PY), "other/Cargo.lock": "version = 3\n"}
    with pytest.raises(rust.RustError, match="2 Cargo.lock files"):
        rust.detect(set(files), files.__getitem__)
    del files["other/Cargo.lock"], files["rust-toolchain.toml"]
    with pytest.raises(rust.RustError, match="no rust-toolchain.toml"):
        rust.detect(set(files), files.__getitem__)


def test_setup_py_modules_follow_a_root_dir_join() -> None:
    setup_py = 'rust_build = load(os.path.join(ROOT_DIR, "tools", "build_rust.py"))\n'
    assert rust.setup_py_modules(setup_py, frozenset({"tools/build_rust.py"})) == ("tools/build_rust.py",)


# ---------------------------------------------------------------- model and codec


@pytest.mark.parametrize(("changes", "key"), [
    ({"channel": "stable"}, "rust.channel"),
    ({"cargo_lock": "../Cargo.lock"}, "rust.cargo-lock"),
    ({"cargo_lock": "rust/Cargo.toml"}, "rust.cargo-lock"),
    ({"cargo_lock_sha256": "zz"}, "rust.cargo-lock-sha256"),
    ({"toolchain_file": "x.toml"}, "rust.toolchain-file"),
])
def test_frontend_fields_are_validated_with_key_paths(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ModelError) as info:
        frontend(**changes)
    assert info.value.key == key


@pytest.mark.parametrize(("crate", "key"), [
    ({"name": "-rf", "version": "1.0.0", "checksum": SHA}, "name"),
    ({"name": "ok", "version": "1.0", "checksum": SHA}, "version"),
    ({"name": "ok", "version": "1.0.0\n", "checksum": SHA}, "version"),
    ({"name": "ok", "version": "1.0.0", "checksum": "A" * 64}, "checksum"),
])
def test_crate_patterns_are_strict(crate: dict[str, str], key: str) -> None:
    with pytest.raises(ModelError) as info:
        Crate(**crate)
    assert info.value.key == key


def test_crates_sorted_and_unique() -> None:
    one = Crate(name="a", version="1.0.0", checksum=SHA)
    with pytest.raises(ModelError, match="sorted"):
        frontend(crates=(Crate(name="b", version="1.0.0", checksum=SHA), one))
    with pytest.raises(ModelError, match="listed twice"):
        frontend(crates=(one, one))


def test_codec_round_trip_is_deterministic_and_strict() -> None:
    lock = dataclasses.replace(sample_lock(), rust=frontend())
    text = codec.dumps(lock)
    assert codec.loads(text) == lock
    assert codec.dumps(codec.loads(text)) == text
    assert "[rust]" in text and "[[rust.crates]]" in text
    bad = text.replace('checksum = "' + "b" * 64, 'checksum = "' + "B" * 64)
    with pytest.raises(LockInvalidError, match=r"rust\.crates\[0\]\.checksum"):
        codec.loads(bad, check_hash=False)
    with pytest.raises(LockInvalidError, match=r"unknown key rust\.crates\[0\]\.extra"):
        codec.loads(text.replace('name = "tw-answer"', 'name = "tw-answer"\nextra = 1'), check_hash=False)


def test_without_rust_is_written_only_when_true_and_excludes_a_rust_table() -> None:
    lock = sample_lock()
    left_out = dataclasses.replace(lock, build=dataclasses.replace(lock.build, without_rust=True))
    assert "without-rust = true" in codec.dumps(left_out)
    assert "without-rust" not in codec.dumps(lock)
    assert codec.loads(codec.dumps(left_out)) == left_out
    with pytest.raises(LockInvalidError, match="written only when true"):
        codec.loads(codec.dumps(lock).replace("editable = true", "editable = true\nwithout-rust = false"),
                    check_hash=False)
    with pytest.raises(ModelError, match="also locks it"):
        dataclasses.replace(left_out, rust=frontend())


def test_build_identity_covers_the_frontend_and_its_absence() -> None:
    lock = dataclasses.replace(sample_lock(), rust=frontend())
    other_crate = frontend(crates=(Crate(name="tw-answer", version="0.1.0", checksum="d" * 64),))
    identities = {
        build_identity(lock),
        build_identity(dataclasses.replace(lock, rust=other_crate)),
        build_identity(dataclasses.replace(lock, rust=frontend(channel="1.96"))),
        build_identity(dataclasses.replace(lock, rust=frontend(cargo_lock_sha256="e" * 64))),
        build_identity(dataclasses.replace(lock, rust=None,
                                                 build=dataclasses.replace(lock.build, without_rust=True))),
    }
    assert len(identities) == 5


# ---------------------------------------------------------------- plan


def _tools(rustc: str | None, cargo: str | None) -> tuple[plan.Tool, ...]:
    return (plan.Tool(name="rustc", path="/x/rustc" if rustc else None, version=rustc),
            plan.Tool(name="cargo", path="/x/cargo" if cargo else None, version=cargo))


@pytest.mark.parametrize("device", ["cuda", "empty"])
def test_preflight_needs_rustc_and_cargo_at_the_channel(device: str) -> None:
    base = sample_lock()
    lock = dataclasses.replace(base, rust=frontend(), build=dataclasses.replace(base.build, target_device=device))
    needs = plan.toolchain_needs(lock)
    assert {(n.tool, n.spec) for n in needs} >= {("rustc", ">=1.95"), ("cargo", ">=1.95")}
    assert plan.toolchain_problems(needs, _tools("1.95.0", "1.95.0")) == []
    problems = plan.toolchain_problems(needs, _tools("1.94.1", None))
    assert any("rustc 1.94.1" in p and "rustc>=1.95" in p for p in problems)
    assert any(p.startswith("cargo not found") and "cargo>=1.95" in p for p in problems)
    assert not any(n.tool in ("rustc", "cargo") for n in plan.toolchain_needs(base))


def test_build_env_requires_the_frontend_offline_or_hides_the_compiler() -> None:
    base = sample_lock()
    lock = dataclasses.replace(base, rust=frontend())
    env = plan.rust_build_env(lock, "/usr/bin", tools=Path("/g/rust/bin"), cargo_home=Path("/g/rust/cargo-home"))
    assert env["VLLM_REQUIRE_RUST_FRONTEND"] == "1" and env["CARGO_NET_OFFLINE"] == "true"
    assert env["CARGO_HOME"] == "/g/rust/cargo-home" and env["PATH"] == "/g/rust/bin:/usr/bin"
    left_out = dataclasses.replace(base, build=dataclasses.replace(base.build, without_rust=True))
    env = plan.rust_build_env(left_out, "/usr/bin", tools=Path("/g/rust/left-out"), cargo_home=None)
    assert env["VLLM_REQUIRE_RUST_FRONTEND"] == "0" and env["CARGO"] == "/g/rust/left-out/cargo"
    # no frontend locked at all: the same refusing tools (the caller's toolchain is never used)
    env = plan.rust_build_env(base, "/usr/bin", tools=Path("/t"), cargo_home=None)
    assert env["RUSTC"] == "/t/rustc" and env["PATH"] == "/t:/usr/bin" and env["VLLM_REQUIRE_RUST_FRONTEND"] == "0"


def test_cargo_config_points_crates_io_at_the_vendored_directory() -> None:
    import tomllib

    config = tomllib.loads(rust.cargo_config('/g/rust/"vendor'))
    assert config["source"]["crates-io"]["replace-with"] == "vllm-lock-vendored"
    assert config["source"]["vllm-lock-vendored"]["directory"] == '/g/rust/"vendor'
    assert config["net"]["offline"] is True


def test_diff_names_a_rust_change_as_the_reason_for_a_rebuild() -> None:
    from vllm_lock.build_identity import identity_change

    lock = dataclasses.replace(sample_lock(), rust=frontend())
    newer = dataclasses.replace(lock, rust=frontend(channel="1.96", cargo_lock_sha256="e" * 64))
    assert identity_change(lock, newer).reasons == (
        "Rust frontend (toolchain 1.95 -> 1.96, Cargo.lock changed)",)
    left_out = dataclasses.replace(lock, rust=None, build=dataclasses.replace(lock.build, without_rust=True))
    reasons = identity_change(lock, left_out).reasons
    assert "Rust frontend (toolchain 1.95, 2 crates -> left out (--no-rust))" in reasons


def test_the_trees_frontend_is_compared_with_the_locks_field_by_field() -> None:
    base = sample_lock()
    locked = frontend()
    lock = dataclasses.replace(base, rust=locked)
    tree = rust.RustFacts(
        toolchain_file=locked.toolchain_file, channel=locked.channel, cargo_lock=locked.cargo_lock,
        cargo_lock_sha256=locked.cargo_lock_sha256, git_sources=(),
        crates=tuple(rust.CrateRecord(name=c.name, version=c.version, checksum=c.checksum) for c in locked.crates),
        artifacts=tuple(rust.ArtifactRecord(target=a.target, kind=a.kind) for a in locked.artifacts),
    )
    assert plan.rust_frontend_problem(lock, tree) is None
    assert plan.rust_frontend_problem(base, None) is None
    assert (plan.rust_frontend_problem(base, tree) or "").startswith("rust: the commit has a Rust frontend")
    left_out = dataclasses.replace(base, build=dataclasses.replace(base.build, without_rust=True))
    assert plan.rust_frontend_problem(left_out, tree) is None
    assert (plan.rust_frontend_problem(left_out, None) or "").startswith("build.without-rust")
    assert (plan.rust_frontend_problem(lock, None) or "").startswith("rust: the lock has a [rust] table")
    for field, changed in (("rust.channel", {"channel": "1.90"}), ("rust.cargo-lock", {"cargo_lock": "x/Cargo.lock"}),
                           ("rust.cargo-lock-sha256", {"cargo_lock_sha256": "0" * 64}),
                           ("rust.toolchain-file", {"toolchain_file": "rust-toolchain"}),
                           ("rust.artifacts", {"artifacts": ()}), ("rust.crates", {"crates": ()})):
        problem = plan.rust_frontend_problem(lock, dataclasses.replace(tree, **changed))
        assert (problem or "").startswith(field + ":"), (field, problem)


@pytest.mark.parametrize("facts", [
    None,
    rust.RustFacts(toolchain_file="rust-toolchain.toml", channel="1.95", cargo_lock="rust/Cargo.lock",
                   cargo_lock_sha256=SHA, git_sources=("git+https://example.org/x#abc",),
                   crates=(rust.CrateRecord(name="tw-answer", version="0.1.0", checksum="b" * 64),),
                   artifacts=(rust.ArtifactRecord(target="vllm._rust_hello", kind="extension"),
                              rust.ArtifactRecord(target="vllm.vllm-rs", kind="executable"))),
])
def test_the_facts_a_source_store_path_keeps_read_back_equal(facts: rust.RustFacts | None) -> None:
    assert rust.facts_from_json(rust.facts_to_json(facts)) == facts


@pytest.mark.parametrize("text", [
    "", "[]", '{"format": "vllm-lock rust facts 0", "facts": null}', '{"format": "vllm-lock rust facts 1"}',
    '{"format": "vllm-lock rust facts 1", "facts": {"channel": "1.95"}}',
    '{"format": "vllm-lock rust facts 1", "facts": {"toolchain-file": 1, "channel": "1", "cargo-lock": "C",'
    ' "cargo-lock-sha256": "s", "git-sources": [], "crates": [], "artifacts": []}}',
    '{"format": "vllm-lock rust facts 1", "facts": {"toolchain-file": "t", "channel": "1", "cargo-lock": "C",'
    ' "cargo-lock-sha256": "s", "git-sources": [], "crates": [["a", "b"]], "artifacts": []}}',
])
def test_kept_facts_that_do_not_read_are_refused(text: str) -> None:
    with pytest.raises(rust.RustError, match="unreadable rust facts|not vllm-lock rust facts 1"):
        rust.facts_from_json(text)
