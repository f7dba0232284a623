"""Store and staging containment (defence in depth behind the lock reader): every path built
from a file or source name stays inside its root after resolving, or the call is refused
before anything is written. Hostile values are handed straight to the shell."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from vllm_lock.errors import VllmLockError
from vllm_lock.generation import Generation
from vllm_lock.shell import staging
from vllm_lock.shell.store import Store
from vllm_lock_testworld import TestWorld

from .faultservers import FaultHTTPServer, SilentListener

SHA = hashlib.sha256(b"x").hexdigest()
HOSTILE_NAMES = [
    "../../../../outside/wheel.whl",
    "/outside/wheel.whl",
    "..%2F..%2Foutside%2Fwheel.whl",
    "..",
    "-rf.whl",
    "a\x00b.whl",
]


def _written_outside(root: Path, outside: Path) -> list[Path]:
    return [p for p in outside.rglob("*") if p.is_file()]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_filename_never_leaves_the_store(tmp_path: Path, name: str, world: TestWorld) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    store = Store(tmp_path / "cache" / "x" / "y")
    with pytest.raises(VllmLockError):
        store.path(SHA, name)
    url = world.file_url("packaging-25.0-py3-none-any.whl")
    with pytest.raises(VllmLockError):
        store.fetch(url, name, expected_sha256=None)
    with pytest.raises(VllmLockError):
        store.fetch(url, name, expected_sha256=world.file_sha256("packaging-25.0-py3-none-any.whl"))
    # bypassing the lock reader: a wheel with a hostile name reaching the shell anyway
    wheel = SimpleNamespace(filename=name, plain_filename=name, url=url, sha256=SHA, size=1)
    lock = SimpleNamespace(packages=(SimpleNamespace(name="p", wheels=(wheel,)),))
    with pytest.raises(VllmLockError):
        staging.stage_wheels(lock, store, tmp_path / "gen" / "wheels", lambda _: None)  # type: ignore[arg-type]
    assert _written_outside(store.root, outside) == []
    assert not list((tmp_path / "gen").rglob("*.whl"))


def test_a_bad_hash_is_not_a_path(tmp_path: Path) -> None:
    with pytest.raises(VllmLockError):
        Store(tmp_path).path("../../../outside", "wheel.whl")


def test_a_symlink_inside_the_store_cannot_lead_out(tmp_path: Path) -> None:
    """Resolved, not only lexically checked: a planted link to outside is refused."""
    outside = tmp_path / "outside"
    outside.mkdir()
    store = Store(tmp_path / "cache")
    entry = store.root / "cas" / "sha256"
    entry.mkdir(parents=True)
    os.symlink(outside, entry / SHA)
    with pytest.raises(VllmLockError, match="would leave"):
        store.path(SHA, "wheel.whl")


@pytest.mark.parametrize("name", ["../evil", "{tmp}/gen/evil", ".."])
def test_a_hostile_source_name_never_leaves_the_staging_root(tmp_path: Path, name: str) -> None:
    name = name.format(tmp=tmp_path)  # an absolute name, aimed at this test's own tmp
    source = SimpleNamespace(name=name, repository="file:///nonexistent", commit="1" * 40, ref_kind="commit",
                             ref="1" * 40)
    gen = Generation(root=tmp_path / "gen")
    gen.external.mkdir(parents=True)
    gen.receipt.write_text("{}")
    with pytest.raises(VllmLockError):
        staging.stage((source,), tmp_path / "cache", gen, lambda _: None)  # type: ignore[arg-type]
    assert not (tmp_path / "gen" / "evil").exists() and not (tmp_path / "gen" / "evil.commit").exists()
    assert (tmp_path / "gen" / "receipt.json").exists()  # ".." would have removed the generation


@pytest.mark.parametrize("scheme", ["ftp", "file"])
def test_a_redirect_leaves_http_never(fault_http: FaultHTTPServer, silent_git: SilentListener, scheme: str,
                                      tmp_path: Path) -> None:
    """An index redirecting to ftp: or file: gets an error; no connection is even attempted."""
    from vllm_lock.shell import http

    target = f"ftp://127.0.0.1:{silent_git.port}/x.whl" if scheme == "ftp" else "file:///etc/hostname"
    fault_http.faults["/simple/x/"] = f"redirect:{target}"
    fault_http.faults["/files/x.whl"] = f"redirect:{target}"
    with pytest.raises(VllmLockError):
        http.get_text(fault_http.base_url + "/simple/x/")
    with pytest.raises(VllmLockError):
        http.download(fault_http.base_url + "/files/x.whl", tmp_path / "x.whl")
    assert fault_http.hit.is_set()
    assert not silent_git.accepted.is_set()
    assert not (tmp_path / "x.whl").exists() or (tmp_path / "x.whl").stat().st_size == 0
