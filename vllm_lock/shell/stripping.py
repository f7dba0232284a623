"""Running a commit's own torch-stripping script on a checkout, and seeing what it changed."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO

from vllm_lock import source_layout as layout_rules
from vllm_lock.shell import proc


def snapshot(tree: Path) -> dict[str, bytes]:
    """The bytes of every file the stripping script may touch, by repository-relative path."""
    found = {}
    # Only the top-level entries a strippable path can start with are walked: a checkout holds
    # some 9,600 other files and .git, which cost a whole-tree walk on every install.
    for top in tree.iterdir():
        if not (top.name == "pyproject.toml" or top.name.startswith("requirements")):
            continue
        for path in (top, *top.rglob("*")) if top.is_dir() and not top.is_symlink() else (top,):
            rel = path.relative_to(tree).as_posix()
            if path.is_file() and layout_rules.is_strippable(rel):
                found[rel] = path.read_bytes()
    return found


def run_stripping_script(
    tree: Path, argv: tuple[str, ...], python: str = sys.executable, log: IO[str] | None = None
) -> proc.Completed:
    """The commit's own script, run from the repository root as it requires."""
    return proc.run([python, *argv], cwd=tree, timeout=120, log=log)
