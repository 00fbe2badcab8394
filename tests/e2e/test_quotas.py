"""Quotas that keep one account from filling the deployment, attacked for real: a pusher
that never stops is refused past its broadcast's segment quota (nothing more stored), and
the broadcast ends as a video of what it stored."""

import pytest

import media
from conftest import Api, bearer, new_email, signup, start_worker, wait_until

MAX_SEGMENTS = 3


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    w = start_worker(tmp_path_factory, transcoder, {"MAX_BROADCAST_SEGMENTS": str(MAX_SEGMENTS)})
    yield w
    w.stop()


def test_a_broadcast_past_its_segment_quota_is_refused_and_keeps_what_it_stored(worker):
    with Api(worker.url) as api:
        owner = signup(api, new_email("broadcast.test"))
        h = bearer(owner["token"])
        channel = api.post("/api/channels", json={"name": "Endless"}, headers=h).json()["id"]
        ingest = api.post(f"/api/channels/{channel}/ingest", headers=h).json()["ingest_url"]
        base = ingest.rsplit("/", 1)[0]
        segments, _ = media.recording(seconds=5)
        stored = []
        for name, data in segments[:MAX_SEGMENTS]:
            r = api.put(f"{base}/{name}", data=data)
            assert r.status_code == 201, r.text
            stored.append(name)
        for name, data in segments[MAX_SEGMENTS:]:
            r = api.put(f"{base}/{name}", data=data)
            assert r.status_code == 422 and r.json()["error"]["code"] == "quota_exceeded", r.text
        # The playlist of what was stored ends the broadcast: a video of those segments.
        playlist = "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        playlist += "".join(f"#EXTINF:1.000000,\n{name}\n" for name in stored) + "#EXT-X-ENDLIST\n"
        r = api.put(f"{base}/index.m3u8", data=playlist.encode())
        assert r.status_code == 200 and r.json()["ended"], r.text
        video = wait_until(lambda: api.get(f"/api/channels/{channel}").json()
                           .get("last_broadcast", {}).get("video_id"))
        r = api.post(f"/api/videos/{video}/playback", headers=h)
        assert r.status_code == 200, r.text
        vod = api.get(r.json()["hls_url"])
        assert vod.status_code == 200, vod.text
        listed = [line for line in vod.text.splitlines() if line and not line.startswith("#")]
        assert len(listed) == MAX_SEGMENTS, vod.text
