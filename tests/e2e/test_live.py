"""Live broadcasting in the real Workers runtime: real ffmpeg pushes HLS to a signed ingest
URL, ffprobe plays the live playlist and then the recording, a WebSocket client watches the
viewer count, and every bad input is refused without storing anything."""

import base64
import hashlib
import hmac
import json
import time

import pytest
from websockets.sync.client import connect

import conftest

from conftest import DEV_ENV, bearer, new_email, signup, wait_until
from media import decode_errors, probe, push, ts_segment


def broadcaster(api):
    user = signup(api, new_email("broadcast.test"))
    assert user["user"]["role"] == "broadcaster"
    r = api.post("/api/channels", json={"name": "Test channel"}, headers=bearer(user["token"]))
    assert r.status_code == 201, r.text
    return user, r.json()


def ingest_url(api, user, channel):
    r = api.post(f"/api/channels/{channel['id']}/ingest", headers=bearer(user["token"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ingest_url"] in body["ffmpeg_command"]
    return body["ingest_url"]


def channel(api, channel_id):
    r = api.get(f"/api/channels/{channel_id}")
    assert r.status_code == 200, r.text
    return r.json()


def stored(api, channel_id):
    return api.get(f"/api/_diag/stored/{channel_id}").json()


def recv_until(ws, kind, timeout_s=20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        if message["type"] == kind:
            return message
    pytest.fail(f"no {kind} message within {timeout_s} s")


def sign_url_token(unsigned: str) -> str:
    key = DEV_ENV["URL_SIGNING_SECRET"].encode()
    mac = hmac.new(key, b"edgevideo/url/v1\n" + unsigned.encode(), hashlib.sha256).digest()
    return unsigned + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


# WebSockets (viewer count, live/ended pushes) exist only where Durable Objects hold them.
@pytest.mark.cloudflare
def test_broadcast_plays_live_then_on_demand(api, worker):
    user, ch = broadcaster(api)
    url = ingest_url(api, user, ch)
    ws_url = worker.url.replace("http", "ws") + f"/api/channels/{ch['id']}/ws"
    assert channel(api, ch["id"])["viewers"] == 0

    with connect(ws_url) as ws:
        assert recv_until(ws, "viewers")["count"] == 1
        assert recv_until(ws, "hello")["status"]["live"] is None
        assert channel(api, ch["id"])["viewers"] == 1

        pushed_s = 10
        ffmpeg = push(url, pushed_s)
        live = recv_until(ws, "live")
        assert live["channel_id"] == ch["id"]

        playback = api.post(f"/api/channels/{ch['id']}/playback").json()["url"]
        wait_until(lambda: api.get(playback).text.count("#EXTINF") >= 2, timeout_s=20)
        r = api.get(playback)
        assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert "max-age=1" in r.headers["cache-control"]
        assert "#EXT-X-PROGRAM-DATE-TIME" in r.text and "#EXT-X-ENDLIST" not in r.text
        codecs = {s["codec_type"]: s["codec_name"] for s in probe(playback)["streams"]}
        assert codecs == {"video": "h264", "audio": "aac"}, codecs
        # The live list is an edge-cached snapshot, rebuilt at most every 2 s.
        live_ids = lambda: {c["channel_id"] for c in api.get("/api/live").json()["channels"]}  # noqa: E731
        wait_until(lambda: ch["id"] in live_ids(), timeout_s=5)

        # A second encoder on the same channel is refused and the broadcast goes on.
        second = ingest_url(api, user, ch)
        r = api.put(second.replace("index.m3u8", "index0.ts"), data=ts_segment())
        assert r.status_code == 409, r.text
        status = channel(api, ch["id"])
        assert status["live"] and "another broadcast" in status["ingest_refused"]["reason"]

        assert ffmpeg.wait(timeout=60) == 0, ffmpeg.stderr.read().decode()
        ended = recv_until(ws, "ended")
        assert ended["reason"] == "endlist"
    wait_until(lambda: channel(api, ch["id"])["viewers"] == 0)

    # The live playlist is cached at the edge for half a segment: the end shows within it.
    wait_until(lambda: "#EXT-X-ENDLIST" in api.get(playback).text, timeout_s=5)
    video_id = channel(api, ch["id"])["last_broadcast"]["video_id"]
    assert video_id == ended["video_id"]
    wait_until(lambda: ch["id"] not in live_ids(), timeout_s=5)

    vod = api.post(f"/api/videos/{video_id}/playback").json()
    playlist = api.get(vod["hls_url"]).text
    assert "#EXT-X-PLAYLIST-TYPE:VOD" in playlist and "#EXT-X-ENDLIST" in playlist
    duration = float(probe(vod["hls_url"])["format"]["duration"])
    assert abs(duration - pushed_s) <= 2.0, f"recording is {duration} s for {pushed_s} s pushed"
    assert decode_errors(vod["hls_url"]) == ""

    files = [line for line in playlist.splitlines() if line and not line.startswith("#")]
    segment_url = vod["hls_url"].rsplit("/", 1)[0] + "/" + files[0]
    r = api.get(segment_url, headers={"range": "bytes=0-187"})
    assert r.status_code == 206 and len(r.content) == 188 and r.content[0] == 0x47
    assert r.headers["content-type"] == "video/mp2t"
    assert "immutable" in r.headers["cache-control"]
    assert r.headers["content-range"].startswith("bytes 0-187/")
    assert api.get(segment_url, headers={"range": "bytes=99999999-"}).status_code == 416

    kept = stored(api, ch["id"])
    assert kept["broadcasts"] == 1 and kept["videos"] == 1
    assert len(kept["blobs"]) == len(files), "every listed segment is stored, nothing else"
    assert [p.rsplit("/", 1)[1] for p in kept["playlists"]] == ["recording.json", "vod.m3u8"]


def test_a_killed_broadcaster_is_ended_by_the_alarm_with_every_segment(api):
    user, ch = broadcaster(api)
    ffmpeg = push(ingest_url(api, user, ch), 30)
    wait_until(lambda: len(stored(api, ch["id"])["blobs"]) >= 3, timeout_s=30)
    ffmpeg.kill()
    ffmpeg.wait()
    last = wait_until(lambda: channel(api, ch["id"])["last_broadcast"], timeout_s=30)
    assert last["reason"] == "timeout"
    # Read once the broadcast has ended, so that an upload still in flight when ffmpeg died
    # is counted too: every segment stored must be in the recording, and no more.
    received = stored(api, ch["id"])["blobs"]
    vod = api.post(f"/api/videos/{last['video_id']}/playback").json()
    listed = [line for line in api.get(vod["hls_url"]).text.splitlines() if line.endswith(".ts")]
    assert sorted(f.rsplit("/", 1)[1] for f in listed) == sorted(k.rsplit("/", 1)[1] for k in received)
    assert decode_errors(vod["hls_url"]) == ""


def test_bad_ingest_is_refused_and_nothing_is_stored(api, worker):
    user, ch = broadcaster(api)
    url = ingest_url(api, user, ch)
    base, _ = url.rsplit("/", 1)
    token = base.rsplit("/", 1)[1]
    segment = ts_segment()

    tampered = base[:-1] + ("A" if base[-1] != "A" else "B")
    assert api.put(tampered + "/index0.ts", data=segment).status_code == 403
    fields = token.rsplit(".", 1)[0].split(".")
    other_channel = sign_url_token(".".join(["i", "ch_notmychannel00", *fields[2:]]))
    assert api.put(f"{worker.url}/ingest/{other_channel}/index0.ts", data=segment).status_code == 403
    expired = sign_url_token(".".join([*fields[:4], str(int(time.time()) - 10)]))
    r = api.put(f"{worker.url}/ingest/{expired}/index0.ts", data=segment)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert "expired" in channel(api, ch["id"])["ingest_refused"]["reason"]
    playback_token = api.post(f"/api/channels/{ch['id']}/playback").json()["url"].split("/")[-2]
    assert api.put(f"{worker.url}/ingest/{playback_token}/index0.ts", data=segment).status_code == 403

    r = api.put(base + "/index0.ts", data=b"<html>not a transport stream</html>")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_media"
    oversized = (b"\x47" + b"\x00" * 187) * (5 * 1024 * 1024 // 188)
    assert api.put(base + "/index0.ts", data=oversized).status_code == 413
    r = api.put(base + "/index.m3u8", data=b"this is not a playlist")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_playlist"
    assert api.put(base + "/../secret.ts", data=segment).status_code in (400, 404)
    assert api.put(base + "/notes.txt", data=b"x").status_code == 400

    assert stored(api, ch["id"]) == {"broadcasts": 0, "videos": 0, "blobs": [], "playlists": []}
    assert channel(api, ch["id"])["live"] is False

    # Rotating the stream key invalidates the URL, and the channel says why.
    r = api.post(f"/api/channels/{ch['id']}/stream-key/rotate", headers=bearer(user["token"]))
    assert r.status_code == 200 and r.json()["stream_key_version"] == 2
    assert api.put(base + "/index0.ts", data=segment).status_code == 403
    assert "rotated" in channel(api, ch["id"])["ingest_refused"]["reason"]
    assert stored(api, ch["id"])["blobs"] == []


def test_channel_routes_check_roles_and_ownership(api, worker):
    user, ch = broadcaster(api)
    other, _ = broadcaster(api)
    viewer = signup(api, new_email())
    r = api.post("/api/channels", json={"name": "x"}, headers=bearer(viewer["token"]))
    assert r.status_code == 403, "a viewer is denied a broadcaster route"
    api.cookies.clear()
    assert api.post("/api/channels", json={"name": "x"}).status_code == 401
    assert api.post(f"/api/channels/{ch['id']}/ingest", headers=bearer(other["token"])).status_code == 403
    r = api.post("/api/channels", json={"name": ""}, headers=bearer(user["token"]))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_name"
    assert api.get("/api/channels/ch_doesnotexist00").status_code == 404
    # Not a handshake: 400 where WebSockets exist; Spin has none and says so (501).
    expected_ws = 501 if conftest.HOST == "spin" else 400
    assert api.get(f"/api/channels/{ch['id']}/ws").status_code == expected_ws
    assert api.post("/api/videos/vid_doesnotexist0/playback").status_code == 404
    assert api.get("/play/garbage/live.m3u8").status_code == 403
