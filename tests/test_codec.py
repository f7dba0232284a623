from __future__ import annotations

import dataclasses

import pytest
from sample_lock import C1, C2, make_lock

from vllm_lock import codec
from vllm_lock.errors import ExitCode, LockInvalidError
from vllm_lock.model import BuildRecipe, ExternalSource, Provenance

CUTLASS = ExternalSource(
    name="cutlass", repository="https://github.com/nvidia/cutlass.git", ref="v4.2.1", ref_kind="tag",
    commit="c" * 40, override="VLLM_CUTLASS_SRC_DIR", declared_in="CMakeLists.txt",
)


def lock_with_sources():  # type: ignore[no-untyped-def]
    return make_lock(external_sources=(CUTLASS,))


def test_round_trip_is_identity() -> None:
    lock = lock_with_sources()
    assert codec.loads(codec.dumps(lock)) == lock


def test_dumps_is_deterministic_and_ordered() -> None:
    text = codec.dumps(lock_with_sources())
    assert text == codec.dumps(lock_with_sources())
    order = [text.index(key) for key in ("\nlock-version", "\ncontent-hash", "[inputs.vllm.original]", "[target]",
                                          "[build]", "[layout]", "[[external-sources]]", "[[packages]]", "[provenance]")]
    assert order == sorted(order)


def test_original_and_locked_kept_apart() -> None:
    text = codec.dumps(make_lock())
    assert '[inputs.vllm.original]\nurl = "https://github.com/vllm-project/vllm.git"\nref = "main"' in text
    assert f'[inputs.vllm.locked]\ncommit = "{C1}"' in text
    assert 'requested = "latest"' in text and 'version = "2.10.0.dev20261105+cu128"' in text


def test_hand_edit_is_detected() -> None:
    text = codec.dumps(make_lock()).replace("size = 100", "size = 101", 1)
    with pytest.raises(LockInvalidError, match="content-hash mismatch") as err:
        codec.loads(text, origin="dev.lock.toml")
    assert err.value.exit_code == ExitCode.LOCK_INVALID
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("lock-version = 2", "lock-version = 99"), "unknown lock-version 99"),
        (lambda t: t.replace("lock-version = 2", 'lock-version = "1"'), "unknown lock-version '1'"),
        (lambda t: t.replace("lock-version = 2", "lock-version = 1"), "older than this vllm-lock reads .2.; re-resolve"),
        (lambda t: t.replace('ref-kind = "tag"\ncommit = "', 'ref-kind = "tag"\ncommit = "v4'),
         "external source cutlass: commit 'v4"),
        (lambda t: t.replace('override = "VLLM_CUTLASS_SRC_DIR"', 'override = "$(rm -rf /)"'),
         "not an environment variable name"),
        (lambda t: t.replace('name = "cutlass"', 'name = "../../etc"'), "external source name '../../etc' is not a plain name"),
        (lambda t: t + "\n[[[broken", "not valid TOML"),
        (lambda t: t.replace('phase = "development"', 'phase = "development"\nsurprise = 1'), "unknown key surprise"),
        (lambda t: t.replace("size = 100", 'size = "big"', 1), r"packages\[0\].size must be int"),
        (lambda t: t.replace(f'commit = "{C1}"', 'commit = "main"'), "not a 40-hex SHA"),
        (lambda t: t.replace('[target]\npython = "3.12"\n', "[target]\n"), "missing key target.python"),
        # `$` matches before a trailing newline and `\d` matches any digit: both are fullmatch and ASCII now
        (lambda t: t.replace(f'commit = "{C1}"', f'commit = "{C1}\\n"'), r"inputs.vllm.locked.commit: .* non-printable"),
        (lambda t: t.replace('cuda-archs = ["12.0"]', 'cuda-archs = ["\uff11\uff12.\uff10"]'), r"build.cuda-archs\[0\]"),
        (lambda t: t.replace('stripping-mode = "default"', 'stripping-mode = "\u202edefault"'),
         r"layout.stripping-mode: .* non-printable character"),
        (lambda t: t.replace('url = "https://pypi.org/simple"', 'url = "https://[pypi.org/simple"'),
         r"inputs.general-index.original.url: .* invalid host"),
        (lambda t: t.replace('tool-version = "0.1.0"', 'tool-version = "0.1.0\\u0007"'), "provenance.tool-version"),
    ],
)
def test_malformed_locks_name_the_problem(mutate, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(LockInvalidError, match=message):
        codec.loads(mutate(codec.dumps(lock_with_sources())), check_hash=False)


def test_content_hash_covers_everything_but_itself() -> None:
    base = codec.content_hash(make_lock())
    later = make_lock(provenance=Provenance(tool_version="0.1.0", uv_version="0.9.0", resolved_at="2026-11-27T00:00:00Z"))
    assert codec.content_hash(later) != base
    assert base.startswith("sha256:") and len(base) == 7 + 64


def test_build_identity_ignores_provenance_names_and_original_refs() -> None:
    lock = make_lock()
    same = make_lock(
        name="stable",
        phase="stable",
        vllm=dataclasses.replace(lock.vllm, ref=lock.vllm.commit),
        provenance=Provenance(tool_version="9", uv_version="9", resolved_at="2030-01-01T00:00:00Z"),
    )
    assert codec.build_identity(same) == codec.build_identity(lock)


def test_build_identity_follows_archs_packages_and_commit() -> None:
    lock = make_lock()
    identity = codec.build_identity(lock)
    assert codec.build_identity(make_lock(build=BuildRecipe(cuda_archs=("10.0", "12.0")))) != identity
    assert codec.build_identity(make_lock(commit=C2)) != identity
    changed_pkg = dataclasses.replace(lock.packages[0], sha256="5" * 64)
    assert codec.build_identity(make_lock(packages=(changed_pkg, *lock.packages[1:]))) != identity


def test_build_identity_follows_a_moved_external_tag() -> None:
    # same pin text (v4.2.1) in vLLM, but the tag now names another commit: another build
    moved = dataclasses.replace(CUTLASS, commit="d" * 40)
    assert codec.build_identity(make_lock(external_sources=(moved,))) != codec.build_identity(lock_with_sources())


def test_max_jobs_cannot_enter_the_recipe() -> None:
    with pytest.raises(ValueError, match="MAX_JOBS"):
        BuildRecipe(cuda_archs=("12.0",), env=(("MAX_JOBS", "8"),))


def test_model_rules_match_whole_values() -> None:
    """Without the codec's printable check, the model's own rules still refuse a trailing newline."""
    from vllm_lock.model import ModelError, VllmInput

    with pytest.raises(ModelError, match=r"inputs.vllm.locked.commit: .* not a 40-hex SHA"):
        VllmInput(url="https://github.com/vllm-project/vllm.git", ref="main", commit=C1 + "\n",
                  commit_date="2026-11-20T10:00:00Z")
