#!/usr/bin/env bash
# Starts edgevideo locally: the transcoder's job server (`transcoder serve`) and the RTMP
# ingest gateway as plain processes, and the worker in the real Workers runtime (wrangler
# dev / workerd) on 127.0.0.1 with KV, D1, R2, Durable Objects and Queues persisted under
# .wrangler/state. PORT (default 8787), TRANSCODER_PORT (default 8790), RTMP_PORT (default
# 1935), SMTP_PORT (default 8025: aiosmtpd, which prints the verification mail), STATE
# (default .wrangler/state), TRANSCODER_BIN and GATEWAY_BIN (default the
# builds of `make build`) can be overridden. Ctrl-C stops them all.
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
RTMP_PORT=${RTMP_PORT:-1935}
"${GATEWAY_BIN:-$ROOT/target/gateway/gateway}" --edge "http://127.0.0.1:$PORT" \
  --listen "127.0.0.1:$RTMP_PORT" --http-listen "127.0.0.1:$((RTMP_PORT + 8000))" \
  --srt-listen "127.0.0.1:${SRT_PORT:-8890}" &
gateway_pid=$!
# Verification mail: a local SMTP server that prints every message (open the link from here).
SMTP_PORT=${SMTP_PORT:-8025}
"$CACHE/venv/bin/python" -m aiosmtpd -n -l "127.0.0.1:$SMTP_PORT" &
smtp_pid=$!
trap 'kill $transcoder_pid $gateway_pid $smtp_pid 2>/dev/null || true' EXIT

# The URLs the worker hands out must name the ports it and the gateway run on.
overrides="$STATE/dev-overrides.env"
printf 'PUBLIC_URL=http://127.0.0.1:%s\nTRANSCODER_URL=http://127.0.0.1:%s\nGATEWAY_RTMP_URL=rtmp://127.0.0.1:%s/live\nSMTP_URL=smtp://127.0.0.1:%s\n' \
  "$PORT" "$TRANSCODER_PORT" "$RTMP_PORT" "$SMTP_PORT" > "$overrides"

echo "edgevideo: http://127.0.0.1:$PORT  (health: http://127.0.0.1:$PORT/api/health; transcoder: 127.0.0.1:$TRANSCODER_PORT; RTMP: rtmp://127.0.0.1:$RTMP_PORT/live; state in $STATE)"
wrangler dev --ip 127.0.0.1 --port "$PORT" --inspector-ip 127.0.0.1 --inspector-port 0 \
  --show-interactive-dev-session=false --persist-to "$STATE" \
  --env-file config/dev.env --env-file "$overrides"
