"""A cached Debian bookworm root filesystem for the Phoenix end-to-end test ("a bare container").

debootstrap runs once per package list; the result is kept as a tarball in the suite cache
(`$VLLM_LOCK_TEST_CACHE/phoenix/phoenix-rootfs-<hash>.tar`) and every test extracts a fresh copy.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SUITE = "bookworm"
VARIANT = "minbase"
# What the feature script's apt step wants on a real container, preinstalled so the test needs no
# apt network: python3 (3.11 on bookworm), venv + headers for the build, git, compilers, cmake, ninja,
# and ssh-keygen (openssh-client), which the script adds when the host requires signed locks.
PACKAGES: tuple[str, ...] = (
    "build-essential",
    "ca-certificates",
    "cmake",
    "git",
    "ninja-build",
    "openssh-client",
    "python3",
    "python3-dev",
    "python3-venv",
)
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class RootfsUnavailable(RuntimeError):
    """debootstrap cannot run here (not root, tool missing, mirror unreachable)."""


def cache_dir() -> Path:
    """`phoenix/` in the suite cache ($VLLM_LOCK_TEST_CACHE, which tests/conftest.py sets for the
    whole session), never the product's cache: the suite points VLLM_LOCK_CACHE and XDG_CACHE_HOME
    into each run's tmp, and a rootfs there would mean a fresh debootstrap every run. The fallback
    (the real HOME's ~/.cache/vllm-lock-tests, conftest's default) is for running this file alone."""
    base = os.environ.get("VLLM_LOCK_TEST_CACHE") or str(Path.home() / ".cache" / "vllm-lock-tests")
    return Path(base) / "phoenix"


def cache_key(packages: tuple[str, ...] = PACKAGES) -> str:
    text = "\n".join([SUITE, VARIANT, *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def tarball_path(packages: tuple[str, ...] = PACKAGES) -> Path:
    return cache_dir() / f"phoenix-rootfs-{cache_key(packages)}.tar"


def why_unavailable() -> str | None:
    """A reason debootstrap cannot work on this machine, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap + chroot)"
    if not shutil.which("debootstrap"):
        return "debootstrap is not installed (apt-get install debootstrap)"
    if not shutil.which("chroot"):
        return "chroot is not installed"
    if not shutil.which("jq"):
        return "jq is not installed (Phoenix's common utils need it on the host: apt-get install jq)"
    return None


def ensure_tarball(packages: tuple[str, ...] = PACKAGES) -> Path:
    """The cached rootfs tarball, building it with debootstrap on first use (under a file lock)."""
    target = tarball_path(packages)
    if target.exists():
        return target
    reason = why_unavailable()
    if reason:
        raise RootfsUnavailable(reason)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_suffix(".lock"), "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if target.exists():
            return target
        work = Path(tempfile.mkdtemp(prefix="phoenix-rootfs-", dir=target.parent))
        try:
            tree = work / "rootfs"
            mirror = os.environ.get("VLLM_LOCK_DEBIAN_MIRROR", DEFAULT_MIRROR)
            argv = ["debootstrap", f"--variant={VARIANT}", "--include=" + ",".join(sorted(packages)),
                    SUITE, str(tree), mirror]
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                tail = (proc.stdout + proc.stderr)[-3000:]
                raise RootfsUnavailable(f"debootstrap failed ({proc.returncode}):\n{tail}")
            # apt caches are dead weight in the tarball
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for p in (tree / sub).glob("*.deb" if "archives" in sub else "*_*"):
                    p.unlink()
            partial = work / "rootfs.tar"
            subprocess.run(["tar", "--numeric-owner", "-C", str(tree), "-cf", str(partial), "."], check=True)
            os.replace(partial, target)
        finally:
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    return target


def extract(tarball: Path, dest: Path) -> Path:
    """Unpack a fresh copy of the rootfs into dest (created) and return it."""
    dest.mkdir(parents=True)
    subprocess.run(["tar", "--numeric-owner", "-xpf", str(tarball), "-C", str(dest)], check=True)
    return dest


if __name__ == "__main__":  # build the cache ahead of a test run: python tests/phoenix/rootfs.py
    print(ensure_tarball())
