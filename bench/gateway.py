"""The `gateway` section of bench/bench.py: the RTMP ingest gateway (the optimised build,
target/gateway/gateway) publishing to the real edge (`wrangler dev`) and to a minimal sink
edge (bench/sink_edge.py), with ffmpeg as the RTMP publishers.

  keyframe -> listed   one stream: the time from the keyframe that closes a segment reaching
                       the gateway (its `segment cut` log line, millisecond timestamps) to that
                       segment being listed in the live playlist a viewer GETs (polled every
                       50 ms), median and p95
  per stream, N = 10, 50, 100 streams of 6 Mbit/s H.264 + AAC (2 s GOP, `-re -stream_loop -1
                       -c copy`), for SECONDS each, against each edge: the gateway's CPU (from
                       /proc/PID/stat) per stream, RSS per stream above the idle gateway and in
                       total, segments pushed of those due, dropped segments and push errors
                       (its /metrics)"""

import os
import pathlib
import re
import signal
import statistics
import subprocess
import threading
import time

import requests

import conftest
from sink_edge import SinkEdge

ROOT = pathlib.Path(__file__).resolve().parents[1]
GATEWAY = pathlib.Path(os.environ.get("EDGEVIDEO_BENCH_GATEWAY", ROOT / "target" / "gateway" / "gateway"))
MEDIA = ROOT / "target" / "bench" / "gateway-6mbps-2s-gop.flv"
LATENCY_SECONDS = 72        # 36 segments of 2 s
CONCURRENCY = (10, 50, 100)
WINDOW_SECONDS = 30
CLK_TCK = os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "load " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_media() -> pathlib.Path:
    """A 60 s 1280x720 30 fps H.264 (CBR 6 Mbit/s, 2 s GOP) + AAC 128 kbit/s FLV, made once."""
    if MEDIA.exists() and MEDIA.stat().st_size > 0:
        return MEDIA
    MEDIA.parent.mkdir(parents=True, exist_ok=True)
    tmp = MEDIA.with_suffix(".part.flv")
    subprocess.run([
        "ffmpeg", "-v", "error", "-y",
        "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "60",
        "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "veryfast",
        "-b:v", "6M", "-minrate", "6M", "-maxrate", "6M", "-bufsize", "6M",
        "-x264-params", "nal-hrd=cbr", "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
        "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", "-f", "flv", str(tmp),
    ], check=True, timeout=900)
    tmp.rename(MEDIA)
    return MEDIA


class GatewayProcess:
    """The optimised gateway pushing to `edge`, its log in `state`."""

    def __init__(self, state: pathlib.Path, edge: str):
        if not GATEWAY.exists():
            raise RuntimeError(f"{GATEWAY} is missing: cargo build --profile gateway -p edgevideo-gateway --bin gateway")
        state.mkdir(parents=True, exist_ok=True)
        self.rtmp_port = conftest.free_port()
        self.http_url = f"http://127.0.0.1:{conftest.free_port()}"
        self.log_path = state / "gateway.log"
        args = [str(GATEWAY), "--listen", f"127.0.0.1:{self.rtmp_port}",
                "--http-listen", self.http_url.removeprefix("http://"), "--edge", edge]
        # Other listeners, when this build has them, on free loopback ports rather than their
        # public defaults.
        help_text = subprocess.run([str(GATEWAY), "--help"], capture_output=True, text=True).stdout
        for flag in ("--srt-listen", "--rtmps-listen"):
            if flag in help_text:
                args += [flag, f"127.0.0.1:{conftest.free_port()}"]
        # Every publisher here comes from one address: no per-address connection limit.
        if "--max-connections-per-address" in help_text:
            args += ["--max-connections-per-address", "0"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "wb"),
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.log_path.read_text()}")
            try:
                if requests.get(self.http_url + "/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the gateway did not answer /healthz")
            time.sleep(0.1)

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.rtmp_port}/live/{key}"

    def metrics(self) -> dict[str, float]:
        # Generous: 100 publishers starting at once leave little CPU for anything else.
        text = requests.get(self.http_url + "/metrics", timeout=30).text
        return {name: float(value) for name, value in
                (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))}

    def cpu_s(self) -> float:
        fields = pathlib.Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self) -> float:
        m = re.search(r"^VmRSS:\s+(\d+) kB", pathlib.Path(f"/proc/{self.process.pid}/status").read_text(), re.M)
        return int(m.group(1)) / 1024

    def kill(self) -> None:
        """Ends it at once: no last segments or ENDLIST (no recordings to transcode)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


def publishers(urls: list[str], log: pathlib.Path) -> list[subprocess.Popen]:
    err = open(log, "ab")
    return [subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                              "-i", str(MEDIA), "-c", "copy", "-f", "flv", url],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                             start_new_session=True) for url in urls]


def stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def procs_cpu_s(procs: list[subprocess.Popen]) -> float:
    total = 0
    for p in procs:
        try:
            fields = pathlib.Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def group_cpu_s(pgid: int) -> float:
    """CPU time (user + system) so far of the processes in process group `pgid` (the edge:
    `wrangler dev`'s node and workerd processes)."""
    ticks = 0
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def wait_for(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout_s} s")
        time.sleep(0.2)


def keyframe_to_listed(tmp: pathlib.Path, Stack, row) -> None:
    s = Stack(tmp, "gateway-latency")
    gw = None
    ff: list[subprocess.Popen] = []
    try:
        _, base, play = s.channel()
        key = base.rsplit("/", 1)[1]
        gw = GatewayProcess(tmp / "gateway-latency" / "gw", s.url)
        seen: dict[int, float] = {}
        done = threading.Event()

        def poll():
            viewer = requests.Session()
            while not done.wait(0.05):
                try:
                    text = viewer.get(play, timeout=5).text
                except requests.RequestException:
                    continue
                now = time.time()
                for seq in re.findall(r"index_(\d+)\.m4s", text):
                    seen.setdefault(int(seq), now)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        ff = publishers([gw.url(key)], tmp / "gateway-latency" / "ffmpeg.log")
        t0 = time.monotonic()
        while time.monotonic() - t0 < LATENCY_SECONDS:
            if ff[0].poll() is not None:
                raise RuntimeError(f"ffmpeg exited with {ff[0].returncode}")
            time.sleep(0.5)
        time.sleep(3)  # the last cut segment's push and listing
        done.set()
        poller.join(timeout=10)
        cuts = {}
        for line in gw.log_path.read_text().splitlines():
            if '"segment cut"' in line:
                m_seq, m_ts = re.search(r'"sequence":(\d+)', line), re.search(r'"ts":([\d.]+)', line)
                cuts[int(m_seq.group(1))] = float(m_ts.group(1))
        lat = sorted((seen[q] - t) * 1000 for q, t in cuts.items() if q in seen)
        if len(lat) < 2:
            raise RuntimeError(f"{len(cuts)} segments cut, {len(lat)} listed")
        p95 = lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]
        m = gw.metrics()
        pushes = m.get("gateway_push_latency_seconds_count", 0)
        push_ms = m.get("gateway_push_latency_seconds_sum", 0) * 1000 / max(pushes, 1)
        row("keyframe closing a segment -> listed for a viewer (wrangler dev)",
            f"median {statistics.median(lat):.0f} ms, p95 {p95:.0f} ms, max {lat[-1]:.0f} ms over {len(lat)} "
            f"segments of {len(cuts)} cut (viewer playlist polled every 50 ms); mean PUT {push_ms:.0f} ms "
            f"over {pushes:.0f} pushes; {load()}")
    finally:
        if gw:
            gw.kill()
        stop(ff)
        s.stop()


def concurrency_run(tmp: pathlib.Path, edge_name: str, edge_url: str, keys: list[str], row,
                    edge_pgid: int | None = None) -> None:
    n = len(keys)
    state = tmp / f"gateway-{edge_name.split()[0]}-{n}"
    gw = GatewayProcess(state, edge_url)
    ff: list[subprocess.Popen] = []
    try:
        time.sleep(1)
        idle_rss = gw.rss_mib()
        ff = publishers([gw.url(k) for k in keys], state / "ffmpeg.log")
        wait_for(lambda: gw.metrics().get("gateway_streams_active", 0) >= n, 90, f"{n} streams publishing")
        time.sleep(4)  # every stream past its init segment and first cut
        m0, cpu0, ff0, t0 = gw.metrics(), gw.cpu_s(), procs_cpu_s(ff), time.monotonic()
        own0 = sum(os.times()[:2])  # this process: the sink edge's threads, when it is the edge
        wd0 = group_cpu_s(edge_pgid) if edge_pgid else 0.0
        rss = []
        while time.monotonic() - t0 < WINDOW_SECONDS:
            rss.append(gw.rss_mib())
            time.sleep(1)
        elapsed = time.monotonic() - t0
        m1, cpu1, ff1 = gw.metrics(), gw.cpu_s(), procs_cpu_s(ff)
        own = sum(os.times()[:2]) - own0
        wd = (group_cpu_s(edge_pgid) - wd0) if edge_pgid else None
        running = sum(p.poll() is None for p in ff)
        d = {k: m1.get(k, 0) - m0.get(k, 0) for k in
             ("gateway_segments_pushed_total", "gateway_segments_dropped_total", "gateway_push_errors_total",
              "gateway_bytes_in_total", "gateway_stream_errors_total",
              "gateway_push_latency_seconds_sum", "gateway_push_latency_seconds_count")}
        put_ms = d["gateway_push_latency_seconds_sum"] * 1000 / max(d["gateway_push_latency_seconds_count"], 1)
        cpu_pct = (cpu1 - cpu0) / elapsed * 100
        due = n * elapsed / 2
        mean_rss, peak_rss = statistics.mean(rss), max(rss)
        row(f"{n} streams x 6 Mbit/s -> {edge_name}",
            f"gateway CPU {cpu_pct:.1f}% ({cpu_pct / n:.2f}% per stream), RSS {mean_rss:.0f} MiB "
            f"(peak {peak_rss:.0f}; {(mean_rss - idle_rss) / n:.2f} MiB per stream above idle {idle_rss:.0f}), "
            f"in {d['gateway_bytes_in_total'] * 8 / elapsed / 1e6:.0f} Mbit/s; segments pushed "
            f"{d['gateway_segments_pushed_total']:.0f} of ~{due:.0f} due, dropped {d['gateway_segments_dropped_total']:.0f}, "
            f"push errors {d['gateway_push_errors_total']:.0f}, stream errors {d['gateway_stream_errors_total']:.0f}, "
            f"mean PUT {put_ms:.0f} ms, publishers running {running}/{n}",
            f"ffmpeg x{n} CPU {(ff1 - ff0) / elapsed * 100:.0f}%"
            + (f", wrangler dev (node + workerd) CPU {wd / elapsed * 100:.0f}%" if wd is not None else
               f", sink (Python) CPU {own / elapsed * 100:.0f}%") + f"; {load()}")
    finally:
        gw.kill()
        stop(ff)


def bench_gateway(tmp: pathlib.Path, Stack, row) -> None:
    print("gateway: RTMP ingest gateway (target/gateway/gateway), ffmpeg publishers")
    make_media()
    keyframe_to_listed(tmp, Stack, row)

    sink = SinkEdge()
    try:
        keys = [f"bench-{i:03d}" for i in range(max(CONCURRENCY))]
        for n in CONCURRENCY:
            concurrency_run(tmp, "sink edge", sink.url, keys[:n], row)
    finally:
        sink.stop()

    s = Stack(tmp, "gateway-concurrency")
    try:
        # Fresh channels for each run: a key whose broadcast is still live at the edge (the
        # gateway is killed, so no ENDLIST) would be refused a second init segment.
        for n in CONCURRENCY:
            keys = [s.channel()[1].rsplit("/", 1)[1] for _ in range(n)]
            concurrency_run(tmp, "wrangler dev", s.url, keys, row, s.worker.process.pid)
    finally:
        s.stop()
