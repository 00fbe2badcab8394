// Encoding cost of the broadcast page's Go live mode on this machine: Debian's Chromium with
// its fake camera (1280x720, 30 fps) encodes H.264 with WebCodecs through Mediabunny, as
// web/golive.js does. Prints, per rendition, the frames per second the encoder sustains
// flat out (alone), then, live (camera -> Mediabunny -> CMAF HLS in memory, Opus audio per
// rendition), the frames per second each rendition of each ladder actually gets.
//
// Chromium's CPU use over each live run (all its processes, from /proc) is printed in cores.
//
// Run: node bench/golive.mjs [seconds per live run, default 12]
import { createServer } from "node:http";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const CHROMIUM = process.env.EDGEVIDEO_CHROMIUM || "/usr/bin/chromium";
const SECONDS = Number(process.argv[2] || 12);
const FPS = 30;
const LADDER = [
  { name: "v720", width: 1280, height: 720, video: 2_500_000, audio: 128_000 },
  { name: "v360", width: 640, height: 360, video: 800_000, audio: 96_000 },
  { name: "v160", width: 284, height: 160, video: 250_000, audio: 64_000 },
];

/** CPU seconds used so far by this process's descendants (Chromium), from /proc. */
function browserCpuSeconds() {
  const stats = new Map();
  for (const pid of readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").replace(/^.*\) /, "").split(" ");
      stats.set(Number(pid), { ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // Gone meanwhile.
    }
  }
  const mine = new Set([process.pid]);
  let ticks = 0;
  for (let grew = true; grew;) {
    grew = false;
    for (const [pid, s] of stats) {
      if (!mine.has(pid) && mine.has(s.ppid)) { mine.add(pid); ticks += s.ticks; grew = true; }
    }
  }
  return ticks / 100; // USER_HZ
}

const PAGE = `<!doctype html><script type="module">
import * as mb from "/mediabunny.mjs";
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const camera = () => navigator.mediaDevices.getUserMedia({ audio: true,
  video: { width: 1280, height: 720, frameRate: ${FPS} } });

// Flat out: distinct camera frames, scaled on a canvas, one encoder, as fast as it accepts them.
window.flatOut = async (r, frames = 90) => {
  const stream = await camera();
  const reader = new MediaStreamTrackProcessor({ track: stream.getVideoTracks()[0] }).readable.getReader();
  const bitmaps = [];
  while (bitmaps.length < 30) {
    const { value } = await reader.read();
    bitmaps.push(await createImageBitmap(value));
    value.close();
  }
  stream.getTracks().forEach((t) => t.stop());
  const canvas = new OffscreenCanvas(r.width, r.height);
  const ctx = canvas.getContext("2d");
  let out = 0;
  const encoder = new VideoEncoder({ output: () => out++, error: (e) => { throw e; } });
  encoder.configure({ codec: "avc1.64001f", width: r.width, height: r.height, bitrate: r.video,
    framerate: ${FPS}, latencyMode: "realtime", avc: { format: "avc" } });
  const t0 = performance.now();
  for (let n = 0; n < frames; n++) {
    ctx.drawImage(bitmaps[n % bitmaps.length], 0, 0, r.width, r.height);
    const frame = new VideoFrame(canvas, { timestamp: Math.round(n * 1e6 / ${FPS}) });
    encoder.encode(frame, { keyFrame: n % ${2 * FPS} === 0 });
    frame.close();
    while (encoder.encodeQueueSize > 2) await sleep(1);
  }
  await encoder.flush();
  const fps = out / ((performance.now() - t0) / 1000);
  encoder.close();
  return fps;
};

// Live: the camera through Mediabunny into CMAF HLS, like the page (uploads left out). The
// camera frames go to each encoder as they are, the encoder scaling them to its configured
// size ("encoder", what the page does where the encoder scales), or Mediabunny scales them on
// a canvas first ("canvas", the page's fallback).
window.live = async (rungs, seconds, audioCodec, scaling) => {
  const stream = await camera();
  const [video] = stream.getVideoTracks();
  const [audio] = stream.getAudioTracks();
  const counts = rungs.map(() => 0);
  const output = new mb.Output({
    format: new mb.HlsOutputFormat({ segmentFormat: new mb.CmafOutputFormat(), live: true,
      targetDuration: 2, maxLiveSegmentCount: 10 }),
    target: new mb.PathedTarget("master.m3u8", () => new mb.BufferTarget({
      onFinalize: () => {} })),
  });
  for (const [i, r] of rungs.entries()) {
    const group = new mb.OutputTrackGroup();
    const size = scaling === "encoder"
      ? { sizeChangeBehavior: "passThrough",
        onEncoderConfig: (config) => { config.width = r.width; config.height = r.height; } }
      : { sizeChangeBehavior: "cover", transform: { width: r.width, height: r.height } };
    const v = new mb.MediaStreamVideoTrackSource(video, { codec: "avc",
      quality: new mb.Quality({ bitrate: r.video }), keyFrameInterval: 2, ...size,
      onEncodedPacket: () => counts[i]++ }, { frameRate: ${FPS} });
    const a = new mb.MediaStreamAudioTrackSource(audio, { codec: audioCodec,
      quality: new mb.Quality({ bitrate: r.audio }) });
    v.errorPromise.catch((e) => console.error(r.name + " video: " + e));
    a.errorPromise.catch((e) => console.error(r.name + " audio: " + e));
    output.addVideoTrack(v, { group, frameRate: ${FPS} });
    output.addAudioTrack(a, { group });
  }
  await output.start();
  await sleep(3000); // warm-up
  const start = counts.slice();
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const elapsed = (performance.now() - t0) / 1000;
  const fps = counts.map((c, i) => (c - start[i]) / elapsed);
  await output.cancel();
  stream.getTracks().forEach((t) => t.stop());
  return fps;
};
window.audioCodec = async () =>
  (await mb.canEncodeAudio("aac", { numberOfChannels: 1, sampleRate: 48000 })) ? "aac" : "opus";
window.ready = true;
</script>`;

const server = createServer((req, res) => {
  if (req.url === "/mediabunny.mjs") {
    res.writeHead(200, { "content-type": "text/javascript" });
    res.end(readFileSync(path.join(ROOT, "node_modules/mediabunny/dist/bundles/mediabunny.min.mjs")));
  } else {
    res.writeHead(200, { "content-type": "text/html" }).end(PAGE);
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const browser = await chromium.launch({
  executablePath: CHROMIUM, headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream",
    `--use-fake-device-for-media-stream=fps=${FPS}`],
});
try {
  const open = async () => {
    const p = await browser.newPage();
    p.on("console", (m) => m.type() === "error" && console.log(`# page: ${m.text()}`));
    await p.goto(`http://127.0.0.1:${server.address().port}/`);
    await p.waitForFunction(() => window.ready);
    return p;
  };
  let page = await open();
  const audioCodec = await page.evaluate(() => window.audioCodec());
  console.log(`# ${(await browser.version())}, fake camera 1280x720 at ${FPS} fps, audio ${audioCodec}`);
  console.log("flat out, one rendition alone (H.264 realtime, software):");
  for (const r of LADDER) {
    const fps = await page.evaluate((rung) => window.flatOut(rung), r);
    console.log(`  ${r.name} ${r.width}x${r.height}: ${fps.toFixed(0)} fps`);
  }
  for (const scaling of ["encoder", "canvas"]) {
    console.log(`live, ${SECONDS} s per ladder, ${scaling} scaling (target ${FPS} fps per rendition):`);
    for (const rungs of [[LADDER[0]], LADDER.slice(0, 2), LADDER.slice(1), LADDER]) {
      const cpu0 = browserCpuSeconds();
      const t0 = Date.now();
      let fps;
      try {
        fps = await page.evaluate(([r, s, a, m]) => window.live(r, s, a, m),
          [rungs, SECONDS, audioCodec, scaling]);
      } catch (e) {
        console.log(`  ${rungs.map((r) => r.name).join("+")}: the page failed (${e.message.split("\n")[0]})`);
        page = await open();
        break;
      }
      const cores = (browserCpuSeconds() - cpu0) / ((Date.now() - t0) / 1000);
      const each = rungs.map((r, i) => `${r.name} ${fps[i].toFixed(1)}`).join(", ");
      const ok = fps.some((f) => f > 1.05 * FPS) ? "irregular (stalls, then bursts to catch up)"
        : fps.every((f) => f >= 0.95 * FPS) ? "real time" : "falls behind";
      if (fps.some((f) => f < 0.5 * FPS)) break; // no point adding renditions
      console.log(`  ${rungs.map((r) => r.name).join("+")}: ${each} fps, Chromium busy ${cores.toFixed(2)} cores: ${ok}`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
