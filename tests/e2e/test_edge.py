"""Edge delivery in the real Workers runtime: playback is served from the Cache API under keys
without the viewer's token, so a thousand viewers with a thousand different tokens cost a
handful of room calls and blob reads (counted by the worker's own port counters,
`/api/_diag/metrics`), while forged, expired and wrong-scope tokens are still refused; a new
segment shows in the cached playlist within one segment duration; MP4s stream in cached chunks
with any range; players on other origins may read every playback response.

This module runs its own worker: the counters are the isolate's, and no other test's requests
may add to them."""

import concurrent.futures
import hashlib
import time

import pytest
import requests

from conftest import bearer, metrics, new_email, sign_url, signup, start_worker, wait_until
from media import decode_errors, probe, recording, ts_segment

# Counters and the Cache API are the Workers host's; Spin has no edge cache.
pytestmark = pytest.mark.cloudflare

VIEWERS = 1000
SEGMENT_S = 2.0


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    # Broadcasts pushed by hand here end by ENDLIST only, so no room alarm adds to the
    # counters while they are read.
    w = start_worker(tmp_path_factory, transcoder, {"LIVE_IDLE_TIMEOUT_SECONDS": "600"})
    yield w
    w.stop()


def reset_metrics(api):
    assert api.delete("/api/_diag/metrics").status_code == 200


class LiveChannel:
    """A channel pushed to by hand, one 2 s segment at a time, as ffmpeg would."""

    def __init__(self, api):
        self.api = api
        owner = signup(api, new_email("broadcast.test"))
        self.id = api.post("/api/channels", json={"name": "Edge"}, headers=bearer(owner["token"])).json()["id"]
        self.ingest = api.post(f"/api/channels/{self.id}/ingest", headers=bearer(owner["token"])).json()["ingest_url"]
        self.files: list[str] = []

    def push(self):
        name = f"index{len(self.files)}.ts"
        r = self.api.put(self.ingest.replace("index.m3u8", name), data=ts_segment())
        assert r.status_code == 201, r.text
        self.files.append(name)
        playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        playlist += "".join(f"#EXTINF:{SEGMENT_S:.3f},\n{f}\n" for f in self.files)
        r = self.api.put(self.ingest, data=playlist.encode())
        assert r.status_code == 200, r.text
        return r.json()

    def viewer_urls(self, count: int) -> list[str]:
        """Live playlist URLs of `count` different viewers, each with its own token."""
        exp = int(time.time()) + 3600
        return [f"{self.api.base_url}/play/{sign_url(f'c.{self.id}.usr_viewer{i:06d}.{exp}')}/live.m3u8"
                for i in range(count)]


def get_all(urls: list[str], headers=None) -> list[requests.Response]:
    with concurrent.futures.ThreadPoolExecutor(32) as pool, requests.Session() as session:
        adapter = requests.adapters.HTTPAdapter(pool_connections=32, pool_maxsize=32)
        session.mount("http://", adapter)
        return list(pool.map(lambda u: session.get(u, headers=headers or {}, timeout=30), urls))


def test_a_thousand_viewers_cost_a_handful_of_room_calls_and_blob_reads(api):
    channel = LiveChannel(api)
    for _ in range(3):
        channel.push()
    urls = channel.viewer_urls(VIEWERS)
    assert len(set(urls)) == VIEWERS

    reset_metrics(api)
    started = time.monotonic()
    playlists = get_all(urls)
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 for r in playlists), {r.status_code for r in playlists}
    assert all("index2.ts" in r.text for r in playlists)
    hits = sum(r.headers["x-edge-cache"] == "HIT" for r in playlists)
    calls = metrics(api).get("live.call.window", 0)
    # The playlist stays fresh for half a segment (1 s): at most one room call per second,
    # plus the first.
    counts = metrics(api)
    # On Cloudflare the isolate's calls go to the room's relays (this data center's, then
    # its continent's), which ask the room: each tier at most as often as the one before.
    relayed_up, relayed = counts.get("live.relayed_up.window", 0), counts.get("live.relayed.window", 0)
    print(f"\n{VIEWERS} live-playlist requests in {elapsed:.2f} s: {calls} isolate calls "
          f"(relays: {relayed_up} up, {relayed} to the room), {hits} cache hits")
    assert 1 <= calls <= 2 + int(elapsed), calls
    assert 1 <= relayed <= relayed_up <= calls, counts
    assert counts.get("sql.query", 0) == 0

    segment_urls = [u.replace("live.m3u8", f"seg/{playlists[0].text.split('seg/')[1].split('/')[0]}/index1.ts")
                    for u in urls]
    reset_metrics(api)
    started = time.monotonic()
    segments = get_all(segment_urls)
    elapsed = time.monotonic() - started
    assert all(r.status_code == 200 and r.content == ts_segment() for r in segments)
    counts = metrics(api)
    calls = counts.get("live.call.window", 0)
    print(f"{VIEWERS} segment requests in {elapsed:.2f} s: {counts.get('blobs.get', 0)} blob reads, "
          f"{calls} room calls")
    assert counts.get("blobs.get", 0) == 1, counts
    # Which broadcast a channel URL may read is cached with the playlist, and asked of the
    # room at most once per 2 s when no playlist refresh renews it (here none does).
    assert calls <= 1 + int(elapsed / 2), counts
    assert counts.get("sql.query", 0) == 0, counts

    # A range of a cached segment is sliced from it.
    r = requests.get(segment_urls[5], headers={"range": "bytes=188-375"}, timeout=10)
    assert r.status_code == 206 and r.content == ts_segment()[188:376]
    assert r.headers["content-range"] == f"bytes 188-375/{len(ts_segment())}"


def test_the_cache_never_serves_a_refused_request(api):
    channel = LiveChannel(api)
    channel.push()
    genuine = channel.viewer_urls(1)[0]
    assert requests.get(genuine, timeout=10).status_code == 200
    assert requests.get(genuine, timeout=10).headers["x-edge-cache"] == "HIT"
    token = genuine.split("/play/")[1].split("/")[0]
    unsigned, signature = token.rsplit(".", 1)
    kind, ch, viewer, exp = unsigned.split(".")
    now = int(time.time())
    brd = requests.get(genuine, timeout=10).text.split("seg/")[1].split("/")[0]
    other_channel = LiveChannel(api)
    attacks = {
        "forged signature": f"{unsigned}.{signature[:-2]}AA",
        "expired": sign_url(f"c.{ch}.{viewer}.{now - 1}"),
        "another channel's token": other_channel.viewer_urls(1)[0].split("/play/")[1].split("/")[0],
        "wrong scope (ingest)": channel.ingest.split("/")[-2],
        "wrong key": sign_url(unsigned, "not-the-url-secret-0123456789abcdef"),
    }
    for label, forged in attacks.items():
        for path in ("live.m3u8", f"seg/{brd}/index0.ts"):
            r = requests.get(f"{api.base_url}/play/{forged}/{path}", timeout=10)
            if label == "another channel's token" and path == "live.m3u8":
                # Its own channel has not been live: its playlist, not ours.
                assert r.status_code == 404, (label, r.text)
                continue
            if label == "another channel's token":
                # A channel token opens segments of its own channel's current broadcast only.
                assert r.status_code == 403, (label, r.text)
                assert "x-edge-cache" not in r.headers
                continue
            assert r.status_code == 403, (label, path, r.status_code, r.text[:200])
            assert r.json()["error"]["code"] == "forbidden"
            assert "x-edge-cache" not in r.headers


def test_a_new_segment_is_listed_within_one_segment_duration(api):
    channel = LiveChannel(api)
    channel.push()
    url = channel.viewer_urls(1)[0]
    session = requests.Session()
    delays = []
    for _ in range(4):
        # Keep the playlist hot in the cache, as viewers do.
        assert session.get(url, timeout=10).status_code == 200
        channel.push()
        pushed = time.monotonic()
        name = channel.files[-1]
        wait_until(lambda: name in session.get(url, timeout=10).text, timeout_s=10, interval_s=0.05)
        delays.append(time.monotonic() - pushed)
    print(f"\nnew segment listed after {', '.join(f'{d:.2f}' for d in delays)} s")
    assert max(delays) <= SEGMENT_S, delays


def test_players_on_other_origins_may_read_playback(api):
    channel = LiveChannel(api)
    channel.push()
    url = channel.viewer_urls(1)[0]
    origin = {"origin": "http://player.example"}
    r = requests.options(url, headers={**origin, "access-control-request-method": "GET",
                                       "access-control-request-headers": "range"}, timeout=10)
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
    assert "range" in r.headers["access-control-allow-headers"].lower()
    assert "GET" in r.headers["access-control-allow-methods"]
    r = requests.get(url, headers=origin, timeout=10)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    assert "Content-Range" in r.headers["access-control-expose-headers"]
    # Refusals are readable too, so a player can tell an expired URL from a network error.
    bad = url.replace("/play/", "/play/x")
    r = requests.get(bad, headers=origin, timeout=10)
    assert r.status_code == 403 and r.headers["access-control-allow-origin"] == "*"
    # The API keeps the same-origin policy.
    r = requests.get(f"{api.base_url}/api/health", headers=origin, timeout=10)
    assert "access-control-allow-origin" not in r.headers


def test_an_mp4_streams_in_cached_chunks_with_any_range(api):
    owner = signup(api, new_email("broadcast.test"))
    ch = api.post("/api/channels", json={"name": "Chunks"}, headers=bearer(owner["token"])).json()["id"]
    ingest = api.post(f"/api/channels/{ch}/ingest", headers=bearer(owner["token"])).json()["ingest_url"]
    segments, playlist = recording(seconds=3, heavy=True)
    for name, body in segments:
        assert api.put(ingest.replace("index.m3u8", name), data=body).status_code == 201
    assert api.put(ingest, data=playlist).status_code == 200
    video = wait_until(lambda: api.get(f"/api/channels/{ch}").json()["last_broadcast"], timeout_s=30)["video_id"]
    wait_until(lambda: api.get(f"/api/videos/{video}", headers=bearer(owner["token"])).json()["has_mp4"],
               timeout_s=90)
    mp4 = api.post(f"/api/videos/{video}/playback", headers=bearer(owner["token"])).json()["mp4_url"]

    reset_metrics(api)
    whole = requests.get(mp4, timeout=60)
    assert whole.status_code == 200, whole.text[:200]
    size = len(whole.content)
    chunk = 2 * 1024 * 1024
    assert size > 2 * chunk, f"the MP4 is {size} bytes; the test needs more than two chunks"
    assert int(whole.headers["content-length"]) == size
    chunks = -(-size // chunk)
    assert metrics(api).get("blobs.get", 0) == chunks, metrics(api)

    reset_metrics(api)
    for start, end in [(0, None), (0, 0), (chunk - 1, chunk), (chunk, 2 * chunk - 1),
                       (5, size - 6), (size - 1, size - 1), (size - 100, None)]:
        spec = f"bytes={start}-" + ("" if end is None else str(end))
        r = requests.get(mp4, headers={"range": spec}, timeout=60)
        last = size - 1 if end is None else end
        assert r.status_code == 206, (spec, r.status_code)
        assert r.headers["content-range"] == f"bytes {start}-{last}/{size}", spec
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(whole.content[start:last + 1]).digest(), spec
    suffix = requests.get(mp4, headers={"range": "bytes=-1000"}, timeout=30)
    assert suffix.status_code == 206 and suffix.content == whole.content[-1000:]
    assert requests.get(mp4, headers={"range": f"bytes={size}-"}, timeout=30).status_code == 416
    # Every chunk came from the edge cache.
    assert metrics(api).get("blobs.get", 0) == 0, metrics(api)
    assert probe(mp4)["format"]["format_name"].startswith("mov")
    assert decode_errors(mp4) == ""


def test_oversized_request_bodies_are_refused(api):
    channel = LiveChannel(api)
    segment_url = channel.ingest.replace("index.m3u8", "index0.ts")

    # A chunked upload without a length (as ffmpeg sends): the worker stops reading once it
    # passes the limit (segments are at most 4 MiB here, upload parts 5 MiB). A declared
    # length above the limit is refused from its header (locally, wrangler's proxy forwards
    # the request only once the body has arrived).
    def chunks():
        block = b"\x47" * (1024 * 1024)
        for _ in range(40):
            yield block

    for label, body in (("chunked", chunks()), ("declared length", b"\x47" * (40 * 1024 * 1024))):
        try:
            r = requests.put(segment_url, data=body, timeout=60)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            # The 413 was sent while the client was still sending, and the connection closed
            # under it: refused all the same (what matters is below: nothing stored).
            print(f"\n{label}: connection closed while sending (refused early)")
            continue
        if r.status_code == 500 and r.text.startswith("Error: Network connection lost"):
            # The same seen from `wrangler dev`'s proxy (its own text, not the worker's JSON):
            # the worker answered and closed while the proxy was still forwarding the body.
            print(f"\n{label}: the local proxy lost the connection while sending (refused early)")
            continue
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large", (label, r.text[:200])
        print(f"\n{label}: 413")
    stored = api.get(f"/api/_diag/stored/{channel.id}").json()
    assert stored["blobs"] == [] and stored["broadcasts"] == 0
