"""Hostile credentials: tampered, truncated, re-scoped, expired, future-dated, `alg:none`
(unsigned) and wrong-key tokens for sessions (JWT, made with PyJWT), ingest and playback URL
tokens (signed here like the worker does, with the development secret), plugin task tokens,
and transcoder callbacks (Standard Webhooks, signed with the official library). Every one is
refused with a JSON error, and nothing is stored: no channel, no segment, no video change, no
recorded task answer. Each attack family ends with the genuine credential being accepted, so
the refusals are not a route that refuses everything."""

import base64
import json
import secrets
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jsonschema
import jwt
import pytest
import requests
from standardwebhooks.webhooks import Webhook

from conftest import DEV_ENV, PASSWORD, ROOT, Api, approve_plugin, b64url, bearer, new_email, sign_url, signup, start_worker, wait_until
from media import push_recording, ts_segment
from receivers import Receiver, answer_task

SESSION_KEY = DEV_ENV["SESSION_SECRET"]
TRANSCODER_SECRET = DEV_ENV["TRANSCODER_SECRET"]
ISSUER = "edgevideo"
# The development secret is shorter than PyJWT recommends for HS384; that is the point.
pytestmark = pytest.mark.filterwarnings("ignore:The HMAC key is")
NONE_HEADER = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()


class FakeTranscoder:
    """Takes jobs (202) and does nothing, so videos stay `processing` until this test calls
    back itself."""

    def __init__(self):
        jobs = self.jobs = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                jobs.append(json.loads(self.rfile.read(int(self.headers.get("content-length", 0)))))
                self.send_response(202)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    """A worker of its own, wired to a transcoder that never calls back (this module
    registers plugins and plays the transcoder itself)."""
    fake = FakeTranscoder()
    w = start_worker(tmp_path_factory, fake)
    w.fake_transcoder = fake
    yield w
    w.stop()
    fake.server.shutdown()


def flip(s: str, index: int = -1) -> str:
    """`s` with one character changed (at `index`), still in the base64url alphabet."""
    c = s[index]
    return s[:index] + ("A" if c != "A" else "B") + (s[index + 1:] if index != -1 else "")


def refused(r, status=403):
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:200]}"
    code = {401: "unauthorized", 403: "forbidden"}.get(status)
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"], r.text


def claims(user, **over):
    now = int(time.time())
    return {"sub": user["user"]["id"], "email": user["user"]["email"], "role": user["user"]["role"],
            "iat": now, "exp": now + 3600, "iss": ISSUER, **over}


def test_forged_sessions_are_refused_and_create_nothing(api):
    viewer = signup(api, new_email())
    broadcaster = signup(api, new_email("broadcast.test"))
    genuine = broadcaster["token"]
    assert jwt.decode(genuine, SESSION_KEY, algorithms=["HS256"], issuer=ISSUER)["role"] == "broadcaster"
    header, payload, signature = genuine.split(".")
    admin_payload = b64url(json.dumps(claims(viewer, role="admin")).encode())
    now = int(time.time())
    attacks = {
        "tampered payload (role admin), original signature": f"{header}.{admin_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{flip(signature, 3)}",
        "truncated signature": genuine[:-6],
        "truncated to two parts": f"{header}.{payload}",
        "re-scoped to another user, original signature":
            f"{header}.{b64url(json.dumps(claims(viewer, role='broadcaster')).encode())}.{signature}",
        "expired": jwt.encode(claims(broadcaster, iat=now - 7200, exp=now - 60), SESSION_KEY, "HS256"),
        "future-dated": jwt.encode(claims(broadcaster, iat=now + 3600, exp=now + 7200), SESSION_KEY, "HS256"),
        "alg none": jwt.encode(claims(broadcaster), None, algorithm="none"),
        "alg none, genuine payload": f"{NONE_HEADER}.{payload}.",
        "HS384 with the right key": jwt.encode(claims(broadcaster), SESSION_KEY, "HS384"),
        "wrong key": jwt.encode(claims(broadcaster), "not-the-session-secret-0123456789", "HS256"),
        "wrong issuer": jwt.encode(claims(broadcaster, iss="someone-else"), SESSION_KEY, "HS256"),
        "garbage": "not.a.jwt",
    }
    name = f"attack {secrets.token_hex(4)}"
    for label, token in attacks.items():
        r = requests.get(api.base_url + "/api/me", headers=bearer(token), timeout=10)
        assert r.status_code == 401, (label, r.status_code, r.text)
        refused(r, 401)
        r = requests.get(api.base_url + "/api/me", cookies={"ev_session": token}, timeout=10)
        assert r.status_code == 401, (label, "as a cookie", r.text)
        r = requests.post(api.base_url + "/api/channels", json={"name": name}, headers=bearer(token), timeout=10)
        assert r.status_code == 401, (label, r.text)
    # Correctly signed (the key leaked, say) but claiming a role the user does not hold: the
    # stored role decides.
    escalated = jwt.encode(claims(viewer, role="admin"), SESSION_KEY, "HS256")
    r = requests.post(api.base_url + "/api/channels", json={"name": name}, headers=bearer(escalated), timeout=10)
    refused(r, 403)
    r = requests.put(api.base_url + f"/api/users/{viewer['user']['id']}/role", json={"role": "admin"},
                     headers=bearer(escalated), timeout=10)
    refused(r, 403)
    assert requests.get(api.base_url + "/api/me", headers=bearer(viewer["token"]), timeout=10).json()["user"]["role"] == "viewer"
    listed = requests.get(api.base_url + "/api/channels?limit=50", timeout=10).json()
    assert name not in json.dumps(listed), "a forged session created a channel"
    # The genuine token works.
    assert requests.get(api.base_url + "/api/me", headers=bearer(genuine), timeout=10).status_code == 200


def stored(api, channel_id):
    return api.get(f"/api/_diag/stored/{channel_id}").json()


@pytest.fixture
def broadcast(worker):
    """A broadcaster's new channel and its ingest URL; nothing pushed yet."""
    api = Api(worker.url)
    owner = signup(api, new_email("broadcast.test"))
    channel = api.post("/api/channels", json={"name": "Attacks"}, headers=bearer(owner["token"])).json()["id"]
    url = api.post(f"/api/channels/{channel}/ingest", headers=bearer(owner["token"])).json()["ingest_url"]
    return {"api": api, "owner": owner, "channel": channel, "ingest_url": url}


@pytest.fixture
def recorded(broadcast):
    """`broadcast` after a short recording was pushed with its genuine ingest URL: its video
    (`processing`, since this module's transcoder never calls back) is `broadcast["video"]`."""
    api = broadcast["api"]
    push_recording(api, broadcast["ingest_url"])
    broadcast["video"] = api.get(f"/api/channels/{broadcast['channel']}").json()["last_broadcast"]["video_id"]
    return broadcast


def test_forged_ingest_tokens_are_refused_and_store_nothing(broadcast, worker):
    api, channel = broadcast["api"], broadcast["channel"]
    token = broadcast["ingest_url"].split("/")[-2]
    unsigned, signature = token.rsplit(".", 1)
    kind, ch, version, session, exp = unsigned.split(".")
    now = int(time.time())
    playback = api.post(f"/api/channels/{channel}/playback").json()["url"].split("/")[-2]
    attacks = {
        "tampered signature": f"{unsigned}.{flip(signature, 5)}",
        "tampered channel": f"i.{flip(ch)}.{version}.{session}.{exp}.{signature}",
        "truncated signature": token[:-4],
        "no signature": unsigned,
        "empty signature (alg none)": unsigned + ".",
        "re-scoped to play (kind changed)": f"c.{ch}.{version}.{session}.{exp}.{signature}",
        "a playback token": playback,
        "an upload token": sign_url(f"u.vid_{ch[3:]}.mp4.{now + 600}"),
        "expired": sign_url(f"i.{ch}.{version}.{session}.{now - 5}"),
        "expiry extended without the key": f"i.{ch}.{version}.{session}.{now + 10 ** 6}.{signature}",
        "future key version": sign_url(f"i.{ch}.{int(version) + 5}.{session}.{exp}"),
        "a channel that does not exist": sign_url(f"i.ch_doesnotexist0000.{version}.{session}.{exp}"),
        "wrong key": sign_url(unsigned, "not-the-url-secret-0123456789abcdef"),
    }
    segment = ts_segment()
    for label, forged in attacks.items():
        for file, body in (("index0.ts", segment), ("index.m3u8", b"#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1,\nindex0.ts\n")):
            r = requests.put(f"{worker.url}/ingest/{forged}/{file}", data=body, timeout=10)
            assert r.status_code == 403, (label, file, r.text)
            refused(r)
        assert requests.delete(f"{worker.url}/ingest/{forged}/index0.ts", timeout=10).status_code == 403, label
    assert stored(api, channel) == {"broadcasts": 0, "videos": 0, "blobs": [], "playlists": []}
    assert api.get(f"/api/channels/{channel}").json()["live"] is False
    # The genuine URL still works.
    push_recording(api, broadcast["ingest_url"])
    assert stored(api, channel)["videos"] == 1


def test_forged_playback_tokens_are_refused(recorded, worker):
    broadcast = recorded
    api, channel, video = broadcast["api"], broadcast["channel"], broadcast["video"]
    hls = api.post(f"/api/videos/{video}/playback").json()["hls_url"]
    token = hls.split("/")[-2]
    live_token = api.post(f"/api/channels/{channel}/playback").json()["url"].split("/")[-2]
    segment_path = next(l for l in api.get(hls).text.splitlines() if l.endswith(".ts"))
    unsigned, signature = token.rsplit(".", 1)
    kind, vid, ch, brd, viewer, exp = unsigned.split(".")
    now = int(time.time())
    before = stored(api, channel)
    attacks = {
        "tampered signature": f"{unsigned}.{flip(signature, 2)}",
        "another video, same signature": f"v.{flip(vid)}.{ch}.{brd}.{viewer}.{exp}.{signature}",
        "another channel, same signature": f"v.{vid}.{flip(ch)}.{brd}.{viewer}.{exp}.{signature}",
        "another broadcast, same signature": f"v.{vid}.{ch}.{flip(brd)}.{viewer}.{exp}.{signature}",
        "truncated": token[:-3],
        "no signature": unsigned,
        "empty signature (alg none)": unsigned + ".",
        "re-scoped to the channel (kind changed)": f"c.{ch}.{viewer}.{exp}.{signature}",
        "the ingest token": broadcast["ingest_url"].split("/")[-2],
        "an upload token for the video": sign_url(f"u.{vid}.mp4.{now + 600}"),
        "expired": sign_url(f"v.{vid}.{ch}.{brd}.{viewer}.{now - 1}"),
        "expiry extended without the key": f"v.{vid}.{ch}.{brd}.{viewer}.{now + 10 ** 6}.{signature}",
        "wrong key": sign_url(unsigned, "not-the-url-secret-0123456789abcdef"),
    }
    for label, forged in attacks.items():
        for path in ("index.m3u8", "video.mp4", "poster.jpg", segment_path, "live.m3u8"):
            r = requests.get(f"{worker.url}/play/{forged}/{path}", timeout=10)
            assert r.status_code == 403, (label, path, r.status_code, r.text[:200])
            refused(r)
    # Scope mix-ups with genuine tokens: a video token is not a channel token and back, and a
    # video token does not open another broadcast's segments.
    refused(requests.get(f"{worker.url}/play/{token}/live.m3u8", timeout=10))
    refused(requests.get(f"{worker.url}/play/{live_token}/index.m3u8", timeout=10))
    other = segment_path.replace(segment_path.split("/")[1], "brd_notthisbroadcast0")
    refused(requests.get(f"{worker.url}/play/{token}/{other}", timeout=10))
    assert stored(api, channel) == before
    assert requests.get(hls, timeout=10).status_code == 200
    assert requests.get(f"{worker.url}/play/{token}/{segment_path}", timeout=10).status_code == 200


def signed_callback(body: dict, secret=TRANSCODER_SECRET, msg_id=None, at=None, send_body=None):
    payload = json.dumps(body)
    msg_id = msg_id or f"msg_{secrets.token_hex(8)}"
    at = at or datetime.now(timezone.utc)
    signature = Webhook(secret).sign(msg_id, at, payload)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(at.timestamp())),
               "webhook-signature": signature, "content-type": "application/json"}
    return headers, (send_body if send_body is not None else payload)


def test_forged_transcoder_callbacks_and_task_tokens_are_refused(recorded, worker):
    api, video = recorded["api"], recorded["video"]
    jobs = wait_until(lambda: [j for j in worker.fake_transcoder.jobs if j["video_id"] == video], timeout_s=20)
    schema = json.loads((ROOT / "schema" / "transcode-job.schema.json").read_text())
    jsonschema.validate(jobs[0], schema)
    login = api.post("/api/auth/login", json={"email": "admin@edgevideo.test", "password": PASSWORD})
    admin = login.json() if login.status_code == 200 else signup(api, "admin@edgevideo.test")
    developer = signup(api, new_email())
    assert api.put(f"/api/users/{developer['user']['id']}/role", json={"role": "developer"},
                   headers=bearer(admin["token"])).status_code == 200
    tasks = {}
    receivers = {}
    for name in ("first", "second"):
        receivers[name] = Receiver(on_task=lambda task, _, name=name: tasks.setdefault(name, task))
        r = api.post("/api/plugins", headers=bearer(developer["token"]),
                     json={"name": f"attack-{name}", "hook": "preValidate", "url": receivers[name].url,
                           "scope": "all"})
        assert r.status_code == 201, r.text
        approve_plugin(api, admin["token"], r.json()["plugin"]["id"])
        receivers[name].secret = r.json()["secret"]

    # A callback as the transcoder sends it (schema/transcode-callback.schema.json).
    completed = {"type": "transcode.completed", "job_id": "tr_" + video.removeprefix("vid_"),
                 "video_id": video, "duration_seconds": 4.0, "width": 320, "height": 180,
                 "size_bytes": 1000, "video_frames": 120, "audio_frames": 188}
    schema = json.loads((ROOT / "schema" / "transcode-callback.schema.json").read_text())
    jsonschema.validate(completed, schema)
    url = f"{worker.url}/api/transcoder/callback"
    headers, payload = signed_callback(completed)
    old = datetime.now(timezone.utc) - timedelta(minutes=10)
    ahead = datetime.now(timezone.utc) + timedelta(minutes=10)
    other_body = {**completed, "video_id": "vid_someoneelses00"}
    attacks = {
        "no signature headers": ({"content-type": "application/json"}, payload),
        "tampered body": signed_callback(completed, send_body=payload.replace("320", "640")),
        "signature of another message id": ({**headers, "webhook-id": "msg_other"}, payload),
        "signature of another body": (signed_callback(other_body)[0], payload),
        "truncated signature": ({**headers, "webhook-signature": headers["webhook-signature"][:-6]}, payload),
        "empty signature (alg none)": ({**headers, "webhook-signature": "v1,"}, payload),
        "another scheme": ({**headers, "webhook-signature": headers["webhook-signature"].replace("v1,", "v2,")}, payload),
        "expired timestamp": signed_callback(completed, at=old),
        "future-dated timestamp": signed_callback(completed, at=ahead),
        "wrong key": signed_callback(completed, secret="whsec_" + base64.b64encode(b"k" * 32).decode()),
    }
    for label, (h, body) in attacks.items():
        r = requests.post(url, data=body, headers=h, timeout=10)
        assert r.status_code == 403, (label, r.text)
        refused(r)
    row = api.get(f"/api/_diag/video/{video}").json()
    assert row["status"] == "processing" and row["width"] is None, row
    kinds = [e["kind"] for e in row["events"]]
    assert "transcode.finished" not in kinds and "transcode.failed" not in kinds, kinds

    # The genuine callback makes the video ready and starts the lifecycle.
    headers, payload = signed_callback(completed)
    assert requests.post(url, data=payload, headers=headers, timeout=10).status_code == 200
    first, second = (wait_until(lambda: tasks.get(n), timeout_s=30) for n in ("first", "second"))
    for label, token in {
        "tampered": flip(first["token"]),
        "truncated": first["token"][:-4],
        "empty": "",
        "the other task's token": second["token"],
        "a session token": developer["token"],
        "random of the same length": secrets.token_urlsafe(len(first["token"]))[:len(first["token"])],
    }.items():
        for error in (None, "forged failure"):
            status = answer_task({**first, "token": token}, {"valid": False, "reason": "forged"}, error=error)
            assert status == 403, (label, error, status)
    events = api.get(f"/api/_diag/video/{video}").json()["events"]
    assert not any(e["kind"] in ("plugin.succeeded", "plugin.failed") for e in events), events

    # The genuine token is accepted once. The second task is left to its deadline (8 s here):
    # the video is rejected, and the expired task's own token is refused afterwards.
    assert answer_task(first, {"valid": True}) == 200
    wait_until(lambda: api.get(f"/api/_diag/video/{video}").json()["status"] == "rejected", timeout_s=40)
    assert answer_task(second, {"valid": True}) == 409
    events = api.get(f"/api/_diag/video/{video}").json()["events"]
    succeeded = [e for e in events if e["kind"] == "plugin.succeeded"]
    assert len(succeeded) == 1 and "attack-first" in succeeded[0]["detail"], events
    assert any(e["kind"] == "plugin.timed_out" for e in events), events
    for receiver in receivers.values():
        assert receiver.rejected_signatures == 0
        receiver.close()


def test_another_sites_page_cannot_use_the_session_cookie(api):
    """Cross-site request forgery: the session cookie (SameSite=Lax already keeps it off most
    cross-site requests) does not authenticate a write whose Origin is another site, and a
    JSON route takes JSON only, so a form or a text/plain fetch cannot pass for an API call."""
    user = signup(api, new_email("broadcast.test"))
    # The cookie is Secure, so this plain-HTTP client sends it by hand, as a browser would.
    cookie = {"cookie": f"ev_session={user['token']}"}
    url = f"{api.base_url}/api/channels"
    mine = lambda: api.get("/api/channels?mine=true", headers=bearer(user["token"])).json()["channels"]  # noqa: E731
    before = len(mine())

    r = requests.post(url, json={"name": "forged"}, headers={**cookie, "origin": "https://evil.example"},
                      timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", r.text
    r = requests.post(url, data='{"name": "forged"}', timeout=10,
                      headers={**cookie, "content-type": "text/plain", "origin": api.base_url})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", r.text
    r = requests.post(url, data="name=forged", timeout=10,
                      headers={**cookie, "content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415, r.text
    assert len(mine()) == before, "nothing was created"

    # Our own pages (same Origin) and bearer callers from anywhere go through.
    r = requests.post(url, json={"name": "mine"}, headers={**cookie, "origin": api.base_url}, timeout=10)
    assert r.status_code == 201, r.text
    r = requests.post(url, json={"name": "api"}, timeout=10,
                      headers={**bearer(user["token"]), "origin": "https://evil.example"})
    assert r.status_code == 201, r.text
    assert len(mine()) == before + 2
