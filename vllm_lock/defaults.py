"""Default inputs and places, shared by the commands and the actions (kept import-light so the
CLI can show them without loading the actions)."""

from __future__ import annotations

from pathlib import Path

DEFAULT_REPO = "https://github.com/vllm-project/vllm.git"
DEFAULT_GENERAL_INDEX = "https://pypi.org/simple"
# Phoenix's containers are Ubuntu 24.04 (glibc 2.39); vLLM 0.33.0 needs wheels newer than
# manylinux_2_28 (llguidance 1.7 ships x86_64 only for manylinux_2_31 and later).
DEFAULT_PLATFORM = "x86_64-manylinux_2_39"
DEFAULT_VENV = Path("/opt/vllm")  # Phoenix's environment path
DEFAULT_SRC = Path("/opt/vllm_repo")  # Phoenix's source path
MAX_SUBJECTS = 10  # commit subjects a diff lists
