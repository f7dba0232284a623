"""Fixtures of the fault suite: the installer helpers of tests/ and loopback fault servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vllm_lock_testworld import TestWorld

from .faultservers import FaultHTTPServer, SilentListener


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
