"""The `vllm` command."""
import argparse
import sys


def main(argv=None):
    from importlib.metadata import version

    parser = argparse.ArgumentParser(prog="vllm")
    parser.add_argument("--version", action="store_true", help="print the version")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="start the OpenAI-compatible server")
    args = parser.parse_args(argv)
    _infer_device()
    if args.version:
        print(version("vllm"))
        return 0
    if args.command == "serve":
        from vllm.entrypoints.openai.api_server import main as serve

        return serve([])
    parser.print_help()
    return 0


def _infer_device():
    """Like vLLM's CLI, which resolves the platform before parsing: an `empty` build has none."""
    import json
    import os

    import vllm

    with open(os.path.join(os.path.dirname(vllm.__file__), "_build_info.json")) as f:
        if json.load(f).get("target_device") == "empty":
            raise RuntimeError("Failed to infer device type")


if __name__ == "__main__":
    sys.exit(main())
