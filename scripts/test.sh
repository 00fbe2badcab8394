#!/usr/bin/env bash
# Sets up (if needed) and runs every test: formatting and lints, the Rust unit and
# integration tests, the worker build, and the end-to-end tests in the real Workers runtime,
# then the Spin component build and the same end-to-end tests in the Spin test host.
# The build and the tests run in a network namespace with only loopback when the machine
# allows it, which proves that nothing is downloaded at build or run time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "${EDGEVIDEO_OFFLINE:-}" = 1 ] || bash "$ROOT/scripts/setup.sh"

if [ "${EDGEVIDEO_OFFLINE:-}" != 1 ] && [ "${EDGEVIDEO_NO_NETNS:-}" != 1 ] \
   && unshare -n true 2>/dev/null; then
  echo "[test] running offline: network namespace with loopback only"
  exec unshare -n env EDGEVIDEO_OFFLINE=1 bash -c 'ip link set lo up && exec bash "$0"' "$0"
fi

source "$ROOT/scripts/env.sh"
cd "$ROOT"
step() { printf '\n\033[1m[test] %s\033[0m\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (native, all targets)"
cargo clippy --offline --workspace --all-targets --quiet -- -D warnings
step "cargo test"
cargo test --offline --workspace --quiet
# A short fuzz smoke run, only where cargo-fuzz is installed (`make fuzz` or EDGEVIDEO_FUZZ=1
# once); the longer runs are `make fuzz FUZZ_SECONDS=600` (see fuzz/README.md).
if [ -x "$CACHE/tools/bin/cargo-fuzz" ]; then
  step "fuzz smoke run (${FUZZ_SECONDS:-20} s per target)"
  FUZZ_SECONDS=${FUZZ_SECONDS:-20} bash scripts/fuzz.sh
else
  step "fuzz smoke run skipped: cargo-fuzz is not installed (EDGEVIDEO_FUZZ=1 make setup)"
fi
step "build the worker and the transcoder"
bash scripts/build-worker.sh
cargo build --offline --quiet -p edgevideo-transcoder --bin transcoder
step "build the Spin component and the Spin test host"
make --no-print-directory spin-component spin-host
step "Spin test host: cargo fmt --check, cargo clippy"
make --no-print-directory spin-check
step "end-to-end tests in wrangler dev (workerd)"
"$CACHE/venv/bin/pytest" -q tests/e2e --host cloudflare "$@"
step "browser tests: the web pages in Chromium (playwright-core) against wrangler dev"
node --test --test-reporter=spec tests/browser/*.test.mjs
step "the same end-to-end tests on the Spin component (Spin test host: wasmtime, not Spin)"
"$CACHE/venv/bin/pytest" -q tests/e2e --host spin "$@"
