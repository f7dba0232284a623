"""ssh-keygen, the one signer and verifier of locks: `-Y sign`, `-Y check-novalidate`,
`-Y find-principals`, `-Y verify`, all in the `vllm-lock` namespace.

ssh-keygen reads the signed message on stdin, and a signature holds only for the exact bytes, so
this module runs it with bytes in and out (shell/proc.py's runner speaks text in the locale's
encoding, which could change a byte and turn a good signature bad).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vllm_lock import signing
from vllm_lock.errors import LockInvalidError, PreflightError, UsageError
from vllm_lock.signing import NAMESPACE, Signer

SIGN_TIMEOUT_S = 300.0  # ssh-keygen may ask for the key's passphrase on the terminal
CHECK_TIMEOUT_S = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class _Ran:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace") + "\n" + self.stderr


def ssh_keygen() -> str:
    found = shutil.which("ssh-keygen")
    if found is None:
        raise PreflightError("ssh-keygen not found: signed locks need OpenSSH's ssh-keygen (package openssh-client)")
    return found


def _run(args: Sequence[str], *, message: bytes, timeout: float) -> _Ran:
    argv = [ssh_keygen(), *args]
    try:
        proc = subprocess.run(argv, input=message, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return _Ran(returncode=-9, stdout=b"", stderr=f"ssh-keygen {args[0]} {args[1]} timed out after {timeout:.0f} s")
    except OSError as exc:
        raise PreflightError(f"cannot run ssh-keygen: {exc.strerror or exc}") from None
    return _Ran(returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr.decode("utf-8", "replace"))


def sign(message: bytes, key: Path) -> bytes:
    """The armored SSH signature of `message` by `key` (a private key file, or a public key whose
    private half is in ssh-agent)."""
    if not key.is_file():
        raise UsageError(f"--sign-key {key}: no such key file")
    ran = _run(["-Y", "sign", "-n", NAMESPACE, "-f", str(key)], message=message, timeout=SIGN_TIMEOUT_S)
    if ran.returncode != 0 or not signing.looks_like_signature(ran.stdout):
        raise UsageError(f"--sign-key {key}: ssh-keygen could not sign with it: {signing.last_line(ran.stderr)}")
    return ran.stdout


def verify(message: bytes, signature: bytes, allowed_signers: Path, *, what: str) -> Signer:
    """The signer when `signature` is a good `vllm-lock` signature of exactly `message` by a key
    that `allowed_signers` trusts; otherwise LockInvalidError (exit 3) saying which of the three
    it is: not matching the bytes, an untrusted key, or a key not allowed for this namespace."""
    if not signing.looks_like_signature(signature):
        raise LockInvalidError(f"{what}: the signature file is not an SSH signature")
    with tempfile.TemporaryDirectory(prefix="vllm-lock-sig-") as folder:
        sig_file = Path(folder) / "lock.sig"
        sig_file.write_bytes(signature)
        checked = _run(["-Y", "check-novalidate", "-n", NAMESPACE, "-s", str(sig_file)],
                       message=message, timeout=CHECK_TIMEOUT_S)
        key = signing.signing_key_of(checked.text)
        if checked.returncode != 0 or key is None:
            raise LockInvalidError(
                f"{what}: the signature does not match the lock (changed after signing?) or is not a "
                f"{NAMESPACE} signature: {signing.last_line(checked.text)}"
            )
        found = _run(["-Y", "find-principals", "-s", str(sig_file), "-f", str(allowed_signers)],
                     message=b"", timeout=CHECK_TIMEOUT_S)
        candidates = signing.principals(found.stdout.decode("utf-8", "replace")) if found.returncode == 0 else ()
        if not candidates:
            raise LockInvalidError(f"{what}: signed by {key}, which is not a trusted key in {allowed_signers}")
        refusal = ""
        for principal in candidates:
            ran = _run(["-Y", "verify", "-n", NAMESPACE, "-f", str(allowed_signers), "-I", principal,
                        "-s", str(sig_file)], message=message, timeout=CHECK_TIMEOUT_S)
            if ran.returncode == 0:
                return Signer(principal=principal, key=signing.signing_key_of(ran.text) or key)
            refusal = signing.last_line(ran.text)
    raise LockInvalidError(
        f"{what}: the signature by {key} ({', '.join(candidates)}) is not accepted by {allowed_signers}: {refusal}"
    )
