"""vLLM (vllm-lock test world)."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("vllm")
except PackageNotFoundError:  # not installed
    __version__ = "0.0.0+unknown"
