"""verify: clean, then each kind of drift (extra, missing, different, changed file, source), JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from install_support import InstalledLock, cli, install_args, resolve_world_lock

from vllm_lock.shell.uv import uv_bin
from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.repo import UNMET_REQUIREMENT, UNMET_REQUIREMENT_BRANCH

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> InstalledLock:
    root = tmp_path_factory.mktemp("verify")
    cache = root / "cache"
    lock, path = resolve_world_lock(world, root / "dev.lock.toml", cache)
    opt = root / "opt"
    result = cli(*install_args(path, opt), cache=cache)
    assert result.returncode == 0, result.stderr
    site = next((opt / "vllm" / "lib").glob("python3*/site-packages"))
    return InstalledLock(lock=lock, path=path, cache=cache, opt=opt, site=site)


def _verify(installed: InstalledLock, *extra: str) -> subprocess.CompletedProcess[str]:
    return cli("verify", str(installed.path), "--venv", str(installed.opt / "vllm"), *extra, cache=installed.cache)


def test_clean(installed: InstalledLock) -> None:
    result = _verify(installed)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "clean" in result.stdout
    data = json.loads(_verify(installed, "--json").stdout)
    assert data["drift"] is False and data["vllm_version"]
    # the built vLLM's own Requires-Dist was read and every line for the target is met
    # (common.txt's five, cpu.txt's torchaudio and torchvision)
    assert data["requires_dist_checked"] >= 5 and data["unmet"] == [] and data["notes"] == []


def test_a_cpu_lock_builds_with_the_cpu_build_file(installed: InstalledLock) -> None:
    lock = installed.lock  # target device cpu
    assert lock.build.target_device == "cpu"
    assert lock.layout.build_requirements == "requirements/build/cpu.txt"
    # its torch line (torch==X+cpu; marker) is stripped: torch comes from the lock's torch index
    assert "requirements/build/cpu.txt" in {f.path for f in lock.layout.patched_files}
    assert not any(r.startswith("torch") for r in lock.layout.build_set)


def test_drift_is_reported_then_repaired_state_is_clean(installed: InstalledLock) -> None:
    site: Path = installed.site
    # extra: a foreign distribution
    extra = site / "intruder-1.0.dist-info"
    extra.mkdir()
    (extra / "METADATA").write_text("Metadata-Version: 2.1\nName: intruder\nVersion: 1.0\n")
    # missing: filelock's metadata moved away
    filelock = next(site.glob("filelock-*.dist-info"))
    hidden = filelock.with_name("hidden")
    filelock.rename(hidden)
    # changed: a file of typing_extensions edited after install
    module = site / "typing_extensions.py"
    original = module.read_bytes()
    module.write_bytes(original + b"\n# edited\n")
    # different: a version rewritten in METADATA
    packaging = next(site.glob("packaging-*.dist-info")) / "METADATA"
    meta = packaging.read_text()
    packaging.write_text(meta.replace("Version: 25.0", "Version: 24.0", 1))
    try:
        result = _verify(installed)
        assert result.returncode == 1, result.stdout + result.stderr
        out = result.stdout
        assert "extra      intruder==1.0" in out
        assert "missing    filelock==" in out
        assert "changed    typing_extensions.py" in out
        assert "different  packaging: installed 24.0" in out
        data = json.loads(_verify(installed, "--json").stdout)
        assert data["drift"] and data["extra"] == ["intruder==1.0"]
    finally:
        shutil.rmtree(extra)
        hidden.rename(filelock)
        module.write_bytes(original)
        packaging.write_text(meta)
    assert _verify(installed).returncode == 0


def test_a_file_no_package_installed_is_drift(installed: InstalledLock, tmp_path: Path) -> None:
    """A `.pth` planted in site-packages runs at every start of the environment; no distribution's
    RECORD lists it, so verify names it (and a linked directory, which no wheel can install);
    the bytecode Python writes into __pycache__ is not drift."""
    site: Path = installed.site
    planted = site / "zz-planted.pth"
    planted.write_text("import os\n")
    link = site / "linked_pkg"
    link.symlink_to(tmp_path)
    cache_dir = site / "filelock" / "__pycache__"
    cache_dir.mkdir(exist_ok=True)
    bytecode = cache_dir / "planted_probe.cpython-311.pyc"
    bytecode.write_bytes(b"not checked: Python writes these")
    try:
        result = _verify(installed)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "  unowned    zz-planted.pth" in result.stdout.splitlines()
        assert "  unowned    linked_pkg/ (a link)" in result.stdout.splitlines()
        assert "planted_probe" not in result.stdout
        data = json.loads(_verify(installed, "--json").stdout)
        assert data["drift"] and data["unowned"] == ["linked_pkg/ (a link)", "zz-planted.pth"]
    finally:
        planted.unlink()
        link.unlink()
        bytecode.unlink()
    assert _verify(installed).returncode == 0


def test_fifos_in_the_venv_are_drift_not_a_hang(installed: InstalledLock) -> None:
    """Whoever can write into the venv must not be able to stall verify (which then never reports
    the drift) by planting a FIFO where it reads: an extra distribution's METADATA, an installed
    file its RECORD lists."""
    site: Path = installed.site
    extra = site / "stalling-1.0.dist-info"
    extra.mkdir()
    os.mkfifo(extra / "METADATA")
    # fed and held open by a writer: read to its end, it would never end; read, it names another
    feeder = os.open(extra / "METADATA", os.O_RDWR)
    os.write(feeder, b"Metadata-Version: 2.1\nName: fed\nVersion: 1.0\n\n")
    unfed = site / "waiting-1.0.dist-info"
    unfed.mkdir()
    os.mkfifo(unfed / "METADATA")  # no writer: opening it to read waits for one
    module = site / "typing_extensions.py"
    original = module.read_bytes()
    module.unlink()
    os.mkfifo(module)
    try:
        try:
            result = cli("verify", str(installed.path), "--venv", str(installed.opt / "vllm"), cache=installed.cache,
                         timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail("verify blocked on a FIFO planted in the venv")
        assert result.returncode == 1, result.stdout + result.stderr
        assert "extra      stalling==?" in result.stdout and "fed" not in result.stdout
        assert "extra      waiting==?" in result.stdout
        assert "changed    typing_extensions.py" in result.stdout
    finally:
        os.close(feeder)
        shutil.rmtree(extra)
        shutil.rmtree(unfed)
        module.unlink()
        module.write_bytes(original)
    assert _verify(installed).returncode == 0


def test_a_second_dist_info_of_an_installed_name_is_drift(installed: InstalledLock) -> None:
    """Two *.dist-info of one distribution (a copy planted beside it, or what a half uninstall
    left) are drift, whichever the directory listing gives first: reading one would hide the other."""
    site: Path = installed.site
    filelock = next(site.glob("filelock-*.dist-info"))
    planted = filelock.with_name("filelock-0.0.0.dist-info")
    shutil.copytree(filelock, planted)
    try:
        result = _verify(installed)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "filelock" in "".join(line for line in result.stdout.splitlines() if line.startswith("  extra "))
    finally:
        shutil.rmtree(planted)
    assert _verify(installed).returncode == 0


def test_source_drift(installed: InstalledLock) -> None:
    src = installed.opt / "vllm_repo"
    patched = installed.lock.layout.patched_files[0].path
    target = src / patched
    original = target.read_bytes()
    target.write_bytes(original + b"torch==9.9\n")
    try:
        result = _verify(installed)
        assert result.returncode == 1 and f"source     {patched} differs" in result.stdout
    finally:
        target.write_bytes(original)


def test_other_lock_is_drift(installed: InstalledLock, world: TestWorld, tmp_path: Path) -> None:
    _, other = resolve_world_lock(world, tmp_path / "other.lock.toml", installed.cache, torch_date="2026-11-05")
    result = cli("verify", str(other), "--venv", str(installed.opt / "vllm"), cache=installed.cache)
    assert result.returncode == 1
    assert "different  torch" in result.stdout and "receipt" in result.stdout


def test_error_exits_2(installed: InstalledLock, tmp_path: Path) -> None:
    result = cli("verify", str(installed.path), "--venv", str(tmp_path / "nothing"), cache=installed.cache)
    assert result.returncode == 2 and result.stderr.startswith("error:")
    result = cli("verify", str(tmp_path / "missing.lock.toml"), cache=installed.cache)
    assert result.returncode == 2


def _uv(installed: InstalledLock, *args: str) -> None:
    python = installed.opt / "vllm" / "bin" / "python"
    env = dict(os.environ, UV_CACHE_DIR=str(installed.cache / "uv-test"), UV_OFFLINE="1")
    subprocess.run([uv_bin(), "pip", *args, "--python", str(python)], check=True, capture_output=True, env=env)


def test_a_requirement_uninstalled_afterwards_is_unmet(installed: InstalledLock) -> None:
    gen = Path(os.readlink(installed.opt / "vllm")).parent
    (wheel,) = (gen / "wheels").rglob("vllm_fake_dep_a-*.whl")
    _uv(installed, "uninstall", "vllm-fake-dep-a")
    try:
        result = _verify(installed)
        assert result.returncode == 1, result.stdout + result.stderr
        # named from the built vLLM's own metadata (common.txt: vllm-fake-dep-a>=1.1), beside the
        # lock's own view of the same package
        assert "unmet      vllm requires vllm-fake-dep-a>=1.1: not installed" in result.stdout
        data = json.loads(_verify(installed, "--json").stdout)
        assert data["unmet"] == ["vllm requires vllm-fake-dep-a>=1.1: not installed"]
    finally:
        _uv(installed, "install", "--no-deps", str(wheel))
    assert _verify(installed).returncode == 0


def test_install_fails_at_verify_when_the_build_requires_what_the_lock_lacks(installed: InstalledLock, world: TestWorld,
                                                                             tmp_path: Path) -> None:
    # the branch's setup.py adds a requirement its requirements files do not name: the lock
    # (read from those files) carries vllm-fake-dep-a 1.1.0, the built metadata asks for >=9.0
    _, path = resolve_world_lock(world, tmp_path / "more.lock.toml", installed.cache, ref=UNMET_REQUIREMENT_BRANCH)
    opt = tmp_path / "opt"
    result = cli(*install_args(path, opt), cache=installed.cache)
    assert result.returncode == 6, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: the built vLLM's own requirements are not met: vllm requires {UNMET_REQUIREMENT}: "
                      "vllm-fake-dep-a 1.1.0 is installed"]
    assert "Traceback" not in result.stderr
    assert not (opt / "vllm").exists()  # nothing switched to the failed generation


def test_left_out_members_are_notes_not_drift(installed: InstalledLock, world: TestWorld, tmp_path: Path) -> None:
    # cpu.txt declares torchaudio; a lock made with --without torchaudio does not install it
    _, path = resolve_world_lock(world, tmp_path / "without.lock.toml", installed.cache, without=("torchaudio",))
    opt = tmp_path / "opt"
    result = cli(*install_args(path, opt), cache=installed.cache)
    assert result.returncode == 0, result.stdout + result.stderr
    note = "vllm requires torchaudio; platform_machine != \"s390x\": not installed (left out on purpose by the lock"
    assert note in result.stderr
    verified = cli("verify", str(path), "--venv", str(opt / "vllm"), cache=installed.cache)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert f"note       {note}" in verified.stdout


def test_install_s_own_verification_names_the_package_drift_alone(installed: InstalledLock) -> None:
    """install.verify_built (what install runs after a build or a substitution) refuses a package
    set that differs from the lock, naming only its differences."""
    from vllm_lock.actions.install import verify_built
    from vllm_lock.errors import InstallError

    venv, src = installed.opt / "vllm", installed.opt / "vllm_repo"
    version, _, report = verify_built(installed.lock, venv, src, {})
    assert f"g{installed.lock.vllm.commit[:9]}" in version and report.package_drift is None
    extra = installed.site / "intruder-1.0.dist-info"
    extra.mkdir()
    (extra / "METADATA").write_text("Metadata-Version: 2.1\nName: intruder\nVersion: 1.0\n")
    try:
        with pytest.raises(InstallError) as refused:
            verify_built(installed.lock, venv, src, {})
    finally:
        shutil.rmtree(extra)
    assert str(refused.value) == "the installed environment does not match the lock: extra intruder==1.0"
