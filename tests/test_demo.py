"""The README's main command, as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_resolves_installs_verifies(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vllm_lock.cli", "demo", "--workdir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    version = result.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"0\.32\.1\.dev2\+g[0-9a-f]{9}\.d\d{8}", version), version
    assert "==> vLLM source" in result.stderr and "==> build" in result.stderr
    assert "against" in result.stderr and ": clean" in result.stderr
    assert (tmp_path / "demo" / "locks" / "dev.lock.toml").is_file()
    assert (tmp_path / "demo" / "opt" / "vllm").is_symlink()
