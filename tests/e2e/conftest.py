"""End-to-end harness: runs the built worker in the real Workers runtime (`wrangler dev`,
workerd) on a free loopback port with a fresh state directory, and stops it afterwards.

A failure to start fails the tests with the runtime's own log."""

import os
import pathlib
import signal
import socket
import subprocess
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
WRANGLER = ROOT / "node_modules" / ".bin" / "wrangler"
START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Worker:
    """A running `wrangler dev` with its URL, state directory and log."""

    def __init__(self, state_dir: pathlib.Path, extra_vars: dict[str, str] | None = None):
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state_dir / "wrangler.log"
        self.extra_vars = extra_vars or {}
        self.process: subprocess.Popen | None = None
        self.started_in_s: float | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> "Worker":
        env = dict(os.environ)
        subprocess.run(
            [str(WRANGLER), "d1", "migrations", "apply", "DB", "--local", "--persist-to", str(self.state_dir)],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=120,
        )
        args = [
            str(WRANGLER), "dev", "--ip", "127.0.0.1", "--port", str(self.port),
            "--inspector-ip", "127.0.0.1", "--inspector-port", str(free_port()),
            "--show-interactive-dev-session=false", "--persist-to", str(self.state_dir),
            "--env-file", str(ROOT / "config" / "dev.env"), "--log-level", "info",
        ]
        for name, value in self.extra_vars.items():
            args += ["--var", f"{name}:{value}"]
        log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = t0 + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"wrangler dev exited with {self.process.returncode}:\n{self.log()}")
            try:
                requests.get(self.url + "/api/health", timeout=1)
                self.started_in_s = time.monotonic() - t0
                return self
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        pytest.fail(f"wrangler dev did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def worker(tmp_path_factory):
    """The worker, started once for the whole session with development configuration."""
    w = Worker(tmp_path_factory.mktemp("wrangler-state")).start()
    print(f"\nwrangler dev answered after {w.started_in_s:.2f} s")
    yield w
    w.stop()


@pytest.fixture
def api(worker):
    """A `requests` session bound to the worker's URL: api.get("/api/health")."""

    class Api(requests.Session):
        def request(self, method, url, *args, **kwargs):
            kwargs.setdefault("timeout", 15)
            return super().request(method, worker.url + url, *args, **kwargs)

    with Api() as session:
        yield session


def wait_until(predicate, timeout_s: float = 15.0, interval_s: float = 0.2):
    """Polls `predicate` until it returns a truthy value; returns it, or fails on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s")
        time.sleep(interval_s)
