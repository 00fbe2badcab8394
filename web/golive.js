// Go live from the browser, no app: camera and microphone (getUserMedia), encoded on the
// device with WebCodecs through Mediabunny into a ladder of up to 3 renditions, each its own
// CMAF media playlist with its video AND the audio muxed in the same segments (the edge has
// no separate audio playlists), under a multivariant playlist; every file is PUT to the
// channel's signed ingest URL (golive-upload.js). While a segment is being made, its
// low-latency parts (about a third of a second each) go up as soon as they are complete.
//
// Codecs: video H.264 wherever VideoEncoder has it (Chrome and Edge on every OS, Safari;
// Debian's Chromium encodes it in software). Audio AAC (mp4a.40.2) where AudioEncoder has it
// (Chrome on Android, macOS and Windows, Safari); otherwise Opus in CMAF (Chromium on Linux
// and Firefox have no AAC encoder), which hls.js and Chrome's MSE play.
import { api, fill, h, say } from "/app.js";
import { PartCutter, concat, describeFragment, readInit } from "/cmaf-parts.js";
import { Uploader, describeFile, variantsOf, withoutVariants } from "/golive-upload.js";

// The ladder, top first, by the short side of the picture (portrait phones too).
const LADDER = [
  { name: "v720", short: 720, video: 2_500_000, audio: 128_000 },
  { name: "v360", short: 360, video: 800_000, audio: 96_000 },
  { name: "v160", short: 160, video: 250_000, audio: 64_000 },
];
const SEGMENT_SECONDS = 2;
const LIVE_SEGMENTS = 10; // media playlists list the last 20 s: small enough for keepalive
const HEADROOM = 1.4; // the probe must encode the ladder this much faster than real time
const MASTER_EVERY_MS = 30000; // re-push the multivariant playlist (BANDWIDTH refines) this often
const THUMB_FIRST_MS = 3000; // the first thumbnail, once the picture has settled
const THUMB_EVERY_MS = 10000; // then one this often
const [THUMB_WIDTH, THUMB_HEIGHT] = [320, 180];
// Low-latency parts: PART-TARGET (constant for the broadcast; viewers sit 3 of them behind
// the live edge), and where a part ends: before the frame that would take it past PART_SOFT
// (10 frames, 333 ms, at 30 fps; the margin absorbs the jitter of camera frame times).
const PART_TARGET = 0.35;
const PART_SOFT = 0.34;
const PART_WAIT_MS = 700; // a finished segment waits at most this long for its last parts

const el = (id) => document.getElementById(id);
const section = el("golive");
const preview = el("golive-preview");
const status = el("golive-status");
const health = el("golive-health");
const buttons = {
  start: el("golive-start"), stop: el("golive-stop"), mute: el("golive-mute"),
  flip: el("golive-switch"), close: el("golive-close"),
};

let mediabunny = null;
let channel = null;
let stream = null;
let facing = "user";
let broadcast = null;
let wakeLock = null;

function setState(state) {
  const was = section.dataset.state;
  section.dataset.state = state;
  // The page lists the channel's live state and the recordings: tell it.
  if (was !== state && (state === "live" || was === "live" || was === "stopping")) {
    document.dispatchEvent(new CustomEvent("golive", { detail: { state } }));
  }
  const live = state === "live";
  buttons.start.disabled = !(state === "preview" || state === "ended" || state === "failed") || !stream;
  buttons.stop.disabled = !live;
  buttons.flip.disabled = state === "starting" || live || state === "stopping";
  buttons.close.disabled = state === "starting" || live || state === "stopping";
  el("golive-badge").hidden = !live;
}

/** Opens the Go live panel for channel `c` (`{id, name}`) and turns the camera on. */
export async function openGoLive(c) {
  if (broadcast && broadcast.running()) {
    say(status, "Stop the current broadcast first.", "warn");
    return;
  }
  channel = c;
  el("golive-channel").textContent = c.name;
  section.hidden = false;
  section.scrollIntoView({ block: "start" });
  if (!window.isSecureContext || !navigator.mediaDevices || !window.VideoEncoder) {
    say(status, "This browser cannot encode video here (it needs HTTPS and WebCodecs: a recent "
      + "Chrome, Edge or Safari). Use the ffmpeg command instead.", "error");
    setState("unsupported");
    return;
  }
  if (!stream) await openCamera();
}

function cameraMessage(e) {
  if (e.name === "NotAllowedError") {
    return "Camera or microphone access was refused. Allow it in your browser's site settings, then try again.";
  }
  if (e.name === "NotFoundError" || e.name === "OverconstrainedError") return "No camera or microphone was found.";
  if (e.name === "NotReadableError") return "The camera or microphone is in use by another app.";
  return `The camera could not start (${e.message || e.name}).`;
}

async function openCamera() {
  setState("starting");
  say(status, "Starting the camera…");
  try {
    const next = await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: { facingMode: facing, width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30, max: 30 } },
    });
    closeCamera();
    stream = next;
    preview.srcObject = stream;
    preview.classList.toggle("mirror", facing === "user");
    const cameras = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    buttons.flip.hidden = cameras.length < 2;
    setMuted(false);
    say(status, "Camera ready. Start when you are.");
    setState("preview");
  } catch (e) {
    say(status, cameraMessage(e), "error");
    setState(stream ? "preview" : "failed");
  }
}

function closeCamera() {
  if (stream) stream.getTracks().forEach((t) => t.stop());
  stream = null;
  preview.srcObject = null;
}

function setMuted(muted) {
  if (stream) stream.getAudioTracks().forEach((t) => { t.enabled = !muted; });
  buttons.mute.setAttribute("aria-pressed", String(muted));
  buttons.mute.textContent = muted ? "Unmute microphone" : "Mute microphone";
}

// --- The ladder ---------------------------------------------------------------------------

const even = (n) => Math.max(2, 2 * Math.round(n / 2));

/** The renditions for a `width`×`height` camera: no upscaling; a camera between two rungs
 *  gets its own size as the top one. */
export function ladderFor(width, height) {
  const short = Math.min(width, height);
  const size = (s) => ({ width: even((width * s) / short), height: even((height * s) / short) });
  const rungs = LADDER.filter((r) => r.short <= short).map((r) => ({ ...r, ...size(r.short) }));
  if (!rungs.length || rungs[0].short < short && short < 720) {
    const area = (width * height) / (1280 * 720);
    rungs.unshift({ name: `v${short}`, short, video: Math.round(2_500_000 * area / 1000) * 1000,
      audio: 128_000, width: even(width), height: even(height) });
  }
  return rungs.slice(0, 3);
}

/** Whether this browser's VideoEncoder scales frames to its configured size itself (Chrome
 *  does): then every rendition encodes the camera frames directly, without a canvas copy. */
async function encoderScales() {
  try {
    let size = "";
    const encoder = new VideoEncoder({ error: () => {}, output: (_chunk, meta) => {
      if (meta && meta.decoderConfig) size = `${meta.decoderConfig.codedWidth}x${meta.decoderConfig.codedHeight}`;
    } });
    encoder.configure({ codec: "avc1.42001f", width: 320, height: 180, bitrate: 300_000, framerate: 30 });
    const canvas = new OffscreenCanvas(640, 360);
    canvas.getContext("2d").fillRect(0, 0, 640, 360);
    const frame = new VideoFrame(canvas, { timestamp: 0 });
    encoder.encode(frame, { keyFrame: true });
    frame.close();
    await encoder.flush();
    encoder.close();
    return size === "320x180";
  } catch {
    return false;
  }
}

/** `n` distinct frames of the camera preview, as bitmaps. */
async function cameraFrames(n) {
  const frames = [];
  while (frames.length < n) {
    await new Promise((resolve) => {
      if (preview.requestVideoFrameCallback) preview.requestVideoFrameCallback(() => resolve());
      setTimeout(resolve, 100); // a paused preview must not stall the check
    });
    frames.push(await createImageBitmap(preview));
  }
  return frames;
}

/** Frames per second this device encodes the whole of `rungs` at, all at once as when live:
 *  real camera frames, H.264 in real-time mode, as fast as the encoders take them. */
async function encodeSpeed(rungs, fps, bitmaps, scales, frames = 45) {
  const canvases = scales ? [] : rungs.map((r) => new OffscreenCanvas(r.width, r.height));
  let failed = null;
  const encoders = rungs.map((r) => {
    const encoder = new VideoEncoder({ output: () => {}, error: (e) => { failed = e; } });
    encoder.configure({ codec: "avc1.64001f", width: r.width, height: r.height, bitrate: r.video,
      framerate: fps, latencyMode: "realtime", avc: { format: "avc" } });
    return encoder;
  });
  const started = performance.now();
  for (let n = 0; n < frames && !failed; n++) {
    const timestamp = Math.round((n * 1e6) / fps);
    const image = bitmaps[n % bitmaps.length];
    const full = scales ? new VideoFrame(image, { timestamp }) : null;
    rungs.forEach((r, i) => {
      let frame = full;
      if (!scales) {
        canvases[i].getContext("2d").drawImage(image, 0, 0, r.width, r.height);
        frame = new VideoFrame(canvases[i], { timestamp });
      }
      encoders[i].encode(frame, { keyFrame: n % (2 * fps) === 0 });
      if (!scales) frame.close();
    });
    if (full) full.close();
    while (!failed && encoders.some((e) => e.encodeQueueSize > 2)) await new Promise((r) => setTimeout(r, 2));
  }
  await Promise.all(encoders.map((e) => e.flush().catch(() => {})));
  const seconds = (performance.now() - started) / 1000;
  encoders.forEach((e) => e.state !== "closed" && e.close());
  if (failed) throw failed;
  return frames / seconds;
}

/** Drops the top rendition until the device encodes the ladder fast enough. */
async function fitLadder(rungs, fps, scales) {
  const bitmaps = await cameraFrames(15);
  const probes = [];
  try {
    while (rungs.length) {
      const speed = await encodeSpeed(rungs, fps, bitmaps, scales);
      probes.push(`${rungs.map((r) => r.name).join("+")}: ${Math.round(speed)} fps`);
      if (speed >= fps * HEADROOM || rungs.length === 1) break;
      rungs = rungs.slice(1);
    }
  } finally {
    bitmaps.forEach((b) => b.close());
  }
  return { rungs, probes };
}

/** AAC where the browser encodes it, else Opus; at the microphone's own sample rate where the
 *  encoder takes it (Mediabunny's resampler holds 5 s of audio, which would delay segments). */
async function pickAudio(track) {
  const s = track.getSettings();
  const numberOfChannels = Math.min(2, s.channelCount || 1);
  const quality = new mediabunny.Quality({ bitrate: 96_000 });
  for (const codec of ["aac", "opus"]) {
    for (const sampleRate of [s.sampleRate || 48000, 48000]) {
      if (await mediabunny.canEncodeAudio(codec, { numberOfChannels, sampleRate, quality })) {
        return { codec, resample: sampleRate !== (s.sampleRate || 48000) ? sampleRate : null };
      }
    }
  }
  throw new Error("This browser cannot encode audio (no AAC or Opus encoder). Use the ffmpeg command instead.");
}

// --- Going live ---------------------------------------------------------------------------

async function start() {
  if (!stream || !channel) return;
  setState("starting");
  fill(health);
  try {
    say(status, "Getting ready…");
    mediabunny ??= await import("/vendor/mediabunny.min.js");
    const video = stream.getVideoTracks()[0];
    const audio = stream.getAudioTracks()[0];
    if (!video || !audio) throw new Error("A camera and a microphone are both needed to go live.");
    const settings = video.getSettings();
    const fps = Math.min(30, Math.round(settings.frameRate || 30));
    let rungs = ladderFor(settings.width, settings.height);
    const top = rungs[0];
    if (!await mediabunny.canEncodeVideo("avc", { width: top.width, height: top.height,
      quality: new mediabunny.Quality({ bitrate: top.video }), frameRate: fps })) {
      throw new Error("This browser cannot encode H.264 video. Try Chrome, Edge or Safari, or use the ffmpeg command.");
    }
    const audioCodec = await pickAudio(audio);
    say(status, "Checking how much video this device can encode…");
    const scales = await encoderScales();
    const fit = await fitLadder(rungs, fps, scales);
    rungs = fit.rungs;
    say(status, "Connecting…");
    const r = await api(`/api/channels/${encodeURIComponent(channel.id)}/ingest`, { method: "POST" });
    const base = r.ingest_url.replace(/index\.m3u8$/, "");
    if (new URL(base).origin !== location.origin) {
      throw new Error("This page can only broadcast to its own site; use the ffmpeg command instead.");
    }
    broadcast = new Broadcast({ base, rungs, fps, video, audio, audioCodec, scales, probes: fit.probes });
    await broadcast.start();
    setState("live");
    say(status, "You are live.", "ok");
    keepAwake();
  } catch (e) {
    if (broadcast) broadcast.abandon();
    broadcast = null;
    say(status, e.message, "error");
    setState(stream ? "preview" : "failed");
  }
}

async function keepAwake() {
  try {
    if (navigator.wakeLock && document.visibilityState === "visible") {
      wakeLock = await navigator.wakeLock.request("screen");
    }
  } catch {
    // Not allowed here (battery saver, no user gesture): the broadcast goes on.
  }
}

function releaseWakeLock() {
  if (wakeLock) wakeLock.release().catch(() => {});
  wakeLock = null;
}

const kbps = (bits) => (bits >= 1e6 ? `${(bits / 1e6).toFixed(1)} Mb/s` : `${Math.round(bits / 1000)} kb/s`);

class Broadcast {
  constructor({ base, rungs, fps, video, audio, audioCodec, scales, probes }) {
    Object.assign(this, { base, fps, video, audio, audioCodec, scales, probes });
    this.rungs = rungs.map((r) => ({ ...r, active: true, frames: 0, seen: 0, rate: fps, codec: "" }));
    this.bySource = new Map();
    this.dropped = new Set();
    this.master = null; // Mediabunny's latest multivariant playlist
    this.masterSent = { variants: "", at: 0 };
    this.slowTicks = 0;
    this.lastDrop = 0;
    this.state = "starting";
    this.uploader = new Uploader(base, {
      onFatal: (e) => this.fail(e),
      onSkip: (e, name) => say(status, `The server refused ${name}: ${e.message}`, "warn"),
    });
  }

  running() {
    return this.state === "starting" || this.state === "live" || this.state === "stopping";
  }

  nameOf(tracks) {
    return this.bySource.get(tracks[0].source);
  }

  async start() {
    const mb = mediabunny;
    const format = new mb.HlsOutputFormat({
      segmentFormat: new mb.CmafOutputFormat(),
      live: true,
      targetDuration: SEGMENT_SECONDS,
      maxLiveSegmentCount: LIVE_SEGMENTS,
      getPlaylistPath: ({ tracks }) => `${this.nameOf(tracks)}.m3u8`,
      getInitPath: ({ tracks }) => `${this.nameOf(tracks)}_init.mp4`,
      getSegmentPath: ({ n, playlist }) => `${this.nameOf(playlist.tracks)}_${String(n).padStart(5, "0")}.m4s`,
    });
    this.output = new mb.Output({
      format,
      target: new mb.PathedTarget("master.m3u8", ({ path }) => new mb.BufferTarget({
        onFinalize: (buffer) => this.written(path.split("/").pop(), buffer),
      })),
    });
    for (const r of this.rungs) this.addRendition(r);
    await this.output.start();
    this.state = "live";
    this.startedAt = performance.now();
    this.timer = setInterval(() => this.tick(), 1000);
    // The home page's picture of the channel: soon after the start, then every 10 s.
    this.thumbFirst = setTimeout(() => this.sendThumbnail(), THUMB_FIRST_MS);
    this.thumbTimer = setInterval(() => this.sendThumbnail(), THUMB_EVERY_MS);
  }

  /** A small JPEG of the camera for the home page (best effort: a failure waits for the
   *  next one; a refused URL already stops the broadcast through the segment uploads). */
  async sendThumbnail() {
    if (this.state !== "live" || !preview.videoWidth) return;
    const canvas = document.createElement("canvas");
    [canvas.width, canvas.height] = [THUMB_WIDTH, THUMB_HEIGHT];
    const scale = Math.max(THUMB_WIDTH / preview.videoWidth, THUMB_HEIGHT / preview.videoHeight);
    const [w, h2] = [preview.videoWidth * scale, preview.videoHeight * scale];
    canvas.getContext("2d").drawImage(preview, (THUMB_WIDTH - w) / 2, (THUMB_HEIGHT - h2) / 2, w, h2);
    const jpeg = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.7));
    if (!jpeg) return;
    try {
      const r = await fetch(`${this.base}thumb.jpg`, { method: "PUT", body: jpeg });
      if (r.ok) this.thumbnails = (this.thumbnails || 0) + 1;
      section.dataset.thumbnails = String(this.thumbnails || 0);
    } catch {
      // The next one may get through.
    }
  }

  stopThumbnails() {
    clearTimeout(this.thumbFirst);
    clearInterval(this.thumbTimer);
  }

  /** One rendition: its video and its own audio track, grouped so that Mediabunny muxes them
   *  into the same playlist and segments. Where the encoder scales frames itself, the camera
   *  frames go to it as they are and only its configured size changes (Mediabunny 1.61 hands
   *  `onEncoderConfig` the config it then uses); elsewhere Mediabunny scales on a canvas. */
  addRendition(r) {
    const mb = mediabunny;
    const group = new mb.OutputTrackGroup();
    r.parts = new PartMaker(this, r);
    const size = this.scales
      ? { sizeChangeBehavior: "passThrough",
        onEncoderConfig: (config) => { config.width = r.width; config.height = r.height; } }
      : { sizeChangeBehavior: "cover", transform: { width: r.width, height: r.height } };
    r.videoSource = new mb.MediaStreamVideoTrackSource(this.video, {
      codec: "avc",
      quality: new mb.Quality({ bitrate: r.video }),
      keyFrameInterval: SEGMENT_SECONDS,
      ...size,
      onEncodedPacket: (packet, meta) => {
        r.frames++;
        if (meta && meta.decoderConfig) describePicture(meta.decoderConfig, r);
        r.parts.video(packet, meta);
      },
    }, { frameRate: this.fps });
    r.audioSource = new mb.MediaStreamAudioTrackSource(this.audio, {
      codec: this.audioCodec.codec,
      quality: new mb.Quality({ bitrate: r.audio }),
      transform: this.audioCodec.resample ? { sampleRate: this.audioCodec.resample } : undefined,
      onEncodedPacket: (packet, meta) => r.parts.audio(packet, meta),
    });
    for (const source of [r.videoSource, r.audioSource]) {
      this.bySource.set(source, r.name);
      source.errorPromise.catch((e) => this.fail(e));
    }
    this.output.addVideoTrack(r.videoSource, { group, frameRate: this.fps, bitrate: r.video });
    this.output.addAudioTrack(r.audioSource, { group, bitrate: r.audio });
  }

  /** A file Mediabunny finished: queue its upload (the multivariant playlist only when its
   *  renditions change, and every MASTER_EVERY_MS). */
  written(name, buffer) {
    const file = describeFile(name);
    if (!file || this.state === "failed") return;
    if (file.kind === "init") {
      this.uploader.put(name, buffer);
      return;
    }
    if (file.kind === "segment") {
      // After its parts (they are made from the same packets at the same time).
      const r = this.rungs.find((x) => x.name === file.lane);
      const n = Number(/_(\d+)\.m4s$/.exec(name)[1]);
      (r ? r.parts.through(n) : Promise.resolve(false)).then((complete) => {
        // With all its parts made, the uploader may commit the segment from them instead of
        // sending its bytes again (when every part went up).
        if (this.state !== "failed") this.uploader.put(name, buffer, { parts: complete ? r.parts.countOf(n) : 0 });
      });
      return;
    }
    const text = new TextDecoder().decode(buffer);
    if (file.kind === "playlist") {
      this.uploader.put(name, text);
      return;
    }
    this.master = text;
    this.pushMaster(false);
  }

  pushMaster(force) {
    if (!this.master) return;
    const text = withoutVariants(this.master, this.dropped);
    const variants = variantsOf(text).join(",");
    const now = performance.now();
    if (!force && variants === this.masterSent.variants && now - this.masterSent.at < MASTER_EVERY_MS) return;
    this.masterSent = { variants, at: now };
    this.uploader.put("master.m3u8", text);
  }

  active() {
    return this.rungs.filter((r) => r.active);
  }

  /** Once a second: frame rates, upload health, and degrading when either falls behind. */
  tick() {
    if (!this.onAir && this.uploader.uploaded > 0) {
      // The edge has the first files: the channel is live there now.
      this.onAir = true;
      document.dispatchEvent(new CustomEvent("golive", { detail: { state: "on-air" } }));
    }
    for (const r of this.active()) {
      r.rate = 0.5 * r.rate + 0.5 * (r.frames - r.seen);
      r.seen = r.frames;
    }
    const stats = this.uploader.stats();
    const now = performance.now();
    const settled = now - this.startedAt > 8000 && now - this.lastDrop > 10000;
    const slow = this.active().some((r) => r.rate < 0.8 * this.fps);
    this.slowTicks = slow ? this.slowTicks + 1 : 0;
    if (settled && this.active().length > 1) {
      if (stats.oldestMs > 3 * SEGMENT_SECONDS * 1000) {
        this.dropTop("Your upload is falling behind, so the highest quality was turned off.");
      } else if (this.slowTicks >= 4) {
        this.dropTop("This device cannot encode every quality in real time, so the highest one was turned off.");
      }
    }
    this.render(stats);
  }

  dropTop(message) {
    const [top] = this.active();
    top.active = false;
    this.dropped.add(top.name);
    this.uploader.drop(top.name);
    top.parts.stop();
    top.videoSource.close();
    top.audioSource.close();
    this.lastDrop = performance.now();
    this.slowTicks = 0;
    this.pushMaster(true);
    say(status, `${message} Still live.`, "warn");
  }

  render(stats) {
    const seconds = Math.round((performance.now() - this.startedAt) / 1000);
    const rows = [
      ["Live for", `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`],
      ["Renditions", this.active().map((r) =>
        `${r.name} ${r.width}×${r.height} ${kbps(r.video)} · ${Math.round(r.rate)} fps`).join("; ")],
      ["Codecs", [...new Set(this.active().map((r) => r.codec).filter(Boolean))]
        .concat(this.audioCodec.codec === "aac" ? "AAC" : "Opus").join(", ")],
      ["Parts", partsRow(this.active(), this.uploader.parts)],
      ["Segments waiting", `${stats.queued}${stats.oldestMs > 1000 ? ` (oldest ${(stats.oldestMs / 1000).toFixed(1)} s)` : ""}`],
      ["Last upload", stats.latencyMs === null ? "—" : `${Math.round(stats.latencyMs)} ms`],
      ["Upload rate", kbps(stats.bitsPerSecond)],
      ["Encoder check", this.probes.join("; ")],
    ];
    if (stats.failures) rows.push(["Retried uploads", String(stats.failures)]);
    fill(health, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    health.dataset.segments = String(this.uploader.uploaded);
    health.dataset.parts = String(this.uploader.parts.up);
    health.dataset.committed = String(this.uploader.parts.committed);
    health.dataset.ladder = this.active().map((r) => r.name).join(",");
  }

  /** Stop: Mediabunny ends every playlist with ENDLIST; wait for the uploads. */
  async stop() {
    if (this.state !== "live") return;
    this.state = "stopping";
    clearInterval(this.timer);
    this.stopThumbnails();
    this.rungs.forEach((r) => r.parts.stop()); // the last segments go without waiting for parts
    try {
      await this.output.finalize();
    } catch {
      // The uploads below still end what reached the edge.
    }
    if (this.state === "failed") return;
    const done = await this.uploader.drain(20000);
    if (this.state === "failed") return false; // the edge refused the last uploads
    this.uploader.stop();
    this.state = "ended";
    return done;
  }

  fail(error) {
    if (this.state === "failed" || this.state === "ended") return;
    const wasRunning = this.running();
    this.state = "failed";
    clearInterval(this.timer);
    this.stopThumbnails();
    this.rungs.forEach((r) => r.parts.stop());
    this.uploader.stop();
    if (this.output && this.output.state !== "finalized") this.output.cancel().catch(() => {});
    if (wasRunning) ended(failureMessage(error), "error");
  }

  /** The page is going away: end the playlists with keepalive requests. */
  abandon() {
    if (!this.running()) return;
    this.state = "failed";
    clearInterval(this.timer);
    this.stopThumbnails();
    this.uploader.endWithKeepalive();
    if (this.output && this.output.state === "started") this.output.cancel().catch(() => {});
  }
}

/** One rendition's low-latency parts. Mediabunny's HLS muxer writes a segment only once it
 *  is complete, so the parts are made beside it from the same encoded packets: a
 *  `PartCutter` follows its segmentation, and one CMAF output per segment (Mediabunny's
 *  CMAF writer, the one that writes the segments, with the same tracks in the same order
 *  and the same time scales) turns each part's packets into a `moof` + `mdat` fragment when
 *  the part is complete (`forceFragmentFinalization`, which Mediabunny's own single-file
 *  HLS mode uses). A part's fragment holds the same samples with the same times as its span
 *  of the segment; its duration and independence are read back from its `moof`. */
class PartMaker {
  constructor(broadcast, r) {
    this.broadcast = broadcast;
    this.r = r;
    this.cutter = new PartCutter({ target: PART_TARGET, soft: PART_SOFT, segment: SEGMENT_SECONDS });
    this.configs = { video: null, audio: null }; // the first packets' decoder configs, as the muxer keeps
    this.outputs = new Map(); // segment number -> its CMAF output
    this.chain = Promise.resolve();
    this.done = 0; // segments whose parts are all made
    this.counts = new Map(); // segment number -> parts made
    this.waiters = [];
    this.stopped = false;
    this.durations = []; // the last parts' durations (s)
  }

  video(packet, meta) {
    if (this.stopped) return;
    if (meta && meta.decoderConfig) this.configs.video ??= meta.decoderConfig;
    this.cutter.addVideo(packet);
    this.schedule();
  }

  audio(packet, meta) {
    if (this.stopped) return;
    if (meta && meta.decoderConfig) this.configs.audio ??= meta.decoderConfig;
    this.cutter.addAudio(packet);
    this.schedule();
  }

  schedule() {
    const parts = this.cutter.take();
    if (!parts.length) return;
    const through = this.cutter.n - 1;
    this.chain = this.chain.then(async () => {
      for (const part of parts) {
        if (this.stopped) return;
        await this.make(part);
      }
      this.done = Math.max(this.done, through);
      for (const [n, segment] of this.outputs) {
        if (n <= through) {
          this.outputs.delete(n);
          segment.output.cancel().catch(() => {});
        }
      }
      this.wake();
    }).catch((e) => {
      // The broadcast goes on without parts for this rendition.
      console.warn(`parts of ${this.r.name} stopped:`, e);
      this.stop();
    });
  }

  async open(n) {
    const mb = mediabunny;
    const segment = { chunks: [], tracks: null, started: { video: false, audio: false } };
    segment.output = new mb.Output({
      format: new mb.CmafOutputFormat({
        onMoov: (data) => { segment.tracks = readInit(data); },
        onMoof: (data) => segment.chunks.push(data.slice()),
        onMdat: (data) => segment.chunks.push(data.slice()),
      }),
      target: new mb.NullTarget(),
      initTarget: new mb.NullTarget(),
    });
    segment.videoSource = new mb.EncodedVideoPacketSource("avc");
    segment.audioSource = new mb.EncodedAudioPacketSource(this.broadcast.audioCodec.codec);
    segment.output.addVideoTrack(segment.videoSource, { frameRate: this.broadcast.fps });
    segment.output.addAudioTrack(segment.audioSource);
    await segment.output.start();
    this.outputs.set(n, segment);
    return segment;
  }

  async make(part) {
    const segment = this.outputs.get(part.n) || await this.open(part.n);
    this.counts.set(part.n, Math.max(this.counts.get(part.n) || 0, part.index + 1));
    for (const n of this.counts.keys()) if (n < part.n - 8) this.counts.delete(n);
    const end = part.start + part.duration;
    for (const [i, packet] of part.video.entries()) {
      // The last frame lasts until the next part starts (Mediabunny would guess its duration).
      const p = i === part.video.length - 1 ? packet.clone({ duration: end - packet.timestamp }) : packet;
      await segment.videoSource.add(p, segment.started.video ? undefined : { decoderConfig: this.configs.video });
      segment.started.video = true;
    }
    for (const packet of part.audio) {
      await segment.audioSource.add(packet, segment.started.audio ? undefined : { decoderConfig: this.configs.audio });
      segment.started.audio = true;
    }
    segment.chunks = [];
    await segment.output._muxer.forceFragmentFinalization();
    const bytes = concat(segment.chunks);
    const info = describeFragment(bytes, segment.tracks);
    const target = Math.round(PART_TARGET * 1e6);
    const duration = Math.min(info.durationUs, target);
    this.durations.push(duration / 1e6);
    if (this.durations.length > 30) this.durations.shift();
    const query = `duration_us=${duration}&part_target_us=${target}&independent=${info.independent ? 1 : 0}`;
    this.broadcast.uploader.put(`${this.r.name}_${String(part.n).padStart(5, "0")}.part${part.index}.m4s?${query}`,
      bytes);
  }

  /** Resolves once segment `n`'s parts are all queued (true), or PART_WAIT_MS from now or
   *  when parts stop (false). */
  through(n) {
    if (this.stopped) return Promise.resolve(false);
    if (this.done >= n) return Promise.resolve(true);
    return new Promise((resolve) => {
      const waiter = { n, resolve };
      this.waiters.push(waiter);
      setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(false);
      }, PART_WAIT_MS);
    });
  }

  /** How many parts segment `n` was cut into (0 if unknown). */
  countOf(n) {
    return this.counts.get(n) || 0;
  }

  wake() {
    const ready = this.waiters.filter((w) => this.stopped || this.done >= w.n);
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    ready.forEach((w) => w.resolve(!this.stopped));
  }

  stop() {
    if (this.stopped) return;
    this.stopped = true;
    for (const segment of this.outputs.values()) segment.output.cancel().catch(() => {});
    this.outputs.clear();
    this.wake();
  }
}

function partsRow(rungs, counts) {
  const durations = rungs.flatMap((r) => r.parts.durations);
  if (!durations.length) return "—";
  const ms = (s) => Math.round(s * 1000);
  return `${counts.up} up${counts.dropped ? `, ${counts.dropped} dropped` : ""}; `
    + `${ms(Math.min(...durations))}–${ms(Math.max(...durations))} ms (target ${ms(PART_TARGET)} ms)`;
}

/** Makes the decoder config (which the muxer reads next, for the init segment and the
 *  multivariant playlist) say what the encoder made: the rendition's size rather than the
 *  camera's aspect size, and the codec string of the actual avcC (profile, flags, level). */
function describePicture(config, r) {
  config.displayAspectWidth = r.width;
  config.displayAspectHeight = r.height;
  const d = config.description;
  if (d && config.codec.startsWith("avc1.")) {
    const avcC = ArrayBuffer.isView(d) ? new Uint8Array(d.buffer, d.byteOffset, d.byteLength) : new Uint8Array(d);
    if (avcC.length > 3) config.codec = "avc1." + [...avcC.slice(1, 4)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }
  r.codec = config.codec;
}

function failureMessage(e) {
  if (e.status === 403) {
    return `The broadcast was stopped: its link is no longer valid (it expired, or the stream key changed). `
      + `Start again for a new one. (${e.message})`;
  }
  if (e.status === 409) return `The broadcast was stopped: another broadcast is already live on this channel. (${e.message})`;
  if (e.code === "queue_full") return e.message;
  return `The broadcast stopped: ${e.message || e}`;
}

function ended(message, kind) {
  releaseWakeLock();
  say(status, message, kind);
  setState(kind === "error" ? "failed" : "ended");
}

async function stop() {
  if (!broadcast) return;
  setState("stopping");
  say(status, "Ending the broadcast…");
  const done = await broadcast.stop();
  if (broadcast.state === "failed") return;
  ended(done ? "The broadcast has ended." : "The broadcast has ended, but its last seconds may not have reached viewers.", "ok");
}

buttons.start.addEventListener("click", start);
buttons.stop.addEventListener("click", stop);
buttons.mute.addEventListener("click", () => setMuted(buttons.mute.getAttribute("aria-pressed") !== "true"));
buttons.flip.addEventListener("click", () => {
  facing = facing === "user" ? "environment" : "user";
  openCamera();
});
buttons.close.addEventListener("click", () => {
  closeCamera();
  section.hidden = true;
  setState("closed");
});
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && broadcast && broadcast.state === "live") keepAwake();
});
window.addEventListener("pagehide", () => { if (broadcast) broadcast.abandon(); });
window.addEventListener("beforeunload", (event) => {
  if (broadcast && broadcast.state === "live") event.preventDefault();
});
