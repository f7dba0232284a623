"""The real-vLLM corpus harness: each cached PyPI sdist made into a git repository (a tag
`vX.Y.Z` and one harness commit on top), every external repository its cmake files name served
from LOCAL git repositories (reached through `--mirror https://github.com/=file://<root>/`), and a
local torch index of fake torch-family wheels with the versions each vLLM pins."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sdists import extract_sdist

from vllm_lock_testworld.packages import TRITON_MARKER, X86
from vllm_lock_testworld.server import IndexConfig, IndexStore, Listener, start_listener
from vllm_lock_testworld.wheels import WheelSpec, build_wheel

GITHUB = "https://github.com/"
CUDA = "cu128"
TORCH_INDEX_PATH = f"/whl/{CUDA}"

# What PyTorch's cu128 index carries for these releases, written from each version's own pins
# (requirements/cuda.txt): torch, then (member, version, the torch it requires).
TORCH_RELEASES = {
    "2.6.0": ("3.2.0", [("torchvision", "0.21.0", "==2.6.0"), ("torchaudio", "2.6.0", "==2.6.0")]),
    "2.9.0": ("3.5.0", [("torchvision", "0.24.0", "==2.9.0"), ("torchaudio", "2.9.0", "==2.9.0")]),
    "2.11.0": ("3.6.0", [("torchvision", "0.26.0", "==2.11.0")]),
    "2.13.0": ("3.7.0", [("torchvision", "0.28.0", "==2.13.0")]),
    "2.14.0": ("3.8.0", [("torchvision", "0.29.0", "==2.14.0")]),
}
# Members that no longer follow torch's version: torchaudio 2.11.0 serves torch 2.11 and newer
FREE_MEMBERS = [("torchaudio", "2.11.0", ">=2.11.0"), ("torchcodec", "0.14.0", ">=2.9.0")]

_DATE = {"GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
         "GIT_AUTHOR_NAME": "corpus", "GIT_AUTHOR_EMAIL": "corpus@vllm-lock.invalid",
         "GIT_COMMITTER_NAME": "corpus", "GIT_COMMITTER_EMAIL": "corpus@vllm-lock.invalid"}


def git(*args: str, cwd: Path) -> str:
    env = {**os.environ, **_DATE, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def _commit_all(repo: Path, message: str) -> str:
    git("add", "-A", cwd=repo)
    git("commit", "-q", "--no-verify", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


def local_path(root: Path, repository: str) -> Path:
    """Where the mirror of a github.com repository lives: root + the rest of its URL."""
    assert repository.startswith(GITHUB), repository
    return root / repository.removeprefix(GITHUB)


def local_external(root: Path, repository: str, name: str, tag: str | None) -> str:
    """A small local repository standing in for `repository` (created once per root): one
    commit, tagged `tag` when the cmake files name a tag. Returns the commit."""
    repo = local_path(root, repository)
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True)
        git("init", "-q", "-b", "main", cwd=repo)
        (repo / "README").write_text(f"local stand-in for {repository}\n")
        _commit_all(repo, f"{name}: local stand-in")
    if tag:
        git("tag", "-f", tag, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo)


VLLM_URL = GITHUB + "vllm-project/vllm.git"


@dataclass(frozen=True, kw_only=True)
class VllmRepo:
    github_root: Path  # the local stand-in of https://github.com/ (vLLM and its external repositories)
    tag_commit: str
    head: str  # the harness commit on top of the tag
    moved: dict[str, str]  # SHA pin in the release -> the local repository's commit that replaced it
    url: str = VLLM_URL  # reached through the mirror, as a user's lock names it

    @property
    def mirror(self) -> str:
        return f"{GITHUB}=file://{self.github_root}/"


def _cmake_files(tree: Path) -> Iterable[Path]:
    yield tree / "CMakeLists.txt"
    yield from sorted((tree / "cmake").rglob("*.cmake"))


def make_vllm_repo(version: str, github_root: Path, pins: Iterable[tuple[str, str, str, str]]) -> VllmRepo:
    """The sdist's tree as a repository (the stand-in of github.com/vllm-project/vllm.git): commit
    tagged v<version>, then one harness commit that moves every SHA pin to the local stand-in's
    commit (tags are created in the stand-ins). Fixed dates and author: the same commits on
    every run, so caches keyed by commit stay valid."""
    tree = local_path(github_root, VLLM_URL)
    tree.mkdir(parents=True)
    extract_sdist(version, tree)
    git("init", "-q", "-b", "main", cwd=tree)
    tag_commit = _commit_all(tree, f"vLLM {version} (PyPI sdist)")
    git("tag", f"v{version}", cwd=tree)
    moved: dict[str, str] = {}
    for name, repository, ref, _override in pins:
        is_sha = len(ref) == 40 and all(c in "0123456789abcdef" for c in ref)
        commit = local_external(github_root, repository, name, None if is_sha else ref)
        if is_sha:
            moved[ref] = commit
    for path in _cmake_files(tree):
        text = path.read_text(encoding="utf-8")
        new = text
        for old, commit in moved.items():
            new = new.replace(old, commit)
        if new != text:
            path.write_text(new, encoding="utf-8")
    head = _commit_all(tree, "harness: external SHA pins moved to the local mirror's commits")
    return VllmRepo(github_root=github_root, tag_commit=tag_commit, head=head, moved=moved)


# What vLLM's setup.py reads of torch (torch.version.*, torch.utils.cpp_extension's homes), and
# for `import vllm` (its env_override patches torch internals at import time): every other
# torch.* module and attribute is an inert stand-in that absorbs attribute reads, writes, calls,
# subclassing and decoration. A build-and-import fake: nothing of it computes.
_STUB = '''"""Inert stand-ins for the torch internals vLLM touches at import (vllm-lock corpus)."""
import importlib.abc
import importlib.machinery
import sys
import types


class _Meta(type):
    def __getattr__(cls, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return stand_in(name)

    def __getitem__(cls, item):
        return cls

    def __setitem__(cls, item, value):
        pass

    def __or__(cls, other):
        return cls

    __ror__ = __or__


class Inert(metaclass=_Meta):
    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):
        return args[0] if len(args) == 1 and callable(args[0]) and not kwargs else Inert()

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return stand_in(name)

    def __iter__(self):
        return iter(())

    def __getitem__(self, item):
        return Inert()

    def __add__(self, other):
        return other

    __radd__ = __add__

    def __str__(self):
        return ""

    def __setitem__(self, item, value):
        pass

    def __bool__(self):
        return False


def stand_in(name):
    return _Meta(name, (Inert,), {})


class _Module(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = stand_in(name)
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith("torch."):
            return None
        if importlib.machinery.PathFinder.find_spec(fullname, path) is not None:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec):
        module = _Module(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        pass


def install():
    sys.meta_path.append(_Finder())
'''
_TORCH_FILES = (
    ("torch/__init__.py",
     '"""Fake torch (vllm-lock corpus)."""\nimport sys\n\nfrom torch import _stub\n\n_stub.install()\n'
                          "from torch import version, utils  # noqa: E402\n\n"
                          "__version__ = version.__version__\n\n\n"
                          "def __getattr__(name):\n"
                          "    if name.startswith(\"__\"):\n        raise AttributeError(name)\n"
                          "    return _stub.stand_in(name)\n"),
    ("torch/_stub.py", _STUB),
    ("torch/version.py", '__version__ = "{version}"\ncuda = "12.8"\nhip = None\nxpu = None\n'),
    ("torch/utils/__init__.py", "from torch.utils import cpp_extension\n"),
    ("torch/utils/cpp_extension.py", "CUDA_HOME = None\nROCM_HOME = None\n"),
)


def _spec(name: str, version: str, requires: tuple[str, ...], py: str) -> WheelSpec:
    tag = f"{py}-{py}-{X86}"
    module = name.replace("-", "_")
    files: tuple[tuple[str, str], ...] = (
        (f"{module}/__init__.py", f'"""Fake {name} (vllm-lock corpus)."""\n__version__ = "{version}"\n'),)
    if name == "torch":
        files = tuple((path, text.replace("{version}", version)) for path, text in _TORCH_FILES)
    return WheelSpec(name, version, tag, files, requires, ">=3.10", f"{name} (vllm-lock corpus fake)")


def torch_index_wheels() -> list[WheelSpec]:
    specs = []
    for py in ("cp311", "cp312"):
        for torch, (triton, members) in TORCH_RELEASES.items():
            local = f"{torch}+{CUDA}"
            specs.append(_spec("torch", local, ("filelock", "typing-extensions>=4.10.0",
                                                f"triton=={triton}; {TRITON_MARKER}"), py))
            specs.append(_spec("triton", triton, (), py))
            specs.extend(_spec(m, f"{v}+{CUDA}", (f"torch{need}",), py) for m, v, need in members)
        specs.extend(_spec(m, f"{v}+{CUDA}", (f"torch{need}",), py) for m, v, need in FREE_MEMBERS)
    return specs


def serve_torch_index() -> tuple[Listener, str]:
    """A local PyTorch-like index (hashes on the page, as download.pytorch.org gives them)."""
    store = IndexStore()
    store.add_index(IndexConfig(TORCH_INDEX_PATH, "/whl/files", hashes=True, json=False))
    for spec in torch_index_wheels():
        store.add_file(TORCH_INDEX_PATH, spec.project, spec.filename, build_wheel(spec), ">=3.10")
    listener = start_listener(store)
    return listener, listener.base + TORCH_INDEX_PATH


def link_files(source: Path, dest: Path) -> None:
    """Every file under source present under dest too (hard links; the store never rewrites a
    file in place: it writes a temporary and renames it)."""
    for path in source.rglob("*"):
        if path.is_file():
            target = dest / path.relative_to(source)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
