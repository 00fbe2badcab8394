#!/usr/bin/env python3
"""edgevideo benchmarks: one run, one table of figures and ratios measured in that run.

Sections (all by default; pick with --only):
  routes     edge routes under wrk in `wrangler dev`: requests/s, p50/p99, errors and the
             runtime's CPU per request, as a ratio to the trivial route (/api/version);
             first the same for a JavaScript hello-world Worker, the runtime's own floor
  size       the Worker's Wasm, raw and gzip
  ingest     ingest-to-playlist latency: end of a segment PUT to the segment listed in the
             live playlist (the pusher sends the playlist right after, as ffmpeg does)
  fanout     plugin fan-out to 1, 10, 100 receivers that answer after 50 ms: wall time of
             the hook, as a ratio to the 1-plugin case, with the queue's batch window as
             shipped and with none; the runtime's CPU per extra plugin
  load       5 broadcasters and 200 viewer WebSockets for 60 s: errors, runtime memory
  viewers    N viewers (--viewers, 2000) with distinct playback tokens polling one live
             channel's playlist, and one of its segments, under wrk while ffmpeg pushes to it:
             requests/s, p50/p99, errors, room calls/s and blob reads/s (the worker's own
             counters), as a ratio to the trivial route; before (BYPASS_EDGE_CACHE=on, every
             request reads the room or the blob store) and after (the edge cache)
  mp4mem     runtime memory (RSS) while a ~300 MB MP4 is downloaded with `Range: bytes=0-`
             (as Chrome asks first), which the worker streams in cached chunks; MB/s
  transcoder bench/transcoder.sh (ours vs ffmpeg vs raw copy), MPEG-TS and CMAF recordings
  backlog    20 recordings (20 s each) ending together through `wrangler dev`: the time until
             every one is published with the transcoder running 1, 2 and 4 jobs at once
             (TRANSCODER_WORKERS), as a ratio to one
  golive     the broadcast page in Chromium with a fake camera: frames encoded per second per
             rendition and which ladders it sustains in real time (bench/golive.mjs); then a
             browser broadcast in `wrangler dev` watched with hls.js: segment end to listed,
             hls.js's live-latency estimate and glass to glass (the camera is a canvas painting
             the clock into each frame, read back on the watch page), median and p95
             (bench/latency.mjs)
  llhls      low-latency HLS (bench/llhls.py): 150 and 1,000 viewers (--ll-viewers) blocking on the
             next part, channel-object calls per part and errors; glass to glass through the
             ingest gateway in hls.js's low-latency mode and at normal latency (bench/latency.mjs
             --gateway), median and p95
  presence   4,500 viewer WebSockets (--sockets) joining one live channel at 100/s, spread over
             presence shards of 1,000: join errors, sockets per object, messages per join,
             the time until every socket hears the full count; then 500 reactions: the time
             until every socket heard them all, messages per reaction. (Not 5,000: `wrangler
             dev`'s workerd takes 4 file descriptors per socket and this machine allows a
             process 20,000; at ~4,900 it fails and drops every socket.)
  gateway    the RTMP gateway (bench/gateway.py): keyframe closing a segment to listed in the
             viewer's playlist; CPU and memory per stream at 10, 50, 100 streams of 6 Mbit/s,
             into `wrangler dev` and into a sink edge (bench/sink_edge.py)

Run it through `make bench` (or `bash bench/run.sh`), which sets up and builds first."""

import argparse
import gzip
import hashlib
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

import requests  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

import conftest  # noqa: E402  (the e2e harness: Worker, Transcoder, DEV_ENV)
from media import push as ffmpeg_push, recording  # noqa: E402

PASSWORD = conftest.PASSWORD
ROWS: list[tuple[str, str, str]] = []


def row(name: str, figure: str, ratio: str = "") -> None:
    ROWS.append((name, figure, ratio))
    print(f"  {name:<44} {figure:<40} {ratio}", flush=True)


class Stack:
    """A transcoder and a worker on fresh state, with benchmark settings."""

    def __init__(self, tmp: pathlib.Path, name: str, extra: dict | None = None,
                 config: pathlib.Path | None = None, transcoder_env: dict | None = None):
        (tmp / name).mkdir(parents=True, exist_ok=True)
        self.transcoder = conftest.Transcoder(tmp / name, env=transcoder_env).start()
        self.worker = conftest.Worker(tmp / name, extra_vars={
            **conftest.TEST_VARS, "LIVE_IDLE_TIMEOUT_SECONDS": "600", "LOGIN_LIMIT_PER_IP": "100000",
            **(extra or {})})
        self.worker.config = config
        self.worker.extra_vars.update({"PUBLIC_URL": self.worker.url, "TRANSCODER_URL": self.transcoder.url})
        self.worker.start()
        self.url = self.worker.url
        self.http = requests.Session()

    def stop(self):
        self.worker.stop()
        self.transcoder.stop()

    def user(self, domain="example.com", address: str | None = None) -> dict:
        """A verified account: signed up, its mailed link opened (conftest.signup)."""
        with conftest.Api(self.url) as api:
            return conftest.signup(api, address or conftest.new_email(domain), PASSWORD)

    def channel(self) -> tuple[dict, str, str]:
        """A broadcaster's channel, its ingest base URL and its live playlist URL."""
        user = self.user("broadcast.test")
        h = {"authorization": f"Bearer {user['token']}"}
        ch = self.http.post(self.url + "/api/channels", json={"name": "Bench"}, headers=h).json()
        ingest = self.http.post(self.url + f"/api/channels/{ch['id']}/ingest", headers=h).json()["ingest_url"]
        play = self.http.post(self.url + f"/api/channels/{ch['id']}/playback").json()["url"]
        return ch, ingest.rsplit("/", 1)[0], play

    def developer(self) -> str:
        admin = self.http.post(self.url + "/api/auth/login", json={"email": "admin@edgevideo.test", "password": PASSWORD})
        admin = admin.json() if admin.ok else self.user(address="admin@edgevideo.test")
        dev = self.user()
        self.http.put(self.url + f"/api/users/{dev['user']['id']}/role", json={"role": "developer"},
                      headers={"authorization": f"Bearer {admin['token']}"}).raise_for_status()
        return self.http.post(self.url + "/api/auth/login",
                              json={"email": dev["user"]["email"], "password": PASSWORD}).json()["token"]


def playlist_for(names: list[str], first: int, end: bool) -> bytes:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", f"#EXT-X-MEDIA-SEQUENCE:{first}"]
    for name in names[first:]:
        lines += ["#EXTINF:1.000000,", name]
    if end:
        lines.append("#EXT-X-ENDLIST")
    return ("\n".join(lines) + "\n").encode()


def push(stack: Stack, base: str, segments, count: int, end: bool, pace_s: float = 0.0) -> list[str]:
    """Pushes `count` segments (cycling the recording's) and rolling playlists."""
    names = []
    for i in range(count):
        _, data = segments[i % len(segments)]
        names.append(f"seg{i}.ts")
        stack.http.put(f"{base}/seg{i}.ts", data=data).raise_for_status()
        last = i == count - 1
        stack.http.put(f"{base}/index.m3u8", data=playlist_for(names, max(0, i - 5), end and last)).raise_for_status()
        if pace_s:
            time.sleep(pace_s)
    return names


def wrk(url: str, seconds: int, script: pathlib.Path | None = None) -> dict:
    """One wrk run against `url` (with a Lua `script`: its requests' paths); with the
    runtime's CPU time per request it answered."""
    cpu0 = workerd_cpu_s()
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency",
                          *(["-s", str(script)] if script else []), url],
                         capture_output=True, text=True, timeout=seconds + 60).stdout
    cpu = workerd_cpu_s() - cpu0

    def ms(label):
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not m:
            return float("nan")
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    socket = re.search(r"Socket errors:.*?(\d+).*?(\d+).*?(\d+).*?(\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, socket.groups())) if socket else 0)
    requests_done = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": ms("50%"), "p99": ms("99%"), "errors": errors,
            "cpu_ms": cpu * 1000 / max(requests_done, 1), "requests": requests_done}


class HelloWorker(conftest.WranglerWorker):
    """bench/hello-worker, the smallest JavaScript Worker, in `wrangler dev`: the runtime's
    own cost per request, for reading the routes' figures against."""

    def prepare(self, env):
        pass  # no database


def bench_runtime_floor(tmp: pathlib.Path, seconds: int) -> None:
    """The hello-world Worker under the same wrk run as the routes."""
    (tmp / "hello").mkdir(parents=True, exist_ok=True)
    worker = HelloWorker(tmp / "hello")
    worker.config = ROOT / "bench" / "hello-worker" / "wrangler.toml"
    worker.start()
    try:
        r = wrk(worker.url + "/", seconds)
        row("runtime floor: a JavaScript hello-world Worker",
            f"{r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['errors']} errors, "
            f"workerd CPU {r['cpu_ms']:.2f} ms/request", "")
    finally:
        worker.stop()


def bench_routes(tmp, seconds):
    print("routes (wrk -t2 -c16, %d s each)" % seconds)
    bench_runtime_floor(tmp, seconds)
    s = Stack(tmp, "routes")
    try:
        segments, _ = recording(4)
        _, base, live = s.channel()
        push(s, base, segments, 8, end=False)
        vod_channel, vod_base, _ = s.channel()
        push(s, vod_base, segments, 8, end=True)
        video_id = s.http.get(s.url + f"/api/channels/{vod_channel['id']}").json()["last_broadcast"]["video_id"]
        vod = s.http.post(s.url + f"/api/videos/{video_id}/playback").json()["hls_url"]
        routes = [("trivial /api/version", s.url + "/api/version"),
                  ("/api/health", s.url + "/api/health"),
                  ("live playlist", live),
                  ("VOD playlist", vod),
                  ("catalogue list /api/videos", s.url + "/api/videos?limit=20"),
                  ("video detail /api/videos/{id}", s.url + f"/api/videos/{video_id}")]
        base_rps = None
        for name, url in routes:
            if requests.get(url, timeout=10).status_code != 200:
                row(name, "route not available", "")
                continue
            r = wrk(url, seconds)
            base_rps = base_rps or r["rps"]
            row(name, f"{r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['errors']} errors, "
                f"workerd CPU {r['cpu_ms']:.2f} ms/request", f"{r['rps'] / base_rps:.2f}x")
    finally:
        s.stop()


def bench_size(_tmp, _seconds):
    print("size")
    wasm = ROOT / "workers" / "cloudflare" / "build" / "index_bg.wasm"
    data = wasm.read_bytes()
    row("Worker Wasm", f"{len(data) / 1024:.0f} KiB raw, {len(gzip.compress(data, 9)) / 1024:.0f} KiB gzip")


def bench_ingest(tmp, _seconds):
    print("ingest to live playlist")
    s = Stack(tmp, "ingest")
    try:
        segments, _ = recording(4)
        _, base, live = s.channel()
        seen: dict[str, float] = {}
        stop = threading.Event()

        def poll():
            poller = requests.Session()
            while not stop.is_set():
                try:
                    text = poller.get(live, timeout=5).text
                except requests.RequestException:
                    return  # the worker is stopping
                now = time.perf_counter()
                for name in re.findall(r"(seg\d+\.ts)", text):
                    seen.setdefault(name, now)
                time.sleep(0.002)

        names, ended = [], {}
        for i in range(21):
            _, data = segments[i % len(segments)]
            name = f"seg{i}.ts"
            names.append(name)
            s.http.put(f"{base}/{name}", data=data).raise_for_status()
            ended[name] = time.perf_counter()
            if i == 0:
                threading.Thread(target=poll, daemon=True).start()
            s.http.put(f"{base}/index.m3u8", data=playlist_for(names, max(0, i - 5), False)).raise_for_status()
            time.sleep(0.3)
        time.sleep(0.5)
        stop.set()
        lat = [(seen[n] - ended[n]) * 1000 for n in names[1:] if n in seen]
        row("segment PUT end -> listed in live playlist",
            f"median {statistics.median(lat):.1f} ms, max {max(lat):.1f} ms over {len(lat)} segments")
    finally:
        s.stop()


class FanoutReceivers:
    """One HTTP server standing for N plugin endpoints (/p0 .. /pN-1): each delivery is
    answered after 50 ms, then its task is answered."""

    def __init__(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(0.05)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()
                task = json.loads(body)["data"].get("task")
                if task:
                    threading.Thread(target=outer.answer, args=(task,), daemon=True).start()

            def log_message(self, *a):
                pass

        class Server(ThreadingHTTPServer):
            # 100 plugins' deliveries arrive at once; the default listen backlog of 5 would
            # drop their connection attempts and add TCP's 1 s, 2 s, 4 s... retry delays.
            request_queue_size = 1024
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def answer(task):
        requests.post(task["success_url"], json={"token": task["token"], "result": {"valid": True}}, timeout=30)


def shipped_batch_timeout() -> int:
    return int(re.search(r"^max_batch_timeout = (\d+)", (ROOT / "wrangler.toml").read_text(), re.M).group(1))


def wrangler_config_with_batch_timeout(seconds: int) -> pathlib.Path:
    """A copy of wrangler.toml whose queue consumer waits `seconds` to fill a batch (in
    target/bench, its relative paths rewritten to point back at the repository)."""
    text = (ROOT / "wrangler.toml").read_text()
    for key in ("main", "directory", "migrations_dir", "image"):
        text = re.sub(rf'^{key} = "(\./)?', f'{key} = "../../', text, flags=re.M)
    text = re.sub(r"^max_batch_timeout = \d+", f"max_batch_timeout = {seconds}", text, flags=re.M)
    path = ROOT / "target" / "bench" / "wrangler.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def workerd_cpu_s() -> float:
    """CPU time (user + system) used so far by the workerd processes."""
    ticks = 0
    for pid in subprocess.run(["pgrep", "-x", "workerd"], capture_output=True, text=True).stdout.split():
        try:
            fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def bench_fanout(tmp, _seconds):
    """Each plugin's receiver answers its delivery after 50 ms, then answers its task. Run with
    the queue's batch window as shipped (a hook's fan-out fills a batch and goes at once; a
    lone delivery waits for the window) and with no window (every hook goes at once, so the
    figures show what each plugin costs)."""
    receivers = FanoutReceivers()
    shipped = shipped_batch_timeout()
    for window in (shipped, 0):
        print(f"plugin fan-out (preValidate, receivers answer after 50 ms; queue batch window {window} s)")
        config = None if window == shipped else wrangler_config_with_batch_timeout(window)
        base_ms = base_cpu = None
        for n in (1, 10, 100):
            s = Stack(tmp, f"fanout{n}-w{window}", {"PLUGIN_DEADLINES_SECONDS": "300,300,300,300"}, config)
            try:
                token = s.developer()
                for i in range(n):
                    s.http.post(s.url + "/api/plugins", headers={"authorization": f"Bearer {token}"},
                                json={"name": f"p{i}", "hook": "preValidate", "url": f"{receivers.url}/p{i}"}).raise_for_status()
                segments, _ = recording(4)
                cpu0 = workerd_cpu_s()
                ch, base, _ = s.channel()
                push(s, base, segments, len(segments), end=True)
                video_id = s.http.get(s.url + f"/api/channels/{ch['id']}").json()["last_broadcast"]["video_id"]
                deadline = time.monotonic() + 120
                video = {}
                while time.monotonic() < deadline:
                    video = s.http.get(s.url + f"/api/_diag/video/{video_id}").json()
                    if video.get("status") in ("published", "rejected"):
                        break
                    time.sleep(0.1)
                cpu = workerd_cpu_s() - cpu0
                events = {e["kind"]: e["created_at"] for e in video.get("events", [])}
                wall = events.get("lifecycle.completed", 0) - events.get("lifecycle.hook", 0)
                answered = sorted(e["created_at"] - events.get("lifecycle.hook", 0)
                                  for e in video.get("events", []) if e["kind"] == "plugin.succeeded")
                if answered:
                    print(f"    answers recorded from {answered[0]} ms to {answered[-1]} ms after the hook started")
                base_ms = base_ms or wall
                base_cpu = base_cpu if base_cpu is not None else cpu
                # At 10 plugins the difference is within the noise of the rest of the run.
                per_plugin = f"; workerd CPU {(cpu - base_cpu) * 1000 / (n - 1):.1f} ms per extra plugin" if n >= 100 else ""
                row(f"hook wall time, {n} plugin(s), batch window {window} s",
                    f"{wall} ms ({video.get('status')}){per_plugin}", f"{wall / base_ms:.2f}x")
            finally:
                s.stop()


def bench_load(tmp, seconds):
    print(f"load: 5 broadcasters, 200 viewer WebSockets, {seconds} s")
    s = Stack(tmp, "load")
    errors = {"ingest": 0, "playlist": 0, "websocket": 0}
    stop = threading.Event()
    try:
        segments, _ = recording(4)
        channels = [s.channel() for _ in range(5)]

        def broadcaster(base):
            http = requests.Session()
            names, i = [], 0
            while not stop.is_set():
                _, data = segments[i % len(segments)]
                names.append(f"seg{i}.ts")
                try:
                    if http.put(f"{base}/seg{i}.ts", data=data, timeout=10).status_code != 201:
                        errors["ingest"] += 1
                    if http.put(f"{base}/index.m3u8", data=playlist_for(names, max(0, i - 5), False), timeout=10).status_code != 200:
                        errors["ingest"] += 1
                except requests.RequestException:
                    errors["ingest"] += 1
                i += 1
                time.sleep(1.0)

        def viewer(ch_id, live):
            http = requests.Session()
            try:
                with connect(s.url.replace("http", "ws") + f"/api/channels/{ch_id}/ws", open_timeout=20) as ws:
                    while not stop.is_set():
                        if http.get(live, timeout=10).status_code != 200:
                            errors["playlist"] += 1
                        try:
                            ws.recv(timeout=2.0)
                        except TimeoutError:
                            pass
            except Exception:
                if not stop.is_set():
                    errors["websocket"] += 1

        threads = [threading.Thread(target=broadcaster, args=(base,), daemon=True) for _, base, _ in channels]
        for t in threads:
            t.start()
        time.sleep(2)
        for i in range(200):
            ch, _, live = channels[i % 5]
            t = threading.Thread(target=viewer, args=(ch["id"], live), daemon=True)
            t.start()
            threads.append(t)
        time.sleep(5)
        counts = [s.http.get(s.url + f"/api/channels/{ch['id']}").json()["viewers"] for ch, _, _ in channels]
        time.sleep(max(0, seconds - 7))
        rss = workerd_rss_mib()
        stop.set()
        for t in threads:
            t.join(timeout=10)
        row("viewers counted by the rooms", f"{sum(counts)} of 200 ({counts})")
        row("errors (ingest / playlist / websocket)", f"{errors['ingest']} / {errors['playlist']} / {errors['websocket']}")
        row("workerd memory (RSS)", f"{rss:.0f} MiB")
    finally:
        stop.set()
        s.stop()


VIEWERS = 2000  # --viewers
LL_VIEWERS = 1000  # --ll-viewers
SOCKETS = 4500  # --sockets
JOINS_PER_S = 100
SHARD_SOCKETS = 1000
REACTORS = 500


async def crowd(url: str, sockets: int) -> bool:
    """`sockets` WebSockets join `url` at JOINS_PER_S; then REACTORS of them react once.
    Returns whether every socket stayed open."""
    import asyncio
    from collections import Counter
    from websockets.asyncio.client import connect as ws_connect

    loop = asyncio.get_running_loop()
    joined: list[dict] = []
    messages = Counter()
    failures = Counter()
    errors = 0
    readers = []

    async def read(v):
        try:
            async for raw in v["ws"]:
                m = json.loads(raw)
                messages[m["type"]] += 1
                if m["type"] == "viewers":
                    v["count"] = m["count"]
                elif m["type"] == "hello":
                    v["shard"] = m["shard"]
                elif m["type"] == "reactions":
                    v["reactions"] += sum(m["counts"].values())
        except Exception as e:
            failures[type(e).__name__] += 1
        v["open"] = False

    async def join():
        nonlocal errors
        try:
            ws = await ws_connect(url, open_timeout=60, ping_interval=None, max_queue=None)
        except Exception as e:
            errors += 1
            failures[f"join: {type(e).__name__}: {str(e)[:60]}"] += 1
            return
        v = {"ws": ws, "count": 0, "shard": None, "reactions": 0, "open": True}
        joined.append(v)
        readers.append(asyncio.create_task(read(v)))

    async def settled(check, timeout_s):
        start = loop.time()
        while not check() and loop.time() - start < timeout_s:
            await asyncio.sleep(0.1)
        return loop.time() - start if check() else None

    start = loop.time()
    joins = []
    for i in range(sockets):
        joins.append(asyncio.create_task(join()))
        await asyncio.sleep(max(0.0, start + (i + 1) / JOINS_PER_S - loop.time()))
    await asyncio.gather(*joins)
    joining_s = loop.time() - start
    during = sum(messages.values())
    n = len(joined)
    row("sockets joined / errors", f"{n} of {sockets} in {joining_s:.1f} s / {errors}")
    live = [v for v in joined if v["open"]]
    row("sockets closed by the server while joining", f"{n - len(live)} ({dict(failures)})")
    n = len(live)
    if not live:
        return False
    converged = await settled(lambda: all(v["count"] == n for v in live), 60)
    shards = Counter(v["shard"] for v in live)
    rss = workerd_rss_mib()
    row("workerd memory (RSS), every socket open", f"{rss:.0f} MiB ({rss * 1024 / n:.0f} KiB per socket)")
    row("sockets per object (shard: sockets)", ", ".join(f"{k}: {c}" for k, c in sorted(shards.items(), key=str)))
    row("messages received while joining", f"{during} ({during / max(n, 1):.1f} per join; "
        f"{during / max(n, 1) / joining_s * 2:.2f} per socket per 2 s)")
    row("every socket hears the full count", f"{converged:.1f} s after the last join" if converged is not None
        else f"not within 60 s ({sum(v['count'] == n for v in live)} of {n}; "
        f"counts heard {sorted(Counter(v['count'] for v in live).items())[:5]})")
    live = [v for v in live if v["open"]]
    n = len(live)
    if not live:
        row("sockets closed by the server in all", f"{len(joined)} ({dict(failures)})")
        return False
    before = sum(messages.values())
    reactors = live[:: max(1, n // REACTORS)][:REACTORS]
    for v in reactors:
        try:
            await v["ws"].send(json.dumps({"type": "reaction", "emoji": "🔥"}))
        except Exception as e:
            failures[f"react: {type(e).__name__}"] += 1
    heard = await settled(lambda: all(v["reactions"] >= len(reactors) for v in live), 30)
    pushes = messages["reactions"]
    row(f"{len(reactors)} reactions reach every socket", f"{heard:.1f} s" if heard is not None
        else f"not within 30 s ({sum(v['reactions'] >= len(reactors) for v in live)} of {n})")
    row("messages per reaction", f"{(sum(messages.values()) - before) / len(reactors):.1f} "
        f"({pushes} reactions pushes to {n} sockets, {pushes / n:.1f} each)")
    closed = sum(not v["open"] for v in joined)
    row("sockets closed by the server in all", f"{closed} ({dict(failures)})")
    for v in joined:
        await v["ws"].close()
    for r in readers:
        r.cancel()
    return closed == 0 and errors == 0


def bench_presence(tmp, _seconds):
    """SOCKETS viewer WebSockets join one live channel at JOINS_PER_S, with
    PRESENCE_SHARD_SOCKETS=SHARD_SOCKETS so that they spread over presence shards as the count
    grows; then REACTORS of them send one reaction each."""
    import asyncio
    print(f"presence: {SOCKETS} sockets joining one live channel at {JOINS_PER_S}/s "
          f"({SHARD_SOCKETS} per shard), then {REACTORS} reactions")
    s = Stack(tmp, "presence", {"PRESENCE_SHARD_SOCKETS": str(SHARD_SOCKETS)})
    try:
        segments, _ = recording(2)
        ch, base, _ = s.channel()
        push(s, base, segments, 1, end=False)
        if not asyncio.run(crowd(s.url.replace("http", "ws") + f"/api/channels/{ch['id']}/ws", SOCKETS)):
            odd = [line for line in s.worker.log().splitlines() if " 101 Switching Protocols" not in line]
            print("the worker's log, the 101 answers left out:\n" + "\n".join(odd[-25:]))
    finally:
        s.stop()


def wrk_paths_script(tmp: pathlib.Path, name: str, paths: list[str]) -> pathlib.Path:
    """A wrk Lua script whose every request GETs one of `paths`, picked at random."""
    listing = tmp / f"{name}.paths"
    listing.write_text("".join(p + "\n" for p in paths))
    script = tmp / f"{name}.lua"
    script.write_text(f"""local paths = {{}}
for line in io.lines({json.dumps(str(listing))}) do paths[#paths + 1] = line end
function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1000000))
end
function request()
  return wrk.format("GET", paths[math.random(#paths)])
end
""")
    return script


def wrk_counted(s: Stack, script: pathlib.Path, seconds: int) -> tuple[dict, dict, float]:
    """A wrk run over a script's paths, with the worker's port-call counters during it (reset
    before, read after) and the seconds between the two."""
    s.http.delete(s.url + "/api/_diag/metrics").raise_for_status()
    t0 = time.monotonic()
    r = wrk(s.url, seconds, script)
    counts = s.http.get(s.url + "/api/_diag/metrics").json()["counts"]
    return r, counts, time.monotonic() - t0


def edge_cache_share(counts: dict, requests_done: int) -> str:
    """How the counted requests were served, and how many of wrk's requests the counters saw
    (fewer means the isolate's counters were reset or another isolate answered)."""
    served = {k: counts.get(f"edge_cache.{k}", 0) for k in ("hit", "shared", "miss", "bypass")}
    total = sum(served.values())
    shares = ", ".join(f"{k} {v * 100 / max(total, 1):.1f}%" for k, v in served.items() if v)
    return f"edge cache {shares} ({total} counted of {requests_done} requests)"


def sample_edge_cache(s: Stack, paths: list[str], n: int = 20) -> str:
    """X-Edge-Cache of `n` requests of the paths, as a check of the counters."""
    seen: dict[str, int] = {}
    for path in paths[:: max(1, len(paths) // n)][:n]:
        r = s.http.get(s.url + path, timeout=10)
        key = f"{r.status_code} {r.headers.get('x-edge-cache', 'no header')}"
        seen[key] = seen.get(key, 0) + 1
    return ", ".join(f"{k} x{v}" for k, v in sorted(seen.items()))


def viewers_run(tmp: pathlib.Path, name: str, seconds: int, bypass: bool) -> dict:
    """One stack (edge cache bypassed or not) with ffmpeg pushing to a channel: the live
    playlist and one segment under wrk with VIEWERS distinct tokens, and the trivial route."""
    label = "before (BYPASS_EDGE_CACHE=on)" if bypass else "after (edge cache)"
    s = Stack(tmp, name, {"BYPASS_EDGE_CACHE": "on"} if bypass else None)
    ffmpeg = None
    try:
        ch, base, _ = s.channel()
        # Small frames: the encoder shares the 2 cores with workerd and wrk.
        ffmpeg = ffmpeg_push(base + "/index.m3u8", 3 * seconds + 60, size="320x180")
        exp = int(time.time()) + 3600
        tokens = [conftest.sign_url(f"c.{ch['id']}.usr_v{i:06d}.{exp}") for i in range(VIEWERS)]
        assert len(set(tokens)) == VIEWERS
        deadline = time.monotonic() + 40
        text = ""
        while time.monotonic() < deadline and text.count("#EXTINF") < 2:
            if ffmpeg.poll() is not None:
                raise RuntimeError(f"ffmpeg exited with {ffmpeg.returncode}: {ffmpeg.stderr.read().decode()}")
            r = s.http.get(f"{s.url}/play/{tokens[0]}/live.m3u8", timeout=10)
            text = r.text if r.ok else ""
            time.sleep(0.5)
        segment = re.search(r"^seg/(brd_[^/\s]+)/(\S+\.ts)$", text, re.M)
        if not segment:
            raise RuntimeError(f"the live playlist lists no segment after 40 s: {text!r}")
        out = {}
        if not bypass:
            r = wrk(s.url + "/api/version", seconds)
            out["trivial"] = r
            row("trivial /api/version", f"{r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                f"{r['errors']} errors, workerd CPU {r['cpu_ms']:.2f} ms/request", "1.00x")
        for kind, suffix in (("playlist", "live.m3u8"), ("segment", f"seg/{segment[1]}/{segment[2]}")):
            paths = [f"/play/{t}/{suffix}" for t in tokens]
            r, counts, elapsed = wrk_counted(s, wrk_paths_script(tmp, f"{name}-{kind}", paths), seconds)
            rate = {k: counts.get(k, 0) / elapsed
                    for k in ("live.call.window", "live.relayed.window", "live.call", "blobs.get", "sql.query")}
            out[kind] = (r, rate)
            ratio = f"{r['rps'] / out['trivial']['rps']:.2f}x trivial" if "trivial" in out else ""
            what = "live playlist" if kind == "playlist" else "segment"
            row(f"{what}, {VIEWERS} tokens, {label}",
                f"{r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, {r['errors']} errors, "
                f"workerd CPU {r['cpu_ms']:.2f} ms/request", ratio)
            # The isolate's window calls go to the room's relays, the last of which asks the room.
            row("  during it: room calls/s, R2 reads/s",
                f"window {rate['live.call.window']:.1f}/s from the isolate, {rate['live.relayed.window']:.1f}/s "
                f"reaching the room through its relays (all calls incl. ingest {rate['live.call']:.1f}/s), "
                f"R2 reads {rate['blobs.get']:.1f}/s, SQL {rate['sql.query']:.1f}/s; {edge_cache_share(counts, r['requests'])}; "
                f"sampled: {sample_edge_cache(s, paths)}")
        if ffmpeg.poll() is not None:
            row(f"  ffmpeg, {label}", f"exited early ({ffmpeg.returncode}): {ffmpeg.stderr.read().decode()[-200:]}")
        return out
    finally:
        if ffmpeg is not None and ffmpeg.poll() is None:
            ffmpeg.terminate()
            ffmpeg.wait(timeout=10)
        s.stop()


def bench_viewers(tmp, seconds):
    print(f"viewers: {VIEWERS} distinct tokens on one live channel, ffmpeg pushing (wrk -t2 -c16, {seconds} s each)")
    before = viewers_run(tmp, "viewers-before", seconds, bypass=True)
    after = viewers_run(tmp, "viewers-after", seconds, bypass=False)
    for kind, counter, what in (("playlist", "live.call.window", "window calls/s from the isolate"),
                                ("segment", "blobs.get", "R2 reads/s")):
        b, a = before[kind][1][counter], after[kind][1][counter]
        row(f"{kind}: {what}, before / after", f"{b:.1f} / {a:.1f}",
            f"{b / a:.0f}x fewer" if a else "none after")
        rb, ra = before[kind][0]["rps"], after[kind][0]["rps"]
        row(f"{kind}: requests/s, before / after", f"{rb:.0f} / {ra:.0f}", f"{ra / rb:.2f}x")


MP4_BYTES = 300 * 1024 * 1024 + 12345  # not a whole number of chunks
MIB = 1024 * 1024


def mp4_parts(size: int, part_bytes: int):
    """`size` bytes in parts of `part_bytes`: a random MiB repeated, each copy starting with
    its index (so a chunk out of place shows), made one part at a time."""
    block = os.urandom(MIB)
    for start in range(0, size, part_bytes):
        end = min(start + part_bytes, size)
        mibs = [(j // MIB).to_bytes(8, "big") + block[8:] for j in range(start - start % MIB, end, MIB)]
        joined = b"".join(mibs)
        offset = start % MIB
        yield joined[offset:offset + end - start]


def bench_mp4mem(tmp, _seconds):
    print(f"MP4 download memory ({MP4_BYTES / 1e6:.0f} MB, Range: bytes=0-)")
    s = Stack(tmp, "mp4mem", {"UPLOAD_PART_BYTES": str(16 * MIB)})
    try:
        # A real video (its row lets the upload URL write its MP4), transcoded first so the
        # transcoder's MP4 does not replace ours.
        ch, base, _ = s.channel()
        segments, _ = recording(4)
        push(s, base, segments, len(segments), end=True)
        video_id = s.http.get(s.url + f"/api/channels/{ch['id']}").json()["last_broadcast"]["video_id"]
        deadline = time.monotonic() + 120
        while s.http.get(s.url + f"/api/_diag/video/{video_id}").json().get("status") == "processing":
            if time.monotonic() > deadline:
                raise RuntimeError("the recording was not transcoded within 120 s")
            time.sleep(0.5)
        exp = int(time.time()) + 3600
        upload = s.url + "/upload/" + conftest.sign_url(f"u.{video_id}.mp4.{exp}")
        begun = s.http.post(upload + "/parts")
        begun.raise_for_status()
        upload_id, part_bytes = begun.json()["upload_id"], begun.json()["part_bytes"]
        digest, parts, t0 = hashlib.sha256(), [], time.monotonic()
        for number, data in enumerate(mp4_parts(MP4_BYTES, part_bytes), 1):
            digest.update(data)
            r = s.http.put(f"{upload}/parts/{number}", params={"upload_id": upload_id}, data=data, timeout=120)
            r.raise_for_status()
            parts.append(r.json())
        done = s.http.post(upload + "/parts/complete", json={"upload_id": upload_id, "parts": parts}, timeout=120)
        done.raise_for_status()
        print(f"    uploaded {done.json()['size']} bytes in {len(parts)} parts in {time.monotonic() - t0:.1f} s")
        token = conftest.sign_url(f"v.{video_id}.{ch['id']}.-.-.{exp}")
        url = f"{s.url}/play/{token}/video.mp4"
        for run in ("first (chunks from R2)", "second (chunks cached)"):
            time.sleep(2)
            rss_before = workerd_rss_mib()
            samples, stop = [rss_before], threading.Event()

            def sample():
                while not stop.wait(0.2):
                    samples.append(workerd_rss_mib())

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            got, received, t0 = hashlib.sha256(), 0, time.monotonic()
            try:
                with requests.get(url, headers={"range": "bytes=0-"}, stream=True, timeout=60) as r:
                    status, content_range = r.status_code, r.headers.get("content-range")
                    for chunk in r.iter_content(MIB):
                        got.update(chunk)
                        received += len(chunk)
            finally:
                elapsed = time.monotonic() - t0
                stop.set()
                sampler.join()
            time.sleep(2)
            rss_after = workerd_rss_mib()
            intact = received == MP4_BYTES and got.digest() == digest.digest()
            row(f"MP4 {MP4_BYTES / 1e6:.0f} MB, Range: bytes=0-, {run}",
                f"{status} ({content_range}), {received} bytes, sha256 {'matches' if intact else 'DIFFERS'}, "
                f"{received / 1e6 / elapsed:.0f} MB/s")
            row("  workerd RSS before / peak during / after",
                f"{rss_before:.0f} / {max(samples):.0f} / {rss_after:.0f} MiB ({len(samples)} samples)",
                f"+{max(samples) - rss_before:.0f} MiB peak")
    finally:
        s.stop()


def workerd_rss_mib() -> float:
    total = 0
    for status in pathlib.Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if re.search(r"^Name:\s+workerd$", text, re.M):
            m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.M)
            total += int(m.group(1)) if m else 0
    return total / 1024


def bench_transcoder(_tmp, _seconds):
    print("transcoder (bench/transcoder.sh)")
    subprocess.run(["bash", str(ROOT / "bench" / "transcoder.sh")], check=True)


def bench_backlog(tmp, _seconds):
    """20 recordings ending together: the time until every one is transcoded, with the
    transcoder running 1, 2 and 4 jobs at once (TRANSCODER_WORKERS)."""
    print("backlog (20 recordings ending together, TRANSCODER_WORKERS 1, 2, 4)")
    segments, _ = recording(20)
    serial = None
    for workers in (1, 2, 4):
        s = Stack(tmp, f"backlog-{workers}", transcoder_env={"TRANSCODER_WORKERS": str(workers)})
        try:
            owners = []
            names = [name for name, _ in segments]
            for _ in range(20):
                ch, base, _play = s.channel()
                for name, data in segments:
                    s.http.put(f"{base}/{name}", data=data).raise_for_status()
                owners.append((ch["id"], base))
            ending = playlist_for(names, 0, True)

            def end(base):
                r = requests.put(f"{base}/index.m3u8", data=ending, timeout=30)
                r.raise_for_status()

            started = time.monotonic()
            threads = [threading.Thread(target=end, args=(base,)) for _, base in owners]
            [t.start() for t in threads]
            [t.join() for t in threads]
            pending = {channel for channel, _ in owners}
            while pending and time.monotonic() - started < 300:
                for channel in list(pending):
                    videos = s.http.get(f"{s.url}/api/channels/{channel}/videos").json()["videos"]
                    if videos and all(v["status"] in ("ready", "published") for v in videos):
                        pending.discard(channel)
                time.sleep(0.2)
            elapsed = time.monotonic() - started
            if pending:
                row(f"20 recordings ending together, {workers} transcoder worker(s)",
                    f"{len(pending)} not transcoded after {elapsed:.0f} s", "")
                continue
            serial = serial or elapsed
            # The transcoder's own share: each job's wall time from its log (inputs read, MP4
            # and poster made and stored), added up.
            jobs = [float(m) for m in re.findall(r"done in ([0-9.]+) s", s.transcoder.log_path.read_text())]
            row(f"20 recordings (20 s each) ending together, {workers} transcoder worker(s)",
                f"all published {elapsed:.1f} s after the ends; the transcoder's {len(jobs)} jobs "
                f"took {sum(jobs):.1f} s in all (longest {max(jobs, default=0):.2f} s)",
                f"{serial / elapsed:.2f}x one worker")
        finally:
            s.stop()


def bench_gateway(tmp, _seconds):
    import gateway
    gateway.bench_gateway(tmp, Stack, row)


def bench_llhls(tmp, _seconds):
    import llhls
    llhls.bench_llhls(tmp, Stack, row, LL_VIEWERS)


def bench_golive(_tmp, _seconds):
    print("golive (bench/golive.mjs, bench/latency.mjs)")
    subprocess.run(["node", str(ROOT / "bench" / "golive.mjs"), "12"], check=True)
    # One viewer at a time: with the broadcasting Chromium, two more starve this machine.
    for viewer in ("low", "normal"):
        subprocess.run(["node", str(ROOT / "bench" / "latency.mjs"), "30", f"--viewer={viewer}"], check=True)


SECTIONS = {"routes": bench_routes, "size": bench_size, "ingest": bench_ingest,
            "fanout": bench_fanout, "load": bench_load, "viewers": bench_viewers, "mp4mem": bench_mp4mem,
            "transcoder": bench_transcoder, "backlog": bench_backlog, "golive": bench_golive,
            "llhls": bench_llhls, "gateway": bench_gateway, "presence": bench_presence}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per route")
    parser.add_argument("--load-seconds", type=int, default=60)
    parser.add_argument("--viewers", type=int, default=VIEWERS, help="distinct playback tokens (viewers section)")
    parser.add_argument("--sockets", type=int, default=SOCKETS, help="viewer WebSockets (presence section)")
    parser.add_argument("--ll-viewers", type=int, default=1000,
                        help="viewers blocking on the next part (llhls section)")
    args = parser.parse_args()
    VIEWERS = args.viewers
    LL_VIEWERS = args.ll_viewers
    SOCKETS = args.sockets
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            SECTIONS[name](pathlib.Path(tmp), args.load_seconds if name == "load" else args.seconds)
    print("\n| benchmark | figure | ratio |\n|---|---|---|")
    for name, figure, ratio in ROWS:
        print(f"| {name} | {figure} | {ratio} |")
