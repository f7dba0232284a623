"""Misbehaving servers on loopback for the fault suite (real sockets, real HTTP).

FaultHTTPServer proxies the test world, except for paths given a fault: "drip" answers one byte
(status line, headers, body) every `interval` seconds; "endless" sends a body without a length
that never ends; "redirect:<url>" redirects there; "status:<code>" answers that code with an empty
body. SilentListener accepts TCP connections and never says a word (a git:// server that hangs), or
hands each to a given answer.
Each records what reached it as events, so that tests wait on events, not sleeps."""

from __future__ import annotations

import http.client
import socket
import threading
import urllib.parse
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultHTTPServer:
    def __init__(self, upstream: str, interval: float = 1.0) -> None:
        self.upstream = urllib.parse.urlsplit(upstream)
        self.interval = interval
        self.faults: dict[str, str] = {}  # path (unquoted) or "*" -> "drip" | "endless" | ...
        self.hit = threading.Event()  # a faulty path was requested
        self.faulty_requests: list[str] = []
        self.stop = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:
                owner._handle(self, head=False)

            def do_HEAD(self) -> None:
                owner._handle(self, head=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self.stop.set()
        self._server.shutdown()
        self._server.server_close()

    def _fault_for(self, path: str) -> str | None:
        return self.faults.get(urllib.parse.unquote(urllib.parse.urlsplit(path).path)) or self.faults.get("*")

    def _handle(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        fault = self._fault_for(handler.path)
        if fault is None:
            self._proxy(handler, head)
            return
        self.faulty_requests.append(handler.path)
        self.hit.set()
        if fault.startswith("status:"):
            handler.send_response(int(fault.removeprefix("status:")))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        if fault.startswith("redirect:"):
            handler.send_response(302)
            handler.send_header("Location", fault.removeprefix("redirect:"))
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        try:
            if fault == "drip":  # status line, headers and body alike, one byte at a time
                head_bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1073741824\r\n\r\n"
                sent = 0
                while not self.stop.wait(0 if sent == 0 else self.interval):
                    handler.wfile.write(head_bytes[sent:sent + 1] if sent < len(head_bytes) else b"<")
                    handler.wfile.flush()
                    sent += 1
            else:  # endless
                handler.send_response(200)
                handler.send_header("Content-Type", "application/octet-stream")
                handler.send_header("Connection", "close")
                handler.end_headers()
                block = b"\0" * 65536
                while not head and not self.stop.is_set():
                    handler.wfile.write(block)
            handler.close_connection = True
        except OSError:  # the client gave up: that is the point
            handler.close_connection = True

    def _proxy(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        conn = http.client.HTTPConnection(self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=30)
        try:
            conn.request(handler.command, handler.path, headers={
                "Host": handler.headers.get("Host", ""), "Accept": handler.headers.get("Accept", "*/*"),
            })
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        handler.send_response(response.status)
        for key in ("Content-Type", "Content-Length", "ETag", "Location"):
            if (value := response.getheader(key)) is not None:
                handler.send_header(key, value)
        handler.end_headers()
        if not head:
            handler.wfile.write(body)


class SilentListener:
    """A TCP listener that accepts and then says nothing, ever; or, given answer, hands each
    connection to it (close it unanswered, fail a TLS handshake...). `connections` counts them."""

    def __init__(self, answer: Callable[[socket.socket], None] | None = None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.accepted = threading.Event()
        self.connections = 0
        self._answer = answer
        self._held: list[socket.socket] = []
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.connections += 1
            if self._answer is None:
                self._held.append(conn)
            else:
                self._answer(conn)
            self.accepted.set()

    def close(self) -> None:
        self._closed = True
        self._sock.close()
        for conn in self._held:
            conn.close()
