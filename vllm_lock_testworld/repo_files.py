"""File contents of the vLLM-shaped repository, per layout and revision.

skeleton/vllm/ holds main's newest tree (tools layout, FlashMLA pinned) as real files, with
`@NAME@` placeholders for the pins; this module takes it back to a commit's layout, fills the pins
in and adds what a branch adds (skeleton/rust_frontend/, the Rust frontend). The requirement files
are shaped like vLLM's: requirements/cpu.txt's unpinned torchaudio/torchvision survive `--prefix`
stripping while the default mode deletes them with the torch pin, and requirements/build/cpu.txt
(vLLM 0.20 on) takes the CPU torch from PyTorch's CPU index."""

from __future__ import annotations

from dataclasses import dataclass

from . import crates, templates
from .templates import replace_once

OLD, PREFIX, TOOLS = "old", "prefix", "tools"
CUDA_SUPPORTED_ARCHS = "7.5;8.0;8.6;8.9;9.0;10.0;12.0"


@dataclass(frozen=True)
class ExternalUrls:
    """GIT_REPOSITORY of each FetchContent pin (file:// URLs into the world's external/)."""

    cutlass: str
    flash_attn: str
    flashmla: str


@dataclass(frozen=True)
class RepoState:
    """What varies between commits of the fake vLLM repository."""

    layout: str
    torch: str  # torch pin in requirements and pyproject
    torchvision: str
    torchaudio: str
    cutlass_tag: str
    flash_attn_tag: str  # a flash-attention commit SHA
    urls: ExternalUrls
    flashmla_tag: str | None = None  # a FlashMLA commit SHA
    revision: int = 0  # bumped by commit_to_main
    # The archs csrc/cuda/CMakeLists.txt builds kernels for (vLLM's CUDA_SUPPORTED_ARCHS): an arch
    # of TORCH_CUDA_ARCH_LIST outside it is silently left out, as in vLLM.
    cuda_supported_archs: str = CUDA_SUPPORTED_ARCHS
    rust: bool = False  # the Rust frontend (crates.py): rust/, rust-toolchain.toml, setuptools-rust


FLASHMLA_CMAKE = "cmake/external_projects/flashmla.cmake"
TOOL_UV = '\n[tool.uv]\nno-build-isolation-package = ["torch"]\n'  # the tools layout's pyproject only
BUILD_REQUIREMENTS = ("requirements/build/cuda.txt", "requirements/build/cpu.txt")
SETUP_PY = templates.read_file("vllm/setup.py")


def _values(s: RepoState) -> dict[str, str]:
    """What fills each `@NAME@` of the skeleton."""
    values = {
        "TORCH": s.torch,
        "TORCHVISION": s.torchvision,
        "TORCHAUDIO": s.torchaudio,
        "CUTLASS_URL": s.urls.cutlass,
        "CUTLASS_TAG": s.cutlass_tag,
        "FLASH_ATTN_URL": s.urls.flash_attn,
        "FLASH_ATTN_TAG": s.flash_attn_tag,
        "CUDA_SUPPORTED_ARCHS": s.cuda_supported_archs,
        "FAKE_DEP_A_MIN": "1.1" if s.revision else "1.0",
    }
    if s.flashmla_tag:
        values |= {"FLASHMLA_URL": s.urls.flashmla, "FLASHMLA_TAG": s.flashmla_tag}
    return values


def _to_layout(files: dict[str, str], layout: str) -> None:
    """Take main's tree (tools layout) back to an older layout, in place."""
    if layout == TOOLS:
        return
    files["pyproject.toml"] = replace_once(files["pyproject.toml"], TOOL_UV, "")
    files["use_existing_torch.py"] = files.pop("tools/use_existing_torch.py")
    if layout == OLD:  # the pre---prefix script, one build requirements file, no test/ nor build/cpu
        files["use_existing_torch.py"] = templates.read_file("old_layout/use_existing_torch.py")
        files["requirements/build.txt"] = files.pop("requirements/build/cuda.txt")
        del files["requirements/build/cpu.txt"], files["requirements/test/cuda.in"]
        files["pyproject.toml"] = replace_once(files["pyproject.toml"], "requirements/build/cuda.txt",
                                               "requirements/build.txt")


def _without_flashmla(files: dict[str, str]) -> None:
    del files[FLASHMLA_CMAKE]
    files["CMakeLists.txt"] = replace_once(files["CMakeLists.txt"], f"include({FLASHMLA_CMAKE})\n", "")


def _with_rust(setup_py: str) -> str:
    """setup.py building the Rust frontend too (setuptools-rust's rust_extensions keyword)."""
    marker = "requirements = get_requirements()\n"
    text = replace_once(setup_py, "import datetime\n", "import datetime\n" + crates.SETUP_IMPORT)
    text = replace_once(text, marker, marker + crates.SETUP_EXTENSIONS)
    return replace_once(text, "\nsetup(\n", "\nsetup(\n    rust_extensions=rust_extensions,\n")


def _add_rust_frontend(files: dict[str, str]) -> None:
    """The Rust frontend's files, its setup.py and setuptools-rust as a build requirement."""
    files.update(crates.rust_files())
    files["setup.py"] = _with_rust(files["setup.py"])
    scm = '    "setuptools-scm>=8.0",\n'
    files["pyproject.toml"] = replace_once(files["pyproject.toml"], scm, scm + '    "setuptools-rust>=1.9.0",\n')
    for path in ("requirements/build.txt", *BUILD_REQUIREMENTS):
        if path in files:
            files[path] = replace_once(files[path], "setuptools-scm>=8\n",
                                       "setuptools-scm>=8\nsetuptools-rust>=1.9.0\n")


def repo_files(s: RepoState) -> dict[str, str]:
    """All tracked files of one commit."""
    files = templates.read_tree("vllm")
    _to_layout(files, s.layout)
    if not s.flashmla_tag:
        _without_flashmla(files)
    files = templates.fill(files, _values(s))
    if s.rust:
        _add_rust_frontend(files)
    if s.revision:
        files["docs/CHANGES.md"] = "".join(f"- change {i}\n" for i in range(1, s.revision + 1))
    return files
