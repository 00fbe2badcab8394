"""Low-latency HLS in the real Workers runtime. Parts pushed to the ingest URL are listed in
the live playlist at once; a blocking playlist reload (`_HLS_msn`, `_HLS_part`) is held by the
channel's Durable Object until the part it asks for is stored, and answered to every waiting
viewer (each with a token of their own) from one room call; the hinted next part is held the
same way and then served, and a part pushed in chunks reaches its viewers chunk by chunk.
Requests the spec refuses are 400s. (Real parts from the ingest
gateway, played by hls.js and ffprobe: `test_gateway_low_latency.py`.)

This module runs its own worker: the counters are the isolate's."""

import concurrent.futures
import time

import pytest
import requests

from conftest import bearer, metrics, new_email, sign_url, signup, start_worker, wait_until
from media import cmaf_recording, part_bytes

# Rooms hold requests on the Workers host only; Spin serves ordinary playlists.
pytestmark = pytest.mark.cloudflare

PART_US = 333_333
PARTS = 6
WAITERS = 200


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    w = start_worker(tmp_path_factory, transcoder, {"LIVE_IDLE_TIMEOUT_SECONDS": "600"})
    yield w
    w.stop()


class LowLatencyPusher:
    """Pushes as the ingest gateway does: init, then each segment's parts as they are made,
    the whole segment, and the playlist."""

    def __init__(self, api):
        self.api = api
        owner = signup(api, new_email("broadcast.test"))
        self.channel = api.post("/api/channels", json={"name": "LL"},
                                headers=bearer(owner["token"])).json()["id"]
        ingest = api.post(f"/api/channels/{self.channel}/ingest",
                          headers=bearer(owner["token"])).json()["ingest_url"]
        self.base = ingest.rsplit("/", 1)[0]
        self.segments = 0
        self.broadcast = None
        r = api.put(f"{self.base}/index_init.mp4", data=cmaf_recording()["init.mp4"])
        assert r.status_code == 201, r.text

    def part(self, segment: int, index: int) -> requests.Response:
        r = self.api.put(
            f"{self.base}/index_{segment:05d}.part{index}.m4s",
            params={"duration_us": PART_US, "part_target_us": 334000, "independent": int(index == 0)},
            data=part_bytes(segment, index))
        assert r.status_code == 201, r.text
        self.broadcast = r.json()["broadcast_id"]
        return r

    def segment(self) -> None:
        n = self.segments
        body = b"".join(part_bytes(n, i) for i in range(PARTS))
        r = self.api.put(f"{self.base}/index_{n:05d}.m4s", data=body)
        assert r.status_code == 201, r.text
        self.segments += 1
        playlist = ("#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
                    '#EXT-X-MAP:URI="index_init.mp4"\n')
        playlist += "".join(f"#EXTINF:{PARTS * PART_US / 1e6:.6f},\nindex_{i:05d}.m4s\n"
                            for i in range(self.segments))
        r = self.api.put(f"{self.base}/index.m3u8", data=playlist.encode())
        assert r.status_code == 200, r.text

    def viewer_urls(self, count: int) -> list[str]:
        exp = int(time.time()) + 3600
        return [f"{self.api.base_url}/play/{sign_url(f'c.{self.channel}.usr_llviewer{i:05d}.{exp}')}/live.m3u8"
                for i in range(count)]


def test_blocking_reloads_wait_for_their_part_and_share_one_room_call(api):
    pusher = LowLatencyPusher(api)
    for index in range(PARTS):
        pusher.part(0, index)
    pusher.segment()
    for index in range(3):
        pusher.part(1, index)
    urls = pusher.viewer_urls(WAITERS)
    seg = f"seg/{pusher.broadcast}/"

    playlist = requests.get(urls[0], timeout=10)
    assert playlist.status_code == 200
    text = playlist.text
    assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.002\n" in text, text
    assert "#EXT-X-PART-INF:PART-TARGET=0.334\n" in text, text
    assert f'#EXT-X-PART:DURATION=0.333333,URI="{seg}index_00001.part2.m4s"\n' in text, text
    assert text.endswith(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{seg}index_00001.part3.m4s"\n'), text

    # Every viewer asks for the next part before it exists: all are held.
    api.delete("/api/_diag/metrics")
    with concurrent.futures.ThreadPoolExecutor(WAITERS + 1) as pool:
        waiting = [pool.submit(requests.get, u, params={"_HLS_msn": 1, "_HLS_part": 3}, timeout=30)
                   for u in urls]
        hinted = pool.submit(requests.get, urls[1].replace("live.m3u8", f"{seg}index_00001.part3.m4s"),
                             timeout=30)
        # The room holds the first of them (one call for all); none has an answer yet.
        wait_until(lambda: metrics(api).get("live.call.part_bytes", 0) >= 1
                   and metrics(api).get("live.call.window", 0) >= 1, timeout_s=20)
        assert not any(f.done() for f in waiting) and not hinted.done()
        pushed_at = time.monotonic()
        pusher.part(1, 3)
        answers = [f.result() for f in waiting]
        answered_after = time.monotonic() - pushed_at
        part = hinted.result()
    assert all(r.status_code == 200 for r in answers), {r.status_code for r in answers}
    assert all(f"{seg}index_00001.part3.m4s" in r.text for r in answers)
    assert part.status_code == 200 and part.content == part_bytes(1, 3)
    counts = metrics(api)
    print(f"\n{WAITERS} viewers held for the next part, answered {answered_after:.2f} s after it was "
          f"stored: {counts.get('live.call.window', 0)} playlist room calls, "
          f"{counts.get('live.call.part_bytes', 0)} part room calls")
    assert answered_after < 2.0
    # One waiter per location (this isolate), however many viewers wait.
    assert counts.get("live.call.window", 0) <= 2, counts
    assert counts.get("live.call.part_bytes", 0) <= 2, counts
    assert counts.get("sql.query", 0) == 0, counts

    # A reload for a part already there is answered at once, from the cache.
    started = time.monotonic()
    again = requests.get(urls[7], params={"_HLS_msn": 1, "_HLS_part": 3}, timeout=10)
    assert again.status_code == 200 and again.headers["x-edge-cache"] == "HIT"
    assert time.monotonic() - started < 1.0

    # What the spec refuses.
    for params in ({"_HLS_msn": 9}, {"_HLS_part": 1}, {"_HLS_msn": "x"}):
        refused = requests.get(urls[0], params=params, timeout=10)
        assert refused.status_code == 400, (params, refused.text)
        assert refused.json()["error"]["code"] in ("too_far_ahead", "invalid_request")

    # A request held past its hold gets what the room has.
    started = time.monotonic()
    late = requests.get(urls[2], params={"_HLS_msn": 1, "_HLS_part": 5}, timeout=30)
    assert late.status_code == 200 and "index_00001.part5.m4s" not in late.text
    assert time.monotonic() - started >= 3.0



STREAMING_VIEWERS = 50


def test_a_part_sent_in_chunks_reaches_its_viewers_as_it_is_sent(api):
    """The preload hint's part, pushed as chunks: each viewer holding the part's URL gets
    every chunk before the next is sent (so before the part is committed), and the viewers
    of this isolate share one call out of it per chunk."""
    pusher = LowLatencyPusher(api)
    for index in range(PARTS):
        pusher.part(0, index)
    pusher.segment()
    urls = pusher.viewer_urls(STREAMING_VIEWERS)
    file = "index_00001.part0.m4s"
    hinted = f"seg/{pusher.broadcast}/{file}"
    assert requests.get(urls[0], timeout=10).text.endswith(f'URI="{hinted}"\n')
    chunks = [part_bytes(1, 0), part_bytes(1, 1), part_bytes(1, 2)]
    received = [0] * STREAMING_VIEWERS

    def watch(viewer: int) -> tuple[int, bytes, str]:
        r = requests.get(urls[viewer].replace("live.m3u8", hinted), stream=True, timeout=30)
        body = b""
        for piece in r.iter_content(chunk_size=None):
            body += piece
            received[viewer] = len(body)
        return r.status_code, body, r.headers.get("cache-control", "")

    api.delete("/api/_diag/metrics")
    with concurrent.futures.ThreadPoolExecutor(STREAMING_VIEWERS) as pool:
        viewers = [pool.submit(watch, v) for v in range(STREAMING_VIEWERS)]
        wait_until(lambda: metrics(api).get("live.call.part_bytes", 0) >= 1, timeout_s=20)
        offset = 0
        for chunk in chunks:
            r = api.put(f"{pusher.base}/{file}", params={"offset": offset}, data=chunk)
            assert r.status_code == 202, r.text
            offset += len(chunk)
            # Every viewer has this chunk before the next one is sent.
            wait_until(lambda: min(received) >= offset, timeout_s=20)
            assert not any(v.done() for v in viewers)
        r = api.put(f"{pusher.base}/{file}", data=b"",
                    params={"from_chunks": offset, "duration_us": PART_US,
                            "part_target_us": 334000, "independent": 1})
        assert r.status_code == 201, r.text
        answers = [v.result() for v in viewers]
    whole = b"".join(chunks)
    assert all(status == 200 and body == whole and policy == "no-store"
               for status, body, policy in answers), {a[0] for a in answers}
    counts = metrics(api)
    calls = counts.get("live.call.part_bytes", 0)
    print(f"\n{STREAMING_VIEWERS} viewers streamed a part of {len(chunks)} chunks: "
          f"{calls} room calls for its bytes")
    # One call per chunk (and one for the part's end) for the isolate, not one per viewer.
    assert 1 <= calls <= len(chunks) + 2, counts
    assert counts.get("sql.query", 0) == 0, counts
    # Stored whole: the next viewer reads it from the blob, immutable.
    stored = requests.get(urls[0].replace("live.m3u8", hinted), timeout=10)
    assert stored.status_code == 200 and stored.content == whole
    assert "immutable" in stored.headers["cache-control"]
