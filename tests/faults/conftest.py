"""Fixtures of the fault suite: the installer helpers of tests/ and loopback fault servers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from vllm_lock_testworld import TestWorld

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # install_support
sys.path.insert(0, str(Path(__file__).resolve().parent))

from faultservers import FaultHTTPServer, SilentListener  # noqa: E402


@pytest.fixture()
def fault_http(world: TestWorld) -> Iterator[FaultHTTPServer]:
    server = FaultHTTPServer(upstream=world.base_url)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def silent_git() -> Iterator[SilentListener]:
    listener = SilentListener()
    try:
        yield listener
    finally:
        listener.close()
