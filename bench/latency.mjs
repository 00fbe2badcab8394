// Latency of a browser broadcast, end to end on this machine: the broadcast page (Debian's
// Chromium, fake camera) goes live in `wrangler dev`, pushing low-latency parts, and two
// viewers play the channel on the watch page (hls.js), each in its own Chromium: one in
// hls.js's low-latency mode (the default), one at normal latency (`?latency=normal`).
// Prints, as median and p95:
//   - segment (part) end to listed: from the page starting the PUT of a segment (of a part:
//     each is handed over when complete) to it appearing in its rendition's live playlist as
//     a viewer gets it (through the edge cache);
//   - hls.js's own live-latency estimate (`hls.latency`: the live edge to the playhead),
//     sampled once a second while it plays;
//   - glass to glass: the broadcast page's camera is a canvas that paints this machine's clock
//     into every frame as 48 black or white blocks (the time in ms, mod 2^32, and a check
//     word); the watch page reads the blocks back from every frame it presents
//     (`requestVideoFrameCallback`, the frame drawn into a small canvas) and compares them
//     with its own clock.
// All clocks are this machine's.
//
// With `--gateway`, the broadcaster is an encoder publishing RTMP to the ingest gateway
// instead (ffmpeg, x264 `zerolatency`, its frames painting the clock the same way when they
// are made), the gateway pushes low-latency parts, and two viewers watch at once: one in
// hls.js's low-latency mode, one at normal latency (`?latency=normal`).
//
// `--viewer=low` or `--viewer=normal` (browser broadcast): only that viewer (three Chromiums,
// one encoding the ladder, starve each other on a small machine); `--trace`: the glass-to-glass
// samples second by second and the viewers' stalls.
//
// Run: node bench/latency.mjs [seconds, default 30] [--gateway] (after scripts/build-worker.sh;
// `--gateway` also needs `cargo build -p edgevideo-gateway`).
import { chromium } from "playwright-core";

import {
  cleanup, launchChromium, publishRtmp, signupInBrowser, signupVerified, startGateway, startWorker,
  streamKey, waitFor,
} from "../tests/browser/harness.mjs";

const SECONDS = Number(process.argv.slice(2).find((a) => /^\d+$/.test(a)) || 30);
const GATEWAY = process.argv.includes("--gateway");
// Browser broadcast only: which viewers watch (`--viewer=low` or `--viewer=normal`; default
// both). On a small machine three Chromiums (one encoding the ladder) starve each other.
const MODES = (process.argv.find((a) => a.startsWith("--viewer="))?.slice(9) || "low,normal").split(",");
const PASSWORD = "correct horse battery staple";

const quantile = (values, q) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const summary = (values, unit) => (values.length
  ? `median ${quantile(values, 0.5).toFixed(2)} ${unit}, p95 ${quantile(values, 0.95).toFixed(2)} ${unit} (n=${values.length})`
  : "no samples");

/** The broadcast page's camera: a 1280x720 canvas painting `Date.now()` into each frame
 *  (bits MSB first, left to right, top to bottom, on an 8x6 grid: 32 bits of the time in
 *  ms mod 2^32, then 16 check bits), with the fake microphone beside it. */
function clockCamera() {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    const canvas = Object.assign(document.createElement("canvas"), { width: 1280, height: 720 });
    const g = canvas.getContext("2d");
    const paint = () => {
      const t = Date.now() % 2 ** 32;
      const check = ((Math.floor(t / 65536) ^ (t % 65536)) ^ 0xa5a5) & 0xffff;
      const bits = [];
      for (let i = 31; i >= 0; i--) bits.push(Math.floor(t / 2 ** i) % 2);
      for (let i = 15; i >= 0; i--) bits.push((check >> i) & 1);
      bits.forEach((bit, i) => {
        g.fillStyle = bit ? "#fff" : "#000";
        g.fillRect((i % 8) * 160, Math.floor(i / 8) * 120, 160, 120);
      });
      requestAnimationFrame(paint);
    };
    paint();
    const stream = canvas.captureStream(30);
    if (constraints.audio) {
      const mic = await original({ audio: true });
      mic.getAudioTracks().forEach((track) => stream.addTrack(track));
    }
    return stream;
  };
}

/** On the watch page: reads the clock blocks of every presented frame into
 *  `window.glassToGlass` (ms from paint to presentation), skipping frames that fail the check. */
function readClock() {
  window.glassToGlass = [];
  window.stalls = 0;
  document.getElementById("video").addEventListener("waiting", () => { window.stalls++; });
  const canvas = Object.assign(document.createElement("canvas"), { width: 64, height: 48 });
  const g = canvas.getContext("2d", { willReadFrequently: true });
  const video = document.getElementById("video");
  const onFrame = () => {
    const now = Date.now();
    if (video.videoWidth) {
      g.drawImage(video, 0, 0, 64, 48);
      const { data } = g.getImageData(0, 0, 64, 48);
      const bits = [];
      for (let i = 0; i < 48; i++) {
        const x = (i % 8) * 8 + 4;
        const y = Math.floor(i / 8) * 8 + 4;
        bits.push(data[(y * 64 + x) * 4] > 127 ? 1 : 0);
      }
      const t = bits.slice(0, 32).reduce((v, b) => v * 2 + b, 0);
      const check = bits.slice(32).reduce((v, b) => v * 2 + b, 0);
      if ((((Math.floor(t / 65536) ^ (t % 65536)) ^ 0xa5a5) & 0xffff) === check) {
        window.glassToGlass.push(((now % 2 ** 32) - t + 2 ** 32) % 2 ** 32);
      }
    }
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

/** Signs a broadcaster up through the API and creates a channel; its id and ingest URL. */
async function apiChannel(worker) {
  const base = worker.url;
  const post = async (path, body, token) => {
    const r = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return r.json();
  };
  const { token } = await signupVerified(worker, `latency-${Date.now()}@broadcast.test`, PASSWORD);
  const { id } = await post("/api/channels", { name: "Latency" }, token);
  const { ingest_url: ingestUrl } = await post(`/api/channels/${id}/ingest`, null, token);
  return { id, ingestUrl };
}

/** Opens the watch page of `channelId` (`query` added) and starts reading the clock. */
async function watching(browser, base, channelId, query = "") {
  const watch = await browser.newPage();
  await watch.goto(`${base}/watch?c=${channelId}${query}`);
  await watch.waitForFunction(() => document.getElementById("video").currentTime > 0, null,
    { timeout: 30000 });
  await watch.evaluate(readClock);
  return watch;
}

/** hls.js's latency estimate and the glass-to-glass samples of a watch page (one a second). */
async function readings(watch) {
  const glass = (await watch.evaluate(() => window.glassToGlass)).filter((_, i) => i % 30 === 0);
  return glass.map((ms) => ms / 1000);
}

if (GATEWAY) {
  const worker = await startWorker();
  const gateway = await startGateway(worker.url);
  // One browser per viewer: a page in the background would get no frame callbacks.
  const viewers = [];
for (const _ of MODES) viewers.push(await launchChromium(chromium));
  let encoder = null;
  try {
    const { id, ingestUrl } = await apiChannel(worker);
    encoder = publishRtmp(gateway.rtmpUrl(streamKey(ingestUrl)), SECONDS + 60, { clock: true });
    const { url } = await (await fetch(`${worker.url}/api/channels/${id}/playback`, { method: "POST" })).json();
    await waitFor(async () => (await (await fetch(url)).text()).includes("#EXT-X-PART:"), 30000,
      "parts in the live playlist");
    const low = await watching(viewers[0], worker.url, id);
    const normal = await watching(viewers[1], worker.url, id, "&latency=normal");
    const estimates = { low: [], normal: [] };
    const until = Date.now() + SECONDS * 1000;
    while (Date.now() < until) {
      for (const [name, page] of [["low", low], ["normal", normal]]) {
        const latency = await page.evaluate(() => Number(document.getElementById("video").dataset.latency || 0));
        if (latency > 0) estimates[name].push(latency);
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    const mode = await low.evaluate(() => document.getElementById("video").dataset.lowLatency);
    console.log(`gateway broadcast (RTMP, x264 zerolatency, 2 s segments, 334 ms parts), ${SECONDS} s:`);
    console.log(`  LL-HLS (hls.js low-latency mode${mode === "1" ? "" : ", NOT ENGAGED"}):`);
    console.log(`    glass to glass: ${summary(await readings(low), "s")}`);
    console.log(`    hls.js live latency: ${summary(estimates.low, "s")}`);
    console.log("  normal HLS (same stream, ?latency=normal):");
    console.log(`    glass to glass: ${summary(await readings(normal), "s")}`);
    console.log(`    hls.js live latency: ${summary(estimates.normal, "s")}`);
  } finally {
    if (encoder && encoder.exitCode === null) encoder.kill("SIGKILL");
    for (const viewer of viewers) await viewer.close();
    await gateway.stop();
    await worker.stop();
    cleanup();
  }
  process.exit(0);
}

const worker = await startWorker();
const broadcaster = await launchChromium(chromium, { width: 1280, height: 800 }, { fakeMedia: true });
// One browser per viewer: a page in the background would get no frame callbacks.
const viewers = [];
for (const _ of MODES) viewers.push(await launchChromium(chromium));
try {
  const page = await broadcaster.newPage();
  await page.addInitScript(clockCamera);
  await signupInBrowser(page, worker, `latency-${Date.now()}@broadcast.test`, PASSWORD, "/broadcast");
  await page.fill("#name", "Latency");
  await page.click("#create button[type=submit]");
  const item = await page.waitForSelector("#channels li[data-channel]");
  const channelId = await item.getAttribute("data-channel");

  // When each segment's upload starts on the page: the segment's end, as near as it shows.
  const ended = new Map();
  page.on("request", (request) => {
    const name = request.url().split("/").pop().split("?")[0];
    if (request.method() === "PUT" && name.endsWith(".m4s")) ended.set(name, Date.now());
  });

  await page.click(`#channels li[data-channel="${channelId}"] button.go-live`);
  await page.waitForSelector("#golive[data-state=preview]", { timeout: 20000 });
  await page.click("#golive-start");
  await page.waitForSelector("#golive[data-state=live]", { timeout: 60000 });

  const { url } = await (await fetch(`${worker.url}/api/channels/${channelId}/playback`, { method: "POST" })).json();
  const base = url.replace(/live\.m3u8$/, "");
  const rendition = await waitFor(async () => {
    const text = await (await fetch(url)).text();
    return text.split("\n").find((line) => line.startsWith("live/")) || null;
  }, 30000, "the multivariant playlist");

  await waitFor(async () => (await (await fetch(base + rendition)).text()).includes("#EXT-X-PART:"), 30000,
    "parts in the live playlist");
  const watches = {};
  for (const [i, mode] of MODES.entries()) {
    watches[mode] = await watching(viewers[i], worker.url, channelId, mode === "normal" ? "&latency=normal" : "");
  }
  const listed = new Map();
  const estimates = { low: [], normal: [] };
  const until = Date.now() + SECONDS * 1000;
  for (let tick = 0; Date.now() < until; tick++) {
    // Poll as a player would, a few times a second.
    const text = await (await fetch(base + rendition)).text();
    const now = Date.now();
    for (const line of text.split("\n")) {
      if (line.startsWith("#EXT-X-PRELOAD-HINT")) continue; // hinted, not there yet
      const uri = /URI="([^"]+)"/.exec(line);
      const name = (uri ? uri[1] : line).split("/").pop();
      if (name.endsWith(".m4s") && !listed.has(name)) listed.set(name, now);
    }
    if (tick % 4 === 0) {
      // One sample a second of hls.js's estimate.
      for (const [name, watch] of Object.entries(watches)) {
        const latency = await watch.evaluate(() => Number(document.getElementById("video").dataset.latency || 0));
        if (latency > 0) estimates[name].push(latency);
      }
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  const toListed = (part) => [...listed].filter(([name]) => ended.has(name) && name.includes(".part") === part)
    .map(([name, at]) => (at - ended.get(name)) / 1000).filter((s) => s >= 0);
  const parts = await page.evaluate(() => [...document.querySelectorAll("#golive-health dt")]
    .find((dt) => dt.textContent === "Parts")?.nextElementSibling.textContent || "none");
  console.log(`browser broadcast (Mediabunny, 2 s segments; parts ${parts}), ${SECONDS} s, rendition ${rendition}:`);
  console.log(`  segment end to listed: ${summary(toListed(false), "s")}`);
  console.log(`  part end to listed: ${summary(toListed(true), "s")}`);
  for (const [name, watch] of Object.entries(watches)) {
    if (name === "low") {
      const mode = await watch.evaluate(() => document.getElementById("video").dataset.lowLatency);
      console.log(`  LL-HLS (hls.js low-latency mode${mode === "1" ? "" : ", NOT ENGAGED"}):`);
    } else {
      console.log("  normal HLS (same stream, ?latency=normal):");
    }
    const glass = await readings(watch);
    console.log(`    glass to glass: ${summary(glass, "s")}`);
    if (process.argv.includes("--trace")) {
      console.log(`    per second: ${glass.map((x) => x.toFixed(1)).join(" ")}`);
      const stalls = await watch.evaluate(() => window.stalls || 0);
      console.log(`    stalls (waiting events): ${stalls}`);
    }
    console.log(`    hls.js live latency: ${summary(estimates[name], "s")}`);
  }
  await page.click("#golive-stop");
  await page.waitForSelector("#golive[data-state=ended]", { timeout: 40000 });
} finally {
  await broadcaster.close();
  for (const viewer of viewers) await viewer.close();
  await worker.stop();
  cleanup();
}
