"""What `POST /api/channels/{id}/ingest` tells an encoder, on both hosts: the ingest gateway's
RTMP(S) and SRT settings built from GATEWAY_RTMP_URL, GATEWAY_RTMPS_URL and GATEWAY_SRT_URL
(the development configuration offers RTMP and SRT on loopback, not RTMPS), whose stream key
is a working ingest token that rotation revokes; only the configured protocols are offered,
and a gateway URL of the wrong scheme stops the deployment with a clear configuration
error."""

import time
import urllib.parse

import requests

from conftest import DEV_ENV, Api, Worker, bearer, new_email, signup

KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def ingest(api) -> tuple[dict, dict, dict]:
    """A new broadcaster, their channel and the channel's ingest response."""
    user = signup(api, new_email("broadcast.test"))
    r = api.post("/api/channels", json={"name": "Encoder settings"}, headers=bearer(user["token"]))
    assert r.status_code == 201, r.text
    channel = r.json()
    r = api.post(f"/api/channels/{channel['id']}/ingest", headers=bearer(user["token"]))
    assert r.status_code == 200, r.text
    return user, channel, r.json()


def token_of(ingest_url: str) -> str:
    path = urllib.parse.urlsplit(ingest_url).path
    assert path.startswith("/ingest/") and path.endswith("/index.m3u8"), ingest_url
    return path.split("/")[2]


def ffmpeg_streamid(url: str) -> str | None:
    """The `streamid` of an srt:// URL as ffmpeg's libsrt reads it (`av_find_info_tag`):
    the value runs to the next `&`, `+` is a space, nothing is percent-decoded."""
    query = url.split("?", 1)[1] if "?" in url else ""
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if name == "streamid":
            return value.replace("+", " ")
    return None


def test_ingest_response_offers_the_configured_gateway(api, worker):
    user, channel, body = ingest(api)
    token = token_of(body["ingest_url"])
    assert set(token) <= KEY_CHARS, token
    ttl = 24 * 3600
    assert abs(body["expires_at"] - (time.time() + ttl)) < 120, body["expires_at"]

    rtmp_server = DEV_ENV["GATEWAY_RTMP_URL"]
    assert body["rtmp"] == {
        "server": rtmp_server,
        "stream_key": token,
        "url": f"{rtmp_server}/{token}",
    }
    srt_server = DEV_ENV["GATEWAY_SRT_URL"]
    stream_id = f"#!::r={token},m=publish"
    assert body["srt"] == {
        "server": srt_server,
        "stream_id": stream_id,
        "url": f"{srt_server}?streamid={stream_id}",
    }
    assert ffmpeg_streamid(body["srt"]["url"]) == stream_id
    assert "rtmps" not in body, "RTMPS is not configured locally"

    # The stream key is the ingest token: the edge accepts it as the gateway checks it at
    # publish (a DELETE under the ingest URL), and rotating the key revokes it at once.
    check = f"{worker.url}/ingest/{body['rtmp']['stream_key']}/publish-check.m4s"
    assert api.delete(check).status_code == 204
    r = api.post(f"/api/channels/{channel['id']}/stream-key/rotate", headers=bearer(user["token"]))
    assert r.status_code == 200, r.text
    refused = api.delete(check)
    assert refused.status_code == 403, refused.text
    assert "rotated" in refused.json()["error"]["message"]


def test_only_configured_protocols_are_offered_and_bad_ones_refused(tmp_path):
    (tmp_path / "tls").mkdir()
    only_tls = Worker(tmp_path / "tls", extra_vars={
        "GATEWAY_RTMP_URL": "",
        "GATEWAY_SRT_URL": "",
        "GATEWAY_RTMPS_URL": "rtmps://ingest.example.com:1936/live/",
    })
    only_tls.start()
    try:
        with Api(only_tls.url) as api:
            _, _, body = ingest(api)
        token = token_of(body["ingest_url"])
        assert "rtmp" not in body and "srt" not in body, body
        assert body["rtmps"] == {
            "server": "rtmps://ingest.example.com:1936/live",
            "stream_key": token,
            "url": f"rtmps://ingest.example.com:1936/live/{token}",
        }
    finally:
        only_tls.stop()

    (tmp_path / "bad").mkdir()
    bad = Worker(tmp_path / "bad", extra_vars={"GATEWAY_SRT_URL": "rtmp://ingest.example.com:8890"})
    bad.start()
    try:
        r = requests.get(bad.url + "/api/health", timeout=10)
        assert r.status_code == 503, r.text
        error = r.json()["error"]
        assert error["code"] == "misconfigured"
        assert "GATEWAY_SRT_URL" in error["message"] and "srt://" in error["message"], error
    finally:
        bad.stop()
