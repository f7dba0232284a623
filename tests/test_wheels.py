"""Several wheels per package (issue 9, item 1) and sizes without downloads (item 12), end to end on
a test world whose vLLM requires two packages that publish several wheels fitting one target:
vllm-fake-multi (manylinux_2_17 and manylinux_2_28 builds) and vllm-fake-sound (py3-none-any
without the bundled library beside a platform wheel with it, like soundfile)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from install_support import cli, install_args, resolve_world_lock

from vllm_lock.actions.resolve import ResolveRequest, resolve
from vllm_lock.actions.resolve.hashes import size_without_download
from vllm_lock.model import Lock, Package
from vllm_lock.progress import QUIET
from vllm_lock.shell import uv as uv_shell
from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.repo import git
from vllm_lock_testworld.wheels import WheelSpec, build_wheel

pytestmark = pytest.mark.slow

MULTI = ("vllm_fake_multi-1.0.0-cp311-cp311-manylinux_2_17_x86_64.whl",
         "vllm_fake_multi-1.0.0-cp311-cp311-manylinux_2_28_x86_64.whl")
SOUND = ("vllm_fake_sound-1.0.0-py3-none-any.whl", "vllm_fake_sound-1.0.0-py3-none-manylinux_2_28_x86_64.whl")


def _branch(world: TestWorld, name: str, text: str) -> None:
    git(world.repo_path, "checkout", "-q", "-b", name, "main")
    with (world.repo_path / "requirements" / "common.txt").open("a", encoding="utf-8") as handle:
        handle.write(text)
    git(world.repo_path, "commit", "-q", "-am", f"test: {name}")
    git(world.repo_path, "checkout", "-q", "main")


@dataclasses.dataclass(frozen=True, kw_only=True)
class OwnWorld:
    """A test world of the module's own (with a branch of multi-wheel requirements) and its resolved lock."""

    world: TestWorld
    root: Path
    lock: Lock
    path: Path
    cache: Path


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnWorld]:
    root = tmp_path_factory.mktemp("wheels")
    with TestWorld.create(root / "world") as world:
        _branch(world, "wheels", "vllm-fake-multi>=1.0\nvllm-fake-sound>=1.0\n")
        lock, path = resolve_world_lock(world, root / "dev.lock.toml", root / "cache", ref="wheels")
        yield OwnWorld(world=world, root=root, lock=lock, path=path, cache=root / "cache")


def _package(lock: Lock, name: str) -> Package:
    package = lock.package(name)
    assert package is not None, name
    return package


def test_resolve_locks_every_wheel_that_fits_with_its_hash(own: OwnWorld) -> None:
    world, lock = own.world, own.lock
    for name, files in (("vllm-fake-multi", MULTI), ("vllm-fake-sound", SOUND)):
        package = _package(lock, name)
        assert tuple(w.filename for w in package.wheels) == files  # cp312 wheels do not fit Python 3.11
        for wheel in package.wheels:
            assert wheel.sha256 == world.file_sha256(wheel.filename) and wheel.hash_origin == "index"
            assert wheel.url == world.file_url(wheel.filename)
        assert len({w.sha256 for w in package.wheels}) == 2  # different bytes
    text = own.path.read_text()
    assert "lock-version = 3" in text and text.count("[[packages.wheels]]") == sum(len(p.wheels) for p in lock.packages)


def test_pylock_export_lists_every_wheel_and_uv_installs_the_platform_one(own: OwnWorld, tmp_path: Path) -> None:
    out = tmp_path / "pylock.dev.toml"
    result = cli("export", str(own.path), "-o", str(out), cache=own.cache)
    assert result.returncode == 0, result.stderr
    exported = {p["name"]: p for p in tomllib.loads(out.read_text())["packages"]}
    for name, files in (("vllm-fake-multi", MULTI), ("vllm-fake-sound", SOUND)):
        assert [w["name"] for w in exported[name]["wheels"]] == list(files)
        assert all(w["url"].endswith(w["name"]) and len(w["hashes"]["sha256"]) == 64 for w in exported[name]["wheels"])
    venv = tmp_path / "venv"
    env = uv_shell.uv_env(tmp_path / "uv-cache")
    subprocess.run([uv_shell.uv_bin(), "venv", "-q", "--python", "3.11", str(venv)], env=env, check=True)
    sync = subprocess.run([uv_shell.uv_bin(), "pip", "sync", "--preview-features", "pylock", "--python",
                           str(venv / "bin" / "python"), str(out)], env=env, capture_output=True, text=True)
    assert sync.returncode == 0, sync.stderr
    assert _module(venv, "vllm_fake_sound") == {"tag": "py3-none-manylinux_2_28_x86_64", "bundled": True}


def _module(venv: Path, module: str) -> dict[str, object]:
    code = f"import json, {module} as m; print(json.dumps({{'tag': m.wheel_tag, 'bundled': m.bundled_library}}))"
    out = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=True)
    fields: dict[str, object] = json.loads(out.stdout)
    return fields


@pytest.fixture(scope="module")
def installed(own: OwnWorld) -> Path:
    opt = own.root / "opt"
    result = cli(*install_args(own.path, opt), cache=own.cache)
    assert result.returncode == 0, result.stderr[-3000:]
    return opt


def test_install_lets_uv_pick_and_verify_accepts_the_one_installed(own: OwnWorld, installed: Path) -> None:
    venv = installed / "vllm"
    assert _module(venv, "vllm_fake_sound") == {"tag": "py3-none-manylinux_2_28_x86_64", "bundled": True}
    assert _module(venv, "vllm_fake_multi")["tag"] == "cp311-cp311-manylinux_2_28_x86_64"  # the newest glibc that fits
    result = cli("verify", str(own.path), "--venv", str(venv), "--json", cache=own.cache)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["drift"] is False
    assert report["wheels"]["vllm-fake-sound"] == SOUND[1] and report["wheels"]["vllm-fake-multi"] == MULTI[1]


def test_verify_refuses_a_wheel_the_lock_does_not_list(own: OwnWorld, installed: Path, tmp_path: Path) -> None:
    """Same name and version, another wheel (one for a newer glibc): its files match its own
    RECORD, so only the check against the locked wheels can tell."""
    venv = installed / "vllm"
    foreign = WheelSpec("vllm-fake-sound", "1.0.0", "py3-none-manylinux_2_31_x86_64",
                        (("vllm_fake_sound/__init__.py", 'wheel_tag = "foreign"\nbundled_library = True\n'),))
    wheel = tmp_path / foreign.filename
    wheel.write_bytes(build_wheel(foreign))
    env = uv_shell.uv_env(tmp_path / "uv-cache")
    swap = [uv_shell.uv_bin(), "pip", "install", "-q", "--python", str(venv / "bin" / "python"), "--no-deps",
            "--reinstall", "--offline", "--no-index"]
    subprocess.run([*swap, str(wheel)], env=env, check=True)
    try:
        result = cli("verify", str(own.path), "--venv", str(venv), cache=own.cache)
        assert result.returncode == 1, result.stdout + result.stderr
        assert (f"different  vllm-fake-sound: installed 1.0.0 wheel py3-none-manylinux_2_31_x86_64, "
                f"lock {SOUND[0]} or {SOUND[1]}") in result.stdout
    finally:
        staged = Path(installed / "vllm").resolve().parent / "wheels" / SOUND[1]
        subprocess.run([*swap, str(staged)], env=env, check=True)
    assert cli("verify", str(own.path), "--venv", str(venv), cache=own.cache).returncode == 0


@pytest.mark.parametrize("filename", [MULTI[1], MULTI[0]])  # the one uv would pick, and the one it would not
def test_install_refuses_either_wheel_with_other_bytes(own: OwnWorld, installed: Path, tmp_path: Path,
                                                       filename: str) -> None:
    """Runs after the installs above: the server now serves other bytes under this file's name."""
    own.world.swap_nightly_file(filename)
    result = cli(*install_args(own.path, tmp_path / "opt"), cache=tmp_path / "fresh-cache")
    assert result.returncode == 8, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and filename in errors[0] and "refusing" in errors[0]
    assert not (tmp_path / "opt" / "vllm").exists()


def test_a_version_2_lock_is_refused_with_the_re_resolve_message(own: OwnWorld, tmp_path: Path) -> None:
    old = tmp_path / "old.lock.toml"
    old.write_text(own.path.read_text().replace("lock-version = 3", "lock-version = 2", 1))
    result = cli("show", str(old), cache=own.cache)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        f"error: {old}: lock-version 2 is older than this vllm-lock reads (3); re-resolve it with vllm-lock resolve"]


# ---------------------------------------------------------------- item 12: a sha256 without a size


def test_a_published_hash_without_a_size_is_completed_without_downloading(tmp_path: Path) -> None:
    """The release index publishes #sha256= on an HTML page (no size): resolve asks the server for
    the size (HEAD) and never GETs the file itself (uv may fetch it for its metadata)."""
    with TestWorld.create(tmp_path / "world") as world:
        request = ResolveRequest(repo=world.repo_url, torch_index=world.torch_release_index,
                                 general_index=world.general_index, torch_channel="release", torch_version="2.9.1",
                                 python="3.11", output=tmp_path / "r.lock.toml", cache=tmp_path / "cache")
        lock, _, _ = resolve(request, QUIET)
        torch_family = [w for p in lock.packages if p.source == "torch" for w in p.wheels]
        assert len(torch_family) == 4  # torch, torchvision, torchaudio, triton
        ours = [(method, path) for method, path, agent in world.requests_with_agents if agent == "vllm-lock"]
        for wheel in torch_family:
            path = wheel.url.removeprefix(world.base_url)
            assert wheel.hash_origin == "index" and wheel.sha256 == world.file_sha256(wheel.filename)
            assert wheel.size == len(_served(world, wheel.filename))
            assert ("HEAD", path) in ours and ("GET", path) not in ours
        assert not any((tmp_path / "cache" / "cas").rglob("*.whl"))  # nothing was downloaded to be hashed


def _served(world: TestWorld, filename: str) -> bytes:
    with urllib.request.urlopen(world.file_url(filename)) as response:
        data: bytes = response.read()
        return data


def test_size_from_the_json_form_when_head_gives_none(world: TestWorld) -> None:
    """No answer to HEAD (here: a URL the server does not have): the index's PEP 691 page says
    the size; an index with HTML pages only leaves it unknown (then resolve downloads)."""
    filename = MULTI[0]
    size, how = size_without_download(world.base_url + "/nowhere/" + filename, filename,
                                      world.general_index + "/vllm-fake-multi/")
    assert (size, how) == (len(_served(world, filename)), "the index's JSON page")
    torch = world.filenames("release", "torch")[0]
    assert size_without_download(world.base_url + "/nowhere/" + torch, torch,
                                 world.torch_release_index + "/torch/") == (None, "")


def test_a_wheel_whose_wheel_file_disagrees_with_its_name_is_found_by_its_record(own: OwnWorld, installed: Path,
                                                                                 tmp_path: Path) -> None:
    """Some real wheels record other tags in WHEEL than their file name carries: the installed
    files are then matched against each locked wheel's own RECORD (from the staged wheels)."""
    from vllm_lock.actions.verify import Dist, installed_wheel

    gen = (installed / "vllm").resolve().parent
    site = next((gen / "venv" / "lib").glob("python3*/site-packages"))
    info = tmp_path / "vllm_fake_sound-1.0.0.dist-info"
    subprocess.run(["cp", "-r", str(site / info.name), str(info)], check=True)
    wheel_file = info / "WHEEL"
    wheel_file.write_text(wheel_file.read_text().replace("Tag: py3-none-manylinux_2_28_x86_64",
                                                         "Tag: py3-none-linux_x86_64"))
    dist = Dist(name="vllm-fake-sound", version="1.0.0", dist_info=info)
    package = _package(own.lock, "vllm-fake-sound")
    found = installed_wheel(package, dist, gen / "wheels")
    assert found is not None and found.filename == SOUND[1]
    assert installed_wheel(package, dist, None) is None  # no staged wheels: nothing to match against
    record = info / "RECORD"
    rows = record.read_text().splitlines()
    record.write_text("\n".join(r.replace("sha256=", "sha256=X", 1) if r.startswith("vllm_fake_sound/") else r
                                for r in rows) + "\n")
    assert installed_wheel(package, dist, gen / "wheels") is None  # files other than any locked wheel's
