#!/usr/bin/env bash
# Builds the Cloudflare worker (workers/cloudflare/build/worker/shim.mjs + index_bg.wasm) with
# worker-build, using only local tools (wasm-bindgen, wasm-opt, esbuild from the set-up).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$CACHE/wasm-env.sh"
cd "$ROOT/workers/cloudflare"
worker-build --release 2>&1 | grep -vE '^\s*$' | sed 's/^/[build] /'
wasm=$ROOT/workers/cloudflare/build/index_bg.wasm
printf '[build] worker: %s bytes raw, %s bytes gzip\n' "$(stat -c %s "$wasm")" "$(gzip -9c "$wasm" | wc -c)"
