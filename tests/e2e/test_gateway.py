"""The RTMP ingest gateway (`gateway/`) against the real Workers runtime: ffmpeg publishes
RTMP with the channel's ingest token as the stream key, the gateway pushes CMAF to the
worker's ingest URL, the live playlist plays in ffprobe, and the recording decodes clean. A
tampered, rotated or malformed key, and a second publisher, are refused at publish with the
reason in the client's log, and nothing is stored."""

import os
import pathlib
import signal
import subprocess
import time

import pytest
import requests

from conftest import ROOT, bearer, free_port, wait_until
from media import decode_errors, probe
from test_live import broadcaster, channel, ingest_url, stored

GATEWAY = pathlib.Path(os.environ.get("EDGEVIDEO_GATEWAY", ROOT / "target" / "debug" / "gateway"))


class Gateway:
    """`gateway` as a local process pushing to the worker."""

    def __init__(self, state_dir: pathlib.Path, edge_url: str):
        self.rtmp_port = free_port()
        self.http_url = f"http://127.0.0.1:{free_port()}"
        self.log_path = state_dir / "gateway.log"
        self.edge_url = edge_url
        self.process: subprocess.Popen | None = None

    def start(self) -> "Gateway":
        if not GATEWAY.exists():
            pytest.fail(f"{GATEWAY} is missing: cargo build -p edgevideo-gateway")
        self.process = subprocess.Popen(
            [str(GATEWAY), "--listen", f"127.0.0.1:{self.rtmp_port}",
             "--http-listen", self.http_url.removeprefix("http://"), "--edge", self.edge_url],
            stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"), stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"gateway exited:\n{self.log()}")
            try:
                if requests.get(self.http_url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.1)
        pytest.fail(f"gateway did not answer:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self) -> dict[str, float]:
        text = requests.get(self.http_url + "/metrics", timeout=5).text
        return {name: float(value) for name, value in
                (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))}

    def rtmp_url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway(worker, tmp_path_factory):
    g = Gateway(tmp_path_factory.mktemp("gateway"), worker.url).start()
    yield g
    g.stop()


def publish(url: str, seconds: float) -> subprocess.Popen:
    """ffmpeg publishing RTMP as OBS would: H.264 (2 s GOP) + AAC, real time."""
    args = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-keyint_min", "60",
        "-sc_threshold", "0", "-c:a", "aac", "-f", "flv", url,
    ]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def token_of(url: str) -> str:
    """The stream key: the token segment of `{origin}/ingest/{TOKEN}/index.m3u8`."""
    return url.rsplit("/", 2)[1]


def test_rtmp_publish_plays_live_then_on_demand(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    pushed_s = 20
    ffmpeg = publish(gateway.rtmp_url(key), pushed_s)
    try:
        playback = api.post(f"/api/channels/{ch['id']}/playback").json()["url"]
        wait_until(lambda: api.get(playback).text.count("#EXTINF") >= 2, timeout_s=30)
        live = api.get(playback).text
        assert "#EXT-X-MAP" in live and "#EXT-X-ENDLIST" not in live, live
        codecs = {s["codec_type"]: s["codec_name"] for s in probe(playback)["streams"]}
        assert codecs == {"video": "h264", "audio": "aac"}, codecs
        assert channel(api, ch["id"])["live"]

        # A second publisher of the same key is refused at publish; the first goes on.
        second = publish(gateway.rtmp_url(key), 3)
        assert second.wait(timeout=30) != 0
        assert "already publishing" in second.stderr.read().decode()

        assert ffmpeg.wait(timeout=90) == 0, ffmpeg.stderr.read().decode()
    finally:
        if ffmpeg.poll() is None:
            ffmpeg.kill()

    last = wait_until(lambda: channel(api, ch["id"])["last_broadcast"], timeout_s=30)
    assert last["reason"] == "endlist", last
    vod = api.post(f"/api/videos/{last['video_id']}/playback").json()
    playlist = api.get(vod["hls_url"]).text
    assert "#EXT-X-MAP" in playlist and "#EXT-X-ENDLIST" in playlist, playlist
    duration = float(probe(vod["hls_url"])["format"]["duration"])
    assert abs(duration - pushed_s) <= 2.0, f"recording is {duration} s for {pushed_s} s pushed"
    assert decode_errors(vod["hls_url"]) == ""

    # The transcoder stitches the gateway's CMAF into the published MP4.
    video = last["video_id"]
    wait_until(lambda: api.get(f"/api/_diag/video/{video}").json()["status"] == "published", timeout_s=120)
    mp4_url = api.post(f"/api/videos/{video}/playback").json()["mp4_url"]
    mp4 = probe(mp4_url)
    assert {s["codec_name"] for s in mp4["streams"]} == {"h264", "aac"}, mp4["streams"]
    assert abs(float(mp4["format"]["duration"]) - pushed_s) <= 2.0, mp4["format"]
    assert decode_errors(mp4_url) == ""

    kept = stored(api, ch["id"])
    assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept
    files = sorted(p.rsplit("/", 1)[1] for p in kept["blobs"])
    assert files[-1] == "index_init.mp4" and len(files) >= pushed_s // 2, files

    metrics = gateway.metrics()
    assert metrics["gateway_streams_active"] == 0
    assert metrics["gateway_segments_pushed_total"] >= len(files)
    assert metrics["gateway_bytes_in_total"] > 1_000_000
    assert metrics["gateway_publishes_refused_total"] >= 1


def test_wrong_or_rotated_keys_are_refused_at_publish(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))

    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    ffmpeg = publish(gateway.rtmp_url(tampered), 5)
    assert ffmpeg.wait(timeout=30) != 0
    err = ffmpeg.stderr.read().decode()
    assert "Server error" in err, err

    r = api.post(f"/api/channels/{ch['id']}/stream-key/rotate", headers=bearer(user["token"]))
    assert r.status_code == 200, r.text
    ffmpeg = publish(gateway.rtmp_url(key), 5)
    assert ffmpeg.wait(timeout=30) != 0
    err = ffmpeg.stderr.read().decode()
    assert "rotated" in err, err

    ffmpeg = publish(gateway.rtmp_url("not-a-token"), 5)
    assert ffmpeg.wait(timeout=30) != 0

    assert stored(api, ch["id"]) == {"broadcasts": 0, "videos": 0, "blobs": [], "playlists": []}
    assert channel(api, ch["id"])["live"] is False


def test_rotating_the_key_ends_a_live_rtmp_stream(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    ffmpeg = publish(gateway.rtmp_url(key), 30)
    try:
        wait_until(lambda: len(stored(api, ch["id"])["blobs"]) >= 2, timeout_s=30)
        r = api.post(f"/api/channels/{ch['id']}/stream-key/rotate", headers=bearer(user["token"]))
        assert r.status_code == 200, r.text
        # The next segment is refused (403): the gateway closes the publisher's connection.
        assert ffmpeg.wait(timeout=20) != 0
    finally:
        if ffmpeg.poll() is None:
            ffmpeg.kill()
    assert "rotated" in gateway.log(), gateway.log()
    assert gateway.metrics()["gateway_stream_errors_total"] >= 1
