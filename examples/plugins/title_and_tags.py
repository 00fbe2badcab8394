#!/usr/bin/env python3
"""An edgevideo plugin: derives a title and tags for a video from its metadata.

Register it for the `preMetadata` hook:

    POST /api/plugins {"name": "title-and-tags", "hook": "preMetadata",
                       "url": "http://HOST:PORT/"}

and start it with the secret shown once at registration:

    PLUGIN_SECRET=whsec_... python3 title_and_tags.py --port PORT

Every delivery is verified with the Standard Webhooks reference library (`standardwebhooks`
on PyPI): a bad signature or a stale timestamp gets 401 and is ignored. Deliveries are
deduplicated on `webhook-id`. For each task it answers `POST {task.success_url}` with the
task token and `{"title", "tags"}`; the platform merges them into the video."""

import argparse
import json
import os
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError


def derive(video: dict) -> dict:
    """Title and tags from what the platform knows about the video."""
    seconds = (video.get("duration_ms") or 0) / 1000
    width, height = video.get("width"), video.get("height")
    tags = ["live"]
    if height:
        tags.append("hd" if height >= 720 else "sd")
        tags.append(f"{height}p")
    tags.append("short" if seconds < 60 else "long")
    base = (video.get("title") or "Broadcast").split(" — ")[0]
    size = f" in {width}x{height}" if width and height else ""
    return {"title": f"{base}: {seconds:.0f} s{size}", "tags": tags}


class Plugin:
    """The plugin's state: its secret and the deliveries already handled."""

    def __init__(self, secret: str):
        self.webhook = Webhook(secret)
        self.seen: set[str] = set()
        self.lock = threading.Lock()

    def handle(self, body: bytes, headers: dict) -> int:
        try:
            self.webhook.verify(body, headers)
        except WebhookVerificationError:
            return 401
        with self.lock:
            if headers["webhook-id"] in self.seen:
                return 200
            self.seen.add(headers["webhook-id"])
        event = json.loads(body)
        task = event["data"].get("task")
        if task:
            # Answer after acknowledging the delivery, as a real plugin doing work would.
            threading.Thread(target=self.answer, args=(task, derive(event["data"]["video"])),
                             daemon=True).start()
        return 200

    @staticmethod
    def answer(task: dict, result: dict) -> None:
        request = urllib.request.Request(
            task["success_url"], method="POST",
            data=json.dumps({"token": task["token"], "result": result}).encode(),
            headers={"content-type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


def serve(plugin: Plugin, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = plugin.handle(body, headers)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        # A hook's deliveries can arrive together: a listen backlog of 5 (the default) would
        # drop connection attempts and make the platform retry them.
        request_queue_size = 128
        daemon_threads = True

    server = Server((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8791)
    args = parser.parse_args()
    server = serve(Plugin(os.environ["PLUGIN_SECRET"]), args.port)
    print(f"title-and-tags plugin on http://127.0.0.1:{args.port}/")
    threading.Event().wait()
