"""SRT publishes through the ingest gateway (`gateway/src/srt.rs`) against the real Workers
runtime: ffmpeg (Debian's build lists `srt` in `ffmpeg -protocols`: libsrt) calls the gateway
with the channel's ingest token in the SRT stream id and sends MPEG-TS; the live playlist
plays in ffprobe and the recording becomes a published video whose MP4 decodes clean. A
wrong or rotated key, a second publisher and a stream id asking to play are rejected at the
SRT handshake, and nothing is stored. An encoder that dies and calls again continues the
same broadcast."""

import subprocess
import time

import pytest

from conftest import bearer, free_port, wait_until
from media import probe
from test_gateway import Gateway, check_recording, check_stitched, kill_after_segments, token_of
from test_live import broadcaster, channel, ingest_url, stored


# The reconnect window: below the harness's LIVE_IDLE_TIMEOUT_SECONDS (6), as it must be
# below the edge's in production; and the silence after which a new publisher takes a key over.
GRACE_S = 4
TAKEOVER_S = 2


class SrtGateway(Gateway):
    """The gateway with SRT on a free local port, beside the RTMP listener the base class
    sets up."""

    def __init__(self, state_dir, edge_url):
        super().__init__(state_dir, edge_url)
        self.srt_port = free_port()

    start_args: list[str] = []

    def start(self) -> "SrtGateway":
        super().start(["--srt-listen", f"127.0.0.1:{self.srt_port}", "--srt-latency-ms", "200",
                       "--reconnect-grace-seconds", str(GRACE_S),
                       "--takeover-silence-seconds", str(TAKEOVER_S), *self.start_args])
        assert "SRT listening" in self.log(), self.log()
        return self

    def srt_url(self, stream_id: str) -> str:
        return f"srt://127.0.0.1:{self.srt_port}?streamid={stream_id}"


@pytest.fixture(scope="module")
def gateway(worker, tmp_path_factory):
    g = SrtGateway(tmp_path_factory.mktemp("gateway-srt"), worker.url).start()
    yield g
    g.stop()


def publish_srt(url: str, seconds: float, bframes: int = 2) -> subprocess.Popen:
    """ffmpeg publishing SRT as an encoder would: H.264 (2 s GOP, B-frames) + AAC in
    MPEG-TS, real time, as SRT caller."""
    args = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-re",
        "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
        "-f", "lavfi", "-i", "sine=sample_rate=48000", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "veryfast", "-bf", str(bframes), "-g", "60", "-keyint_min", "60",
        "-sc_threshold", "0", "-c:a", "aac", "-f", "mpegts", url,
    ]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_debian_ffmpeg_speaks_srt():
    out = subprocess.run(["ffmpeg", "-hide_banner", "-protocols"], capture_output=True, text=True)
    assert "srt" in out.stdout.split(), "this ffmpeg has no SRT (libsrt) protocol"


def test_srt_publish_plays_live_then_on_demand(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    pushed_s = 20
    ffmpeg = publish_srt(gateway.srt_url(f"#!::r={key},m=publish"), pushed_s)
    try:
        playback = api.post(f"/api/channels/{ch['id']}/playback").json()["url"]
        wait_until(lambda: api.get(playback).text.count("#EXTINF") >= 2, timeout_s=30)
        live = api.get(playback).text
        assert "#EXT-X-MAP" in live and "#EXT-X-ENDLIST" not in live, live
        codecs = {s["codec_type"]: s["codec_name"] for s in probe(playback)["streams"]}
        assert codecs == {"video": "h264", "audio": "aac"}, codecs
        assert channel(api, ch["id"])["live"]

        # A second publisher of the same key (the Access Control form with a user and the
        # `live/` prefix) is rejected at the handshake; the first goes on.
        second = publish_srt(gateway.srt_url(f"#!::u=obs,r=live/{key},m=publish"), 3)
        assert second.wait(timeout=30) != 0
        assert "already publishing" in gateway.log(), gateway.log()

        assert ffmpeg.wait(timeout=90) == 0, ffmpeg.stderr.read().decode()
    finally:
        if ffmpeg.poll() is None:
            ffmpeg.kill()

    _, kept = check_recording(api, ch["id"], pushed_s)
    assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept
    files = sorted(p.rsplit("/", 1)[1] for p in kept["blobs"])
    assert files[-1] == "index_init.mp4" and len(files) >= pushed_s // 2, files

    metrics = gateway.metrics()
    assert metrics["gateway_streams_active"] == 0
    assert metrics["gateway_bytes_in_total"] > 1_000_000
    assert metrics["gateway_publishes_refused_total"] >= 1
    # The link's counters are exported (loopback loses little, so no value is asserted).
    for name in ("lost", "retransmitted", "dropped", "undecrypted"):
        assert f"gateway_srt_packets_{name}_total" in metrics, metrics


def test_srt_publish_with_a_plain_key(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    pushed_s = 8
    ffmpeg = publish_srt(gateway.srt_url(key), pushed_s)
    assert ffmpeg.wait(timeout=60) == 0, ffmpeg.stderr.read().decode()
    _, kept = check_recording(api, ch["id"], pushed_s)
    assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept


def test_wrong_rotated_or_playing_srt_callers_are_rejected(api, gateway):
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    refused_before = gateway.metrics()["gateway_publishes_refused_total"]

    def rejected(stream_id: str, reason: str) -> None:
        refusals = gateway.log().count("publish refused")
        ffmpeg = publish_srt(gateway.srt_url(stream_id), 5)
        assert ffmpeg.wait(timeout=30) != 0
        err = ffmpeg.stderr.read().decode()
        # libsrt reports the rejection; ffmpeg, that the connection failed.
        assert "failed" in err, err
        wait_until(lambda: gateway.log().count("publish refused") > refusals, timeout_s=10)
        last = [line for line in gateway.log().splitlines() if "publish refused" in line][-1]
        assert reason in last, last

    tampered = key[:-1] + ("A" if key[-1] != "A" else "B")
    rejected(f"#!::r={tampered},m=publish", "publish refused: ")
    rejected(f"#!::r={key},m=request", "not m=request")
    # A caller that names its key length and encrypts, to this listener without a
    # passphrase: refused before srt-protocol sees it.
    rejected(f"{key}&passphrase=0123456789abcdef&pbkeylen=16", "has no passphrase")
    assert gateway.metrics()["gateway_srt_listener_restarts_total"] == 0

    # One that encrypts without naming a key length cannot be told from a plain caller
    # before accepting, and accepting it panics in srt-protocol 0.4.4's listener task (see
    # `srt::serve`): the gateway binds the listener again and SRT keeps working (the
    # refusals below go through the new listener).
    caller = publish_srt(gateway.srt_url(f"{key}&passphrase=0123456789abcdef"), 4)
    assert caller.wait(timeout=30) != 0
    wait_until(lambda: gateway.metrics()["gateway_srt_listener_restarts_total"] == 1, timeout_s=10)
    wait_until(lambda: "binding it again" in gateway.log())

    r = api.post(f"/api/channels/{ch['id']}/stream-key/rotate", headers=bearer(user["token"]))
    assert r.status_code == 200, r.text
    rejected(key, "rotated")
    rejected("not/a-token", "not an ingest key")

    assert gateway.metrics()["gateway_publishes_refused_total"] >= refused_before + 5
    assert stored(api, ch["id"]) == {"broadcasts": 0, "videos": 0, "blobs": [], "playlists": []}
    assert channel(api, ch["id"])["live"] is False


def test_an_srt_encoder_that_dies_and_calls_again_continues_one_broadcast(api, gateway):
    """The encoder dies (SIGKILL: no SRT shutdown) and calls again, retrying as encoders do:
    once its old connection has been silent for the takeover time, the new call takes the
    key over, the old stream is parked and the new session resumes it. With B-frames, as
    OBS's x264 sends them: a session cut after a P-frame whose B-frames never came ends with
    a picture presented late, and the resumed keyframe is placed after it
    (`stream::Timeline`), so the stitched recording decodes clean."""
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    reconnects = gateway.metrics()["gateway_reconnects_total"]
    started = time.monotonic()
    first = publish_srt(gateway.srt_url(key), 30)
    kill_after_segments(api, ch["id"], first, 3)
    first_s = time.monotonic() - started

    second_s = 8
    second = None
    for _ in range(40):
        call = publish_srt(gateway.srt_url(key), second_s)
        try:
            # Rejected calls fail at the handshake, within a second or two.
            call.wait(timeout=3)
        except subprocess.TimeoutExpired:
            second = call
            break
    assert second is not None, gateway.log()
    assert second.wait(timeout=60) == 0, second.stderr.read().decode()
    wall_s = time.monotonic() - started
    log = gateway.log()
    assert "stream resumed" in log and "took the silent connection's key over" in log, log
    assert gateway.metrics()["gateway_reconnects_total"] == reconnects + 1

    # The first encoder sent at most `first_s` of media before it died (less its start-up).
    check_stitched(api, ch["id"], first_s + second_s - 4.0, wall_s)


def test_an_srt_passphrase_encrypts_and_keeps_out_callers_without_it(api, worker, tmp_path):
    """With `--srt-passphrase` the stream is AES-encrypted: ffmpeg giving the passphrase
    publishes and is recorded; a caller with none or the wrong one does not connect, and
    nothing of theirs is stored."""
    passphrase = "correct-horse-battery"
    g = SrtGateway(tmp_path, worker.url)
    g.start_args = ["--srt-passphrase", passphrase]
    g.start()
    try:
        assert '"encrypted":true' in g.log(), g.log()
        user, ch = broadcaster(api)
        key = token_of(ingest_url(api, user, ch))
        for wrong in ("", "&passphrase=wrong-horse-battery"):
            caller = publish_srt(g.srt_url(key) + wrong, 4)
            assert caller.wait(timeout=30) != 0, "a caller without the passphrase connected"
        assert stored(api, ch["id"])["broadcasts"] == 0

        pushed_s = 8
        # The caller's key length is taken (AES-256 here).
        ffmpeg = publish_srt(g.srt_url(key) + f"&passphrase={passphrase}&pbkeylen=32", pushed_s)
        assert ffmpeg.wait(timeout=60) == 0, ffmpeg.stderr.read().decode()
        _, kept = check_recording(api, ch["id"], pushed_s)
        assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept
        assert g.metrics()["gateway_srt_listener_restarts_total"] == 0
    finally:
        g.stop()
