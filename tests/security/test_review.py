"""A hostile review's findings (issue 12, second round): lock text that reads differently than it
parses, URL forms that hide their host, package URLs that leave their index's scheme, huge
integers, malformed test receipts, and the last-resort handler. Real CLI in a subprocess: one
`error:` line, the documented exit code, nothing run, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sample_lock import make_lock

from vllm_lock import acceptance, codec
from vllm_lock import receipt as receipts
from vllm_lock.errors import ExitCode
from vllm_lock.generation import Generation
from vllm_lock.model import git_url_problem
from vllm_lock.shell import files
from vllm_lock_testworld import TestWorld

from .conftest import CLI, Sandbox, refused, with_hash

# ---------------------------------------------------------------- the text is what a reviewer reads


def _show(sandbox: Sandbox, text: str) -> subprocess.CompletedProcess[str]:
    path = sandbox.root / "input" / "dev.lock.toml"
    path.write_text(text, encoding="utf-8")
    return sandbox.run("show", str(path))


def test_a_unicode_escape_is_refused_although_it_parses_to_the_same_lock(sandbox: Sandbox) -> None:
    """`\\u0040` shows no `@` in review; refused wherever it is, before TOML parses it."""
    text = with_hash(sandbox.data())
    url = sandbox.data()["inputs"]["vllm"]["original"]["url"]
    escaped = text.replace(f'url = "{url}"', f'url = "\\u{ord(url[0]):04x}{url[1:]}"', 1)
    assert escaped != text
    assert _show(sandbox, text).returncode == 0  # the control: same data, spelled out
    line = refused(_show(sandbox, escaped), "line ")
    assert "\\u escape" in line
    assert sandbox.written() == []


@pytest.mark.parametrize("char", ["\u202e", "\u2066", "\u200f", "\r", "\x1b", "\u2028"])
def test_a_bidi_or_control_character_is_refused_even_in_a_comment(sandbox: Sandbox, char: str) -> None:
    text = with_hash(sandbox.data())
    line = refused(_show(sandbox, text + f"# reviewed {char}ok\n"), f"U+{ord(char):04X}")
    assert "non-printable" in line


@pytest.mark.parametrize("key", ["inputs.vllm.original.url", "external-sources[0].repository"])
def test_userinfo_that_hides_the_host_is_refused(sandbox: Sandbox, key: str) -> None:
    data = sandbox.data()
    evil = "https://github.com@evil.example/vllm-project/vllm.git"
    if key.startswith("inputs"):
        data["inputs"]["vllm"]["original"]["url"] = evil
    else:
        data["external-sources"][0]["repository"] = evil
    line = refused(sandbox.install(sandbox.write(data)), key)
    assert "names a user" in line
    assert sandbox.written() == []


def test_userinfo_is_kept_for_ssh_only() -> None:
    assert git_url_problem("ssh://git@github.com/vllm-project/vllm.git") is None
    for url in ("https://u@github.com/x.git", "http://u@h/x", "git://u@h/x", "file://u@/x"):
        assert git_url_problem(url) is not None, url


# ---------------------------------------------------------------- package URLs


def _wheel_url(data: dict[str, Any], change: Any) -> None:
    wheel = data["packages"][0]["wheels"][0]
    wheel["url"] = change(wheel["url"])


@pytest.mark.parametrize(("change", "why"), [
    (lambda u: "https://" + u.removeprefix("http://"), "but its index is http"),
    (lambda u: u + "#sha256=" + "0" * 64, "has a fragment"),
    (lambda u: u + "#", "has a fragment"),
    (lambda u: u + "?x=1", "has a query"),
])
def test_a_package_url_keeps_its_index_scheme_and_has_no_fragment_or_query(sandbox: Sandbox, change: Any,
                                                                            why: str) -> None:
    data = sandbox.data()
    assert data["inputs"]["general-index"]["original"]["url"].startswith("http://")  # the test world's
    _wheel_url(data, change)
    line = refused(sandbox.install(sandbox.write(data)), "packages[0].wheels[0].url")
    assert why in line
    assert sandbox.written() == []


# ---------------------------------------------------------------- huge integers


@pytest.mark.parametrize(("command", "code"), [("show", 3), ("install", 3), ("verify", 2), ("diff", 2)])
def test_a_5000_digit_integer_is_a_refused_lock_never_a_traceback(sandbox: Sandbox, command: str,
                                                                  code: int) -> None:
    text = with_hash(sandbox.data())
    assert "\nsize = " in text
    path = sandbox.root / "input" / "dev.lock.toml"
    path.write_text(text.replace("\nsize = ", "\nsize = " + "9" * 5000 + "#", 1), encoding="utf-8")
    args = {"show": [str(path)], "install": [str(path), "--venv", str(sandbox.root / "opt" / "v"),
                                             "--src", str(sandbox.root / "opt" / "s")],
            "verify": [str(path), "--venv", str(sandbox.root / "opt" / "v")], "diff": [str(path), str(path)]}
    line = refused(sandbox.run(command, *args[command]), "not a lock", code=code)
    assert "4300 digits" in line


# ---------------------------------------------------------------- the last resort


HOOKED = """
import sys
from vllm_lock.actions import {module} as target
def boom(*args, **kwargs):
    raise RuntimeError("unexpected\\nsecond line")
target.{function} = boom
from vllm_lock import cli
sys.argv = ["vllm-lock", *sys.argv[1:]]
cli.main()
"""


def _hooked(tmp_path: Path, module: str, function: str, *args: str, debug: bool = False
            ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_LOCK_DEBUG"}
    if debug:
        env["VLLM_LOCK_DEBUG"] = "1"
    return subprocess.run([sys.executable, "-c", HOOKED.format(module=module, function=function), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)


def _lock_file(tmp_path: Path) -> Path:
    path = tmp_path / "dev.lock.toml"
    files.write_output(path, codec.dumps(make_lock()))
    return path


def test_an_unexpected_exception_is_one_internal_error_line_with_exit_70(tmp_path: Path) -> None:
    proc = _hooked(tmp_path, "show", "render", "show", str(_lock_file(tmp_path)))
    assert proc.returncode == 70 and ExitCode.INTERNAL == proc.returncode
    assert proc.stderr.splitlines() == [
        "error: internal error: RuntimeError: unexpected second line (VLLM_LOCK_DEBUG=1 for the traceback)"]
    debug = _hooked(tmp_path, "show", "render", "show", str(_lock_file(tmp_path)), debug=True)
    assert "Traceback" in debug.stderr and "RuntimeError" in debug.stderr


def test_diff_and_verify_keep_exit_2_for_an_unexpected_exception(tmp_path: Path) -> None:
    lock = str(_lock_file(tmp_path))
    for module, function, args in (("diff", "diff", ("diff", lock, lock)),
                                   ("verify", "verify", ("verify", lock, "--venv", str(tmp_path / "v")))):
        proc = _hooked(tmp_path, module, function, *args)
        assert proc.returncode == ExitCode.USAGE, (args, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: internal error: RuntimeError"), lines


def test_install_into_the_root_directory_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([*CLI, "install", str(_lock_file(tmp_path)), "--venv", "/", "--src", str(tmp_path / "x")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60,
                          env={**os.environ, "VLLM_LOCK_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --venv / has no name"), lines
    assert not (tmp_path / "x").exists() and not (tmp_path / "cache").exists()


# ---------------------------------------------------------------- test receipts


def _tested(tmp_path: Path, **receipt: Any) -> Path:
    """locks/dev.lock.toml with one receipt: a real one, with `receipt` overriding its fields
    (a value None drops the key)."""
    locks = tmp_path / "locks"
    locks.mkdir()
    lock = make_lock()
    path = locks / "dev.lock.toml"
    files.write_output(path, codec.dumps(lock))
    checks = (acceptance.Check(name="import vllm", ok=True, detail="x"),)
    record = receipts.new_test_receipt(lock=lock, lock_path=path, venv=Path("/opt/vllm"), checks=checks,
                                       probe={"errors": {}}, host_gpus=(), host="box", when="2026-11-20T10:00:00Z")
    written = receipts.write_test_receipt(path, record)
    data = record.to_data()
    for key, value in receipt.items():
        if value is None:
            data.pop(key)
        else:
            data[key] = value
    written.write_text(json.dumps(data))
    return path


def _promote(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VLLM_LOCK_")}
    env["VLLM_LOCK_LOCKS_DIR"] = str(tmp_path / "locks")
    return subprocess.run([*CLI, "promote", "dev"], capture_output=True, text=True, cwd=tmp_path, env=env,
                          timeout=60)


@pytest.mark.parametrize(("receipt", "why"), [
    ({"host": None, "date": None, "gpu": None}, "no 'host'"),
    ({"host": "box\n[SUCCESS] signed"}, "'host' is not a short printable string"),
    ({"gpu": {"devices": [{"name": "H100"}]}}, "gpu.devices entry"),
])
def test_promote_refuses_a_malformed_receipt_in_one_line(tmp_path: Path, receipt: dict[str, Any], why: str) -> None:
    _tested(tmp_path, **receipt)
    proc = _promote(tmp_path)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: test receipt ") and why in lines[0], lines
    assert not (tmp_path / "locks" / "stable.lock.toml").exists()


def test_promote_refuses_the_reviewers_minimal_receipt(tmp_path: Path) -> None:
    path = _tested(tmp_path)
    folder = receipts.receipts_folder(path, codec.content_hash(make_lock()))
    for old in folder.iterdir():
        old.unlink()
    (folder / "x.json").write_text(json.dumps({"lock": {"content-hash": codec.content_hash(make_lock())},
                                               "result": "pass"}))
    proc = _promote(tmp_path)
    assert proc.returncode == ExitCode.USAGE and "malformed (no 'host')" in proc.stderr, proc.stderr
    assert len(proc.stderr.splitlines()) == 1


def test_promote_shows_where_each_receipt_came_from(tmp_path: Path) -> None:
    _tested(tmp_path)
    proc = _promote(tmp_path)
    assert proc.returncode == 0, proc.stderr
    evidence = [line for line in proc.stdout.splitlines() if line.startswith("evidence: ")]
    assert len(evidence) == 2, proc.stdout
    assert evidence[0].startswith("evidence: receipt receipts/") and " pass on box at " in evidence[0]
    assert "unauthenticated" in evidence[1]


# ---------------------------------------------------------------- URLs from fetched trees


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_a_cmake_pin_with_an_option_url_stops_resolve_before_any_git_call(sandbox: Sandbox, world: TestWorld) -> None:
    """A vLLM commit whose CMake pins `GIT_REPOSITORY "--upload-pack=touch MARKER;"`: the tree is
    as untrusted as a lock, so the pin meets the lock's URL rule (a resolution error, exit 5,
    naming file and line) before `git ls-remote` sees it."""
    clone = sandbox.root / "input" / "vllm"
    _git(sandbox.root, "clone", "-q", world.repo_url, str(clone))
    cmake = clone / "CMakeLists.txt"
    text = cmake.read_text()
    pinned = next(line for line in text.splitlines() if "GIT_REPOSITORY" in line)
    cmake.write_text(text.replace(pinned, f'        GIT_REPOSITORY "--upload-pack=touch {sandbox.marker};"', 1))
    _git(clone, "commit", "-q", "-am", "hostile pin")
    out = sandbox.root / "work" / "dev.lock.toml"
    result = sandbox.run("resolve", "--repo", f"file://{clone}", "--torch-index", world.torch_nightly_index,
                         "--index", world.general_index, "--python", "3.11", "--target-device", "cpu",
                         "--torch-date", world.latest_consistent_date.isoformat(), "--output", str(out))
    # resolve's progress lines come first (the contract covers what follows the failure)
    assert result.returncode == ExitCode.RESOLUTION, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr
    assert "CMakeLists.txt:" in errors[0] and "GIT_REPOSITORY" in errors[0] and "starts with '-'" in errors[0]
    assert "Traceback" not in result.stderr
    assert not sandbox.marker.exists()
    assert not out.exists()


def test_a_gitmodules_url_starting_with_a_dash_is_refused_before_staging_fetches_it(tmp_path: Path) -> None:
    from vllm_lock.errors import InstallError
    from vllm_lock.model import ExternalSource
    from vllm_lock.shell import staging

    marker = tmp_path / "MARKER"
    ext = tmp_path / "ext"
    ext.mkdir()
    _git(ext, "init", "-q", "-b", "main")
    (ext / "f").write_text("x\n")
    (ext / ".gitmodules").write_text(f'[submodule "s"]\n\tpath = s\n\turl = "--upload-pack=touch {marker}"\n')
    _git(ext, "add", "f", ".gitmodules")
    _git(ext, "update-index", "--add", "--cacheinfo", "160000," + "1" * 40 + ",s")
    _git(ext, "commit", "-q", "-m", "hostile submodule")
    commit = _git(ext, "rev-parse", "HEAD")
    source = ExternalSource(name="ext", repository=f"file://{ext}", ref=commit, ref_kind="commit", commit=commit,
                            override="EXT_SRC_DIR", declared_in="CMakeLists.txt")
    with pytest.raises(InstallError, match=r"submodule s: url .* starts with '-'") as caught:
        staging.stage((source,), tmp_path / "cache", Generation(root=tmp_path / "gen"), lambda _: None)
    assert caught.value.exit_code == ExitCode.INSTALL
    assert not marker.exists()
    assert not Generation(root=tmp_path / "gen").external_tree("ext").exists()
