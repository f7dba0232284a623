"""Pure tests of diffing and render_diff, with hand-built locks (no I/O)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from sample_lock import C1, C2, make_lock, package

from vllm_lock import diffing, render_diff
from vllm_lock.diffing import CommitHistory, diff_locks
from vllm_lock.model import ExternalSource, Lock

# ---------------------------------------------------------------- equality and notes


def test_identical_locks_are_equal() -> None:
    d = diff_locks(make_lock(), make_lock())
    assert d.equal
    assert not d.identity.changed
    assert d.packages == () and d.build == () and d.notes == ()


def test_name_phase_and_provenance_are_notes_not_differences() -> None:
    a = make_lock()
    b = dataclasses.replace(
        make_lock(name="stable"),
        phase="stable",
        provenance=dataclasses.replace(a.provenance, resolved_at="2027-01-01T00:00:00Z"),
    )
    d = diff_locks(a, b)
    assert d.equal
    assert d.followed == ()
    assert "phase: development -> stable" in d.notes


@pytest.mark.parametrize(("changed", "key"), [
    ({"ref": "release-evil"}, "inputs.vllm.original.ref"),
    ({"requested": "2026-11-05"}, "inputs.torch.original.requested"),
])
def test_what_update_follows_changed_is_a_difference_not_a_note(changed: dict[str, Any], key: str) -> None:
    """A PR that repoints the followed branch (or pins `latest` to a date) changes every future
    `update`: not "equal", although the build identity stays the same."""
    a, b = make_lock(), make_lock(**changed)
    d = diff_locks(a, b)
    assert not d.equal
    assert [c.key for c in d.followed] == [key]
    assert not d.identity.changed
    assert d.other == () and d.sources == ()
    shown = render_diff.text(d)
    assert "every later `update` follows the new value" in shown and key in shown
    assert key in render_diff.markdown(d)
    assert not any(key in n for n in d.notes)


# ---------------------------------------------------------------- what moved


def test_vllm_and_torch_moves_need_a_rebuild_and_say_why() -> None:
    a = make_lock()
    b = make_lock(commit=C2, commit_date="2026-11-22T09:00:00Z", torch_date="2026-11-12")
    d = diff_locks(a, b, history=CommitHistory(reachable=True, ahead=3, subjects=("2222222 fix", "1111111 feat")))
    assert not d.equal
    assert d.vllm.moved and d.vllm.short == (C1[:9], C2[:9])
    assert d.vllm.compare_url == f"https://github.com/vllm-project/vllm/compare/{C1}...{C2}"
    assert d.torch.days_apart == 7
    assert {c.name for c in d.torch.companions} == {"torchvision", "torchaudio"}
    assert {p.name: p.kind for p in d.packages} == {"torch": "changed", "torchaudio": "changed",
                                                    "torchvision": "changed"}
    assert d.identity.changed
    reasons = " | ".join(d.identity.reasons)
    assert f"vLLM commit {C1[:9]} -> {C2[:9]}" in reasons
    assert "torch 2.10.0.dev20261105+cu128 -> 2.10.0.dev20261112+cu128" in reasons
    assert d.headline() == f"vLLM {C1[:9]} -> {C2[:9]}, torch 2026-11-05 -> 2026-11-12, 3 package changes"


def test_package_added_removed_changed_rebuilt() -> None:
    a = make_lock(extra=(package("filelock", "3.20.0"), package("packaging", "25.0"), package("wheel", "0.45.1")))
    b = make_lock(extra=(package("filelock", "3.20.1"), package("packaging", "25.0", seed="other bytes"),
                         package("zipp", "3.0")))
    d = diff_locks(a, b)
    kinds = {(p.name, p.kind, p.old, p.new) for p in d.packages}
    assert kinds == {
        ("filelock", "changed", "3.20.0", "3.20.1"),
        ("packaging", "rebuilt", "25.0", "25.0"),
        ("wheel", "removed", "0.45.1", None),
        ("zipp", "added", None, "3.0"),
    }
    assert d.identity.changed
    assert any("other locked packages (1 changed, 1 added, 1 removed, 1 rebuilt)" in r for r in d.identity.reasons)


def test_build_recipe_change_names_the_setting() -> None:
    d = diff_locks(make_lock(), make_lock(archs=("10.0", "12.0")))
    assert [c.key for c in d.build] == ["build.cuda-archs"]
    assert d.build[0].old == ["12.0"] and d.build[0].new == ["10.0", "12.0"]
    assert d.identity.reasons == ("build recipe (cuda-archs)",)


def test_moved_external_tag_needs_a_rebuild_and_says_which() -> None:
    cutlass = ExternalSource(name="cutlass", repository="https://github.com/nvidia/cutlass.git", ref="v4.2.1",
                             ref_kind="tag", commit="c" * 40, override="VLLM_CUTLASS_SRC_DIR",
                             declared_in="CMakeLists.txt")
    moved = dataclasses.replace(cutlass, commit="d" * 40)
    d = diff_locks(make_lock(external_sources=(cutlass,)), make_lock(external_sources=(moved,)))
    assert [c.key for c in d.external_sources] == ["external-sources.cutlass.commit"]
    assert d.identity.reasons == (f"external sources (cutlass v4.2.1 moved {'c' * 9} -> {'d' * 9})",)
    bumped = dataclasses.replace(cutlass, ref="v4.3.0", commit="e" * 40)
    d = diff_locks(make_lock(external_sources=(cutlass,)), make_lock(external_sources=(bumped,)))
    assert d.identity.reasons == (f"external sources (cutlass v4.2.1 ({'c' * 9}) -> v4.3.0 ({'e' * 9}))",)


def test_mirror_change_is_a_difference_but_no_rebuild() -> None:
    a = make_lock()
    mirrored = tuple(
        dataclasses.replace(p, wheels=tuple(
            dataclasses.replace(w, url=w.url.replace("https://files.pythonhosted.org", "https://mirror.example"))
            for w in p.wheels))
        for p in a.packages
    )
    b = dataclasses.replace(a, general_index="https://mirror.example/simple", packages=mirrored)
    d = diff_locks(a, b)
    assert not d.equal
    assert not d.identity.changed


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://github.com/vllm-project/vllm.git", "vllm-project/vllm"),
        ("https://github.com/vllm-project/vllm", "vllm-project/vllm"),
        ("git@github.com:me/vllm.git", "me/vllm"),
        ("ssh://git@github.com/me/vllm.git", "me/vllm"),
        ("https://gitlab.com/me/vllm.git", None),
        ("file:///tmp/vllm", None),
    ],
)
def test_github_slug(url: str, slug: str | None) -> None:
    assert diffing.github_slug(url) == slug


def test_no_compare_url_off_github() -> None:
    d = diff_locks(make_lock(url="file:///srv/vllm"), make_lock(url="file:///srv/vllm", commit=C2))
    assert d.vllm.compare_url is None


@pytest.mark.parametrize(("a", "b", "days"), [("2026-11-05", "2026-11-12", 7), ("2026-11-12", "2026-11-05", -7),
                                              (None, "2026-11-05", None)])
def test_days_apart(a: str | None, b: str | None, days: int | None) -> None:
    assert diffing.days_apart(a, b) == days


# ---------------------------------------------------------------- rendering


def _moved() -> diffing.LockDiff:
    return diff_locks(
        make_lock(),
        make_lock(name="stable", commit=C2, commit_date="2026-11-22T09:00:00Z", torch_date="2026-11-12"),
        history=CommitHistory(reachable=True, ahead=2, subjects=("2222222 [Misc] two", "1111111 [Misc] one")),
    )


def test_text_render() -> None:
    out = render_diff.text(_moved())
    assert out.splitlines()[0] == "dev (development) -> stable (development): different"
    assert f"vLLM      {C1[:9]} (2026-11-20) -> {C2[:9]} (2026-11-22)" in out
    assert "2 new commits from dev to stable" in out
    assert "2222222 [Misc] two" in out
    assert "compare: https://github.com/vllm-project/vllm/compare/" in out
    assert "(nightly 2026-11-05) -> 2.10.0.dev20261112+cu128 (nightly 2026-11-12), 7 days newer" in out
    assert "build identity changed (" in out and "vLLM must be rebuilt" in out


def test_text_render_unreachable_history() -> None:
    d = diff_locks(make_lock(), make_lock(commit=C2), history=CommitHistory(reachable=False, note="offline"))
    assert "history: repository not reachable (offline); commit counts unknown" in render_diff.text(d)


def test_text_render_equal() -> None:
    out = render_diff.text(diff_locks(make_lock(), make_lock()))
    assert ": equal" in out.splitlines()[0]
    assert "build identity unchanged" in out


def test_markdown_render_reads_as_a_pr_comment() -> None:
    out = render_diff.markdown(_moved())
    assert out.startswith("### vllm-lock diff: `dev` → `stable`")
    assert "**Rebuild needed**" in out
    assert f"[`{C2[:9]}`](https://github.com/vllm-project/vllm/commit/{C2})" in out
    assert "| torch | changed | `2.10.0.dev20261105+cu128` | `2.10.0.dev20261112+cu128` |" in out
    assert "<details><summary>commits</summary>" in out


def test_json_render_round_trips() -> None:
    data = json.loads(render_diff.render(_moved(), "json"))
    assert data["equal"] is False
    assert data["identity"]["changed"] is True
    assert data["vllm"]["history"]["ahead"] == 2
    assert data["torch"]["days_apart"] == 7
    assert {p["name"] for p in data["packages"]} == {"torch", "torchaudio", "torchvision"}


def test_unknown_format() -> None:
    with pytest.raises(ValueError):
        render_diff.render(_moved(), "html")


# ---------------------------------------------------------------- nothing hides (issue 12, item 5)


def _with_package(lock: Lock, **changes: Any) -> Lock:
    """The first package's (only) wheel changed."""
    package = lock.packages[0]
    first = dataclasses.replace(package, wheels=(dataclasses.replace(package.wheels[0], **changes),))
    return dataclasses.replace(lock, packages=(first, *lock.packages[1:]))


def _wheel_key(lock: Lock, leaf: str) -> str:
    package = lock.packages[0]
    return f"packages[{package.name}].wheels[{package.wheels[0].filename}].{leaf}"


def test_a_package_url_changed_alone_makes_the_locks_different() -> None:
    a = make_lock()
    b = _with_package(a, url=a.packages[0].wheels[0].url.replace("/00/11/", "/66/77/"))
    d = diff_locks(a, b)
    assert not d.equal
    key = _wheel_key(a, "url")
    assert [c.key for c in d.sources] == [key]
    assert [c.key for c in d.other] == [key]
    assert f"! {key}: " in render_diff.text(d)
    assert "source location" in d.headline()


def test_a_new_version_on_the_same_host_is_not_a_source_change_but_still_listed() -> None:
    a = make_lock()
    b = make_lock(extra=(package("filelock", "3.20.1"), package("packaging", "25.0")))
    d = diff_locks(a, b)
    assert d.sources == ()
    old, new = "filelock-3.20.0-py3-none-any.whl", "filelock-3.20.1-py3-none-any.whl"
    assert {c.key for c in d.fields} == {
        "packages[filelock].version",
        *(f"packages[filelock].wheels[{old}].{leaf}" for leaf in ("filename", "url", "size", "sha256", "hash-origin")),
        *(f"packages[filelock].wheels[{new}].{leaf}" for leaf in ("filename", "url", "size", "sha256", "hash-origin")),
    }  # every leaf is in the diff's data (json `fields`) ...
    assert d.other == ()  # ... and the packages section shows the version change (no per-wheel noise in text)
    assert [(c.name, c.kind) for c in d.packages] == [("filelock", "changed")]


def test_every_differing_leaf_but_the_notes_is_a_field() -> None:
    a = make_lock()
    b = _with_package(a, size=7, hash_origin="downloaded")
    d = diff_locks(a, b)
    assert not d.equal
    assert {c.key for c in d.fields} == {_wheel_key(a, "size"), _wheel_key(a, "hash-origin")}
    assert "fields" in render_diff.text(d) and "#### Other changed fields" in render_diff.markdown(d)


# ---------------------------------------------------------------- several wheels per package (issue 9, item 1)

TAGS = ("cp312-cp312-manylinux_2_17_x86_64", "cp312-cp312-manylinux_2_28_x86_64")


def _multi(tags: tuple[str, ...] = TAGS, seed: str = "") -> Lock:
    return make_lock(extra=(package("filelock", "3.20.0"), package("multi-fake", "1.0.0", tags=tags, seed=seed)))


def test_a_wheel_added_removed_or_rehashed_is_a_rebuild_named_by_file() -> None:
    a = _multi()
    for b, words in (
        (_multi(tags=(*TAGS, "cp312-abi3-manylinux_2_28_x86_64")),
         ["+ multi_fake-1.0.0-cp312-abi3-manylinux_2_28_x86_64.whl"]),
        (_multi(tags=TAGS[1:]), ["- multi_fake-1.0.0-cp312-cp312-manylinux_2_17_x86_64.whl"]),
    ):
        d = diff_locks(a, b)
        assert not d.equal and d.identity.changed
        (change,) = d.packages
        assert (change.name, change.kind, change.wheels) == ("multi-fake", "rebuilt", tuple(words))
        assert d.identity.reasons == ("other locked packages (1 rebuilt)",)
        assert words[0] in render_diff.text(d) and f"<br>`{words[0]}`" in render_diff.markdown(d)
    # one wheel of two with other bytes: the first one (the only one a first-wheel diff looked at) is unchanged
    multi = a.package("multi-fake")
    assert multi is not None
    second = dataclasses.replace(multi.wheels[1], sha256="7" * 64)
    b = _multi()
    b = dataclasses.replace(b, packages=tuple(
        dataclasses.replace(p, wheels=(p.wheels[0], second)) if p.name == "multi-fake" else p for p in b.packages))
    d = diff_locks(a, b)
    (change,) = d.packages
    assert change.kind == "rebuilt" and change.wheels == (
        f"~ {second.filename} sha256 {multi.wheels[1].sha256[:12]} -> {'7' * 12}",)
    assert d.identity.changed
    assert render_diff.as_data(d)["packages"][0]["wheels"] == list(change.wheels)


def test_a_wheel_moved_to_another_host_without_a_version_change_is_a_source_change() -> None:
    a = _multi()
    moved = tuple(
        dataclasses.replace(p, wheels=(p.wheels[0], dataclasses.replace(
            p.wheels[1], url=p.wheels[1].url.replace("https://files.pythonhosted.org", "https://pypi.org"))))
        if p.name == "multi-fake" else p for p in a.packages)
    d = diff_locks(a, dataclasses.replace(a, packages=moved))
    multi = a.package("multi-fake")
    assert multi is not None
    assert [c.key for c in d.sources] == [f"packages[multi-fake].wheels[{multi.wheels[1].filename}].url"]


def test_provenance_changes_are_listed_as_notes() -> None:
    a = make_lock()
    b = dataclasses.replace(a, provenance=dataclasses.replace(a.provenance, uv_version="0.9.1"))
    d = diff_locks(a, b)
    assert d.equal
    assert "provenance.uv-version: 0.9.0 -> 0.9.1" in d.notes


def test_a_left_out_torch_member_alone_is_a_difference_shown_in_every_format() -> None:
    a = make_lock()
    b = dataclasses.replace(a, torch=dataclasses.replace(a.torch, left_out=("torchcodec",)))
    d = diff_locks(a, b)
    assert not d.equal
    assert [c.key for c in d.other] == [c.key for c in d.fields] and d.other
    assert all(c.key.startswith("inputs.torch.locked.left-out") for c in d.other)
    for shown in (render_diff.text(d), render_diff.markdown(d)):
        assert "inputs.torch.locked.left-out" in shown and "torchcodec" in shown


def test_the_settings_list_is_one_and_every_rendering_shows_it() -> None:
    """LockDiff.settings: target, build, layout and external sources, then the general index,
    torch channel, CUDA, index and vLLM URL; text and markdown list exactly these."""
    a = make_lock()
    b = dataclasses.replace(
        make_lock(url="https://github.com/example/vllm.git", archs=("9.0", "12.0")),
        torch=dataclasses.replace(a.torch, index="https://download.pytorch.org/whl/nightly/cu129"),
    )
    d = diff_locks(a, b)
    assert [(c.key, c.old, c.new) for c in d.settings] == [
        ("build.cuda-archs", ["12.0"], ["9.0", "12.0"]),
        ("torch.index", a.torch.index, "https://download.pytorch.org/whl/nightly/cu129"),
        ("vllm.url", a.vllm.url, "https://github.com/example/vllm.git"),
    ]
    text = render_diff.text(d).splitlines()
    at = text.index("settings")
    assert text[at + 1:at + 4] == [f"          {c.key}: {render_diff._value(c.old)} -> {render_diff._value(c.new)}"
                                   for c in d.settings]
    assert text[at + 4].startswith(("fields", "build identity"))
    markdown = render_diff.markdown(d)
    assert all(f"| `{c.key}` |" in markdown for c in d.settings)
    assert diff_locks(a, a).settings == () and "settings  build recipe, target and layout unchanged" in (
        render_diff.text(diff_locks(a, a)))
