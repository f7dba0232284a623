"""`vllm-lock cache keys|name|fetch|has|entry|publish`: a host between a binary cache and machines
that do not reach it (Phoenix's feature script), against real caches (a directory, an HTTP server
on loopback that takes PUTs). A build is published only when its entry and wheel are the lock's;
a fetch hands over only a trusted entry and its wheel of the signed size and sha256; every bad
input is one `error:` line with the table's exit code, nothing written."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_cache_support import http_server

from vllm_lock import cache_entry, cache_keys
from vllm_lock.actions import substitute
from vllm_lock.errors import OutputError
from vllm_lock.shell import cache_backends, lockfiles

CLI = [sys.executable, "-m", "vllm_lock.cli"]
GOLDEN = Path(__file__).parent / "golden"
SCRIPT = Path(__file__).parents[1] / "phoenix" / "phoenix_hypervisor_feature_install_vllm.sh"
HOST = cache_keys.secret_from_seed("phoenix-1", bytes(range(32)))
BUILDER = cache_keys.secret_from_seed("outbox-801", bytes(range(1, 33)))  # a container's throwaway key
WHEEL = "vllm-0.11.1.dev5+gabcdef012.cpu-cp311-cp311-linux_x86_64.whl"


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VLLM_LOCK_"))}
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def one_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "locks" / "before.lock.toml"
    path.parent.mkdir()
    shutil.copy(GOLDEN / "before.lock.toml", path)
    return path


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    """The host's secret key file and a file trusting its public half."""
    secret, trusted = tmp_path / "keys" / "signing.key", tmp_path / "keys" / "trusted"
    secret.parent.mkdir()
    secret.write_text(HOST.text() + "\n")
    secret.chmod(0o600)
    trusted.write_text(HOST.public().text() + "\n")
    return secret, trusted


@pytest.fixture(params=["file", "http"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(URL, the folder the cache's objects are in)."""
    if request.param == "file":
        yield f"file://{tmp_path / 'dir-cache'}", tmp_path / "dir-cache"
    else:
        with http_server(tmp_path / "http") as server:
            yield server.url, server.root / "cache"


def outbox(lock: Path, where: Path, content: bytes = b"PK\x03\x04 a built vllm " * 4000) -> Path:
    """What a container leaves for the host: a file:// cache with the lock's entry (signed with its
    throwaway key) and the wheel."""
    built = where / "built"
    built.mkdir(parents=True)
    wheel = built / WHEEL
    wheel.write_bytes(content)
    entry = substitute.make_entry(lockfiles.read(str(lock))[0], wheel, version="0.11.1.dev5+gabcdef012.cpu",
                                  cubins=(), toolchain={}, build_seconds=1.0)
    substitute.push(f"file://{where / 'outbox'}", entry, wheel, BUILDER)
    return where / "outbox"


def entry_name(lock: Path) -> str:
    return cache_entry.entry_name(cache_entry.wheel_build_identity(lockfiles.read(str(lock))[0]))


def test_publish_then_has_then_fetch_hands_over_a_verified_one_entry_cache(
        lock: Path, keys: tuple[Path, Path], cache: tuple[str, Path], tmp_path: Path) -> None:
    url, objects = cache
    secret, trusted = keys
    box = outbox(lock, tmp_path)
    miss = run("cache", "has", lock, "--cache", url, "--trusted-cache-keys-file", trusted, cwd=tmp_path)
    assert miss.returncode == 1 and "no entry" in miss.stdout, miss.stderr

    published = run("cache", "publish", lock, "--from", box, "--to", url, "--cache-signing-key", secret, cwd=tmp_path)
    assert published.returncode == 0, published.stderr
    assert published.stdout.strip() == f"{WHEEL} ({entry_name(lock)}, signed by phoenix-1)"
    text = (objects / entry_name(lock)).read_text()
    assert "\nSig: phoenix-1:" in text and "outbox-801" not in text  # re-signed by the host alone
    assert len(list(objects.glob(f"wheels/*/{WHEEL}"))) == 1
    # with the builder's public key trusted (as `cache verify` checks its signature), published too
    again = run("cache", "publish", lock, "--from", box, "--to", url, "--cache-signing-key", secret,
                "--trusted-cache-key", BUILDER.public().text(), cwd=tmp_path)
    assert again.returncode == 0, again.stderr

    has = run("cache", "has", lock, "--cache", url, "--trusted-cache-keys-file", trusted, cwd=tmp_path)
    assert has.returncode == 0 and f"{entry_name(lock)} signed by phoenix-1" in has.stdout, has.stderr

    out = tmp_path / "lookup"
    fetched = run("cache", "fetch", lock, "--cache", url, "--trusted-cache-keys-file", trusted, "-o", out,
                  cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    last = fetched.stdout.splitlines()[-1].split()
    assert last[0] == "fetched" and last[1] == entry_name(lock) and last[3] == "phoenix-1", fetched.stdout
    assert re.fullmatch(r"wheels/[0-9a-f]{64}/" + re.escape(WHEEL), last[2])
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == sorted([last[1], last[2]])
    verify = run("cache", "verify", f"file://{out}", "--trusted-cache-keys-file", trusted, cwd=tmp_path)
    assert verify.returncode == 0 and "1 entries, 0 refused" in verify.stdout, verify.stdout
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".lookup")] == []  # no part left


def test_fetch_of_a_missing_or_refused_build_is_a_miss_and_writes_nothing(
        lock: Path, keys: tuple[Path, Path], cache: tuple[str, Path], tmp_path: Path) -> None:
    url, objects = cache
    secret, trusted = keys
    out = tmp_path / "lookup"
    empty = run("cache", "fetch", lock, "--cache", url, "--trusted-cache-keys-file", trusted, "-o", out, cwd=tmp_path)
    assert empty.returncode == 1 and f"no entry {entry_name(lock)}" in empty.stdout, empty.stderr
    assert not out.exists()

    # signed by a key the host does not trust: refused, a miss
    box = outbox(lock, tmp_path)
    shutil.copytree(box, objects, dirs_exist_ok=True)
    untrusted = run("cache", "fetch", lock, "--cache", url, "--trusted-cache-keys-file", trusted, "-o", out,
                    cwd=tmp_path)
    assert untrusted.returncode == 1 and f"refused {url}" in untrusted.stdout, untrusted.stdout
    assert not out.exists()
    has = run("cache", "has", lock, "--cache", url, "--trusted-cache-keys-file", trusted, cwd=tmp_path)
    one_error(has, 8, "outbox-801")
    # no trusted key at all (a host with none configured): still asked, every entry refused
    (tmp_path / "no-keys").write_text("")
    keyless = run("cache", "fetch", lock, "--cache", url, "--trusted-cache-keys-file", tmp_path / "no-keys",
                  "-o", out, cwd=tmp_path)
    assert keyless.returncode == 1 and f"refused {url}" in keyless.stdout, (keyless.stdout, keyless.stderr)
    assert not out.exists()

    # a trusted entry whose wheel was swapped: refused, a miss
    assert run("cache", "publish", lock, "--from", box, "--to", url, "--cache-signing-key", secret,
               cwd=tmp_path).returncode == 0
    wheel = next(objects.glob(f"wheels/*/{WHEEL}"))
    other = tmp_path / "another.whl"
    other.write_bytes((tmp_path / "built" / WHEEL).read_bytes()[:-1] + b"!")  # same size, other bytes
    cache_backends.open_backend(url).write(str(wheel.relative_to(objects)), other)
    swapped = run("cache", "fetch", lock, "--cache", url, "--trusted-cache-keys-file", trusted, "-o", out,
                  cwd=tmp_path)
    assert swapped.returncode == 1 and "is not the signed" in swapped.stdout, swapped.stdout
    assert not out.exists()


@pytest.mark.parametrize("fault", ["other-lock", "wheel-swapped", "wheel-missing", "entry-missing", "entry-huge",
                                   "no-key", "bad-url", "untrusted-builder"])
def test_publish_refuses_what_is_not_the_locks_build_and_pushes_nothing(
        fault: str, lock: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    secret, _ = keys
    box = outbox(lock, tmp_path)
    name = entry_name(lock)
    wheel = next(box.glob(f"wheels/*/{WHEEL}"))
    to = f"file://{tmp_path / 'published'}"
    key_args: list[str | Path] = ["--cache-signing-key", secret]
    expected = {"other-lock": (8, "not the identity"), "wheel-swapped": (8, "is not the one its entry names"),
                "wheel-missing": (8, "not a regular file"), "entry-missing": (8, "cannot be read"),
                "entry-huge": (8, "larger than"), "no-key": (2, "needs a signing key"),
                "bad-url": (2, "is not a file://"), "untrusted-builder": (8, "outbox-801")}[fault]
    if fault == "other-lock":
        # the entry of another lock (another identity), renamed to this lock's entry name
        other = tmp_path / "locks" / "after.lock.toml"
        shutil.copy(GOLDEN / "after.lock.toml", other)
        other_box = outbox(other, tmp_path / "other")
        shutil.rmtree(box)
        shutil.copytree(other_box, box)
        (box / entry_name(other)).rename(box / name)
    elif fault == "wheel-swapped":
        wheel.write_bytes(wheel.read_bytes()[:-1] + b"!")
    elif fault == "wheel-missing":
        wheel.unlink()
    elif fault == "entry-missing":
        (box / name).unlink()
    elif fault == "entry-huge":
        (box / name).write_bytes(b"#" * (cache_entry.MAX_ENTRY_BYTES + 1))
    elif fault == "no-key":
        key_args = []
    elif fault == "bad-url":
        to = "ftp://example.invalid/cache"
    elif fault == "untrusted-builder":  # the builder's key must be among these, when any are given
        key_args += ["--trusted-cache-key", HOST.public().text()]
    proc = run("cache", "publish", lock, "--from", box, "--to", to, *key_args, cwd=tmp_path)
    one_error(proc, *expected)
    assert not (tmp_path / "published").exists()


def test_keys_writes_the_signing_keys_public_half_and_the_trusted_ones(
        keys: tuple[Path, Path], tmp_path: Path) -> None:
    secret, trusted = keys
    other = cache_keys.secret_from_seed("phoenix-2", bytes(range(2, 34))).public()
    trusted.write_text(f"# the fleet\n{HOST.public().text()}\n{other.text()}\n")
    out = tmp_path / "cache-keys"
    proc = run("cache", "keys", "-o", out, "--trusted-cache-keys-file", trusted, "--cache-signing-key", secret,
               cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "phoenix-1 phoenix-2", proc.stderr
    assert out.read_text() == f"{HOST.public().text()}\n{other.text()}\n"
    none = run("cache", "keys", "-o", tmp_path / "none", cwd=tmp_path)
    assert none.stdout.strip() == "none" and (tmp_path / "none").read_text() == ""


def test_name_and_entry_print_what_the_script_needs(lock: Path, tmp_path: Path) -> None:
    name = run("cache", "name", lock, cwd=tmp_path)
    assert name.returncode == 0 and name.stdout.strip() == entry_name(lock)
    box = outbox(lock, tmp_path)
    entry = run("cache", "entry", box / entry_name(lock), cwd=tmp_path)
    sha = hashlib.sha256((tmp_path / "built" / WHEEL).read_bytes()).hexdigest()
    assert entry.stdout.split() == [f"wheels/{sha}/{WHEEL}", str((tmp_path / "built" / WHEEL).stat().st_size)]


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (["cache", "fetch", "{lock}", "--cache", "ftp://x", "--trusted-cache-keys-file", "{trusted}", "-o", "out"],
         2, "is not a file://"),
        (["cache", "fetch", "{lock}", "--cache", "file:///nonexistent", "--trusted-cache-keys-file", "{trusted}",
          "-o", "{keys}"], 9, "is not an empty folder"),
        (["cache", "fetch", "{broken}", "--cache", "file:///nonexistent", "--trusted-cache-keys-file", "{trusted}",
          "-o", "out"], 3, "broken.lock.toml"),
        (["cache", "has", "{lock}", "--cache", "file:///x", "--trusted-cache-key", "k:AAAA"], 2, "3 bytes"),
        (["cache", "keys", "-o", "out", "--trusted-cache-keys-file", "{clash}", "--cache-signing-key", "{secret}"],
         2, "also the name of another key"),
        (["cache", "keys", "-o", "out", "--cache-signing-key", "{trusted}"], 2, "phoenix-1 has 32 bytes"),
        (["cache", "name", "{broken}"], 3, "broken.lock.toml"),
        (["cache", "entry", "{broken}"], 8, "broken.lock.toml"),
        (["cache", "entry", "{nosuch}"], 8, "cannot be read"),
    ],
)
def test_bad_input_is_one_error_line_and_nothing_written(
        args: list[str], code: int, needle: str, lock: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    secret, trusted = keys
    broken = tmp_path / "locks" / "broken.lock.toml"
    broken.write_text("lock-version = 3\nname = \n")
    clash = tmp_path / "keys" / "clash"
    clash.write_text(cache_keys.secret_from_seed("phoenix-1", bytes(range(5, 37))).public().text() + "\n")
    work = tmp_path / "work"
    work.mkdir()
    values = {"lock": lock, "trusted": trusted, "secret": secret, "keys": tmp_path / "keys", "broken": broken,
              "clash": clash, "nosuch": tmp_path / "nosuch.entry"}
    proc = run(*[a.format(**values) for a in args], cwd=work)
    one_error(proc, code, needle)
    assert list(work.iterdir()) == []


def test_the_phoenix_script_speaks_to_vllm_lock_through_its_command_line_only() -> None:
    text = SCRIPT.read_text()
    assert not re.search(r"\b(from|import)\s+vllm_lock\b", text)
    assert not re.search(r"vllm_lock\.(?!cli\b)[a-z_]+", text)  # only `python -m vllm_lock.cli`
    for command in ("cache keys", "cache name", "cache fetch", "cache has", "cache entry", "cache publish",
                    "show"):
        assert re.search(rf"host_vllm_lock {command}\b", text), command


def test_keys_never_writes_through_a_link_planted_at_its_temporary_name(
        keys: tuple[Path, Path], tmp_path: Path) -> None:
    """`cache keys -o /tmp/keys` as root: the temporary beside the output has a predictable name
    (.keys.<pid>.part); a link planted there must not be written through."""
    from vllm_lock.actions import cache as cache_action

    _, trusted = keys
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    out = tmp_path / "shared" / "keys"
    out.parent.mkdir()
    (out.parent / f".keys.{os.getpid()}.part").symlink_to(victim)
    cache_action.consumer_keys(out, trusted_file=trusted, signing_key=None)
    assert victim.read_text() == "precious\n"
    assert not out.is_symlink() and out.read_text() == HOST.public().text() + "\n"


def test_fetch_never_builds_its_cache_inside_a_link_planted_at_its_temporary_name(
        lock: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    """The one-entry cache is built in .<out>.<pid>.part beside -o: a link planted there (in a
    shared folder) pointed the verified wheel into a folder someone else controls until the rename."""
    from vllm_lock.actions import cache as cache_action

    secret, trusted = keys
    url = f"file://{tmp_path / 'dir-cache'}"
    published = run("cache", "publish", lock, "--from", outbox(lock, tmp_path), "--to", url,
                    "--cache-signing-key", secret, cwd=tmp_path)
    assert published.returncode == 0, published.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "shared" / "lookup"
    out.parent.mkdir()
    (out.parent / f".lookup.{os.getpid()}.part").symlink_to(elsewhere)
    try:
        cache_action.fetch(str(lock), [url], [HOST.public()], out, lambda line: None)
    except OutputError:
        pass  # refusing is as good as not following
    assert list(elsewhere.iterdir()) == []
