#!/usr/bin/env bash
# Sets up (if needed) and runs every test: formatting and lints, the Rust unit and
# integration tests, the worker, transcoder and Spin builds, then at the same time the
# end-to-end tests in the real Workers runtime and, beside them, the same end-to-end tests in
# the Spin test host followed by the browser tests. The README's commands run through `make` on the way.
# The build and the tests run in a network namespace with only loopback when the machine
# allows it, which proves that nothing is downloaded at build or run time.
# Arguments go to both pytest runs. E2E_PROCESSES (default 2) sets how many pytest-xdist
# processes each end-to-end pass uses; E2E_PROCESSES=0 runs them in one process.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ "${EDGEVIDEO_OFFLINE:-}" = 1 ] || bash "$ROOT/scripts/setup.sh"

if [ "${EDGEVIDEO_OFFLINE:-}" != 1 ] && [ "${EDGEVIDEO_NO_NETNS:-}" != 1 ] \
   && unshare -n true 2>/dev/null; then
  echo "[test] running offline: network namespace with loopback only"
  exec unshare -n env EDGEVIDEO_OFFLINE=1 bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi
# The set-up is done (above, or by the caller): make's `setup` prerequisite skips it.
export EDGEVIDEO_OFFLINE=1
# A test whose tool is missing (moto_server, Python's jsonschema) fails instead of skipping.
export EDGEVIDEO_REQUIRE_ALL=1

source "$ROOT/scripts/env.sh"
cd "$ROOT"
step() { printf '\n\033[1m[test] %s\033[0m\n' "$*"; }
make() { command make --no-print-directory "$@"; }

# Runs the named functions at the same time, each into its own log, prints each log when it
# ends (with its wall time), and fails if any of them failed.
together() {
  local logs name pid status failed=0 start=$SECONDS
  logs=$(mktemp -d)
  local -A jobs=()
  for name in "$@"; do
    "$name" >"$logs/$name.log" 2>&1 &
    jobs[$!]=$name
  done
  step "started together: $* (each log follows when it ends)"
  while [ ${#jobs[@]} -gt 0 ]; do
    status=0
    wait -n -p pid "${!jobs[@]}" || status=$?
    name=${jobs[$pid]}
    unset "jobs[$pid]"
    if [ "$status" = 0 ]; then
      step "$name: passed after $((SECONDS - start)) s"
    else
      step "$name: FAILED (exit $status) after $((SECONDS - start)) s"
      failed=1
    fi
    cat "$logs/$name.log"
  done
  rm -rf "$logs"
  return $failed
}

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy (native, all targets)"
cargo clippy --offline --workspace --all-targets --quiet -- -D warnings
step "cargo test"
cargo test --offline --workspace --quiet
# A short fuzz smoke run, only where cargo-fuzz is installed (`make fuzz` or EDGEVIDEO_FUZZ=1
# once); the longer runs are `make fuzz FUZZ_SECONDS=600` (see fuzz/README.md).
if [ -x "$CACHE/tools/bin/cargo-fuzz" ]; then
  step "fuzz smoke run: make fuzz (${FUZZ_SECONDS:-20} s per target)"
  make fuzz FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
else
  step "fuzz smoke run skipped: cargo-fuzz is not installed (EDGEVIDEO_FUZZ=1 make setup)"
fi
step "build the worker (make build-worker), the transcoder and the RTMP gateway"
make build-worker
cargo build --offline --quiet -p edgevideo-transcoder --bin transcoder
cargo build --offline --quiet -p edgevideo-gateway --bin gateway
step "build the Spin component and the Spin test host (make build-spin)"
make build-spin
step "Spin test host: cargo fmt --check, cargo clippy, cargo test (make spin-check)"
make spin-check

# The three passes share nothing (each worker gets a free port and a fresh state directory,
# each pass its own temporary directory, kept after the run with the workers' logs), and
# spend most of their time waiting on real-time media and deadlines.
processes=${E2E_PROCESSES:-2}
mkdir -p target/e2e
xdist=()
[ "$processes" = 0 ] || xdist=(-n "$processes" --dist loadfile)
args=("$@")
e2e_cloudflare() {
  echo "end-to-end tests in wrangler dev (workerd), with make deploy-dry-run and make run"
  "$CACHE/venv/bin/pytest" -q -rs tests/e2e --host cloudflare --basetemp target/e2e/cloudflare "${xdist[@]}" "${args[@]}"
}
browser() {
  echo "browser tests (make test-browser): the web pages in Chromium against wrangler dev"
  make -o build-worker test-browser
}
e2e_spin() {
  echo "the same end-to-end tests on the Spin component (Spin test host: wasmtime, not Spin),"
  echo "with make run-spin"
  "$CACHE/venv/bin/pytest" -q -rs tests/e2e --host spin --basetemp target/e2e/spin "${xdist[@]}" "${args[@]}"
}
# The browser tests follow the Spin pass instead of running beside both passes: the broadcast
# page encodes a three-rendition ladder in Chromium and drops its parts when uploads lag more
# than a second, which two cores shared with two end-to-end passes made it do for a minute.
e2e_spin_then_browser() {
  local status=0
  e2e_spin || status=$?
  browser || status=$?
  return "$status"
}
together e2e_cloudflare e2e_spin_then_browser
