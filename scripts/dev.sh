#!/usr/bin/env bash
# Starts edgevideo locally: the transcoder's job server (`transcoder serve`) as a plain
# process, and the worker in the real Workers runtime (wrangler dev / workerd) on 127.0.0.1
# with KV, D1, R2, Durable Objects and Queues persisted under .wrangler/state.
# PORT (default 8787), TRANSCODER_PORT (default 8790), STATE (default .wrangler/state) and
# TRANSCODER_BIN (default the release build) can be overridden. Ctrl-C stops both.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
PORT=${PORT:-8787}
TRANSCODER_PORT=${TRANSCODER_PORT:-8790}
STATE=${STATE:-$ROOT/.wrangler/state}
mkdir -p "$STATE/transcoder/store"
wrangler d1 migrations apply DB --local --persist-to "$STATE" >/dev/null

secret=$(grep '^TRANSCODER_SECRET=' config/dev.env | cut -d= -f2-)
TRANSCODER_SECRET=$secret TRANSCODER_STATE_DIR="$STATE/transcoder/jobs" \
  TRANSCODER_STORE="$STATE/transcoder/store" \
  "${TRANSCODER_BIN:-$ROOT/target/release/transcoder}" serve --listen "127.0.0.1:$TRANSCODER_PORT" &
transcoder_pid=$!
trap 'kill $transcoder_pid 2>/dev/null || true' EXIT

# The URLs the worker hands out must name the port it runs on.
overrides="$STATE/dev-overrides.env"
printf 'PUBLIC_URL=http://127.0.0.1:%s\nTRANSCODER_URL=http://127.0.0.1:%s\n' "$PORT" "$TRANSCODER_PORT" > "$overrides"

echo "edgevideo: http://127.0.0.1:$PORT  (health: http://127.0.0.1:$PORT/api/health; transcoder: 127.0.0.1:$TRANSCODER_PORT; state in $STATE)"
wrangler dev --ip 127.0.0.1 --port "$PORT" --inspector-ip 127.0.0.1 --inspector-port 0 \
  --show-interactive-dev-session=false --persist-to "$STATE" \
  --env-file config/dev.env --env-file "$overrides"
