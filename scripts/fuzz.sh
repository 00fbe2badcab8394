#!/usr/bin/env bash
# Fuzzing with cargo fuzz (libFuzzer): installs cargo-fuzz into the set-up's cache if needed
# (pinned, checked by version), then builds and runs every target in fuzz/ for a while.
#
#   bash scripts/fuzz.sh                 # every target, FUZZ_SECONDS (default 30) each
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh ts_demux
#   bash scripts/fuzz.sh --install-only  # just the tool (and the crates, for offline runs)
#
# The machine's compiler is stable; cargo fuzz needs nightly flags (-Zsanitizer, ...), which
# RUSTC_BOOTSTRAP=1 unlocks. Crashes are kept in fuzz/artifacts/<target>/, the corpus in
# fuzz/corpus/<target>/ (both ignored by git); seeds come from fuzz/seeds/<target>/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$ROOT/scripts/env.sh"
CARGO_FUZZ_VERSION=0.13.2
TOOLS=$CACHE/tools

if [ "$("$TOOLS/bin/cargo-fuzz" --version 2>/dev/null | awk '{print $NF}')" != "$CARGO_FUZZ_VERSION" ]; then
  echo "[fuzz] cargo install cargo-fuzz $CARGO_FUZZ_VERSION (about a minute or two, once)"
  [ "${EDGEVIDEO_OFFLINE:-}" != 1 ] || { echo "[fuzz] cargo-fuzz is not installed and we are offline" >&2; exit 1; }
  cargo install cargo-fuzz --version "=$CARGO_FUZZ_VERSION" --locked --root "$TOOLS" --quiet
fi
if [ "${EDGEVIDEO_OFFLINE:-}" != 1 ]; then
  cargo fetch --quiet --locked --manifest-path "$ROOT/fuzz/Cargo.toml"
fi
[ "${1:-}" != "--install-only" ] || exit 0

export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target/fuzz}}
SECONDS_EACH=${FUZZ_SECONDS:-30}
SANITIZER=${FUZZ_SANITIZER:-address}
cd "$ROOT/fuzz"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
[ "${EDGEVIDEO_OFFLINE:-}" != 1 ] || export CARGO_NET_OFFLINE=true
echo "[fuzz] building ${targets[*]}"
for target in "${targets[@]}"; do
  cargo fuzz build --sanitizer "$SANITIZER" "$target"
done
# Transport stream seeds are made by ffmpeg (H.264 with B-frames + AAC, like a broadcast)
# rather than kept in the repository.
if command -v ffmpeg >/dev/null && [ ! -s corpus/ts_demux/seed-ffmpeg.ts ]; then
  mkdir -p corpus/ts_demux corpus/ts_packets
  ffmpeg -v error -y -f lavfi -i testsrc2=size=160x90:rate=30 -f lavfi -i sine=sample_rate=48000 \
    -t 1 -c:v libx264 -preset ultrafast -bf 2 -g 15 -c:a aac -f mpegts corpus/ts_demux/seed-ffmpeg.ts
  cp corpus/ts_demux/seed-ffmpeg.ts corpus/ts_packets/seed-ffmpeg.ts
fi
for target in "${targets[@]}"; do
  corpus="corpus/$target"
  mkdir -p "$corpus" "artifacts/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  echo "[fuzz] running $target for ${SECONDS_EACH} s"
  # The run's own status decides (grep finding no line is fine): read PIPESTATUS right
  # after the pipeline, with errexit and pipefail off for it.
  set +eo pipefail
  cargo fuzz run --sanitizer "$SANITIZER" "$target" "$corpus" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 \
    | tee "$CARGO_TARGET_DIR/fuzz-$target.log" | grep -E '^(#[0-9]+.*DONE|stat::number_of_executed_units|stat::peak_rss|==[0-9]+==|SUMMARY|thread .* panicked|Test unit written)'
  run_status=${PIPESTATUS[0]}
  set -eo pipefail
  if [ "$run_status" -ne 0 ]; then
    echo "[fuzz] $target FAILED: see $CARGO_TARGET_DIR/fuzz-$target.log and fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "[fuzz] all targets ran clean"
