"""The cache commands' bad inputs: one `error:` line, the table's exit code, nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "vllm_lock.cli"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["cache", "ls", "http://127.0.0.1:1/x"], 2, "a static HTTP cache cannot be listed"),
        (["cache", "ls", "ftp://x"], 2, "is not a file://, http(s):// or s3:// cache URL"),
        (["key", "generate", "--name", "a b"], 2, "key name 'a b'"),
        (["cache", "push", "dev", "--push", "file:///tmp/x"], 2, "pushing to a cache needs a signing key"),
        (["cache", "ls", "s3://b/p?endpoint=http://127.0.0.1:1"], 2, "no AWS credentials"),
        (["cache", "ls", "s3://b/p?endpoint=gopher://x"], 2, "endpoint= must be http(s)://HOST[:PORT]"),
        (["cache", "verify", "file:///x", "--trusted-cache-key", "k:AAAA"], 2, "the public key k has 3 bytes"),
    ],
)
def test_bad_input_is_one_error_line(args: list[str], code: int, message: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VLLM_LOCK_CACHE"))}
    env["HOME"] = str(tmp_path)
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_key_generate_refuses_to_overwrite_and_keeps_the_old_key(tmp_path: Path) -> None:
    first = subprocess.run([*CLI, "key", "generate", "--name", "k1"], capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0 and first.stdout.startswith("k1:"), first.stderr
    secret = (tmp_path / "k1.secret").read_text()
    again = subprocess.run([*CLI, "key", "generate", "--name", "k1"], capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 9 and "refusing to overwrite a key" in again.stderr
    assert (tmp_path / "k1.secret").read_text() == secret
    assert oct((tmp_path / "k1.secret").stat().st_mode & 0o777) == "0o600"
