from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from sample_lock import C1, make_lock, package

from vllm_lock import codec
from vllm_lock.build_identity import build_identity
from vllm_lock.errors import ExitCode, LockInvalidError
from vllm_lock.model import ExternalSource, Lock, Provenance

CUTLASS = ExternalSource(
    name="cutlass", repository="https://github.com/nvidia/cutlass.git", ref="v4.2.1", ref_kind="tag",
    commit="c" * 40, override="VLLM_CUTLASS_SRC_DIR", declared_in="CMakeLists.txt",
)


def lock_with_sources() -> Lock:
    return make_lock(external_sources=(CUTLASS,))


def test_round_trip_is_identity() -> None:
    lock = lock_with_sources()
    assert codec.loads(codec.dumps(lock)) == lock


def test_dumps_is_deterministic_and_ordered() -> None:
    text = codec.dumps(lock_with_sources())
    assert text == codec.dumps(lock_with_sources())
    order = [text.index(key) for key in ("\nlock-version", "\ncontent-hash", "[inputs.vllm.original]", "[target]",
                                          "[build]", "[layout]", "[[external-sources]]", "[[packages]]",
                                          "[provenance]")]
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
        (lambda t: t.replace("lock-version = 3", "lock-version = 99"), "unknown lock-version 99"),
        (lambda t: t.replace("lock-version = 3", 'lock-version = "1"'), "unknown lock-version '1'"),
        (lambda t: t.replace("lock-version = 3", "lock-version = 1"),
         "older than this vllm-lock reads .3.; re-resolve"),
        (lambda t: t.replace("lock-version = 3", "lock-version = 2"),
         r"lock-version 2 is older than this vllm-lock reads \(3\); re-resolve it with vllm-lock resolve"),
        (lambda t: t.replace('ref-kind = "tag"\ncommit = "', 'ref-kind = "tag"\ncommit = "v4'),
         "external source cutlass: commit 'v4"),
        (lambda t: t.replace('override = "VLLM_CUTLASS_SRC_DIR"', 'override = "$(rm -rf /)"'),
         "not an environment variable name"),
        (lambda t: t.replace('name = "cutlass"', 'name = "../../etc"'),
         "external source name '../../etc' is not a plain name"),
        (lambda t: t + "\n[[[broken", "not valid TOML"),
        (lambda t: t.replace('phase = "development"', 'phase = "development"\nsurprise = 1'), "unknown key surprise"),
        (lambda t: t.replace("size = 100", 'size = "big"', 1), r"packages\[0\].wheels\[0\].size must be int, got str"),
        (lambda t: t.replace(f'commit = "{C1}"', 'commit = "main"'), "not a 40-hex SHA"),
        (lambda t: t.replace('[target]\npython = "3.12"\n', "[target]\n"), "missing key target.python"),
        # `$` matches before a trailing newline and `\d` matches any digit: both are fullmatch and ASCII now
        (lambda t: t.replace(f'commit = "{C1}"', f'commit = "{C1}\\n"'),
         r"inputs.vllm.locked.commit: .* non-printable"),
        (lambda t: t.replace('cuda-archs = ["12.0"]', 'cuda-archs = ["\uff11\uff12.\uff10"]'),
         r"build.cuda-archs\[0\]"),
        (lambda t: t.replace('stripping-mode = "default"', 'stripping-mode = "\u202edefault"'),
         r"line \d+: the non-printable character U\+202E \(Cf\)"),  # the raw text scan, before TOML
        (lambda t: t.replace('url = "https://pypi.org/simple"', 'url = "https://[pypi.org/simple"'),
         r"inputs.general-index.original.url: .* invalid host"),
        (lambda t: t.replace('tool-version = "0.1.0"', 'tool-version = "0.1.0\\u0007"'), r"a \\u escape"),
    ],
)
def test_malformed_locks_name_the_problem(mutate: Callable[[str], str], message: str) -> None:
    with pytest.raises(LockInvalidError, match=message):
        codec.loads(mutate(codec.dumps(lock_with_sources())), check_hash=False)


def test_content_hash_covers_everything_but_itself() -> None:
    base = codec.content_hash(make_lock())
    later = make_lock(provenance=Provenance(tool_version="0.1.0", uv_version="0.9.0",
                                            resolved_at="2026-11-27T00:00:00Z"))
    assert codec.content_hash(later) != base
    assert base.startswith("sha256:") and len(base) == 7 + 64


def _two_wheels(**second: Any) -> Lock:
    """A lock whose soundfile-like package locks a py3-none-any and a platform wheel."""
    both = package("sound-fake", "1.0.0", tags=("py3-none-any", "py3-none-manylinux_2_28_x86_64"))
    if second:
        both = dataclasses.replace(both, wheels=(both.wheels[0], dataclasses.replace(both.wheels[1], **second)))
    return make_lock(extra=(package("filelock", "3.20.0"), both))


def test_several_wheels_per_package_round_trip_in_order() -> None:
    lock = _two_wheels()
    text = codec.dumps(lock)
    assert codec.loads(text) == lock
    sound = lock.package("sound-fake")
    assert sound is not None and [w.filename for w in sound.wheels] == [
        "sound_fake-1.0.0-py3-none-any.whl", "sound_fake-1.0.0-py3-none-manylinux_2_28_x86_64.whl"]
    block = text[text.index('name = "sound-fake"'):]
    block = block[:block.index("\n[[packages]]")]
    assert block.count("[[packages.wheels]]") == 2
    keys = [line.split(" = ")[0] for line in block.splitlines() if " = " in line]
    assert keys == ["name", "version", "source", *["filename", "url", "size", "sha256", "hash-origin"] * 2]


def test_build_identity_follows_every_wheel_not_only_the_first() -> None:
    identity = build_identity(_two_wheels())
    assert build_identity(_two_wheels(sha256="6" * 64)) != identity
    one = _two_wheels()
    sound = one.package("sound-fake")
    assert sound is not None
    fewer = dataclasses.replace(sound, wheels=sound.wheels[:1])
    assert build_identity(make_lock(extra=(package("filelock", "3.20.0"), fewer))) != identity


def _nth(text: str, old: str, new: str, n: int) -> str:
    """Replace the n-th (1-based) occurrence only."""
    at = -1
    for _ in range(n):
        at = text.index(old, at + 1)
    return text[:at] + new + text[at + len(old):]


def _swap_wheels(text: str) -> str:
    start = text.index('name = "sound-fake"')
    first = text.index("[[packages.wheels]]", start)
    second = text.index("[[packages.wheels]]", first + 1)
    end = text.index("\n[[packages]]", second)
    a, b = text[first:second], text[second:end] + "\n"
    return text[:first] + b + a.rstrip("\n") + text[end:]


def _no_wheels(text: str) -> str:
    start = text.index('name = "filelock"')
    first = text.index("[[packages.wheels]]", start)
    end = text.index("\n[[packages]]", first)
    return text[:first] + text[end + 1:].replace("[[packages]]", "wheels = []\n\n[[packages]]", 1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # each wheel entry keeps every rule a package's file had, named by its key path
        (lambda t: t.replace("sound_fake-1.0.0-py3-none-manylinux_2_28_x86_64.whl\"\nurl",
                             "../../x/evil.whl\"\nurl", 1), r"packages\[2\].wheels\[1\].filename: "),
        (lambda t: t.replace("https://files.pythonhosted.org/packages/00/11/sound_fake-1.0.0-py3-none-manylinux",
                             "https://evil.example/sound_fake-1.0.0-py3-none-manylinux", 1),
         r"packages\[2\].wheels\[1\].url: .* is not on the index's host"),
        (lambda t: t.replace("/00/11/sound_fake-1.0.0-py3-none-manylinux_2_28_x86_64.whl",
                             "/00/11/other.whl", 1),
         r"packages\[2\].wheels\[1\].url: .* does not end in the filename"),
        (lambda t: _nth(t, "size = 100", "size = 0", 4), r"packages\[2\].wheels\[1\].size: 0 is not between"),
        (lambda t: _nth(t, 'hash-origin = "index"', 'hash-origin = "guessed"', 4),
         r"packages\[2\].wheels\[1\].hash-origin"),
        (lambda t: _nth(t, 'sha256 = "', 'sha256 = "zz', 4), r"packages\[2\].wheels\[1\].sha256: .* is not a sha256"),
        (lambda t: _nth(t, 'hash-origin = "index"\n', 'hash-origin = "index"\nextra = 1\n', 4),
         r"unknown key packages\[2\].wheels\[1\].extra"),
        (lambda t: t.replace("sound_fake-1.0.0-py3-none-manylinux_2_28_x86_64.whl\"\nurl",
                             "sound_fake-1.0.1-py3-none-manylinux_2_28_x86_64.whl\"\nurl", 1),
         r"packages\[2\].wheels\[1\].filename: .* is version 1.0.1, not 1.0.0"),
        # the set itself: sorted, unique, not empty
        (_swap_wheels, r"packages\[2\].wheels: must be sorted by filename"),
        (_no_wheels, r"packages\[0\].wheels: is empty"),
        (lambda t: t.replace("sound_fake-1.0.0-py3-none-manylinux_2_28_x86_64.whl",
                             "sound_fake-1.0.0-py3-none-any.whl"),
         r"packages\[2\].wheels\[1\].filename: .* is listed twice"),
    ],
)
def test_every_wheel_entry_is_checked(mutate: Callable[[str], str], message: str) -> None:
    with pytest.raises(LockInvalidError, match=message):
        codec.loads(mutate(codec.dumps(_two_wheels())), check_hash=False)
