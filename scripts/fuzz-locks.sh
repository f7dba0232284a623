#!/usr/bin/env bash
# Long fuzz of the lock reader (issue 12): N generated mutations of a valid lock, content hash
# recomputed; each must read cleanly or be refused with one LockInvalidError line.
# Usage: scripts/fuzz-locks.sh [N]   (default 20000; the normal test suite runs 300)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export VLLM_LOCK_FUZZ_EXAMPLES="${1:-20000}"
start=$(date +%s)
"$PYTHON" -m pytest tests/security/test_lock_fuzz.py -q -p no:cacheprovider --hypothesis-show-statistics 2>&1 | grep -E "passing|passed|failed|Error" || true
echo "fuzz-locks: ${VLLM_LOCK_FUZZ_EXAMPLES} examples in $(( $(date +%s) - start )) s"
