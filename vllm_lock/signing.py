"""Signed locks: detached SSH signatures (`ssh-keygen -Y sign`, namespace `vllm-lock`) beside the lock.

The pure part: where a lock's signature lives, which trusted-keys file and signing key apply, and
what ssh-keygen's answers mean. Running ssh-keygen is vllm_lock/shell/sshsig.py's job.

Why SSH signatures: an operator checks a lock with stock OpenSSH and no vllm-lock, the keys are
ordinary ed25519 SSH keys (an agent and hardware keys work), and no new Python dependency.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

NAMESPACE = "vllm-lock"
SIGNATURE_SUFFIX = ".sig"
TRUSTED_KEYS_ENV = "VLLM_LOCK_TRUSTED_KEYS"
SIGNING_KEY_ENV = "VLLM_LOCK_SIGNING_KEY"
SYSTEM_TRUSTED_KEYS = Path("/etc/vllm-lock/allowed_signers")
SIGNATURE_ARMOR = b"-----BEGIN SSH SIGNATURE-----"
MAX_SIGNATURE_BYTES = 64 * 1024  # an ed25519 signature is ~300 bytes; RSA-16384 is ~3 KB


@dataclass(frozen=True, kw_only=True, slots=True)
class Signer:
    """Who signed: the allowed_signers principal the signature was accepted for, and the key."""

    principal: str
    key: str  # "ED25519 key SHA256:..." as ssh-keygen names it


@dataclass(frozen=True, kw_only=True, slots=True)
class TrustedKeys:
    path: Path
    source: str  # "--trusted-keys", "$VLLM_LOCK_TRUSTED_KEYS" or "the system default"


def signature_path(lock_path: Path) -> Path:
    """`<lock file>.sig`: the signature always sits beside the lock it signs."""
    return lock_path.with_name(lock_path.name + SIGNATURE_SUFFIX)


def trusted_keys(option: Path | None, environ: Mapping[str, str], *,
                 system_default: Path = SYSTEM_TRUSTED_KEYS, system_default_exists: bool) -> TrustedKeys | None:
    """The allowed_signers file to check against: the option, else the environment variable, else
    the system default when it exists. None: no trusted keys are configured."""
    if option is not None:
        return TrustedKeys(path=option, source="--trusted-keys")
    if environ.get(TRUSTED_KEYS_ENV):
        return TrustedKeys(path=Path(environ[TRUSTED_KEYS_ENV]), source=f"${TRUSTED_KEYS_ENV}")
    if system_default_exists:
        return TrustedKeys(path=system_default, source="the system default")
    return None


_GOOD = re.compile(r'^Good "[^"]*" signature (?:for .* )?with (?P<key>.+)$', re.M)


def signing_key_of(ssh_keygen_output: str) -> str | None:
    """The key named by `Good "vllm-lock" signature [for P] with ED25519 key SHA256:...`."""
    match = _GOOD.search(ssh_keygen_output)
    return match.group("key").strip() if match else None


def principals(find_principals_output: str) -> tuple[str, ...]:
    """`ssh-keygen -Y find-principals` prints one principal a line; keep the order, drop repeats."""
    seen: dict[str, None] = {}
    for line in find_principals_output.splitlines():
        name = line.strip()
        if name and not name.startswith(("Couldn't", "No principal")):
            seen.setdefault(name, None)
    return tuple(seen)


def looks_like_signature(data: bytes) -> bool:
    """An armored SSH signature, small: anything else is refused before ssh-keygen sees it."""
    return data.lstrip().startswith(SIGNATURE_ARMOR) and len(data) <= MAX_SIGNATURE_BYTES


def last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"
