"""build_identity.py: the identity's value is pinned (installed generations must be recognised
after any change of the code), what it follows and ignores, generation ids, what an installed
generation says about a lock, and the reasons for a rebuild."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from sample_lock import C2, make_lock, package

from vllm_lock import codec
from vllm_lock.build_identity import (
    GenerationId,
    build_identity,
    generation_id,
    identity_change,
    match_installed,
    package_change_kind,
    parse_generation_id,
    rebuild_reasons,
)
from vllm_lock.model import BuildRecipe, Provenance

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize(("name", "identity"), [
    # computed by codec.build_identity before build_identity.py existed (commit 4d1bb26): a
    # generation installed then is found again, not rebuilt
    ("before", "716396686355e6f5"),
    ("after", "a8d6d8fce7d3b6e7"),
])
def test_the_identity_of_a_fixed_lock_never_changes(name: str, identity: str) -> None:
    lock = codec.loads((GOLDEN / f"{name}.lock.toml").read_text(encoding="utf-8"))
    assert build_identity(lock) == identity


def test_the_identity_of_the_sample_lock_never_changes() -> None:
    assert build_identity(make_lock()) == "3a68089c2871cdf9"


def test_build_identity_ignores_provenance_names_and_original_refs() -> None:
    lock = make_lock()
    same = make_lock(
        name="stable",
        phase="stable",
        vllm=dataclasses.replace(lock.vllm, ref=lock.vllm.commit),
        provenance=Provenance(tool_version="9", uv_version="9", resolved_at="2030-01-01T00:00:00Z"),
    )
    assert build_identity(same) == build_identity(lock)


def test_build_identity_follows_archs_packages_and_commit() -> None:
    lock = make_lock()
    identity = build_identity(lock)
    assert build_identity(make_lock(build=BuildRecipe(cuda_archs=("10.0", "12.0")))) != identity
    assert build_identity(make_lock(commit=C2)) != identity
    rehashed = dataclasses.replace(lock.packages[0].wheels[0], sha256="5" * 64)
    changed_pkg = dataclasses.replace(lock.packages[0], wheels=(rehashed,))
    assert build_identity(make_lock(packages=(changed_pkg, *lock.packages[1:]))) != identity


# ---------------------------------------------------------------- generation ids


def test_generation_id_names_an_override_of_editable() -> None:
    lock = make_lock()  # build.editable = True
    identity = build_identity(lock)
    assert str(generation_id(lock, editable=True)) == identity
    assert str(generation_id(lock, editable=False)) == identity + "-wheel"
    not_editable = make_lock(build=dataclasses.replace(lock.build, editable=False))
    assert str(generation_id(not_editable, editable=True)) == build_identity(not_editable) + "-editable"


@pytest.mark.parametrize(("text", "parsed"), [
    ("0123456789abcdef", GenerationId(identity="0123456789abcdef")),
    ("0123456789abcdef-wheel", GenerationId(identity="0123456789abcdef", override="wheel")),
    ("0123456789abcdef-editable", GenerationId(identity="0123456789abcdef", override="editable")),
    ("0123456789abcdef-other", None),
    ("0123456789ABCDEF", None),
    ("0123456789abcde", None),
    ("profile.json", None),
    ("", None),
])
def test_parse_generation_id(text: str, parsed: GenerationId | None) -> None:
    assert parse_generation_id(text) == parsed
    if parsed is not None:
        assert str(parsed) == text


# ---------------------------------------------------------------- an installed generation


def test_match_installed() -> None:
    lock = make_lock()
    identity, content = build_identity(lock), codec.content_hash(lock)
    assert match_installed(lock, generation=identity, content_hash=content).kind == "this-lock"
    promoted = match_installed(lock, generation=identity + "-wheel", content_hash="sha256:" + "0" * 64)
    assert promoted.kind == "same-build" and promoted.same_build
    # the identity decides: a receipt naming another build is another build, whatever its hash says
    other = match_installed(lock, generation="0123456789abcdef", content_hash=content)
    assert other.kind == "other-build" and not other.same_build and other.wanted == identity
    assert match_installed(lock, generation=identity + "-junk", content_hash=content).kind == "other-build"


# ---------------------------------------------------------------- reasons


def test_no_reasons_when_the_build_is_the_same() -> None:
    lock = make_lock()
    change = identity_change(lock, make_lock(name="stable", phase="stable"))
    assert not change.changed and change.reasons == ()


def test_reasons_name_each_input_that_moved() -> None:
    a = make_lock()
    b = make_lock(commit=C2, build=BuildRecipe(cuda_archs=("10.0",), env=(("NVCC_THREADS", "4"),)))
    assert rebuild_reasons(a, b) == (f"vLLM commit {a.vllm.commit[:9]} -> {C2[:9]}",
                                     "build recipe (cuda-archs, env.NVCC_THREADS)")


def test_package_change_kinds() -> None:
    old = package("filelock", "3.20.0")
    rehashed = dataclasses.replace(old, wheels=(dataclasses.replace(old.wheels[0], sha256="7" * 64),))
    assert package_change_kind(old, old) is None
    assert package_change_kind(None, old) == "added" and package_change_kind(old, None) == "removed"
    assert package_change_kind(old, package("filelock", "3.21.0")) == "changed"
    assert package_change_kind(old, rehashed) == "rebuilt"
    assert package_change_kind(None, None) is None
