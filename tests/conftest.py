"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vllm_lock.testworld import TestWorld


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestWorld]:
    """One test world (indexes over HTTP/HTTPS + vLLM-shaped repo) for the whole session.

    Treat it as read-only: tests that mutate a world should create their own.
    """
    w = TestWorld.create(tmp_path_factory.mktemp("testworld"))
    try:
        yield w
    finally:
        w.close()
