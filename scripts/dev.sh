#!/usr/bin/env bash
# Starts edgevideo locally in the real Workers runtime (wrangler dev / workerd) on 127.0.0.1
# with KV, D1, R2, Durable Objects and Queues persisted under .wrangler/state.
# PORT (default 8787) and STATE (default .wrangler/state) can be overridden.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
PORT=${PORT:-8787}
STATE=${STATE:-$ROOT/.wrangler/state}
wrangler d1 migrations apply DB --local --persist-to "$STATE" >/dev/null
echo "edgevideo: http://127.0.0.1:$PORT  (health: http://127.0.0.1:$PORT/api/health; state in $STATE)"
exec wrangler dev --ip 127.0.0.1 --port "$PORT" --inspector-ip 127.0.0.1 --inspector-port 0 \
  --show-interactive-dev-session=false --persist-to "$STATE" --env-file config/dev.env
