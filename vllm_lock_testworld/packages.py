"""Specs of every generated wheel: torch nightlies, releases, companions, fake deps."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from .wheels import WheelSpec

CUDA = "cu128"
PYTHONS = ("cp311", "cp312")
X86 = "manylinux_2_28_x86_64"
ARM = "manylinux_2_28_aarch64"
TORCH_NIGHTLY = "2.10.0"
VISION_NIGHTLY = "0.25.0"
AUDIO_NIGHTLY = "2.10.0"
TRITON_MARKER = 'platform_system == "Linux" and platform_machine == "x86_64"'


def _hex(seed: str, n: int) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()[:n]


def nightly_torch_version(d: dt.date) -> str:
    return f"{TORCH_NIGHTLY}.dev{d:%Y%m%d}+{CUDA}"


def nightly_vision_version(d: dt.date) -> str:
    return f"{VISION_NIGHTLY}.dev{d:%Y%m%d}+{CUDA}"


def nightly_audio_version(d: dt.date) -> str:
    return f"{AUDIO_NIGHTLY}.dev{d:%Y%m%d}+{CUDA}"


def triton_version(d: dt.date) -> str:
    """pytorch-triton pinned by the torch nightly of date d (changes on 2026-11-07)."""
    epoch = "a" if d < dt.date(2026, 11, 7) else "b"
    return f"3.5.0+git{_hex('pytorch-triton-' + epoch, 8)}"


@dataclass(frozen=True)
class NightlyPlan:
    """Which wheels to publish for one nightly date."""

    date: dt.date
    torch: bool = True
    vision_pins: dt.date | None = None  # torchvision dated `date` pins torch of this date
    audio_pins: dt.date | None = None
    aarch64: bool = False


def _torch_files(version: str, tag: str, cuda: str = "12.8") -> tuple[tuple[str, str], ...]:
    init = (
        '"""Fake torch of the vllm-lock test world (not PyTorch)."""\n'
        "from torch import cuda, version\n\n"
        f'__version__ = "{version}"\n'
    )
    ver = (
        f'__version__ = "{version}"\n'
        f'cuda = "{cuda}"\n'
        f'git_version = "{_hex("torch-git-" + version, 40)}"\n'
        "hip = None\n"
        f'wheel_tag = "{tag}"\n'
    )
    cuda_mod = (
        "def is_available():\n    return False\n\n\n"
        "def device_count():\n    return 0\n"
    )
    return (("torch/__init__.py", init), ("torch/version.py", ver),
            ("torch/cuda/__init__.py", cuda_mod))


def torch_spec(version: str, py: str, plat: str, triton_req: str | None) -> WheelSpec:
    reqs = ["filelock", "typing-extensions>=4.10.0"]
    if triton_req:
        reqs.append(f"{triton_req}; {TRITON_MARKER}")
    tag = f"{py}-{py}-{plat}"
    return WheelSpec("torch", version, tag, _torch_files(version, tag), tuple(reqs),
                     ">=3.10", "Tensors and Dynamic neural networks (test world fake)")


def companion_spec(name: str, version: str, torch_version: str, py: str, plat: str) -> WheelSpec:
    tag = f"{py}-{py}-{plat}"
    mod = name
    files = ((f"{mod}/__init__.py",
              f'"""Fake {name} of the vllm-lock test world."""\n__version__ = "{version}"\n'
              f'built_against_torch = "{torch_version}"\nwheel_tag = "{tag}"\n'),)
    return WheelSpec(name, version, tag, files, (f"torch=={torch_version}",), ">=3.10",
                     f"{name} (test world fake)")


def triton_spec(name: str, version: str, py: str) -> WheelSpec:
    tag = f"{py}-{py}-{X86}"
    mod = "triton"
    files = ((f"{mod}/__init__.py", f'__version__ = "{version}"\nwheel_tag = "{tag}"\n'),)
    return WheelSpec(name, version, tag, files, (), ">=3.10", f"{name} (test world fake)")


def nightly_wheels(plan: NightlyPlan) -> list[WheelSpec]:
    """All wheels published for one nightly date."""
    specs: list[WheelSpec] = []
    plats = (X86, ARM) if plan.aarch64 else (X86,)
    for py in PYTHONS:
        for plat in plats:
            if plan.torch:
                tv = triton_version(plan.date)
                specs.append(torch_spec(nightly_torch_version(plan.date), py, plat,
                                        f"pytorch-triton=={tv}"))
            if plan.vision_pins:
                specs.append(companion_spec("torchvision", nightly_vision_version(plan.date),
                                            nightly_torch_version(plan.vision_pins), py, plat))
            if plan.audio_pins:
                specs.append(companion_spec("torchaudio", nightly_audio_version(plan.date),
                                            nightly_torch_version(plan.audio_pins), py, plat))
    return specs


def triton_wheels(versions: set[str], name: str = "pytorch-triton") -> list[WheelSpec]:
    return [triton_spec(name, v, py) for v in sorted(versions) for py in PYTHONS]


RELEASES = (
    # torch, torchvision, torchaudio, triton
    ("2.9.0", "0.24.0", "2.9.0", "3.5.0"),
    ("2.9.1", "0.24.1", "2.9.1", "3.5.1"),
)


def release_wheels() -> list[WheelSpec]:
    """The stable channel /whl/cu128 (hashes on the page)."""
    specs: list[WheelSpec] = []
    for torch_v, vision_v, audio_v, triton_v in RELEASES:
        tver = f"{torch_v}+{CUDA}"
        for py in PYTHONS:
            specs.append(torch_spec(tver, py, X86, f"triton=={triton_v}"))
            specs.append(companion_spec("torchvision", f"{vision_v}+{CUDA}", tver, py, X86))
            specs.append(companion_spec("torchaudio", f"{audio_v}+{CUDA}", tver, py, X86))
            specs.append(triton_spec("triton", triton_v, py))
    return specs


# torchcodec releases on the release index: both fit every torch >= 2.9.0 (a member that no
# longer follows torch's version, like torchaudio 2.11): a lock takes the commit's own pin.
CODEC_RELEASES = ("0.8.0", "0.9.0")


def codec_wheels() -> list[WheelSpec]:
    specs = []
    for version in CODEC_RELEASES:
        for py in PYTHONS:
            tag = f"{py}-{py}-{X86}"
            files = (("torchcodec/__init__.py", f'__version__ = "{version}"\nwheel_tag = "{tag}"\n'),)
            specs.append(WheelSpec("torchcodec", f"{version}+{CUDA}", tag, files, ("torch>=2.9.0",), ">=3.10",
                                   "torchcodec (test world fake)"))
    return specs


def _pure(name: str, version: str, reqs: tuple[str, ...] = (), module: str | None = None,
          body: str = "") -> WheelSpec:
    mod = module or name.replace("-", "_")
    text = f'"""{name} {version} (vllm-lock test world)."""\n__version__ = "{version}"\n{body}'
    return WheelSpec(name, version, "py3-none-any", ((f"{mod}/__init__.py", text),), reqs,
                     ">=3.9", f"{name} (test world)")


def general_generated_wheels() -> list[WheelSpec]:
    """Small pure wheels served by the general index."""
    return [
        _pure("vllm-fake-dep-a", "1.0.0"),
        _pure("vllm-fake-dep-a", "1.1.0"),
        _pure("vllm-fake-dep-b", "0.2.0", ("vllm-fake-dep-a>=1.0",)),
        _pure("open-clip-torch-fake", "1.0.0"),
        *native_wheels(),
        *several_wheels(),
    ]


def several_wheels() -> list[WheelSpec]:
    """Packages that, like aiohttp and soundfile on PyPI, publish several wheels fitting one target:
    vllm-fake-multi a manylinux_2_17 and a manylinux_2_28 build per Python, vllm-fake-sound a
    py3-none-any wheel (no bundled library) beside a platform wheel (with it). Each wheel's bytes
    differ (its module names its own tag). Nothing requires them unless a test adds them."""
    def spec(name: str, tag: str, reqs: tuple[str, ...] = ()) -> WheelSpec:
        module = name.replace("-", "_")
        text = f'__version__ = "1.0.0"\nwheel_tag = "{tag}"\nbundled_library = {not tag.endswith("-any")}\n'
        return WheelSpec(name, "1.0.0", tag, ((f"{module}/__init__.py", text),), reqs, ">=3.10", f"{name} (test world)")

    multi = [spec("vllm-fake-multi", f"{py}-{py}-{plat}_x86_64") for py in PYTHONS
             for plat in ("manylinux_2_17", "manylinux_2_28")]
    return [*multi, spec("vllm-fake-sound", "py3-none-any"), spec("vllm-fake-sound", "py3-none-manylinux_2_28_x86_64")]


def native_wheels() -> list[WheelSpec]:
    """A binary package that, like llguidance 1.7, ships x86_64 wheels only for a newer glibc
    (manylinux_2_31) than manylinux_2_28; nothing requires it unless a test adds it."""
    files = (("vllm_fake_native/__init__.py", '__version__ = "1.0.0"\n'),)
    return [WheelSpec("vllm-fake-native", "1.0.0", f"{py}-{py}-{plat}", files, (), ">=3.10", "vllm-fake-native")
            for py in PYTHONS for plat in ("manylinux_2_31_x86_64", "manylinux_2_17_aarch64")]


def decoy_wheels() -> list[WheelSpec]:
    """Mirrored general packages on the nightly index with a higher, fake version."""
    body = "DECOY = True  # served by the torch nightly index, never by the general index\n"
    spec = WheelSpec("typing-extensions", "4.99.0", "py3-none-any",
                     (("typing_extensions.py", '"""Dependency-confusion decoy."""\n' + body),),
                     (), ">=3.9", "typing-extensions decoy (test world)")
    return [spec]
