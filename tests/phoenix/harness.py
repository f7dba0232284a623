"""A fake Phoenix host for the vLLM feature script: a Phoenix tree, the pct stand-in, containers.

    P/bin/phoenix_hypervisor_common_utils.sh          the common-utils stand-in (this directory)
    P/bin/lxc_setup/phoenix_hypervisor_feature_install_vllm.sh   the script under test (copied)
    P/etc/phoenix_lxc_configs.json, P/etc/vllm-locks/, P/share/vllm-lock/vllm-lock-bundle.tar
    pct/<CTID>/rootfs                                 containers (a fresh copy of the cached rootfs)
    bin/pct                                           the pct stand-in, first on PATH
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FEATURE_SCRIPT = REPO / "phoenix" / "phoenix_hypervisor_feature_install_vllm.sh"
BUNDLE_BUILDER = REPO / "phoenix" / "build-vllm-lock-bundle.sh"
SCRIPT_NAME = FEATURE_SCRIPT.name

CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
COMPILER_CALLS = "/root/compiler-calls"  # in the container: one line per cc1/cc1plus run

NVIDIA_SMI_STUB = """#!/bin/sh
# stand-in for the driver user space the 'nvidia' feature installs (no GPU in the test)
case "$*" in
  *--query-gpu*) echo "NVIDIA GeForce RTX 5060 Ti, 580.76.05" ;;
  *) echo "NVIDIA-SMI 580.76.05   Driver Version: 580.76.05   CUDA Version: 13.0" ;;
esac
"""


def phoenix_config(ctid: str, *, template: str = "911", vllm_lock: Any = None,
                   mount_points: Sequence[Mapping[str, str]] = ()) -> dict[str, Any]:
    """A phoenix_lxc_configs.json shaped like Phoenix's: a GPU template with 'nvidia', cloned by
    the container, which has features vllm/trusted_ca/step_cli and a vllm_engine_config."""
    entry: dict[str, Any] = {
        "name": "embedding-server", "memory_mb": 72000, "cores": 6, "gpu_assignment": "0",
        "unprivileged": True, "clone_from_ctid": template,
        "features": ["vllm", "trusted_ca", "step_cli"],
        "application_script": "phoenix_hypervisor_lxc_vllm.sh",
        "bootstrap_ca_url": "https://172.16.100.11:9000",
        "mount_points": list(mount_points),
        "vllm_engine_config": {
            "ModelConfig": {"model": "ibm-granite/granite-embedding-english-r2", "trust_remote_code": True,
                            "dtype": "auto", "max_model_len": 1024},
            "CacheConfig": {"gpu_memory_utilization": 0.1},
            "ParallelConfig": {"tensor_parallel_size": 1},
            "ServerConfig": {"host": "0.0.0.0", "port": 8000, "served_model_name": "granite-embedding"},
        },
    }
    if vllm_lock is not None:
        entry["vllm_lock"] = vllm_lock
    return {
        "$schema": "/usr/local/phoenix_hypervisor/etc/phoenix_lxc_configs.schema.json",
        "nvidia_driver_version": "580.76.05",
        "lxc_configs": {
            template: {"name": "template-gpu", "features": ["nvidia"], "clone_from_ctid": "900"},
            "900": {"name": "template-base", "features": []},
            ctid: entry,
        },
    }


@dataclass(frozen=True)
class Host:
    """A Phoenix host laid out under root; run() calls the feature script like lxc-manager.sh."""

    root: Path

    @property
    def phoenix(self) -> Path:
        return self.root / "phoenix_hypervisor"

    @property
    def script(self) -> Path:
        return self.phoenix / "bin" / "lxc_setup" / SCRIPT_NAME

    @property
    def config_file(self) -> Path:
        return self.phoenix / "etc" / "phoenix_lxc_configs.json"

    @property
    def lock_dir(self) -> Path:
        return self.phoenix / "etc" / "vllm-locks"

    @property
    def bundle(self) -> Path:
        return self.phoenix / "share" / "vllm-lock" / "vllm-lock-bundle.tar"

    @property
    def cache_keys_dir(self) -> Path:
        """P/etc/vllm-cache: trusted-keys (public, name:base64) and signing.key (the host's secret)."""
        return self.phoenix / "etc" / "vllm-cache"

    @property
    def lock_bundles(self) -> Path:
        """P/share/vllm-lock/bundles: `<lock name>.tar` from `vllm-lock bundle`."""
        return self.phoenix / "share" / "vllm-lock" / "bundles"

    @property
    def log_file(self) -> Path:
        return self.root / "phoenix_hypervisor.log"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def pct_root(self) -> Path:
        return self.root / "pct"

    @property
    def pct_log(self) -> Path:
        return self.pct_root / "pct.log"

    def write_config(self, config: Mapping[str, Any]) -> None:
        self.config_file.write_text(json.dumps(config, indent=2))

    def env(self) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VLLM_LOCK_"))}
        base.update(
            PATH=f"{self.root / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            PCT_STANDIN_ROOT=str(self.pct_root),
            MAIN_LOG_FILE=str(self.log_file),
            LXC_CONFIG_FILE=str(self.config_file),
            TMPDIR=str(self.tmp),  # the script's mktemp work folders stay in the test's tmp
        )
        return base

    def run(self, *args: str, timeout: float = 600,
            extra_env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run the feature script as lxc-manager.sh does: `<script> CTID bootstrap_ca_url`."""
        return subprocess.run(["bash", str(self.script), *args], env={**self.env(), **(extra_env or {})},
                              capture_output=True, text=True, timeout=timeout)

    def pct(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.root / "bin" / "pct"), *args], env=self.env(), capture_output=True,
                              text=True, timeout=timeout, check=check)

    def pct_calls(self) -> list[str]:
        return self.pct_log.read_text().splitlines() if self.pct_log.exists() else []

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""


def make_host(root: Path, config: Mapping[str, Any]) -> Host:
    host = Host(root)
    for d in (host.script.parent, host.lock_dir, host.bundle.parent, host.pct_root, host.tmp, root / "bin"):
        d.mkdir(parents=True, exist_ok=True)
    shutil.copy2(HERE / "phoenix_hypervisor_common_utils.sh", host.phoenix / "bin")
    shutil.copy2(FEATURE_SCRIPT, host.script)
    shutil.copy2(HERE / "pct", root / "bin" / "pct")
    host.write_config(config)
    host.pct_log.touch()
    return host


@dataclass(frozen=True)
class Container:
    host: Host
    ctid: str

    @property
    def rootfs(self) -> Path:
        return self.host.pct_root / self.ctid / "rootfs"

    def exec(self, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return self.host.pct("exec", self.ctid, "--", *argv, check=False, timeout=timeout)

    def path(self, container_path: str) -> Path:
        return self.rootfs / container_path.lstrip("/")

    def install_root_ca(self, ca_cert: Path, name: str = "phoenix_root_ca.crt") -> None:
        """What Phoenix's trusted_ca feature does: system trust store + update-ca-certificates."""
        target = self.path("/usr/local/share/ca-certificates") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ca_cert, target)
        proc = self.exec("update-ca-certificates")
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def count_compiler_calls(self) -> None:
        """Wrap gcc's compilers proper (cc1, cc1plus): every C/C++ compilation, whichever driver,
        PATH or CC/CXX started it, appends a line to COMPILER_CALLS first."""
        wrapped = []
        for real in sorted(self.path("/usr/lib/gcc").glob("*/*/cc1*")):
            if real.name not in ("cc1", "cc1plus"):
                continue
            inside = "/" + str(real.relative_to(self.rootfs))
            real.rename(real.with_name(real.name + ".real"))
            real.write_text(f'#!/bin/sh\necho "{inside} $*" >>{COMPILER_CALLS}\nexec {inside}.real "$@"\n')
            real.chmod(0o755)
            wrapped.append(real.name)
        assert wrapped == ["cc1", "cc1plus"], wrapped
        self.path(COMPILER_CALLS).write_text("")

    def compiler_calls(self) -> list[str]:
        return self.path(COMPILER_CALLS).read_text().splitlines()

    def install_nvidia_stub(self) -> None:
        stub = self.path("/usr/bin/nvidia-smi")
        stub.write_text(NVIDIA_SMI_STUB)
        stub.chmod(0o755)


def create_container(host: Host, ctid: str, tarball: Path,
                     bind_mounts: Sequence[tuple[Path, str]] = ()) -> Container:
    """Extract a fresh rootfs for ctid, record its read-only bind mounts and 'start' it."""
    from rootfs import extract  # sibling module

    ct_dir = host.pct_root / ctid
    extract(tarball, ct_dir / "rootfs")
    (ct_dir / "mounts").write_text("".join(f"{src} {dst} ro\n" for src, dst in bind_mounts))
    host.pct("start", ctid)
    return Container(host, ctid)


def stop_container(container: Container) -> None:
    container.host.pct("stop", container.ctid, check=False)
    rootfs = container.rootfs
    mounts = Path("/proc/mounts").read_text()
    if str(rootfs) in mounts:  # never delete through a live bind mount
        raise RuntimeError(f"mounts left under {rootfs}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(rootfs.parent)], check=False)


# ---- the offline bundle, cached by the content of the vllm-lock source ---------------------------
class BundleBuildFailed(RuntimeError):
    """phoenix/build-vllm-lock-bundle.sh (the project's own builder) exited non-zero."""


def source_digest() -> str:
    h = hashlib.sha256()
    files = [REPO / "pyproject.toml", BUNDLE_BUILDER,
             *sorted(p for p in (REPO / "vllm_lock").rglob("*") if p.is_file() and "__pycache__" not in p.parts)]
    for f in files:
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def ensure_bundle(cache: Path, python_versions: Sequence[str] = ("3.11",)) -> Path:
    """Build (once per source digest) the offline vllm-lock bundle with pip from PyPI."""
    target = cache / f"phoenix-bundle-{source_digest()}-{'-'.join(python_versions)}.tar"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1",
               PYTHON=sys.executable)
    part = target.with_name(f"{target.name}.{os.getpid()}.part")  # suite caches may be shared by runs
    argv = ["bash", str(BUNDLE_BUILDER), "-o", str(part)]
    for v in python_versions:
        argv += ["--python-version", v]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise BundleBuildFailed(f"exit {proc.returncode}:\n{(proc.stdout + proc.stderr)[-3000:]}")
    os.replace(part, target)
    return target


def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


# ---- signed locks: ordinary ed25519 SSH keys, signatures made with ssh-keygen itself ------------
SIGNER = "release@example.org"


def make_ssh_key(path: Path, comment: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def trust_key(host: Host, key: Path, principal: str = SIGNER) -> Path:
    """P/etc/vllm-locks/allowed_signers trusting `key` for vllm-lock signatures: the host now
    requires signed locks."""
    keytype, blob = key.with_suffix(".pub").read_text().split()[:2]
    allowed = host.lock_dir / "allowed_signers"
    allowed.write_text(f'{principal} namespaces="vllm-lock" {keytype} {blob}\n')
    return allowed


def ssh_sign(key: Path, lock: Path) -> Path:
    """`<lock>.sig` made with plain ssh-keygen, as `vllm-lock promote --sign-key` makes it."""
    sig = Path(str(lock) + ".sig")
    sig.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", "vllm-lock", "-f", str(key), str(lock)],
                   check=True, capture_output=True)
    return sig


# ---- the binary cache's host side ---------------------------------------------------------------
def make_cache_signing_key(host: Host, name: str = "phoenix-1") -> str:
    """P/etc/vllm-cache/signing.key (mode 0600) made by `vllm-lock key generate`: the host now signs
    and publishes builds. Returns the public key (name:base64)."""
    key = host.cache_keys_dir / "signing.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(Path(sys.executable).parent / "vllm-lock"), "key", "generate", "--name", name, "-o", str(key)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()
