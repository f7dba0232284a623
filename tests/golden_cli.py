"""The CLI invocations whose output is pinned in tests/golden/outputs.json.

The locks, the signature and outputs.json under tests/golden/ were written by vllm-lock at commit
e1b1407, before the restructuring of issue 11; test_golden_cli.py checks that today's code reads,
verifies, diffs, exports and describes them byte for byte as that code did.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

COMMANDS: tuple[tuple[str, ...], ...] = (
    ("--help",),
    *((command, "--help") for command in (
        "resolve", "show", "export", "demo", "install", "verify", "rollback", "build-check",
        "update", "diff", "test", "promote", "verify-lock",
    )),
    ("show", "before.lock.toml"),
    ("show", "after.lock.toml"),
    ("diff", "before.lock.toml", "before.lock.toml"),
    ("diff", "before.lock.toml", "after.lock.toml", "--max-commits", "0"),
    ("diff", "before.lock.toml", "after.lock.toml", "--max-commits", "0", "--format", "json"),
    ("diff", "before.lock.toml", "after.lock.toml", "--max-commits", "0", "--format", "markdown"),
    ("export", "before.lock.toml", "-o", "pylock.before.toml"),
    ("verify-lock", "before.lock.toml", "--trusted-keys", "allowed_signers"),
    ("verify-lock", "after.lock.toml", "--trusted-keys", "allowed_signers"),
    ("show", "missing.lock.toml"),
    ("show", "tampered.lock.toml"),
    ("diff", "before.lock.toml", "tampered.lock.toml"),
    ("install", "before.lock.toml", "--venv", "v", "--src", "v"),
    ("no-such-command",),
)


def run(command: tuple[str, ...], golden: Path) -> dict[str, object]:
    """Run one command in a scratch copy of the golden folder; return its exit code and output."""
    exe = Path(sys.executable).parent / "vllm-lock"
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch) / "golden"
        shutil.copytree(golden, work)
        before = (work / "before.lock.toml").read_text()
        (work / "tampered.lock.toml").write_text(before.replace('editable = true', 'editable = false'))
        env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb", "HOME": scratch,
               "VLLM_LOCK_CACHE": str(Path(scratch) / "cache")}
        env.pop("VLLM_LOCK_MIRRORS", None)
        env.pop("VLLM_LOCK_TRUSTED_KEYS", None)
        done = subprocess.run([str(exe), *command], cwd=work, env=env, capture_output=True, text=True, timeout=120)
        exported = work / "pylock.before.toml"
        return {
            "rc": done.returncode,
            "stdout": done.stdout.replace(scratch, "<scratch>"),
            "stderr": done.stderr.replace(scratch, "<scratch>"),
            **({"pylock": exported.read_text()} if exported.exists() else {}),
        }
