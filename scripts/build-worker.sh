#!/usr/bin/env bash
# Builds the Cloudflare worker (workers/cloudflare/build/worker/shim.mjs + index_bg.wasm) with
# worker-build, using only local tools (wasm-bindgen, wasm-opt, esbuild from the set-up).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
source "$CACHE/wasm-env.sh"
cd "$ROOT/workers/cloudflare"
# worker-build's own exit status is checked: a failed compile must not leave an old build.
log=$(mktemp)
if ! worker-build --release >"$log" 2>&1; then
  cat "$log"; rm -f "$log"
  echo "[build] worker-build failed" >&2
  exit 1
fi
grep -vE '^\s*$' "$log" | sed 's/^/[build] /'; rm -f "$log"
wasm=$ROOT/workers/cloudflare/build/index_bg.wasm
printf '[build] worker: %s bytes raw, %s bytes gzip\n' "$(stat -c %s "$wasm")" "$(gzip -9c "$wasm" | wc -c)"
# The web pages' player, hls.js, and the broadcast page's encoder and HLS writer, Mediabunny
# (its ESM browser bundle), from node_modules (package-lock.json), served by us.
mkdir -p "$ROOT/web/vendor"
cp "$ROOT/node_modules/hls.js/dist/hls.min.js" "$ROOT/web/vendor/hls.min.js"
cp "$ROOT/node_modules/mediabunny/dist/bundles/mediabunny.min.mjs" "$ROOT/web/vendor/mediabunny.min.js"
version() { node -p 'require(process.argv[1]).version' "$ROOT/node_modules/$1/package.json"; }
echo "[build] web assets: web/ (hls.js $(version hls.js), mediabunny $(version mediabunny))"
