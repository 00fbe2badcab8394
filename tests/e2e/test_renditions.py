"""Renditions and CMAF: ffmpeg pushes a two-rendition ladder (CMAF, and MPEG-TS) to a signed
ingest URL; ffprobe reads the multivariant live playlist and every rendition, the recording
keeps every rendition as VOD and becomes one MP4 of the top rendition; bad CMAF and ladder
input is refused with a clear error and nothing is stored."""

import pytest

from conftest import bearer, wait_until
from media import cmaf_recording, decode_errors, probe, push_ladder, thumbnail_jpeg, ts_segment
from test_live import broadcaster, channel, ingest_url, stored


def uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def beside(url: str, name: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + name


@pytest.mark.parametrize("segment_type", ["fmp4", "mpegts"])
def test_a_ladder_plays_live_per_rendition_then_on_demand_and_as_the_top_renditions_mp4(api, segment_type):
    user, ch = broadcaster(api)
    pushed_s = 10
    ffmpeg = push_ladder(ingest_url(api, user, ch), pushed_s, segment_type)
    playback = api.post(f"/api/channels/{ch['id']}/playback").json()["url"]
    wait_until(lambda: api.get(playback).text.count("#EXT-X-STREAM-INF") == 2, timeout_s=20)
    r = api.get(playback)
    assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
    master = r.text
    assert "RESOLUTION=1280x720" in master and "RESOLUTION=640x360" in master, master
    assert 'CODECS="avc1.' in master and "mp4a.40.2" in master, master
    # Highest bandwidth first, each a rendition playlist under live/.
    assert uris(master) == ["live/stream_0.m3u8", "live/stream_1.m3u8"], master
    for variant in uris(master):
        url = beside(playback, variant)
        wait_until(lambda: api.get(url).text.count("#EXTINF") >= 2, timeout_s=20)
        text = api.get(url).text
        segments = uris(text)
        if segment_type == "fmp4":
            assert '#EXT-X-MAP:URI="../seg/' in text and segments[0].endswith(".m4s"), text
            init = text.split('#EXT-X-MAP:URI="')[1].split('"')[0]
            r = api.get(beside(url, init))
            assert r.status_code == 200 and r.content[4:8] == b"ftyp"
            assert r.headers["content-type"] == "video/mp4"
        else:
            assert "#EXT-X-MAP" not in text and segments[0].endswith(".ts"), text
    # ffprobe reads the whole ladder: one program per rendition, each with video and audio.
    streams = probe(playback)["streams"]
    sizes = sorted((s["width"], s["height"]) for s in streams if s["codec_type"] == "video")
    assert sizes == [(640, 360), (1280, 720)], streams
    assert sorted(s["codec_name"] for s in streams) == ["aac", "aac", "h264", "h264"]

    assert ffmpeg.wait(timeout=60) == 0, ffmpeg.stderr.read().decode()
    last = wait_until(lambda: channel(api, ch["id"])["last_broadcast"], timeout_s=20)
    assert last["reason"] == "endlist"
    # The recording keeps every rendition, playable at once.
    vod = api.post(f"/api/videos/{last['video_id']}/playback").json()
    top = api.get(vod["hls_url"]).text
    assert uris(top) == ["vod/stream_0.m3u8", "vod/stream_1.m3u8"], top
    for rendition in uris(top):
        url = beside(vod["hls_url"], rendition)
        assert "#EXT-X-PLAYLIST-TYPE:VOD" in api.get(url).text
        duration = float(probe(url)["format"]["duration"])
        assert abs(duration - pushed_s) <= 1.0, f"{rendition} is {duration} s for {pushed_s} s pushed"
        assert decode_errors(url) == ""
    kept = stored(api, ch["id"])
    assert sorted(k.rsplit("/", 1)[1] for k in kept["playlists"]) == [
        "recording.json", "vod.m3u8", "vod_stream_0.m3u8", "vod_stream_1.m3u8"]

    # The video is the top rendition remuxed into one MP4.
    video = last["video_id"]
    wait_until(lambda: api.get(f"/api/_diag/video/{video}").json()["status"] == "published", timeout_s=120)
    mp4_url = api.post(f"/api/videos/{video}/playback").json()["mp4_url"]
    info = probe(mp4_url)
    video_streams = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert [(s["width"], s["height"]) for s in video_streams] == [(1280, 720)]
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}
    assert abs(float(info["format"]["duration"]) - pushed_s) <= 1.0
    assert decode_errors(mp4_url) == ""


def test_bad_cmaf_and_ladders_are_refused_and_nothing_is_stored(api):
    user, ch = broadcaster(api)
    base = ingest_url(api, user, ch).rsplit("/", 1)[0]
    files = cmaf_recording()

    def put(name, data):
        return api.put(f"{base}/{name}", data=data)

    def refused(r):
        return r.status_code, r.json()["error"]["code"]

    # Segments of the wrong container.
    assert refused(put("index0.m4s", ts_segment())) == (422, "invalid_media")
    assert refused(put("index0.m4s", files["init.mp4"])) == (422, "invalid_media")
    assert refused(put("index0.m4s", files["index0.m4s"][:-10])) == (422, "invalid_media")
    assert refused(put("init.mp4", files["index0.m4s"])) == (422, "invalid_media")
    assert refused(put("index0.ts", files["index0.m4s"])) == (422, "invalid_media")
    # Ladders we cannot serve, and CMAF segments without their init segment.
    five = "#EXTM3U\n" + "".join(f"#EXT-X-STREAM-INF:BANDWIDTH={i + 1}000\nv{i}.m3u8\n" for i in range(5))
    assert refused(put("master.m3u8", five)) == (422, "too_many_renditions")
    audio_group = ('#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="en",URI="a.m3u8"\n'
                   '#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO="a"\nindex.m3u8\n')
    assert refused(put("master.m3u8", audio_group)) == (422, "invalid_playlist")
    assert refused(put("master.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nhi/index.m3u8\n")) \
        == (422, "invalid_playlist")
    playlist = files["index.m3u8"].decode().replace("#EXT-X-ENDLIST\n", "")
    assert refused(put("index.m3u8", playlist.replace('#EXT-X-MAP:URI="init.mp4"\n', ""))) \
        == (422, "invalid_playlist")
    assert stored(api, ch["id"]) == {"broadcasts": 0, "videos": 0, "blobs": [], "playlists": []}
    assert channel(api, ch["id"])["live"] is False

    # A live CMAF rendition: its init segment and first segment, listed by its playlist.
    assert put("init.mp4", files["init.mp4"]).status_code == 201
    assert put("index0.m4s", files["index0.m4s"]).status_code == 201
    assert put("index.m3u8", playlist).status_code == 200
    # A ladder may not leave it out or declare codecs its init segment does not hold.
    assert refused(put("master.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nother.m3u8\n")) \
        == (422, "unknown_rendition")
    opus = '#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=300000,CODECS="avc1.64000d,opus"\nindex.m3u8\n'
    assert refused(put("master.m3u8", opus)) == (422, "codecs_mismatch")
    aac = opus.replace("opus", "mp4a.40.2")
    assert put("master.m3u8", aac).status_code == 200
    # After the ladder: no new rendition, no new init segment for a rendition.
    other = playlist.replace("index0.m4s", "other0.m4s").replace("index1.m4s", "other1.m4s")
    assert refused(put("other.m3u8", other)) == (422, "unknown_rendition")
    assert refused(put("index.m3u8", playlist.replace("init.mp4", "init2.mp4"))) == (422, "codecs_changed")
    assert refused(put("master.m3u8", aac.replace("index.m3u8", "index.m3u8\n#EXT-X-STREAM-INF:BANDWIDTH=2\nother.m3u8"))) \
        == (422, "unknown_rendition")

    # Nothing refused was stored, and viewers get the ladder with the one rendition.
    blobs = sorted(k.rsplit("/", 1)[1] for k in stored(api, ch["id"])["blobs"])
    assert blobs == ["index0.m4s", "init.mp4"]
    playback = api.post(f"/api/channels/{ch['id']}/playback").json()["url"]
    wait_until(lambda: "#EXT-X-STREAM-INF" in api.get(playback).text, timeout_s=5)
    assert uris(api.get(playback).text) == ["live/index.m3u8"]
    assert uris(api.get(beside(playback, "live/index.m3u8")).text)[0].endswith("/index0.m4s")


    # The broadcast page's thumbnail: checked, stored, listed with the live channel.
    jpeg = thumbnail_jpeg()
    assert refused(put("thumb.jpg", b"GIF89a" + bytes(100))) == (422, "invalid_media")
    assert put("thumb.jpg", b"\xff\xd8\xff" + bytes(300 * 1024)).status_code == 413
    assert put("thumb.jpg", jpeg).status_code == 201
    live = wait_until(lambda: next((c for c in api.get("/api/live").json()["channels"]
                                    if c["channel_id"] == ch["id"]), None), timeout_s=5)
    thumb = api.get(live["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.content == jpeg
    assert thumb.headers["content-type"] == "image/jpeg"
    # A rotated stream key stops thumbnails too.
    assert api.post(f"/api/channels/{ch['id']}/stream-key/rotate", headers=bearer(user["token"])).status_code == 200
    assert put("thumb.jpg", jpeg).status_code == 403
