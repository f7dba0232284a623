"""verify-lock and `install --require-signed`: a lock is acceptable only with a good signature by a
trusted key, over exactly its bytes, and when it reads as a valid lock.

The signature is checked first and the lock parsed after, from the same bytes: a lock from an
untrusted source never reaches the parser, and nothing can change between check and read.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from vllm_lock import codec, signing
from vllm_lock.errors import LockInvalidError, UsageError
from vllm_lock.model import Lock
from vllm_lock.shell import lockfiles, sshsig


@dataclass(frozen=True, kw_only=True, slots=True)
class VerifiedLock:
    path: Path
    lock: Lock
    signer: signing.Signer
    trusted_keys: signing.TrustedKeys


def trusted_keys(option: Path | None) -> signing.TrustedKeys:
    """The allowed_signers file in force; a usage error (exit 2) when none is configured or it
    cannot be read: a check that cannot run must never pass."""
    chosen = signing.trusted_keys(option, os.environ,
                                  system_default_exists=os.path.lexists(signing.SYSTEM_TRUSTED_KEYS))
    if chosen is None:
        raise UsageError(
            f"no trusted keys: pass --trusted-keys FILE, set ${signing.TRUSTED_KEYS_ENV}, or create "
            f"{signing.SYSTEM_TRUSTED_KEYS} (an OpenSSH allowed_signers file)"
        )
    if not chosen.path.is_file() or not os.access(chosen.path, os.R_OK):
        raise UsageError(f"trusted keys {chosen.path} (from {chosen.source}): not a readable file")
    return chosen


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise LockInvalidError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None


def verify_lock(name_or_path: str, trusted: Path | None = None) -> VerifiedLock:
    keys = trusted_keys(trusted)
    path = lockfiles.locate(name_or_path)
    message = _read(path, "the lock")
    sig_path = signing.signature_path(path)
    if not os.path.lexists(sig_path):
        raise LockInvalidError(
            f"{path}: not signed (no {sig_path.name} beside it); signed locks come from "
            "`vllm-lock promote ... --sign-key KEY`"
        )
    # lstat, not stat: a symlinked .sig could point anywhere (Phoenix refuses one too)
    if sig_path.is_symlink():
        raise LockInvalidError(f"{sig_path}: the signature is a symbolic link; it must be a regular file")
    if not stat.S_ISREG(sig_path.lstat().st_mode):
        raise LockInvalidError(f"{sig_path}: the signature is not a regular file")
    signer = sshsig.verify(message, _read(sig_path, "the signature"), keys.path, what=str(path))
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LockInvalidError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lock = codec.loads(text, origin=str(path))
    return VerifiedLock(path=path, lock=lock, signer=signer, trusted_keys=keys)


def describe(verified: VerifiedLock) -> str:
    return (f"{verified.path}: good signature by {verified.signer.principal} ({verified.signer.key}), "
            f"trusted by {verified.trusted_keys.path}")


def require_signed(name_or_path: str, *, required: bool, trusted: Path | None) -> Lock | None:
    """`install --require-signed [--trusted-keys F]`: the signature check before anything runs.
    Returns the Lock parsed from exactly the verified bytes (None when no signature is required):
    install must use it and never read the path again, or a file swapped after the check would
    be installed under the check's good name."""
    if not required:
        if trusted is not None:
            raise UsageError("--trusted-keys is only used with --require-signed")
        return None
    verified = verify_lock(name_or_path, trusted)
    print(describe(verified), file=sys.stderr, flush=True)
    return verified.lock
