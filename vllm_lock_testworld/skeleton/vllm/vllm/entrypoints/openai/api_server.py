"""OpenAI-compatible API server (stub of the test world)."""
import argparse
import sys


def make_parser():
    parser = argparse.ArgumentParser(
        prog="vllm.entrypoints.openai.api_server",
        description="vLLM OpenAI-compatible API server (test world stub)",
    )
    parser.add_argument("--model", default="facebook/opt-125m")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    return parser


def main(argv=None):
    args = make_parser().parse_args(argv)
    print(f"api_server stub: model={args.model} host={args.host} port={args.port}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
