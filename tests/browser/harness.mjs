// Browser-test harness: the built worker in `wrangler dev` (workerd) on a free loopback port
// with a fresh state directory, a real ffmpeg broadcaster, and Debian's Chromium driven by
// playwright-core (no browser download).
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync, mkdtempSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync,
} from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const SCREENSHOTS = path.join(ROOT, "target", "screenshots");
const WRANGLER = path.join(ROOT, "node_modules", ".bin", "wrangler");
export const CHROMIUM = process.env.EDGEVIDEO_CHROMIUM || "/usr/bin/chromium";

export async function freePort() {
  // Drawn at random below the kernel's ephemeral range, as tests/e2e/conftest.py does:
  // outgoing connections and port-0 binds (of the suites running at the same time) take
  // their ports from that range, so none of them can take this one before the server binds.
  let low = 32768;
  try {
    low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || low;
  } catch {
    // Not Linux: the range's usual start.
  }
  const tryPort = (port) => new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(port, "127.0.0.1", () => {
      const { port: bound } = server.address();
      server.close(() => resolve(bound));
    });
  });
  if (low > 11000) {
    for (let i = 0; i < 200; i++) {
      try {
        return await tryPort(10000 + Math.floor(Math.random() * (low - 10000)));
      } catch {
        // Taken: draw another.
      }
    }
  }
  return tryPort(0);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Temporary directories (worker state, browser profiles) removed by `cleanup()`.
const temporary = [];
function tempDir(prefix) {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix));
  temporary.push(dir);
  return dir;
}

/** Removes the temporary directories, once the worker and the browsers are stopped. */
export function cleanup() {
  for (const dir of temporary.splice(0)) rmSync(dir, { recursive: true, force: true });
}

/** Polls `predicate` until it returns a truthy value (returned) or fails after `timeoutMs`. */
export async function waitFor(predicate, timeoutMs = 15000, what = "condition") {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(200);
  }
}

/** The variables of config/dev.env, for the processes the harness starts beside the worker. */
function devEnv() {
  const vars = {};
  for (const line of readFileSync(path.join(ROOT, "config", "dev.env"), "utf8").split("\n")) {
    const m = line.match(/^([A-Z0-9_]+)=(.*)$/);
    if (m) vars[m[1]] = m[2].replace(/^"(.*)"$/, "$1");
  }
  return vars;
}

/** `transcoder serve` (the debug build, as the end-to-end tests use) on a free port; returns
 *  {url, stop()}. */
async function startTranscoder(state) {
  const bin = process.env.EDGEVIDEO_TRANSCODER || path.join(ROOT, "target", "debug", "transcoder");
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const dir = path.join(state, "transcoder");
  mkdirSync(path.join(dir, "store"), { recursive: true });
  const log = openSync(path.join(state, "transcoder.log"), "w");
  const child = spawn(bin, ["serve", "--listen", `127.0.0.1:${port}`], {
    env: { ...process.env, TRANSCODER_SECRET: devEnv().TRANSCODER_SECRET,
      TRANSCODER_STATE_DIR: path.join(dir, "jobs"), TRANSCODER_STORE: path.join(dir, "store") },
    stdio: ["ignore", log, log], detached: true,
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`${bin} exited (cargo build -p edgevideo-transcoder?)`);
    try {
      return (await fetch(`${url}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 30000, "the transcoder answering");
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      try { process.kill(-child.pid, "SIGTERM"); } catch { /* already gone */ }
      await exited;
    }
  };
  return { url, stop };
}

/** A real SMTP server (aiosmtpd, from the test venv that scripts/env.sh puts first on PATH)
 *  on a free port, keeping every message in a Maildir under `state`; returns {url,
 *  count(address), linkToken(address, previous), stop()}. */
async function startMailSink(state) {
  const port = await freePort();
  const dir = path.join(state, "mail");
  const log = openSync(path.join(state, "smtp.log"), "w");
  const child = spawn("python3", ["-m", "aiosmtpd", "-n", "-l", `127.0.0.1:${port}`,
    "-c", "aiosmtpd.handlers.Mailbox", dir], { stdio: ["ignore", log, log], detached: true });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  await waitFor(() => new Promise((resolve) => {
    if (child.exitCode !== null) throw new Error("aiosmtpd exited (tests/requirements.txt installed?)");
    const socket = net.connect(port, "127.0.0.1", () => { socket.destroy(); resolve(true); });
    socket.on("error", () => resolve(false));
  }), 15000, "the SMTP server answering");
  /** The messages to `address` (raw text, quoted-printable soft breaks undone), oldest first. */
  const messages = (address) => {
    const fresh = path.join(dir, "new");
    if (!existsSync(fresh)) return [];
    return readdirSync(fresh)
      .map((name) => ({ name, at: statSync(path.join(fresh, name)).mtimeMs }))
      .sort((a, b) => a.at - b.at || a.name.localeCompare(b.name))
      .map(({ name }) => readFileSync(path.join(fresh, name), "utf8").replace(/=\r?\n/g, ""))
      .filter((text) => new RegExp(`^To: .*${address.replace(/[.+]/g, "\\$&")}`, "mi").test(text));
  };
  return {
    url: `smtp://127.0.0.1:${port}`,
    count: (address) => messages(address).length,
    /** The verification token of the newest mail to `address`, once there are more than
     *  `previous` mails to it. */
    linkToken: async (address, previous = 0) => {
      const all = await waitFor(() => {
        const found = messages(address);
        return found.length > previous ? found : null;
      }, 15000, `a mail to ${address}`);
      const match = all.at(-1).match(/\/verify#([A-Za-z0-9._-]+)/);
      if (!match) throw new Error(`no link in the mail to ${address}:\n${all.at(-1)}`);
      return match[1];
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        try { process.kill(-child.pid, "SIGTERM"); } catch { /* already gone */ }
        await exited;
      }
    },
  };
}

/** Signs `email` up through the API and opens the mailed link: `{token, user}` of the
 *  verified account. */
export async function signupVerified(worker, email, password) {
  const post = async (p, body) => {
    const r = await fetch(worker.url + p, { method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify(body) });
    if (!r.ok) throw new Error(`${p}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const before = worker.mail.count(email);
  await post("/api/auth/signup", { email, password });
  return post("/api/auth/verify", { token: await worker.mail.linkToken(email, before), password });
}

/** Signs `email` up on the login page of `page` and opens the mailed link there, entering
 *  the password on the verify page; resolves once the verify page has sent the browser on. */
export async function signupInBrowser(page, worker, email, password, next = "/") {
  await page.goto(`${worker.url}/login${next === "/" ? "" : `?next=${encodeURIComponent(next)}`}`);
  const before = worker.mail.count(email);
  await page.fill("#signup-email", email);
  await page.fill("#signup-password", password);
  await page.click("#signup button[type=submit]");
  const token = await worker.mail.linkToken(email, before);
  await page.waitForSelector("#status.ok");
  await page.goto(`${worker.url}/verify#${token}`);
  await page.fill("#verify-password", password);
  await page.click("#verify button[type=submit]");
  await page.waitForURL(`${worker.url}/`);
  if (next !== "/") await page.goto(worker.url + next);
}

/** Starts the worker (with `transcoder: true`, beside a transcoder, so that recordings
 *  become MP4s and get their posters) and the SMTP server its mail goes to; returns {url,
 *  stop(), log(), mail} (`mail`: see startMailSink). */
export async function startWorker({ transcoder = false } = {}) {
  const state = tempDir("edgevideo-browser-");
  const env = { ...process.env };
  const jobs = transcoder ? await startTranscoder(state) : null;
  const mail = await startMailSink(state);
  const migrate = spawnSync(WRANGLER, ["d1", "migrations", "apply", "DB", "--local", "--persist-to", state],
    { cwd: ROOT, env, encoding: "utf8", timeout: 120000 });
  if (migrate.status !== 0) throw new Error(`migrations failed: ${migrate.stdout}${migrate.stderr}`);
  // A free port can be taken by another process (a parallel suite) before wrangler binds it:
  // then wrangler exits, or another server answers; a new port is tried.
  for (let attempt = 1; ; attempt++) {
    try {
      const worker = await launchWrangler(state, env, mail, jobs);
      return { ...worker, stop: async () => { await worker.stop(); await jobs?.stop(); await mail.stop(); }, mail };
    } catch (e) {
      if (attempt >= 3) {
        await jobs?.stop();
        await mail.stop();
        throw e;
      }
      console.log(`# wrangler dev did not start (${String(e.message).split("\n")[0]}); another port`);
    }
  }
}

/** Whether `response` to /api/health is a worker's (its health, or its JSON error). */
async function answersAsWorker(response) {
  try {
    const body = await response.json();
    return body !== null && typeof body === "object" && ("version" in body || "error" in body);
  } catch {
    return false;
  }
}

/** `wrangler dev` on a free port over `state`, with its mail going to `mail` (and its
 *  transcode jobs to `jobs`, if any); resolves once it answers as a worker; returns {url,
 *  stop(), log()}. */
async function launchWrangler(state, env, mail, jobs) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const overrides = path.join(state, "test.env");
  writeFileSync(overrides, `LIVE_IDLE_TIMEOUT_SECONDS=6\nPUBLIC_URL=${url}\nSMTP_URL=${mail.url}\n`
    + (jobs ? `TRANSCODER_URL=${jobs.url}\n` : ""));
  const logPath = path.join(state, "wrangler.log");
  const log = openSync(logPath, "w");
  const child = spawn(WRANGLER, [
    "dev", "--ip", "127.0.0.1", "--port", String(port), "--inspector-ip", "127.0.0.1",
    "--inspector-port", String(await freePort()), "--show-interactive-dev-session=false",
    "--persist-to", state, "--env-file", path.join(ROOT, "config", "dev.env"), "--env-file", overrides,
  ], { cwd: ROOT, env, stdio: ["ignore", log, log], detached: true });
  const readLog = () => readFileSync(logPath, "utf8");
  const exited = new Promise((resolve) => child.once("exit", resolve));
  /** Stops wrangler dev (its whole process group); resolves once it has exited. */
  const stop = async () => {
    const signal = (name) => {
      try { process.kill(-child.pid, name); } catch { /* already gone */ }
    };
    if (child.exitCode === null && child.signalCode === null) signal("SIGTERM");
    const timer = setTimeout(() => signal("SIGKILL"), 10000);
    await exited;
    clearTimeout(timer);
    signal("SIGKILL"); // anything of the group that outlived wrangler (workerd)
  };
  try {
    await waitFor(async () => {
      if (child.exitCode !== null) throw new Error(`wrangler dev exited:\n${readLog()}`);
      try {
        return await answersAsWorker(await fetch(`${url}/api/health`));
      } catch {
        return false;
      }
    }, 60000, "wrangler dev answering");
  } catch (e) {
    await stop();
    throw e;
  }
  return { url, stop, log: readLog };
}

/** ffmpeg pushing a live test pattern with a tone to a signed ingest URL (as media.py does). */
export function pushLive(ingestUrl, seconds) {
  return spawn("ffmpeg", [
    "-hide_banner", "-loglevel", "error", "-re",
    "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30",
    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", String(seconds),
    "-c:v", "libx264", "-preset", "veryfast", "-bf", "2", "-g", "60", "-keyint_min", "60",
    "-sc_threshold", "0", "-c:a", "aac", "-ar", "48000", "-b:a", "96k",
    "-f", "hls", "-hls_time", "2", "-hls_list_size", "6", "-method", "PUT", ingestUrl,
  ], { stdio: ["ignore", "ignore", "pipe"] });
}

/** Launches Debian's Chromium with the project's flags (see DESIGN section 5) and a fresh
 *  profile directory: a persistent context, because Playwright takes the profile directory
 *  as a parameter rather than as `--user-data-dir` in the arguments. `fakeMedia`: a fake
 *  camera (1280x720) and microphone, granted without a prompt, for getUserMedia. */
export async function launchChromium(chromium, viewport = { width: 1280, height: 800 },
  { fakeMedia = false } = {}) {
  const profile = tempDir("edgevideo-chromium-");
  return chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--autoplay-policy=no-user-gesture-required",
      ...(fakeMedia ? ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"] : []),
    ],
  });
}

export function screenshotPath(name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  return path.join(SCREENSHOTS, `${name}.png`);
}

/** The ingest gateway (the debug build, as the end-to-end tests use) pushing to `edgeUrl`,
 *  RTMP on a free port, SRT off; returns {rtmpUrl(key), metrics(), stop(), log()}. */
export async function startGateway(edgeUrl, args = []) {
  const bin = process.env.EDGEVIDEO_GATEWAY || path.join(ROOT, "target", "debug", "gateway");
  const state = tempDir("edgevideo-gateway-");
  const [rtmp, http] = [await freePort(), await freePort()];
  const logPath = path.join(state, "gateway.log");
  const log = openSync(logPath, "w");
  const child = spawn(bin, ["--listen", `127.0.0.1:${rtmp}`, "--http-listen", `127.0.0.1:${http}`,
    "--edge", edgeUrl, "--srt-listen", "off", ...args],
  { stdio: ["ignore", log, log], detached: true });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const readLog = () => readFileSync(logPath, "utf8");
  await waitFor(async () => {
    if (child.exitCode !== null) throw new Error(`${bin} exited (cargo build -p edgevideo-gateway?):\n${readLog()}`);
    try {
      return (await fetch(`http://127.0.0.1:${http}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 30000, "the gateway answering");
  return {
    rtmpUrl: (key) => `rtmp://127.0.0.1:${rtmp}/live/${key}`,
    metrics: async () => (await (await fetch(`http://127.0.0.1:${http}/metrics`)).text()),
    log: readLog,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        try { process.kill(-child.pid, "SIGTERM"); } catch { /* already gone */ }
        await exited;
      }
    },
  };
}

/** The stream key of a signed ingest URL (`.../ingest/{token}/index.m3u8`): its token. */
export function streamKey(ingestUrl) {
  return new URL(ingestUrl).pathname.split("/")[2];
}

/** The camera of the latency measurements, as an encoder would see it: 320x240 grey frames
 *  painting this machine's clock at the moment each is made, 30 a second, as 48 black or
 *  white 40x40 blocks on an 8x6 grid (32 bits of the time in ms mod 2^32, MSB first, then 16
 *  check bits: `(hi ^ lo ^ 0xa5a5)`); the watch page reads them back (bench/latency.mjs). */
export function clockFrame(now = Date.now()) {
  const t = now % 2 ** 32;
  const check = ((Math.floor(t / 65536) ^ (t % 65536)) ^ 0xa5a5) & 0xffff;
  const bits = [];
  for (let i = 31; i >= 0; i--) bits.push(Math.floor(t / 2 ** i) % 2);
  for (let i = 15; i >= 0; i--) bits.push((check >> i) & 1);
  const frame = Buffer.alloc(320 * 240);
  for (let row = 0; row < 6; row++) {
    const line = Buffer.alloc(320);
    for (let col = 0; col < 8; col++) line.fill(bits[row * 8 + col] ? 255 : 0, col * 40, col * 40 + 40);
    for (let y = 0; y < 40; y++) line.copy(frame, (row * 40 + y) * 320);
  }
  return frame;
}

/** ffmpeg publishing RTMP to `url` as an encoder in low-latency settings would (x264
 *  `zerolatency`, a keyframe every 2 s, AAC): the video is `clockFrame`s made in real time
 *  (`clock: true`) or a test pattern. Returns the ffmpeg child; kill it to stop. */
export function publishRtmp(url, seconds, { clock = false } = {}) {
  const video = clock
    ? ["-f", "rawvideo", "-pix_fmt", "gray", "-s", "320x240", "-framerate", "30", "-i", "-"]
    : ["-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"];
  const child = spawn("ffmpeg", [
    "-hide_banner", "-loglevel", "error", ...video,
    "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
    "-t", String(seconds),
    "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
    "-g", "60", "-keyint_min", "60", "-sc_threshold", "0",
    "-c:a", "aac", "-ar", "48000", "-b:a", "96k", "-f", "flv", url,
  ], { stdio: [clock ? "pipe" : "ignore", "ignore", "pipe"] });
  if (clock) {
    const started = Date.now();
    let frames = 0;
    const tick = () => {
      if (child.exitCode !== null || child.stdin.destroyed) return;
      // Frames paced by the wall clock: frame n is made at start + n/30 s.
      while (frames <= ((Date.now() - started) * 30) / 1000) {
        child.stdin.write(clockFrame());
        frames++;
      }
      setTimeout(tick, 5);
    };
    child.stdin.on("error", () => {});
    tick();
  }
  return child;
}
