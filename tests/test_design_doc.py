"""docs/DESIGN.md names every module of the product and of the test world, each with what it owns,
and names none that does not exist: the map stays the territory."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DESIGN = (ROOT / "docs" / "DESIGN.md").read_text(encoding="utf-8")
LAYOUT = DESIGN.split("## Layout", 1)[1].split("```", 2)[1]


def _named() -> set[str]:
    """The layout block: a package line (`vllm_lock/`), then one line per module, indented two
    spaces, its path in the package first (`  shell/git.py   what it owns`)."""
    named: set[str] = set()
    top = ""
    for line in LAYOUT.splitlines():
        if package := re.fullmatch(r"(vllm_lock|vllm_lock_testworld)/(\s.*)?", line):
            top = package.group(1)
        elif module := re.match(r"^  ([a-z_0-9/]+\.py)\s+\S", line):
            named.add(f"{top}/{module.group(1)}")
    return named


def _modules() -> set[str]:
    found = set()
    for package in ("vllm_lock", "vllm_lock_testworld"):
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT).as_posix()
            if "/skeleton/" in relative or path.name == "__init__.py" and path.parent.name not in ("cli", "resolve"):
                continue
            found.add(relative)
    return found


def test_every_module_is_in_the_design_doc() -> None:
    missing = sorted(_modules() - _named())
    assert not missing, f"docs/DESIGN.md does not name: {missing}"


def test_the_design_doc_names_no_module_that_does_not_exist() -> None:
    stale = sorted(_named() - _modules())
    assert not stale, f"docs/DESIGN.md names modules that do not exist: {stale}"
