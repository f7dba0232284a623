"""Review round 3: the binary cache, offline bundles, store gc and the compiler cache, attacked for
real (a hostile S3 server on loopback, FIFOs in a file cache, crafted tars and git bundles, a second
local user against the sccache server). Findings the reviewer could not fix in its own files are
`xfail(strict=True)`: each turns green when the fix its reason names lands."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.server
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from sample_lock import make_lock

from vllm_lock import cache_entry, cache_keys
from vllm_lock.actions import substitute
from vllm_lock.cache_entry import CacheEntry
from vllm_lock.compiler_cache import CompilerCache, CompilerCacheError, parse_compiler_cache
from vllm_lock.errors import BundleError, CacheEntryError, CacheUnreachableError, UsageError, VllmLockError
from vllm_lock.shell import bundle_file, cache_backends, s3, sccache
from vllm_lock.shell import git as git_shell

CLI = [sys.executable, "-m", "vllm_lock.cli"]
KEY = cache_keys.secret_from_seed("phoenix-1", bytes(range(32)))
IDENTITY = "0123456789abcdef" * 4
WHEEL_BYTES = b"PK\x05\x06" + bytes(18)  # an empty zip: the bytes do not matter to the cache


def signed_entry(data: bytes = WHEEL_BYTES, wheel: str = "vllm-0.11.1-cp311-cp311-linux_x86_64.whl") -> CacheEntry:
    entry = CacheEntry(identity=IDENTITY, wheel=wheel, wheel_sha256=hashlib.sha256(data).hexdigest(),
                       wheel_size=len(data), vllm_version="0.11.1", lock_content_hash="sha256:" + "cd" * 32)
    return cache_keys.sign(entry, KEY)


def file_cache(root: Path, entry: CacheEntry, data: bytes = WHEEL_BYTES) -> str:
    (root / entry.wheel_path).parent.mkdir(parents=True, exist_ok=True)
    (root / entry.wheel_path).write_bytes(data)
    (root / entry.name).write_text(cache_entry.render(entry))
    return f"file://{root}"


# ---------------------------------------------------------------- the compiler cache


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_another_local_user_cannot_make_the_sccache_server_run_a_compiler(tmp_path: Path) -> None:
    """install --compiler-cache runs as root; sccache's server runs the compiler its client names.
    Reached over 127.0.0.1 (the old SCCACHE_SERVER_PORT), user `nobody` made it run a script as uid 0."""
    binary = sccache.find_sccache(os.environ)
    attacker = Path(tempfile.mkdtemp(prefix="attacker-"))  # not under pytest's 0700 tmp folder
    try:
        attacker.chmod(0o777)
        (attacker / "x.c").write_text("int main(void) { return 0; }\n")
        evil = attacker / "evilcc"
        evil.write_text(f"#!/bin/sh\nid -u > {attacker}/ran-as\nexec gcc \"$@\"\n")
        evil.chmod(0o755)
        client = attacker / "sccache"
        shutil.copy(binary, client)
        client.chmod(0o755)
        cache = CompilerCache(kind="dir", location=str(tmp_path / "objects"))
        with sccache.running(binary, cache, basedir=tmp_path, work=tmp_path / "work", env=os.environ) as session:
            # whatever the build is told to reach its server by, the attacker reads too (ps, /proc)
            reach = {k: v for k, v in session.build_env.items() if k in ("SCCACHE_SERVER_PORT", "SCCACHE_SERVER_UDS")}
            assert reach
            subprocess.run(
                ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "env", "-i", "PATH=/usr/bin:/bin",
                 f"HOME={attacker}", *(f"{k}={v}" for k, v in reach.items()),
                 str(client), str(evil), "-c", str(attacker / "x.c"), "-o", str(attacker / "x.o")],
                capture_output=True, timeout=60, check=False,
            )
        ran_as = (attacker / "ran-as").read_text().strip() if (attacker / "ran-as").exists() else None
        assert ran_as != "0", "a local user ran a program as root through the build's sccache server"
    finally:
        shutil.rmtree(attacker, ignore_errors=True)


@pytest.mark.parametrize("url", [
    "s3://bkt/p?endpoint=http://AKIAEXAMPLE:s3cr3t@127.0.0.1:9000",
    "s3://bkt/p?endpoint=http://127.0.0.1:9000/path?x=1",
    "s3://bkt/p?endpoint=http://127.0.0.1:9000%23frag",
    "s3://bkt/p?region=us-east-1%0Aevil",
])
def test_compiler_cache_urls_that_would_put_secrets_in_the_receipt_are_refused(url: str) -> None:
    # describe() goes into the install log and the receipt: credentials in the endpoint would too
    with pytest.raises(CompilerCacheError):
        parse_compiler_cache(url)


# ---------------------------------------------------------------- a hostile S3 server


class _EndlessListing(http.server.BaseHTTPRequestHandler):
    """Answers every ListObjectsV2 with one key and `IsTruncated` true (a token that repeats,
    or a new one each time), for `pages` pages; counts the requests."""

    pages = 200
    repeat_token = True
    delay = 0.0
    requests = 0

    def do_GET(self) -> None:
        cls = type(self)
        cls.requests += 1
        time.sleep(cls.delay)
        more = cls.requests < cls.pages
        token = "same" if cls.repeat_token else f"t{cls.requests}"
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Contents><Key>p/{cls.requests:016x}.entry</Key></Contents>"
            f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>"
            + (f"<NextContinuationToken>{token}</NextContinuationToken>" if more else "")
            + "</ListBucketResult>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def endless_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, type[_EndlessListing]]]:
    handler = type("Handler", (_EndlessListing,), {"requests": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    try:
        yield f"s3://bucket/p?endpoint=http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_an_s3_listing_that_repeats_its_token_is_refused(endless_s3: tuple[str, type[_EndlessListing]]) -> None:
    url, handler = endless_s3
    with pytest.raises(CacheUnreachableError, match="repeats a continuation token"):
        cache_backends.open_backend(url).entries()
    assert handler.requests <= 3


def test_an_s3_listing_has_one_total_deadline(endless_s3: tuple[str, type[_EndlessListing]],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    url, handler = endless_s3
    handler.repeat_token, handler.delay, handler.pages = False, 0.05, 400  # 20 s of pages, each well in time
    monkeypatch.setenv("VLLM_LOCK_CACHE_LIST_DEADLINE", "1.5")
    started = time.monotonic()
    with pytest.raises(CacheUnreachableError, match="did not answer within 1.5 s"):
        cache_backends.open_backend(url).entries()
    assert time.monotonic() - started < 5


def test_an_s3_listing_of_endless_keys_is_refused_before_memory_runs_out(
    endless_s3: tuple[str, type[_EndlessListing]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = endless_s3
    handler.repeat_token, handler.pages = False, 400
    monkeypatch.setattr(s3, "MAX_LISTED_KEYS", 50)  # the bound, lowered: 1 million keys would take minutes here
    with pytest.raises(CacheUnreachableError, match="more than 50 keys"):
        cache_backends.open_backend(url).entries()
    assert handler.requests <= 52


def test_the_region_cannot_steer_the_default_endpoint_elsewhere() -> None:
    # region= is part of the default endpoint's host: `attacker.example/#` would send signed requests there
    with pytest.raises(UsageError, match="region"):
        s3.parse_url("s3://bucket/p?region=attacker.example/%23", {})
    assert s3.parse_url("s3://bucket/p?region=eu-west-3", {}).host == "s3.eu-west-3.amazonaws.com"


def test_an_s3_url_cannot_name_another_bucket_through_its_prefix() -> None:
    for url in ("s3://bucket/../other", "s3://bucket/a/./b", "s3://bucket/a//b", "s3://b\u00fccket/p"):
        with pytest.raises(UsageError):
            s3.parse_url(url, {})


@pytest.mark.parametrize("url", [
    "https://ci:s3cr3t@127.0.0.1:1/cache",
    "s3://bucket/p?endpoint=http://AKIAEXAMPLE:s3cr3t@127.0.0.1:1",
])
def test_a_cache_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x"}
    done = subprocess.run([*CLI, "cache", "ls", url], capture_output=True, text=True, timeout=60, check=False, env=env)
    assert done.returncode == 2 and done.stderr.startswith("error:") and len(done.stderr.splitlines()) == 1
    assert "s3cr3t" not in done.stderr + done.stdout


# ---------------------------------------------------------------- a file:// cache anyone may write to


def test_a_link_planted_in_a_shared_file_cache_does_not_redirect_a_push(tmp_path: Path) -> None:
    """`wheels/<sha256>` made a link by another cache user: root's push would write the wheel there."""
    wheel = tmp_path / "vllm-0.11.1-cp311-cp311-linux_x86_64.whl"
    wheel.write_bytes(WHEEL_BYTES)
    root, elsewhere = tmp_path / "cache", tmp_path / "elsewhere"
    (root / "wheels").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "wheels" / signed_entry().wheel_sha256).symlink_to(elsewhere)
    with pytest.raises(CacheUnreachableError, match="leads out of the cache"):
        substitute.push(f"file://{root}", signed_entry().unsigned(), wheel, KEY)
    assert list(elsewhere.iterdir()) == [] and not (root / signed_entry().name).exists()


def _read_in_a_child(url: str, name: str, *, fetch_size: int | None = None) -> subprocess.CompletedProcess[str]:
    """A FIFO blocks open() forever: the read runs in a child the test can time out."""
    call = (f"b.fetch({name!r}, pathlib.Path({tempfile.mkdtemp()!r}) / 'w', size={fetch_size})"
            if fetch_size is not None else f"b.read({name!r})")
    code = ("import pathlib, sys\nfrom vllm_lock.shell import cache_backends\n"
            "from vllm_lock.errors import VllmLockError\n"
            f"b = cache_backends.open_backend({url!r})\n"
            f"try:\n    {call}\nexcept VllmLockError as exc:\n    print('refused:', exc)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False)


def test_a_fifo_entry_or_wheel_in_a_file_cache_is_refused_not_waited_on(tmp_path: Path) -> None:
    entry = signed_entry()
    url = file_cache(tmp_path, entry)
    (tmp_path / entry.name).unlink()
    os.mkfifo(tmp_path / entry.name)
    assert "not a regular file" in _read_in_a_child(url, entry.name).stdout
    (tmp_path / entry.wheel_path).unlink()
    os.mkfifo(tmp_path / entry.wheel_path)
    assert "not a regular file" in _read_in_a_child(url, entry.wheel_path, fetch_size=entry.wheel_size).stdout


def test_cache_ls_never_prints_an_object_name_an_attacker_chose(tmp_path: Path) -> None:
    entry = signed_entry()
    url = file_cache(tmp_path, entry)
    (tmp_path / "\x1b]2;owned\x07\x1b[2J.entry").write_text("junk\n")
    (tmp_path / "..entry").write_text("junk\n")
    done = subprocess.run([*CLI, "cache", "ls", url], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout and "..entry" not in done.stdout
    assert done.stdout.split() == [IDENTITY, "0.11.1", str(len(WHEEL_BYTES)), "phoenix-1"]


# ---------------------------------------------------------------- keys and signatures


def test_a_key_rotated_under_its_old_name_still_verifies_entries_of_either_key() -> None:
    new = cache_keys.secret_from_seed("phoenix-1", bytes(range(1, 33)))  # same name, another key
    both = (KEY.public(), new.public())
    assert cache_keys.trust(signed_entry(), both).signer == "phoenix-1"
    assert cache_keys.trust(cache_keys.sign(signed_entry().unsigned(), new), both).signer == "phoenix-1"
    stranger = cache_keys.secret_from_seed("phoenix-1", bytes(range(2, 34)))
    forged = cache_keys.sign(signed_entry().unsigned(), stranger)
    assert cache_keys.trust(forged, both).signer is None


def test_a_signed_entry_cannot_be_renamed_to_another_wheel_file(tmp_path: Path) -> None:
    """The signature covers identity, sha256 and size only: anyone may rename the wheel (its tags,
    its build number) in a validly signed entry, and install then installs the bytes under that name."""
    genuine = signed_entry()
    renamed = dataclasses.replace(genuine, wheel="vllm-0.11.1-1-py3-none-any.whl")
    url = file_cache(tmp_path, renamed)
    backend = cache_backends.open_backend(url)
    data = backend.read(renamed.name)
    assert data is not None
    with pytest.raises(CacheEntryError):
        substitute.trusted_entry(data, url, IDENTITY, [KEY.public()])


def test_an_entry_is_bound_to_at_least_128_bits_of_the_build() -> None:
    assert len(cache_entry.wheel_build_identity(make_lock())) * 4 >= 128


# ---------------------------------------------------------------- offline bundles


def test_a_huge_extended_tar_header_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """tarfile reads a GNU long-name (or PAX) header whole into memory before any member check."""
    bundle = tmp_path / "b.tar"
    size = 48 << 20
    header = tarfile.TarInfo("././@LongLink")
    header.type, header.size = tarfile.GNUTYPE_LONGNAME, size
    with bundle.open("wb") as out:
        out.write(header.tobuf(format=tarfile.GNU_FORMAT))
        out.seek(size + (-size % 512) + 512, io.SEEK_CUR)  # sparse on disk
        out.write(bytes(1024))
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match="extended header"):
            bundle_file.read(bundle, tmp_path / "unpacked")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"{peak} bytes held while refusing the bundle"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def upstream(tmp_path: Path) -> dict[str, str]:
    """A repository: `wanted` on main, and `other` on an unrelated branch (another lock's commit)."""
    repo = tmp_path / "up"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "f").write_text("1\n")
    _git(repo, "add", "f")
    _git(repo, "commit", "-qm", "wanted")
    wanted = _git(repo, "rev-parse", "HEAD")
    _git(repo, "checkout", "-q", "--orphan", "side")
    (repo / "f").write_text("2\n")
    _git(repo, "commit", "-qam", "other")
    other = _git(repo, "rev-parse", "HEAD")
    _git(repo, "update-ref", f"refs/vllm-lock/{wanted}", wanted)
    _git(repo, "tag", "v99.0.0", other)
    _git(repo, "bundle", "create", "-q", str(tmp_path / "evil.bundle"), f"refs/vllm-lock/{wanted}", "refs/tags/v99.0.0")
    return {"wanted": wanted, "other": other, "bundle": str(tmp_path / "evil.bundle")}


URL = "https://github.com/vllm-project/vllm.git"


def test_a_bundle_cannot_plant_a_tag_on_another_locks_commit(tmp_path: Path, upstream: dict[str, str]) -> None:
    """setuptools-scm derives vLLM's version from the nearest tag: a tag planted on a commit of
    ANOTHER lock changes the version that lock builds (and pushes to the binary cache) later."""
    cache = tmp_path / "cache"
    git_shell.import_bundle(cache, URL, Path(upstream["bundle"]), [upstream["wanted"]], [])
    tags = _git(git_shell.mirror_path(cache, URL), "for-each-ref", "--format=%(refname)", "refs/tags")
    assert "refs/tags/v99.0.0" not in tags.split()


def test_a_bundle_cannot_mark_another_locks_commit_shallow(tmp_path: Path, upstream: dict[str, str]) -> None:
    """A shallow mark on a commit the mirror does not hold yet cuts that commit's history when a
    later install of another lock fetches it (its version then counts from no tag)."""
    cache = tmp_path / "cache"
    git_shell.import_bundle(cache, URL, Path(upstream["bundle"]), [upstream["wanted"]], [upstream["other"]])
    boundary = git_shell.mirror_path(cache, URL) / "shallow"
    assert not boundary.exists() or upstream["other"] not in boundary.read_text().split()


# ---------------------------------------------------------------- store gc


def test_store_gc_refuses_to_run_without_a_locks_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vllm_lock.actions import store_gc
    from vllm_lock.progress import QUIET

    cache = tmp_path / "cache"
    entry = cache / "cas" / "sha256" / ("ab" * 32)
    entry.mkdir(parents=True)
    (entry / "torch-2.10.0-py3-none-any.whl").write_bytes(b"w")
    os.utime(entry / "torch-2.10.0-py3-none-any.whl", (0, 0))
    os.utime(entry, (0, 0))
    monkeypatch.delenv("VLLM_LOCK_LOCKS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./locks here: the operator is in the wrong folder
    with pytest.raises(VllmLockError):
        store_gc.collect(store_gc.GcRequest(cache=cache, venvs=(tmp_path / "venv",), dry_run=True), QUIET)


def test_the_wheel_of_a_signed_entry_lies_under_its_signed_sha256_only() -> None:
    """What held: an entry cannot point its wheel outside wheels/<sha256>/ (names have no '/')."""
    for name in ("vllm-0.11.1-py3-none-any.whl/../../x.whl", "vllm-../../etc/passwd.whl", "vllm-0.11.1.whl\n"):
        text = cache_entry.render(signed_entry()).replace(signed_entry().wheel, name)
        with pytest.raises(CacheEntryError):
            cache_entry.parse(text.encode(), origin="e")
    assert base64.b64decode(cache_keys.SecretKey.text(KEY).split(":")[1])[32:] == KEY.public().key


def _tar(path: Path, members: list[tarfile.TarInfo], fmt: int = tarfile.PAX_FORMAT) -> Path:
    with tarfile.open(path, "w", format=fmt) as tar:
        for info in members:
            tar.addfile(info, io.BytesIO(bytes(info.size)) if info.isreg() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


_WHEEL = "wheels/" + "ab" * 32 + "/torch-2.10.0-py3-none-any.whl"


@pytest.mark.parametrize(("members", "words"), [
    ([_member(_WHEEL, tarfile.SYMTYPE, link="/etc/shadow")], "not a regular file"),
    ([_member(_WHEEL, tarfile.LNKTYPE, link="lock.toml")], "not a regular file"),
    ([_member(_WHEEL, tarfile.CHRTYPE)], "not a regular file"),
    ([_member(_WHEEL, tarfile.FIFOTYPE)], "not a regular file"),
    ([_member("wheels/" + "ab" * 32, tarfile.DIRTYPE)], "not a name a bundle holds"),
    ([_member("lock.toml", size=3), _member("lock.toml", size=3)], "appears twice"),
    ([_member("manifest.json", size=2), _member("lock.toml")], "must come last"),
    ([_member("/etc/cron.d/x")], "absolute path"),
    ([_member("wheels/../../../etc/x")], "leaves the bundle"),
    ([_member("lock.toml\0x")], "has no manifest.json"),  # tarfile cuts the name at its NUL: lock.toml, checked as one
    ([_member("git/0123456789abcdef.bundle/../../x")], "leaves the bundle"),
    ([_member("crates/" + "ab" * 32 + "/-rf.crate")], "not a name a bundle holds"),
])
def test_what_held_crafted_tar_members_are_refused(tmp_path: Path, members: list[tarfile.TarInfo], words: str) -> None:
    bundle = _tar(tmp_path / "b.tar", members)
    with pytest.raises(BundleError, match=words):
        bundle_file.read(bundle, tmp_path / "unpacked")
    assert {p.name for p in tmp_path.iterdir()} <= {"b.tar", "unpacked"}  # nothing outside the scratch folder


def test_what_held_the_member_count_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_LOCK_BUNDLE_MAX_MEMBERS", "3")
    names = ["wheels/" + f"{i:064x}" + "/w-1-py3-none-any.whl" for i in range(5)]
    with pytest.raises(BundleError, match="more than 3 members"):
        bundle_file.read(_tar(tmp_path / "b.tar", [_member(n) for n in names]), tmp_path / "unpacked")


def test_what_held_a_key_file_is_0600_and_never_written_over_or_through_a_link(tmp_path: Path) -> None:
    key = tmp_path / "k.secret"
    first = subprocess.run([*CLI, "key", "generate", "--name", "k", "-o", str(key)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert first.returncode == 0 and (key.stat().st_mode & 0o777) == 0o600
    before = key.read_bytes()
    again = subprocess.run([*CLI, "key", "generate", "--name", "k", "-o", str(key)], capture_output=True, text=True,
                           timeout=60, check=False)
    assert again.returncode == 9 and again.stderr.startswith("error:") and key.read_bytes() == before
    victim = tmp_path / "victim"
    victim.write_text("keep\n")
    (tmp_path / "link.secret").symlink_to(victim)
    linked = subprocess.run([*CLI, "key", "generate", "--name", "k", "-o", str(tmp_path / "link.secret")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert linked.returncode == 9 and victim.read_text() == "keep\n"
    secret = cache_keys.parse_secret(before.decode(), origin="k.secret")
    assert first.stdout.strip() == secret.public().text()  # the public half is printed, never the secret


def test_a_cache_url_with_credentials_never_reaches_the_install_log(tmp_path: Path) -> None:
    lines: list[str] = []
    try:
        settings = substitute.settings(caches=["https://ci:s3cr3t@127.0.0.1:1/cache"],
                                       trusted_keys=[KEY.public().text()])
        substitute.find(IDENTITY, settings, tmp_path / "dist", lines.append)
    except UsageError as exc:
        lines.append(str(exc))
        assert "s3cr3t" not in "\n".join(lines)
        return
    pytest.fail(f"accepted, and logged: {lines}")
