"""The skeleton folder: real files of the vLLM-shaped repository, read as text, with `@NAME@`
placeholders filled in and small edits applied per commit (no templating engine)."""

from __future__ import annotations

import re
from pathlib import Path

SKELETON = Path(__file__).parent / "skeleton"
# Stored under another name: setuptools' package-data globs leave dotfiles out of the wheel.
STORED_AS = {"gitignore": ".gitignore"}
_PLACEHOLDER = re.compile(r"@[A-Z][A-Z0-9_]*@")


def read_tree(folder: str) -> dict[str, str]:
    """Every file under skeleton/<folder>, by its path in the repository (sorted)."""
    root = SKELETON / folder
    files = {}
    for path in sorted(root.rglob("*")):
        # pip compiles the .py files it installs: their __pycache__ is not part of the skeleton
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(root).as_posix()
            files[STORED_AS.get(relative, relative)] = path.read_text(encoding="utf-8")
    if not files:
        raise FileNotFoundError(f"the test world's skeleton has no files under {root}")
    return files


def read_file(path: str) -> str:
    """One file of the skeleton (path relative to skeleton/)."""
    return (SKELETON / path).read_text(encoding="utf-8")


def fill(files: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    """files with every `@NAME@` replaced by values[NAME]; a placeholder left unfilled is an error."""
    filled = {}
    for path, text in files.items():
        for name, value in values.items():
            text = text.replace(f"@{name}@", value)
        left = _PLACEHOLDER.search(text)
        if left:
            raise KeyError(f"{path}: no value for {left.group()}")
        filled[path] = text
    return filled


def replace_once(text: str, old: str, new: str) -> str:
    """text with its one occurrence of old replaced by new (an edit that no longer applies fails)."""
    if text.count(old) != 1:
        raise ValueError(f"{old!r} is not in the text exactly once")
    return text.replace(old, new)
