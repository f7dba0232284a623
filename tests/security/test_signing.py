"""Signed locks with the real ssh-keygen and the real CLI (a subprocess, as an operator runs it).

A content hash proves nothing against someone who edits a lock: they recompute it. These tests
edit locks the way an attacker would and check that only a good signature by a trusted key passes
`verify-lock` and `install --require-signed`, and that plain `ssh-keygen -Y verify` (no vllm-lock)
accepts what `promote --sign-key` writes.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import git
import pytest
from sample_lock import C1, make_lock

from vllm_lock import acceptance, codec, signing
from vllm_lock import receipt as receipts
from vllm_lock.errors import ExitCode
from vllm_lock.model import Lock
from vllm_lock.shell import files

VLLM_LOCK = str(Path(sys.executable).parent / "vllm-lock")
PRINCIPAL = "release@example.org"


@dataclasses.dataclass(frozen=True)
class World:
    root: Path
    locks: Path
    key: Path  # the release key (private; .pub beside it)
    other_key: Path  # a key nobody trusts
    allowed: Path  # allowed_signers trusting only the release key

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_LOCK_")}
        env.update(VLLM_LOCK_LOCKS_DIR=str(self.locks), VLLM_LOCK_CACHE=str(self.root / "cache"), **extra)
        return env

    def cli(self, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([VLLM_LOCK, *args], env=self.env(**extra_env), capture_output=True, text=True,
                              timeout=120, cwd=self.root)

    @property
    def stable(self) -> Path:
        return self.locks / "stable.lock.toml"

    @property
    def stable_sig(self) -> Path:
        return self.locks / "stable.lock.toml.sig"


def keygen(path: Path, comment: str) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True)
    return path


def allowed_line(principal: str, key: Path, options: str = f'namespaces="{signing.NAMESPACE}"') -> str:
    keytype, blob = key.with_suffix(".pub").read_text().split()[:2]
    return f"{principal} {options} {keytype} {blob}\n"


def ssh_sign(key: Path, message: Path, namespace: str = signing.NAMESPACE) -> Path:
    """Sign with ssh-keygen directly (what an attacker with their own key does)."""
    sig = message.with_name(message.name + ".sig")
    sig.unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-n", namespace, "-f", str(key), str(message)],
                   check=True, capture_output=True)
    return sig


def ssh_verify(allowed: Path, lock: Path, principal: str = PRINCIPAL) -> subprocess.CompletedProcess[bytes]:
    """The operator's manual check: stock OpenSSH, no vllm-lock."""
    with lock.open("rb") as stdin:
        return subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal,
                               "-n", "vllm-lock", "-s", str(lock) + ".sig"], stdin=stdin, capture_output=True)


def write_tested(locks: Path, lock: Lock) -> Path:
    """A dev lock with a passing test receipt, ready to promote."""
    path = locks / f"{lock.name}.lock.toml"
    files.write_output(path, codec.dumps(lock))
    checks = (acceptance.Check(name="import vllm", ok=True, detail="x"),)
    receipt = receipts.new_test_receipt(lock=lock, lock_path=path, venv=Path("/opt/vllm"), checks=checks,
                                        probe={"errors": {}}, host_gpus=(), host="box", when="2026-11-20T10:00:00Z")
    receipts.write_test_receipt(path, receipt)
    return path


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture
def world(tmp_path: Path) -> World:
    locks = tmp_path / "repo" / "locks"
    locks.mkdir(parents=True)
    keys = tmp_path / "keys"
    keys.mkdir()
    key = keygen(keys / "release", "release key")
    other = keygen(keys / "intruder", "intruder key")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(allowed_line(PRINCIPAL, key))
    write_tested(locks, make_lock())
    return World(root=tmp_path, locks=locks, key=key, other_key=other, allowed=allowed)


@pytest.fixture
def signed(world: World) -> World:
    proc = world.cli("promote", "dev", "--to", "stable", "--sign-key", str(world.key))
    assert proc.returncode == 0, proc.stderr
    return world


# ---------------------------------------------------------------- promote signs, OpenSSH accepts


def test_promote_sign_key_writes_lock_and_signature_that_plain_ssh_keygen_accepts(world: World) -> None:
    proc = world.cli("promote", "dev", "--to", "stable", "--sign-key", str(world.key))
    assert proc.returncode == 0, proc.stderr
    assert f"{world.stable_sig}: written" in proc.stdout
    assert world.stable.is_file() and world.stable_sig.is_file()
    manual = ssh_verify(world.allowed, world.stable)
    assert manual.returncode == 0, manual.stderr
    assert f'Good "vllm-lock" signature for {PRINCIPAL}'.encode() in manual.stdout + manual.stderr


def test_verify_lock_names_the_signer(signed: World) -> None:
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == 0, proc.stderr
    assert f"good signature by {PRINCIPAL} (ED25519 key SHA256:" in proc.stdout
    # the trusted keys may come from the environment instead
    proc = signed.cli("verify-lock", str(signed.stable), VLLM_LOCK_TRUSTED_KEYS=str(signed.allowed))
    assert proc.returncode == 0, proc.stderr


def test_signing_key_from_the_environment(world: World) -> None:
    proc = world.cli("promote", "dev", "--to", "stable", VLLM_LOCK_SIGNING_KEY=str(world.key))
    assert proc.returncode == 0, proc.stderr
    assert ssh_verify(world.allowed, world.stable).returncode == 0


# ---------------------------------------------------------------- refusals: exit 3, one line


def test_lock_edited_after_signing_with_a_recomputed_content_hash_is_refused(signed: World) -> None:
    stable = codec.loads(signed.stable.read_text())
    hostile = dataclasses.replace(stable, vllm=dataclasses.replace(stable.vllm, url="https://evil.example/vllm.git"))
    signed.stable.write_text(codec.dumps(hostile))  # content-hash recomputed: the reader accepts it
    assert signed.cli("show", "stable").returncode == 0
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert "signature does not match the lock" in one_error_line(proc)
    assert proc.stdout == ""
    assert ssh_verify(signed.allowed, signed.stable).returncode != 0  # OpenSSH agrees


def test_one_byte_appended_after_signing_is_refused(signed: World) -> None:
    with signed.stable.open("ab") as handle:
        handle.write(b"\n")  # still a valid lock (TOML ignores it), no longer the signed bytes
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert "does not match" in one_error_line(proc)


def test_signature_by_an_untrusted_key_is_refused(signed: World) -> None:
    ssh_sign(signed.other_key, signed.stable)  # a valid signature, by a key nobody trusts
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    line = one_error_line(proc)
    assert "which is not a trusted key in" in line and "ED25519 key SHA256:" in line


def test_unsigned_lock_is_refused(signed: World) -> None:
    signed.stable_sig.unlink()
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert "not signed" in one_error_line(proc)


def test_signature_for_another_namespace_is_refused(signed: World) -> None:
    ssh_sign(signed.key, signed.stable, namespace="git")  # the trusted key, but for git commits
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert "not a vllm-lock signature" in one_error_line(proc)


def test_key_trusted_only_for_another_namespace_is_refused(signed: World) -> None:
    signed.allowed.write_text(allowed_line(PRINCIPAL, signed.key, options='namespaces="git"'))
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert one_error_line(proc)


@pytest.mark.parametrize("content",
                         [b"", b"garbage\n", b"-----BEGIN SSH SIGNATURE-----\nAAAA\n-----END SSH SIGNATURE-----\n"])
def test_malformed_signature_file_is_refused(signed: World, content: bytes) -> None:
    signed.stable_sig.write_bytes(content)
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    one_error_line(proc)


def test_signed_but_invalid_lock_is_refused_by_the_reader(signed: World) -> None:
    text = signed.stable.read_text().replace(C1, "3" * 40)  # content hash now wrong
    signed.stable.write_text(text)
    ssh_sign(signed.key, signed.stable)  # signed by the release key all the same
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert "content-hash" in one_error_line(proc) or "content hash" in proc.stderr


def test_no_trusted_keys_is_a_usage_error_never_a_pass(signed: World) -> None:
    if signing.SYSTEM_TRUSTED_KEYS.exists():
        pytest.skip(f"{signing.SYSTEM_TRUSTED_KEYS} exists on this machine")
    proc = signed.cli("verify-lock", "stable")
    assert proc.returncode == ExitCode.USAGE
    assert "no trusted keys" in one_error_line(proc)
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.root / "missing"))
    assert proc.returncode == ExitCode.USAGE
    assert "not a readable file" in one_error_line(proc)


# ---------------------------------------------------------------- install --require-signed


def test_install_require_signed_refuses_before_anything_runs(signed: World) -> None:
    venv, src = signed.root / "opt" / "vllm", signed.root / "opt" / "vllm_repo"
    args = ["install", "stable", "--venv", str(venv), "--src", str(src), "--require-signed",
            "--trusted-keys", str(signed.allowed)]
    signed.stable_sig.unlink()
    proc = signed.cli(*args)
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert "not signed" in one_error_line(proc)
    ssh_sign(signed.other_key, signed.stable)
    proc = signed.cli(*args)
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert "not a trusted key" in one_error_line(proc)
    assert not (signed.root / "opt").exists()  # nothing ran: no generation, no link
    assert not (signed.root / "cache").exists()


def test_install_require_signed_passes_a_good_signature_on_to_the_install(signed: World) -> None:
    venv = signed.root / "opt" / "vllm"
    proc = signed.cli("install", "stable", "--venv", str(venv), "--src", str(signed.root / "opt" / "src"),
                      "--require-signed", "--trusted-keys", str(signed.allowed))
    # the sample lock cannot really install here (Python 3.12, fake wheels): what matters is that
    # the signature check passed and said so, and the install went on to its own checks
    assert f"good signature by {PRINCIPAL}" in proc.stderr
    assert proc.returncode != ExitCode.LOCK_INVALID, proc.stderr


def test_trusted_keys_without_require_signed_is_a_usage_error(signed: World) -> None:
    proc = signed.cli("install", "stable", "--venv", str(signed.root / "v"), "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.USAGE
    assert "--require-signed" in one_error_line(proc)


# ---------------------------------------------------------------- promote: the pair stays a pair


def test_promote_without_a_key_removes_the_old_signature(signed: World) -> None:
    write_tested(signed.locks, make_lock(torch_date="2026-11-12"))
    proc = signed.cli("promote", "dev", "--to", "stable")
    assert proc.returncode == 0, proc.stderr
    assert "previous lock's signature was removed" in proc.stdout
    assert signed.stable.is_file() and not signed.stable_sig.exists()


def test_promote_again_unchanged_keeps_the_signature(signed: World) -> None:
    lock_bytes, sig_bytes = signed.stable.read_bytes(), signed.stable_sig.read_bytes()
    assert signed.cli("promote", "dev", "--to", "stable").returncode == 0
    proc = signed.cli("promote", "dev", "--to", "stable", "--sign-key", str(signed.key))
    assert proc.returncode == 0 and "unchanged" in proc.stdout
    assert (signed.stable.read_bytes(), signed.stable_sig.read_bytes()) == (lock_bytes, sig_bytes)


def test_rerun_with_the_key_signs_a_lock_left_unsigned(signed: World) -> None:
    # what a crash between the lock's rename and the signature's leaves: the new lock, unsigned
    signed.stable_sig.unlink()
    proc = signed.cli("promote", "dev", "--to", "stable", "--sign-key", str(signed.key))
    assert proc.returncode == 0, proc.stderr
    assert f"{signed.stable_sig}: written" in proc.stdout
    assert ssh_verify(signed.allowed, signed.stable).returncode == 0


def test_key_that_cannot_sign_changes_nothing(signed: World) -> None:
    before = (signed.stable.read_bytes(), signed.stable_sig.read_bytes())
    write_tested(signed.locks, make_lock(torch_date="2026-11-12"))
    not_a_key = signed.root / "not-a-key"
    not_a_key.write_text("hello\n")
    for key in (not_a_key, signed.root / "missing-key"):
        proc = signed.cli("promote", "dev", "--to", "stable", "--sign-key", str(key))
        assert proc.returncode == ExitCode.USAGE
        assert "--sign-key" in one_error_line(proc)
        assert (signed.stable.read_bytes(), signed.stable_sig.read_bytes()) == before
    assert not [p for p in signed.locks.iterdir() if p.name.startswith(".stable")]


def test_commit_commits_lock_and_signature_and_a_later_unsigned_promote_removes_it(world: World) -> None:
    repo = git.Repo.init(world.locks.parent)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Test").set_value("user", "email", "t@example.com")
    proc = world.cli("promote", "dev", "--to", "stable", "--sign-key", str(world.key), "--commit")
    assert proc.returncode == 0, proc.stderr
    tree = {os.fspath(item.path) for item in repo.head.commit.tree.traverse() if isinstance(item, git.Blob)}
    assert {"locks/stable.lock.toml", "locks/stable.lock.toml.sig"} <= tree
    committed_sig = repo.head.commit.tree / "locks/stable.lock.toml.sig"
    assert committed_sig.data_stream.read() == world.stable_sig.read_bytes()

    write_tested(world.locks, make_lock(torch_date="2026-11-12"))
    proc = world.cli("promote", "dev", "--to", "stable", "--commit")
    assert proc.returncode == 0, proc.stderr
    tree = {os.fspath(item.path) for item in repo.head.commit.tree.traverse() if isinstance(item, git.Blob)}
    assert "locks/stable.lock.toml" in tree and "locks/stable.lock.toml.sig" not in tree


def test_failed_commit_puts_back_the_previous_lock_and_signature(signed: World) -> None:
    repo = git.Repo.init(signed.locks.parent)
    with repo.config_writer() as cfg:
        cfg.set_value("user", "name", "Test").set_value("user", "email", "t@example.com")
    before = (signed.stable.read_bytes(), signed.stable_sig.read_bytes())
    hook = Path(repo.git_dir) / "hooks" / "pre-commit"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\nexit 1\n")
    hook.chmod(0o755)
    write_tested(signed.locks, make_lock(torch_date="2026-11-12"))
    proc = signed.cli("promote", "dev", "--to", "stable", "--sign-key", str(signed.key), "--commit")
    assert proc.returncode == ExitCode.OUTPUT
    assert "back in place" in one_error_line(proc)
    assert (signed.stable.read_bytes(), signed.stable_sig.read_bytes()) == before
    assert ssh_verify(signed.allowed, signed.stable).returncode == 0


# ---------------------------------------------------------------- the pure part


def test_trusted_keys_precedence() -> None:
    opt, env_file, system = Path("/o"), "/e", Path("/s")
    env = {signing.TRUSTED_KEYS_ENV: env_file}
    pick = signing.trusted_keys
    assert pick(opt, env, system_default=system, system_default_exists=True) == signing.TrustedKeys(
        path=opt, source="--trusted-keys")
    from_env = pick(None, env, system_default=system, system_default_exists=True)
    assert from_env is not None and from_env.path == Path(env_file)
    system_wide = pick(None, {}, system_default=system, system_default_exists=True)
    assert system_wide is not None and system_wide.path == system
    assert pick(None, {}, system_default=system, system_default_exists=False) is None


def test_parsing_ssh_keygen_answers() -> None:
    good = 'Good "vllm-lock" signature for a@x with ED25519 key SHA256:abc+/1\n'
    assert signing.signing_key_of(good) == "ED25519 key SHA256:abc+/1"
    assert signing.signing_key_of('Good "vllm-lock" signature with ED25519 key SHA256:q') == "ED25519 key SHA256:q"
    assert signing.signing_key_of("Could not verify signature.") is None
    assert signing.principals("a@x\nb@y\na@x\n\n") == ("a@x", "b@y")
    assert signing.signature_path(Path("/l/stable.lock.toml")) == Path("/l/stable.lock.toml.sig")
    assert not signing.looks_like_signature(b"x" * 10)
    assert not signing.looks_like_signature(signing.SIGNATURE_ARMOR + b"x" * signing.MAX_SIGNATURE_BYTES)


def test_only_bytes_promote_wrote_are_signed(signed: World) -> None:
    # the stable lock gains a comment (equal values, other bytes): signing rewrites our own bytes
    original = signed.stable.read_bytes()
    signed.stable.write_bytes(original + b"# note from someone\n")
    proc = signed.cli("promote", "dev", "--to", "stable", "--sign-key", str(signed.key))
    assert proc.returncode == 0, proc.stderr
    assert signed.stable.read_bytes() == original
    assert ssh_verify(signed.allowed, signed.stable).returncode == 0


# A hook at the check point: the real CLI in a subprocess, with verify_lock.describe (called right
# after the signature check, before install starts) swapping the lock file for another valid lock.
SWAP_AFTER_CHECK = """
import os, sys
from vllm_lock.actions import verify_lock
checked = verify_lock.describe
def describe_then_swap(verified):
    os.replace(os.environ["SWAP_FROM"], os.environ["SWAP_TO"])
    return checked(verified)
verify_lock.describe = describe_then_swap
from vllm_lock import cli
sys.argv = ["vllm-lock", *sys.argv[1:]]
cli.main()
"""


def test_install_require_signed_installs_the_verified_bytes_not_a_file_swapped_after_the_check(
    signed: World,
) -> None:
    evil = signed.root / "evil.lock.toml"
    files.write_output(evil, codec.dumps(make_lock(name="evil")))
    venv = signed.root / "opt" / "vllm"
    proc = subprocess.run(
        [sys.executable, "-c", SWAP_AFTER_CHECK, "install", str(signed.stable), "--venv", str(venv),
         "--src", str(signed.root / "opt" / "src"), "--require-signed", "--trusted-keys", str(signed.allowed)],
        env=signed.env(SWAP_FROM=str(evil), SWAP_TO=str(signed.stable)), capture_output=True, text=True,
        timeout=120, cwd=signed.root,
    )
    assert f"good signature by {PRINCIPAL}" in proc.stderr
    assert not evil.exists()  # the swap happened, after the check
    assert "installing lock stable" in proc.stderr, proc.stderr
    assert "installing lock evil" not in proc.stderr


def test_a_symlinked_signature_is_refused_even_when_it_points_at_a_good_one(signed: World) -> None:
    """Phoenix refuses a symlinked .sig; verify-lock must too (lstat, not stat)."""
    elsewhere = signed.root / "elsewhere.sig"
    signed.stable_sig.rename(elsewhere)
    signed.stable_sig.symlink_to(elsewhere)
    proc = signed.cli("verify-lock", "stable", "--trusted-keys", str(signed.allowed))
    assert proc.returncode == ExitCode.LOCK_INVALID
    assert "is a symbolic link" in one_error_line(proc)
