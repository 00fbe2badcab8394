"""The `llhls` section of bench/bench.py: low-latency HLS.

  blocking viewers   150 viewers, then N (--ll-viewers, 1000), each with its own playback token, doing
                     what hls.js does in low-latency mode against one channel in `wrangler
                     dev`: a blocking playlist reload for the next part (`_HLS_msn`,
                     `_HLS_part`), again and again, while a pusher stores a part every 334 ms
                     (six per 2 s segment, then the segment and its playlist, as the ingest
                     gateway does). Reported: the channel-object calls per part (the worker's
                     own counters), the time from a part stored to the last viewer answered
                     (median, p95), answers per second, errors, and answers that came without
                     their part (the hold ran out). `wrangler dev` on this machine answers
                     about 700 playlist requests a second; 1,000 viewers ask about 3,000.
  hinted parts       100 viewers asking for the next part before it exists (what a player that
                     loads preload hints does), while the pusher sends it as the ingest gateway
                     does: three chunks of ~111 ms of media, the last one committing the part,
                     six parts.
                     Reported: when the first bytes reached the viewers after the first chunk
                     was sent, how long before the part was complete they had them, and the
                     channel-object calls per part.
  glass to glass     `node bench/latency.mjs 60 --gateway`: an encoder publishing RTMP to the
                     ingest gateway (its frames paint the clock), two viewers in Chromium,
                     hls.js in low-latency mode and at normal latency: median and p95, and
                     hls.js's own latency estimate. Then `node bench/latency.mjs 60
                     --viewer=low`: the broadcast page (Chromium, fake camera painting the
                     clock, a three-rendition ladder with ~1/3 s parts) and one viewer in
                     low-latency mode (three Chromiums at once starve a small machine)."""

import concurrent.futures
import json
import os
import pathlib
import statistics
import subprocess
import threading
import time

import requests

import conftest
from media import cmaf_recording, part_bytes

ROOT = pathlib.Path(__file__).resolve().parents[1]
PART_S = 0.334
PARTS = 6
SECONDS = 20
MDAT_REPEAT = 4096  # 8 KiB parts
HINT_VIEWERS = 100
CHUNKS = 3


def bench_llhls(tmp: pathlib.Path, stack_class, row, viewers: int) -> None:
    print(f"llhls (150 and {viewers} viewers blocking on the next part; bench/latency.mjs --gateway, "
          "then --viewer=low)")
    for count in (150, viewers):
        blocking_viewers(tmp, stack_class, row, count)
    hinted_viewers(tmp, stack_class, row, HINT_VIEWERS)
    gateway = ROOT / "target" / "gateway" / "gateway"
    env = {**os.environ, **({"EDGEVIDEO_GATEWAY": str(gateway)} if gateway.exists() else {})}
    subprocess.run(["node", str(ROOT / "bench" / "latency.mjs"), "60", "--gateway"], check=True, env=env)
    subprocess.run(["node", str(ROOT / "bench" / "latency.mjs"), "60", "--viewer=low"], check=True, env=env)


def blocking_viewers(tmp: pathlib.Path, stack_class, row, viewers: int) -> None:
    """`viewers` viewers blocking on the next part of one channel (see the module's doc)."""
    s = stack_class(tmp, f"llhls-{viewers}")
    try:
        ch, base, play = s.channel()
        http = requests.Session()
        http.put(f"{base}/index_init.mp4", data=cmaf_recording()["init.mp4"]).raise_for_status()
        stored_at: dict[tuple[int, int], float] = {}
        stop = threading.Event()

        def push_part(segment: int, index: int) -> None:
            http.put(f"{base}/index_{segment:05d}.part{index}.m4s",
                     params={"duration_us": int(PART_S * 1e6), "part_target_us": int(PART_S * 1e6),
                             "independent": int(index == 0)},
                     data=part_bytes(segment, index, MDAT_REPEAT)).raise_for_status()
            stored_at[(segment, index)] = time.time()

        def push_segment(segment: int) -> None:
            http.put(f"{base}/index_{segment:05d}.m4s",
                     data=b"".join(part_bytes(segment, i, MDAT_REPEAT) for i in range(PARTS))).raise_for_status()
            first = max(0, segment - 5)
            text = ("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n"
                    f"#EXT-X-MEDIA-SEQUENCE:{first}\n" '#EXT-X-MAP:URI="index_init.mp4"\n')
            text += "".join(f"#EXTINF:{PARTS * PART_S:.6f},\nindex_{i:05d}.m4s\n"
                            for i in range(first, segment + 1))
            http.put(f"{base}/index.m3u8", data=text.encode()).raise_for_status()

        # One complete segment first, so that players have a playlist to start from.
        for index in range(PARTS):
            push_part(0, index)
        push_segment(0)

        push_failures = [0]

        def pusher() -> None:
            segment, index, next_at = 1, 0, time.monotonic()
            while not stop.is_set():
                next_at += PART_S
                time.sleep(max(0.0, next_at - time.monotonic()))
                try:
                    push_part(segment, index)
                    if index + 1 == PARTS:
                        push_segment(segment)
                except requests.RequestException:
                    push_failures[0] += 1
                index += 1
                if index == PARTS:
                    segment, index = segment + 1, 0

        exp, channel_id = int(time.time()) + 3600, ch["id"]
        urls = [f"{s.url}/play/{conftest.sign_url(f'c.{channel_id}.usr_ll{i:06d}.{exp}')}/live.m3u8"
                for i in range(viewers)]
        urls_file = tmp / f"llhls-urls-{viewers}.txt"
        urls_file.write_text("\n".join(urls))
        s.http.delete(s.url + "/api/_diag/metrics")
        threading.Thread(target=pusher, daemon=True).start()
        started = time.monotonic()
        # The viewers run in Node (one event loop, 1,000 requests in flight), not in threads here.
        out = subprocess.run(["node", str(ROOT / "bench" / "llhls-viewers.mjs"), str(SECONDS), str(urls_file)],
                             capture_output=True, text=True, check=True, timeout=SECONDS + 60)
        stop.set()
        elapsed = time.monotonic() - started
        result = json.loads(out.stdout.strip().splitlines()[-1])
        answered = {tuple(int(x) for x in key.split(".")): ms / 1000 for key, ms in result["answered"].items()}
        errors, answers, stale = result["errors"], result["answers"], result["stale"]
        counts = s.http.get(s.url + "/api/_diag/metrics").json()["counts"]
        parts = sum(1 for key in stored_at if key[0] >= 1)
        # The isolate's calls go to the room's relays (data center, then continent), the last
        # of which asks the room itself.
        calls = counts.get("live.call.window", 0)
        room_calls = counts.get("live.relayed.window", 0)
        waits = [answered[k] - stored_at[k] for k in answered if k in stored_at and answered[k] >= stored_at[k]]
        row(f"LL-HLS, {viewers} viewers blocking, {parts} parts in {elapsed:.0f} s",
            f"{calls} playlist calls from the isolate, {room_calls} reached the room through the relays, "
            f"{errors} errors, {stale} without their part, {answers / elapsed:.0f} answers/s",
            f"{calls / max(parts, 1):.2f} isolate calls and {room_calls / max(parts, 1):.2f} room calls per part")
        if push_failures[0]:
            row("  pushes the overloaded runtime refused", str(push_failures[0]))
        if waits:
            waits.sort()
            row("  part stored -> last viewer answered",
                f"median {statistics.median(waits) * 1000:.0f} ms, "
                f"p95 {waits[int(0.95 * (len(waits) - 1))] * 1000:.0f} ms (n={len(waits)})")
    finally:
        s.stop()


def part_calls(s) -> int:
    """The worker's calls for parts' bytes so far."""
    return s.http.get(s.url + "/api/_diag/metrics").json()["counts"].get("live.call.part_bytes", 0)


def hinted_viewers(tmp: pathlib.Path, stack_class, row, viewers: int) -> None:
    """`viewers` viewers asking for each next part before it exists while it is sent in chunks
    (see the module's doc)."""
    s = stack_class(tmp, f"llhls-hinted-{viewers}")
    try:
        ch, base, _ = s.channel()
        http = requests.Session()
        http.put(f"{base}/index_init.mp4", data=cmaf_recording()["init.mp4"]).raise_for_status()
        for index in range(PARTS):
            http.put(f"{base}/index_00000.part{index}.m4s",
                     params={"duration_us": int(PART_S * 1e6), "part_target_us": int(PART_S * 1e6),
                             "independent": int(index == 0)},
                     data=part_bytes(0, index, MDAT_REPEAT)).raise_for_status()
        r = http.put(f"{base}/index_00000.m4s",
                     data=b"".join(part_bytes(0, i, MDAT_REPEAT) for i in range(PARTS)))
        r.raise_for_status()
        broadcast = r.json()["broadcast_id"]
        text = ("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                '#EXT-X-MAP:URI="index_init.mp4"\n' f"#EXTINF:{PARTS * PART_S:.6f},\nindex_00000.m4s\n")
        http.put(f"{base}/index.m3u8", data=text.encode()).raise_for_status()
        exp, channel_id = int(time.time()) + 3600, ch["id"]
        tokens = [conftest.sign_url(f"c.{channel_id}.usr_hint{i:06d}.{exp}") for i in range(viewers)]

        def watch(url: str) -> tuple[float, float, int]:
            with requests.get(url, stream=True, timeout=30) as answer:
                if answer.status_code != 200:
                    return 0.0, 0.0, -1
                times, size = [], 0
                for piece in answer.iter_content(chunk_size=None):
                    times.append(time.time())
                    size += len(piece)
                return times[0], times[-1], size

        first_after, ahead, errors = [], [], 0
        s.http.delete(s.url + "/api/_diag/metrics")
        with concurrent.futures.ThreadPoolExecutor(viewers) as pool:
            for index in range(PARTS):
                file = f"index_00001.part{index}.m4s"
                before = part_calls(s)
                asked = [pool.submit(watch, f"{s.url}/play/{t}/seg/{broadcast}/{file}") for t in tokens]
                # The viewers wait in the room before the first chunk is sent.
                deadline = time.monotonic() + 10
                while part_calls(s) == before and time.monotonic() < deadline:
                    time.sleep(0.02)
                # Each chunk whole boxes (a `moof` and its `mdat`), as the gateway cuts them.
                chunks = [part_bytes(1, index * CHUNKS + c, MDAT_REPEAT // CHUNKS) for c in range(CHUNKS)]
                offset, first_sent = 0, 0.0
                for c, chunk in enumerate(chunks):
                    params = {"offset": offset}
                    if c == CHUNKS - 1:
                        params.update({"from_chunks": offset + len(chunk), "duration_us": int(PART_S * 1e6),
                                       "part_target_us": int(PART_S * 1e6), "independent": int(index == 0)})
                    if c == 0:
                        first_sent = time.time()
                    http.put(f"{base}/{file}", params=params, data=chunk).raise_for_status()
                    offset += len(chunk)
                    if c < CHUNKS - 1:
                        # The next chunk's media is being made.
                        time.sleep(PART_S / CHUNKS)
                complete = time.time()
                for f in asked:
                    first, _, size = f.result()
                    if size != offset:
                        errors += 1
                        continue
                    first_after.append(first - first_sent)
                    ahead.append(complete - first)
        counts = s.http.get(s.url + "/api/_diag/metrics").json()["counts"]
        parts = PARTS
        calls, room = counts.get("live.call.part_bytes", 0), counts.get("live.relayed.part_bytes", 0)
        row(f"LL-HLS, {viewers} viewers asking for each of {parts} parts before it exists",
            f"{calls} calls from the isolate, {room} reached the room, {errors} errors",
            f"{calls / parts:.1f} isolate and {room / parts:.1f} room calls per part ({CHUNKS} chunks)")
        if first_after:
            first_after.sort()
            ahead.sort()
            row("  first chunk sent -> viewers' first bytes",
                f"median {statistics.median(first_after) * 1000:.0f} ms, "
                f"p95 {first_after[int(0.95 * (len(first_after) - 1))] * 1000:.0f} ms",
                f"their first bytes {statistics.median(ahead) * 1000:.0f} ms (median) before the part "
                "was complete")
    finally:
        s.stop()
