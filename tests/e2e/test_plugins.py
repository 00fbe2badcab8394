"""The plugin lifecycle and signed webhook fan-out, end to end: broadcasts become videos, the
real transcoder stitches them and calls back, plugins registered as local receivers verify
every delivery with the official `standardwebhooks` library and answer their tasks, and the
video is published with merged metadata (or rejected)."""

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import jsonschema
import pytest

from conftest import ROOT, approve_plugin, bearer, new_email, signup, start_worker, wait_until
from media import decode_errors, probe, push_recording
from receivers import Receiver, answer_task

sys.path.insert(0, str(ROOT / "examples" / "plugins"))
import title_and_tags  # noqa: E402  (the example plugin shipped in the repo)
from standardwebhooks.webhooks import Webhook  # noqa: E402

DUMMY_SECRET = "whsec_" + "A" * 32


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    """Plugins apply to every video, so this module gets a worker of its own: no other
    test's videos run through its plugins."""
    w = start_worker(tmp_path_factory, transcoder)
    yield w
    w.stop()


@pytest.fixture
def developer(api):
    user = signup(api, new_email())
    admin = api.post("/api/auth/login", json={"email": "admin@edgevideo.test", "password": "correct horse battery staple"})
    admin = admin.json() if admin.status_code == 200 else signup(api, "admin@edgevideo.test")
    r = api.put(f"/api/users/{user['user']['id']}/role", json={"role": "developer"}, headers=bearer(admin["token"]))
    assert r.status_code == 200
    token = api.post("/api/auth/login", json={"email": user["user"]["email"], "password": "correct horse battery staple"}).json()["token"]
    return {"token": token, "id": user["user"]["id"], "admin_token": admin["token"]}


@pytest.fixture
def register(api, developer):
    """Registers plugins for the test, of scope `all` and approved by the admin (the videos
    are other users'), and deletes them afterwards."""
    created = []

    def _register(name: str, hook: str, receiver) -> dict:
        r = api.post("/api/plugins", headers=bearer(developer["token"]),
                     json={"name": name, "hook": hook, "url": receiver.url, "description": f"test {name}",
                           "scope": "all"})
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["secret"].startswith("whsec_")
        receiver.secret = body["secret"]
        created.append(body["plugin"]["id"])
        return approve_plugin(api, developer["admin_token"], body["plugin"]["id"])

    yield _register
    for plugin_id in created:
        api.delete(f"/api/plugins/{plugin_id}", headers=bearer(developer["token"]))


def broadcast_video(api) -> str:
    """A broadcaster pushes a short recording; returns the video it became."""
    user = signup(api, new_email("broadcast.test"))
    ch = api.post("/api/channels", json={"name": "Plugin channel"}, headers=bearer(user["token"])).json()
    url = api.post(f"/api/channels/{ch['id']}/ingest", headers=bearer(user["token"])).json()["ingest_url"]
    push_recording(api, url)
    return api.get(f"/api/channels/{ch['id']}").json()["last_broadcast"]["video_id"]


def video_status(api, video_id):
    """The video's status as its owner-independent playback answer reports it."""
    return api.post(f"/api/videos/{video_id}/playback").json().get("status")


def stored_video(api, video_id):
    return api.get(f"/api/_diag/video/{video_id}").json()


def test_full_lifecycle_publishes_with_merged_metadata(api, register):
    validator = Receiver(on_task=lambda task, _: answer_task(task, {"valid": True}))
    transcript = Receiver(on_task=lambda task, _: answer_task(task, {"transcript_url": "https://example.com/t.vtt", "words": 3}))
    watcher = Receiver()
    lifecycle_watcher = Receiver()
    keys = {}
    keys["validator"] = "plugin-" + register("validator", "preValidate", validator)["id"]
    # The shipped example plugin, run as its own server with the secret it was given.
    example = title_and_tags.Plugin(DUMMY_SECRET)
    example_server = title_and_tags.serve(example, 0)
    endpoint = type("Endpoint", (), {"url": f"http://127.0.0.1:{example_server.server_address[1]}/", "secret": None})()
    keys["title-and-tags"] = "plugin-" + register("title-and-tags", "preMetadata", endpoint)["id"]
    example.webhook = Webhook(endpoint.secret)
    keys["transcript"] = "plugin-" + register("transcript", "postMetadata", transcript)["id"]
    register("watcher", "video.published", watcher)
    register("lifecycle-watcher", "lifecycle.completed", lifecycle_watcher)
    try:
        video_id = broadcast_video(api)
        wait_until(lambda: video_status(api, video_id) == "published", timeout_s=60)
    finally:
        example_server.shutdown()
        example_server.server_close()

    video = stored_video(api, video_id)
    assert video["status"] == "published"
    assert video["title"].startswith("Plugin channel: 4 s in 320x180"), video["title"]
    assert {"live", "sd", "180p", "short"} <= set(video["tags"])
    assert video["metadata"]["transcript_url"] == "https://example.com/t.vtt"
    assert video["metadata"][keys["validator"]] == {"valid": True}
    assert video["metadata"][keys["transcript"]]["words"] == 3
    assert video["width"] == 320 and video["height"] == 180

    # Every delivery verified with the reference library and matches the published schema;
    # the hooks ran in order.
    assert validator.rejected_signatures == 0 and transcript.rejected_signatures == 0
    schema = json.loads((ROOT / "schema" / "webhook-event.schema.json").read_text())
    for receiver in (validator, transcript, watcher, lifecycle_watcher):
        for _, event in receiver.verified:
            jsonschema.validate(event, schema)
    pre = validator.events("plugin.preValidate")[0]["data"]
    post = transcript.events("plugin.postMetadata")[0]["data"]
    assert pre["pluginData"] == {}
    assert post["pluginData"][keys["validator"]] == {"valid": True}
    assert keys["title-and-tags"] in post["pluginData"]
    def about(receiver, kind):
        return [e for e in receiver.events(kind) if e["data"]["video"]["id"] == video_id]

    completed = wait_until(lambda: about(lifecycle_watcher, "lifecycle.completed"))[0]["data"]
    assert set(completed["pluginData"]) == set(keys.values())
    assert wait_until(lambda: about(watcher, "video.published"))

    # The transcoder's MP4 plays, with Range support, and the poster is a JPEG.
    playback = api.post(f"/api/videos/{video_id}/playback").json()
    assert playback["mp4_url"] and playback["poster_url"]
    assert decode_errors(playback["mp4_url"]) == ""
    info = probe(playback["mp4_url"])
    assert {s["codec_name"] for s in info["streams"]} == {"h264", "aac"}
    assert abs(float(info["format"]["duration"]) - 4.0) < 0.2
    r = api.get(playback["mp4_url"], headers={"range": "bytes=4-7"})
    assert r.status_code == 206 and r.content == b"ftyp"
    poster = api.get(playback["poster_url"])
    assert poster.status_code == 200 and poster.content[:3] == b"\xff\xd8\xff"


def test_prevalidate_invalid_rejects_the_video(api, register):
    validator = Receiver(on_task=lambda task, _: answer_task(task, {"valid": False, "reason": "too short"}))
    later = Receiver(on_task=lambda task, _: answer_task(task, {}))
    register("strict", "preValidate", validator)
    register("later", "postValidate", later)
    video_id = broadcast_video(api)
    wait_until(lambda: stored_video(api, video_id)["status"] == "rejected", timeout_s=60)
    video = stored_video(api, video_id)
    assert "too short" in video["reject_reason"]
    # The rejection closed the lifecycle (in the same write as the status), and a hook's
    # deliveries are written with its `lifecycle.hook` event: none after preValidate means
    # none was or will be sent.
    details = [e["detail"] for e in video["events"] if e["kind"] == "lifecycle.hook"]
    hooks = [(json.loads(d) if isinstance(d, str) else d)["hook"] for d in details]
    assert hooks == ["preValidate"], "no hook runs after a rejection"
    assert later.events("plugin.postValidate") == []


def test_a_failing_receiver_is_retried_until_one_success(api, register, developer):
    flaky = Receiver(statuses=[500, 503], on_task=lambda task, _: answer_task(task, {"valid": True}))
    plugin = register("flaky", "preValidate", flaky)
    video_id = broadcast_video(api)
    wait_until(lambda: video_status(api, video_id) == "published", timeout_s=60)
    assert len(flaky.answered_2xx) == 1, "exactly one successful delivery"
    ids = {webhook_id for webhook_id, _ in flaky.verified}
    assert len(ids) == 1 and len(flaky.verified) == 3, "the same webhook-id on every attempt"
    log = api.get(f"/api/plugins/{plugin['id']}/deliveries", headers=bearer(developer["token"])).json()["deliveries"]
    delivery = next(d for d in log if d["event_type"] == "plugin.preValidate")
    assert delivery["status"] == "delivered" and delivery["attempts"] == 3
    assert [a["response_status"] for a in delivery["attempt_log"]] == [500, 503, 200]

    # Redelivery sends it again (same id); the plugin's answer to an answered task is 409.
    r = api.post(f"/api/plugins/{plugin['id']}/deliveries/{delivery['id']}/redeliver", headers=bearer(developer["token"]))
    assert r.status_code == 202
    wait_until(lambda: len(flaky.verified) == 4)
    assert flaky.verified[-1][0] == delivery["id"]


def test_a_receiver_that_never_answers_takes_the_deadline_path(api, register):
    silent = Receiver()  # acknowledges deliveries, never answers its task
    register("silent", "postValidate", silent)
    video_id = broadcast_video(api)
    wait_until(lambda: silent.events("plugin.postValidate"), timeout_s=60)
    # postValidate failures are recorded and the lifecycle goes on to publish.
    wait_until(lambda: video_status(api, video_id) == "published", timeout_s=30)
    history = stored_video(api, video_id)["events"]
    assert any(e["kind"] == "plugin.timed_out" for e in history)


def test_a_receiver_that_stalls_its_answer_body_times_out(api, register, developer):
    # Headers at once, the body 25 s later: the attempt must end at the delivery timeout
    # (WEBHOOK_TIMEOUT_MS, 10 s), not wait for the body.
    stalling = Receiver(stall_body_s=25)
    plugin = register("staller", "video.ready", stalling)
    broadcast_video(api)

    def first_attempt():
        log = api.get(f"/api/plugins/{plugin['id']}/deliveries", headers=bearer(developer["token"])).json()
        attempts = [a for d in log["deliveries"] for a in d["attempt_log"]]
        return attempts and attempts[0]

    attempt = wait_until(first_attempt, timeout_s=90)
    assert attempt["response_status"] is None and "timed out" in attempt["error"], attempt
    assert attempt["latency_ms"] < 20_000, attempt
    stalling.close()


def test_redirects_are_not_followed_and_redelivery_is_limited(api, register, developer):
    # A receiver that answers 307 to another URL: the worker must not follow it (a public
    # URL could bounce a delivery to a private one), the attempt fails with the 307.
    target = Receiver()
    bouncer = Receiver(redirect_to=target.url)
    plugin = register("bouncer", "video.ready", bouncer)
    target.secret = bouncer.secret
    broadcast_video(api)
    headers = bearer(developer["token"])

    def ready_delivery():
        log = api.get(f"/api/plugins/{plugin['id']}/deliveries", headers=headers).json()["deliveries"]
        return next((d for d in log if d["event_type"] == "video.ready" and d["attempt_log"]), None)

    delivery = wait_until(ready_delivery, timeout_s=90)
    assert delivery["status"] == "failed", delivery
    assert [a["response_status"] for a in delivery["attempt_log"]] == [307]
    assert target.verified == [], "the redirect was followed"

    # Redelivery: at most 10 per plugin per (fixed) minute, then 429 with the JSON error.
    url = f"/api/plugins/{plugin['id']}/deliveries/{delivery['id']}/redeliver"
    window = int(time.time()) // 60
    accepted, r = 0, None
    for _ in range(25):
        r = api.post(url, headers=headers)
        if r.status_code != 202:
            break
        accepted += 1
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited", r.text
    if int(time.time()) // 60 == window:
        assert accepted == 10, accepted
    else:  # the minute turned during the loop: a second window's 10 at most
        assert 10 <= accepted <= 20, accepted
    wait_until(lambda: len(bouncer.verified) >= 2, timeout_s=30)
    assert target.verified == []
    bouncer.close()
    target.close()


def test_task_answers_are_checked(api, register):
    tasks = []
    holder = Receiver(on_task=lambda task, _: tasks.append(task))
    register("holder", "preValidate", holder)
    video_id = broadcast_video(api)
    task = wait_until(lambda: tasks and tasks[0], timeout_s=60)
    assert answer_task({**task, "token": "wrong"}, {"valid": True}) == 403
    oversized = {"blob": "x" * (70 * 1024)}
    assert answer_task(task, oversized) == 413
    assert answer_task(task, {"valid": True}) == 200
    assert answer_task(task, {"valid": True}) == 409, "a second answer changes nothing"
    assert answer_task(task, error="late failure") == 409
    wait_until(lambda: video_status(api, video_id) == "published", timeout_s=30)


def test_racing_answers_record_one_result(api, register):
    """Eight answers to one task at once: one is recorded (status, event, merged result),
    the others get 409 and change nothing."""
    tasks = []
    holder = Receiver(on_task=lambda task, _: tasks.append(task))
    racer = register("racer", "preValidate", holder)
    video_id = broadcast_video(api)
    task = wait_until(lambda: tasks and tasks[0], timeout_s=60)
    results = [{"valid": True, "title": f"race {i}", "tags": [f"race{i}"]} for i in range(8)]
    with ThreadPoolExecutor(len(results)) as pool:
        statuses = list(pool.map(lambda result: answer_task(task, result), results))
    assert sorted(statuses) == [200] + [409] * 7, statuses
    wait_until(lambda: video_status(api, video_id) == "published", timeout_s=30)
    video = stored_video(api, video_id)
    winner = results[statuses.index(200)]
    assert video["title"] == winner["title"]
    assert [t for t in video["tags"] if t.startswith("race")] == winner["tags"]
    assert video["metadata"][f"plugin-{racer['id']}"] == winner
    recorded = [e for e in video["events"] if e["kind"] == "plugin.succeeded"]
    assert len(recorded) == 1, recorded


def test_registration_validates_input(api, developer):
    headers = bearer(developer["token"])
    bad = [
        ({"name": "Bad Name", "hook": "preValidate", "url": "https://example.com/"}, "invalid_name"),
        ({"name": "x", "hook": "preSomething", "url": "https://example.com/"}, "invalid_hook"),
        ({"name": "x", "hook": "preValidate", "url": "ftp://example.com/"}, "invalid_url"),
        ({"name": "x", "hook": "preValidate", "url": "not a url"}, "invalid_url"),
    ]
    for body, code in bad:
        r = api.post("/api/plugins", json=body, headers=headers)
        assert r.status_code == 400 and r.json()["error"]["code"] == code, (body, r.text)
    viewer = signup(api, new_email())
    r = api.post("/api/plugins", json={"name": "x", "hook": "preValidate", "url": "https://e.com/"}, headers=bearer(viewer["token"]))
    assert r.status_code == 403
    r = api.post("/api/plugins", json={"name": "dup", "hook": "video.ready", "url": "https://e.com/"}, headers=headers)
    assert r.status_code == 201
    plugin_id = r.json()["plugin"]["id"]
    assert api.post("/api/plugins", json={"name": "dup", "hook": "video.ready", "url": "https://e.com/"}, headers=headers).status_code == 409
    assert api.get(f"/api/plugins/{plugin_id}", headers=bearer(viewer["token"])).status_code == 403
    other_dev_view = api.get(f"/api/plugins/{plugin_id}", headers=headers)
    assert other_dev_view.status_code == 200 and "secret" not in other_dev_view.text
    rotated = api.post(f"/api/plugins/{plugin_id}/secret/rotate", headers=headers).json()
    assert rotated["secret"].startswith("whsec_")
    assert api.delete(f"/api/plugins/{plugin_id}", headers=headers).status_code == 204
    assert api.get(f"/api/plugins/{plugin_id}", headers=headers).status_code == 404


def test_production_refuses_to_serve_without_its_own_secrets_key(tmp_path):
    """Plugin secrets are sealed under SECRETS_KEY, so that rotating SESSION_SECRET keeps them
    readable: production without one (or with the session secret again) serves nothing."""
    import requests

    from conftest import Worker

    strong = {"ENVIRONMENT": "production", "DIAGNOSTICS": "off", "ALLOW_PRIVATE_URLS": "",
              "SESSION_SECRET": "e2e-session-secret-0123456789abcdef-strong",
              "URL_SIGNING_SECRET": "e2e-url-signing-secret-0123456789abcdef-strong"}
    for secrets_key in ("", strong["SESSION_SECRET"]):
        state = tmp_path / f"prod{len(secrets_key)}"
        state.mkdir()
        prod = Worker(state, extra_vars={**strong, "SECRETS_KEY": secrets_key}).start()
        try:
            r = requests.get(prod.url + "/api/health", timeout=10)
            assert r.status_code == 503, r.text
            assert r.json()["error"]["code"] == "misconfigured", r.text
            assert "SECRETS_KEY" in r.json()["error"]["message"], r.text
            r = requests.post(prod.url + "/api/auth/login", json={"email": "a@b.test", "password": "x"}, timeout=10)
            assert r.status_code == 503, r.text
        finally:
            prod.stop()


def test_plugin_secrets_survive_setting_secrets_key_then_rotating_the_session_secret(tmp_path_factory, transcoder):
    """An upgrade as an operator does it, on one database: two plugins registered while the
    session secret sealed their secrets, one of them disabled; SECRETS_KEY set (the old value
    still signs, and the delivery seals both plugins' secrets again); then SESSION_SECRET
    rotated, which logs everyone out but leaves both plugins' deliveries verifying with the
    secrets they were given."""
    from conftest import TEST_VARS, Api, Worker

    state = tmp_path_factory.mktemp("upgrade-state")
    port = None

    def start(**vars_):
        nonlocal port
        w = Worker(state, extra_vars={**TEST_VARS, "TRANSCODER_URL": transcoder.url, **vars_})
        if port is None:
            port = w.port
        # The same port each time, so PUBLIC_URL (in the signed URLs handed out) stays true.
        w.port, w.url = port, f"http://127.0.0.1:{port}"
        w.extra_vars["PUBLIC_URL"] = w.url
        return w.start()

    receiver, idle = Receiver(), Receiver()

    def delivered_about(video_id, to=receiver):
        return [e for e in to.events("video.ready") if e["data"]["video_id"] == video_id]

    worker = start(SECRETS_KEY="")  # as before SECRETS_KEY existed
    try:
        api = Api(worker.url)
        admin = signup(api, "admin@edgevideo.test")
        developer = signup(api, new_email())
        r = api.put(f"/api/users/{developer['user']['id']}/role", json={"role": "developer"},
                    headers=bearer(admin["token"]))
        assert r.status_code == 200, r.text
        for name, endpoint in (("upgrade-watcher", receiver), ("upgrade-idle", idle)):
            r = api.post("/api/plugins", headers=bearer(developer["token"]),
                         json={"name": name, "hook": "video.ready", "url": endpoint.url, "scope": "all"})
            assert r.status_code == 201, r.text
            endpoint.secret = r.json()["secret"]
            endpoint.plugin = approve_plugin(api, admin["token"], r.json()["plugin"]["id"])["id"]
        r = api.patch(f"/api/plugins/{idle.plugin}", json={"enabled": False}, headers=bearer(developer["token"]))
        assert r.status_code == 200, r.text
    finally:
        worker.stop()

    worker = start()  # config/dev.env's SECRETS_KEY
    try:
        api = Api(worker.url)
        first = broadcast_video(api)
        wait_until(lambda: delivered_about(first), timeout_s=60)
        assert not idle.verified, "disabled"
        # Enabled again only now: its secret was sealed again by the other plugin's delivery.
        r = api.patch(f"/api/plugins/{idle.plugin}", json={"enabled": True}, headers=bearer(developer["token"]))
        assert r.status_code == 200, r.text
    finally:
        worker.stop()

    worker = start(SESSION_SECRET="dev-only-session-secret-rotated")
    try:
        api = Api(worker.url)
        r = api.get("/api/me", headers=bearer(developer["token"]))
        assert r.status_code == 401, "a token of the old session secret no longer signs in"
        second = broadcast_video(api)
        wait_until(lambda: delivered_about(second) and delivered_about(second, to=idle), timeout_s=60)
    finally:
        worker.stop()
        receiver.close()
        idle.close()
    assert receiver.rejected_signatures == 0 and idle.rejected_signatures == 0


def channel_developer(api, admin_token: str, name: str) -> dict:
    """A broadcaster with a channel whom the admin makes a developer. Roles are exclusive, so
    the ingest URL is taken while still a broadcaster (it is checked against the stream key,
    not the role, and keeps working)."""
    user = signup(api, new_email("broadcast.test"))
    channel = api.post("/api/channels", json={"name": name}, headers=bearer(user["token"])).json()["id"]
    url = api.post(f"/api/channels/{channel}/ingest", headers=bearer(user["token"])).json()["ingest_url"]
    r = api.put(f"/api/users/{user['user']['id']}/role", json={"role": "developer"}, headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    return {"token": user["token"], "channel": channel, "ingest_url": url}


def channel_video(api, owner: dict) -> str:
    push_recording(api, owner["ingest_url"])
    return api.get(f"/api/channels/{owner['channel']}").json()["last_broadcast"]["video_id"]


def test_plugins_act_on_their_owners_channels_until_an_admin_approves_scope_all(api, developer):
    """Two developers with a channel each and a plugin of the same name: Alice's (scope
    `own`) hears of her videos only; Bob's (scope `all`) acts on his own videos while pending
    and on Alice's once approved, and its result is kept under its id, not the shared name."""
    admin_token = developer["admin_token"]
    alice = channel_developer(api, admin_token, "Alice's plugin channel")
    bob = channel_developer(api, admin_token, "Bob's plugin channel")
    alice_hears = Receiver()
    bob_validates = Receiver(on_task=lambda task, _: answer_task(task, {"valid": True, "by": "bob"}))
    created = []

    def register(owner, hook, receiver, scope):
        r = api.post("/api/plugins", headers=bearer(owner["token"]),
                     json={"name": "scoped", "hook": hook, "url": receiver.url, "scope": scope})
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        created.append((owner, r.json()["plugin"]["id"]))
        return r.json()["plugin"]

    def about(receiver, video_id):
        return [e for _, e in receiver.verified
                if video_id in (e["data"].get("video_id"), e["data"].get("video", {}).get("id"))]

    try:
        alices_plugin = register(alice, "video.ready", alice_hears, "own")
        bobs_plugin = register(bob, "preValidate", bob_validates, "all")
        assert (alices_plugin["scope"], alices_plugin["approved"]) == ("own", False)
        assert (bobs_plugin["scope"], bobs_plugin["approved"]) == ("all", False)

        # Bob's plugin is pending: it validates Bob's video, and Alice's plugin hears nothing of it.
        bobs_video = channel_video(api, bob)
        wait_until(lambda: video_status(api, bobs_video) == "published", timeout_s=90)
        assert len(about(bob_validates, bobs_video)) == 1
        assert stored_video(api, bobs_video)["metadata"][f"plugin-{bobs_plugin['id']}"]["by"] == "bob"

        # Alice's video: only her own plugin hears of it; Bob's pending one is not asked.
        first = channel_video(api, alice)
        wait_until(lambda: video_status(api, first) == "published", timeout_s=90)
        wait_until(lambda: about(alice_hears, first), timeout_s=30)
        assert about(bob_validates, first) == []
        assert about(alice_hears, bobs_video) == []

        # Only an admin approves (Alice, Bob: 403); approved, Bob's plugin acts on Alice's video.
        for owner in (alice, bob):
            r = api.post(f"/api/plugins/{bobs_plugin['id']}/approve", headers=bearer(owner["token"]))
            assert r.status_code == 403, r.text
        approved = approve_plugin(api, admin_token, bobs_plugin["id"])
        assert approved["scope"] == "all" and approved["approved_at"]
        second = channel_video(api, alice)
        wait_until(lambda: video_status(api, second) == "published", timeout_s=90)
        assert len(about(bob_validates, second)) == 1
        metadata = stored_video(api, second)["metadata"]
        assert metadata[f"plugin-{bobs_plugin['id']}"] == {"valid": True, "by": "bob"}
        assert "plugin-scoped" not in metadata
        # Every delivery verified with the reference library.
        assert alice_hears.rejected_signatures == 0 and bob_validates.rejected_signatures == 0
    finally:
        for owner, plugin_id in created:
            api.delete(f"/api/plugins/{plugin_id}", headers=bearer(owner["token"]))
        alice_hears.close()
        bob_validates.close()
