#!/usr/bin/env bash
# Long fuzz of the lock reader (issue 12): N generated mutations of a valid lock, content hash
# recomputed; each must read cleanly (keeping the reader's promises) or be refused with one
# LockInvalidError line. Usage: scripts/fuzz-locks.sh [N]   (default 20000; the test suite runs 300)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
export VLLM_LOCK_FUZZ_EXAMPLES="${1:-20000}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
start=$(date +%s)
status=0
"$PYTHON" -m pytest tests/security/test_lock_fuzz.py -q -p no:cacheprovider --hypothesis-show-statistics \
    >"$log" 2>&1 || status=$?
if [ "$status" -ne 0 ]; then
    cat "$log"
else
    grep -E "passing|passed" "$log"
fi
echo "fuzz-locks: ${VLLM_LOCK_FUZZ_EXAMPLES} examples in $(( $(date +%s) - start )) s, exit ${status}"
exit "$status"
