"""Issue 12, items 1-4 and the read-time part of 12: hostile values in a real lock (resolved on
the test world, edited, content hash recomputed) are refused on read by the real CLI: exit 3,
one `error:` line naming the key, nothing run (the payload's marker is absent), nothing written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, unquote

import pytest

from vllm_lock_testworld import TestWorld

from .conftest import Sandbox, refused

Data = dict[str, Any]


def _set(path: str, value: Any) -> Callable[[Data, Sandbox], None]:
    """An edit that sets one value by key path (`layout.stripping-script`, `packages.0.url`)."""

    def edit(data: Data, box: Sandbox) -> None:
        *parents, leaf = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        text = value.replace("MARKER", str(box.marker)) if isinstance(value, str) else value
        if isinstance(node, list):
            node[int(leaf)] = text
        else:
            node[leaf] = text

    return edit


def _env(key: str, value: str) -> Callable[[Data, Sandbox], None]:
    def edit(data: Data, box: Sandbox) -> None:
        data["build"]["env"] = {key: value.replace("MARKER", str(box.marker))}

    return edit


# climbs to / from any folder the tool might join it to, then down into the sandbox: an escape lands
# in this test's own tmp, where the test looks for it
ESCAPE = "../" * 40 + "SANDBOX/escaped/evil.whl"


def _filename(name: str, wheel: int = 0) -> Callable[[Data, Sandbox], None]:
    """A hostile filename, with the URL made to agree (its last segment quotes the name) on the
    index's own host: only the filename rule stands between it and the cache directory."""

    def edit(data: Data, box: Sandbox) -> None:
        if wheel:
            _second_wheel(data, box)
        entry = data["packages"][0]["wheels"][wheel]
        hostile = name.replace("SANDBOX", str(box.root).lstrip("/"))
        entry["filename"] = hostile
        entry["url"] = entry["url"].rsplit("/", 1)[0] + "/" + quote(unquote(hostile), safe="")

    return edit


def _second_wheel(data: Data, box: Sandbox) -> None:
    """packages[0] gets a valid second wheel: a copy of its own under a build-tagged name (which
    sorts first), so the original becomes wheels[1]: each rule must hold beyond the first wheel."""
    wheels = data["packages"][0]["wheels"]
    original = wheels[0]
    name, version, rest = original["filename"].split("-", 2)
    copy = dict(original, filename=f"{name}-{version}-1-{rest}")
    copy["url"] = original["url"].rsplit("/", 1)[0] + "/" + copy["filename"]
    wheels.insert(0, copy)


def _second(path: str, value: Any) -> Callable[[Data, Sandbox], None]:
    def edit(data: Data, box: Sandbox) -> None:
        _second_wheel(data, box)
        _set(path, value)(data, box)

    return edit


def _evil_script(data: Data, box: Sandbox) -> None:
    script = box.root / "input" / "evil.py"
    script.write_text(f"open({str(box.marker)!r}, 'w').close()\n")
    data["layout"]["stripping-script"] = str(script)


def _duplicate_external(data: Data, box: Sandbox) -> None:
    first = dict(data["external-sources"][0])
    first["override"] = "OTHER_SRC_DIR"
    data["external-sources"].insert(1, first)


HOSTILE = [
    # 1. the stripping script runs as root
    ("script-option", _set("layout.stripping-script", '-cimport os;os.system("touch MARKER")'),
     "layout.stripping-script"),
    ("script-absolute", _evil_script, "layout.stripping-script"),
    ("script-escape", _set("layout.stripping-script", "../input/evil.py"), "layout.stripping-script"),
    # 2. git option injection and transports
    ("vllm-url-option", _set("inputs.vllm.original.url", "--upload-pack=touch MARKER;"), "inputs.vllm.original.url"),
    ("vllm-url-ext", _set("inputs.vllm.original.url", "ext::sh -c touch% MARKER"), "inputs.vllm.original.url"),
    ("vllm-url-scp", _set("inputs.vllm.original.url", "evil.example:vllm.git"), "inputs.vllm.original.url"),
    ("vllm-url-ssh-option-host", _set("inputs.vllm.original.url", "ssh://-oProxyCommand=touch%20MARKER/x"),
     "inputs.vllm.original.url"),
    ("vllm-ref-option", _set("inputs.vllm.original.ref", "--upload-pack=touch MARKER"), "inputs.vllm.original.ref"),
    ("external-repo-ext", _set("external-sources.0.repository", "ext::sh -c touch% MARKER"),
     "external-sources[0].repository"),
    ("external-repo-option", _set("external-sources.0.repository", "--upload-pack=touch MARKER;"),
     "external-sources[0].repository"),
    ("external-ref-option", _set("external-sources.0.ref", "-oops"), "external-sources[0].ref"),
    ("torch-index-file", _set("inputs.torch.original.index", "file:///etc"), "inputs.torch.original.index"),
    # 3. package filename and url
    ("filename-escape", _filename(ESCAPE), "packages[0].wheels[0].filename"),
    ("filename-absolute", _filename("/SANDBOX/escaped/evil.whl"), "packages[0].wheels[0].filename"),
    ("filename-quoted-escape", _filename("..%2F..%2F..%2Fevil-1.0-py3-none-any.whl"),
     "packages[0].wheels[0].filename"),
    ("url-file", _set("packages.0.wheels.0.url", "file:///etc/passwd"), "packages[0].wheels[0].url"),
    ("url-data", _set("packages.0.wheels.0.url", "data:text/plain,hello"), "packages[0].wheels[0].url"),
    ("url-ftp", _set("packages.0.wheels.0.url", "ftp://127.0.0.1/x.whl"), "packages[0].wheels[0].url"),
    ("url-other-host", _set("packages.0.wheels.0.url", "https://evil.example/files/x.whl"),
     "packages[0].wheels[0].url"),
    # the same rules for every wheel of a package, not only the first
    ("second-filename-escape", _filename(ESCAPE, wheel=1), "packages[0].wheels[1].filename"),
    ("second-url-file", _second("packages.0.wheels.1.url", "file:///etc/passwd"), "packages[0].wheels[1].url"),
    ("second-url-other-host", _second("packages.0.wheels.1.url", "https://evil.example/files/x.whl"),
     "packages[0].wheels[1].url"),
    ("second-sha256", _second("packages.0.wheels.1.sha256", "../../x"), "packages[0].wheels[1].sha256"),
    ("second-size", _second("packages.0.wheels.1.size", 1 << 50), "packages[0].wheels[1].size"),
    # 4. build environment and override variables
    ("env-ld-preload", _env("LD_PRELOAD", "MARKER.so"), "build.env.LD_PRELOAD"),
    ("env-path", _env("PATH", "MARKER"), "build.env.PATH"),
    ("env-pythonpath", _env("PYTHONPATH", "MARKER"), "build.env.PYTHONPATH"),
    ("env-cmake-args", _env("CMAKE_ARGS", "-DCMAKE_C_COMPILER_LAUNCHER=MARKER"), "build.env.CMAKE_ARGS"),
    ("env-cc", _env("CC", "MARKER"), "build.env.CC"),
    ("env-precompiled", _env("VLLM_USE_PRECOMPILED", "1"), "build.env.VLLM_USE_PRECOMPILED"),
    ("env-nvcc-threads-type", _env("NVCC_THREADS", "8; touch MARKER"), "build.env.NVCC_THREADS"),
    # TOML can only carry a NUL as `\u0000`, and the reader refuses every \u escape in the text
    # (model.text_problem still refuses the NUL in a lock built in memory)
    ("env-nul", _env("CMAKE_BUILD_TYPE", "Release\x00"), "\\u escape"),
    ("override-path", _set("external-sources.0.override", "PATH"), "external-sources[0].override"),
    ("override-pythonpath", _set("external-sources.0.override", "PYTHONPATH"), "external-sources[0].override"),
    ("override-ld-preload", _set("external-sources.0.override", "LD_PRELOAD"), "external-sources[0].override"),
    # 5. paths from the lock
    ("patched-path-escape", _set("layout.patched-files.0.path", "../../etc/passwd"), "layout.patched-files[0].path"),
    # 12. found at read time, not at the build step
    ("commit-date-malformed", _set("inputs.vllm.locked.commit-date", "2026-13-45T99:00:00Z"),
     "inputs.vllm.locked.commit-date"),
    ("external-duplicate-name", _duplicate_external, "external-sources[1].name"),
]


@pytest.mark.parametrize(("edit", "key"), [(e, k) for _, e, k in HOSTILE], ids=[i for i, _, _ in HOSTILE])
def test_install_refuses_a_hostile_field_before_anything_runs(
        sandbox: Sandbox, edit: Callable[[Data, Sandbox], None], key: str) -> None:
    data = sandbox.data()
    edit(data, sandbox)
    lock = sandbox.write(data)
    result = sandbox.install(lock)
    assert not sandbox.marker.exists(), "the payload ran"
    refused(result, key)
    assert sandbox.written() == []
    assert not (sandbox.root / "escaped").exists()


def test_the_unedited_lock_reads_cleanly(sandbox: Sandbox) -> None:
    """The control: the same lock, hash recomputed the same way, is accepted."""
    result = sandbox.run("show", str(sandbox.write(sandbox.data())))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", ["show", "update", "verify"])
def test_other_commands_refuse_the_git_option_url(sandbox: Sandbox, command: str) -> None:
    data = sandbox.data()
    _set("inputs.vllm.original.url", "--upload-pack=touch MARKER;")(data, sandbox)
    lock = sandbox.write(data)
    args = [command, str(lock)] + (["--venv", str(sandbox.root / "opt" / "vllm")] if command == "verify" else [])
    # verify reserves 1 for drift and reports every error as 2 (README: exit codes)
    refused(sandbox.run(*args), "inputs.vllm.original.url", code=2 if command == "verify" else 3)
    assert not sandbox.marker.exists()
    assert sandbox.written() == []


def test_diff_of_two_locks_carrying_the_option_url_runs_no_git(sandbox: Sandbox, world: TestWorld) -> None:
    """The issue's case: both locks carry the URL and their commits differ, so diff would fetch."""
    a, b = sandbox.data(), sandbox.data()
    for data in (a, b):
        _set("inputs.vllm.original.url", "--upload-pack=touch MARKER;")(data, sandbox)
    a_commit = a["inputs"]["vllm"]["locked"]["commit"]
    b["inputs"]["vllm"]["locked"]["commit"] = next(c for c in world.commits if c != a_commit)
    # diff reports every error as exit 2: scripts read 0 equal / 1 different (README)
    refused(sandbox.run("diff", str(sandbox.write(a, "a")), str(sandbox.write(b, "b"))), "inputs.vllm.original.url",
            code=2)
    assert not sandbox.marker.exists()
    assert sandbox.written() == []


def test_resolve_refuses_a_build_env_key_by_the_same_rule(sandbox: Sandbox) -> None:
    result = sandbox.run("resolve", "--build-env", f"LD_PRELOAD={sandbox.marker}.so", "--name", "dev")
    line = refused(result, "LD_PRELOAD", code=2)
    assert "not an allowed build setting" in line
    assert sandbox.written() == []
