"""Faults of the binary cache, each against real servers on loopback (a directory, an HTTP server
that takes PUTs, `rclone serve s3`): every refusal is one line naming its reason, nothing that was
not verified is returned, and every request is bounded."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faults.faultservers import SilentListener
from test_cache_support import S3Server, free_port, http_server, s3_server

from vllm_lock import cache_entry, cache_keys
from vllm_lock.actions import substitute
from vllm_lock.cache_entry import CacheEntry
from vllm_lock.errors import CacheUnreachableError
from vllm_lock.shell import cache_backends

IDENTITY = "0123456789abcdef" * 4
KEY = cache_keys.secret_from_seed("phoenix-1", bytes(range(32)))
OTHER = cache_keys.secret_from_seed("phoenix-2", bytes(range(1, 33)))
WHEEL = "vllm-0.11.1.dev5+gabcdef012.cpu-cp311-cp311-linux_x86_64.whl"


@dataclass(frozen=True)
class Cache:
    url: str
    objects: Path  # where the server keeps the cache's objects on disk


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    with s3_server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(params=["file", "http", "s3"])
def cache(request: pytest.FixtureRequest, tmp_path: Path, s3: S3Server,
          monkeypatch: pytest.MonkeyPatch) -> Iterator[Cache]:
    if request.param == "file":
        yield Cache(url=f"file://{tmp_path / 'dir-cache'}", objects=tmp_path / "dir-cache")
    elif request.param == "http":
        with http_server(tmp_path / "http") as server:
            yield Cache(url=server.url, objects=server.root / "cache")
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
        prefix = tmp_path.name
        yield Cache(url=s3.url(prefix=prefix), objects=s3.root / "cache" / prefix)


def tamper(cache: Cache, name: str, data: bytes) -> None:
    """Replace an object through the server, as anyone with write access to the cache could (a
    server's own view of its files, rclone's directory cache, is not bypassed)."""
    cache_backends.open_backend(cache.url).write(name, data)


def make_wheel(where: Path, content: bytes = b"PK\x03\x04 a built vllm " * 4000) -> Path:
    where.mkdir(parents=True, exist_ok=True)
    wheel = where / WHEEL
    wheel.write_bytes(content)
    return wheel


def entry_for(wheel: Path, identity: str = IDENTITY) -> CacheEntry:
    data = wheel.read_bytes()
    return CacheEntry(identity=identity, wheel=wheel.name, wheel_sha256=hashlib.sha256(data).hexdigest(),
                      wheel_size=len(data), vllm_version="0.11.1.dev5+gabcdef012.cpu",
                      lock_content_hash="sha256:" + "cd" * 32, build_seconds=12.5)


def publish(url: str, tmp_path: Path, key: cache_keys.SecretKey = KEY) -> CacheEntry:
    wheel = make_wheel(tmp_path / "built")
    return substitute.push(url, entry_for(wheel), wheel, key)


def lookup(url: str, tmp_path: Path, trusted: tuple[cache_keys.PublicKey, ...] = (KEY.public(),),
           *more: str) -> tuple[substitute.Substitution | None, list[str]]:
    said: list[str] = []
    settings = substitute.CacheSettings(caches=(url, *more), trusted=trusted)
    return substitute.find(IDENTITY, settings, tmp_path / "dist", said.append), said


def refusal(said: list[str]) -> str:
    lines = [line for line in said if line.strip().startswith("refused ")]
    assert len(lines) == 1, said
    assert "\n" not in lines[0]
    return lines[0]


def test_a_good_entry_is_substituted(cache: Cache, tmp_path: Path) -> None:
    signed = publish(cache.url, tmp_path)
    hit, said = lookup(cache.url, tmp_path)
    assert hit is not None and hit.signer == "phoenix-1" and hit.entry == signed, said
    assert hit.wheel.read_bytes() == (tmp_path / "built" / WHEEL).read_bytes()
    assert (cache.objects / signed.wheel_path).is_file() and (cache.objects / signed.name).is_file()


def test_corrupt_entry(cache: Cache, tmp_path: Path) -> None:
    signed = publish(cache.url, tmp_path)
    tamper(cache, signed.name, cache_entry.render(signed).replace("WheelSize: ", "WheelSize: x").encode())
    hit, said = lookup(cache.url, tmp_path)
    assert hit is None
    assert "WheelSize: 'x" in refusal(said) and "is not a plain decimal number" in refusal(said)


def test_truncated_wheel(cache: Cache, tmp_path: Path) -> None:
    signed = publish(cache.url, tmp_path)
    tamper(cache, signed.wheel_path, (tmp_path / "built" / WHEEL).read_bytes()[: signed.wheel_size // 2])
    hit, said = lookup(cache.url, tmp_path)
    assert hit is None and not list((tmp_path / "dist").iterdir())  # nothing unverified left behind
    line = refusal(said)
    half, full = signed.wheel_size // 2, signed.wheel_size
    assert (f"truncated: {half} of the signed {full} bytes" in line
            or f"announces {half} bytes, the entry says {full}" in line)


def test_altered_wheel_of_the_same_size(cache: Cache, tmp_path: Path) -> None:
    signed = publish(cache.url, tmp_path)
    data = bytearray((tmp_path / "built" / WHEEL).read_bytes())
    data[100] ^= 0xFF
    tamper(cache, signed.wheel_path, bytes(data))
    hit, said = lookup(cache.url, tmp_path)
    assert hit is None
    assert f"is not the signed {signed.wheel_sha256}" in refusal(said)


def test_longer_wheel_is_cut_at_the_signed_size(cache: Cache, tmp_path: Path) -> None:
    signed = publish(cache.url, tmp_path)
    tamper(cache, signed.wheel_path, (tmp_path / "built" / WHEEL).read_bytes() + b"more bytes than were signed" * 1000)
    hit, said = lookup(cache.url, tmp_path)
    assert hit is None
    line = refusal(said)
    # refused while downloading, at the signed size (not after reading all of it)
    assert "sends more than" in line or "longer than the entry's" in line or "announces" in line, line


def test_wrong_signature(cache: Cache, tmp_path: Path) -> None:
    signed = publish(cache.url, tmp_path)
    # the trusted name, another key's signature: a forged entry
    forged = cache_keys.sign(signed.unsigned(), cache_keys.secret_from_seed("phoenix-1", bytes(range(2, 34))))
    tamper(cache, signed.name, cache_entry.render(forged).encode())
    hit, said = lookup(cache.url, tmp_path)
    assert hit is None
    assert "the signature by phoenix-1 does not verify" in refusal(said)


def test_unknown_key(cache: Cache, tmp_path: Path) -> None:
    publish(cache.url, tmp_path, key=OTHER)
    hit, said = lookup(cache.url, tmp_path)
    assert hit is None
    assert "signed only by keys that are not trusted (phoenix-2)" in refusal(said)


def test_unsigned_entry(cache: Cache, tmp_path: Path) -> None:
    signed = publish(cache.url, tmp_path)
    tamper(cache, signed.name, cache_entry.render(signed.unsigned()).encode())
    hit, said = lookup(cache.url, tmp_path)
    assert hit is None and "the entry is unsigned" in refusal(said)


def test_an_entry_under_another_identity(cache: Cache, tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "built")
    other = substitute.push(cache.url, entry_for(wheel, identity="fedcba9876543210" * 4), wheel, KEY)
    # a validly signed entry of another build, copied to this identity's name
    tamper(cache, cache_entry.entry_name(IDENTITY), cache_entry.render(other).encode())
    hit, said = lookup(cache.url, tmp_path)
    assert hit is None and f"names identity {'fedcba9876543210' * 4}, not {IDENTITY}" in refusal(said)


def test_a_refused_cache_falls_through_to_the_next(tmp_path: Path) -> None:
    first, second = f"file://{tmp_path / 'a'}", f"file://{tmp_path / 'b'}"
    publish(first, tmp_path, key=OTHER)
    publish(second, tmp_path)
    hit, said = lookup(first, tmp_path, (KEY.public(),), second)
    assert hit is not None and hit.cache == second
    assert "not trusted (phoenix-2)" in refusal(said)


@pytest.mark.parametrize("scheme", ["http", "s3"])
def test_unreachable_cache(scheme: str, tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/cache" if scheme == "http" else f"s3://cache/v?endpoint=http://127.0.0.1:{port}"
    start = time.monotonic()
    hit, said = lookup(url, tmp_path)
    assert hit is None and time.monotonic() - start < 10
    line = refusal(said)
    assert line.strip().startswith(f"refused {url}: ") and "Connection refused" in line, line


def test_slow_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLLM_LOCK_CACHE_DEADLINE", "1")
    with http_server(tmp_path / "http") as server:
        publish(server.url, tmp_path)
        server.faults.slow_seconds = 8
        start = time.monotonic()
        hit, said = lookup(server.url, tmp_path)
        took = time.monotonic() - start
    assert hit is None and took < 4, (took, said)
    assert "did not finish within 1 s (VLLM_LOCK_CACHE_DEADLINE)" in refusal(said)


def test_s3_wrong_credentials_never_show_the_secret(tmp_path: Path, s3: S3Server,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-0123456789")
    hit, said = lookup(s3.url(prefix="creds"), tmp_path)
    line = refusal(said)
    assert hit is None and "HTTP 403" in line and "check the AWS credentials" in line
    assert "not-the-secret" not in " ".join(said) and s3.env["AWS_SECRET_ACCESS_KEY"] not in " ".join(said)


def test_s3_credentials_from_the_shared_credentials_file(tmp_path: Path, s3: S3Server,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[ci]\naws_access_key_id = {s3.env['AWS_ACCESS_KEY_ID']}\n"
                           f"aws_secret_access_key = {s3.env['AWS_SECRET_ACCESS_KEY']}\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "ci")
    url = s3.url(prefix="profile")
    publish(url, tmp_path)
    hit, said = lookup(url, tmp_path)
    assert hit is not None, said


def test_a_static_http_cache_s_5xx_to_a_put_is_sent_again_with_the_whole_body(tmp_path: Path) -> None:
    """A PUT answered 500 goes again (the file body from its first byte), as a GET would; the
    cache then holds the whole, verifiable build."""
    with http_server(tmp_path / "http") as server:
        server.faults.answer_put_of = "/wheels/"
        published = publish(server.url, tmp_path)
        assert [put for put in server.faults.puts if "/wheels/" in put] == [f"/cache/{published.wheel_path}"] * 2
        hit, said = lookup(server.url, tmp_path)
    assert hit is not None, said


@pytest.mark.parametrize(("code", "times", "message", "puts"), [
    (500, 9, r"/wheels/.*: PUT failed: HTTP 500 .* \(after 3 tries\)$", 3),
    (403, 9, r"/wheels/.*: PUT answered HTTP 403 ", 1),
])
def test_a_static_http_cache_s_put_gives_up_after_three_tries_or_at_a_4xx(
    tmp_path: Path, code: int, times: int, message: str, puts: int
) -> None:
    with http_server(tmp_path / "http") as server:
        server.faults.answer_put_of, server.faults.answer_put_with, server.faults.answer_put_times = (
            "/wheels/", code, times)
        with pytest.raises(CacheUnreachableError, match=message):
            publish(server.url, tmp_path)
        assert sum("/wheels/" in put for put in server.faults.puts) == puts
        assert not any(put.endswith(".entry") for put in server.faults.puts)  # the entry is written last


def test_push_failing_halfway_leaves_no_entry(tmp_path: Path) -> None:
    with http_server(tmp_path / "http") as server:
        server.faults.break_put_of = "/wheels/"
        with pytest.raises(CacheUnreachableError, match="PUT failed|PUT did not finish|PUT answered"):
            publish(server.url, tmp_path)
        assert any("/wheels/" in put for put in server.faults.puts)
        assert not any(put.endswith(".entry") for put in server.faults.puts)  # the entry is written last
        assert not list((server.root / "cache").glob("*.entry"))
        hit, said = lookup(server.url, tmp_path)
    assert hit is None and f"no entry {IDENTITY}.entry" in " ".join(said)


_PUSHER = """
import sys
from pathlib import Path
from vllm_lock import cache_keys
from vllm_lock.actions import substitute
sys.path.insert(0, {tests!r})
from test_cache_faults import entry_for
wheel = Path(sys.argv[2])
key = cache_keys.secret_from_seed(sys.argv[3], bytes([int(sys.argv[4])]) * 32)
substitute.push(sys.argv[1], entry_for(wheel), wheel, key)
"""


def test_two_concurrent_pushes_of_one_identity_end_with_one_valid_entry(tmp_path: Path, s3: S3Server,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    env = dict(os.environ, **s3.env)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
    code = _PUSHER.format(tests=str(Path(__file__).parent))
    keys = [cache_keys.secret_from_seed(f"host-{i}", bytes([i]) * 32) for i in (1, 2)]
    for round_ in range(3):
        url = s3.url(prefix=f"race{round_}")
        # two hosts built the same identity into different bytes (builds need not be bit-identical)
        wheels = [make_wheel(tmp_path / f"r{round_}-{i}", f"built on host {i} ".encode() * (50000 + i)) for i in (1, 2)]
        procs = [subprocess.Popen([sys.executable, "-c", code, url, str(w), f"host-{i}", str(i)], env=env)
                 for i, w in zip((1, 2), wheels, strict=True)]
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
        hit, said = lookup(url, tmp_path / f"r{round_}", tuple(k.public() for k in keys))
        assert hit is not None, said
        winner = int(hit.signer.removeprefix("host-"))
        assert hit.wheel.read_bytes() == wheels[winner - 1].read_bytes()


class _FirstPutFails(http.server.BaseHTTPRequestHandler):
    """In front of the real S3 server: answers the first PUT of a key ending in `fail_suffix` with
    S3's 500 InternalError (what rclone answers two PUTs of one key at the same instant), forwards
    every other request unchanged (its signed Host header included)."""

    upstream: tuple[str, int] = ("127.0.0.1", 0)
    fail_suffix = ".entry"
    failures_left = 1
    puts: list[str] = []

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.command == "PUT":
            type(self).puts.append(self.path)
            if self.path.split("?")[0].endswith(type(self).fail_suffix) and type(self).failures_left > 0:
                type(self).failures_left -= 1
                error = b"<Error><Code>InternalError</Code><Message>injected</Message></Error>"
                self.send_response(500)
                self.send_header("content-length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
        conn = http.client.HTTPConnection(*type(self).upstream, timeout=30)
        conn.request(self.command, self.path, body=body or None, headers=dict(self.headers.items()))
        answer = conn.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_HEAD = _forward

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("failures, pushed", [(1, True), (99, False)])
def test_an_s3_put_answered_500_is_sent_again_then_given_up(tmp_path: Path, s3: S3Server, failures: int,
                                                            pushed: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
    endpoint = urllib.parse.urlsplit(s3.endpoint)
    class Handler(_FirstPutFails):
        upstream = (endpoint.hostname or "127.0.0.1", endpoint.port or 80)
        failures_left = failures
        puts: list[str] = []
    handler = Handler
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s3.url(prefix="retried")  # makes the bucket
    url = f"s3://cache/retried{failures}?endpoint=http://127.0.0.1:{server.server_address[1]}"
    try:
        if pushed:
            publish(url, tmp_path)
            hit, said = lookup(url, tmp_path)
            assert hit is not None, said
        else:
            with pytest.raises(CacheUnreachableError,
                               match=r"\.entry: PUT answered HTTP 500: InternalError \(after 3 tries\)$"):
                publish(url, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    entry_puts = [put for put in handler.puts if put.split("?")[0].endswith(".entry")]
    assert len(entry_puts) == (2 if pushed else 3), handler.puts


def test_an_s3_put_of_a_file_answered_500_is_sent_again_from_the_files_start(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wheel goes up as a file body (the entry as bytes): its second PUT must send it from its
    first byte again, not from where the first PUT left the file (its end: an empty body under
    the wheel's Content-Length, which the server waits on until the deadline)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("VLLM_LOCK_DOWNLOAD_BASE_S", "8")  # a PUT that waits for its body fails in seconds
    monkeypatch.setenv("VLLM_LOCK_HTTP_READ_TIMEOUT", "4")
    endpoint = urllib.parse.urlsplit(s3.endpoint)

    class Handler(_FirstPutFails):
        upstream = (endpoint.hostname or "127.0.0.1", endpoint.port or 80)
        fail_suffix = ".whl"
        failures_left = 1
        puts: list[str] = []

        def setup(self) -> None:
            super().setup()
            self.connection.settimeout(4)  # a body that never comes ends the request, not the test

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s3.url(prefix="retried-file")  # makes the bucket
    url = f"s3://cache/retried-file?endpoint=http://127.0.0.1:{server.server_address[1]}"
    try:
        publish(url, tmp_path)
        hit, said = lookup(url, tmp_path)
    finally:
        server.shutdown()
        server.server_close()
    assert hit is not None, said
    assert hit.wheel.read_bytes() == (tmp_path / "built" / WHEEL).read_bytes()
    wheel_puts = [put for put in Handler.puts if put.split("?")[0].endswith(".whl")]
    assert len(wheel_puts) == 2, Handler.puts


def test_an_s3_endpoint_whose_tls_certificate_is_not_trusted_is_refused_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate no trusted CA signed is no passing fault: one handshake, then the same words
    http.py has for it (not three tries, a second of pauses, and ssl's own text)."""
    import socket
    import ssl

    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(tmp_path / "key.pem"), "-out", str(tmp_path / "cert.pem")],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    handshakes: list[str] = []

    def handshake(conn: socket.socket) -> None:
        handshakes.append("accepted")
        try:
            context.wrap_socket(conn, server_side=True).close()
        except (OSError, ssl.SSLError):
            conn.close()

    listener = SilentListener(answer=handshake)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url = f"s3://cache/p?endpoint=https://127.0.0.1:{listener.port}"
    try:
        with pytest.raises(CacheUnreachableError) as refused:
            cache_backends.open_backend(url).read("x.entry")
    finally:
        listener.close()
    message = str(refused.value)
    assert "TLS certificate not trusted" in message and "\n" not in message, message
    assert "not-a-real-secret" not in message
    assert handshakes == ["accepted"]


def test_an_s3_put_past_its_deadline_names_the_settings_that_bound_it(
    tmp_path: Path, s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wheel's PUT is bounded by the download deadline (VLLM_LOCK_DOWNLOAD_BASE_S + bytes /
    VLLM_LOCK_DOWNLOAD_FLOOR_RATE), not the entry's VLLM_LOCK_CACHE_DEADLINE: the message names
    what to raise."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.env["AWS_ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
    monkeypatch.setenv("VLLM_LOCK_DOWNLOAD_BASE_S", "2")
    endpoint = urllib.parse.urlsplit(s3.endpoint)
    stalled = threading.Event()

    class Handler(_FirstPutFails):
        upstream = (endpoint.hostname or "127.0.0.1", endpoint.port or 80)
        fail_suffix = ".none"
        puts: list[str] = []

        def do_PUT(self) -> None:
            if self.path.split("?")[0].endswith(".whl"):
                stalled.wait(10)  # never answers within the PUT's deadline
                return
            self._forward()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    s3.url(prefix="stalled")  # makes the bucket
    url = f"s3://cache/stalled?endpoint=http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(CacheUnreachableError) as late:
            publish(url, tmp_path)
    finally:
        stalled.set()
        server.shutdown()
        server.server_close()
    message = str(late.value)
    assert message.endswith("(VLLM_LOCK_DOWNLOAD_BASE_S + its bytes / VLLM_LOCK_DOWNLOAD_FLOOR_RATE)"), message
    assert ".whl did not answer within 2." in message


def test_cache_verify_reports_each_bad_entry(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'c'}"
    publish(url, tmp_path)
    wheel = make_wheel(tmp_path / "other", b"another build " * 100)
    bad = substitute.push(url, entry_for(wheel, identity="fedcba9876543210" * 4), wheel, KEY)
    (tmp_path / "c" / bad.wheel_path).write_bytes(b"x")
    env = dict(os.environ)
    result = subprocess.run([sys.executable, "-m", "vllm_lock.cli", "cache", "verify", url,
                             "--trusted-cache-key", KEY.public().text()], capture_output=True, text=True, env=env)
    assert result.returncode == 1, result.stderr
    assert f"{IDENTITY}.entry: ok (signed by phoenix-1)" in result.stdout
    assert "fedcba9876543210.entry: REFUSED: " in result.stdout and "truncated: 1 of the signed" in result.stdout
    assert "2 entries, 1 refused" in result.stdout


def test_the_worst_interleaving_of_two_pushes_still_ends_valid(cache: Cache, tmp_path: Path) -> None:
    """Pusher 1 writes its wheel, pusher 2 its wheel and entry, then pusher 1 its entry: the last
    entry names its own wheel's bytes (wheels are kept under their sha256, never under the identity)."""
    wheels = [make_wheel(tmp_path / f"host{i}", f"built on host {i} ".encode() * (3000 + i)) for i in (1, 2)]
    signed = [cache_keys.sign(entry_for(w), KEY) for w in wheels]
    backend = cache_backends.open_backend(cache.url)
    backend.write(signed[0].wheel_path, wheels[0])
    backend.write(signed[1].wheel_path, wheels[1])
    backend.write(signed[1].name, cache_entry.render(signed[1]).encode())
    backend.write(signed[0].name, cache_entry.render(signed[0]).encode())
    hit, said = lookup(cache.url, tmp_path)
    assert hit is not None, said
    assert hit.entry == signed[0] and hit.wheel.read_bytes() == wheels[0].read_bytes()
