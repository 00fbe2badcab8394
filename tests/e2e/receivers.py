"""Plugin receivers for the end-to-end tests: local HTTP servers that verify every delivery
with the official `standardwebhooks` library and answer tasks as a script says."""

import json
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook


def answer_task(task: dict, result: dict | None = None, error: str | None = None) -> int:
    """Answers a task at its success (result) or failure (error) URL; returns the status."""
    url = task["failure_url"] if error is not None else task["success_url"]
    body = {"token": task["token"], **({"error": error} if error is not None else {"result": result or {}})}
    request = urllib.request.Request(url, method="POST", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


class Receiver:
    """A plugin endpoint. `statuses` is the script of HTTP answers (then 200); `on_task`
    is called in a thread with each task delivered after a 2xx answer."""

    def __init__(self, statuses=None, on_task=None, delay_s: float = 0.0, port: int = 0,
                 stall_body_s: float = 0.0, redirect_to: str | None = None):
        self.statuses = list(statuses or [])
        self.on_task = on_task
        self.delay_s = delay_s
        # Send the status and headers at once, then the body only after this long.
        self.stall_body_s = stall_body_s
        # Answer every verified delivery with a 307 to this URL.
        self.redirect_to = redirect_to
        self.secret = None
        self.verified = []       # every delivery whose signature verified: (webhook-id, event)
        self.answered_2xx = []   # webhook-ids answered with 2xx
        self.rejected_signatures = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver.handle(body, headers)
                self.send_response(status)
                if receiver.stall_body_s:
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.flush()
                    time.sleep(receiver.stall_body_s)
                    try:
                        self.wfile.write(b"ok")
                    except OSError:
                        pass  # the worker gave up and closed the connection
                    return
                if receiver.redirect_to and status == 307:
                    self.send_header("location", receiver.redirect_to)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def handle(self, body: bytes, headers: dict) -> int:
        if self.delay_s:
            time.sleep(self.delay_s)
        try:
            Webhook(self.secret).verify(body, headers)
        except Exception:
            with self.lock:
                self.rejected_signatures += 1
            return 401
        event = json.loads(body)
        with self.lock:
            self.verified.append((headers["webhook-id"], event))
            status = 307 if self.redirect_to else self.statuses.pop(0) if self.statuses else 200
            if 200 <= status < 300:
                self.answered_2xx.append(headers["webhook-id"])
        task = event["data"].get("task") if isinstance(event.get("data"), dict) else None
        if 200 <= status < 300 and task and self.on_task:
            threading.Thread(target=self.on_task, args=(task, event), daemon=True).start()
        return status

    def events(self, kind: str) -> list[dict]:
        with self.lock:
            return [e for _, e in self.verified if e["type"] == kind]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
