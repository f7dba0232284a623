"""In-memory package index (PEP 503 HTML, PEP 691 JSON) served over HTTP and HTTPS."""

from __future__ import annotations

import hashlib
import html
import json
import ssl
import threading
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .wheels import normalize

PEP691 = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class IndexConfig:
    """One simple index: where its pages live and how links are written."""

    prefix: str  # URL path of the index root, e.g. "/whl/nightly/cu128"
    file_prefix: str  # URL path where its files are served
    hashes: bool  # add #sha256= fragments (and hashes in JSON)
    json: bool  # answer PEP 691 JSON when asked


@dataclass(frozen=True)
class FileEntry:
    """One file listed on a project page."""

    project: str
    filename: str
    path: str
    sha256: str
    size: int
    requires_python: str | None


class IndexStore:
    """Thread-safe content: index configs, project listings, file bytes, request log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.indexes: dict[str, IndexConfig] = {}
        self._projects: dict[str, dict[str, dict[str, FileEntry]]] = {}
        self._files: dict[str, bytes] = {}
        self._log: list[tuple[str, str]] = []
        self._agents: list[str] = []  # the User-Agent of each logged request

    def add_index(self, cfg: IndexConfig) -> None:
        with self._lock:
            self.indexes[cfg.prefix] = cfg
            self._projects.setdefault(cfg.prefix, {})

    def add_file(
        self, prefix: str, project: str, filename: str, data: bytes,
        requires_python: str | None = None,
    ) -> FileEntry:
        """Publish data as filename on index prefix (replacing bytes if present)."""
        cfg = self.indexes[prefix]
        quoted = urllib.parse.quote(filename)
        entry = FileEntry(
            normalize(project), filename, f"{cfg.file_prefix}/{quoted}",
            hashlib.sha256(data).hexdigest(), len(data), requires_python,
        )
        with self._lock:
            self._projects[prefix].setdefault(entry.project, {})[filename] = entry
            self._files[urllib.parse.unquote(entry.path)] = data
        return entry

    def put_file(self, path: str, data: bytes) -> None:
        """Serve data at path, outside any index (e.g. a crate registry's files)."""
        with self._lock:
            self._files[path] = data

    def list_entry(self, prefix: str, entry: FileEntry) -> None:
        """List a file already served (by any index, at its own URL) on index prefix too."""
        with self._lock:
            self._projects[prefix].setdefault(entry.project, {})[entry.filename] = entry

    def replace_bytes(self, prefix: str, filename: str, data: bytes) -> FileEntry:
        """Serve new bytes under an existing filename."""
        with self._lock:
            for files in self._projects[prefix].values():
                if filename in files:
                    old = files[filename]
                    break
            else:
                raise KeyError(filename)
        return self.add_file(prefix, old.project, filename, data, old.requires_python)

    def entries(self, prefix: str, project: str) -> list[FileEntry] | None:
        with self._lock:
            files = self._projects.get(prefix, {}).get(project)
            return None if files is None else sorted(files.values(), key=lambda e: e.filename)

    def projects(self, prefix: str) -> list[str]:
        with self._lock:
            return sorted(self._projects.get(prefix, {}))

    def file_bytes(self, path: str) -> bytes | None:
        with self._lock:
            return self._files.get(path)

    def log(self, method: str, path: str, agent: str = "") -> None:
        with self._lock:
            self._log.append((method, path))
            self._agents.append(agent)

    def requests(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._log)

    def requests_with_agents(self) -> list[tuple[str, str, str]]:
        """(method, path, User-Agent): tells vllm-lock's own requests from uv's."""
        with self._lock:
            return [(m, p, a) for (m, p), a in zip(self._log, self._agents, strict=True)]

    def clear_requests(self) -> None:
        with self._lock:
            self._log.clear()
            self._agents.clear()


def _root_html(names: list[str]) -> str:
    links = "\n".join(f'    <a href="{n}/">{n}</a><br/>' for n in names)
    return f"<!DOCTYPE html>\n<html>\n  <body>\n{links}\n  </body>\n</html>\n"


def _project_html(project: str, entries: list[FileEntry], base: str, hashes: bool) -> str:
    rows = []
    for e in entries:
        href = base + e.path + (f"#sha256={e.sha256}" if hashes else "")
        attrs = f'href="{html.escape(href)}"'
        if e.requires_python:
            attrs += f' data-requires-python="{html.escape(e.requires_python)}"'
        rows.append(f"    <a {attrs}>{html.escape(e.filename)}</a><br/>")
    body = "\n".join(rows)
    return (
        f"<!DOCTYPE html>\n<html>\n  <head><title>Links for {project}</title></head>\n"
        f"  <body>\n    <h1>Links for {project}</h1>\n{body}\n  </body>\n</html>\n"
    )


def _project_json(project: str, entries: list[FileEntry], base: str, hashes: bool) -> str:
    files = []
    for e in entries:
        item: dict[str, object] = {
            "filename": e.filename,
            "url": base + e.path,
            "hashes": {"sha256": e.sha256} if hashes else {},
            "size": e.size,
        }
        if e.requires_python:
            item["requires-python"] = e.requires_python
        files.append(item)
    versions = sorted({e.filename.split("-")[1] for e in entries})
    doc = {"meta": {"api-version": "1.1"}, "name": project, "files": files, "versions": versions}
    return json.dumps(doc, sort_keys=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "vllm-lock-testworld/1.0"
    store: IndexStore
    scheme: str

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def _send(self, code: int, body: bytes, ctype: str, head: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _serve(self, head: bool) -> None:
        store = self.store
        store.log(self.command, self.path, self.headers.get("User-Agent") or "")
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        port = self.server.server_address[1]  # type: ignore[index]  # always (host, port) for AF_INET
        host = self.headers.get("Host") or f"127.0.0.1:{port}"
        base = f"{self.scheme}://{host}"
        data = store.file_bytes(path)
        if data is not None:
            # like S3 behind download.pytorch.org: the ETag is the MD5 of the bytes
            etag = '"' + hashlib.md5(data, usedforsecurity=False).hexdigest() + '"'
            self._send(200, data, "application/octet-stream", head, {"ETag": etag})
            return
        for prefix, cfg in store.indexes.items():
            if path == prefix or not path.startswith(prefix + "/"):
                if path == prefix:
                    self._send(301, b"", "text/plain", head, {"Location": prefix + "/"})
                    return
                continue
            rest = path[len(prefix) + 1:]
            want_json = cfg.json and PEP691 in (self.headers.get("Accept") or "")
            if rest == "":
                names = store.projects(prefix)
                if want_json:
                    doc = {"meta": {"api-version": "1.1"},
                           "projects": [{"name": n} for n in names]}
                    self._send(200, json.dumps(doc).encode(), PEP691, head)
                else:
                    self._send(200, _root_html(names).encode(), "text/html; charset=utf-8", head)
                return
            name = rest.rstrip("/")
            if "/" in name:
                break
            if not rest.endswith("/"):
                self._send(301, b"", "text/plain", head, {"Location": f"{prefix}/{name}/"})
                return
            project = normalize(name)
            entries = store.entries(prefix, project)
            if entries is None:
                break
            if want_json:
                body = _project_json(project, entries, base, cfg.hashes).encode()
                self._send(200, body, PEP691, head)
            else:
                body = _project_html(project, entries, base, cfg.hashes).encode()
                self._send(200, body, "text/html; charset=utf-8", head)
            return
        self._send(404, b"not found\n", "text/plain", head)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class _TLSServer(_QuietServer):
    """Handshake in the worker thread, so a failing client never blocks accept()."""

    ssl_context: ssl.SSLContext

    def get_request(self):  # type: ignore[no-untyped-def]
        sock, addr = self.socket.accept()
        return self.ssl_context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), addr

    def finish_request(self, request, client_address):  # type: ignore[no-untyped-def]
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


@dataclass(frozen=True)
class Listener:
    """A running server and its thread."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    scheme: str

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_listener(store: IndexStore, cert: Path | None = None,
                   key: Path | None = None) -> Listener:
    """Start one listener on 127.0.0.1 (ephemeral port); TLS when cert and key are given."""
    scheme = "https" if cert else "http"
    handler = type("Handler", (_Handler,), {"store": store, "scheme": scheme})
    if cert:
        server: ThreadingHTTPServer = _TLSServer(("127.0.0.1", 0), handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        server.ssl_context = ctx  # type: ignore[attr-defined]
    else:
        server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name=f"testworld-{scheme}",
                              kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return Listener(server, thread, scheme)
