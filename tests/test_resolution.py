"""The set resolve hands to uv, and its pylock read back (vllm_lock.resolution): pure, no I/O."""

from __future__ import annotations

import tomllib

from hypothesis import example, given
from hypothesis import strategies as st

from vllm_lock import resolution
from vllm_lock.model import Pin

LINUX_X86 = "platform_system == 'Linux' and platform_machine == 'x86_64'"


def test_compile_requirements_in_order_without_repeats_less_what_was_left_out() -> None:
    runtime = ("numpy", "torchcodec >= 0.8", "Torch_Codec_Extra; python_version >= '3.10'", "regex")
    build = ("cmake>=3.26", "numpy", "setuptools>=77")
    assert resolution.compile_requirements(
        runtime, build, ["torch==2.9.1", "torchaudio==2.9.1"], "triton", left_out=("torchcodec", "torch-codec-extra"),
    ) == ["numpy", "regex", "cmake>=3.26", "setuptools>=77", "torch==2.9.1", "torchaudio==2.9.1",
          f"triton; {LINUX_X86}"]


def test_compile_requirements_lists_the_channels_triton_unpinned_once() -> None:
    assert resolution.compile_requirements((), (), ["torch==2.10.0.dev20261120+cu128"], "pytorch-triton") == [
        "torch==2.10.0.dev20261120+cu128", f"pytorch-triton; {LINUX_X86}"]
    # a name left out matches by its canonical form; nothing is left out by default
    left_out = resolution.compile_requirements(("Torch.Codec",), (), [], "triton", ["torch-codec"])
    assert left_out == [f"triton; {LINUX_X86}"]
    kept = resolution.compile_requirements(("Torch.Codec",), (), [], "triton")
    assert kept == ["Torch.Codec", f"triton; {LINUX_X86}"]


def test_routed_names_per_channel() -> None:
    assert resolution.routed_names("nightly", ("torchvision",)) == {"torch", "pytorch-triton", "torchvision"}
    assert resolution.routed_names("release", ()) == {"torch", "triton"}


def test_synthetic_project_routes_exactly_the_family_to_an_explicit_torch_index() -> None:
    text = resolution.synthetic_project(["numpy", "torch==2.9.1"], "http://127.0.0.1:1/whl/cu128",
                                        {"torchvision", "torch", "triton"})
    doc = tomllib.loads(text)
    assert doc["project"] == {"name": "vllm-lock-resolution", "version": "0", "dependencies": ["numpy", "torch==2.9.1"]}
    assert doc["tool"]["uv"]["index"] == [
        {"name": "torch-index", "url": "http://127.0.0.1:1/whl/cu128", "explicit": True}]
    sources = doc["tool"]["uv"]["sources"]
    assert list(sources) == ["torch", "torchvision", "triton"]  # sorted: the same set is the same text
    assert all(value == {"index": "torch-index"} for value in sources.values())


PYLOCK = """
lock-version = "1.0"
created-by = "uv"

[[packages]]
name = "Torch"
version = "2.9.1+cu128"
wheels = [{ url = "http://x/torch-2.9.1.whl" }]

[[packages]]
name = "torch_audio"
version = "2.9.1+cu128"

[[packages]]
name = "triton"
version = "3.5.1"
"""


def test_locked_versions_by_canonical_name_and_the_companions_in_family_order() -> None:
    locked = resolution.locked_versions(PYLOCK)
    assert locked == {"torch": "2.9.1+cu128", "torch-audio": "2.9.1+cu128", "triton": "3.5.1"}
    assert resolution.pylock_packages(PYLOCK)[0]["wheels"] == [{"url": "http://x/torch-2.9.1.whl"}]
    assert resolution.pylock_packages('lock-version = "1.0"\n') == []
    # members first (in the family's order), then the tritons that are no member; unlocked ones absent
    assert resolution.companion_pins(("torchvision", "torch-audio"), locked) == (
        Pin(name="torch-audio", version="2.9.1+cu128"), Pin(name="triton", version="3.5.1"))
    assert resolution.companion_pins(("triton",), locked) == (Pin(name="triton", version="3.5.1"),)


@example(['q"\\\n', "a\x7fb"], "http://x/", ["torch"])  # escapes JSON and TOML share; DEL
@given(st.lists(st.text(), max_size=5), st.text(), st.lists(st.text(min_size=1), max_size=4))
def test_synthetic_project_is_toml_that_reads_back_as_given(requirements: list[str], index: str,
                                                            routed: list[str]) -> None:
    doc = tomllib.loads(resolution.synthetic_project(requirements, index, routed))
    assert doc["project"]["dependencies"] == requirements
    assert doc["tool"]["uv"]["index"][0]["url"] == index
    assert doc["tool"]["uv"]["sources"] == {name: {"index": "torch-index"} for name in routed}
