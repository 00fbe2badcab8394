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
  transcoder bench/transcoder.sh (ours vs ffmpeg vs raw copy)

Run it through `make bench` (or `bash bench/run.sh`), which sets up and builds first."""

import argparse
import gzip
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
from media import recording  # noqa: E402

PASSWORD = conftest.PASSWORD
ROWS: list[tuple[str, str, str]] = []


def row(name: str, figure: str, ratio: str = "") -> None:
    ROWS.append((name, figure, ratio))
    print(f"  {name:<44} {figure:<40} {ratio}", flush=True)


class Stack:
    """A transcoder and a worker on fresh state, with benchmark settings."""

    def __init__(self, tmp: pathlib.Path, name: str, extra: dict | None = None,
                 config: pathlib.Path | None = None):
        (tmp / name).mkdir(parents=True, exist_ok=True)
        self.transcoder = conftest.Transcoder(tmp / name).start()
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

    def user(self, domain="example.com") -> dict:
        r = self.http.post(self.url + "/api/auth/signup",
                           json={"email": conftest.new_email(domain), "password": PASSWORD})
        r.raise_for_status()
        return r.json()

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
        admin = admin.json() if admin.ok else self.http.post(
            self.url + "/api/auth/signup", json={"email": "admin@edgevideo.test", "password": PASSWORD}).json()
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


def wrk(url: str, seconds: int) -> dict:
    """One wrk run against `url`; with the runtime's CPU time per request it answered."""
    cpu0 = workerd_cpu_s()
    out = subprocess.run(["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency", url],
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
            "cpu_ms": cpu * 1000 / max(requests_done, 1)}


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


SECTIONS = {"routes": bench_routes, "size": bench_size, "ingest": bench_ingest,
            "fanout": bench_fanout, "load": bench_load, "transcoder": bench_transcoder}

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per route")
    parser.add_argument("--load-seconds", type=int, default=60)
    args = parser.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            SECTIONS[name](pathlib.Path(tmp), args.load_seconds if name == "load" else args.seconds)
    print("\n| benchmark | figure | ratio |\n|---|---|---|")
    for name, figure, ratio in ROWS:
        print(f"| {name} | {figure} | {ratio} |")
