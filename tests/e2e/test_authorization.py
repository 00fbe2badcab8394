"""The authorization matrix, generated from the one route table (`GET /api/_diag/routes`):
every route is called by every kind of caller (anonymous, viewer, broadcaster, developer,
admin, and the owner or a non-owner of a channel, video or plugin) and must answer with the
status class its access rule implies:

- `public` and `diagnostics` (development only): never 401/403;
- `authenticated`: 401 anonymous, then the route's owner rule;
- `role:X`: 401 anonymous, 403 for a stored role that does not satisfy X, then the route's
  owner rule (owner and admin allowed; a non-owner gets 403, or 404 where the handler hides
  the resource, as for plugins);
- `url_token`, `task_token`, `transcoder_signature`: a session changes nothing; a missing or
  garbage credential is refused with the status the handler gives today, and a valid one (for
  URL tokens, signed like the worker does) gets the handler's own answer (`Rule.valid_ok`).

Every call is a valid request, so an allowed caller gets the route's own success status
(`Rule.ok`, 200 unless stated; the WebSocket routes are opened with a real handshake), and a
refused one gets exactly 401, 403 or the hiding 404: a refusal can never pass for an allowed
call, nor a 400 or 404 from a badly built request. A route in the table without a rule in
RULES fails the test with the route's name, so a new route cannot be added without its
expectation."""

import time
from dataclasses import dataclass, field
from typing import Callable

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

import conftest
from conftest import DEV_ENV, PASSWORD, Api, approve_plugin, bearer, new_email, signup, start_worker, wait_until
from media import push_recording, ts_segment
from receivers import Receiver
from test_live import sign_url_token

# The status of a successful WebSocket handshake; the Spin host has no WebSockets and answers
# its documented 501 instead (after the access check, which is `public` for both routes).
SOCKET_OK = {"cloudflare": 101, "spin": 501}


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    """A worker of its own: this module registers plugins, and plugins apply to every video."""
    w = start_worker(tmp_path_factory, transcoder)
    yield w
    w.stop()


@dataclass
class Rule:
    """The expectation of one route. `params` builds the path parameters (and `body` the
    request body) for a caller from the world; `owner` names the kind of resource whose owner
    (or an admin) is allowed; `non_owner` is what anyone else with the right role gets."""
    access: str
    params: Callable[[dict, str], list] = lambda w, c: []
    body: Callable[[dict, str], dict] = lambda w, c: {}
    owner: str | None = None
    non_owner: int = 403
    # The status of an allowed call (a valid request).
    ok: int = 200
    # url_token / task_token / transcoder_signature: statuses for missing and garbage
    # credentials, and a builder of a valid credential (path params) where one is cheap, with
    # the status it gets (past the credential check: the handler's own answer).
    missing: int | None = None
    garbage: int | None = None
    valid: Callable[[dict], list] | None = None
    valid_ok: int | None = None


def p(*keys):
    return lambda w, c: [w[k] for k in keys]


def victim(kind):
    """Destructive routes: the owner and the admin each destroy their own copy; the others
    try the one that is kept."""
    return lambda w, c: [w[f"{kind}_del_{c}"] if c in ("owner", "admin") else w[f"{kind}_keep"]]


RULES: dict[str, Rule] = {
    "Health": Rule("public"),
    "Version": Rule("public"),
    "DiagRoutes": Rule("diagnostics"),
    "Signup": Rule("public", ok=202, body=lambda w, c: {"email": new_email(), "password": PASSWORD}),
    # A token that is no link: past any session check, refused by the handler itself.
    "VerifyEmail": Rule("public", ok=400, body=lambda w, c: {"token": "not-a-link", "password": PASSWORD}),
    "Login": Rule("public", body=lambda w, c: {"email": w["login_email"], "password": PASSWORD}),
    "Logout": Rule("public"),
    "Me": Rule("authenticated"),
    # A new password outside the policy: past the session check (400, not 401), and no
    # caller's sessions are ended by the matrix.
    "ChangePassword": Rule("authenticated", ok=400,
                           body=lambda w, c: {"current_password": "not checked", "new_password": "short"}),
    "SetUserRole": Rule("role:admin", params=p("target_user"), body=lambda w, c: {"role": "viewer"}),
    "CreateChannel": Rule("role:broadcaster", ok=201, body=lambda w, c: {"name": f"matrix {c}"}),
    "GetChannel": Rule("public", params=p("channel")),
    "RotateStreamKey": Rule("role:broadcaster", params=p("channel"), owner="channel"),
    "IngestUrl": Rule("role:broadcaster", params=p("channel"), owner="channel"),
    "ChannelPlayback": Rule("public", params=p("channel")),
    "ChannelSocket": Rule("public", params=p("channel")),
    "LiveChannels": Rule("public"),
    "LobbySocket": Rule("public"),
    "VideoPlayback": Rule("public", params=p("video_keep")),
    "ListVideos": Rule("public"),
    "VideoPreview": Rule("public"),
    "GetVideo": Rule("public", params=p("video_keep")),
    # The owner or an admin; a non-owner who can see the (published) video gets 403.
    "DeleteVideo": Rule("authenticated", params=victim("video"), owner="video"),
    "VideoHistory": Rule("public", params=p("video_keep")),
    "ListChannels": Rule("public"),
    "ChannelVideos": Rule("public", params=p("channel")),
    "Stats": Rule("public"),
    "IngestPut": Rule("url_token", params=lambda w, c: ["index0.ts"], missing=404, garbage=403,
                      valid=lambda w: [w["ingest_token"](), "index0.ts"], valid_ok=422),  # not media
    "IngestDelete": Rule("url_token", params=lambda w, c: ["index0.ts"], missing=404, garbage=403,
                         valid=lambda w: [w["ingest_token"](), "index0.ts"], valid_ok=204),
    "PlayLive": Rule("url_token", missing=404, garbage=403, valid=lambda w: [w["channel_token"]], valid_ok=200),
    "PlayVod": Rule("url_token", missing=404, garbage=403, valid=lambda w: [w["video_token"]], valid_ok=200),
    "PlayMp4": Rule("url_token", missing=404, garbage=403, valid=lambda w: [w["video_token"]], valid_ok=200),
    "PlaySegment": Rule("url_token", params=lambda w, c: [w["broadcast"], w["segment"]],
                        missing=404, garbage=403,
                        valid=lambda w: [w["video_token"], w["broadcast"], w["segment"]], valid_ok=200),
    "PlayPoster": Rule("url_token", missing=404, garbage=403, valid=lambda w: [w["video_token"]],
                       valid_ok=200),
    "PlayThumbnail": Rule("url_token", missing=404, garbage=403, valid=lambda w: [w["channel_token"]],
                          valid_ok=200),
    # Without its token, /play/live/index.m3u8 is the VOD playlist's path with "live" as a
    # (garbage) token: 403.
    "PlayLiveRendition": Rule("url_token", params=lambda w, c: ["index.m3u8"], missing=403, garbage=403,
                              valid=lambda w: [w["channel_token"], "index.m3u8"], valid_ok=200),
    # The matrix's recording has one rendition and no ladder: past the token, the handler's 404.
    "PlayVodRendition": Rule("url_token", params=lambda w, c: ["index.m3u8"], missing=403, garbage=403,
                             valid=lambda w: [w["video_token"], "index.m3u8"], valid_ok=404),
    "Embed": Rule("public", params=p("channel")),
    # The upload token is genuine, for a video that does not exist: past the token check, the
    # handler's 404 for the missing video.
    "Upload": Rule("url_token", missing=404, garbage=403, valid=lambda w: [w["upload_token"]], valid_ok=404),
    # Without its token, POST /upload/parts is the single-PUT route's path: 405.
    "UploadBegin": Rule("url_token", missing=405, garbage=403, valid=lambda w: [w["upload_token"]],
                        valid_ok=404),
    "UploadPart": Rule("url_token", params=lambda w, c: ["1"], missing=404, garbage=403,
                       valid=lambda w: [w["upload_token"], "1"], valid_ok=404),
    "UploadComplete": Rule("url_token", missing=404, garbage=403, valid=lambda w: [w["upload_token"]],
                           valid_ok=404),
    # Developers see and manage their own plugins; someone else's is a 404 (not revealed).
    "CreatePlugin": Rule("role:developer", ok=201, body=lambda w, c: {
        "name": f"matrix-{c}", "hook": "broadcast.ended", "url": w["receiver"].url}),
    "ListPlugins": Rule("role:developer"),
    "GetPlugin": Rule("role:developer", params=p("plugin_keep"), owner="plugin", non_owner=404),
    "UpdatePlugin": Rule("role:developer", params=p("plugin_keep"), owner="plugin", non_owner=404,
                         body=lambda w, c: {"description": f"patched by {c}"}),
    "DeletePlugin": Rule("role:developer", params=victim("plugin"), owner="plugin", non_owner=404, ok=204),
    # Admins only approve a plugin of scope `all` and revoke the approval.
    "ApprovePlugin": Rule("role:admin", params=p("plugin_keep")),
    "RevokePlugin": Rule("role:admin", params=p("plugin_keep")),
    "RotatePluginSecret": Rule("role:developer", params=p("plugin_keep"), owner="plugin", non_owner=404),
    "PluginDeliveries": Rule("role:developer", params=p("plugin_keep"), owner="plugin", non_owner=404),
    "Redeliver": Rule("role:developer", params=p("plugin_keep", "delivery"), owner="plugin", non_owner=404,
                      ok=202),
    # A task id that does not exist is 404 whatever the token (a wrong token for a real task
    # is 403: test_token_attacks); a body without a token is 400.
    "TaskSuccess": Rule("task_token", missing=400, garbage=404),
    "TaskFailure": Rule("task_token", missing=400, garbage=404),
    "TranscoderCallback": Rule("transcoder_signature", missing=403, garbage=403),
    "DiagKvGet": Rule("diagnostics", params=lambda w, c: ["matrix"]),
    "DiagKvPut": Rule("diagnostics", params=lambda w, c: ["matrix"], body=lambda w, c: {"value": c}),
    "DiagCounterIncrement": Rule("diagnostics", params=lambda w, c: ["matrix"]),
    "DiagCounterGet": Rule("diagnostics", params=lambda w, c: ["matrix"]),
    "DiagBlobPut": Rule("diagnostics", params=lambda w, c: ["matrix"], ok=201),
    "DiagBlobGet": Rule("diagnostics", params=lambda w, c: ["matrix"]),
    "DiagRoomPing": Rule("diagnostics", params=lambda w, c: ["matrix"]),
    "DiagJobEnqueue": Rule("diagnostics", params=lambda w, c: ["matrix"], ok=202),
    "DiagJobStatus": Rule("diagnostics", params=lambda w, c: ["matrix"]),
    "DiagConformance": Rule("diagnostics"),
    "DiagMetrics": Rule("diagnostics"),
    "DiagMetricsReset": Rule("diagnostics"),
    "DiagStored": Rule("diagnostics", params=p("channel")),
    "DiagViews": Rule("diagnostics", params=p("channel")),
    "DiagVideo": Rule("diagnostics", params=p("video_keep")),
}

# Callers: (name, role). "owner" owns the channel and videos (a broadcaster) and, for plugin
# routes, the developer who owns the plugins plays "owner" instead (see caller_token).
CALLERS = ["anonymous", "viewer", "broadcaster", "developer", "owner", "admin"]
ROLE_OF = {"viewer": "viewer", "broadcaster": "broadcaster", "developer": "developer", "admin": "admin"}
SATISFIES = {  # stored role -> the role requirements it satisfies
    "viewer": {"viewer"}, "broadcaster": {"broadcaster"}, "developer": {"developer"},
    "admin": {"viewer", "broadcaster", "developer", "admin"},
}


def fill(path: str, values: list) -> str:
    parts, values = path.split("/"), list(values)
    out = []
    for part in parts:
        if part.startswith("{") and part.endswith("}"):
            assert values, f"no value for {part} in {path}"
            out.append(str(values.pop(0)))
        else:
            out.append(part)
    assert not values, f"too many values for {path}"
    return "/".join(out)


def call(base, method, path, token=None, body=None):
    headers = bearer(token) if token else {}
    kwargs = {"headers": headers, "timeout": 30}
    if body is not None:
        kwargs["json"] = body
    elif method in ("PUT", "POST", "PATCH"):
        kwargs["data"] = b"x"
    return requests.request(method, base + path, **kwargs)


SOCKETS = {"ChannelSocket", "LobbySocket"}


def expected_for(rule: Rule, route: dict, caller: str, caller_role: str | None) -> int:
    """The exact status `caller` gets from a valid request to `route`."""
    access = route["access"]
    allowed = SOCKET_OK[conftest.HOST] if route["name"] in SOCKETS else rule.ok
    if access in ("public", "diagnostics"):
        return allowed
    if caller == "anonymous":
        return 401
    if access.startswith("role:") and access.split(":", 1)[1] not in SATISFIES[caller_role]:
        return 403
    if rule.owner:
        return allowed if caller in ("owner", "admin") else rule.non_owner
    return allowed


class Answer:
    """The status and text of a call that is not a plain HTTP request (a WebSocket handshake)."""

    def __init__(self, status_code: int, text: str = ""):
        self.status_code, self.text = status_code, text


def open_socket(base: str, path: str, token: str | None) -> Answer:
    """A WebSocket handshake on `path`: 101 when it opens, else the refusal's status."""
    try:
        with connect(base.replace("http", "ws", 1) + path, open_timeout=30,
                     additional_headers=bearer(token) if token else None):
            return Answer(101)
    except InvalidStatus as e:
        return Answer(e.response.status_code, e.response.body.decode(errors="replace"))


def describe(response) -> str:
    return f"{response.status_code} {response.text[:160]!r}"


@pytest.fixture(scope="module")
def routes(worker):
    r = requests.get(worker.url + "/api/_diag/routes", timeout=10)
    assert r.status_code == 200, r.text
    table = r.json()
    assert len(table) >= 40 and all({"name", "method", "path", "access"} <= set(e) for e in table)
    return table


def test_every_route_in_the_table_has_an_expectation(routes):
    names = {r["name"] for r in routes}
    missing = [f"{r['name']} ({r['method']} {r['path']}, access {r['access']})"
               for r in routes if r["name"] not in RULES]
    assert not missing, ("routes without an expectation in tests/e2e/test_authorization.py RULES: "
                         + "; ".join(missing) + ". Add a Rule for each (who may call it, and how).")
    stale = sorted(set(RULES) - names)
    assert not stale, f"RULES name routes that are no longer in the table: {stale}"
    changed = [f"{r['name']}: table says {r['access']}, RULES say {RULES[r['name']].access}"
               for r in routes if RULES[r["name"]].access != r["access"]]
    assert not changed, "access rules changed; update the expectations: " + "; ".join(changed)
    known = {"public", "authenticated", "url_token", "task_token", "transcoder_signature", "diagnostics"}
    odd = [r for r in routes if r["access"] not in known and not r["access"].startswith("role:")]
    assert not odd, f"unknown access kinds: {odd}"


def grant(api, admin, user, role):
    r = api.put(f"/api/users/{user['user']['id']}/role", json={"role": role}, headers=bearer(admin["token"]))
    assert r.status_code == 200, r.text


def new_video(api, owner, channel_id) -> str:
    url = api.post(f"/api/channels/{channel_id}/ingest", headers=bearer(owner["token"])).json()["ingest_url"]
    push_recording(api, url)
    video_id = api.get(f"/api/channels/{channel_id}").json()["last_broadcast"]["video_id"]
    return video_id


@pytest.fixture(scope="module")
def world(worker):
    api = Api(worker.url)
    # What the diagnostics routes read, so that every caller's read finds it.
    assert api.put("/api/_diag/kv/matrix", json={"value": "x"}).status_code == 200
    assert api.post("/api/_diag/counters/matrix").status_code == 200
    assert api.put("/api/_diag/blobs/matrix", data=b"blob").status_code == 201
    admin = signup(api, "admin@edgevideo.test")
    assert admin["user"]["role"] == "admin"
    owner = signup(api, new_email("broadcast.test"))
    broadcaster = signup(api, new_email("broadcast.test"))
    viewer = signup(api, new_email())
    developer = signup(api, new_email())
    plugin_owner = signup(api, new_email())
    target = signup(api, new_email())
    login_user = signup(api, new_email())
    for user in (developer, plugin_owner):
        grant(api, admin, user, "developer")
    receiver = Receiver()

    def create_plugin(name, hook):
        r = api.post("/api/plugins", headers=bearer(plugin_owner["token"]),
                     json={"name": name, "hook": hook, "url": receiver.url, "scope": "all"})
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        # Approved, so that the owner's videos below reach it (a developer owns no channel).
        return approve_plugin(api, admin["token"], r.json()["plugin"]["id"])["id"]

    # Registered first, so the videos below give it a delivery to redeliver.
    plugin_keep = create_plugin("keep", "video.ready")
    channel = api.post("/api/channels", json={"name": "Matrix"}, headers=bearer(owner["token"])).json()["id"]
    ingest_channel = api.post("/api/channels", json={"name": "Matrix ingest"},
                              headers=bearer(owner["token"])).json()["id"]
    videos = {k: new_video(api, owner, channel) for k in ("video_keep", "video_del_owner", "video_del_admin")}
    for video_id in videos.values():
        wait_until(lambda: api.post(f"/api/videos/{video_id}/playback").json().get("status") == "published",
                   timeout_s=90)
    deliveries = wait_until(lambda: api.get(f"/api/plugins/{plugin_keep}/deliveries",
                                            headers=bearer(plugin_owner["token"])).json()["deliveries"])
    playback = api.post(f"/api/videos/{videos['video_keep']}/playback").json()
    playlist = api.get(playback["hls_url"]).text
    segment_path = next(line for line in playlist.splitlines() if line.endswith(".ts"))
    _, broadcast, segment = segment_path.split("/")
    exp = int(time.time()) + 600

    def ingest_token():
        r = api.post(f"/api/channels/{ingest_channel}/ingest", headers=bearer(owner["token"]))
        return r.json()["ingest_url"].split("/")[-2]

    world = {
        "api": api, "receiver": receiver,
        "tokens": {"viewer": viewer["token"], "broadcaster": broadcaster["token"],
                   "developer": developer["token"], "admin": admin["token"]},
        "owner_tokens": {"channel": owner["token"], "video": owner["token"], "plugin": plugin_owner["token"]},
        "owner_roles": {"channel": "broadcaster", "video": "broadcaster", "plugin": "developer"},
        "target_user": target["user"]["id"], "login_email": login_user["user"]["email"],
        "channel": channel, "ingest_channel": ingest_channel, "broadcast": broadcast, "segment": segment,
        "plugin_keep": plugin_keep, "delivery": deliveries[0]["id"],
        "plugin_del_owner": create_plugin("del-owner", "broadcast.ended"),
        "plugin_del_admin": create_plugin("del-admin", "broadcast.ended"),
        "channel_token": api.post(f"/api/channels/{channel}/playback").json()["url"].split("/")[-2],
        "video_token": playback["hls_url"].split("/")[-2],
        "upload_token": sign_url_token(f"u.vid_matrixnotreal0.poster.{exp}"),
        "ingest_token": ingest_token,
        **videos,
    }
    yield world
    receiver.close()


def test_every_route_answers_every_caller_as_its_access_rule_says(worker, routes, world):
    failures, calls = [], 0
    # Destructive routes last, so the resources the others need still exist; logging out
    # (which revokes the caller's session) after everything else.
    ordered = sorted(routes, key=lambda r: (r["name"] == "Logout", r["method"] == "DELETE"))
    for route in ordered:
        rule = RULES[route["name"]]
        method, access = route["method"], route["access"]
        if access in ("url_token", "task_token", "transcoder_signature"):
            continue
        for caller in CALLERS:
            if caller == "owner":
                if not rule.owner:
                    continue
                token, role = world["owner_tokens"][rule.owner], world["owner_roles"][rule.owner]
            else:
                token, role = world["tokens"].get(caller), ROLE_OF.get(caller)
            expected = expected_for(rule, route, caller, role)
            path = fill(route["path"], rule.params(world, caller))
            body = rule.body(world, caller) if method in ("POST", "PUT", "PATCH") else None
            if route["name"] == "DiagBlobPut":
                r = requests.put(worker.url + path, data=b"blob", headers=bearer(token) if token else {}, timeout=30)
            elif route["name"] in SOCKETS:
                r = open_socket(worker.url, path, token)
            else:
                r = call(worker.url, method, path, token, body)
            calls += 1
            if r.status_code != expected:
                failures.append(f"{route['name']} {method} {path} as {caller}: expected "
                                f"{expected}, got {describe(r)}")
            elif r.status_code >= 400 and isinstance(r, requests.Response):
                error = r.json().get("error", {})
                if not (isinstance(error.get("code"), str) and isinstance(error.get("message"), str)):
                    failures.append(f"{route['name']} as {caller}: error body is not "
                                    f"{{error:{{code,message}}}}: {r.text[:160]!r}")
    assert not failures, f"{len(failures)} of {calls} calls broke the matrix:\n" + "\n".join(failures)
    # The destructive calls really happened for the allowed callers only.
    api = world["api"]
    assert api.get(f"/api/videos/{world['video_keep']}").status_code == 200
    for key in ("video_del_owner", "video_del_admin"):
        assert api.get(f"/api/_diag/video/{world[key]}").status_code == 404, key


def test_credential_routes_refuse_missing_and_garbage_credentials(worker, routes, world):
    failures = []
    sessions = [None, *world["tokens"].values()]
    for route in routes:
        rule = RULES[route["name"]]
        method, access = route["method"], route["access"]
        if access not in ("url_token", "task_token", "transcoder_signature"):
            continue
        for token in sessions:  # a session never stands in for the route's own credential
            if access == "url_token":
                garbage = fill(route["path"], ["garbage.AAAA", *rule.params(world, "")])
                missing = fill(route["path"], ["", *rule.params(world, "")]).replace("//", "/")
                attempts = [(garbage, None, rule.garbage), (missing, None, rule.missing)]
            elif access == "task_token":
                path = fill(route["path"], ["tsk_doesnotexist0000"])
                attempts = [(path, {"token": "garbage", "result": {}}, rule.garbage),
                            (path, {"result": {}}, rule.missing)]
            else:
                attempts = [(route["path"], {"type": "transcode.completed", "video_id": world["video_keep"]},
                             rule.missing)]
            for path, body, status in attempts:
                if access == "transcoder_signature" and token is None:
                    headers = {"webhook-id": "msg_x", "webhook-timestamp": str(int(time.time())),
                               "webhook-signature": "v1,Z2FyYmFnZQ=="}
                    r = requests.post(worker.url + path, json=body, headers=headers, timeout=30)
                    if r.status_code != rule.garbage:
                        failures.append(f"{route['name']} with a garbage signature: expected "
                                        f"{rule.garbage}, got {describe(r)}")
                r = call(worker.url, method, path, token, body)
                if r.status_code != status:
                    failures.append(f"{route['name']} {method} {path} (session: {bool(token)}): "
                                    f"expected {status}, got {describe(r)}")
                elif r.headers.get("content-type", "").startswith("application/json"):
                    assert r.json()["error"]["code"], r.text
        if rule.valid:
            path = fill(route["path"], rule.valid(world))
            if method == "PUT":
                # Accepted credentials reach the body checks: not media, not stored.
                r = requests.put(worker.url + path, data=b"" if "upload" in path else b"not media", timeout=30)
            else:
                r = call(worker.url, method, path)
            if r.status_code != rule.valid_ok:
                failures.append(f"{route['name']} with a valid token: expected {rule.valid_ok}, "
                                f"got {describe(r)}")
    assert not failures, "\n".join(failures)
    # The valid ingest token reached the media check, which refused the body: nothing stored.
    stored = world["api"].get(f"/api/_diag/stored/{world['ingest_channel']}").json()
    assert stored == {"broadcasts": 0, "videos": 0, "blobs": [], "playlists": []}, stored
