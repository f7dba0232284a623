"""`python -m vllm_lock.cli`: the console script's entry point."""

from vllm_lock.console import main

main()
