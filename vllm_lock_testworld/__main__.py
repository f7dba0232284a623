"""python -m vllm_lock_testworld serve ROOT: build the world, print URLs as JSON, serve."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

from .world import TestWorld


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vllm_lock_testworld")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="create the world under ROOT and serve until killed")
    serve.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    world = TestWorld.create(args.root)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(json.dumps(world.urls(), sort_keys=True), flush=True)
    try:
        stop.wait()
    finally:
        world.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
