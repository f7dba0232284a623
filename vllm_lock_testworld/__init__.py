"""The vllm-lock test world: local package indexes and a vLLM-shaped git repository.

Used by the test-suite and the offline demo; everything runs on 127.0.0.1.
"""

from __future__ import annotations

from .pypi import PYPI_WHEELS, PypiFetchError, fetch_pypi_wheels
from .wheels import WheelSpec, build_wheel
from .world import TestWorld

__all__ = ["PYPI_WHEELS", "PypiFetchError", "TestWorld", "WheelSpec", "build_wheel",
           "fetch_pypi_wheels"]
