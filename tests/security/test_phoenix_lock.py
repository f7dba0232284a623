"""The Phoenix feature script treats the lock, its signature and the config as untrusted input:
everything is checked on the host before the first `pct` call (the pct stand-in records every
call, so "nothing pushed" is an empty record), each refusal is one log line and a non-zero exit.

No container is needed: a run that gets past the host checks stops at the first `pct` call (there
is no container 801), which the tests use as the proof that the checks passed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sample_lock import make_lock

from vllm_lock import codec

sys.path.insert(0, str(Path(__file__).parents[1] / "phoenix"))
import harness as ph  # noqa: E402
import rootfs  # noqa: E402

CTID = "801"
PRINCIPAL = ph.SIGNER
LOCK_REFUSED = 3


def lock_text(name: str = "stable", **overrides: Any) -> str:
    return codec.dumps(make_lock(name=name, **overrides))


@pytest.fixture
def host(tmp_path: Path) -> ph.Host:
    host = ph.make_host(tmp_path / "host", ph.phoenix_config(CTID))
    (host.lock_dir / "stable.lock.toml").write_text(lock_text())
    return host


@pytest.fixture(scope="module")
def bundle() -> Path:
    return ph.ensure_bundle(rootfs.cache_dir())


def error_lines(host: ph.Host) -> list[str]:
    """The log's ERROR/FATAL lines but Phoenix's exit trailer ("Script failed with exit code N.")."""
    return [line for line in host.log().splitlines()
            if ("[ERROR]" in line or "[FATAL]" in line) and "Script failed with exit code" not in line]


def refused(host: ph.Host, proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    """Refused before anything reached the container: the exit code, no pct call at all, one line."""
    assert proc.returncode == code, proc.stderr
    assert host.pct_calls() == [], host.pct_calls()
    lines = error_lines(host)
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Starting vLLM installation" not in proc.stderr
    return lines[0]


def got_past_the_host_checks(host: ph.Host, proc: subprocess.CompletedProcess[str]) -> None:
    assert "Starting vLLM installation in CTID 801" in proc.stderr, proc.stderr
    assert host.pct_calls(), "the run should have reached the (missing) container"


# ---------------------------------------------------------------- item 6: the lock file itself


def test_symlinked_lock_is_refused_and_nothing_is_pushed(host: ph.Host, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(lock_text())  # even a perfectly valid lock behind the link
    lock = host.lock_dir / "stable.lock.toml"
    lock.unlink()
    lock.symlink_to(secret)
    proc = host.run(CTID, "https://172.16.100.11:9000")
    line = refused(host, proc, LOCK_REFUSED, "Refusing lock 'stable'", "is a symbolic link", str(secret))
    assert "Using lock" not in proc.stderr, line


def test_dangling_symlink_is_a_symlink_not_a_missing_lock(host: ph.Host) -> None:
    lock = host.lock_dir / "stable.lock.toml"
    lock.unlink()
    lock.symlink_to("/nonexistent/secret")
    refused(host, host.run(CTID), LOCK_REFUSED, "is a symbolic link")


def test_symlinked_signature_is_refused(host: ph.Host, tmp_path: Path) -> None:
    (tmp_path / "other.sig").write_text("x")
    (host.lock_dir / "stable.lock.toml.sig").symlink_to(tmp_path / "other.sig")
    refused(host, host.run(CTID), LOCK_REFUSED, "stable.lock.toml.sig is a symbolic link")


def test_directory_and_fifo_are_not_locks(host: ph.Host) -> None:
    lock = host.lock_dir / "stable.lock.toml"
    lock.unlink()
    lock.mkdir()
    refused(host, host.run(CTID), LOCK_REFUSED, "is not a regular file")
    lock.rmdir()
    os.mkfifo(lock)  # would block a reader forever
    host.log_file.unlink()
    refused(host, host.run(CTID, timeout=60), LOCK_REFUSED, "is not a regular file")


def test_empty_lock_and_non_lock_text_are_refused_without_a_bundle(host: ph.Host) -> None:
    lock = host.lock_dir / "stable.lock.toml"
    lock.write_text("")
    refused(host, host.run(CTID), LOCK_REFUSED, "is empty")
    lock.write_text("#!/bin/sh\nid > /tmp/pwned\n")
    host.log_file.unlink()
    refused(host, host.run(CTID), LOCK_REFUSED, "not a vllm-lock lock")


def test_without_a_bundle_the_host_check_is_bash_only_and_says_so(host: ph.Host) -> None:
    proc = host.run(CTID)
    assert "checked on the host in bash only (no offline bundle" in proc.stderr
    got_past_the_host_checks(host, proc)


def test_bundle_vllm_lock_validates_on_the_host(host: ph.Host, bundle: Path) -> None:
    shutil.copy2(bundle, host.bundle)
    proc = host.run(CTID)
    assert "validated on the host by the bundle's vllm-lock: stable (development), vLLM 111111111" in proc.stderr
    got_past_the_host_checks(host, proc)


def test_invalid_lock_is_refused_on_the_host_by_the_bundle(host: ph.Host, bundle: Path) -> None:
    shutil.copy2(bundle, host.bundle)
    lock = host.lock_dir / "stable.lock.toml"
    lock.write_text(lock.read_text().replace("1" * 40, "2" * 40))  # hand edit: content hash now wrong
    line = refused(host, host.run(CTID), LOCK_REFUSED, "vllm-lock: error:", "content-hash mismatch")
    assert str(lock) in line  # the operator's path, not the private copy's


def test_malformed_config_json_is_reported_with_jq_message_and_stops(host: ph.Host) -> None:
    host.config_file.write_text('{"lxc_configs": {"801": {"vllm_lock": "dev",}}}')
    proc = host.run(CTID)
    assert proc.returncode == 2
    line = refused(host, proc, 2, str(host.config_file), "is not valid JSON", "parse error")
    assert "Using lock" not in proc.stderr, line


@pytest.mark.parametrize("content", ["[1, 2]", '{"a": 1} {"b": 2}', ""])
def test_config_that_is_not_one_object_is_refused(host: ph.Host, content: str) -> None:
    host.config_file.write_text(content)
    refused(host, host.run(CTID), 2, "is not valid JSON", "exactly one JSON object")


# ---------------------------------------------------------------- signed locks on the host


@dataclasses.dataclass(frozen=True)
class Keys:
    release: Path
    intruder: Path


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(release=ph.make_ssh_key(tmp_path / "keys" / "release", "release"),
                intruder=ph.make_ssh_key(tmp_path / "keys" / "intruder", "intruder"))


def trust(host: ph.Host, key: Path) -> Path:
    return ph.trust_key(host, key)


def sign(key: Path, lock: Path) -> None:
    ph.ssh_sign(key, lock)


def test_no_trusted_keys_logs_that_locks_are_not_signature_checked(host: ph.Host) -> None:
    proc = host.run(CTID)
    assert "locks are not signature-checked" in proc.stderr
    got_past_the_host_checks(host, proc)


def test_unsigned_lock_is_refused_when_the_host_has_trusted_keys(host: ph.Host, keys: Keys) -> None:
    trust(host, keys.release)
    refused(host, host.run(CTID), LOCK_REFUSED, "is not signed", "allowed_signers")


def test_lock_signed_by_an_untrusted_key_is_refused(host: ph.Host, keys: Keys) -> None:
    trust(host, keys.release)
    sign(keys.intruder, host.lock_dir / "stable.lock.toml")
    refused(host, host.run(CTID), LOCK_REFUSED, "which is not a trusted key", "ED25519 key SHA256:")


def test_lock_edited_after_signing_is_refused_even_with_a_recomputed_hash(host: ph.Host, keys: Keys,
                                                                          bundle: Path) -> None:
    shutil.copy2(bundle, host.bundle)
    trust(host, keys.release)
    lock = host.lock_dir / "stable.lock.toml"
    sign(keys.release, lock)
    lock.write_text(lock_text(url="https://evil.example/vllm.git"))  # valid lock, hash recomputed
    refused(host, host.run(CTID), LOCK_REFUSED, "signature does not match the lock")


def test_good_signature_passes_and_names_the_signer(host: ph.Host, keys: Keys) -> None:
    trust(host, keys.release)
    sign(keys.release, host.lock_dir / "stable.lock.toml")
    proc = host.run(CTID)
    assert f"Lock 'stable': good signature by {PRINCIPAL} (ED25519 key SHA256:" in proc.stderr
    got_past_the_host_checks(host, proc)


def test_unreadable_trusted_keys_stop_the_run(host: ph.Host) -> None:
    (host.lock_dir / "allowed_signers").mkdir()
    refused(host, host.run(CTID), 2, "trusted keys", "not a readable file")


def fake_bundle(host: ph.Host, tmp_path: Path, files: dict[str, str]) -> None:
    """A bundle (checksums right) holding one wheel with just these files of vllm_lock."""
    import hashlib
    import tarfile
    import zipfile

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    wheel = wheels / "vllm_lock-0.0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    (wheels / "SHA256SUMS").write_text(f"{hashlib.sha256(wheel.read_bytes()).hexdigest()}  {wheel.name}\n")
    with tarfile.open(host.bundle, "w") as tar:
        for f in wheels.iterdir():
            tar.add(f, arcname=f"./{f.name}")


def test_a_bundle_whose_vllm_lock_cannot_run_on_the_host_falls_back_to_bash_checks(host: ph.Host,
                                                                                   tmp_path: Path) -> None:
    # an older bundle (no host check in it): the host says so and the container's read stays the check
    fake_bundle(host, tmp_path, {"vllm_lock/__init__.py": ""})
    proc = host.run(CTID)
    assert "checked on the host in bash only (the bundle's vllm-lock cannot run on the host" in proc.stderr
    assert "No module named vllm_lock.cli" in proc.stderr
    got_past_the_host_checks(host, proc)


def test_a_host_check_that_crashes_on_the_lock_refuses_it_never_falls_back(host: ph.Host, tmp_path: Path) -> None:
    """The bundle imports (the probe passes), then its check dies with a traceback on this lock (as
    a 5000-digit integer once did): that is a refusal, not "cannot run here, bash only"."""
    fake_bundle(host, tmp_path, {
        "vllm_lock/__init__.py": "",
        "vllm_lock/cli/__init__.py": "",
        # the probe (`show --help`) passes; the check of the lock itself dies
        "vllm_lock/cli/__main__.py": ("import sys\nif sys.argv[1:] != ['show', '--help']:\n"
                                      "    raise ValueError('crashed on ' + sys.argv[-1])\n"),
    })
    proc = host.run(CTID)
    line = refused(host, proc, LOCK_REFUSED, "the bundle's vllm-lock failed on it (exit 1)", "ValueError")
    assert "bash only" not in proc.stderr, line


def test_a_lock_with_a_5000_digit_integer_is_refused_by_the_real_bundle(host: ph.Host, bundle: Path) -> None:
    shutil.copy2(bundle, host.bundle)
    lock = host.lock_dir / "stable.lock.toml"
    text = lock.read_text()
    assert "\nsize = " in text
    lock.write_text(text.replace("\nsize = ", "\nsize = " + "9" * 5000 + "#", 1))
    line = refused(host, host.run(CTID), LOCK_REFUSED, "vllm-lock: error:", "not a lock", "4300 digits")
    assert "bash only" not in line


def test_a_symlink_target_with_a_newline_cannot_forge_a_log_line(host: ph.Host) -> None:
    lock = host.lock_dir / "stable.lock.toml"
    lock.unlink()
    forged = "[SUCCESS] vLLM installed in CTID 801"
    lock.symlink_to(f"/x\n{forged}")
    line = refused(host, host.run(CTID), LOCK_REFUSED, "is a symbolic link", "$'/x\\n[SUCCESS]")
    assert not any(entry.startswith(forged) for entry in host.log().splitlines()), line


def test_a_duplicate_vllm_lock_key_in_the_config_is_refused(host: ph.Host) -> None:
    """jq takes the last of duplicate keys silently: a reviewer reading the first would be fooled
    (here the second is spelled with a \\u escape, so a grep for the key finds one)."""
    (host.lock_dir / "dev.lock.toml").write_text(lock_text("dev"))
    host.config_file.write_text(
        '{"lxc_configs": {"801": {"vllm_lock": "stable", "name": "x", "vllm\\u005flock": "dev"}}}')
    line = refused(host, host.run(CTID), 2, "more than one 'vllm_lock' value at lxc_configs.801", "duplicate key")
    assert "Using lock" not in line
