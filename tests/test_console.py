"""The console script (vllm_lock/console.py): cli.main's outcome, exit code and output unchanged,
the process ended without the interpreter's teardown, garbage collected less often while modules load."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_lock import console

# a process running the console entry point (or cli.main), with an atexit handler that says so if
# the interpreter's own ending ran, and the collector's threshold as the command found it
PROBE = """
import atexit, gc, sys
atexit.register(lambda: print("teardown ran", file=sys.stderr))
entry, sys.argv = sys.argv[1], ["vllm-lock", *sys.argv[2:]]
from vllm_lock import cli
command = cli.main
def main():
    print(f"threshold {gc.get_threshold()[0]}", file=sys.stderr)
    command()
cli.main = main
if entry == "console":
    from vllm_lock.console import main as run
else:
    run = cli.main
run()
"""


def _run(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, entry, *args], capture_output=True, text=True, timeout=60)


def test_the_console_ends_the_process_without_teardown_and_the_same_outcome() -> None:
    plain, fast = _run("cli", "--version"), _run("console", "--version")
    assert plain.returncode == fast.returncode == 0
    assert fast.stdout == plain.stdout and fast.stdout.startswith("vllm-lock ")
    assert "teardown ran" in plain.stderr  # the probe's handler works
    assert "teardown ran" not in fast.stderr, fast.stderr
    assert "threshold 700" in plain.stderr and f"threshold {console.COLLECT_EVERY}" in fast.stderr


def test_a_failure_keeps_its_line_and_exit_code(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothing.lock.toml")
    plain, fast = _run("cli", "show", missing), _run("console", "show", missing)
    assert fast.returncode == plain.returncode != 0
    said = fast.stderr.splitlines()
    assert said[0].startswith("threshold ") and said[1:] == plain.stderr.splitlines()[1:-1]  # less "teardown ran"
    assert len(said) == 2 and said[1].startswith("error: "), said


def _with_stdout_closed(entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write breaks the pipe
    with os.fdopen(write, "w") as stdout:
        return subprocess.run([sys.executable, "-c", PROBE, entry, *args], stdout=stdout, stderr=subprocess.PIPE,
                              text=True, timeout=60)


def test_a_closed_stdout_ends_quietly_with_141() -> None:
    shown = str(Path(__file__).parent / "golden" / "before.lock.toml")
    plain, fast = _with_stdout_closed("cli", "show", shown), _with_stdout_closed("console", "show", shown)
    assert plain.returncode == fast.returncode == 141, (plain.stderr, fast.stderr)
    assert fast.stderr.splitlines()[1:] == [], fast.stderr  # nothing but the probe's threshold line
    # click's own help ends otherwise on a broken pipe; the console keeps whatever cli.main chose
    assert _with_stdout_closed("console", "--help").returncode == _with_stdout_closed("cli", "--help").returncode


@pytest.mark.parametrize(("code", "status", "printed"), [(None, 0, ""), (0, 0, ""), (3, 3, ""), ("gone", 1, "gone\n")])
def test_exit_status_reads_sys_exit_as_the_interpreter_does(code: object, status: int, printed: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert console.exit_status(code) == status
    assert capsys.readouterr().err == printed


def _with_closed(fd: int, entry: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The entry point run with file descriptor fd closed (`2>&-`, `>&-`: a daemon's or cron's
    start): Python then has None for that stream."""
    argv = [sys.executable, "-m", "vllm_lock.cli"] if entry == "console" else \
        [sys.executable, "-c", "from vllm_lock.cli import main; main()"]
    return subprocess.run(["bash", "-c", f'exec "$@" {fd}>&-', "bash", *argv, *args], capture_output=fd != 1,
                          stderr=subprocess.PIPE if fd == 1 else None, text=True, timeout=60)


@pytest.mark.parametrize("entry", ["console", "cli"])
def test_a_closed_stderr_keeps_the_exit_code(entry: str) -> None:
    ran = _with_closed(2, entry, "--version")
    assert ran.returncode == 0 and ran.stdout.startswith("vllm-lock "), (ran.returncode, ran.stdout)


@pytest.mark.parametrize("entry", ["console", "cli"])
def test_a_closed_stdout_descriptor_is_no_traceback(entry: str) -> None:
    shown = str(Path(__file__).parent / "golden" / "before.lock.toml")
    ran = _with_closed(1, entry, "show", shown)
    assert ran.returncode == 0 and ran.stderr == "", (ran.returncode, ran.stderr)
