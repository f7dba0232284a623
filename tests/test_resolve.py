"""resolve against the test world: real git, a real index on loopback, real uv."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import os
import socket
from pathlib import Path
from typing import Any

import pytest

from vllm_lock import codec
from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.build_identity import build_identity, identity_change
from vllm_lock.errors import (
    CompanionMismatchError,
    ExitCode,
    NoNightlyError,
    OutputError,
    ResolutionError,
    UnknownRefError,
    UnknownTorchVersionError,
    UnreachableError,
    UsageError,
)
from vllm_lock.model import Lock
from vllm_lock.progress import QUIET, Reporter
from vllm_lock_testworld import TestWorld


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def request_for(world: TestWorld, out: Path, cache: Path, **overrides: Any) -> ResolveRequest:
    base = ResolveRequest(
        repo=world.repo_url,
        torch_index=world.torch_nightly_index,
        general_index=world.general_index,
        python="3.11",
        output=out,
        cache=cache,
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def latest(world: TestWorld, cache: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Lock, Path]:
    out = tmp_path_factory.mktemp("locks") / "dev.lock.toml"
    lock, path, changed = resolve(request_for(world, out, cache), QUIET)
    assert changed
    return lock, path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_latest_picks_newest_consistent_nightly(world: TestWorld, latest: tuple[Lock, Path]) -> None:
    lock, _ = latest
    assert lock.torch.requested == "latest"
    assert lock.torch.date == world.latest_consistent_date.isoformat()
    assert world.latest_consistent_date < max(world.nightly_dates)  # the newest one is not consistent
    versions = world.nightly_versions(world.latest_consistent_date)
    assert lock.torch.version == versions["torch"]
    assert {c.name: c.version for c in lock.torch.companions}["torchvision"] == versions["torchvision"]


def test_lock_pins_commit_and_layout(world: TestWorld, latest: tuple[Lock, Path]) -> None:
    lock, _ = latest
    assert lock.vllm.ref == "main"
    assert lock.vllm.commit == world.commits[-1]
    assert lock.layout.stripping_script == "tools/use_existing_torch.py"
    assert lock.layout.stripping_mode == "prefix"
    assert lock.layout.build_requirements == "requirements/build/cuda.txt"
    assert not any(r.startswith(("torch==", "torchvision", "torchaudio")) for r in lock.layout.runtime_set)
    assert {f.path for f in lock.layout.patched_files} >= {"requirements/cuda.txt", "pyproject.toml"}
    assert {s.ref_kind for s in lock.external_sources} == {"tag", "commit"}


def test_a_full_log_is_kept(world: TestWorld, tmp_path: Path) -> None:
    said = io.StringIO()
    resolve(request_for(world, tmp_path / "l.lock.toml", tmp_path / "c", name="logged"), Reporter(log=said, quiet=True))
    (log,) = (tmp_path / "c" / "logs").glob("resolve-logged-*.log")
    text = log.read_text()
    assert said.getvalue().startswith(f"full log: {log}")
    assert any(line.startswith("$ ") and " pip compile " in line for line in text.splitlines())  # uv's command
    assert "cleaning" in text or "removed" in text  # the stripping script's own output
    assert "torch nightly" in text and "external cutlass" in text  # what resolve said


def test_external_tags_are_locked_to_their_commits(world: TestWorld, latest: tuple[Lock, Path]) -> None:
    lock, _ = latest
    sources = {s.name: s for s in lock.external_sources}
    assert set(sources) == {"cutlass", "vllm-flash-attn", "flashmla"}
    cutlass = sources["cutlass"]
    assert (cutlass.ref_kind, cutlass.ref) == ("tag", "v4.2.1")  # an annotated tag: peeled to its commit
    assert cutlass.commit == world.external_commit("cutlass", "v4.2.1") != cutlass.ref
    assert cutlass.repository == world.external_url("cutlass")
    for source in sources.values():
        if source.ref_kind == "commit":
            assert source.commit == source.ref
    assert {s.name: s.override for s in lock.external_sources} == {
        "cutlass": "VLLM_CUTLASS_SRC_DIR", "vllm-flash-attn": "VLLM_FLASH_ATTN_SRC_DIR",
        "flashmla": "FLASH_MLA_SRC_DIR",
    }


def test_every_artifact_is_hashed_and_routed(world: TestWorld, latest: tuple[Lock, Path]) -> None:
    lock, _ = latest
    assert {p.name for p in lock.packages} >= {"torch", "torchvision", "torchaudio", "pytorch-triton",
                                               "typing-extensions", "filelock", "setuptools"}
    for package in lock.packages:
        for wheel in package.wheels:
            assert wheel.size > 0 and len(wheel.sha256) == 64
            if package.name in ("torch", "torchvision", "torchaudio", "pytorch-triton"):
                assert package.source == "torch" and wheel.url.startswith(world.base_url + "/r2/")
                assert wheel.hash_origin == "downloaded"  # the nightly page publishes no hash
                assert wheel.sha256 == world.file_sha256(wheel.filename)
            else:
                assert package.source == "general" and "/pypi/files/" in wheel.url
                assert wheel.hash_origin == "index"


def test_no_dependency_confusion(world: TestWorld, latest: tuple[Lock, Path]) -> None:
    """The torch index also lists typing-extensions (higher version, other bytes)."""
    lock, _ = latest
    assert any("typing" in f for f in world.filenames("nightly"))
    typing_ext = lock.package("typing-extensions")
    assert typing_ext is not None and typing_ext.source == "general" and "/pypi/files/" in typing_ext.wheels[0].url


def test_dependency_confusion_is_refused(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    """A general index that merges in the torch index's files (a proxy aggregating PyPI and
    download.pytorch.org): uv takes typing-extensions 4.99.0 from the torch index through it."""
    out = tmp_path / "dev.lock.toml"
    with pytest.raises(ResolutionError, match=r"^typing-extensions was taken from the torch index, not the general "
                                              r"index: refusing$") as err:
        resolve(request_for(world, out, cache, general_index=world.confused_general_index), QUIET)
    assert err.value.exit_code == ExitCode.RESOLUTION
    assert not out.exists()


def test_same_inputs_give_byte_identical_locks(world: TestWorld, cache: Path, latest: tuple[Lock, Path], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    lock, path = latest
    before = path.read_bytes()
    _, _, changed = resolve(request_for(world, path, cache), QUIET)  # same output: kept
    assert not changed and path.read_bytes() == before
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1790000000")
    first, second = tmp_path / "a.lock.toml", tmp_path / "b.lock.toml"
    resolve(request_for(world, first, cache), QUIET)
    resolve(request_for(world, second, tmp_path / "fresh-cache"), QUIET)
    assert first.read_bytes() == second.read_bytes()


def test_explicit_date_and_lagging_companion(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    date = world.lagging_companion_date
    lock, _, _ = resolve(request_for(world, tmp_path / "l.lock.toml", cache, torch_date=date.isoformat()), QUIET)
    vision = {c.name: c.version for c in lock.torch.companions}["torchvision"]
    assert lock.torch.date == date.isoformat()
    assert (date + dt.timedelta(days=1)).strftime("%Y%m%d") in vision


def test_no_nightly_on_date_names_nearest(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.lock.toml"
    missing = dt.date(2026, 11, 7)
    assert missing not in world.nightly_dates
    with pytest.raises(NoNightlyError, match=r"no torch nightly on 2026-11-07.*nearest: 2026-11-05, 2026-11-09") as err:
        resolve(request_for(world, out, cache, torch_date=missing.isoformat()), QUIET)
    assert err.value.exit_code == ExitCode.RESOLUTION and not out.exists()


def test_companions_that_cannot_match(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.lock.toml"
    with pytest.raises(CompanionMismatchError, match="torchvision"):
        resolve(request_for(world, out, cache, torch_date=world.broken_companion_date.isoformat()), QUIET)
    assert not out.exists()


def test_release_channel_uses_published_hashes(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    lock, _, _ = resolve(
        request_for(world, tmp_path / "r.lock.toml", cache, torch_channel="release", torch_version="2.9.1",
                    torch_index=world.torch_release_index),
        QUIET,
    )
    torch = lock.package("torch")
    assert torch is not None and torch.version == "2.9.1+cu128" and torch.wheels[0].hash_origin == "index"
    assert lock.torch.date is None and lock.torch.requested == "2.9.1"


def test_unknown_torch_version(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownTorchVersionError, match=r"torch 2\.7\.3 does not exist.*2\.9\.1"):
        resolve(request_for(world, tmp_path / "x.lock.toml", cache, torch_channel="release", torch_version="2.7.3",
                            torch_index=world.torch_release_index), QUIET)


@pytest.mark.parametrize("which", ["old", "prefix", "tools"])
def test_each_layout_runs_its_own_stripping_script(world: TestWorld, cache: Path, tmp_path: Path, which: str) -> None:
    commit = world.layout_commits[which]
    lock, _, _ = resolve(request_for(world, tmp_path / "x.lock.toml", cache, ref=commit), QUIET)
    expected = {
        "old": ("use_existing_torch.py", "default", "requirements/build.txt"),
        "prefix": ("use_existing_torch.py", "prefix", "requirements/build/cuda.txt"),
        "tools": ("tools/use_existing_torch.py", "prefix", "requirements/build/cuda.txt"),
    }[which]
    assert (lock.layout.stripping_script, lock.layout.stripping_mode, lock.layout.build_requirements) == expected
    assert lock.vllm.commit == commit and lock.vllm.ref == commit
    names = {r.split(">")[0].split("=")[0].split(";")[0].strip() for r in lock.layout.runtime_set}
    # default mode deletes every line containing "torch", unrelated packages included
    assert ("open-clip-torch-fake" in names) == (which != "old")


def test_tag_ref_resolves_to_tagged_commit(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    lock, _, _ = resolve(request_for(world, tmp_path / "t.lock.toml", cache, ref="v0.32.0"), QUIET)
    assert lock.vllm.commit == world.tags["v0.32.0"] and lock.vllm.ref == "v0.32.0"


def test_aarch64_target(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    lock, _, _ = resolve(
        request_for(world, tmp_path / "a.lock.toml", cache, platform="aarch64-manylinux_2_28",
                    torch_date=world.aarch64_date.isoformat()),
        QUIET,
    )
    torch = lock.package("torch")
    assert torch is not None and torch.wheels[0].filename.endswith("aarch64.whl")
    assert lock.target.machine == "aarch64"


# ---------------------------------------------------------------- bad input: one line, exit code, nothing written


def test_unknown_ref(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.lock.toml"
    with pytest.raises(UnknownRefError, match="ref 'no-such-branch' not found") as err:
        resolve(request_for(world, out, cache, ref="no-such-branch"), QUIET)
    assert err.value.exit_code == ExitCode.RESOLUTION and not out.exists()


def test_unreachable_repository(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.lock.toml"
    url = f"http://127.0.0.1:{free_port()}/vllm.git"
    with pytest.raises(UnreachableError, match="unreachable") as err:
        resolve(request_for(world, out, cache, repo=url), QUIET)
    assert err.value.exit_code == ExitCode.UNREACHABLE and not out.exists()


def test_unreachable_index(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.lock.toml"
    with pytest.raises(UnreachableError, match="unreachable after 3 tries"):
        resolve(request_for(world, out, cache, torch_index=f"http://127.0.0.1:{free_port()}/whl"), QUIET)
    assert not out.exists()


def test_unreachable_general_index(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.lock.toml"
    with pytest.raises(UnreachableError, match="unreachable while resolving") as err:
        resolve(request_for(world, out, tmp_path / "fresh", general_index=f"http://127.0.0.1:{free_port()}/simple"),
                QUIET)
    assert err.value.exit_code == ExitCode.UNREACHABLE and not out.exists()


def test_https_index_needs_the_trusted_ca(world: TestWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    https = dict(torch_index=world.https_url(world.torch_nightly_index),
                 general_index=world.https_url(world.general_index))
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    with pytest.raises(UnreachableError, match="TLS certificate not trusted"):
        resolve(request_for(world, tmp_path / "x.lock.toml", tmp_path / "c1", **https), QUIET)
    monkeypatch.setenv("SSL_CERT_FILE", str(world.ca_cert))
    lock, _, _ = resolve(request_for(world, tmp_path / "y.lock.toml", tmp_path / "c2", **https), QUIET)
    assert lock.package("torch") is not None and lock.torch.index.startswith("https://")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"archs": ("12.0",), "cuda": "cu126"}, "sm_120 needs CUDA >= 12.8"),
        ({"archs": ("10.0",), "cuda": "cu124"}, "sm_100 needs CUDA >= 12.8"),
        ({"archs": ("13.7",)}, "unknown CUDA architecture"),
        ({"python": "three"}, "target.python"),
        ({"platform": "windows"}, "target.platform"),
        ({"torch_date": "yesterday"}, "not YYYY-MM-DD"),
        ({"torch_channel": "release"}, "needs --torch-version"),
    ],
)
def test_bad_arguments_fail_before_any_work(
        world: TestWorld, tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    out = tmp_path / "x.lock.toml"
    world.clear_requests()
    with pytest.raises(UsageError, match=message) as err:
        resolve(request_for(world, out, tmp_path / "c", **overrides), QUIET)
    assert err.value.exit_code == ExitCode.USAGE and "\n" not in str(err.value)
    assert not out.exists() and world.requests == []


def test_unwritable_output(world: TestWorld, tmp_path: Path) -> None:
    locked_dir = tmp_path / "ro"
    locked_dir.mkdir()
    os.chmod(locked_dir, 0o500)
    try:
        for out, message in ((tmp_path / "missing" / "x.lock.toml", "does not exist"), (tmp_path, "is a directory")):
            with pytest.raises(OutputError, match=message):
                resolve(request_for(world, out, tmp_path / "c"), QUIET)
        if os.geteuid() != 0:  # root may write anywhere
            with pytest.raises(OutputError, match="permission denied"):
                resolve(request_for(world, locked_dir / "x.lock.toml", tmp_path / "c"), QUIET)
    finally:
        os.chmod(locked_dir, 0o700)


def test_external_sources_moved_tag_and_unreachable_repository(tmp_path: Path) -> None:
    """A tag that moves upstream gives another commit (and another build) in a new resolve; an
    external repository that cannot be reached fails the resolve with nothing written."""
    with TestWorld.create(tmp_path / "world") as own:
        first, _, _ = resolve(request_for(own, tmp_path / "a.lock.toml", tmp_path / "c"), QUIET)
        moved = own.move_external_tag("cutlass", "v4.2.1")
        second, _, _ = resolve(request_for(own, tmp_path / "b.lock.toml", tmp_path / "c"), QUIET)
        assert next(s.commit for s in second.external_sources if s.name == "cutlass") == moved
        assert first.vllm.commit == second.vllm.commit
        change = identity_change(first, second)
        assert change.changed and any("cutlass v4.2.1 moved" in r for r in change.reasons)

        cutlass = Path(own.external_url("cutlass").removeprefix("file://"))
        cutlass.rename(cutlass.with_name("cutlass-gone"))
        out = tmp_path / "x.lock.toml"
        with pytest.raises(UnreachableError, match=r"external source cutlass \(CMakeLists.txt\)") as err:
            resolve(request_for(own, out, tmp_path / "c"), QUIET)
        assert err.value.exit_code == ExitCode.UNREACHABLE and not out.exists()
        # read beside uv's compile, the source's error still comes before the compile's own
        with pytest.raises(UnreachableError, match=r"^external source cutlass \(CMakeLists.txt\)"):
            resolve(request_for(own, out, tmp_path / "fresh",
                                general_index=f"http://127.0.0.1:{free_port()}/simple"), QUIET)
        assert not out.exists()


def _resolve_said(world: TestWorld, out: Path, cache: Path, **overrides: object) -> tuple[Lock, str]:
    said = io.StringIO()
    lock, _, _ = resolve(request_for(world, out, cache, **overrides), Reporter(log=said, quiet=True))
    return lock, said.getvalue()


def test_unhashed_nightlies_are_downloaded_again_only_when_their_etag_changes(tmp_path: Path) -> None:
    with TestWorld.create(tmp_path / "world") as own:
        first, said = _resolve_said(own, tmp_path / "a.lock.toml", tmp_path / "c")
        torch_package = first.package("torch")
        assert torch_package is not None
        (torch,) = torch_package.wheels
        assert f"downloading {torch.filename}" in said
        own.clear_requests()
        again, said = _resolve_said(own, tmp_path / "b.lock.toml", tmp_path / "c")
        assert again.packages == first.packages
        assert f"{torch.filename}: same ETag and size as when hashed" in said and "downloading" not in said
        assert ("HEAD", torch.url.removeprefix(own.base_url)) in own.requests
        # rebuilt under the same name: the server's ETag changes, so the file is fetched and hashed again
        own.swap_nightly_file(torch.filename)
        rebuilt, said = _resolve_said(own, tmp_path / "c.lock.toml", tmp_path / "c")
        swapped_package = rebuilt.package("torch")
        assert f"downloading {torch.filename}" in said
        assert swapped_package is not None
        (swapped,) = swapped_package.wheels
        assert swapped.sha256 == own.file_sha256(torch.filename) != torch.sha256
        # --rehash: downloaded again even though nothing changed since
        _, said = _resolve_said(own, tmp_path / "d.lock.toml", tmp_path / "c", rehash=True)
        assert f"downloading {torch.filename}" in said


def test_swapped_nightly_changes_the_hash(tmp_path: Path) -> None:
    """A nightly rebuilt under the same name: only the hash tells, and the lock records it."""
    with TestWorld.create(tmp_path / "world") as own:
        first, _, _ = resolve(request_for(own, tmp_path / "a.lock.toml", tmp_path / "c"), QUIET)
        torch_package = first.package("torch")
        assert torch_package is not None
        (torch,) = torch_package.wheels
        own.swap_nightly_file(torch.filename)
        second, _, _ = resolve(request_for(own, tmp_path / "b.lock.toml", tmp_path / "c2"), QUIET)
        swapped_package = second.package("torch")
        assert swapped_package is not None
        (swapped,) = swapped_package.wheels
        assert swapped.filename == torch.filename and swapped.sha256 != torch.sha256
        assert build_identity(first) != build_identity(second)


# ---------------------------------------------------------------- first run, target platform, CMake for the target


def test_first_resolve_creates_locks_dir(world: TestWorld, cache: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh directory without locks/: the default output's folder is created, not refused."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VLLM_LOCK_LOCKS_DIR", raising=False)
    assert not (tmp_path / "locks").exists()
    request = dataclasses.replace(request_for(world, tmp_path / "unused", cache), output=None, name="first")
    lock, path, changed = resolve(request, QUIET)
    assert path == tmp_path / "locks" / "first.lock.toml" and path.is_file() and changed
    assert lock.target.platform == "x86_64-manylinux_2_39"  # the default: Ubuntu 24.04's glibc


def test_empty_target_locks_no_external_sources(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    lock, _, _ = resolve(request_for(world, tmp_path / "e.lock.toml", cache, target_device="empty"), QUIET)
    assert lock.external_sources == () and lock.build.target_device == "empty"


def _branch(world: TestWorld, name: str, edits: dict[str, str]) -> None:
    """A branch off main with text appended to some files (main is left as it was)."""
    from vllm_lock_testworld.repo import git

    git(world.repo_path, "checkout", "-q", "-b", name, "main")
    for path, text in edits.items():
        with (world.repo_path / path).open("a", encoding="utf-8") as handle:
            handle.write(text)
    git(world.repo_path, "commit", "-q", "-am", f"test: {name}")
    git(world.repo_path, "checkout", "-q", "main")


EXTRA_SHA = "cd" * 20


def test_target_specific_failures_and_undecidable_conditions(tmp_path: Path) -> None:
    with TestWorld.create(tmp_path / "world") as own:
        _branch(own, "native", {"requirements/common.txt": "vllm-fake-native>=1.0\n"})
        _branch(own, "undecided", {"CMakeLists.txt": (
            "if(CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 13)\n"
            f"  FetchContent_Declare(extra GIT_REPOSITORY https://example.invalid/extra.git GIT_TAG {EXTRA_SHA})\n"
            "endif()\n")})
        _branch(own, "clash", {"CMakeLists.txt": (
            "if(CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 13)\n"
            f"  FetchContent_Declare(extra GIT_REPOSITORY https://example.invalid/extra.git GIT_TAG {EXTRA_SHA})\n"
            "else()\n"
            "  FetchContent_Declare(extra GIT_REPOSITORY https://example.invalid/extra.git GIT_TAG " + "ef" * 20 + ")\n"
            "endif()\n")})
        cmakelists_lines = len((own.repo_path / "CMakeLists.txt").read_text().splitlines())

        # a package without a wheel for the target: which one, and which platforms it ships
        out = tmp_path / "n.lock.toml"
        with pytest.raises(ResolutionError) as err:
            resolve(request_for(own, out, tmp_path / "c", ref="native", platform="x86_64-manylinux_2_28"), QUIET)
        assert str(err.value) == ("vllm-fake-native v1.0.0 ships no wheel for x86_64-manylinux_2_28; its wheels are "
                                  "for these platforms: manylinux_2_17_aarch64, manylinux_2_31_x86_64")
        assert err.value.exit_code == ExitCode.RESOLUTION and not out.exists()
        lock, _, _ = resolve(request_for(own, out, tmp_path / "c", ref="native"), QUIET)  # the default: 2_39
        native = lock.package("vllm-fake-native")
        assert native is not None and native.wheels[0].filename.endswith("manylinux_2_31_x86_64.whl")

        # a condition that cannot be evaluated: both branches kept, and resolve says so
        lock, said = _resolve_said(own, tmp_path / "u.lock.toml", tmp_path / "c", ref="undecided")
        assert {s.name: s.commit for s in lock.external_sources}["extra"] == EXTRA_SHA
        assert (f"cmake: cannot evaluate if(CMAKE_CXX_COMPILER_VERSION VERSION_GREATER_EQUAL 13) "
                f"(CMakeLists.txt:{cmakelists_lines + 1}) for this target: both branches kept") in said

        # two pins for one override variable: a resolve error naming both places
        out = tmp_path / "x.lock.toml"
        with pytest.raises(ResolutionError, match=(
                rf"CMakeLists.txt:{cmakelists_lines + 4}: extra .* and CMakeLists.txt:{cmakelists_lines + 2}: extra "
                r".* are both pinned for FETCHCONTENT_SOURCE_DIR_EXTRA")) as err:
            resolve(request_for(own, out, tmp_path / "c", ref="clash"), QUIET)
        assert err.value.exit_code == ExitCode.RESOLUTION and not out.exists()


# ---------------------------------------------------------------- the torch family from the commit


def derived_commit(world: TestWorld, tmp_path: Path, cuda_txt: str) -> tuple[str, str]:
    """A clone of the test world's vLLM with one more commit whose requirements/cuda.txt is
    `cuda_txt`: (repository URL, commit)."""
    from vllm_lock_testworld.repo import git

    clone = tmp_path / "vllm"
    git(tmp_path, "clone", "-q", str(world.repo_path), str(clone))
    (clone / "requirements" / "cuda.txt").write_text(cuda_txt)
    git(clone, "commit", "-qam", "[Deps] torch family changes")
    return "file://" + str(clone), git(clone, "rev-parse", "HEAD")


def family_of(lock: Lock) -> dict[str, str]:
    return {c.name: c.version for c in lock.torch.companions}


def test_release_family_is_the_commits_own(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    # no torchvision at this commit; torchaudio 2.9.0 pins torch 2.9.0 (does not fit 2.9.1);
    # torchcodec 0.8.0 fits torch 2.9.1 (so does the newer 0.9.0, which uv alone would take)
    repo, commit = derived_commit(world, tmp_path,
                                  "-r common.txt\ntorch==2.9.1\ntorchaudio==2.9.0\ntorchcodec==0.8.0\n")
    log = io.StringIO()
    lock, _, _ = resolve(
        request_for(world, tmp_path / "r.lock.toml", cache, repo=repo, ref=commit, torch_channel="release",
                    torch_version="2.9.1", torch_index=world.torch_release_index),
        Reporter(log=log, quiet=True),
    )
    assert family_of(lock) == {"torchaudio": "2.9.1+cu128", "torchcodec": "0.8.0+cu128", "triton": "3.5.1"}
    assert lock.package("torchvision") is None
    codec = lock.package("torchcodec")
    assert codec is not None and codec.source == "torch"
    assert all("/r2/whl/cu128/torchcodec-0.8.0" in w.url for w in codec.wheels)
    assert ("torchaudio==2.9.0 (the commit's pin) does not fit torch==2.9.1+cu128: asking for torchaudio"
            in log.getvalue())


def test_a_declared_torch_index_package_is_a_member(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    # `torchcodec >= 0.8` survives --prefix stripping (like vLLM 0.33.0's `torchcodec >= 0.14`)
    repo, commit = derived_commit(world, tmp_path, "-r common.txt\ntorch==2.9.1\ntorchvision==0.24.1\n"
                                                   "torchcodec >= 0.8\n")
    lock, _, _ = resolve(
        request_for(world, tmp_path / "d.lock.toml", cache, repo=repo, ref=commit, torch_channel="release",
                    torch_version="2.9.1", torch_index=world.torch_release_index),
        QUIET,
    )
    assert family_of(lock) == {"torchcodec": "0.9.0+cu128", "torchvision": "0.24.1+cu128", "triton": "3.5.1"}
    assert "torchcodec>=0.8" in lock.layout.runtime_set  # what the build declares
    codec = lock.package("torchcodec")
    assert codec is not None and codec.source == "torch"


def test_a_member_the_index_lacks_and_without(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    from vllm_lock.actions import update

    # torchcodec as 0.33.0 names it: kept by --prefix, so the declared set still names it
    repo, commit = derived_commit(world, tmp_path, "-r common.txt\ntorch==2.9.1\ntorchvision==0.24.1\n"
                                                   "torchaudio==2.9.1\ntorchcodec >= 0.8\n")
    out = tmp_path / "n.lock.toml"
    with pytest.raises(ResolutionError, match=r"the torch index has no torchcodec .*`--without torchcodec`") as err:
        resolve(request_for(world, out, cache, repo=repo, ref=commit), QUIET)  # the nightly index has none
    assert err.value.exit_code == ExitCode.RESOLUTION and not out.exists()
    with pytest.raises(UsageError, match="--without filelock: not a torch-family member"):
        resolve(request_for(world, out, cache, repo=repo, ref=commit, without=("filelock",)), QUIET)
    lock, _, _ = resolve(request_for(world, out, cache, repo=repo, ref=commit, without=("torchcodec",)), QUIET)
    assert set(family_of(lock)) == {"torchaudio", "torchvision", "pytorch-triton"}
    assert lock.package("torchcodec") is None
    assert lock.torch.left_out == ("torchcodec",)  # the choice, in the lock
    assert codec.loads(out.read_text()).torch.left_out == ("torchcodec",)
    assert "torchcodec>=0.8" in lock.layout.runtime_set  # still what the build declares
    again = update.request_for(lock, output=out, cache=cache, move_vllm=False, move_torch=False)
    assert again.without == ("torchcodec",)


def test_empty_target_locks_common_requirements_and_no_family(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    lock, _, _ = resolve(request_for(world, tmp_path / "e.lock.toml", cache, target_device="empty"), QUIET)
    assert lock.layout.runtime_requirements == "requirements/common.txt"
    assert set(family_of(lock)) == {"pytorch-triton"}  # common.txt names no torch-family member
    assert lock.package("torchvision") is None and lock.package("torch") is not None


def test_cpu_target_reads_cpu_txt_through_setup_pys_chain(world: TestWorld, cache: Path, tmp_path: Path) -> None:
    log = io.StringIO()
    lock, _, _ = resolve(request_for(world, tmp_path / "c.lock.toml", cache, target_device="cpu"),
                         Reporter(log=log, quiet=True))
    assert lock.layout.runtime_requirements == "requirements/cpu.txt"
    assert 'torchaudio; platform_machine != "s390x"' in lock.layout.runtime_set  # kept by --prefix: declared
    assert set(family_of(lock)) == {"torchaudio", "torchvision", "pytorch-triton"}
    assert "runtime requirements for cpu (setup.py): requirements/cpu.txt" in log.getvalue()
    assert "torch family: torchvision (declared" in log.getvalue()


def test_cli_member_the_index_lacks_is_one_error_line_and_without_is_accepted(world: TestWorld, tmp_path: Path) -> None:
    import subprocess
    import sys

    repo, commit = derived_commit(world, tmp_path,
                                  "-r common.txt\ntorch==2.9.1\ntorchaudio==2.9.1\ntorchcodec==0.8.0\n")
    out = tmp_path / "cli.lock.toml"
    base = [sys.executable, "-m", "vllm_lock.cli", "resolve", "--repo", repo, "--ref", commit, "--torch-index",
            world.torch_nightly_index, "--index", world.general_index, "--python", "3.11", "-o", str(out)]
    env = {**os.environ, "VLLM_LOCK_CACHE": str(tmp_path / "cache")}
    failed = subprocess.run(base, capture_output=True, text=True, env=env, timeout=300)
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error:")]
    assert failed.returncode == ExitCode.RESOLUTION and len(errors) == 1 and "Traceback" not in failed.stderr
    assert "torchcodec" in errors[0] and "--without torchcodec" in errors[0] and not out.exists()
    done = subprocess.run([*base, "--without", "torchcodec"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "torch family: torchcodec (stripped: left out (--without))" in done.stderr
