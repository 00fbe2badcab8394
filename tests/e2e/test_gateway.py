"""The RTMP ingest gateway (`gateway/`) against the real Workers runtime: ffmpeg publishes
RTMP with the channel's ingest token as the stream key, the gateway pushes CMAF to the
worker's ingest URL, the live playlist plays in ffprobe, and the recording decodes clean. A
tampered, rotated or malformed key, and a second publisher, are refused at publish with the
reason in the client's log, and nothing is stored. RTMPS (a self-signed certificate made
with the `openssl` CLI) carries the same publish over TLS; an encoder that loses its
connection and publishes again within the reconnect window continues the same broadcast."""

import os
import pathlib
import re
import signal
import statistics
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
        self.rtmps_port = free_port()
        self.http_url = f"http://127.0.0.1:{free_port()}"
        self.log_path = state_dir / "gateway.log"
        self.edge_url = edge_url
        self.process: subprocess.Popen | None = None

    def start(self, extra_args: list[str] | tuple[str, ...] = ()) -> "Gateway":
        """Starts the gateway with `extra_args` after the listen and edge flags (RTMPS listens
        on `rtmps_port` once `--tls-cert` and `--tls-key` are among them)."""
        if not GATEWAY.exists():
            pytest.fail(f"{GATEWAY} is missing: cargo build -p edgevideo-gateway")
        # SRT off unless asked for: its default port is fixed, and gateways run side by side.
        srt = [] if "--srt-listen" in extra_args else ["--srt-listen", "off"]
        self.process = subprocess.Popen(
            [str(GATEWAY), "--listen", f"127.0.0.1:{self.rtmp_port}",
             "--rtmps-listen", f"127.0.0.1:{self.rtmps_port}",
             "--http-listen", self.http_url.removeprefix("http://"), "--edge", self.edge_url,
             *srt, *extra_args],
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

    def rtmps_url(self, key: str) -> str:
        return f"rtmps://127.0.0.1:{self.rtmps_port}/live/{key}"

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)


# The reconnect window of the tests' gateway: below the harness's LIVE_IDLE_TIMEOUT_SECONDS
# (6), as it must be below the edge's in production.
GRACE_S = 4
# Media silence after which a new publisher of a key takes it over from its connection: long
# enough that the first retry's ffmpeg, starting on a loaded machine, still finds the old
# connection live (at 2 s it once did not), short enough that the new publisher's first
# part reaches the edge before its idle timeout (6 s) ends the broadcast.
TAKEOVER_S = 3


def self_signed(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for 127.0.0.1 and its key (PEM), made with `openssl`."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30)
    return cert, key


@pytest.fixture(scope="module")
def gateway(worker, tmp_path_factory):
    state = tmp_path_factory.mktemp("gateway")
    cert, key = self_signed(state)
    g = Gateway(state, worker.url).start(
        ["--tls-cert", str(cert), "--tls-key", str(key),
         "--reconnect-grace-seconds", str(GRACE_S), "--takeover-silence-seconds", str(TAKEOVER_S)])
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


def check_recording(api, channel_id: str, pushed_s: float) -> tuple[dict, dict]:
    """The channel's last broadcast ended with ENDLIST; its VOD HLS (CMAF, ended) and the
    MP4 the transcoder stitched from it (H.264 + AAC) have the pushed duration (±2 s) and
    decode clean. Answers the MP4's ffprobe and what the channel has stored."""
    last = wait_until(lambda: channel(api, channel_id)["last_broadcast"], timeout_s=30)
    assert last["reason"] == "endlist", last
    vod = api.post(f"/api/videos/{last['video_id']}/playback").json()
    playlist = api.get(vod["hls_url"]).text
    assert "#EXT-X-MAP" in playlist and "#EXT-X-ENDLIST" in playlist, playlist
    duration = float(probe(vod["hls_url"])["format"]["duration"])
    assert abs(duration - pushed_s) <= 2.0, f"recording is {duration} s for {pushed_s} s pushed"
    assert decode_errors(vod["hls_url"]) == ""

    video = last["video_id"]
    wait_until(lambda: api.get(f"/api/_diag/video/{video}").json()["status"] == "published", timeout_s=120)
    mp4_url = api.post(f"/api/videos/{video}/playback").json()["mp4_url"]
    mp4 = probe(mp4_url)
    assert {s["codec_name"] for s in mp4["streams"]} == {"h264", "aac"}, mp4["streams"]
    assert abs(float(mp4["format"]["duration"]) - pushed_s) <= 2.0, mp4["format"]
    assert decode_errors(mp4_url) == ""
    return mp4, stored(api, channel_id)


def is_segment(blob: str) -> bool:
    """A whole media segment (not a low-latency part, `*.part{i}.m4s`)."""
    return blob.endswith(".m4s") and ".part" not in blob.rsplit("/", 1)[-1]


def segments_stored(api, channel_id: str) -> int:
    """Media segments the edge has stored for the channel."""
    return sum(is_segment(b) for b in stored(api, channel_id)["blobs"])


def kill_after_segments(api, channel_id: str, encoder: subprocess.Popen, segments: int) -> None:
    """Kills `encoder` (SIGKILL: no unpublish, no SRT shutdown) once the edge has stored
    `segments` media segments of the channel."""
    try:
        wait_until(lambda: segments_stored(api, channel_id) >= segments, timeout_s=30)
        encoder.send_signal(signal.SIGKILL)
        encoder.wait(timeout=10)
    finally:
        if encoder.poll() is None:
            encoder.kill()


def check_stitched(api, channel_id: str, min_s: float, max_s: float) -> dict:
    """The channel's one broadcast ended with ENDLIST and became one video whose published
    MP4 lasts `min_s` to `max_s` and decodes clean. Answers what the channel has stored."""
    last = wait_until(lambda: channel(api, channel_id)["last_broadcast"], timeout_s=30)
    assert last["reason"] == "endlist", last
    kept = stored(api, channel_id)
    assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept
    video = last["video_id"]
    wait_until(lambda: api.get(f"/api/_diag/video/{video}").json()["status"] == "published", timeout_s=120)
    mp4_url = api.post(f"/api/videos/{video}/playback").json()["mp4_url"]
    duration = float(probe(mp4_url)["format"]["duration"])
    assert min_s <= duration <= max_s, (duration, min_s, max_s)
    assert decode_errors(mp4_url) == ""
    return kept


def hinted_parts_spreads(playback: str, count: int) -> list[tuple[float, int]]:
    """Asks for `count` parts in a row, each before it exists, as a player that loads preload
    hints does: waits (a blocking reload) for the part hinted last to be complete, then asks
    for the one hinted next. For each: the seconds between the first and the last bytes of
    its answer (about a part's duration when it comes as the gateway sends it, 0 when it
    comes once complete), and its size."""

    def hint(text: str) -> tuple[int, str, str]:
        found = re.search(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]*\.part(\d+)\.m4s)"', text)
        first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text).group(1))
        return first + text.count("#EXTINF"), found.group(2), found.group(1)

    msn, part, _ = hint(requests.get(playback, timeout=10).text)
    spreads = []
    for _ in range(count):
        reload = {"_HLS_msn": msn, "_HLS_part": part}
        msn, part, uri = hint(requests.get(playback, params=reload, timeout=10).text)
        answer = requests.get(playback.rsplit("/", 1)[0] + "/" + uri, stream=True, timeout=10)
        assert answer.status_code == 200, answer.text
        times, size = [], 0
        for piece in answer.iter_content(chunk_size=None):
            times.append(time.monotonic())
            size += len(piece)
        spreads.append((times[-1] - times[0], size))
    return spreads


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

    _, kept = check_recording(api, ch["id"], pushed_s)
    assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept
    files = sorted(p.rsplit("/", 1)[1] for p in kept["blobs"] if ".part" not in p)
    assert files[-1] == "index_init.mp4" and len(files) >= pushed_s // 2, files
    # Low-latency parts came before each segment (about six a 2 s segment).
    parts = [p for p in kept["blobs"] if ".part" in p]
    assert len(parts) >= 4 * (len(files) - 1), (len(parts), files)

    metrics = gateway.metrics()
    assert metrics["gateway_streams_active"] == 0
    assert metrics["gateway_segments_pushed_total"] >= len(files)
    # Segments whose parts all went up were committed from them, not sent twice; the
    # recording checked above is made of them.
    assert metrics["gateway_segments_committed_total"] >= 1, metrics
    # Parts went up as they were made, two chunks or more each.
    assert metrics["gateway_chunks_pushed_total"] >= 2 * metrics["gateway_parts_pushed_total"], metrics
    assert metrics["gateway_bytes_in_total"] > 1_000_000
    assert metrics["gateway_publishes_refused_total"] >= 1


@pytest.mark.cloudflare
def test_the_next_part_reaches_its_viewers_as_the_gateway_sends_it(api, gateway):
    """(Rooms hold requests, so low-latency playlists and hinted parts, on Workers only.)"""
    user, ch = broadcaster(api)
    ffmpeg = publish(gateway.rtmp_url(token_of(ingest_url(api, user, ch))), 12)
    try:
        playback = api.post(f"/api/channels/{ch['id']}/playback").json()["url"]
        wait_until(lambda: "#EXT-X-PRELOAD-HINT" in api.get(playback).text, timeout_s=30)
        # In chunks of 100 ms of media: about 200 ms from the first to the last byte of a
        # 300 ms part; 0 if it came once complete.
        spreads = hinted_parts_spreads(playback, 5)
        print(f"\nhinted parts: first to last byte {[round(s, 3) for s, _ in spreads]} s")
        assert statistics.median(s for s, _ in spreads) >= 0.1, spreads
        assert all(size > 1000 for _, size in spreads), spreads
    finally:
        ffmpeg.kill()
        ffmpeg.wait(timeout=10)


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


def test_rtmps_publish_plays_live_then_is_recorded(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    # Plain RTMP to the RTMPS port fails its TLS handshake; that connection only is closed.
    plain = publish(f"rtmp://127.0.0.1:{gateway.rtmps_port}/live/{key}", 3)
    assert plain.wait(timeout=30) != 0

    pushed_s = 10
    ffmpeg = publish(gateway.rtmps_url(key), pushed_s)
    try:
        playback = api.post(f"/api/channels/{ch['id']}/playback").json()["url"]
        wait_until(lambda: api.get(playback).text.count("#EXTINF") >= 2, timeout_s=30)
        codecs = {s["codec_type"]: s["codec_name"] for s in probe(playback)["streams"]}
        assert codecs == {"video": "h264", "audio": "aac"}, codecs
        assert ffmpeg.wait(timeout=60) == 0, ffmpeg.stderr.read().decode()
    finally:
        if ffmpeg.poll() is None:
            ffmpeg.kill()
    assert "TLS handshake failed" in gateway.log(), gateway.log()

    last = wait_until(lambda: channel(api, ch["id"])["last_broadcast"], timeout_s=30)
    assert last["reason"] == "endlist", last
    video = last["video_id"]
    wait_until(lambda: api.get(f"/api/_diag/video/{video}").json()["status"] == "published", timeout_s=120)
    mp4_url = api.post(f"/api/videos/{video}/playback").json()["mp4_url"]
    mp4 = probe(mp4_url)
    assert abs(float(mp4["format"]["duration"]) - pushed_s) <= 2.0, mp4["format"]
    assert decode_errors(mp4_url) == ""


def test_rtmps_needs_a_readable_certificate_and_key(tmp_path):
    def start_error(*args: str) -> str:
        run = subprocess.run(
            [str(GATEWAY), "--listen", f"127.0.0.1:{free_port()}",
             "--http-listen", f"127.0.0.1:{free_port()}", "--edge", "http://127.0.0.1:1", *args],
            capture_output=True, text=True, timeout=30)
        assert run.returncode != 0, run.stderr
        return run.stderr

    cert, key = self_signed(tmp_path)
    assert "both --tls-cert and --tls-key" in start_error("--tls-cert", str(cert))
    missing = tmp_path / "missing.pem"
    assert str(missing) in start_error("--tls-cert", str(missing), "--tls-key", str(key))
    assert "PRIVATE KEY" in start_error("--tls-cert", str(cert), "--tls-key", str(cert))


def test_a_reconnect_within_the_window_continues_one_broadcast(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    reconnects = gateway.metrics()["gateway_reconnects_total"]
    started = time.monotonic()
    first = publish(gateway.rtmp_url(key), 30)
    # About 8 s published (four 2 s segments at the edge), then the encoder dies.
    kill_after_segments(api, ch["id"], first, 4)
    first_s = time.monotonic() - started
    wait_until(lambda: "stream parked" in gateway.log(), timeout_s=10)
    time.sleep(1)  # the encoder's reconnect delay (an outage, not a condition to wait for)

    second_s = 8
    second = publish(gateway.rtmp_url(key), second_s)
    assert second.wait(timeout=60) == 0, second.stderr.read().decode()
    wall_s = time.monotonic() - started
    log = gateway.log()
    assert "stream resumed" in log, log
    assert gateway.metrics()["gateway_reconnects_total"] == reconnects + 1

    # ffmpeg sent at most `first_s` of media before it was killed (less its start-up).
    kept = check_stitched(api, ch["id"], first_s + second_s - 3.0, wall_s)
    assert sum(b.endswith("index_init.mp4") for b in kept["blobs"]) == 1, kept["blobs"]


def test_a_publish_after_the_window_is_a_new_broadcast(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    reconnects = gateway.metrics()["gateway_reconnects_total"]
    first = publish(gateway.rtmp_url(key), 30)
    kill_after_segments(api, ch["id"], first, 2)
    # The window passes: the parked stream ends cleanly (ENDLIST).
    last = wait_until(lambda: channel(api, ch["id"])["last_broadcast"], timeout_s=GRACE_S + 20)
    assert last["reason"] == "endlist", last
    assert "no reconnect within the window" in gateway.log()

    second = publish(gateway.rtmp_url(key), 4)
    assert second.wait(timeout=60) == 0, second.stderr.read().decode()
    wait_until(lambda: stored(api, ch["id"])["broadcasts"] == 2, timeout_s=30)
    assert gateway.metrics()["gateway_reconnects_total"] == reconnects


def test_a_new_publisher_takes_over_a_silent_connection(api, gateway):
    """A half-open connection (the encoder's network changed): ffmpeg is stopped (SIGSTOP),
    its TCP connection stays open and silent; the encoder's new publish, retried as encoders
    do, takes the key over once the old connection has been silent, and continues the same
    broadcast."""
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    before = gateway.metrics()
    first = publish(gateway.rtmp_url(key), 30)
    try:
        wait_until(lambda: segments_stored(api, ch["id"]) >= 2, timeout_s=30)
        first.send_signal(signal.SIGSTOP)
        stopped = time.monotonic()
        refused = 0
        while True:
            second = publish(gateway.rtmp_url(key), 6)
            if second.wait(timeout=60) == 0:
                break
            err = second.stderr.read().decode()
            assert "already publishing" in err, err
            refused += 1
            assert time.monotonic() - stopped < TAKEOVER_S + 10, "never taken over"
            time.sleep(0.5)  # the encoder's retry delay
        assert refused >= 1, "taken over before the connection was silent"
    finally:
        first.kill()
        first.wait(timeout=10)
    after = gateway.metrics()
    assert after["gateway_takeovers_total"] == before["gateway_takeovers_total"] + 1
    assert after["gateway_reconnects_total"] == before["gateway_reconnects_total"] + 1
    assert "takes over" in gateway.log()
    last = wait_until(lambda: channel(api, ch["id"])["last_broadcast"], timeout_s=30)
    assert last["reason"] == "endlist", last
    kept = stored(api, ch["id"])
    assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept


def test_stopping_the_gateway_ends_its_broadcasts_cleanly(api, worker, tmp_path):
    """A container stop (SIGTERM): the gateway ends every stream with its last segment and
    ENDLIST before it exits, the publishing one and the one parked for a reconnect, so both
    broadcasts end now (reason `endlist`), not at the edge's idle timeout, and their
    recordings play."""
    g = Gateway(tmp_path, worker.url).start(["--reconnect-grace-seconds", "120"])
    encoders = []
    try:
        (user_a, ch_a), (user_b, ch_b) = broadcaster(api), broadcaster(api)
        live = publish(g.rtmp_url(token_of(ingest_url(api, user_a, ch_a))), 60)
        lost = publish(g.rtmp_url(token_of(ingest_url(api, user_b, ch_b))), 60)
        encoders = [live, lost]
        wait_until(lambda: segments_stored(api, ch_a["id"]) >= 2, timeout_s=30)
        kill_after_segments(api, ch_b["id"], lost, 2)
        # Parked within the window (120 s); stopped before the edge's idle timeout (6 s).
        wait_until(lambda: "stream parked" in g.log(), timeout_s=5)
        os.killpg(g.process.pid, signal.SIGTERM)
        assert g.process.wait(timeout=15) == 0, g.log()
        log = g.log()
        assert '"streams_not_ended":0' in log and "the parked stream ends" in log, log
        # The publishing encoder lost its connection.
        assert live.wait(timeout=10) != 0
    finally:
        for encoder in encoders:
            if encoder.poll() is None:
                encoder.kill()
        g.stop()

    for ch in (ch_a, ch_b):
        last = wait_until(lambda: channel(api, ch["id"])["last_broadcast"], timeout_s=30)
        assert last["reason"] == "endlist", last
        vod = api.post(f"/api/videos/{last['video_id']}/playback").json()
        playlist = api.get(vod["hls_url"]).text
        assert "#EXT-X-ENDLIST" in playlist, playlist
        assert float(probe(vod["hls_url"])["format"]["duration"]) >= 4
        assert decode_errors(vod["hls_url"]) == ""
        kept = stored(api, ch["id"])
        assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept


def test_a_renewed_certificate_is_served_after_sighup(worker, tmp_path):
    """RTMPS takes a renewed certificate without a restart: SIGHUP reads the files again;
    files that do not load leave the certificate in use as it was."""
    import ssl

    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    cert, key = self_signed(first)
    renewed_cert, renewed_key = self_signed(second)
    g = Gateway(tmp_path, worker.url).start(["--tls-cert", str(cert), "--tls-key", str(key)])
    try:
        def served() -> str:
            return ssl.get_server_certificate(("127.0.0.1", g.rtmps_port), timeout=5)

        assert served().strip() == cert.read_text().strip()
        # The renewal replaces the files, then the gateway is told.
        cert.write_text(renewed_cert.read_text())
        key.write_text(renewed_key.read_text())
        os.killpg(g.process.pid, signal.SIGHUP)
        wait_until(lambda: "TLS certificate reloaded" in g.log(), timeout_s=10)
        assert served().strip() == renewed_cert.read_text().strip()

        key.write_text("not a key\n")
        os.killpg(g.process.pid, signal.SIGHUP)
        wait_until(lambda: "reload failed" in g.log(), timeout_s=10)
        assert served().strip() == renewed_cert.read_text().strip()
        assert g.process.poll() is None
    finally:
        g.stop()
