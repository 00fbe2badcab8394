"""End-to-end harness: runs the built worker on a free loopback port with a fresh state
directory, and stops it afterwards. The same scenarios run against either host:

- `--host cloudflare` (the default): the real Workers runtime (`wrangler dev`, workerd);
- `--host spin`: the Spin component in the Spin test host (`tests/spin-host`, wasmtime with
  Spin's key-value, SQLite and variables interfaces; a test harness, not Spin itself).

`EDGEVIDEO_E2E_HOST` sets the default. Tests that only make sense on one host carry the
marker `cloudflare` or `spin` and are skipped on the other. A failure to start fails the
tests with the runtime's own log."""

import atexit
import base64
import email
import email.policy
import hashlib
import hmac
import os
import pathlib
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox

ROOT = pathlib.Path(__file__).resolve().parents[2]
WRANGLER = ROOT / "node_modules" / ".bin" / "wrangler"
SPIN_MANIFEST = ROOT / "spin.toml"
SPIN_HOST = pathlib.Path(os.environ.get(
    "EDGEVIDEO_SPIN_HOST", ROOT / "target" / "spin-host" / "release" / "edgevideo-spin-host"))
HOSTS = ("cloudflare", "spin")
START_TIMEOUT_S = 60
# The host the session runs against; set from --host in pytest_configure.
HOST = os.environ.get("EDGEVIDEO_E2E_HOST", "cloudflare")


def pytest_addoption(parser):
    parser.addoption("--host", choices=HOSTS, default=None,
                     help="which host runs the worker (default: $EDGEVIDEO_E2E_HOST or cloudflare)")


def pytest_configure(config):
    global HOST
    HOST = config.getoption("--host") or HOST
    if HOST not in HOSTS:
        raise pytest.UsageError(f"unknown host {HOST!r}; expected one of {HOSTS}")
    for host in HOSTS:
        config.addinivalue_line("markers", f"{host}: runs only against the {host} host")


def pytest_report_header(config):
    return f"edgevideo host: {HOST}"


def pytest_collection_modifyitems(config, items):
    for item in items:
        others = [h for h in HOSTS if h != HOST and item.get_closest_marker(h)]
        if others:
            item.add_marker(pytest.mark.skip(reason=f"{others[0]} only; running against {HOST}"))


def _ephemeral_low() -> int:
    """The first port of the kernel's ephemeral range (32768 when it cannot be read)."""
    try:
        return int(pathlib.Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A loopback port free now, for a server a test starts. Drawn at random below the
    kernel's ephemeral range: outgoing connections and port-0 binds (of the other suites
    running at the same time) take their ports from that range, so none of them can take
    this one between this check and the server binding it."""
    low = _ephemeral_low()
    if low > 11_000:
        for _ in range(200):
            port = secrets.randbelow(low - 10_000) + 10_000
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MailSink:
    """A real SMTP server (aiosmtpd) on a free loopback port that keeps every message it is
    given in a Maildir: where the workers under test send their verification mail."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        self.port = free_port()
        self.controller = Controller(Mailbox(str(directory)), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.port}"

    def ordered_to(self, address: str) -> list:
        """The messages to `address` (`email.message.EmailMessage`s), oldest first (by the
        Maildir file's time)."""
        entries = []
        new = self.directory / "new"
        needle = address.lower().encode()
        for path in list(new.iterdir()) if new.exists() else []:
            raw = path.read_bytes()
            if needle not in raw.lower():
                continue  # cheap: most mails of a long session are to other addresses
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            if address.lower() in str(parsed.get("To", "")).lower():
                entries.append((path.stat().st_mtime_ns, path.name, parsed))
        return [parsed for *_, parsed in sorted(entries, key=lambda e: (e[0], e[1]))]

    def link_token(self, address: str, previous: int = 0, timeout_s: float = 15.0) -> str:
        """The verification token of the newest mail to `address`, waiting until there are
        more than `previous` mails to it."""
        def arrived():
            messages = self.ordered_to(address)
            return messages if len(messages) > previous else None

        messages = wait_until(arrived, timeout_s)
        body = messages[-1].get_content()
        assert "/verify#" in body, body
        return body.split("/verify#", 1)[1].split()[0]

    def stop(self) -> None:
        self.controller.stop()


_mail: MailSink | None = None


def mail() -> MailSink:
    """The session's SMTP server, started on first use."""
    global _mail
    if _mail is None:
        # A directory that does not exist yet: the Maildir creates it with its subdirectories.
        _mail = MailSink(pathlib.Path(tempfile.mkdtemp(prefix="edgevideo-mail-")) / "maildir")
        atexit.register(_mail.stop)
    return _mail


def Worker(state_dir: pathlib.Path, extra_vars: dict[str, str] | None = None):
    """A worker on the selected host (not started yet): `.start()`, `.url`, `.log()`, `.stop()`.
    `extra_vars` override configuration variables by their core names (`ENVIRONMENT`, ...)."""
    host_class = SpinWorker if HOST == "spin" else WranglerWorker
    return host_class(state_dir, extra_vars)


def answers_as_worker(response: requests.Response) -> bool:
    """Whether `response` to `/api/health` is a worker's (its health, or its JSON error when
    misconfigured), not another local server's that took the free port first."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and ("version" in body or "error" in body)


class ProcessWorker:
    """A worker process started in its own process group, answered on /api/health."""

    name = "worker"

    def __init__(self, state_dir: pathlib.Path, extra_vars: dict[str, str] | None = None):
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state_dir / f"{self.name.split()[0]}.log"
        # Verification mail goes to the session's SMTP server unless a test says otherwise.
        self.extra_vars = {"SMTP_URL": mail().url, **(extra_vars or {})}
        self.process: subprocess.Popen | None = None
        self.started_in_s: float | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self, env: dict[str, str]) -> None:
        """Runs before the process starts (e.g. local migrations)."""

    def start(self):
        env = dict(os.environ)
        self.prepare(env)
        log = open(self.log_path, "wb")
        t0 = time.monotonic()
        self.process = subprocess.Popen(self.command(), cwd=ROOT, env=env, stdout=log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = t0 + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                if answers_as_worker(requests.get(self.url + "/api/health", timeout=1)):
                    self.started_in_s = time.monotonic() - t0
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"{self.name} did not answer within {START_TIMEOUT_S} s:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class SpinWorker(ProcessWorker):
    """The Spin component in the Spin test host (wasmtime; not Spin itself), configured from
    `spin.toml` and `config/dev.env` like `spin up` with a dotenv variables provider."""

    name = "spin test host"

    def command(self) -> list[str]:
        if not SPIN_HOST.exists():
            pytest.fail(f"{SPIN_HOST} is missing: build it with `make build-spin`")
        args = [str(SPIN_HOST), "--manifest", str(SPIN_MANIFEST), "--state", str(self.state_dir),
                "--listen", f"127.0.0.1:{self.port}", "--env-file", str(ROOT / "config" / "dev.env")]
        for name, value in self.extra_vars.items():
            args += ["--var", f"{name.lower()}={value}"]
        return args


_MIGRATED: dict[tuple[str, ...], pathlib.Path] = {}


def migrated_state(config_args: list[str], env: dict[str, str]) -> pathlib.Path:
    """A local state directory with the D1 migrations applied (`wrangler d1 migrations apply
    --local`), made once per process and configuration; workers start on a copy of it, which
    saves a wrangler run (several seconds of CPU) per start."""
    key = tuple(config_args)
    if key not in _MIGRATED:
        state = pathlib.Path(tempfile.mkdtemp(prefix="edgevideo-migrated-"))
        atexit.register(shutil.rmtree, state, ignore_errors=True)
        subprocess.run(
            [str(WRANGLER), "d1", "migrations", "apply", "DB", "--local", "--persist-to", str(state),
             *config_args],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=120,
        )
        _MIGRATED[key] = state
    return _MIGRATED[key]


class WranglerWorker(ProcessWorker):
    """The worker in the real Workers runtime: `wrangler dev` (workerd)."""

    name = "wrangler dev"
    # Another wrangler configuration than the repository's (the benchmarks vary the queue's).
    config: pathlib.Path | None = None

    def config_args(self) -> list[str]:
        return ["--config", str(self.config)] if self.config else []

    def prepare(self, env: dict[str, str]) -> None:
        # A state directory with a D1 database already has its migrations (a restart).
        if not (self.state_dir / "v3" / "d1").exists():
            shutil.copytree(migrated_state(self.config_args(), env), self.state_dir, dirs_exist_ok=True)

    def command(self) -> list[str]:
        args = [
            str(WRANGLER), "dev", "--ip", "127.0.0.1", "--port", str(self.port),
            "--inspector-ip", "127.0.0.1", "--inspector-port", str(free_port()),
            "--show-interactive-dev-session=false", "--persist-to", str(self.state_dir),
            "--env-file", str(ROOT / "config" / "dev.env"), "--log-level", "info",
            *self.config_args(),
        ]
        if self.extra_vars:
            # A later --env-file overrides an earlier one (wrangler's --var does not override
            # values that come from an env file).
            overrides = self.state_dir / "test.env"
            overrides.write_text("".join(f"{k}={v}\n" for k, v in self.extra_vars.items()))
            args += ["--env-file", str(overrides)]
        return args


# Session-wide settings that keep the tests fast: silent broadcasts end after a few seconds,
# the segment size limit is low enough to test with a small body, webhook retries start
# after a second, plugin tasks have a few seconds per hook, and MP4s over 5 MiB (the smallest
# part R2 takes) come back from the transcoder in parts.
TEST_VARS = {
    "LIVE_IDLE_TIMEOUT_SECONDS": "6",
    "MAX_SEGMENT_BYTES": str(4 * 1024 * 1024),
    "UPLOAD_PART_BYTES": str(5 * 1024 * 1024),
    "WEBHOOK_RETRY_BASE_SECONDS": "1",
    "PLUGIN_DEADLINES_SECONDS": "8,8,8,8",
}
TRANSCODER = pathlib.Path(os.environ.get(
    "EDGEVIDEO_TRANSCODER", ROOT / "target" / "debug" / "transcoder"))


class Transcoder:
    """`transcoder serve` as a plain local process, as `make run` starts it."""

    def __init__(self, state_dir: pathlib.Path, port: int | None = None, env: dict | None = None):
        """`port`: a given one (a restart where the last one listened), else a free one;
        `env`: more variables (`TRANSCODER_WORKERS`, ...)."""
        self.state_dir = state_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = state_dir / "transcoder.log"
        self.env = env or {}
        self.process: subprocess.Popen | None = None

    def start(self) -> "Transcoder":
        if not TRANSCODER.exists():
            pytest.fail(f"{TRANSCODER} is missing: cargo build -p edgevideo-transcoder")
        env = dict(os.environ, TRANSCODER_SECRET=DEV_ENV["TRANSCODER_SECRET"],
                   TRANSCODER_STATE_DIR=str(self.state_dir / "jobs"),
                   TRANSCODER_STORE=str(self.state_dir / "store"), **self.env)
        (self.state_dir / "store").mkdir(exist_ok=True)
        self.process = subprocess.Popen(
            [str(TRANSCODER), "serve", "--listen", f"127.0.0.1:{self.port}"], env=env,
            stdout=open(self.log_path, "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"transcoder exited:\n{self.log_path.read_text(errors='replace')}")
            try:
                requests.get(self.url + "/healthz", timeout=1)
                return self
            except requests.RequestException:
                time.sleep(0.1)
        pytest.fail("transcoder did not answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def transcoder(tmp_path_factory):
    """The transcoder's job server, started once for the session."""
    t = Transcoder(tmp_path_factory.mktemp("transcoder")).start()
    yield t
    t.stop()


def start_worker(tmp_path_factory, transcoder, extra_vars: dict[str, str] | None = None) -> "ProcessWorker":
    """A worker with the test configuration (and `extra_vars` over it) and a fresh state
    directory, wired to `transcoder`, started."""
    w = Worker(tmp_path_factory.mktemp(f"{HOST}-state"), extra_vars={**TEST_VARS, **(extra_vars or {})})
    w.extra_vars.update({"PUBLIC_URL": w.url, "TRANSCODER_URL": transcoder.url})
    return w.start()


@pytest.fixture(scope="session")
def worker(tmp_path_factory, transcoder):
    """The worker, started once for the whole session with development configuration, wired
    to the session's transcoder."""
    w = start_worker(tmp_path_factory, transcoder)
    print(f"\n{w.name} answered after {w.started_in_s:.2f} s")
    yield w
    w.stop()


class Api(requests.Session):
    """A `requests` session bound to a base URL: Api(url).get("/api/health")."""

    def __init__(self, base_url: str):
        super().__init__()
        self.base_url = base_url

    def request(self, method, url, *args, **kwargs):
        kwargs.setdefault("timeout", 15)
        if url.startswith("/"):
            url = self.base_url + url
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def api(worker):
    """An [Api] session bound to the worker's URL."""
    with Api(worker.url) as session:
        yield session


def metrics(api) -> dict:
    """The worker's diagnostics counters (`GET /api/_diag/metrics`)."""
    return api.get("/api/_diag/metrics").json()["counts"]


DEV_ENV = dict(
    line.split("=", 1)
    for line in (ROOT / "config" / "dev.env").read_text().splitlines()
    if line and not line.startswith("#")
)
PASSWORD = "correct horse battery staple"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_url(unsigned: str, key: str = DEV_ENV["URL_SIGNING_SECRET"]) -> str:
    """A URL token (`{unsigned}.{mac}`) signed as the worker signs them, with the development
    URL signing secret unless `key` is given."""
    mac = hmac.new(key.encode(), b"edgevideo/url/v1\n" + unsigned.encode(), hashlib.sha256).digest()
    return f"{unsigned}.{b64url(mac)}"


def new_email(domain: str = "example.com") -> str:
    return f"user-{secrets.token_hex(5)}@{domain}"


def signup(api, address: str, password: str = PASSWORD) -> dict:
    """Signs `address` up and opens the link mailed to it (read from the session's SMTP
    server) with the password: `{token, expires_at, user}` of the verified account."""
    before = len(mail().ordered_to(address))
    r = api.post("/api/auth/signup", json={"email": address, "password": password})
    assert r.status_code == 202, r.text
    token = mail().link_token(address, previous=before)
    r = api.post("/api/auth/verify", json={"token": token, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


def bearer(token: str) -> dict:
    return {"authorization": f"Bearer {token}"}


def approve_plugin(api, admin_token: str, plugin_id: str) -> dict:
    """An admin approves a plugin registered with scope `all`, so that it acts on every
    video (without it, a plugin acts on videos of its owner's channels only); returns it."""
    r = api.post(f"/api/plugins/{plugin_id}/approve", headers=bearer(admin_token))
    assert r.status_code == 200, r.text
    assert r.json()["plugin"]["approved"] is True
    return r.json()["plugin"]


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
