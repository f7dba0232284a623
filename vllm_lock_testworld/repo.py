"""Deterministic git history of the vLLM-shaped repository."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .repo_files import CUDA_SUPPORTED_ARCHS, OLD, PREFIX, TOOLS, ExternalUrls, RepoState, repo_files

if TYPE_CHECKING:  # externals imports git() from here
    from .externals import ExternalsInfo

AUTHOR = ("vLLM Test World", "testworld@vllm-lock.invalid")
# A branch off main's last commit whose CUDA kernels no longer list sm_120 among their supported
# archs: a build for 12.0 succeeds and silently lacks its cubin (as a vLLM CMake regression would).
ARCH_DROP_BRANCH = "cuda-drops-sm120"
DROPPED_ARCH = "12.0"
# A branch off main's last commit whose setup.py declares one more requirement than its
# requirements files (a version no index carries): the build's own metadata then asks for what
# the lock does not hold, which verify must catch.
UNMET_REQUIREMENT_BRANCH = "setup-requires-more"
UNMET_REQUIREMENT = "vllm-fake-dep-a>=9.0"
# A branch off main's last commit that adds the Rust frontend (crates.py): its own branch, so
# that every other scenario keeps building without a Rust toolchain.
RUST_BRANCH = "rust-frontend"
START = dt.datetime(2026, 11, 1, 9, 0, 0, tzinfo=dt.UTC)


def git_env(when: dt.datetime | None = None) -> dict[str, str]:
    """A clean git environment (no user/system config), with fixed identity and dates."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_CONFIG_GLOBAL="/dev/null",
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME=AUTHOR[0],
        GIT_AUTHOR_EMAIL=AUTHOR[1],
        GIT_COMMITTER_NAME=AUTHOR[0],
        GIT_COMMITTER_EMAIL=AUTHOR[1],
        GIT_TERMINAL_PROMPT="0",
        LC_ALL="C",
    )
    if when is not None:
        stamp = when.strftime("%Y-%m-%dT%H:%M:%S+00:00")
        env["GIT_AUTHOR_DATE"] = stamp
        env["GIT_COMMITTER_DATE"] = stamp
    return env


def git(repo: Path, *args: str, when: dt.datetime | None = None) -> str:
    """Run git in repo with the clean environment; return stripped stdout."""
    out = subprocess.run(["git", *args], cwd=repo, env=git_env(when), check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


@dataclass(frozen=True)
class PlannedCommit:
    """One commit of the scripted history."""

    message: str
    state: RepoState
    tag: str | None = None
    annotated: bool = False


def history(ext: ExternalsInfo) -> list[PlannedCommit]:
    """main: old layout (v0.10.0) -> prefix layout (v0.20.0) -> tools layout (v0.32.0) + 2.

    cutlass is pinned by tag; flash-attention and FlashMLA by the real commits of ext's repos."""
    urls = ExternalUrls(ext.url("cutlass"), ext.url("vllm-flash-attn"), ext.url("flashmla"))
    fa = {role: ext.commit("vllm-flash-attn", role) for role in ("old", "new", "newest")}
    mla = {role: ext.commit("flashmla", role) for role in ("1", "2")}
    old = RepoState(OLD, "2.9.0", "0.24.0", "2.9.0", "v4.0.0", fa["old"], urls)
    prefix = RepoState(PREFIX, "2.10.0", "0.25.0", "2.10.0", "v4.2.1", fa["old"], urls)
    tools = RepoState(TOOLS, "2.10.0", "0.25.0", "2.10.0", "v4.2.1", fa["newest"], urls, mla["1"])
    return [
        PlannedCommit("Initial import of the old layout", old, "v0.10.0"),
        PlannedCommit("[Build] bump cutlass to v4.1.0", replace(old, cutlass_tag="v4.1.0")),
        PlannedCommit("[Build] use_existing_torch.py --prefix, requirements/build/", prefix,
                      "v0.20.0", annotated=True),
        PlannedCommit("[Build] bump vllm-flash-attn", replace(prefix, flash_attn_tag=fa["new"])),
        PlannedCommit("[Build] move use_existing_torch.py to tools/, add FlashMLA", tools,
                      "v0.32.0", annotated=True),
        PlannedCommit("[Misc] runtime dependency update", replace(tools, revision=1)),
        PlannedCommit("[Build] bump FlashMLA", replace(tools, revision=2, flashmla_tag=mla["2"])),
    ]


def commit_time(index: int) -> dt.datetime:
    """Deterministic commit date of the index-th commit (one every ~11 hours)."""
    return START + dt.timedelta(hours=11 * index)


def write_tree(repo: Path, files: dict[str, str]) -> None:
    """Make the work tree hold exactly files (besides .git)."""
    tracked = set(git(repo, "ls-files").splitlines()) if (repo / ".git").exists() else set()
    for path in tracked - set(files):
        (repo / path).unlink(missing_ok=True)
    for path, text in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        os.chmod(target, 0o644)


@dataclass(frozen=True)
class RepoInfo:
    """Result of building the repository."""

    path: Path
    commits: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    layout_commits: tuple[tuple[str, str], ...]
    head_state: RepoState


def build_repo(path: Path, ext: ExternalsInfo) -> RepoInfo:
    """Create the non-bare repository at path (replacing anything there), pinning ext's repos."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    git(path, "init", "-q", "--initial-branch=main")
    commits: list[str] = []
    tags: dict[str, str] = {}
    layouts: dict[str, str] = {}
    planned_commits = history(ext)
    for i, planned in enumerate(planned_commits):
        when = commit_time(i)
        write_tree(path, repo_files(planned.state))
        git(path, "add", "-A", when=when)
        git(path, "commit", "-q", "-m", planned.message, when=when)
        sha = git(path, "rev-parse", "HEAD")
        commits.append(sha)
        if planned.tag:
            if planned.annotated:
                git(path, "tag", "-a", planned.tag, "-m", f"vLLM {planned.tag}", when=when)
            else:
                git(path, "tag", planned.tag, when=when)
            tags[planned.tag] = sha
            layouts.setdefault(planned.state.layout, sha)
    layouts[TOOLS] = commits[-1]
    _add_arch_drop_branch(path, planned_commits[-1].state, commit_time(len(planned_commits)))
    _add_unmet_requirement_branch(path, planned_commits[-1].state, commit_time(len(planned_commits)))
    _add_rust_branch(path, planned_commits[-1].state, commit_time(len(planned_commits) + 1))
    return RepoInfo(path, tuple(commits), tuple(sorted(tags.items())),
                    tuple(sorted(layouts.items())), planned_commits[-1].state)


def _add_arch_drop_branch(path: Path, state: RepoState, when: dt.datetime) -> None:
    kept = ";".join(a for a in CUDA_SUPPORTED_ARCHS.split(";") if a != DROPPED_ARCH)
    git(path, "checkout", "-q", "-b", ARCH_DROP_BRANCH)
    write_tree(path, repo_files(replace(state, cuda_supported_archs=kept)))
    git(path, "add", "-A", when=when)
    git(path, "commit", "-q", "-m", f"[CI/Build] CUDA kernels: supported archs without {DROPPED_ARCH}", when=when)
    git(path, "checkout", "-q", "main")


def _add_unmet_requirement_branch(path: Path, state: RepoState, when: dt.datetime) -> None:
    files = repo_files(state)
    declared = files["setup.py"].replace("install_requires=requirements,",
                                         f"install_requires=requirements + [{UNMET_REQUIREMENT!r}],")
    assert declared != files["setup.py"]
    git(path, "checkout", "-q", "-b", UNMET_REQUIREMENT_BRANCH, "main")
    write_tree(path, {**files, "setup.py": declared})
    git(path, "add", "-A", when=when)
    git(path, "commit", "-q", "-m", f"[Build] setup.py also requires {UNMET_REQUIREMENT}", when=when)
    git(path, "checkout", "-q", "main")


def _add_rust_branch(path: Path, state: RepoState, when: dt.datetime) -> None:
    git(path, "checkout", "-q", "-b", RUST_BRANCH)
    write_tree(path, repo_files(replace(state, rust=True)))
    git(path, "add", "-A", when=when)
    git(path, "commit", "-q", "-m", "[Frontend] Rust frontend built by setuptools-rust", when=when)
    git(path, "checkout", "-q", "main")


def add_commits(path: Path, state: RepoState, n: int, message: str,
                start_index: int) -> tuple[RepoState, list[str]]:
    """Append n deterministic commits to main (each bumps state.revision)."""
    shas = []
    for k in range(n):
        state = replace(state, revision=state.revision + 1)
        when = commit_time(start_index + k)
        write_tree(path, repo_files(state))
        git(path, "add", "-A", when=when)
        git(path, "commit", "-q", "-m", message if n == 1 else f"{message} ({k + 1}/{n})",
            when=when)
        shas.append(git(path, "rev-parse", "HEAD"))
    return state, shas
