#!/usr/bin/env bash
# On a machine with NVIDIA GPUs: print exactly what vllm-lock's preflight reads from nvidia-smi and
# what it decides for a few locks, so the parsing is checked against a real driver.
#   bash scripts/device-gpu-check.sh            (from the repository root; needs python3 >= 3.11)
# Uses only vllm_lock/cuda.py (standard library), so nothing needs installing.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! command -v nvidia-smi >/dev/null 2>&1; then
    echo "no nvidia-smi on PATH"
    QUERY="" QUERY_RC=none BANNER="" BANNER_RC=none python3 -c \
        'from vllm_lock import cuda; print(cuda.gpu_notes(cuda.gpu_report(None, None), ("12.0",)))'
    exit 0
fi
echo "== nvidia-smi --query-gpu=compute_cap,name --format=csv,noheader"
query=$(nvidia-smi --query-gpu=compute_cap,name --format=csv,noheader 2>&1); query_rc=$?
printf '%s\n(exit %s)\n' "$query" "$query_rc"
echo "== nvidia-smi (banner)"
banner=$(nvidia-smi 2>&1); banner_rc=$?
printf '%s\n' "$banner" | head -n 4
printf '(exit %s)\n' "$banner_rc"

echo "== what vllm-lock reads and decides"
QUERY="$query" QUERY_RC="$query_rc" BANNER="$banner" BANNER_RC="$banner_rc" python3 - <<'EOF'
import os

from vllm_lock import cuda

report = cuda.gpu_report((int(os.environ["QUERY_RC"]), os.environ["QUERY"]),
                         (int(os.environ["BANNER_RC"]), os.environ["BANNER"]))
print("gpus:", [(g.name, f"{g.capability[0]}.{g.capability[1]}") for g in report.gpus])
print("driver:", report.driver_version, "supports CUDA", report.driver_cuda)
print("absent:", report.absent, "| error:", report.error)
for archs, variant, nvcc in [(("12.0",), "cu128", (12, 8)), (("9.0",), "cu128", (12, 8)),
                             (("9.0", "12.0"), "cu130", (13, 0)), (("8.0",), "cu128", (12, 8)),
                             (("9.0a",), "cu129", (13, 0))]:
    problems = cuda.gpu_problems(report, archs, variant, nvcc)
    notes = cuda.gpu_notes(report, archs)
    verdict = "REFUSED" if problems else "ok"
    print(f"lock archs {','.join(archs)} {variant} (nvcc {nvcc[0]}.{nvcc[1]}): {verdict}")
    for line in problems:
        print("   error:", line)
    for line in notes:
        print("   warning:", line)
EOF
