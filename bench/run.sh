#!/usr/bin/env bash
# Runs every benchmark and prints one table (see bench/bench.py for the sections).
# Sets up and builds first; installs wrk and GNU time when missing. Arguments go to bench.py,
# e.g. `bash bench/run.sh --only routes ingest`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$ROOT/scripts/setup.sh"
command -v wrk >/dev/null && [ -x /usr/bin/time ] || {
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk time >/dev/null; }
source "$ROOT/scripts/env.sh"
bash "$ROOT/scripts/build-worker.sh" >/dev/null
cargo build --quiet -p edgevideo-transcoder --bin transcoder
cargo build --quiet --profile gateway -p edgevideo-gateway --bin gateway
cd "$ROOT"
exec "$CACHE/venv/bin/python" bench/bench.py "$@"
