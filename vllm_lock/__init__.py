"""vllm-lock: reproducible, hashed locks for building vLLM from source."""

__version__ = "0.1.0"
