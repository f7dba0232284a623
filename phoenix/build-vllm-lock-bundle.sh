#!/bin/bash
# Build an offline bundle of vllm-lock: one tar holding the vllm-lock wheel, a wheel of every
# dependency (uv's platform wheel included) and a SHA256SUMS file. The Phoenix feature script
# pushes it into a container and installs it with `pip install --no-index --find-links`, so the
# container needs no package index to get vllm-lock itself.
#
#   build-vllm-lock-bundle.sh [-o OUT.tar] [--source DIR | --spec 'vllm-lock==X.Y.Z']
#                             [--python-version 3.12]... [--arch x86_64]
#
# Runs `python3 -m pip` with the caller's pip configuration (set PIP_INDEX_URL or PIP_CONFIG_FILE
# to choose the index). Default source: the checkout this script lives in.
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
out="vllm-lock-bundle.tar"
source_dir="$here/.."
spec=""
arch="x86_64"
pyversions=()
python="${PYTHON:-python3}"

while [ "$#" -gt 0 ]; do
    case "$1" in
    -o|--output) out="$2"; shift 2 ;;
    --source) source_dir="$2"; spec=""; shift 2 ;;
    --spec) spec="$2"; shift 2 ;;
    --python-version) pyversions+=("$2"); shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build-vllm-lock-bundle: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
[ "${#pyversions[@]}" -gt 0 ] || pyversions=(3.11 3.12)
# Containers are glibc >= 2.28 (Ubuntu 24.04, Debian 12); pip does not expand manylinux tags itself.
platforms=()
for minor in 28 27 26 25 24 23 22 21 20 19 18 17; do platforms+=(--platform "manylinux_2_${minor}_${arch}"); done
platforms+=(--platform "manylinux2014_${arch}")

work="$(mktemp -d)"
trap 'rm -rf -- "$work"' EXIT
wheels="$work/wheels"
mkdir -p "$wheels"

if [ -n "$spec" ]; then
    "$python" -m pip download --no-deps --only-binary=:all: -d "$wheels" "$spec"
else
    "$python" -m pip wheel --no-deps -w "$wheels" "$source_dir"
fi
main_wheel="$(ls "$wheels"/vllm_lock-*.whl)"

for v in "${pyversions[@]}"; do
    "$python" -m pip download --only-binary=:all: --implementation cp --python-version "$v" \
        "${platforms[@]}" -d "$wheels" "$main_wheel"
done

(cd "$wheels" && sha256sum -- *.whl >SHA256SUMS)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$wheels" -cf "$work/bundle.tar" .
mv -f -- "$work/bundle.tar" "$out"
echo "$out: $(ls "$wheels"/*.whl | wc -l) wheels ($(basename "$main_wheel"))"
