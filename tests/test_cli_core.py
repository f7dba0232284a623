"""The CLI as a user runs it: a real process, its output and exit code."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

import vllm_lock
from vllm_lock.actions.resolve import ResolveRequest
from vllm_lock.cli import COMMANDS, app, app_for, options
from vllm_lock.model import LOCK_VERSION
from vllm_lock.shell import uv as uv_shell
from vllm_lock_testworld import TestWorld

CLI = [sys.executable, "-m", "vllm_lock.cli"]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def project(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with locks/dev.lock.toml resolved through the CLI."""
    root = tmp_path_factory.mktemp("project")
    (root / "locks").mkdir()
    result = run_cli("resolve", "--repo", world.repo_url, "--torch-index", world.torch_nightly_index,
                     "--index", world.general_index, "--python", "3.11", "--name", "dev", cwd=root,
                     env={"VLLM_LOCK_CACHE": str(root / "cache")})
    assert result.returncode == 0, result.stderr
    assert "==> vLLM source" in result.stderr and "locks/dev.lock.toml: written" in result.stdout
    return root


def test_show_by_name(project: Path) -> None:
    result = run_cli("show", "dev", cwd=project)
    assert result.returncode == 0, result.stderr
    assert "torch" in result.stdout and "latest -> 2.10.0.dev" in result.stdout and "packages" in result.stdout


def test_show_json(project: Path, world: TestWorld) -> None:
    result = run_cli("show", "locks/dev.lock.toml", "--json", cwd=project)
    data = json.loads(result.stdout)
    assert data["vllm"]["commit"] == world.commits[-1]
    assert data["torch"]["date"] == world.latest_consistent_date.isoformat()
    assert data["packages"]["by-source"]["torch"] == 4 and data["content-hash"].startswith("sha256:")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('hash-origin = "index"', 'hash-origin = "downloaded"', 1), "content-hash mismatch"),
        (lambda t: t.replace(f"lock-version = {LOCK_VERSION}", "lock-version = 7"), "unknown lock-version 7"),
        (lambda t: t[: len(t) // 2], "not valid TOML"),
    ],
)
def test_bad_locks_exit_3_with_one_line(project: Path, tmp_path: Path, edit: Callable[[str], str], message: str
                                        ) -> None:
    bad = tmp_path / "bad.lock.toml"
    bad.write_text(edit((project / "locks/dev.lock.toml").read_text()))
    result = run_cli("show", str(bad), cwd=project)
    assert result.returncode == 3
    assert message in result.stderr and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_missing_lock_is_a_usage_error(project: Path) -> None:
    result = run_cli("show", "nope", cwd=project)
    assert result.returncode == 2 and "lock 'nope' not found" in result.stderr


def test_resolve_errors_map_to_exit_codes(project: Path, world: TestWorld, tmp_path: Path) -> None:
    common = ["--repo", world.repo_url, "--torch-index", world.torch_nightly_index, "--index", world.general_index,
              "--python", "3.11", "-o", str(tmp_path / "x.lock.toml")]
    env = {"VLLM_LOCK_CACHE": str(project / "cache")}
    assert run_cli("resolve", *common, "--ref", "nope", env=env).returncode == 5
    assert run_cli("resolve", *common, "--torch-date", "2026-01-01", env=env).returncode == 5
    result = run_cli("resolve", *common, "--arch", "12.0", "--cuda", "cu126", env=env)
    assert result.returncode == 2 and "sm_120 needs CUDA >= 12.8" in result.stderr
    result = run_cli("resolve", *[c if c != str(tmp_path / "x.lock.toml") else "/proc/x.lock.toml" for c in common],
                     env=env)
    assert result.returncode == 9 and "cannot write" in result.stderr
    assert not (tmp_path / "x.lock.toml").exists()


def test_export_is_a_pylock_uv_installs(project: Path, tmp_path: Path) -> None:
    result = run_cli("export", "dev", cwd=project)
    assert result.returncode == 0, result.stderr
    pylock = project / "locks" / "pylock.dev.toml"
    assert pylock.is_file() and 'lock-version = "1.0"' in pylock.read_text()
    env = uv_shell.uv_env(tmp_path / "uvcache")
    venv = tmp_path / "venv"
    subprocess.run([uv_shell.uv_bin(), "venv", "--python", "3.11", str(venv)], env=env, check=True, capture_output=True)
    sync = subprocess.run([uv_shell.uv_bin(), "pip", "sync", "--python", str(venv / "bin/python"), str(pylock)],
                          env=env, capture_output=True, text=True)
    assert sync.returncode == 0, sync.stderr
    frozen = subprocess.run([uv_shell.uv_bin(), "pip", "freeze", "--python", str(venv / "bin/python")], env=env,
                            capture_output=True, text=True).stdout
    assert "torch==2.10.0.dev" in frozen and "setuptools==" in frozen


def test_export_refuses_a_non_pep751_name(project: Path, tmp_path: Path) -> None:
    result = run_cli("export", "dev", "-o", str(tmp_path / "requirements.toml"), cwd=project)
    assert result.returncode == 2 and "pylock.<name>.toml" in result.stderr


def test_the_suite_writes_only_under_its_temporary_directories(tmp_path: Path) -> None:
    """tests/conftest.py: HOME and every cache of the product are in the session's temporary tree."""
    from vllm_lock.shell.store import cache_root

    session_tmp = tmp_path.parent  # the session's basetemp (tmp_path is <basetemp>/<this test>)
    for path in (Path.home(), cache_root(), Path(os.environ["XDG_CACHE_HOME"])):
        assert session_tmp in path.parents, path
    assert Path(os.environ["VLLM_LOCK_TESTWORLD_CACHE"]).name == "testworld-pypi"


def test_version_prints_the_tool_and_the_bundled_uv(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == ""
    said_by_uv = subprocess.run([uv_shell.uv_bin(), "--version"], capture_output=True, text=True, check=True).stdout
    assert result.stdout == f"vllm-lock {vllm_lock.__version__}\nuv {said_by_uv.split()[1]}\n"
    console_script = subprocess.run([Path(sys.executable).with_name("vllm-lock"), "--version"], capture_output=True,
                                    text=True, timeout=60)
    assert console_script.returncode == 0 and console_script.stdout == result.stdout


def test_the_command_line_shows_the_resolve_requests_defaults() -> None:
    """cli/options.py names the defaults without importing the resolver: they must be its own."""
    defaults = {f.name: f.default for f in dataclasses.fields(ResolveRequest)}
    shown = {"ref": options.DEFAULT_REF, "torch_channel": options.DEFAULT_TORCH_CHANNEL,
             "torch_date": options.DEFAULT_TORCH_DATE, "cuda": options.DEFAULT_CUDA, "archs": options.DEFAULT_ARCHS,
             "python": options.DEFAULT_PYTHON, "flash_attn_version": options.DEFAULT_FLASH_ATTN_VERSION,
             "target_device": options.DEFAULT_TARGET_DEVICE, "name": options.DEFAULT_LOCK_NAME}
    assert shown == {name: defaults[name] for name in shown}
    assert options.archs(None) == defaults["archs"] and options.archs(["9.0"]) == ("9.0",)


@pytest.mark.parametrize("name", [name for name, _ in COMMANDS])
def test_the_app_of_one_command_parses_as_the_whole_app(name: str) -> None:
    """main() builds only the command it runs: that command's help and its usage errors are the
    whole app's."""
    alone = app_for([name, "--help"])
    assert [c.name for c in alone.registered_commands] == [name]
    for args in ([name, "--help"], [name, "--no-such-option"]):
        whole, single = CliRunner().invoke(app, args), CliRunner().invoke(alone, args)
        assert (single.exit_code, single.output) == (whole.exit_code, whole.output)
    assert app_for(["--version"]).registered_commands == []
    assert app_for(["--help"]) is app and app_for([]) is app and app_for(["no-such-command"]) is app


def test_show_prints_a_locks_path_as_written_not_as_emoji(tmp_path: Path) -> None:
    """Text show prints is the user's or the lock's: `:thumbs_up:` in a path stays those
    characters (rich's default console would print 👍)."""
    folder = tmp_path / ":thumbs_up:"
    folder.mkdir()
    (folder / "before.lock.toml").write_text((Path(__file__).parent / "golden" / "before.lock.toml").read_text())
    result = run_cli("show", ":thumbs_up:/before.lock.toml", cwd=tmp_path, env={"COLUMNS": "200"})
    assert result.returncode == 0, result.stderr
    assert " - :thumbs_up:/before.lock.toml" in result.stdout and "\N{THUMBS UP SIGN}" not in result.stdout


# Start-up cost (issue 13): a command imports what it runs. A fresh interpreter runs the CLI (or
# imports a module) and reports which of the costly modules it loaded.
PROBE = """
import json, sys
watched = {watched!r}
if sys.argv[1] == "--import":
    __import__(sys.argv[2])
    code = 0
else:
    from vllm_lock import cli
    sys.argv = ["vllm-lock", *sys.argv[1:]]
    try:
        cli.main()
    except SystemExit as exit:
        code = exit.code
print(json.dumps([code, sorted(m for m in watched if m in sys.modules)]), file=sys.stderr)
"""
COSTLY = ("git", "tomlkit", "http.client", "ssl", "email.parser", "tarfile", "rich", "rich._emoji_codes",
          "vllm_lock.cmake", "vllm_lock.codec", "vllm_lock.shell.git", "vllm_lock.shell.http",
          "vllm_lock.actions.verify", "vllm_lock.actions.resolve")


@pytest.mark.parametrize(
    ("args", "needed"),
    [
        (("--version",), set()),
        (("show", "before.lock.toml"), {"rich", "vllm_lock.codec"}),
        (("show", "before.lock.toml", "--json"), {"vllm_lock.codec"}),
        # an install that finds its generation in place: the build's modules stay unloaded
        (("--import", "vllm_lock.actions.install"), {"vllm_lock.codec"}),
        # the shell's modules load their system's library where they call it (git's tree export
        # its tarfile: an install that only asks git questions never unpacks a tree)
        (("--import", "vllm_lock.shell.git"), {"vllm_lock.shell.git"}),
        (("--import", "vllm_lock.shell.uv"), set()),
        (("--import", "vllm_lock.shell.store"), set()),
    ],
    ids=["--version", "show", "show --json", "install (no-op path)", "shell.git", "shell.uv", "shell.store"],
)
def test_a_command_imports_only_what_it_runs(args: tuple[str, ...], needed: set[str], tmp_path: Path) -> None:
    (tmp_path / "before.lock.toml").write_text((Path(__file__).parent / "golden" / "before.lock.toml").read_text())
    done = subprocess.run([sys.executable, "-c", PROBE.format(watched=COSTLY), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    code, loaded = json.loads(done.stderr.splitlines()[-1])
    assert code in (0, None), done.stderr
    assert set(loaded) == needed
