"""The RTMP ingest gateway with a second RTMP client that is not ffmpeg: GStreamer's
`rtmp2sink` (its own RTMP implementation: handshake, chunking, AMF commands, FLV muxing by
`flvmux`). `gst-launch-1.0` publishes a live test pattern and tone (x264enc with a 2 s GOP,
voaacenc) to the URL a user types (`rtmp://HOST:PORT/live/{TOKEN}`: app `live`, the stream
key the ingest token); the live playlist plays in ffprobe; an interrupt sends EOS, which
unpublishes cleanly, and the recording becomes a published video whose MP4 has the pushed
duration and decodes clean."""

import shutil
import signal
import subprocess
import time

import pytest

from conftest import wait_until
from media import probe
from test_gateway import check_recording, gateway, token_of  # noqa: F401  (the module's gateway fixture)
from test_live import broadcaster, channel, ingest_url

GOP_FRAMES = 60  # 2 s at 30 fps: the gateway cuts 2 s segments at keyframes
FLVMUX_LATENCY_NS = 1_000_000_000


def gst_publish(url: str) -> subprocess.Popen:
    """gst-launch-1.0 publishing RTMP as a GStreamer-based encoder would: live H.264 (High
    profile, 4:2:0, 2 s GOP, zero-latency tuning) + AAC-LC 48 kHz stereo, muxed by flvmux
    and sent by rtmp2sink until interrupted; `-e` turns the interrupt into an EOS."""
    if shutil.which("gst-launch-1.0") is None:
        pytest.fail("gst-launch-1.0 is missing: bash scripts/setup.sh installs GStreamer")
    pipeline = (
        "videotestsrc is-live=true pattern=smpte ! "
        "video/x-raw,format=I420,width=640,height=360,framerate=30/1 ! "
        f"x264enc tune=zerolatency speed-preset=veryfast bitrate=1500 key-int-max={GOP_FRAMES} ! "
        "video/x-h264,profile=high ! h264parse ! queue ! mux. "
        "audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=48000,channels=2 ! "
        "audioconvert ! voaacenc bitrate=128000 ! aacparse ! queue ! mux. "
        # Live flvmux without `latency` sent jittered and repeated FLV timestamps on a busy
        # machine (which ffmpeg does not decode clean, straight from the FLV too); with 1 s
        # to wait for late buffers they are regular.
        f"flvmux name=mux streamable=true latency={FLVMUX_LATENCY_NS} ! rtmp2sink location={url}"
    )
    return subprocess.Popen(["gst-launch-1.0", "-e", *pipeline.split()], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def test_gstreamer_rtmp2sink_publish_plays_live_then_on_demand(api, gateway):  # noqa: F811
    user, ch = broadcaster(api)
    key = token_of(ingest_url(api, user, ch))
    url = gateway.rtmp_url(key)
    assert url.endswith(f"/live/{key}")
    pushed_s = 20
    started = time.monotonic()
    gst = gst_publish(url)
    try:
        playback = api.post(f"/api/channels/{ch['id']}/playback").json()["url"]
        wait_until(lambda: gst.poll() is not None or api.get(playback).text.count("#EXTINF") >= 2,
                   timeout_s=30)
        assert gst.poll() is None, gst.stdout.read().decode()
        live = api.get(playback).text
        assert "#EXT-X-MAP" in live and "#EXT-X-ENDLIST" not in live, live
        streams = probe(playback)["streams"]
        codecs = {s["codec_type"]: s["codec_name"] for s in streams}
        assert codecs == {"video": "h264", "audio": "aac"}, codecs
        video = next(s for s in streams if s["codec_type"] == "video")
        assert (video["width"], video["height"]) == (640, 360), video
        assert channel(api, ch["id"])["live"]

        # Publish for pushed_s of wall time (the sources are live), then interrupt: with -e,
        # gst-launch sends EOS down the pipeline and rtmp2sink unpublishes before it exits.
        time.sleep(max(0.0, pushed_s - (time.monotonic() - started)))
        gst.send_signal(signal.SIGINT)
        out = gst.communicate(timeout=30)[0].decode(errors="replace")
        assert gst.returncode == 0, out
        assert "Got EOS from element" in out, out
    finally:
        if gst.poll() is None:
            gst.kill()
            gst.wait(timeout=10)

    # The EOS is a clean unpublish: the gateway flushes the last segment and sends ENDLIST.
    last = wait_until(lambda: channel(api, ch["id"])["last_broadcast"], timeout_s=30)
    assert last["reason"] == "endlist", last
    label = key[:12]
    ended = [line for line in gateway.log().splitlines() if '"publish ended"' in line and label in line]
    assert ended and '"clean":true' in ended[-1], gateway.log()[-2000:]

    mp4, kept = check_recording(api, ch["id"], pushed_s)
    picture = next(s for s in mp4["streams"] if s["codec_type"] == "video")
    assert (picture["width"], picture["height"], picture.get("profile")) == (640, 360, "High"), picture
    assert kept["broadcasts"] == 1 and kept["videos"] == 1, kept
    # What the gateway pushed: the init segment and a 2 s segment per 2 s pushed.
    media = sorted(name for name in (p.rsplit("/", 1)[1] for p in kept["blobs"])
                   if name.endswith((".m4s", ".mp4")) and ".part" not in name)
    assert media[-1] == "index_init.mp4" and len(media) >= pushed_s // 2, media
