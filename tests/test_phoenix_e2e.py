"""The Phoenix vLLM feature on a fresh container: a debootstrapped bookworm driven through the
pct stand-in (chroot), with the test world's HTTPS index signed by a throwaway root CA.

The rootfs is built once with debootstrap and cached (tests/phoenix/rootfs.py); each test gets a
fresh copy. These tests skip only when debootstrap cannot run here, and never when
VLLM_LOCK_REQUIRE_PHOENIX=1 (set by scripts/test.sh, the README's test command), where that is a failure instead.

The test world's git repository and its external source repositories (CUTLASS, flash-attention,
FlashMLA) are file:// URLs on the host; each container gets them bind-mounted read-only at the same
paths (what Phoenix's `mount_points` would do), so the lock's URLs work unchanged inside.
Everything else goes over loopback to the test world's index.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vllm_lock_testworld import TestWorld

sys.path.insert(0, str(Path(__file__).parent / "phoenix"))
import harness as ph  # noqa: E402
import rootfs  # noqa: E402

CTID = "801"
REQUIRED = os.environ.get("VLLM_LOCK_REQUIRE_PHOENIX") == "1"

pytestmark = pytest.mark.slow


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"Phoenix e2e required (VLLM_LOCK_REQUIRE_PHOENIX=1) but unavailable: {reason}")
    pytest.skip(f"Phoenix e2e unavailable: {reason}")


@pytest.fixture(scope="session")
def phoenix_rootfs() -> Path:
    try:
        tarball: Path = rootfs.ensure_tarball()
        return tarball
    except rootfs.RootfsUnavailable as exc:
        _unavailable(str(exc))
        raise


@pytest.fixture(scope="session")
def phoenix_bundle(phoenix_rootfs: Path) -> Path:
    """The offline bundle, from the project's own builder: its failure fails the tests that need
    it (only a missing external prerequisite, debootstrap, may skip; phoenix_rootfs decides that
    first, so a machine that cannot run the containers never gets here)."""
    try:
        bundle: Path = ph.ensure_bundle(rootfs.cache_dir())
        return bundle
    except (ph.BundleBuildFailed, subprocess.TimeoutExpired) as exc:
        failure = f"phoenix/build-vllm-lock-bundle.sh failed: {exc}"
    pytest.fail(failure, pytrace=False)


@pytest.fixture(scope="session")
def phoenix_lock(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lock for the container (Python 3.11, CPU build), every index URL on HTTPS."""
    out = tmp_path_factory.mktemp("phoenix-lock") / "stable.lock.toml"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env["SSL_CERT_FILE"] = str(world.ca_cert)  # the host side trusts the test CA
    argv = [str(Path(sys.executable).parent / "vllm-lock"), "resolve", "--repo", world.repo_url,
            "--torch-index", world.https_url(world.torch_nightly_index),
            "--index", world.https_url(world.general_index),
            "--python", "3.11", "--torch-date", world.latest_consistent_date.isoformat(),
            "--target-device", "cpu", "--platform", "x86_64-manylinux_2_28", "-o", str(out)]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "https://" in out.read_text()
    return out


@pytest.fixture
def host(tmp_path: Path, phoenix_rootfs: Path) -> ph.Host:
    return ph.make_host(tmp_path / "host", ph.phoenix_config(CTID))


@pytest.fixture
def container(host: ph.Host, phoenix_rootfs: Path, world: TestWorld) -> Iterator[ph.Container]:
    mounts = [(world.repo_path, str(world.repo_path)), (world.external_root, str(world.external_root))]
    ct = ph.create_container(host, CTID, phoenix_rootfs, bind_mounts=mounts)
    try:
        ct.install_nvidia_stub()
        yield ct
    finally:
        ph.stop_container(ct)


# ---- the pct stand-in ------------------------------------------------------------------------
def test_pct_standin_exec_push_and_clean_environment(host: ph.Host, container: ph.Container) -> None:
    src = host.root / "hello.txt"
    src.write_text("hello\n")
    assert host.pct("push", CTID, str(src), "/root/hello.txt").returncode == 0
    proc = container.exec("cat", "/root/hello.txt")
    assert proc.stdout == "hello\n"
    assert container.exec("sh", "-c", "exit 7").returncode == 7
    env = container.exec("env").stdout
    assert "PCT_STANDIN_ROOT" not in env and "HOME=/root" in env
    assert container.exec("python3", "-c", "import sys; print(sys.version_info[:2])").stdout.strip() == "(3, 11)"
    # push refuses a missing parent directory, like pct
    assert host.pct("push", CTID, str(src), "/nonexistent/x", check=False).returncode != 0
    assert host.pct("status", CTID).stdout.strip() == "status: running"


# ---- streaming -------------------------------------------------------------------------------
# The command prints a line, then blocks on a FIFO the test writes to only after it has observed
# what the caller shows (or does not show) of that line: the assertions are about the order of
# events, never about elapsed time.
GATE = "/root/gate"
FIRST_WRITTEN = "/root/first-written"
GATED_CMD = f"echo first; touch {FIRST_WRITTEN}; read go <{GATE}; echo second"


def _bash(host: ph.Host, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["bash", "-c", code], env=host.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def _gated(host: ph.Host, container: ph.Container,
           code: str) -> Iterator[tuple[subprocess.Popen[str], Callable[[], None]]]:
    """`bash -c code` on the host, with a FIFO at GATE in the container; the callable lets the
    blocked command go on. The test's end is opened read-write, which never blocks and keeps what
    it wrote for a reader that opens later; closing it on the way out (EOF) frees a command a
    failed assertion left blocked."""
    fifo = container.path(GATE)
    os.mkfifo(fifo)
    fd = os.open(fifo, os.O_RDWR)

    def release() -> None:
        os.write(fd, b"go\n")

    proc = _bash(host, code)
    try:
        yield proc, release
    finally:
        os.close(fd)
        if proc.poll() is None:
            proc.communicate(timeout=60)
        fifo.unlink()
        container.path(FIRST_WRITTEN).unlink(missing_ok=True)


def test_build_output_streams_into_the_log_while_pct_exec_holds_it(host: ph.Host, container: ph.Container) -> None:
    # pct_exec (Phoenix's contract): nothing until the command has ended. The command has written
    # "first" (the marker comes after the echo) and is blocked on the gate, yet nothing has reached
    # the caller's stdout.
    utils = host.phoenix / "bin" / "phoenix_hypervisor_common_utils.sh"
    with _gated(host, container, f'source "{utils}"; pct_exec {CTID} -- sh -c "{GATED_CMD}"') as (proc, release):
        assert ph.wait_for(container.path(FIRST_WRITTEN).exists, timeout=60), "the command never ran"
        assert proc.stdout is not None  # _bash pipes it
        ready, _, _ = select.select([proc.stdout], [], [], 0)
        assert not ready, "pct_exec passed output on while the command ran: it must capture-then-print"
        release()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out == "first\nsecond\n"

    # the feature script's run_streaming: each line reaches Phoenix's log as it is printed, here
    # while the command is still blocked, before it prints the second
    host.log_file.write_text("")
    code = f'source "{host.script}"; CTID={CTID}; STREAM_TAIL=$(mktemp); run_streaming demo sh -c "{GATED_CMD}"'
    with _gated(host, container, code) as (proc, release):
        assert ph.wait_for(lambda: "[demo] first" in host.log() or proc.poll() is not None, timeout=60)
        assert "[demo] first" in host.log(), "the first line did not reach the log while the command ran"
        assert "[demo] second" not in host.log()
        release()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    log = host.log()
    assert "[demo] second" in log and log.index("[demo] first") < log.index("[demo] second")


def test_host_proxy_ca_is_pushed_into_the_trust_store(host: ph.Host, container: ph.Container,
                                                      world: TestWorld) -> None:
    certs = host.phoenix / "etc" / "certs"
    certs.mkdir(parents=True)
    shutil.copy2(world.ca_cert, certs / "proxy_ca.crt")
    proc = _bash(host, f'source "{host.script}"; CTID={CTID}; install_proxy_ca_certificate')
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert container.path("/usr/local/share/ca-certificates/proxy_ca.crt").read_bytes() == world.ca_cert.read_bytes()
    assert container.path("/etc/ssl/certs/proxy_ca.pem").is_symlink()  # absolute link: read it inside
    # the container now trusts the test world's HTTPS index through its system store
    probe = container.exec("python3", "-c", "import urllib.request, sys; "
                           "urllib.request.urlopen(sys.argv[1], timeout=10).read()",
                           world.https_url(world.general_index) + "/")
    assert probe.returncode == 0, probe.stderr


APT_STUB = """#!/bin/sh
echo "apt-get $*" >>/root/apt-calls
"""


def test_only_missing_os_packages_are_installed(host: ph.Host, container: ph.Container) -> None:
    stub = container.path("/usr/local/sbin/apt-get")  # first on the container's PATH; no network
    stub.write_text(APT_STUB)
    stub.chmod(0o755)
    source = f'source "{host.script}"; CTID={CTID}; STREAM_TAIL=$(mktemp); install_os_packages'

    out, err = _bash(host, source).communicate(timeout=60)
    assert "OS packages already present" in err
    assert not container.path("/root/apt-calls").exists()

    assert container.exec("dpkg", "--purge", "--force-depends", "ninja-build").returncode == 0
    proc = _bash(host, source)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    calls = container.path("/root/apt-calls").read_text().splitlines()
    assert calls == ["apt-get update -q", "apt-get install -y -q --no-install-recommends ninja-build"]
    assert "[apt] running in CTID" in host.log()


# ---- hostile input against a real container --------------------------------------------------
def test_hostile_lock_name_is_refused_in_a_real_container(host: ph.Host, container: ph.Container,
                                                          phoenix_lock: Path, tmp_path: Path) -> None:
    # the payload's target is the test's own: on the host if the script ran it there, the same
    # path inside the container if it reached `pct exec`
    pwned = tmp_path / "pwned"
    container.path(str(tmp_path)).mkdir(parents=True)  # so that the payload could succeed in there
    shutil.copy2(phoenix_lock, host.lock_dir / "stable.lock.toml")
    host.write_config(ph.phoenix_config(CTID, vllm_lock=f"dev; touch {pwned}"))
    calls_before = host.pct_calls()
    proc = host.run(CTID, "https://172.16.100.11:9000")
    assert proc.returncode == 2
    assert "Refusing" in proc.stderr
    assert host.pct_calls() == calls_before
    assert not pwned.exists() and not container.path(str(pwned)).exists()
    assert not container.path("/opt/vllm-lock").exists()


# ---- the whole feature -----------------------------------------------------------------------
def test_fresh_container_tls_failure_then_install_then_noop(
    host: ph.Host, container: ph.Container, phoenix_lock: Path, phoenix_bundle: Path, world: TestWorld
) -> None:
    shutil.copy2(phoenix_lock, host.lock_dir / "stable.lock.toml")
    shutil.copy2(phoenix_bundle, host.bundle)

    # 1. the container does not trust the test root CA yet: a clean TLS failure
    t0 = time.monotonic()
    proc = host.run(CTID, "https://172.16.100.11:9000")
    t_fail = time.monotonic() - t0
    assert proc.returncode != 0, proc.stderr
    assert "TLS verification failed" in proc.stderr, proc.stderr[-4000:]
    assert "Traceback" not in proc.stderr.split("TLS verification failed")[1]

    # 2. trusted_ca installs the root CA; this time the build itself fails (compiler broken),
    #    after the source checkout exists
    container.install_root_ca(world.ca_cert)
    gcc = "/usr/bin/x86_64-linux-gnu-gcc-12"
    assert container.exec("chmod", "a-x", gcc).returncode == 0
    proc = host.run(CTID, "https://172.16.100.11:9000")
    assert proc.returncode != 0
    assert "vllm-lock install failed" in proc.stderr
    assert "TLS verification failed" not in proc.stderr
    assert container.exec("test", "-d", "/opt/vllm.generations").returncode == 0

    # 3. the cause is fixed; the rerun resumes over what the failed run left and succeeds
    assert container.exec("chmod", "a+x", gcc).returncode == 0
    t0 = time.monotonic()
    proc = host.run(CTID, "https://172.16.100.11:9000")
    t_install = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert "vLLM installed from lock 'stable'" in proc.stderr
    assert not any("apt-get" in c for c in host.pct_calls()), "packages were preinstalled"
    build_lines = [line for line in host.log().splitlines() if "[vllm-lock] " in line]
    assert len(build_lines) > 1, "vllm-lock install output was not streamed into the log"

    version = container.exec("/opt/vllm/bin/vllm", "--version")
    assert version.returncode == 0, version.stdout + version.stderr
    runner = container.exec("/opt/vllm/bin/python", "-c", "import vllm.entrypoints.openai.api_server")
    assert runner.returncode == 0, runner.stdout + runner.stderr
    verify = container.exec("/opt/vllm-lock/venv/bin/vllm-lock", "verify",
                            "/opt/vllm-lock/locks/stable.lock.toml", "--venv", "/opt/vllm")
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # 4. a second run is a quick no-op
    calls_before = len(host.pct_calls())
    t0 = time.monotonic()
    proc = host.run(CTID, "https://172.16.100.11:9000")
    t_noop = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "nothing to do" in proc.stderr
    rerun_calls = host.pct_calls()[calls_before:]
    assert not any(" install " in c for c in rerun_calls), rerun_calls
    assert t_noop < 30, f"no-op rerun took {t_noop:.1f}s"
    if os.environ.get("PHOENIX_E2E_SHOW_LOG"):
        print(host.log())
    print(f"\nphoenix e2e timings: tls-failure {t_fail:.1f}s, install {t_install:.1f}s, no-op {t_noop:.1f}s")


# ---- signed locks ------------------------------------------------------------------------------
def test_signed_locks_are_checked_on_the_host_and_again_in_the_container(
    host: ph.Host, container: ph.Container, phoenix_lock: Path, phoenix_bundle: Path, world: TestWorld,
    tmp_path: Path,
) -> None:
    from vllm_lock import codec

    lock = host.lock_dir / "stable.lock.toml"
    shutil.copy2(phoenix_lock, lock)
    shutil.copy2(phoenix_bundle, host.bundle)
    container.install_root_ca(world.ca_cert)
    key = ph.make_ssh_key(tmp_path / "keys" / "release", "release")
    ph.trust_key(host, key)
    assert container.exec("ssh-keygen", "-Y", "sign").returncode != 127, "the rootfs must have ssh-keygen"

    # 1. trusted keys configured, the lock unsigned: refused on the host, nothing reaches the container
    calls_before = len(host.pct_calls())
    proc = host.run(CTID, "https://172.16.100.11:9000")
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "is not signed" in proc.stderr
    assert host.pct_calls()[calls_before:] == []
    assert not container.path("/opt/vllm-lock").exists()

    # 2. signed: the host checks it, pushes lock + signature + trusted keys, and the container's
    #    `vllm-lock install --require-signed` checks it again before it builds
    sig = ph.ssh_sign(key, lock)
    proc = host.run(CTID, "https://172.16.100.11:9000")
    assert proc.returncode == 0, proc.stderr[-6000:]
    assert f"Lock 'stable': good signature by {ph.SIGNER}" in proc.stderr
    container_check = [line for line in host.log().splitlines()
                       if "[vllm-lock] " in line and f"good signature by {ph.SIGNER}" in line]
    assert container_check, "the container's install did not check the signature"
    assert any("--require-signed" in call for call in host.pct_calls())
    assert container.path("/opt/vllm-lock/locks/stable.lock.toml.sig").read_bytes() == sig.read_bytes()
    assert container.path("/opt/vllm-lock/locks/stable.lock.toml").read_bytes() == lock.read_bytes()

    # 3. the container's own check holds by itself: a lock changed there after signing is refused
    ct_lock = container.path("/opt/vllm-lock/locks/stable.lock.toml")
    signed_bytes = ct_lock.read_bytes()
    ct_lock.write_bytes(signed_bytes + b"\n")
    refused = container.exec("/opt/vllm-lock/venv/bin/vllm-lock", "install", "/opt/vllm-lock/locks/stable.lock.toml",
                             "--venv", "/opt/vllm", "--src", "/opt/vllm_repo", "--require-signed",
                             "--trusted-keys", "/opt/vllm-lock/allowed_signers")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "signature does not match the lock" in refused.stderr
    ct_lock.write_bytes(signed_bytes)

    # 4. edited on the host after signing, content hash recomputed: refused on the host; the
    #    installed environment is left as it was
    stamp = container.path("/opt/vllm-lock/installed").read_text()
    edited = codec.loads(lock.read_text())
    lock.write_text(codec.dumps(dataclasses.replace(edited, general_index=edited.general_index + "/")))
    calls_before = len(host.pct_calls())
    proc = host.run(CTID, "https://172.16.100.11:9000")
    assert proc.returncode == 3
    assert "signature does not match the lock" in proc.stderr
    assert host.pct_calls()[calls_before:] == []
    assert container.path("/opt/vllm-lock/installed").read_text() == stamp
    assert container.exec("/opt/vllm/bin/vllm", "--version").returncode == 0


# ---- the binary cache and offline lock bundles ---------------------------------------------------
SECOND_CTID = "802"


def _two_container_config(**root_keys: Any) -> dict[str, Any]:
    """801 and 802 alike (same lock, same template); root_keys are fleet-wide defaults."""
    config: dict[str, Any] = ph.phoenix_config(CTID)
    config["lxc_configs"][SECOND_CTID] = copy.deepcopy(config["lxc_configs"][CTID])
    config.update(root_keys)
    return config


@contextlib.contextmanager
def _another_container(host: ph.Host, ctid: str, tarball: Path,
                       mounts: list[tuple[Path, str]]) -> Iterator[ph.Container]:
    ct = ph.create_container(host, ctid, tarball, bind_mounts=mounts)
    try:
        ct.install_nvidia_stub()
        yield ct
    finally:
        ph.stop_container(ct)


def _world_mounts(world: TestWorld) -> list[tuple[Path, str]]:
    return [(world.repo_path, str(world.repo_path)), (world.external_root, str(world.external_root))]


def test_second_container_substitutes_the_first_containers_build_from_the_host_cache(
    host: ph.Host, container: ph.Container, phoenix_rootfs: Path, phoenix_lock: Path, phoenix_bundle: Path,
    world: TestWorld,
) -> None:
    shutil.copy2(phoenix_lock, host.lock_dir / "stable.lock.toml")
    shutil.copy2(phoenix_bundle, host.bundle)
    cache = host.root / "srv" / "vllm-cache"  # a directory on the host, named fleet-wide in the config
    host.write_config(_two_container_config(vllm_cache=str(cache)))
    ph.make_cache_signing_key(host, "phoenix-1")
    secret = (host.cache_keys_dir / "signing.key").read_text().split(":", 1)[1].strip()

    # 801 finds nothing, builds (the compilers run), and the host signs and publishes its build
    container.install_root_ca(world.ca_cert)
    container.count_compiler_calls()
    t0 = time.monotonic()
    first = host.run(CTID, "https://172.16.100.11:9000")
    t_build = time.monotonic() - t0
    assert first.returncode == 0, first.stderr[-6000:]
    assert f"No verified build of lock 'stable' in file://{cache}: CTID {CTID} builds it." in first.stderr
    assert f"Published the build of lock 'stable' from CTID {CTID} to file://{cache}: vllm-" in first.stderr
    assert "signed by phoenix-1" in first.stderr
    assert len(container.compiler_calls()) > 0, "the compiler wrapper saw no compilation"
    entries = list(cache.glob("*.entry"))
    assert len(entries) == 1 and "\nSig: phoenix-1:" in entries[0].read_text()
    assert "Sig: outbox-" not in entries[0].read_text()  # the container's throwaway signature is dropped
    assert len(list(cache.glob("wheels/*/vllm-*.whl"))) == 1
    # the host's secret key never went into the container; the throwaway key and the outbox are gone
    assert not any("signing.key" in call for call in host.pct_calls())
    assert all(secret not in p.read_text(errors="replace")
               for p in container.path("/opt/vllm-lock").rglob("*") if p.is_file() and p.stat().st_size < 1 << 20)
    assert not container.path("/opt/vllm-lock/outbox.secret").exists()
    assert not container.path("/opt/vllm-lock/outbox").exists()

    # the cache loses the entry (a failed publish, a wiped cache): the next run of the feature on
    # 801 is a no-op that publishes the installed build again, compiling nothing
    published = entries[0].read_text()
    shutil.rmtree(cache)
    calls = len(container.compiler_calls())
    again = host.run(CTID, "https://172.16.100.11:9000")
    assert again.returncode == 0, again.stderr[-6000:]
    assert "nothing to do" in again.stderr
    assert f"Published the build of lock 'stable' from CTID {CTID} to file://{cache}: vllm-" in again.stderr
    assert len(container.compiler_calls()) == calls
    republished = cache / entries[0].name
    assert republished.exists() and "\nSig: phoenix-1:" in republished.read_text()
    assert "\nWheelSha256: " in published and published.split("\nWheelSha256: ")[1][:64] in republished.read_text()
    assert not container.path("/opt/vllm-lock/outbox.secret").exists()
    noop = host.run(CTID, "https://172.16.100.11:9000")  # present now: nothing to publish either
    assert noop.returncode == 0 and "nothing to do" in noop.stderr and "Published" not in noop.stderr

    # 802, same lock: the host finds the signed build, the container checks and installs it;
    # not one compiler call, and the log says where the build came from
    with _another_container(host, SECOND_CTID, phoenix_rootfs, _world_mounts(world)) as second:
        second.install_root_ca(world.ca_cert)
        second.count_compiler_calls()
        host.log_file.write_text("")
        t0 = time.monotonic()
        proc = host.run(SECOND_CTID, "https://172.16.100.11:9000")
        t_substitute = time.monotonic() - t0
        assert proc.returncode == 0, proc.stderr[-6000:]
        assert second.compiler_calls() == [], second.compiler_calls()[:20]
        log = host.log()
        assert f"Binary cache file://{cache} has a verified build of lock 'stable'" in log
        assert "[vllm-lock]     substituted from file:///opt/vllm-lock/cache: vllm-" in log
        assert (f"vLLM for lock 'stable' in CTID {SECOND_CTID} substituted from file://{cache} "
                "(signed by phoenix-1): nothing was compiled.") in log
        assert "Published" not in log  # nothing was built, so nothing to publish
        assert f"vLLM installed from lock 'stable' in CTID {SECOND_CTID} and verified." in log
        version = second.exec("/opt/vllm/bin/vllm", "--version")
        assert version.returncode == 0, version.stdout + version.stderr
    if os.environ.get("PHOENIX_E2E_SHOW_LOG"):
        print(first.stderr + "\n----- second container -----\n" + log)
    print(f"\nphoenix cache timings: first container (build + publish) {t_build:.1f}s, "
          f"second container (substituted) {t_substitute:.1f}s")


def test_unreachable_cache_means_a_build_within_the_lookup_deadline(
    host: ph.Host, container: ph.Container, phoenix_lock: Path, phoenix_bundle: Path, world: TestWorld,
) -> None:
    shutil.copy2(phoenix_lock, host.lock_dir / "stable.lock.toml")
    shutil.copy2(phoenix_bundle, host.bundle)
    container.install_root_ca(world.ca_cert)
    container.count_compiler_calls()
    # a server that accepts connections and never answers: the slowest way to be unreachable
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/vllm-cache"
        config = ph.phoenix_config(CTID)
        config["lxc_configs"][CTID]["vllm_cache"] = url
        host.write_config(config)
        proc = host.run(CTID, "https://172.16.100.11:9000", extra_env={"VLLM_LOCK_CACHE_DEADLINE": "3"})
    assert proc.returncode == 0, proc.stderr[-6000:]
    log = host.log()
    assert f"[cache] refused {url}:" in log
    assert f"No verified build of lock 'stable' in {url}: CTID {CTID} builds it." in log
    assert len(container.compiler_calls()) > 0
    assert "vLLM installed from lock 'stable'" in log

    def stamp(needle: str) -> float:
        line = next(line for line in log.splitlines() if needle in line)
        return time.mktime(time.strptime(line[:19], "%Y-%m-%d %H:%M:%S"))

    lookup = stamp("No verified build of lock") - stamp("Looking up the build of lock")
    assert lookup <= 3 + 5, f"the lookup of an unresponsive cache took {lookup:.0f}s"


def test_air_gapped_container_installs_from_the_hosts_lock_bundle(
    host: ph.Host, phoenix_rootfs: Path, phoenix_lock: Path, phoenix_bundle: Path, world: TestWorld,
    tmp_path: Path,
) -> None:
    shutil.copy2(phoenix_lock, host.lock_dir / "stable.lock.toml")
    shutil.copy2(phoenix_bundle, host.bundle)
    host.lock_bundles.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(SSL_CERT_FILE=str(world.ca_cert), VLLM_LOCK_CACHE=str(tmp_path / "bundle-cache"))
    made = subprocess.run([str(Path(sys.executable).parent / "vllm-lock"), "bundle", str(phoenix_lock),
                           "-o", str(host.lock_bundles / "stable.tar")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert made.returncode == 0, made.stderr

    # no root CA (the HTTPS index is out of reach) and no bind mounts (no git repositories): all the
    # install reads comes from the bundle
    with _another_container(host, CTID, phoenix_rootfs, []) as ct:
        proc = host.run(CTID, "https://172.16.100.11:9000")
        assert proc.returncode == 0, proc.stderr[-6000:]
        assert "TLS verification failed" not in proc.stderr
        assert "Offline bundle for lock 'stable'" in proc.stderr
        assert any("--from-bundle /opt/vllm-lock/bundles/stable.tar" in call for call in host.pct_calls())
        assert "vLLM installed from lock 'stable'" in proc.stderr
        assert not ct.path("/opt/vllm-lock/bundles/stable.tar").exists()  # removed once installed
        assert ct.exec("/opt/vllm/bin/vllm", "--version").returncode == 0
