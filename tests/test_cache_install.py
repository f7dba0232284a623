"""The binary cache end to end on the test world: a real S3 server (`rclone serve s3`), real
installs, real uv, a compiler wrapper that counts every compiler call. Install A builds and pushes;
install B (another cache, another target) substitutes with zero compiler calls; a refused cache
means a build (or, with --substitute-only, a one-line error)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from install_support import build_info, cli, install_args, resolve_world_lock, vllm_version, write_variant
from test_cache_support import S3Server, free_port, http_server, s3_server

from vllm_lock.model import Lock
from vllm_lock_testworld import TestWorld
from vllm_lock_testworld.compilers import compiler_calls, compiler_wrappers

pytestmark = pytest.mark.slow


@dataclasses.dataclass(frozen=True, kw_only=True)
class CacheLoop:
    """The module's lock (and its file), signing key and its public half, the S3 server and its cache
    URL, the environment of install A (credentials, counting compilers), its compiler-call log, and
    install A's result."""

    root: Path
    lock: Lock
    path: Path
    key: Path
    public: str
    server: S3Server
    url: str
    env: dict[str, str]
    calls: Path
    first: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def loop(world: TestWorld, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CacheLoop]:
    """A non-editable lock, a signing key, an S3 server; install A built and pushed to it."""
    root = tmp_path_factory.mktemp("cache-loop")
    lock, path = resolve_world_lock(world, root / "dev.lock.toml", root / "cache-a", editable=False)
    key = root / "keys" / "phoenix-1.secret"
    key.parent.mkdir()
    made = cli("key", "generate", "--name", "phoenix-1", "-o", str(key), cache=root / "cache-a")
    assert made.returncode == 0, made.stderr
    public = made.stdout.strip()
    with s3_server(root / "s3") as server:
        url = server.url()
        cc_env, calls = compiler_wrappers(root / "cc")
        env = {**server.env, **cc_env}
        first = cli(*install_args(path, root / "opt-a"), "--push", url, "--cache-signing-key", str(key),
                    cache=root / "cache-a", env=env)
        assert first.returncode == 0, first.stderr
        yield CacheLoop(root=root, lock=lock, path=path, key=key, public=public, server=server,
                        url=url, env=env, calls=calls, first=first)


def test_key_generate_writes_a_private_secret_and_prints_the_public_key(loop: CacheLoop) -> None:
    assert stat.S_IMODE(loop.key.stat().st_mode) == 0o600
    assert loop.public.startswith("phoenix-1:") and loop.public not in loop.key.read_text()
    again = cli("key", "generate", "--name", "phoenix-1", "-o", str(loop.key), cache=loop.root / "cache-a")
    assert again.returncode == 9 and again.stderr.startswith("error: ") and "refusing to overwrite" in again.stderr
    assert len(again.stderr.splitlines()) == 1


def test_install_a_builds_and_pushes_the_wheel_then_its_signed_entry(loop: CacheLoop) -> None:
    assert compiler_calls(loop.calls) > 0  # the wrapper sees the build's compiler calls
    stderr = loop.first.stderr
    assert "==> push" in stderr and "pushed vllm-" in stderr and "signed by phoenix-1" in stderr
    prefix = loop.server.root / "cache" / "vllm"
    entries = list(prefix.glob("*.entry"))
    assert len(entries) == 1
    text = entries[0].read_text()
    assert text.startswith("Format: 1\nIdentity: ") and "\nSig: phoenix-1:" in text
    wheel = next(prefix.glob("wheels/*/vllm-*.whl"))
    assert f"WheelSize: {wheel.stat().st_size}\n" in text
    listed = cli("cache", "ls", loop.url, cache=loop.root / "cache-a", env=loop.env)
    assert listed.returncode == 0, listed.stderr
    assert entries[0].name.removesuffix(".entry") in listed.stdout and "phoenix-1" in listed.stdout
    checked = cli("cache", "verify", loop.url, "--trusted-cache-key", loop.public,
                  cache=loop.root / "cache-a", env=loop.env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "ok (signed by phoenix-1)" in checked.stdout


def test_install_b_substitutes_with_zero_compiler_calls(loop: CacheLoop) -> None:
    before = compiler_calls(loop.calls)
    opt = loop.root / "opt-b"
    result = cli(*install_args(loop.path, opt), "--cache", loop.url, "--trusted-cache-key", loop.public,
                 cache=loop.root / "cache-b", env=loop.env)
    assert result.returncode == 0, result.stderr
    # not one compiler call
    assert compiler_calls(loop.calls) == before, loop.calls.read_text()[-3000:] + result.stderr[-3000:]
    assert "==> build" not in result.stderr and "building 'vllm._C' extension" not in result.stderr
    assert f"substituted from {loop.url}: vllm-" in result.stderr and "signed by phoenix-1" in result.stderr
    assert "==> verify" in result.stderr  # the same verification as after a build
    gen = Path(os.readlink(opt / "vllm")).parent
    receipt = json.loads((gen / "receipt.json").read_text())
    assert receipt["substituted-from"]["cache"] == loop.url
    assert receipt["substituted-from"]["key"] == "phoenix-1"
    assert receipt["substituted-from"]["entry"].endswith(".entry")
    assert f"g{loop.lock.vllm.commit[:9]}" in vllm_version(opt)
    log = next((gen / "logs").glob("install-*.log")).read_text()
    assert "substituted from" in log
    clean = cli("verify", str(loop.path), "--venv", str(opt / "vllm"), cache=loop.root / "cache-b")
    assert clean.returncode == 0, clean.stdout + clean.stderr


def test_a_second_substitution_reads_the_verified_wheel_from_the_store(loop: CacheLoop, tmp_path: Path) -> None:
    """install B put the verified wheel into cache-b's store: the same build again there reads it
    from the store (through the trusted entry that names its sha256), not from the cache."""
    entry = next((loop.server.root / "cache" / "vllm").glob("*.entry")).read_text()
    sha256 = next(line.split()[1] for line in entry.splitlines() if line.startswith("WheelSha256: "))
    stored = list((loop.root / "cache-b" / "cas" / "sha256" / sha256).glob("vllm-*.whl"))
    assert len(stored) == 1
    result = cli(*install_args(loop.path, tmp_path / "opt"), "--cache", loop.url, "--trusted-cache-key",
                 loop.public, cache=loop.root / "cache-b", env=loop.env)
    assert result.returncode == 0, result.stderr
    assert f"    {stored[0].name}: in the local store" in result.stderr and "substituted from" in result.stderr
    pylock = next((tmp_path / "opt").glob("vllm.generations/*/pylock.toml")).read_text()
    assert f'path = "{stored[0]}"' in pylock and f'sha256 = "{sha256}"' in pylock  # one uv sync with the rest


def _copy_of_the_cache(loop: CacheLoop, dest: Path) -> Path:
    shutil.copytree(loop.server.root / "cache" / "vllm", dest)
    return dest


def test_install_falls_through_an_unreachable_cache_to_a_file_cache(loop: CacheLoop, tmp_path: Path) -> None:
    before = compiler_calls(loop.calls)
    directory = _copy_of_the_cache(loop, tmp_path / "dir-cache")
    dead = f"http://127.0.0.1:{free_port()}/cache"
    result = cli(*install_args(loop.path, tmp_path / "opt"), "--cache", dead, "--cache", f"file://{directory}",
                 cache=tmp_path / "cache", env={**loop.env, "VLLM_LOCK_TRUSTED_CACHE_KEYS": loop.public})
    assert result.returncode == 0, result.stderr
    assert f"refused {dead}: " in result.stderr and "Connection refused" in result.stderr
    assert f"substituted from file://{directory}" in result.stderr
    assert compiler_calls(loop.calls) == before


def test_install_substitutes_from_a_static_http_cache(loop: CacheLoop, tmp_path: Path) -> None:
    before = compiler_calls(loop.calls)
    with http_server(tmp_path / "http") as server:
        _copy_of_the_cache(loop, server.root / "cache")
        result = cli(*install_args(loop.path, tmp_path / "opt"), cache=tmp_path / "cache",
                     env={**loop.env, "VLLM_LOCK_CACHES": server.url, "VLLM_LOCK_TRUSTED_CACHE_KEYS": loop.public})
    assert result.returncode == 0, result.stderr
    assert f"substituted from {server.url}" in result.stderr
    assert compiler_calls(loop.calls) == before


def test_untrusted_cache_is_refused_in_one_line_and_the_install_builds(loop: CacheLoop) -> None:
    before = compiler_calls(loop.calls)
    other = cli("key", "generate", "--name", "someone-else", "-o", str(loop.root / "keys" / "other.secret"),
                cache=loop.root / "cache-c")
    result = cli(*install_args(loop.path, loop.root / "opt-c"), "--cache", loop.url,
                 "--trusted-cache-key", other.stdout.strip(), cache=loop.root / "cache-c", env=loop.env)
    assert result.returncode == 0, result.stderr
    refusals = [line for line in result.stderr.splitlines() if line.strip().startswith("refused ")]
    assert len(refusals) == 1 and "signed only by keys that are not trusted (phoenix-1)" in refusals[0]
    assert "no cache has a verified build of identity" in result.stderr and "==> build" in result.stderr
    assert compiler_calls(loop.calls) > before


def test_substitute_only_fails_instead_of_building(loop: CacheLoop) -> None:
    before = compiler_calls(loop.calls)
    result = cli(*install_args(loop.path, loop.root / "opt-d"), "--cache", loop.url, "--substitute-only",
                 cache=loop.root / "cache-d", env=loop.env)
    assert result.returncode == 6
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [errors[0]] and "--substitute-only: no configured cache has a verified build" in errors[0]
    assert "refused s3://cache/vllm" in result.stderr and "no trusted cache keys are configured" in result.stderr
    assert compiler_calls(loop.calls) == before
    assert "Traceback" not in result.stderr


def test_cache_push_of_the_installed_generation(loop: CacheLoop, tmp_path: Path) -> None:
    target = tmp_path / "pushed"
    result = cli("cache", "push", str(loop.path), "--push", f"file://{target}", "--signing-key", str(loop.key),
                 "--venv", str(loop.root / "opt-a" / "vllm"), "--src", str(loop.root / "opt-a" / "vllm_repo"),
                 cache=loop.root / "cache-a")
    assert result.returncode == 0, result.stderr
    pushed = loop.server.root / "cache" / "vllm"
    assert [p.name for p in target.glob("*.entry")] == [p.name for p in pushed.glob("*.entry")]
    checked = cli("cache", "verify", f"file://{target}", "--trusted-cache-key", loop.public,
                  cache=loop.root / "cache-a")
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_bad_cache_options_are_usage_errors(loop: CacheLoop, tmp_path: Path) -> None:
    cases = [
        (["--cache", "ftp://x/y"], "is not a file://, http(s):// or s3:// cache URL"),
        (["--trusted-cache-key", "phoenix-1"], "not a public cache key"),
        (["--push", "file:///tmp/x"], "pushing to a cache needs a signing key"),
        (["--substitute-only"], "--substitute-only needs a cache"),
        (["--cache", "file:///tmp/x", "--trusted-cache-key", Path(loop.key).read_text().strip()],
         "is a secret key, not a public one"),
    ]
    for args, message in cases:
        result = cli(*install_args(loop.path, tmp_path / "opt"), *args, cache=tmp_path / "cache")
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr and len(result.stderr.splitlines()) == 1


def test_an_editable_install_takes_the_compiled_modules_from_the_cache(loop: CacheLoop, tmp_path: Path) -> None:
    before = compiler_calls(loop.calls)
    lock = loop.lock
    editable = write_variant(lock, tmp_path / "editable.lock.toml",
                             build=dataclasses.replace(lock.build, editable=True))
    opt = tmp_path / "opt"
    result = cli(*install_args(editable, opt), "--cache", loop.url, "--trusted-cache-key", loop.public,
                 "--substitute-only", cache=tmp_path / "cache", env=loop.env)
    assert result.returncode == 0, result.stderr
    assert compiler_calls(loop.calls) == before, loop.calls.read_text()[-3000:]  # not one compiler call
    assert "==> build" not in result.stderr and "editable install: its compiled modules come from" in result.stderr
    assert "Skipping build_ext: using precompiled extensions." in result.stderr
    info = build_info(opt)
    assert info["precompiled"] is True and f"g{lock.vllm.commit[:9]}" in vllm_version(opt)
    src = Path(os.readlink(opt / "vllm_repo"))
    assert list((src / "vllm").glob("_C*.so")), "the compiled module was not copied into the editable tree"
    gen = src.parent
    receipt = json.loads((gen / "receipt.json").read_text())
    assert receipt["editable"] is True and receipt["substituted-from"]["cache"] == loop.url
    clean = cli("verify", str(editable), "--venv", str(opt / "vllm"), cache=tmp_path / "cache")
    assert clean.returncode == 0, clean.stdout + clean.stderr


def no_compiler_path(where: Path) -> dict[str, str]:
    """PATH: every program of this PATH but the C/C++ compilers (links in one folder); CC/CXX empty."""
    where.mkdir(parents=True, exist_ok=True)
    for folder in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(folder):
            continue
        for program in os.scandir(folder):
            name = program.name
            if name in ("cc", "c++", "cpp") or "gcc" in name or "g++" in name or name.startswith("clang"):
                continue
            if not os.access(program.path, os.X_OK) or (where / name).exists():
                continue
            (where / name).symlink_to(program.path)
    assert shutil.which("gcc", path=str(where)) is None and shutil.which("cc", path=str(where)) is None
    return {"PATH": str(where), "CC": "", "CXX": ""}


def test_a_machine_without_a_compiler_substitutes(loop: CacheLoop, tmp_path: Path) -> None:
    env = {**loop.server.env, **no_compiler_path(tmp_path / "bin")}
    result = cli(*install_args(loop.path, tmp_path / "opt"), "--cache", loop.url, "--trusted-cache-key",
                 loop.public, cache=tmp_path / "cache", env=env)
    assert result.returncode == 0, result.stderr
    assert "toolchain: looked at only if no cache gives the build" in result.stderr
    assert "==> toolchain" not in result.stderr  # setup.py never runs: the compilers are never looked at
    assert f"substituted from {loop.url}" in result.stderr and "==> build" not in result.stderr


def test_without_a_hit_a_machine_without_a_compiler_is_refused_before_the_build(
    loop: CacheLoop, tmp_path: Path
) -> None:
    env = {**loop.server.env, **no_compiler_path(tmp_path / "bin")}
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    result = cli(*install_args(loop.path, tmp_path / "opt"), "--cache", f"file://{empty}", "--trusted-cache-key",
                 loop.public, cache=tmp_path / "cache", env=env)
    assert result.returncode == 7, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.startswith("error: no cache gave the build, and this machine cannot build it: ")
    assert "gcc not found ($CC, else PATH)" in last
    assert "==> build" not in result.stderr and "Traceback" not in result.stderr
    plain = cli(*install_args(loop.path, tmp_path / "opt"), cache=tmp_path / "cache", env=env)
    assert plain.returncode == 7 and "==> environment" not in plain.stderr  # no cache: refused at preflight
    assert "gcc not found ($CC, else PATH)" in plain.stderr.splitlines()[-1], plain.stderr


def test_the_venv_made_beside_the_cache_lookup_shows_uv_s_lines_in_its_step(loop: CacheLoop, tmp_path: Path) -> None:
    """With a cache to look in, the environment step runs beside the substitute step, its lines
    held and written after: uv's own output (shown live in a step of the main thread) is shown
    too, inside its step, not dropped; the log holds every line once."""
    directory = _copy_of_the_cache(loop, tmp_path / "dir-cache")
    result = cli(*install_args(loop.path, tmp_path / "opt"), "--cache", f"file://{directory}", cache=tmp_path / "cache",
                 env={**loop.env, "VLLM_LOCK_TRUSTED_CACHE_KEYS": loop.public})
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    start = lines.index("==> environment")
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("    environment: "))
    shown = lines[start + 1:end]
    assert any(line.startswith("    | Creating virtual environment at: ") for line in shown), lines[start - 3:end + 3]
    assert lines.index("==> substitute") < start  # the lookup's lines stay live: the environment's come after
    log = next((tmp_path / "opt").glob("vllm.generations/*/logs/install-*.log")).read_text()
    assert log.count("Creating virtual environment at: ") == 1 and log.count("==> environment") == 1
