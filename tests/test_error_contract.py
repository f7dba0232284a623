"""The error contract (docs/error-contract.md), for every exit code 2-9, each with a real trigger:
the console script as a user runs it, exactly one `error: ` line on stderr, after it only indented
context lines, no traceback, the code of errors.ExitCode."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_lock import codec, errors
from vllm_lock.cli import error_text
from vllm_lock.errors import ExitCode
from vllm_lock.shell import lockfiles
from vllm_lock_testworld import TestWorld

VLLM_LOCK = str(Path(sys.executable).with_name("vllm-lock"))


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VLLM_LOCK_DEBUG"))}
    return subprocess.run([VLLM_LOCK, *args], cwd=cwd, env={**base, **(env or {})}, capture_output=True, text=True,
                          timeout=600)


def assert_contract(result: subprocess.CompletedProcess[str], code: ExitCode, message: str) -> list[str]:
    """The failure's part of stderr: [the error line, context lines...]."""
    assert result.returncode == code, result.stderr[-3000:]
    lines = result.stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, result.stderr[-3000:]
    failure = lines[starts[0]:]
    assert failure[0].startswith("error: ") and message in failure[0], failure[0]
    assert all(line[:1].isspace() for line in failure[1:]), failure
    assert not any(line.startswith("Traceback") for line in lines)  # ours (a build's own is indented output)
    return failure


def resolve_args(world: TestWorld, *extra: str) -> list[str]:
    return ["resolve", "--repo", world.repo_url, "--torch-index", world.torch_nightly_index,
            "--index", world.general_index, "--python", "3.11", "--platform", "x86_64-manylinux_2_28",
            "--target-device", "cpu",
            *extra]


@pytest.fixture(scope="module")
def lock(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contract") / "dev.lock.toml"
    result = run(*resolve_args(world, "-o", str(out)), cwd=out.parent)
    assert result.returncode == 0, result.stderr
    return out


def test_error_text_form() -> None:
    assert error_text("one line") == "error: one line"
    assert error_text("head\n    tail 1\ntail 2\n\n  full log: x") == "error: head\n    tail 1\n  tail 2\n  full log: x"
    assert error_text("") == "error: unknown error"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("resolve", "--bogus"), "No such option: --bogus"),
        (("install",), "Missing argument 'lock'."),
        (("install", "x", "--max-jobs", "many"), "--max-jobs must be a positive integer, got 'many'"),
        (("resolve", "--arch", "9.9", "-o", "x.lock.toml"),
         "cannot build arch 9.9 with cu128: unknown CUDA architecture"),
    ],
)
def test_2_usage(args: tuple[str, ...], message: str, tmp_path: Path) -> None:
    assert_contract(run(*args, cwd=tmp_path), ExitCode.USAGE, message)


def test_3_lock_invalid(lock: Path, tmp_path: Path) -> None:
    edited = tmp_path / "edited.lock.toml"
    edited.write_text(lock.read_text().replace("--", "--", 1).replace('target-device = "cpu"',
                                                                      'target-device = "rocm"'))
    assert edited.read_text() != lock.read_text()
    assert_contract(run("show", str(edited), cwd=tmp_path), ExitCode.LOCK_INVALID, "content-hash mismatch")


def test_4_unreachable(world: TestWorld, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on (closed again before the run)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = resolve_args(world, "-o", str(tmp_path / "x.lock.toml"))
    args[args.index("--torch-index") + 1] = f"http://127.0.0.1:{port}/whl/nightly/cu128"
    assert_contract(run(*args, cwd=tmp_path), ExitCode.UNREACHABLE, f"127.0.0.1:{port}")


def test_5_resolution(world: TestWorld, tmp_path: Path) -> None:
    result = run(*resolve_args(world, "--ref", "no-such-branch", "-o", str(tmp_path / "x.lock.toml")), cwd=tmp_path)
    assert_contract(result, ExitCode.RESOLUTION, "ref 'no-such-branch' not found")


def test_6_build_failure_prints_the_log_tail(world: TestWorld, tmp_path: Path) -> None:
    """A compiler flag gcc rejects (from the caller's environment: a lock cannot carry CFLAGS): the
    build fails, the tail of its output and the full log's path follow the error line, indented."""
    out = tmp_path / "bad-flag.lock.toml"
    resolved = run(*resolve_args(world, "-o", str(out)), cwd=tmp_path)
    assert resolved.returncode == 0, resolved.stderr
    result = run("install", str(out), "--venv", str(tmp_path / "vllm"), "--src", str(tmp_path / "src"), cwd=tmp_path,
                 env={"CFLAGS": "-fno-such-flag-vllm-lock"})
    failure = assert_contract(result, ExitCode.INSTALL, "building vLLM failed (exit 1); last lines:")
    assert failure[-1].startswith("  full log: ")
    log = Path(failure[-1].split(": ", 1)[1]).read_text()
    assert "-fno-such-flag-vllm-lock" in log  # the cause, in the full log
    tail = [line.removeprefix("    ").rstrip() for line in failure[1:-1]]
    logged = [line.rstrip() for line in log.splitlines()]
    assert len(tail) >= 5 and all(line in logged for line in tail)  # the context: the build output's last lines
    assert not (tmp_path / "vllm").exists()


def test_7_preflight(world: TestWorld, tmp_path: Path) -> None:
    out = tmp_path / "cuda.lock.toml"
    args = resolve_args(world, "-o", str(out))
    args[args.index("--target-device") + 1] = "cuda"
    assert run(*args, cwd=tmp_path).returncode == 0
    (tmp_path / "empty-cuda").mkdir()
    result = run("install", str(out), "--venv", str(tmp_path / "vllm"), "--src", str(tmp_path / "src"), cwd=tmp_path,
                 env={"CUDA_HOME": str(tmp_path / "empty-cuda")})
    assert_contract(result, ExitCode.PREFLIGHT, "nvcc not found")


def test_8_integrity(lock: Path, tmp_path: Path) -> None:
    """The lock says one sha256 for filelock's wheel, the index serves bytes that hash otherwise."""
    loaded, _ = lockfiles.read(str(lock))
    wrong = "0" * 64
    packages = tuple(dataclasses.replace(p, wheels=tuple(dataclasses.replace(w, sha256=wrong) for w in p.wheels))
                     if p.name == "filelock" else p for p in loaded.packages)
    assert any(w.sha256 == wrong for p in packages for w in p.wheels)
    edited = tmp_path / "wrong-hash.lock.toml"
    edited.write_text(codec.dumps(dataclasses.replace(loaded, packages=packages)))
    result = run("install", str(edited), "--venv", str(tmp_path / "vllm"), "--src", str(tmp_path / "src"), cwd=tmp_path,
                 env={"VLLM_LOCK_CACHE": str(tmp_path / "cache")})
    assert_contract(result, ExitCode.INTEGRITY, "filelock")


def test_9_output(world: TestWorld, tmp_path: Path) -> None:
    result = run(*resolve_args(world, "-o", str(tmp_path / "missing" / "x.lock.toml")), cwd=tmp_path)
    assert_contract(result, ExitCode.OUTPUT, "does not exist")
    assert not (tmp_path / "missing").exists()


def test_control_characters_in_a_message_are_escaped(tmp_path: Path) -> None:
    """An error line carries untrusted text (here a path with a terminal's clear-screen sequence):
    it reaches stderr escaped, every character printable."""
    assert error_text("bad \x1b[2J name\n\tcontext \x07") == "error: bad \\x1b[2J name\n  \\tcontext \\x07"
    result = run("show", "evil\x1b[2Jname.lock.toml", cwd=tmp_path)
    assert "\x1b" not in result.stderr
    [line] = assert_contract(result, ExitCode(result.returncode), "evil\\x1b[2Jname")
    assert line.isprintable()


def _closed_stdout(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with stdout a pipe whose reader has already gone (`vllm-lock show ... | true`)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_", "VLLM_LOCK_DEBUG"))}
        return subprocess.run([VLLM_LOCK, *args], cwd=cwd, env=base, stdout=write_end, stderr=subprocess.PIPE,
                              text=True, timeout=600)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [("show",), ("show", "--json"), ("diff", "--format", "json"), ("verify",)])
def test_a_closed_stdout_exits_quietly_with_141(lock: Path, tmp_path: Path, args: tuple[str, ...]) -> None:
    """`vllm-lock verify ... | true`, `show ... | head -c1`: the reader went away; no internal error
    (verify's was exit 2), no silent exit 1 (rich's own handler), the conventional 141."""
    command, *options = args
    paths = [str(lock), str(lock)] if command == "diff" else [str(lock)]
    if command == "verify":  # an empty environment: verify prints its drift report
        venv = tmp_path / "venv"
        (venv / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
        (venv / "bin").mkdir()
        options = ["--venv", str(venv)]
    result = _closed_stdout(command, *paths, *options, cwd=tmp_path)
    assert result.returncode == 141, result.stderr
    assert result.stderr == ""


GOLDEN = Path(__file__).parent / "golden"

# The CLI with one action replaced by a function raising the given exception (a bug, a Ctrl-C).
RAISING = """
import sys
from vllm_lock.actions import {module} as target
def fail(*args, **kwargs):
    raise {exception}
target.{function} = fail
from vllm_lock import cli
sys.argv = ["vllm-lock", *sys.argv[1:]]
cli.main()
"""


def _raising(tmp_path: Path, module: str, function: str, exception: str, *args: str
             ) -> subprocess.CompletedProcess[str]:
    script = RAISING.format(module=module, function=function, exception=exception)
    base = {k: v for k, v in os.environ.items() if k != "VLLM_LOCK_DEBUG"}
    return subprocess.run([sys.executable, "-c", script, *args], cwd=tmp_path, env=base, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def locks(tmp_path: Path) -> Path:
    """A folder with a good lock (before.lock.toml) and one whose content no longer matches its hash."""
    good = (GOLDEN / "before.lock.toml").read_text()
    (tmp_path / "before.lock.toml").write_text(good)
    tampered = good.replace("editable = true", "editable = false")
    assert tampered != good
    (tmp_path / "tampered.lock.toml").write_text(tampered)
    return tmp_path


def test_the_exit_rule_per_command() -> None:
    """One table: a failure's own code, except for the commands that answer with exit 1."""
    assert errors.ANSWERING_COMMANDS == {"diff", "verify"}
    for failure, own in ((errors.LockInvalidError("x"), ExitCode.LOCK_INVALID),
                         (errors.UnreachableError("x"), ExitCode.UNREACHABLE), (RuntimeError("x"), ExitCode.INTERNAL)):
        assert errors.exit_code_for(failure, command="show") == own
        assert errors.exit_code_for(failure, command="diff") == ExitCode.USAGE
        assert errors.exit_code_for(failure, command="verify") == ExitCode.USAGE
    for command in ("show", "diff", "verify"):
        assert errors.exit_code_for(KeyboardInterrupt(), command=command) == ExitCode.INTERRUPTED


def test_diff_and_verify_keep_1_for_the_answer_and_exit_2_on_an_invalid_lock(locks: Path) -> None:
    """The same invalid lock: exit 3 from show, 2 from diff and verify (1 is their answer)."""
    assert_contract(run("show", "tampered.lock.toml", cwd=locks), ExitCode.LOCK_INVALID, "content-hash mismatch")
    assert_contract(run("diff", "before.lock.toml", "tampered.lock.toml", cwd=locks), ExitCode.USAGE,
                    "content-hash mismatch")
    assert_contract(run("verify", "tampered.lock.toml", "--venv", str(locks / "venv"), cwd=locks), ExitCode.USAGE,
                    "content-hash mismatch")
    same = run("diff", "before.lock.toml", "before.lock.toml", "--max-commits", "0", cwd=locks)
    assert same.returncode == ExitCode.OK and same.stderr == ""


def test_a_bug_in_diff_exits_2_and_in_show_70(locks: Path) -> None:
    bug = "RuntimeError('unexpected')"
    failure = assert_contract(_raising(locks, "diff", "diff", bug, "diff", "before.lock.toml", "before.lock.toml"),
                              ExitCode.USAGE, "internal error: RuntimeError: unexpected")
    assert failure == [failure[0]]
    assert_contract(_raising(locks, "show", "render", bug, "show", "before.lock.toml"),
                    ExitCode.INTERNAL, "internal error: RuntimeError: unexpected")


def test_an_interrupted_diff_exits_130_not_2(locks: Path) -> None:
    result = _raising(locks, "diff", "diff", "KeyboardInterrupt()", "diff", "before.lock.toml", "before.lock.toml")
    assert_contract(result, ExitCode.INTERRUPTED, "interrupted")
