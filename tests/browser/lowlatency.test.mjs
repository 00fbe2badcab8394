// Low-latency HLS from the ingest gateway, in the browser: ffmpeg publishes RTMP (x264
// `zerolatency`) to the gateway, which pushes CMAF parts as they are made; the channel's live
// playlist is a low-latency one (parts, preload hint, blocking reload), hls.js on the watch
// page plays it in its low-latency mode, close to the live edge, and a viewer who asks for
// normal latency (`?latency=normal`) plays the same stream as ordinary HLS further back;
// ffprobe, which knows nothing of parts, reads the playlist as ordinary HLS.
//
// Run: node --test tests/browser/lowlatency.test.mjs (after scripts/build-worker.sh and
// `cargo build -p edgevideo-gateway`).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

import {
  cleanup, launchChromium, publishRtmp, signupVerified, startGateway, startWorker, streamKey, waitFor,
} from "./harness.mjs";

const PASSWORD = "correct horse battery staple";
const run = promisify(execFile);

let worker;
let gateway;
let encoder;
let browser;

before(async () => {
  worker = await startWorker();
  gateway = await startGateway(worker.url);
  browser = await launchChromium(chromium);
});

after(async () => {
  if (encoder && encoder.exitCode === null) encoder.kill("SIGKILL");
  await browser?.close();
  await gateway?.stop();
  await worker?.stop();
  cleanup();
});

async function post(path, body, token) {
  const r = await fetch(`${worker.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
  return r.json();
}

/** The watch page of `channelId` (`query` added) once it plays: hls.js's mode and latency. */
async function plays(channelId, query = "") {
  const page = await browser.newPage();
  await page.goto(`${worker.url}/watch?c=${channelId}${query}`);
  await waitFor(() => page.evaluate(() => {
    const video = document.getElementById("video");
    return video.currentTime > 3 && Number(video.dataset.latency) > 0;
  }), 40000, `the watch page${query} playing`);
  const seen = await page.evaluate(() => {
    const video = document.getElementById("video");
    return { lowLatency: video.dataset.lowLatency, latency: Number(video.dataset.latency),
      error: document.body.dataset.playerError || null };
  });
  await page.close();
  return seen;
}

test("the gateway's parts play in hls.js's low-latency mode, and at normal latency on request", async () => {
  const { token } = await signupVerified(worker, `ll-${Date.now()}@broadcast.test`, PASSWORD);
  const { id } = await post("/api/channels", { name: "Low latency" }, token);
  const { ingest_url: ingestUrl } = await post(`/api/channels/${id}/ingest`, null, token);
  encoder = publishRtmp(gateway.rtmpUrl(streamKey(ingestUrl)), 120);
  const { url } = await post(`/api/channels/${id}/playback`);

  const text = await waitFor(async () => {
    const body = await (await fetch(url)).text();
    return body.includes("#EXT-X-PRELOAD-HINT:TYPE=PART") ? body : null;
  }, 40000, "a low-latency live playlist");
  assert.match(text, /#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1\.0\d*/);
  assert.match(text, /#EXT-X-PART-INF:PART-TARGET=0\.334/);
  assert.match(text, /#EXT-X-PART:DURATION=0\.\d+,URI="seg\/brd_[^/]+\/index_\d{5}\.part0\.m4s",INDEPENDENT=YES/);
  assert.match(await gateway.metrics(), /gateway_parts_pushed_total [1-9]/);

  // A player without low-latency support: ffprobe reads the segments of the same playlist.
  const { stdout } = await run("ffprobe", ["-v", "error", "-show_entries", "stream=codec_name",
    "-of", "csv=p=0", url], { timeout: 60000 });
  assert.deepEqual([...new Set(stdout.split("\n").filter(Boolean))].sort(), ["aac", "h264"]);

  const low = await plays(id);
  assert.equal(low.error, null);
  assert.equal(low.lowLatency, "1");
  const normal = await plays(id, "&latency=normal");
  assert.equal(normal.error, null);
  assert.equal(normal.lowLatency, "0");
  // Measured in bench/latency.mjs --gateway; here only that low latency sits nearer the edge.
  assert.ok(low.latency < normal.latency, `low ${low.latency} s, normal ${normal.latency} s`);
});
