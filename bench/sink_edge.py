#!/usr/bin/env python3
"""A minimal stand-in for the edge's ingest URL, for measuring the RTMP gateway's own cost:
the key check (`DELETE /ingest/{KEY}/index0.ts`) is answered 204, every `PUT` 201 once its
body is read; nothing is stored or checked. `GET /stats` answers what it took, as JSON.

    python3 bench/sink_edge.py [PORT]      # prints its URL, serves until killed"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"checks": 0, "segments": 0, "inits": 0, "playlists": 0, "bytes": 0, "other": 0}

    def add(self, **delta):
        with self.lock:
            for k, v in delta.items():
                self.counts[k] += v

    def snapshot(self) -> dict:
        with self.lock:
            return dict(self.counts)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the gateway's client expects of an edge
    stats: Stats

    def answer(self, status: int, body: bytes = b"", content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self):
        if self.path.startswith("/ingest/"):
            self.stats.add(checks=1)
            self.answer(204)
        else:
            self.answer(404)

    def do_PUT(self):
        left = int(self.headers.get("content-length", 0))
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                return
            left -= len(chunk)
        size = int(self.headers.get("content-length", 0))
        name = self.path.rsplit("/", 1)[-1]
        kind = ("playlists" if name.endswith(".m3u8") else "segments" if name.endswith(".m4s")
                else "inits" if name.endswith(".mp4") else "other")
        self.stats.add(**{kind: 1, "bytes": size})
        self.answer(200 if kind == "playlists" else 201)

    def do_GET(self):
        if self.path == "/stats":
            self.answer(200, json.dumps(self.stats.snapshot()).encode(), "application/json")
        else:
            self.answer(200 if self.path in ("/", "/api/health") else 404)

    def log_message(self, *args):
        pass


class SinkEdge:
    """The sink in a thread of this process: `.url`, `.stats()`, `.stop()`."""

    def __init__(self, port: int = 0):
        stats = Stats()
        handler = type("SinkHandler", (Handler,), {"stats": stats})

        class Server(ThreadingHTTPServer):
            request_queue_size = 1024
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a pusher killed mid-request: nothing to report

        self.server = Server(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._stats = stats
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stats(self) -> dict:
        return self._stats.snapshot()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


if __name__ == "__main__":
    sink = SinkEdge(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(sink.url, flush=True)
    try:
        sink.thread.join()
    except KeyboardInterrupt:
        sink.stop()
