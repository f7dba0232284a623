"""uv_shell.find_python: the interpreter binary for a Python version, never a launcher, so that
`uv venv` need not run a shim's scripts on every install. Real files, real uv."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from install_support import cli, install_args, resolve_world_lock

from vllm_lock.shell import uv as uv_shell
from vllm_lock_testworld import TestWorld

VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
REAL = os.path.realpath(sys.executable)


@pytest.fixture
def on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory first on PATH, and a working directory with no .venv uv would prefer."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)
    return folder


def shim(folder: Path, target: str = REAL) -> Path:
    """A launcher as pyenv's are: a script that execs the interpreter."""
    script = folder / f"python{VERSION}"
    script.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
    script.chmod(0o755)
    return script


def test_a_binary_on_path_is_taken_as_its_real_file(on_path: Path, tmp_path: Path) -> None:
    (on_path / f"python{VERSION}").symlink_to(REAL)
    assert uv_shell.find_python(VERSION, tmp_path / "cache") == REAL
    assert not (tmp_path / "cache" / "python").exists()  # nothing to remember


def test_a_shim_is_resolved_once_and_remembered(on_path: Path, tmp_path: Path) -> None:
    launcher = shim(on_path)
    cache = tmp_path / "cache"
    found = uv_shell.find_python(VERSION, cache)
    assert found is not None and os.path.realpath(found) == found
    with open(found, "rb") as handle:
        assert handle.read(4) == b"\x7fELF"
    memo = cache / "python" / f"{VERSION}.json"
    record = json.loads(memo.read_text())
    assert record["launcher"] == str(launcher) and record["binary"] == found
    # the memo is what answers next time: point it at another binary (with its stat) and that one comes back
    other = os.path.realpath("/bin/sh")
    record.update(binary=other, **{"binary-stat": list(_stat(other))})
    memo.write_text(json.dumps(record))
    assert uv_shell.find_python(VERSION, cache) == other


def test_a_changed_launcher_is_asked_again(on_path: Path, tmp_path: Path) -> None:
    launcher = shim(on_path)
    cache = tmp_path / "cache"
    found = uv_shell.find_python(VERSION, cache)
    memo = cache / "python" / f"{VERSION}.json"
    record = json.loads(memo.read_text())
    other = os.path.realpath("/bin/sh")
    record.update(binary=other, **{"binary-stat": list(_stat(other))})
    memo.write_text(json.dumps(record))
    launcher.write_text(launcher.read_text() + "# pyenv rewrote its shims\n")  # size and mtime change
    assert uv_shell.find_python(VERSION, cache) == found  # uv asked again, not the memo
    assert json.loads(memo.read_text())["binary"] == found


@pytest.mark.parametrize("damage", ["not json", '{"launcher": 1}', "[]"])
def test_a_damaged_memo_is_ignored_and_rewritten(on_path: Path, tmp_path: Path, damage: str) -> None:
    shim(on_path)
    cache = tmp_path / "cache"
    found = uv_shell.find_python(VERSION, cache)
    memo = cache / "python" / f"{VERSION}.json"
    memo.write_text(damage)
    assert uv_shell.find_python(VERSION, cache) == found
    assert json.loads(memo.read_text())["binary"] == found


def _stat(path: str) -> tuple[int, int, int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns


def test_a_fifo_named_like_the_interpreter_is_passed_over(on_path: Path, tmp_path: Path) -> None:
    """Reading the first bytes of what PATH names (is it a binary?) must not block on a FIFO."""
    fifo = on_path / f"python{VERSION}"
    os.mkfifo(fifo)
    fifo.chmod(0o755)
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from pathlib import Path; from vllm_lock.shell import uv; "
         "print(uv.find_python(sys.argv[1], Path(sys.argv[2])))", VERSION, str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() != str(fifo)


def _another_python() -> str:
    """A CPython binary of another minor version than the lock's 3.11 (this machine has pyenv's)."""
    candidates = [*glob.glob("/root/.pyenv/versions/3.*/bin/python3.*"), *glob.glob("/usr/bin/python3.*"),
                  *glob.glob("/usr/local/bin/python3.*")]
    for path in sorted(candidates):
        if re.fullmatch(r"python3\.[0-9]+", os.path.basename(path)) and not path.endswith("python3.11"):
            real = os.path.realpath(path)
            with open(real, "rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    return real
    pytest.skip("no CPython other than 3.11 on this machine")


def test_a_remembered_interpreter_of_another_version_is_refused_forgotten_and_a_rerun_repairs(
    world: TestWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _another_python()
    cache = tmp_path / "cache"
    _, path = resolve_world_lock(world, tmp_path / "dev.lock.toml", cache)
    folder = tmp_path / "bin"
    folder.mkdir()
    launcher = folder / "python3.11"  # a shim, as pyenv's: the memo is what names its binary
    launcher.write_text(f'#!/bin/sh\nexec {os.path.realpath(sys.executable)} "$@"\n')
    launcher.chmod(0o755)
    memo = cache / "python" / "3.11.json"
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"launcher": str(launcher), "launcher-stat": list(_stat(str(launcher))),
                                "binary": other, "binary-stat": list(_stat(other))}))
    env = {"PATH": f"{folder}{os.pathsep}{os.environ['PATH']}"}

    refused = cli(*install_args(path, tmp_path / "opt"), cache=cache, env=env)
    assert refused.returncode == 7, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "the lock is for Python 3.11" in errors[0], refused.stderr[-3000:]
    assert not memo.exists()  # forgotten
    assert not (tmp_path / "opt" / "vllm").exists()  # nothing switched

    again = cli(*install_args(path, tmp_path / "opt"), cache=cache, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(memo.read_text())["binary"] != other
