#!/usr/bin/env bash
# The whole test suite on a fresh machine: virtualenv + dependencies, debootstrap for the Phoenix
# container test (apt, when root), then lint, types and pytest. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Phoenix container test must run, not skip; VLLM_LOCK_REQUIRE_PHOENIX=0 lets it skip where
# debootstrap cannot run (not root).
export VLLM_LOCK_REQUIRE_PHOENIX="${VLLM_LOCK_REQUIRE_PHOENIX:-1}"
# The CUDA build tests (CMake + nvcc, cubins listed by cuobjdump; no GPU needed) must run too: they
# need nvcc >= 12.8 ($CUDA_HOME or /usr/local/cuda) and cmake; VLLM_LOCK_REQUIRE_CUDA=0 lets them skip.
export VLLM_LOCK_REQUIRE_CUDA="${VLLM_LOCK_REQUIRE_CUDA:-1}"
# The Rust frontend tests (setuptools-rust, cargo offline from vendored crates) need rustc and cargo
# >= 1.95 (rustup's, in ~/.cargo/bin); VLLM_LOCK_REQUIRE_RUST=0 lets them skip.
export VLLM_LOCK_REQUIRE_RUST="${VLLM_LOCK_REQUIRE_RUST:-1}"
[ -d "$HOME/.cargo/bin" ] && export PATH="$HOME/.cargo/bin:$PATH"

# tool:Debian package, for what the tests run for real (the Phoenix rootfs, its JSON config, lock
# signatures, the CUDA build through CMake)
missing=""
for pair in debootstrap:debootstrap jq:jq ssh-keygen:openssh-client cmake:cmake; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "== installing$missing (apt)"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
echo "== installing vllm-lock and test tools into .venv"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== ruff"
.venv/bin/ruff check vllm_lock vllm_lock_testworld tests bench
echo "== mypy"
# the files and the strictness are in pyproject.toml: the product, the test world, tests/ and bench/
.venv/bin/mypy
echo "== pytest"
exec .venv/bin/python -m pytest "$@"
