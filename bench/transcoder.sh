#!/usr/bin/env bash
# Benchmark: `transcoder stitch` against ffmpeg's copy remux and a raw `cat` of the same
# segments, on 720p30 recordings of 2 s segments (H.264 with B-frames + AAC), in both input
# containers: MPEG-TS (`seg*.ts`, ffmpeg reads them through the concat protocol) and CMAF
# (`init.mp4` + `seg*.m4s`, ffmpeg reads the HLS playlist).
#
# Media is generated once and cached under ${XDG_CACHE_HOME:-$HOME/.cache}/edgevideo/bench-media
# (the 10-minute recording takes about 4 minutes to encode; its CMAF twin is a copy remux of
# the same streams, seconds). Every timing is the median of BENCH_RUNS runs from a warm page
# cache; peak RSS comes from /usr/bin/time.
#
# Environment:
#   BENCH_LONG_MINUTES   length of the long recording (default 10; 1 for a quick run)
#   BENCH_SHORT_MINUTES  length of the short recording (default 1)
#   BENCH_RUNS           runs per measurement (default 5)
#   TRANSCODER_BIN       use this binary instead of building the release one
#   BENCH_OUT_DIR        where outputs are written (default: a temporary directory)
set -euo pipefail

long_minutes=${BENCH_LONG_MINUTES:-10}
short_minutes=${BENCH_SHORT_MINUTES:-1}
runs=${BENCH_RUNS:-5}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/edgevideo/bench-media
repo=$(cd "$(dirname "$0")/.." && pwd)

for tool in ffmpeg ffprobe; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install ffmpeg)" >&2; exit 1; }
done
if [[ ! -x /usr/bin/time ]]; then
  echo "bench: /usr/bin/time is required (apt-get install time)" >&2
  exit 1
fi

if [[ -n ${TRANSCODER_BIN:-} ]]; then
  bin=$TRANSCODER_BIN
else
  echo "bench: building the release binary" >&2
  (cd "$repo" && cargo build --release --quiet -p edgevideo-transcoder)
  bin=${CARGO_TARGET_DIR:-$repo/target}/release/transcoder
fi

# generate MINUTES -> prints the segment directory
generate() {
  local minutes=$1 dir="$cache/720p30-${1}min"
  if [[ ! -f $dir/.complete ]]; then
    echo "bench: encoding a ${minutes}-minute 720p30 recording into $dir (once)" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    ffmpeg -v error -nostdin \
      -f lavfi -i "testsrc2=size=1280x720:rate=30" \
      -f lavfi -i "sine=frequency=440:sample_rate=48000" \
      -t $((minutes * 60)) \
      -c:v libx264 -preset fast -bf 2 -g 60 -sc_threshold 0 -pix_fmt yuv420p \
      -c:a aac -b:a 128k -ar 48000 \
      -f hls -hls_time 2 -hls_list_size 0 -hls_segment_filename "$dir/seg%03d.ts" \
      "$dir/index.m3u8"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

# generate_cmaf MINUTES -> prints the CMAF directory (the same streams as the TS recording)
generate_cmaf() {
  local minutes=$1 ts_dir dir="$cache/720p30-${1}min-cmaf"
  ts_dir=$(generate "$minutes")
  if [[ ! -f $dir/.complete ]]; then
    echo "bench: remuxing the ${minutes}-minute recording to CMAF into $dir (once)" >&2
    rm -rf "$dir" && mkdir -p "$dir"
    ffmpeg -v error -nostdin -i "$ts_dir/index.m3u8" -c copy -bsf:a aac_adtstoasc \
      -f hls -hls_time 2 -hls_list_size 0 -hls_playlist_type vod \
      -hls_segment_type fmp4 -hls_fmp4_init_filename init.mp4 \
      -hls_segment_filename "$dir/seg%03d.m4s" "$dir/index.m3u8"
    touch "$dir/.complete"
  fi
  echo "$dir"
}

out_dir=${BENCH_OUT_DIR:-$(mktemp -d)}
mkdir -p "$out_dir"
cleanup() { [[ -n ${BENCH_OUT_DIR:-} ]] || rm -rf "$out_dir"; }
trap cleanup EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# measure NAME OUTPUT CMD... -> sets last_time (median seconds) and last_rss (max KiB)
measure() {
  local name=$1 output=$2; shift 2
  local times=() rss=0 i start end kib
  for ((i = 0; i < runs; i++)); do
    rm -f "$output"
    start=$EPOCHREALTIME
    /usr/bin/time -f %M -o "$out_dir/rss" "$@" >/dev/null
    end=$EPOCHREALTIME
    times+=("$(awk -v s="$start" -v e="$end" 'BEGIN {printf "%.4f", e - s}')")
    kib=$(tail -n 1 "$out_dir/rss")
    ((kib > rss)) && rss=$kib
  done
  last_time=$(printf '%s\n' "${times[@]}" | median)
  last_rss=$rss
  echo "bench: $name: median ${last_time}s of ${times[*]}, peak RSS ${rss} KiB" >&2
}

declare -A time_of rss_of size_of
for minutes in "$short_minutes" "$long_minutes"; do
  for format in ts cmaf; do
    key=$format,$minutes
    if [[ $format == ts ]]; then
      dir=$(generate "$minutes")
      mapfile -t segs < <(ls "$dir"/seg*.ts | sort -V)
      concat="concat:$(IFS='|'; echo "${segs[*]}")"
      ffmpeg_in=(-i "$concat")
      bsf=(-bsf:a aac_adtstoasc)
    else
      dir=$(generate_cmaf "$minutes")
      mapfile -t segs < <(echo "$dir/init.mp4"; ls "$dir"/seg*.m4s | sort -V)
      ffmpeg_in=(-i "$dir/index.m3u8")
      bsf=()
    fi
    size_of[$key]=$(cat "${segs[@]}" | wc -c)
    cat "${segs[@]}" >/dev/null # warm the page cache
    measure "transcoder $format ${minutes}min" "$out_dir/ours.mp4" "$bin" stitch --from "$dir" --to "$out_dir/ours.mp4"
    time_of[ours,$key]=$last_time; rss_of[ours,$key]=$last_rss
    measure "ffmpeg $format ${minutes}min" "$out_dir/ffmpeg.mp4" ffmpeg -v error -nostdin -y "${ffmpeg_in[@]}" \
      -c copy "${bsf[@]}" -movflags +faststart "$out_dir/ffmpeg.mp4"
    time_of[ffmpeg,$key]=$last_time; rss_of[ffmpeg,$key]=$last_rss
    measure "cat $format ${minutes}min" "$out_dir/raw" sh -c 'out=$1; shift; cat "$@" > "$out"' sh "$out_dir/raw" "${segs[@]}"
    time_of[cat,$key]=$last_time; rss_of[cat,$key]=$last_rss
    # The outputs must agree on what they contain.
    probe() { ffprobe -v error -show_entries format=duration -of csv=p=0 "$1"; }
    echo "bench: $format ${minutes}min durations: ours $(probe "$out_dir/ours.mp4") s, ffmpeg $(probe "$out_dir/ffmpeg.mp4") s" >&2
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
for format in ts cmaf; do
  s=$format,$short_minutes l=$format,$long_minutes
  label_format=MPEG-TS; [[ $format == cmaf ]] && label_format=CMAF
  echo
  printf '%-24s %14s %14s\n' "$label_format input" "${short_minutes}-min" "${long_minutes}-min"
  printf '%-24s %14s %14s\n' "input size (MB)" \
    "$(awk -v b="${size_of[$s]}" 'BEGIN {printf "%.1f", b / 1e6}')" \
    "$(awk -v b="${size_of[$l]}" 'BEGIN {printf "%.1f", b / 1e6}')"
  for tool in ours ffmpeg cat; do
    label=$tool; [[ $tool == ours ]] && label="transcoder stitch"
    [[ $tool == ffmpeg ]] && label="ffmpeg -c copy"
    [[ $tool == cat ]] && label="cat (raw copy)"
    printf '%-24s %13ss %13ss\n' "$label time" "${time_of[$tool,$s]}" "${time_of[$tool,$l]}"
  done
  for tool in ours ffmpeg cat; do
    printf '%-24s %11s MiB %10s MiB\n' "$tool peak RSS" "$(mib "${rss_of[$tool,$s]}")" "$(mib "${rss_of[$tool,$l]}")"
  done
  printf '%-24s %14s %14s   (target <= 0.70)\n' "ours / ffmpeg" \
    "$(ratio "${time_of[ours,$s]}" "${time_of[ffmpeg,$s]}")" \
    "$(ratio "${time_of[ours,$l]}" "${time_of[ffmpeg,$l]}")"
  printf '%-24s %14s %14s   (target <= 1.20)\n' "ours / cat" \
    "$(ratio "${time_of[ours,$s]}" "${time_of[cat,$s]}")" \
    "$(ratio "${time_of[ours,$l]}" "${time_of[cat,$l]}")"
  printf '%-24s %14s %14s   (target <= 16 MiB, flat)\n' "ours peak RSS (MiB)" \
    "$(mib "${rss_of[ours,$s]}")" "$(mib "${rss_of[ours,$l]}")"
done
