"""The built vLLM's Requires-Dist against installed versions (the pure check verify and install's
verify step run): markers for the lock's target, extras followed, left-out members as notes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from vllm_lock import torch_family
from vllm_lock.model import Target
from vllm_lock.requirements import RequiresDistCheck, check_requires_dist

X86_64 = torch_family.target_environment(Target(python="3.12", platform="x86_64-manylinux_2_39"))
AARCH64 = torch_family.target_environment(Target(python="3.12", platform="aarch64-manylinux_2_39"))


def _check(declared: Iterable[str], installed: Mapping[str, str], metadata: Mapping[str, tuple[str, ...]] | None = None,
           environment: Mapping[str, str] = X86_64, left_out: Iterable[str] = ()) -> RequiresDistCheck:
    return check_requires_dist(declared, installed, lambda name: (metadata or {}).get(name, ()),
                               environment=environment, left_out=left_out)


def test_met_requirements_are_counted_and_nothing_is_unmet() -> None:
    check = _check(["filelock>=3.16.1", "Typing_Extensions>=4.10"],
                   {"filelock": "3.20.0", "typing-extensions": "4.15.0"})
    assert check.checked == 2 and check.unmet == () and check.expected == ()


def test_an_unmet_version_names_the_requirement_and_what_is_installed() -> None:
    check = _check(["filelock>=3.16.1", "vllm-fake-dep-a>=9.0"], {"filelock": "3.20.0", "vllm-fake-dep-a": "1.1"})
    assert [u.describe() for u in check.unmet] == ["vllm requires vllm-fake-dep-a>=9.0: vllm-fake-dep-a 1.1 is "
                                                   "installed"]


def test_a_missing_distribution_is_unmet() -> None:
    check = _check(["filelock>=3.16.1"], {})
    assert [u.describe() for u in check.unmet] == ["vllm requires filelock>=3.16.1: not installed"]


def test_markers_are_evaluated_for_the_lock_target_not_the_host() -> None:
    declared = ['xgrammar==0.1.18; platform_machine == "x86_64"', 'scons; platform_machine == "aarch64"',
                'six>=1.16.0; python_version > "3.11"']
    assert [u.name for u in _check(declared, {}).unmet] == ["xgrammar", "six"]
    assert [u.name for u in _check(declared, {}, environment=AARCH64).unmet] == ["scons", "six"]


def test_vllm_extras_are_not_required() -> None:
    check = _check(['tensorizer>=2.9; extra == "tensorizer"', "filelock"], {"filelock": "3.20.0"})
    assert check.unmet == () and check.checked == 1


def test_a_requirement_with_extras_requires_what_the_extra_adds() -> None:
    metadata = {"fastapi": ("starlette>=0.40", 'uvicorn[standard]>=0.12; extra == "standard"',
                            'email-validator; extra == "all"'),
                "uvicorn": ('httptools>=0.6; extra == "standard"', "click>=7")}
    installed = {"fastapi": "0.115.0", "starlette": "0.41.0", "uvicorn": "0.30.0"}
    check = _check(["fastapi[standard]>=0.115.0"], installed, metadata)
    # uvicorn comes in through fastapi's extra, httptools through uvicorn's; email-validator is
    # another extra's; starlette and click are unconditional (the lock's package check has them)
    assert [u.describe() for u in check.unmet] == ["uvicorn[standard] requires httptools>=0.6: not installed"]
    assert check.checked == 3


def test_prereleases_satisfy_a_specifier() -> None:
    assert _check(["torchvision>=0.25"], {"torchvision": "0.26.0.dev20261120+cu128"}).unmet == ()


def test_left_out_members_are_expected_not_failures() -> None:
    check = _check(['torchaudio; platform_machine != "s390x"', "torchcodec>=0.14"], {},
                   left_out=["TorchAudio"])
    assert [u.name for u in check.expected] == ["torchaudio"]
    assert [u.name for u in check.unmet] == ["torchcodec"]


def test_an_unreadable_requirement_fails() -> None:
    check = _check(["filelock >>> 3"], {"filelock": "3.20.0"})
    assert [u.describe() for u in check.unmet] == ["vllm declares 'filelock >>> 3', not a valid requirement"]


def test_five_thousand_chained_extras_are_checked_in_under_a_second() -> None:
    """Each extra of `chain` brings in the next: the lines are read once and indexed by extra
    (it was quadratic: every extra re-filtered every line, 1,200 lines took 23 s)."""
    import time

    count = 5000
    lines = tuple(f'chain[e{i + 1}]; extra == "e{i}"' for i in range(count)) + (f'leaf>=2; extra == "e{count}"',)
    calls: list[str] = []

    def requires_of(name: str) -> tuple[str, ...]:
        calls.append(name)
        return lines if name == "chain" else ()

    start = time.perf_counter()
    check = check_requires_dist(["chain[e0]"], {"chain": "1.0", "leaf": "1.0"}, requires_of, environment=X86_64)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, elapsed
    assert [u.describe() for u in check.unmet] == [f"chain[e{count}] requires leaf>=2: leaf 1.0 is installed"]
    assert calls == ["chain"]  # the metadata is read once


def test_more_requires_dist_lines_than_the_cap_is_an_error_naming_the_distribution() -> None:
    from vllm_lock.requirements import MAX_REQUIRES_DIST

    many = {"big": tuple(f'dep{i}; extra == "x"' for i in range(MAX_REQUIRES_DIST + 5))}
    check = _check(["big[x]"], {"big": "1.0"}, many)
    assert [u.name for u in check.unmet] == ["big"]
    assert f"big declares more than {MAX_REQUIRES_DIST} Requires-Dist lines" in check.unmet[0].describe()


def test_a_marker_that_cannot_be_evaluated_is_an_unmet_line_named_as_such() -> None:
    check = _check(['foo; python_version ~= "abc"', "filelock"], {"filelock": "3.20.0", "foo": "1.0"})
    [line] = [u.describe() for u in check.unmet]
    assert line.startswith("vllm declares 'foo; python_version ~= \"abc\"': its marker cannot be evaluated (")
    assert check.checked == 1


def test_only_the_owners_requirement_of_a_torch_family_name_is_expected() -> None:
    # a left-out name that is not torch-family (a lock edited to hide an unmet dependency), or a
    # left-out member another distribution requires through an extra, is a failure
    metadata = {"fastapi": ('torchaudio; extra == "standard"',)}
    check = _check(["numpy>=2", "torchaudio", "fastapi[standard]"], {"fastapi": "1.0"}, metadata,
                   left_out=["numpy", "torchaudio"])
    assert [u.name for u in check.expected] == ["torchaudio"]
    assert [(u.name, u.required_by) for u in check.unmet] == [("numpy", "vllm"), ("torchaudio", "fastapi[standard]")]
