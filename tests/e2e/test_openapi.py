"""schema/openapi.yaml describes exactly the routes of the worker's route table, every JSON
route names its request and success bodies, and the worker's real answers (and the bodies
the tests send) validate against the schemas it documents."""

import pathlib
import sys
import threading

import jsonschema
import pytest
import requests

from conftest import PASSWORD, bearer, mail, new_email, signup, start_worker, wait_until
from media import recording
from receivers import Receiver

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "schema"))

import openapi  # noqa: E402


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    """The plugin this module registers applies to every video, so the module gets a worker
    of its own: no other test's videos run through it."""
    w = start_worker(tmp_path_factory, transcoder)
    yield w
    w.stop()


def test_openapi_matches_the_route_table(api):
    routes = api.get("/api/_diag/routes").json()
    assert len(routes) > 40
    committed = (ROOT / "schema" / "openapi.yaml").read_text()
    assert committed == openapi.render(routes), (
        "schema/openapi.yaml is out of date: python3 schema/openapi.py URL > schema/openapi.yaml")


def test_every_route_documents_its_success_bodies(api):
    document = openapi.document(api.get("/api/_diag/routes").json())
    schemas = document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, op in operations.items():
            where = f"{method.upper()} {path}"
            if op["x-edgevideo-access"] == "diagnostics":
                continue
            successes = [status for status in op["responses"] if status != "default"]
            assert successes, f"{where} documents no success answer"
            for status in successes:
                for media, content in op["responses"][status].get("content", {}).items():
                    if media == "application/json":
                        name = content["schema"]["$ref"].rsplit("/", 1)[1]
                        assert name in schemas, f"{where} {status}: no schema {name}"
            body = op.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                assert body["schema"]["$ref"].rsplit("/", 1)[1] in schemas, where


class Contract:
    """The documented operations, and a check of real requests and answers against them."""

    def __init__(self, routes: list[dict]):
        self.document = openapi.document(routes)
        self.operations = {op["operationId"]: op
                           for ops in self.document["paths"].values() for op in ops.values()}
        self.checked: set[str] = set()
        self.lock = threading.Lock()

    def validate(self, value, schema: dict, what: str):
        root = {"components": self.document["components"], **schema}
        try:
            jsonschema.Draft202012Validator(root).validate(value)
        except jsonschema.ValidationError as e:
            pytest.fail(f"{what}: {e.message} at {list(e.absolute_path)}\n{value}")

    def request(self, name: str, body: dict) -> dict:
        """`body` validated against route `name`'s documented request body."""
        op = self.operations[name[0].lower() + name[1:]]
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        self.validate(body, schema, f"request body of {name}")
        return body

    def answer(self, name: str, response: requests.Response, status: int):
        """`response` has `status`, is documented for route `name`, and its body validates;
        returns the JSON body (None for none)."""
        assert response.status_code == status, f"{name}: {response.status_code} {response.text}"
        op = self.operations[name[0].lower() + name[1:]]
        documented = op["responses"].get(str(status))
        assert documented, f"{name} answered {status}, which is not documented"
        with self.lock:
            self.checked.add(name)
        content = documented.get("content")
        if not content:
            return None
        media = response.headers["content-type"].split(";")[0].strip()
        assert media in {m.split(";")[0] for m in content}, f"{name}: content type {media}"
        if media != "application/json":
            return None
        body = response.json()
        self.validate(body, content["application/json"]["schema"], f"{name} {status}")
        return body


def test_real_answers_validate_against_the_documented_schemas(api):
    contract = Contract(api.get("/api/_diag/routes").json())
    anonymous = requests.Session()

    def call(method, path, token=None, session=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if token:
            headers.update(bearer(token))
        return (session or api).request(method, api.base_url + path, headers=headers,
                                        timeout=15, **kwargs)

    contract.answer("Version", call("GET", "/api/version"), 200)
    contract.answer("Health", call("GET", "/api/health"), 200)

    # Accounts: signup, login, the current user, a role change by an admin.
    credentials = contract.request("Signup", {"email": new_email("broadcast.test"), "password": PASSWORD})
    before = len(mail().ordered_to(credentials["email"]))
    contract.answer("Signup", call("POST", "/api/auth/signup", json=credentials), 202)
    link = contract.request("VerifyEmail", {"token": mail().link_token(credentials["email"], before),
                                            "password": PASSWORD})
    contract.answer("VerifyEmail", call("POST", "/api/auth/verify", json=link), 200)
    login = contract.answer("Login", call("POST", "/api/auth/login", json=credentials), 200)
    token = login["token"]
    contract.answer("Me", call("GET", "/api/me", token), 200)
    r = call("POST", "/api/auth/login", json={"email": "admin@edgevideo.test", "password": PASSWORD})
    admin = r.json() if r.status_code == 200 else signup(api, "admin@edgevideo.test")
    coder = {"email": new_email("openapi.test"), "password": PASSWORD}
    coder_id = signup(api, coder["email"])["user"]["id"]
    change = contract.request("SetUserRole", {"role": "developer"})
    contract.answer("SetUserRole", call("PUT", f"/api/users/{coder_id}/role", admin["token"],
                                        json=change), 200)
    developer = call("POST", "/api/auth/login", json=coder).json()["token"]

    # A preValidate plugin whose receiver answers each task at once (through the contract).
    task_answers = []

    def on_task(task, _event):
        body = contract.request("TaskSuccess", {"token": task["token"], "result": {"valid": True}})
        task_answers.append(requests.post(task["success_url"], json=body, timeout=10))

    receiver = Receiver(on_task=on_task)
    new_plugin = contract.request("CreatePlugin", {"name": "openapi-check", "hook": "preValidate",
                                                   "url": receiver.url, "description": "validates",
                                                   "scope": "all"})
    created = contract.answer("CreatePlugin", call("POST", "/api/plugins", developer, json=new_plugin), 201)
    receiver.secret = created["secret"]
    plugin = f"/api/plugins/{created['plugin']['id']}"
    # Scope `all` acts on other users' videos once an admin approves it.
    contract.answer("ApprovePlugin", call("POST", f"{plugin}/approve", admin["token"]), 200)
    try:
        contract.answer("ListPlugins", call("GET", "/api/plugins", developer), 200)
        contract.answer("GetPlugin", call("GET", plugin, developer), 200)
        update = contract.request("UpdatePlugin", {"description": "validates every video"})
        contract.answer("UpdatePlugin", call("PATCH", plugin, developer, json=update), 200)
        rotated = contract.answer("RotatePluginSecret", call("POST", f"{plugin}/secret/rotate", developer), 200)
        receiver.secret = rotated["secret"]

        # A channel, its ingest URL and playback; a real recording pushed to it.
        new_channel = contract.request("CreateChannel", {"name": "OpenAPI channel", "description": "checks"})
        channel = contract.answer("CreateChannel", call("POST", "/api/channels", token, json=new_channel), 201)
        path = f"/api/channels/{channel['id']}"
        contract.answer("GetChannel", call("GET", path), 200)
        contract.answer("RotateStreamKey", call("POST", f"{path}/stream-key/rotate", token), 200)
        ingest = contract.answer("IngestUrl", call("POST", f"{path}/ingest", token), 200)
        contract.answer("ChannelPlayback", call("POST", f"{path}/playback", session=anonymous), 200)
        contract.answer("LiveChannels", call("GET", "/api/live"), 200)
        base = ingest["ingest_url"].rsplit("/", 1)[0]
        segments, playlist = recording(4)
        for name, data in segments:
            contract.answer("IngestPut", requests.put(f"{base}/{name}", data=data, timeout=15), 201)
        taken = contract.answer("IngestPut", requests.put(f"{base}/index.m3u8", data=playlist, timeout=15), 200)
        assert taken["ended"]
        video_id = wait_until(lambda: (call("GET", path).json()["last_broadcast"] or {}).get("video_id"))
        video = f"/api/videos/{video_id}"
        wait_until(lambda: call("GET", video, token).json()["status"] == "published", timeout_s=60)
        # The receiver keeps the answer once its POST returns, which can be after the video
        # it let through is published (on Spin the jobs run before the response ends).
        wait_until(lambda: task_answers)
        for answer in task_answers:
            contract.answer("TaskSuccess", answer, 200)

        # The catalogue: the video, its history and playback; listings; the stats.
        contract.answer("GetVideo", call("GET", video, token), 200)
        contract.answer("GetVideo", call("GET", video, session=anonymous), 200)
        contract.answer("VideoHistory", call("GET", f"{video}/history", token), 200)
        urls = contract.answer("VideoPlayback", call("POST", f"{video}/playback", session=anonymous), 200)
        assert urls["mp4_url"] and urls["poster_url"]
        contract.answer("PlayVod", requests.get(urls["hls_url"], timeout=15), 200)
        contract.answer("PlayMp4", requests.get(urls["mp4_url"], timeout=15), 200)
        contract.answer("PlayPoster", requests.get(urls["poster_url"], timeout=15), 200)
        page = contract.answer("ListVideos", call("GET", "/api/videos", session=anonymous), 200)
        assert video_id in [v["id"] for v in page["videos"]]
        contract.answer("ListVideos", call("GET", "/api/videos", token, params={"mine": "true", "limit": "1"}), 200)
        contract.answer("ChannelVideos", call("GET", f"{path}/videos", session=anonymous), 200)
        contract.answer("VideoPreview", call("GET", "/api/videos/preview", session=anonymous), 200)
        contract.answer("ListChannels", call("GET", "/api/channels", params={"limit": "1"}), 200)
        contract.answer("ListChannels", call("GET", "/api/channels", params={"live": "true"}), 200)
        contract.answer("Stats", call("GET", "/api/stats", session=anonymous), 200)
        contract.answer("Stats", call("GET", "/api/stats", admin["token"]), 200)
        contract.answer("PluginDeliveries", call("GET", f"{plugin}/deliveries", developer), 200)
        contract.answer("Embed", call("GET", f"/embed/{video_id}"), 200)
        contract.answer("DeleteVideo", call("DELETE", video, token), 200)
    finally:
        contract.answer("DeletePlugin", call("DELETE", plugin, developer), 204)
        receiver.close()
    logout = contract.request("Logout", {"everywhere": True})
    contract.answer("Logout", call("POST", "/api/auth/logout", token, json=logout), 200)

    # A representative set: accounts, channels, ingest, playback, the catalogue, plugins.
    assert contract.checked >= {
        "Signup", "Login", "Me", "SetUserRole", "CreateChannel", "GetChannel", "ListChannels",
        "IngestUrl", "IngestPut", "ChannelPlayback", "VideoPlayback", "ListVideos", "GetVideo",
        "VideoHistory", "DeleteVideo", "CreatePlugin", "ApprovePlugin", "ListPlugins", "TaskSuccess", "Stats",
    }
