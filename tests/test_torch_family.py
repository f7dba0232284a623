"""The torch family taken from the commit, and what uv is asked for each member."""

from __future__ import annotations

import datetime as dt

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from vllm_lock import torch_family as tf
from vllm_lock.model import Target

X86 = tf.target_environment(Target(python="3.12", platform="x86_64-manylinux_2_39"))
ARM = tf.target_environment(Target(python="3.12", platform="aarch64-manylinux_2_39"))
CARRIED = {"torch", "torchvision", "torchaudio", "torchcodec", "pytorch-triton", "numpy", "intel-extension-for-pytorch"}


def carried(name: str) -> bool:
    return name in CARRIED


def test_removed_lines_are_what_the_script_deleted() -> None:
    before = "-r common.txt\n# torch pins\ntorch==2.14.0\nnumba\ntorchaudio==2.11.0\nnumba\n"
    after = "-r common.txt\nnumba\nnumba\n"
    assert tf.removed_lines(before, after) == ("# torch pins", "torch==2.14.0", "torchaudio==2.11.0")
    assert tf.removed_requirements(tf.removed_lines(before, after)) == ("torch==2.14.0", "torchaudio==2.11.0")
    assert tf.removed_requirements(['    "torch == 2.10.0",', "--extra-index-url x",
                                    "xformers==0.0.29 # Requires PyTorch"]) \
        == ("xformers==0.0.29",)


def test_members_come_from_removed_lines_and_declared_torch_packages() -> None:
    removed = ("torch==2.14.0", "torchaudio==2.11.0", "torchvision==0.29.0")
    declared = ("regex", "numpy", "torchcodec>=0.14", "open-clip-torch>=2.0")
    reading = tf.family_members(removed, declared, carried=carried, environment=X86)
    assert [(m.name, m.lines, m.origin) for m in reading.members] == [
        ("torchaudio", ("torchaudio==2.11.0",), "stripped"),
        ("torchcodec", ("torchcodec>=0.14",), "declared"),  # kept by --prefix, carried by the torch index
        ("torchvision", ("torchvision==0.29.0",), "stripped"),
    ]  # numpy: carried (a mirror) but not torch's; open-clip-torch: not carried
    assert str(reading.members[0].specifier) == "==2.11.0"


def test_markers_are_evaluated_for_the_target() -> None:
    removed = ('torchaudio; platform_machine != "ppc64le"', 'torchaudio==2.8.0; platform_machine == "ppc64le"',
               'intel_extension_for_pytorch==2.8.0; platform_machine == "x86_64"')
    x86 = tf.family_members(removed, (), carried=carried, environment=X86).members
    assert [(m.name, m.lines) for m in x86] == [
        ("intel-extension-for-pytorch", ('intel_extension_for_pytorch==2.8.0; platform_machine == "x86_64"',)),
        ("torchaudio", ('torchaudio; platform_machine != "ppc64le"',)),
    ]
    assert [m.name for m in tf.family_members(removed, (), carried=carried, environment=ARM).members] == ["torchaudio"]


def test_a_line_removed_only_because_it_mentions_torch_is_not_locked() -> None:
    removed = ("open-clip-torch-fake>=1.0", "xformers==0.0.29.post2; platform_system == 'Linux'")
    reading = tf.family_members(removed, (), carried=carried, environment=X86)
    assert reading.members == () and reading.not_locked == removed
    # a torch* project is a member even where the index lacks it (resolve then names it)
    assert [m.name for m in tf.family_members(("torchcodec==0.8.0",), (), carried=lambda n: False,
                                              environment=X86).members] == ["torchcodec"]


def test_without_leaves_members_out_and_is_recorded() -> None:
    members = tf.family_members(("torchaudio==2.11.0", "torchvision==0.29.0"), (), carried=carried,
                                environment=X86).members
    kept, left_out = tf.leave_out(members, ["TorchAudio"])
    assert [m.name for m in kept] == ["torchvision"] and left_out == ("torchaudio",)
    with pytest.raises(tf.FamilyError,
                       match="--without regex: not a torch-family member .*members: torchaudio, torchvision"):
        tf.leave_out(members, ["regex"])
    with pytest.raises(tf.FamilyError, match="--without torch"):
        tf.leave_out(members, ["torch"])


def member(*lines: str) -> tf.Member:
    return tf.Member(name=Requirement(lines[0]).name, lines=lines, origin="stripped")


D = dt.date(2026, 11, 12)


def nightlies(*days: int, base: str = "0.25.0") -> dict[dt.date, Version]:
    return {dt.date(2026, 11, d): Version(f"{base}.dev202611{d:02d}+cu128") for d in days}


def test_nightly_member_matched_by_date() -> None:
    choice = tf.choose_nightly(member("torchvision==0.29.0"), nightlies(11, 12, 13), D)
    assert choice.requirement == "torchvision>=0.25.0.dev20261112,<=0.25.0.dev20261113"
    assert not choice.preferred and choice.fallback is None
    with pytest.raises(tf.CompanionGap, match="no torchvision nightly built on 2026-11-12 or the day after"):
        tf.choose_nightly(member("torchvision"), nightlies(2, 5), D)
    with pytest.raises(tf.FamilyError, match="the torch index has no torchvision") as err:
        tf.choose_nightly(member("torchvision"), {}, D)
    assert not isinstance(err.value, tf.CompanionGap) and err.value.member == "torchvision"


def test_nightly_member_prefers_the_commits_pin_within_the_window() -> None:
    builds = {dt.date(2026, 11, 12): Version("0.14.0.dev20261112+cu128"),
              dt.date(2026, 11, 13): Version("0.15.0.dev20261113+cu128")}
    choice = tf.choose_nightly(member("torchcodec<0.15"), builds, D)
    assert choice.requirement == "torchcodec>=0.14.0.dev20261112,<=0.14.0.dev20261112" and choice.preferred
    assert choice.fallback == "torchcodec>=0.14.0.dev20261112,<=0.15.0.dev20261113"


def test_a_member_that_stopped_following_torch_nightlies_takes_the_commits_pin() -> None:
    builds = {dt.date(2026, 9, 1): Version("2.11.0")}  # torchaudio 2.11.0 and no later nightlies
    choice = tf.choose_nightly(member("torchaudio==2.11.0"), builds, D)
    assert choice.requirement == "torchaudio==2.11.0" and choice.preferred


def test_release_member_prefers_the_commits_pin_where_the_index_has_it() -> None:
    available = [Version("2.9.0+cu128"), Version("2.11.0+cu128")]
    choice = tf.choose_release(member("torchaudio==2.11.0"), available)
    assert (choice.requirement, choice.preferred, choice.fallback) == ("torchaudio==2.11.0", True, "torchaudio")
    choice = tf.choose_release(member("torchaudio==2.12.0"), available)  # not on the index: uv picks what fits
    assert (choice.requirement, choice.preferred, choice.fallback) == ("torchaudio", False, None)
    with pytest.raises(tf.FamilyError, match="the torch index has no torchaudio"):
        tf.choose_release(member("torchaudio"), [])
