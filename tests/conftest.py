"""Shared pytest fixtures, and the suite's isolation.

Every test writes only under temporary directories: for the whole session HOME, XDG_CACHE_HOME
and VLLM_LOCK_CACHE point into pytest's temporary directory (so no test reads or fills the real
~/.cache/vllm-lock, a user's git or uv configuration, or another run's mirrors).

One folder may outlive a run: the suite cache, $VLLM_LOCK_TEST_CACHE (default
~/.cache/vllm-lock-tests of the real HOME). It only holds downloads checked against pinned
hashes or content-keyed build products:
  testworld-pypi/   the seven PyPI wheels the test world serves ($VLLM_LOCK_TESTWORLD_CACHE
                    unless that is set), each sha256-checked against its pin
  phoenix/          the Phoenix tests' debootstrapped rootfs and offline bundle tarballs (keyed by
                    their package list and by the vllm-lock source digest)
  sdists/           the real vLLM release sdists of tests/real (checked against PyPI's sha256)
  real-corpus-uv/   uv's cache for tests/real's resolves against PyPI (pages and metadata)
  real-corpus-wheels/  the wheel store of tests/real's installs (content-addressed by sha256)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from vllm_lock_testworld import TestWorld

REAL_HOME = Path.home()
SUITE_CACHE = Path(os.environ.get("VLLM_LOCK_TEST_CACHE") or REAL_HOME / ".cache" / "vllm-lock-tests")


@pytest.fixture(scope="session", autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """HOME, XDG_CACHE_HOME and VLLM_LOCK_CACHE in the session's temporary directory."""
    root = tmp_path_factory.mktemp("isolated")
    home = root / "home"
    home.mkdir()
    # git commits made by tests (promote --commit) need an identity; the real ~/.gitconfig is gone
    (home / ".gitconfig").write_text("[user]\n\tname = vllm-lock tests\n\temail = tests@vllm-lock.invalid\n")
    with pytest.MonkeyPatch.context() as mp:
        # exported, so that helpers reading it at call time (tests/phoenix/rootfs.py, tests/real/sdists.py)
        # find the suite cache, not one under the HOME set below
        mp.setenv("VLLM_LOCK_TEST_CACHE", str(SUITE_CACHE))
        mp.setenv("VLLM_LOCK_TESTWORLD_CACHE", os.environ.get("VLLM_LOCK_TESTWORLD_CACHE")
                  or str(SUITE_CACHE / "testworld-pypi"))
        for tool, variable in ((".rustup", "RUSTUP_HOME"), (".cargo", "CARGO_HOME")):
            if (REAL_HOME / tool).is_dir() and variable not in os.environ:  # toolchains, read only
                mp.setenv(variable, str(REAL_HOME / tool))
        mp.setenv("HOME", str(home))
        mp.setenv("XDG_CACHE_HOME", str(root / "xdg-cache"))
        mp.setenv("VLLM_LOCK_CACHE", str(root / "vllm-lock-cache"))
        yield root


@pytest.fixture(scope="session")
def world(isolated_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestWorld]:
    """One test world (indexes over HTTP/HTTPS + vLLM-shaped repo) for the whole session.

    Treat it as read-only: tests that mutate a world should create their own.
    """
    w = TestWorld.create(tmp_path_factory.mktemp("testworld"))
    try:
        yield w
    finally:
        w.close()
