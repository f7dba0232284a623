"""The external source repositories of the test world: CUTLASS, flash-attention and FlashMLA.

vLLM's CMake fetches them at configure time (FetchContent GIT_REPOSITORY / GIT_TAG). Here they are
real non-bare git repositories under `<world root>/external/`, laid out like their GitHub URLs so
that flash-attention's relative submodule URL (`csrc/cutlass` -> `../../nvidia/cutlass`) resolves
the same way it does on GitHub. Their files hold no paths or times and every commit has a fixed
identity and date, so every world has the same SHAs.

  nvidia/cutlass                one commit per tag v4.0.0, v4.1.0, v4.2.1 (v4.2.1 annotated)
  vllm-project/flash-attention  roles old, new, newest; each with the csrc/cutlass submodule at
                                cutlass v4.2.1 (a gitlink; nothing cloned)
  vllm-project/FlashMLA         roles 1, 2

Every commit's tree has `SOURCE_ID` ("cutlass v4.1.0\\n", "flash-attention new\\n", ...), which the
fake vLLM's setup.py records so a test can tell which source a build consumed.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .repo import git, git_env

START = dt.datetime(2026, 6, 1, 9, 0, 0, tzinfo=dt.UTC)
STEP = dt.timedelta(days=7)
SUBMODULE_PATH = "csrc/cutlass"
SUBMODULE_URL = "../../nvidia/cutlass"
SUBMODULE_TAG = "v4.2.1"
ANNOTATED_TAGS = frozenset({"v4.2.1"})


@dataclass(frozen=True)
class ExternalSpec:
    """One external repository: its FetchContent name, place, SOURCE_ID label and refs."""

    name: str  # the FetchContent name in vLLM's cmake files
    path: str  # under <world root>/external/, like its GitHub owner/name
    label: str  # first word of SOURCE_ID
    refs: tuple[str, ...]  # cutlass: its tags; the others: role names
    tagged: bool  # refs are tags (else roles, with no tag)
    start: dt.datetime  # date of the first commit (later ones: + STEP each)


CUTLASS = ExternalSpec("cutlass", "nvidia/cutlass", "cutlass", ("v4.0.0", "v4.1.0", "v4.2.1"),
                       True, START)
FLASH_ATTN = ExternalSpec("vllm-flash-attn", "vllm-project/flash-attention", "flash-attention",
                          ("old", "new", "newest"), False, START + dt.timedelta(days=30))
FLASHMLA = ExternalSpec("flashmla", "vllm-project/FlashMLA", "flashmla", ("1", "2"), False,
                        START + dt.timedelta(days=60))
EXTERNALS: tuple[ExternalSpec, ...] = (CUTLASS, FLASH_ATTN, FLASHMLA)


def spec(name: str) -> ExternalSpec:
    """The external repository with FetchContent name `name` (KeyError if none)."""
    for s in EXTERNALS:
        if s.name == name:
            return s
    raise KeyError(f"no external source {name!r}; known: {[s.name for s in EXTERNALS]}")


@dataclass(frozen=True)
class ExternalsInfo:
    """Where the external repositories are and the commits they were built with."""

    root: Path  # <world root>/external
    commits: tuple[tuple[str, str, str], ...]  # (name, tag or role, sha) as built

    def path(self, name: str) -> Path:
        return self.root / spec(name).path

    def url(self, name: str) -> str:
        return "file://" + str(self.path(name))

    def commit(self, name: str, ref: str) -> str:
        """The commit a tag or role had when the world was built (KeyError if unknown)."""
        for n, r, sha in self.commits:
            if (n, r) == (name, ref):
                return sha
        raise KeyError(f"external source {name!r} has no ref {ref!r}")


# ---- file contents ---------------------------------------------------------------------------
def _cutlass_files(tag: str) -> dict[str, str]:
    major, minor, patch = tag.removeprefix("v").split(".")
    return {
        "SOURCE_ID": f"cutlass {tag}\n",
        "README.md": "# CUTLASS (vllm-lock test world)\n",
        "include/cutlass/version.h": (
            "#pragma once\n"
            f"#define CUTLASS_MAJOR {major}\n#define CUTLASS_MINOR {minor}\n"
            f"#define CUTLASS_PATCH {patch}\n"
        ),
    }


def _flash_attn_files(role: str) -> dict[str, str]:
    return {
        "SOURCE_ID": f"flash-attention {role}\n",
        "README.md": "# vllm-flash-attn (vllm-lock test world)\n",
        ".gitmodules": (f'[submodule "{SUBMODULE_PATH}"]\n\tpath = {SUBMODULE_PATH}\n'
                        f"\turl = {SUBMODULE_URL}\n"),
        "csrc/flash_attn/flash_api.h": f"#pragma once\n// flash-attention {role}\n",
    }


def _flashmla_files(role: str) -> dict[str, str]:
    return {
        "SOURCE_ID": f"flashmla {role}\n",
        "README.md": "# FlashMLA (vllm-lock test world)\n",
        "csrc/flash_mla.h": f"#pragma once\n// FlashMLA {role}\n",
    }


def _files(s: ExternalSpec, ref: str) -> dict[str, str]:
    make = {"cutlass": _cutlass_files, "vllm-flash-attn": _flash_attn_files,
            "flashmla": _flashmla_files}[s.name]
    return make(ref)


# ---- git -------------------------------------------------------------------------------------
def _git_input(repo: Path, text: str, *args: str, when: dt.datetime | None = None) -> str:
    """git with text on stdin (hash-object, mktree)."""
    out = subprocess.run(["git", *args], cwd=repo, env=git_env(when), input=text, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def _rev(repo: Path, rev: str) -> str | None:
    """The object rev names, or None."""
    out = subprocess.run(["git", "rev-parse", "--verify", "-q", rev], cwd=repo, env=git_env(),
                         capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def tag_commit(repo: Path, tag: str) -> str | None:
    """The commit tag points at now (annotated tags peeled), or None."""
    return _rev(repo, f"refs/tags/{tag}^{{commit}}")


def _commit(repo: Path, files: dict[str, str], message: str, when: dt.datetime,
            gitlinks: dict[str, str]) -> str:
    """Write files, stage them and the gitlinks (path -> sha), commit; return the SHA."""
    for path, text in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o644)
    for path in gitlinks:
        (repo / path).mkdir(parents=True, exist_ok=True)  # an unpopulated submodule
    git(repo, "add", "-A", when=when)
    for path, sha in gitlinks.items():
        git(repo, "update-index", "--add", "--cacheinfo", f"160000,{sha},{path}")
    git(repo, "commit", "-q", "-m", message, when=when)
    return git(repo, "rev-parse", "HEAD")


def _tag(repo: Path, tag: str, target: str, when: dt.datetime, force: bool = False) -> None:
    args = ["tag", *(["-f"] if force else [])]
    if tag in ANNOTATED_TAGS:
        args += ["-a", "-m", f"Release {tag}"]
    git(repo, *args, tag, target, when=when)


def _build_one(root: Path, s: ExternalSpec, gitlinks: dict[str, str]) -> list[tuple[str, str, str]]:
    repo = root / s.path
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "--initial-branch=main")
    built = []
    for i, ref in enumerate(s.refs):
        when = s.start + STEP * i
        message = f"{s.label}: release {ref}" if s.tagged else f"{s.label}: {ref}"
        sha = _commit(repo, _files(s, ref), message, when, gitlinks)
        if s.tagged:
            _tag(repo, ref, sha, when)
        built.append((s.name, ref, sha))
    return built


def build_externals(root: Path) -> ExternalsInfo:
    """Create the three repositories under root (replacing anything there)."""
    if root.exists():
        shutil.rmtree(root)
    commits = _build_one(root, CUTLASS, {})
    cutlass = dict((ref, sha) for _, ref, sha in commits)
    commits += _build_one(root, FLASH_ATTN, {SUBMODULE_PATH: cutlass[SUBMODULE_TAG]})
    commits += _build_one(root, FLASHMLA, {})
    return ExternalsInfo(root, tuple(commits))


def move_tag(info: ExternalsInfo, name: str, tag: str) -> str:
    """Add a commit on top of what tag points at (HEAD if no such tag) whose SOURCE_ID is
    `<label> <tag> (retagged)`, force-move (or create) tag to it; return the new SHA.

    Plumbing only: neither the work tree nor a branch moves, like a hotfix retag upstream."""
    s = spec(name)
    repo = info.path(name)
    base = tag_commit(repo, tag) or git(repo, "rev-parse", "HEAD")
    when = s.start + STEP * int(git(repo, "rev-list", "--count", "--all"))
    blob = _git_input(repo, f"{s.label} {tag} (retagged)\n", "hash-object", "-w", "--stdin")
    entries = [e for e in git(repo, "ls-tree", base).splitlines() if not e.endswith("\tSOURCE_ID")]
    tree = _git_input(repo, "\n".join([*entries, f"100644 blob {blob}\tSOURCE_ID"]) + "\n",
                      "mktree")
    sha = git(repo, "commit-tree", tree, "-p", base, "-m", f"{s.label}: retag {tag}", when=when)
    _tag(repo, tag, sha, when, force=True)
    return sha
