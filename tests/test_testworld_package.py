"""The test world apart from the product: vllm_lock imports it only when the demo runs, and the
skeleton it generates the vLLM repository from ships in the distribution."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import vllm_lock_testworld
from vllm_lock_testworld import templates

ROOT = Path(__file__).resolve().parents[1]

IMPORT_ALL = """
import importlib, json, pkgutil, sys
import vllm_lock
names = [m.name for m in pkgutil.walk_packages(vllm_lock.__path__, "vllm_lock.")
         if not m.name.endswith(".__main__")]
for name in names:
    importlib.import_module(name)
loaded = sorted(n for n in sys.modules if n.startswith("vllm_lock_testworld"))
print(json.dumps({"imported": names, "testworld": loaded}))
"""


def test_the_product_imports_the_test_world_only_for_the_demo() -> None:
    proc = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, timeout=120,
                          check=True)
    result = json.loads(proc.stdout)
    assert "vllm_lock.actions.demo" in result["imported"] and len(result["imported"]) > 30
    assert result["testworld"] == []


def test_every_skeleton_file_ships_in_the_distribution() -> None:
    """setuptools' package-data globs skip dotfiles and need a pattern per folder: every file under
    skeleton/ must be matched, or the demo of an installed wheel builds another repository."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["vllm_lock_testworld"]
    package = Path(vllm_lock_testworld.__file__).parent
    shipped = {path for pattern in patterns for path in glob.glob(pattern, root_dir=package, recursive=True)
               if (package / path).is_file()}
    skeleton = {path.relative_to(package).as_posix() for path in templates.SKELETON.rglob("*")
                if path.is_file() and "__pycache__" not in path.parts}
    assert len(skeleton) > 20 and skeleton <= shipped, sorted(skeleton - shipped)
