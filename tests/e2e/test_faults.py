"""Faults, each checked for loss: the transcoder killed in the middle of a job and the job sent
again (one MP4, the same bytes as an undisturbed run, one completion); a plugin endpoint that
refuses connections for its first attempts (retried, exactly one delivery recorded); the
Workers runtime restarted in the middle of a broadcast with its state kept (the broadcast
ends cleanly, no orphaned rows or segments); a burst of concurrent segment uploads and
playlist reads (nothing lost or reordered). ffmpeg killed mid-broadcast is in test_live.py."""

import base64
import concurrent.futures
import json
import os
import re
import secrets
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from standardwebhooks.webhooks import Webhook

import conftest
from conftest import DEV_ENV, TEST_VARS, Api, approve_plugin, bearer, free_port, new_email, signup, start_worker, wait_until
from media import decode_errors, push, push_recording, recording
from receivers import Receiver


@pytest.fixture(scope="module")
def worker(tmp_path_factory, transcoder):
    """A worker of its own: this module registers a plugin, and plugins apply to every video."""
    w = start_worker(tmp_path_factory, transcoder)
    yield w
    w.stop()


def broadcaster(api):
    user = signup(api, new_email("broadcast.test"))
    channel = api.post("/api/channels", json={"name": "Faults"}, headers=bearer(user["token"])).json()
    url = api.post(f"/api/channels/{channel['id']}/ingest", headers=bearer(user["token"])).json()["ingest_url"]
    return user, channel["id"], url


# --- the transcoder killed mid-job -----------------------------------------------------------

class Origin:
    """What the transcoder talks to: serves input segments (one of them can be held back),
    takes uploads, and records signed callbacks (verified with `standardwebhooks`)."""

    def __init__(self, segments: list[tuple[str, bytes]]):
        self.files = dict(segments)
        self.hold = None            # name of a segment whose GET waits for `release`
        self.held = threading.Event()
        self.release = threading.Event()
        self.uploads: dict[str, list[bytes]] = {}
        self.callbacks: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def reply(self, status, body=b""):
                try:
                    self.send_response(status)
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the held request's transcoder was killed

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                if name == origin.hold:
                    origin.held.set()
                    origin.release.wait(60)
                data = origin.files.get(name)
                self.reply(200, data) if data is not None else self.reply(404)

            def do_PUT(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with origin.lock:
                    origin.uploads.setdefault(self.path, []).append(body)
                self.reply(201)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                Webhook(DEV_ENV["TRANSCODER_SECRET"]).verify(body, headers)
                with origin.lock:
                    origin.callbacks.append((headers["webhook-id"], json.loads(body)))
                self.reply(200)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def job(self, job_id: str) -> dict:
        return {
            "job_id": job_id, "video_id": "vid_faultsvideo00",
            "inputs": [f"{self.url}/in/{name}" for name in self.files],
            "output_url": f"{self.url}/out/{job_id}.mp4", "poster_url": f"{self.url}/out/{job_id}.jpg",
            "callback_url": f"{self.url}/callback",
        }

    def completions(self, job_id):
        with self.lock:
            return [c for _, c in self.callbacks if c.get("job_id") == job_id or job_id in json.dumps(c)]


def submit(transcoder, job: dict) -> requests.Response:
    body = json.dumps(job)
    msg_id = f"job_{job['job_id']}"
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    signature = Webhook(DEV_ENV["TRANSCODER_SECRET"]).sign(msg_id, now, body)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
               "webhook-signature": signature, "content-type": "application/json"}
    return requests.post(transcoder.url + "/jobs", data=body, headers=headers, timeout=10)


def job_status(transcoder, job_id: str, secret: str | None = DEV_ENV["TRANSCODER_SECRET"]) -> requests.Response:
    """`GET /jobs/{job_id}`, signed like a job with the request path as the signed content
    (`secret=None`: unsigned)."""
    path = f"/jobs/{job_id}"
    headers = {}
    if secret is not None:
        from datetime import datetime, timezone
        now = datetime.now(timezone.utc)
        headers = {"webhook-id": "msg_status", "webhook-timestamp": str(int(now.timestamp())),
                   "webhook-signature": Webhook(secret).sign("msg_status", now, path)}
    return requests.get(transcoder.url + path, headers=headers, timeout=10)


def kill(transcoder):
    os.killpg(transcoder.process.pid, signal.SIGKILL)
    transcoder.process.wait(timeout=10)


def test_a_transcoder_killed_mid_job_and_rerun_gives_one_identical_mp4_and_one_completion(tmp_path):
    segments, _ = recording(6)
    origin = Origin(segments)
    (tmp_path / "reference").mkdir()
    (tmp_path / "faulty").mkdir()

    # An undisturbed run, for the bytes to compare with.
    reference = conftest.Transcoder(tmp_path / "reference").start()
    try:
        assert submit(reference, origin.job("tr_reference")).status_code == 202
        wait_until(lambda: origin.completions("tr_reference"), timeout_s=60)
    finally:
        reference.stop()
    expected = origin.uploads["/out/tr_reference.mp4"]
    assert len(expected) == 1 and expected[0][4:8] == b"ftyp"

    # The same job on another server, killed (SIGKILL) while it waits for an input.
    origin.hold = segments[len(segments) // 2][0]
    first = conftest.Transcoder(tmp_path / "faulty").start()
    job = origin.job("tr_faulty")
    assert submit(first, job).status_code == 202
    assert origin.held.wait(30), "the transcoder never asked for the held segment"
    kill(first)  # returns once the process is gone: nothing more can come from it
    origin.release.set()
    assert "/out/tr_faulty.mp4" not in origin.uploads and not origin.completions("tr_faulty")

    # Restarted on the same state directory, the job sent again (as a queue redelivers it).
    second = conftest.Transcoder(tmp_path / "faulty").start()
    try:
        r = submit(second, job)
        assert r.status_code in (200, 202), r.text
        wait_until(lambda: origin.completions("tr_faulty"), timeout_s=60)
        # Sent once more after it finished: answered from the record, not run again.
        r = submit(second, job)
        assert r.status_code == 200 and r.json()["status"] == "completed", r.text
        conflicting = {**job, "inputs": job["inputs"][:1]}
        assert submit(second, conflicting).status_code == 409
        status = job_status(second, "tr_faulty").json()
        assert status["status"] == "completed" and status["progress"] == 1.0, status
        # The status is for the holder of the secret only: unsigned or signed with another
        # secret it is a 401 that says nothing about the job.
        for secret in (None, "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()):
            r = job_status(second, "tr_faulty", secret)
            assert r.status_code == 401 and "status" not in r.json(), r.text
            assert r.json()["error"]["code"] in ("unauthenticated", "invalid_signature"), r.text
    finally:
        second.stop()  # and waited for: nothing arrives while the uploads are counted
    uploads = origin.uploads["/out/tr_faulty.mp4"]
    assert len(uploads) == 1, f"{len(uploads)} uploads of the MP4"
    assert uploads[0] == expected[0], "the re-run MP4 differs from an undisturbed run"
    completions = origin.completions("tr_faulty")
    assert len(completions) == 1 and completions[0]["type"] == "transcode.completed", completions
    out = tmp_path / "faulty.mp4"
    out.write_bytes(uploads[0])
    assert decode_errors(str(out)) == ""


# --- a plugin endpoint that is down at first -------------------------------------------------

def test_a_plugin_endpoint_down_at_first_gets_retries_then_exactly_one_delivery(api, worker):
    admin_r = api.post("/api/auth/login", json={"email": "admin@edgevideo.test", "password": conftest.PASSWORD})
    admin = admin_r.json() if admin_r.status_code == 200 else signup(api, "admin@edgevideo.test")
    developer = signup(api, new_email())
    assert api.put(f"/api/users/{developer['user']['id']}/role", json={"role": "developer"},
                   headers=bearer(admin["token"])).status_code == 200
    port = free_port()  # nothing listens here yet: connections are refused
    r = api.post("/api/plugins", headers=bearer(developer["token"]),
                 json={"name": "down-at-first", "hook": "video.ready", "url": f"http://127.0.0.1:{port}/hook",
                       "scope": "all"})
    assert r.status_code == 201, r.text
    approve_plugin(api, admin["token"], r.json()["plugin"]["id"])
    plugin, secret = r.json()["plugin"]["id"], r.json()["secret"]
    receiver = None
    try:
        user, channel, url = broadcaster(api)
        push_recording(api, url)
        video = api.get(f"/api/channels/{channel}").json()["last_broadcast"]["video_id"]

        def delivery():
            log = api.get(f"/api/plugins/{plugin}/deliveries", headers=bearer(developer["token"])).json()
            return next((d for d in log["deliveries"] if d["event_type"] == "video.ready"), None)

        wait_until(lambda: (d := delivery()) and d["attempts"] >= 2, timeout_s=60)
        receiver = Receiver(port=port)
        receiver.secret = secret
        done = wait_until(lambda: (d := delivery()) and d["status"] != "pending" and d, timeout_s=60)
        # No late duplicate: a window of a few retry intervals (1 s base here); there is no
        # event to wait for when nothing should happen.
        time.sleep(3)
        assert done["status"] == "delivered", done
        assert len(receiver.answered_2xx) == 1 and len(receiver.verified) == 1, receiver.verified
        webhook_id, event = receiver.verified[0]
        assert webhook_id == done["id"] and event["data"]["video_id"] == video, event
        attempts = done["attempt_log"]
        assert len(attempts) == done["attempts"] >= 3
        assert [a["response_status"] for a in attempts[:-1]] == [None] * (len(attempts) - 1), attempts
        assert attempts[-1]["response_status"] == 200
    finally:
        if receiver:
            receiver.close()
        api.delete(f"/api/plugins/{plugin}", headers=bearer(developer["token"]))


# --- the runtime restarted mid-broadcast -----------------------------------------------------

@pytest.mark.cloudflare
def test_a_runtime_restart_mid_broadcast_loses_nothing_and_leaves_no_orphans(tmp_path_factory, transcoder):
    state = tmp_path_factory.mktemp("restart-state")
    vars_ = dict(TEST_VARS, TRANSCODER_URL=transcoder.url)
    first = conftest.Worker(state, extra_vars=vars_)
    first.extra_vars["PUBLIC_URL"] = first.url
    first.start()
    second = None
    ffmpeg = None
    try:
        api = Api(first.url)
        user, channel, url = broadcaster(api)
        ffmpeg = push(url, 16)
        wait_until(lambda: len(api.get(f"/api/_diag/stored/{channel}").json()["blobs"]) >= 2, timeout_s=30)
        first.stop()
        # The same state directory and port, as a restarted `wrangler dev` would have.
        second = conftest.Worker(state, extra_vars=dict(first.extra_vars))
        second.port, second.url = first.port, first.url
        second.start()
        # ffmpeg ends on its own, within the time (a status, not a signal); its status may
        # report the uploads refused while the runtime was down, so it is not required to be 0.
        code = ffmpeg.wait(timeout=90)
        assert code >= 0, f"ffmpeg died of signal {-code}: {ffmpeg.stderr.read().decode()}"
        status = wait_until(lambda: (c := api.get(f"/api/channels/{channel}").json())["last_broadcast"]
                            and not c["live"] and c, timeout_s=60)
        stored = api.get(f"/api/_diag/stored/{channel}").json()
        assert stored["broadcasts"] >= 1 and stored["broadcasts"] == stored["videos"], stored
        listed = set()
        videos = api.get(f"/api/channels/{channel}/videos", headers=bearer(user["token"])).json()["videos"]
        assert len(videos) == stored["videos"], videos
        for video in videos:
            hls = api.post(f"/api/videos/{video['id']}/playback", headers=bearer(user["token"])).json()["hls_url"]
            playlist = api.get(hls).text
            assert "#EXT-X-ENDLIST" in playlist
            listed |= {line for line in playlist.splitlines() if line.endswith(".ts")}
            assert decode_errors(hls) == "", video
        kept = {"seg/" + key.split("/", 2)[2] for key in stored["blobs"]}
        assert kept == listed, f"segments stored but not in a recording: {kept - listed}; listed but missing: {listed - kept}"
        assert status["last_broadcast"]["reason"] in ("endlist", "timeout"), status
        print(f"\nrestart mid-broadcast: ffmpeg exit {ffmpeg.returncode}, {stored['broadcasts']} "
              f"broadcast(s), {len(kept)} segments kept, ended by {status['last_broadcast']['reason']}")
    finally:
        if ffmpeg and ffmpeg.poll() is None:
            ffmpeg.kill()
        for w in (second, first):
            if w:
                w.stop()


# --- a burst of concurrent uploads and reads -------------------------------------------------

def test_a_burst_of_concurrent_segment_puts_and_playlist_reads_loses_and_reorders_nothing(api, worker):
    user, channel, url = broadcaster(api)
    base = url.rsplit("/", 1)[0]
    segments, final = recording(12)
    text = final.decode()
    header = text.split("#EXTINF")[0]
    entries = re.findall(r"(#EXTINF:[^\n]*\n[^\n]+\.ts\n)", text)
    assert len(entries) == len(segments) >= 10
    live = api.post(f"/api/channels/{channel}/playback").json()["url"]
    stop = threading.Event()
    reads: list[tuple[int, int, str]] = []  # (reader, status, body), in each reader's order

    def reader(n):
        with requests.Session() as s:
            while not stop.is_set():
                r = s.get(live, timeout=10)
                reads.append((n, r.status_code, r.text))

    def put(path, body):
        with requests.Session() as s:
            return path, s.put(f"{base}/{path}", data=body, timeout=30)

    readers = [threading.Thread(target=reader, args=(n,)) for n in range(3)]
    for t in readers:
        t.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            # Every segment at once, each followed by a rolling playlist naming it, as ffmpeg's
            # uploads overlap without persistent connections.
            jobs = []
            for i, (name, data) in enumerate(segments):
                jobs.append(pool.submit(put, name, data))
                jobs.append(pool.submit(put, "index.m3u8", (header + "".join(entries[:i + 1])).encode()))
            results = [j.result() for j in jobs]
    finally:
        stop.set()
        for t in readers:
            t.join()
    bad = [(path, r.status_code, r.text[:120]) for path, r in results if r.status_code >= 300]
    assert not bad, bad
    r = api.put(f"{base}/index.m3u8", data=final)
    assert r.status_code == 200 and r.json()["ended"], r.text

    names = [name for name, _ in segments]
    # Reads during the burst: valid playlists whose segments are in order, sequence never back.
    last_sequence, seen = {}, 0
    for n, status, body in reads:
        assert status in (200, 404), (status, body[:200])
        if status == 200:
            files = [line.rsplit("/", 1)[1] for line in body.splitlines() if line.endswith(".ts")]
            positions = [names.index(f) for f in files]
            assert positions == sorted(positions) and len(set(positions)) == len(positions), files
            found = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", body)
            sequence = int(found.group(1)) if found else 0  # m3u8-rs leaves out a 0
            assert sequence >= last_sequence.get(n, 0), f"media sequence went back to {sequence}"
            assert not files or names.index(files[0]) == sequence, (sequence, files)
            last_sequence[n] = sequence
            seen += 1
    assert len(reads) > 10 and seen, "the readers saw no playlist"
    video = api.get(f"/api/channels/{channel}").json()["last_broadcast"]["video_id"]
    hls = api.post(f"/api/videos/{video}/playback").json()["hls_url"]
    listed = [line.rsplit("/", 1)[1] for line in api.get(hls).text.splitlines() if line.endswith(".ts")]
    assert listed == names, f"recording lists {listed}"
    stored = api.get(f"/api/_diag/stored/{channel}").json()
    assert sorted(k.rsplit("/", 1)[1] for k in stored["blobs"]) == sorted(names)
    assert stored["broadcasts"] == 1 and stored["videos"] == 1
    assert decode_errors(hls) == ""


# --- the transcoder killed with a backlog ----------------------------------------------------

class HoldProxy:
    """A TCP forwarder to `target` whose connections wait until `open()`: the origin as a
    transcoder sees it, held so that the transcoder is caught in the middle of its jobs."""

    def __init__(self, target_port: int):
        import socket
        self.target_port = target_port
        self.gate = threading.Event()
        self.held = 0
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        import socket
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self.forward, args=(client, socket), daemon=True).start()

    def forward(self, client, socket):
        with self.lock:
            self.held += 1
        self.gate.wait(120)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
        except OSError:
            client.close()
            return

        def pump(a, b):
            try:
                while data := a.recv(65536):
                    b.sendall(data)
            except OSError:
                pass
            finally:
                for s in (a, b):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)

    def open(self):
        self.gate.set()

    def close(self):
        self.listener.close()


def test_a_transcoder_killed_with_a_backlog_loses_no_job(tmp_path_factory):
    """Three recordings end while the transcoder (one job at a time) is stuck in the first:
    it is killed (SIGKILL) with all three accepted and none done, and replaced by a fresh one
    (an empty disk, as a replaced container has) on the same address. The edge's re-drive
    sends each lost job again (same job id) and the replacement completes every one."""
    state = tmp_path_factory.mktemp("redrive")
    (state / "first").mkdir()
    (state / "second").mkdir()
    (state / "worker").mkdir()
    first = conftest.Transcoder(state / "first", env={"TRANSCODER_WORKERS": "1"}).start()
    second = None
    worker = conftest.Worker(state / "worker", extra_vars=dict(
        TEST_VARS, TRANSCODER_URL=first.url, TRANSCODE_REDRIVE_SECONDS="3"))
    proxy = HoldProxy(worker.port)
    # The transcoder reaches the origin through the held proxy (inputs, uploads, callback).
    worker.extra_vars["PUBLIC_URL"] = proxy.url
    worker.start()
    try:
        api = Api(worker.url)
        owners = []
        for _ in range(3):
            user, channel, url = broadcaster(api)
            push_recording(api, url)
            owners.append((user, channel))

        def videos():
            found = []
            for user, channel in owners:
                listed = api.get(f"/api/channels/{channel}/videos", headers=bearer(user["token"])).json()["videos"]
                found += [(user, v["id"]) for v in listed]
            return found if len(found) == 3 else None

        recorded = wait_until(videos, timeout_s=30)
        job_ids = ["tr_" + video.removeprefix("vid_") for _, video in recorded]
        # All three accepted by the first transcoder, none finished (its first job waits on
        # the held origin).
        wait_until(lambda: all(job_status(first, j).status_code == 200 for j in job_ids), timeout_s=30)
        statuses = [job_status(first, j).json()["status"] for j in job_ids]
        assert "completed" not in statuses and proxy.held >= 1, statuses
        kill(first)

        second = conftest.Transcoder(state / "second", port=first.port).start()
        proxy.open()

        def published():
            states = [api.get(f"/api/videos/{video}", headers=bearer(user["token"])).json()["status"]
                      for user, video in recorded]
            return states if all(s == "published" for s in states) else None

        wait_until(published, timeout_s=90)
        for job_id in job_ids:
            status = job_status(second, job_id).json()
            assert status["status"] == "completed", status
        print(f"\nredrive: {len(job_ids)} jobs lost with the killed transcoder, all completed by its replacement")
    finally:
        proxy.open()
        for t in (second, first):
            if t:
                t.stop()
        worker.stop()
        proxy.close()
