from __future__ import annotations

import datetime as dt

import pytest
from packaging.version import Version

from vllm_lock import nightly
from vllm_lock.model import Target

PAGE_URL = "https://download.pytorch.org/whl/nightly/cu128/torch/"
X86_312 = Target(python="3.12", platform="x86_64-manylinux_2_28")


def page(*filenames: str, fragment: str = "") -> str:
    rows = "\n".join(
        f'<a href="https://download-r2.pytorch.org/whl/nightly/cu128/{f.replace("+", "%2B")}{fragment}" '
        f'data-requires-python="&gt;=3.10">{f}</a><br/>'
        for f in filenames
    )
    return f"<!DOCTYPE html><html><body><h1>Links for torch</h1>\n{rows}\n</body></html>"


def torch_wheel(date: str, py: str = "cp312", plat: str = "manylinux_2_28_x86_64", cuda: str = "cu128") -> str:
    return f"torch-2.10.0.dev{date}+{cuda}-{py}-{py}-{plat}.whl"


def test_parse_page_unquotes_names_and_reads_attributes() -> None:
    links = nightly.parse_simple_page(page(torch_wheel("20261112")), PAGE_URL)
    assert len(links) == 1
    link = links[0]
    assert link.filename == "torch-2.10.0.dev20261112+cu128-cp312-cp312-manylinux_2_28_x86_64.whl"
    assert link.url.startswith("https://download-r2.pytorch.org/") and link.sha256 is None
    assert link.requires_python == ">=3.10"


def test_parse_page_reads_hash_fragments_and_relative_links() -> None:
    html = '<a href="../../files/six-1.16.0-py2.py3-none-any.whl#sha256=' + "ab" * 32 + '">six</a>'
    (link,) = nightly.parse_simple_page(html, "https://example.org/simple/six/")
    assert link.url == "https://example.org/files/six-1.16.0-py2.py3-none-any.whl"
    assert link.sha256 == "ab" * 32


def test_nightly_builds_filter_variant_python_and_platform() -> None:
    files = [
        torch_wheel("20261110"),
        torch_wheel("20261110", py="cp311"),
        torch_wheel("20261111", cuda="cu126"),
        torch_wheel("20261112", plat="manylinux_2_28_aarch64"),
        torch_wheel("20261113", plat="manylinux_2_34_x86_64"),  # needs a newer glibc than the target
        torch_wheel("20261114", plat="manylinux_2_17_x86_64"),
        "torch-2.9.1+cu128-cp312-cp312-manylinux_2_28_x86_64.whl",
        "not-a-wheel.tar.gz",
    ]
    wheels = nightly.parse_simple_page(page(*files), PAGE_URL)
    builds = nightly.nightly_builds(wheels, cuda="cu128", target=X86_312)
    assert sorted(builds) == [dt.date(2026, 11, 10), dt.date(2026, 11, 14)]
    aarch = nightly.nightly_builds(wheels, cuda="cu128",
                                   target=Target(python="3.12", platform="aarch64-manylinux_2_28"))
    assert sorted(aarch) == [dt.date(2026, 11, 12)]


def test_nightly_date_of_versions() -> None:
    assert nightly.nightly_date(Version("2.10.0.dev20261112+cu128")) == dt.date(2026, 11, 12)
    assert nightly.nightly_date(Version("2.9.1+cu128")) is None
    assert nightly.nightly_date(Version("2.10.0.dev1")) is None
    assert nightly.nightly_date(Version("2.10.0.dev20261340")) is None


def test_nearest_dates_and_latest_order() -> None:
    available = [dt.date(2026, 11, d) for d in (2, 3, 5, 9, 12)]
    assert nightly.nearest_dates(available, dt.date(2026, 11, 7)) == [dt.date(2026, 11, 5), dt.date(2026, 11, 9)]
    assert nightly.nearest_dates(available, dt.date(2026, 12, 25)) == [dt.date(2026, 11, 9), dt.date(2026, 11, 12)]
    assert nightly.latest_first(available)[0] == dt.date(2026, 11, 12)


def test_companion_window_includes_the_next_day() -> None:
    files = [f"torchvision-0.25.0.dev{d}+cu128-cp312-cp312-manylinux_2_28_x86_64.whl" for d in ("20261109", "20261110",
                                                                                                "20261112")]
    builds = nightly.nightly_builds(nightly.parse_simple_page(page(*files), PAGE_URL),
                                    cuda="cu128", target=X86_312)
    got = nightly.companion_candidates(builds, dt.date(2026, 11, 9))
    assert [str(w.version) for w in got] == ["0.25.0.dev20261109+cu128", "0.25.0.dev20261110+cu128"]
    assert nightly.companion_candidates(builds, dt.date(2026, 11, 13)) == []


def test_release_versions_skip_nightlies() -> None:
    files = ["torch-2.9.1+cu128-cp312-cp312-manylinux_2_28_x86_64.whl", torch_wheel("20261112"),
             "torch-2.9.0+cu126-cp312-cp312-manylinux_2_28_x86_64.whl"]
    wheels = nightly.parse_simple_page(page(*files), PAGE_URL)
    assert list(nightly.release_versions(wheels, cuda="cu128", target=X86_312)) == ["2.9.1"]


def test_parse_requested_date() -> None:
    assert nightly.parse_requested_date("2026-11-12") == dt.date(2026, 11, 12)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        nightly.parse_requested_date("12/11/2026")


def test_release_builds_take_the_variant_and_variant_free_wheels_for_the_target() -> None:
    links = nightly.parse_simple_page(page(
        "torchaudio-2.11.0+cu128-cp312-cp312-manylinux_2_28_x86_64.whl",
        "torchaudio-2.11.0+cu130-cp312-cp312-manylinux_2_28_x86_64.whl",  # another variant
        "torchaudio-2.12.0+cu128-cp312-cp312-manylinux_2_28_aarch64.whl",  # another machine
        "torchaudio-2.13.0.dev20261112+cu128-cp312-cp312-manylinux_2_28_x86_64.whl",  # a nightly
        "torchaudio-2.10.0+cu128-cp311-cp311-manylinux_2_28_x86_64.whl",  # another Python
        "triton-3.5.1-cp312-cp312-manylinux_2_28_x86_64.whl",  # no variant: torch's own triton
    ), PAGE_URL)
    assert nightly.release_builds(links, cuda="cu128", target=X86_312) == (Version("2.11.0+cu128"), Version("3.5.1"))
