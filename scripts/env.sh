# Sourced by the build, run and test scripts: the paths of the set-up's tools, and the
# variables that keep wrangler and workerd from contacting anything but loopback.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${EDGEVIDEO_CACHE:-$HOME/.cache/edgevideo}
export PATH="$ROOT/node_modules/.bin:$CACHE/tools/bin:$CACHE/venv/bin:$PATH"
export WASM_BINDGEN_BIN="$CACHE/tools/bin/wasm-bindgen"
export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
export ESBUILD_BIN="$ROOT/node_modules/@esbuild/linux-x64/bin/esbuild"
# wrangler: no telemetry, no error reports, no update check banner, no request-metadata fetch.
export WRANGLER_SEND_METRICS=false WRANGLER_SEND_ERROR_REPORTS=false DO_NOT_TRACK=1
export WRANGLER_HIDE_BANNER=true CLOUDFLARE_CF_FETCH_ENABLED=false
export CI=${CI:-true}
# The Spin test host (wasmtime) is a large native build: keep its artifacts in the cache so
# fresh clones on the same machine do not rebuild it.
export SPIN_HOST_TARGET_DIR=${SPIN_HOST_TARGET_DIR:-$CACHE/spin-host-target}
# The fuzz targets' instrumented build (the transcoder's whole dependency tree) is cached too.
export FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$CACHE/fuzz-target}
