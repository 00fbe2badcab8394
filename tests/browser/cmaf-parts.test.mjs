// The broadcast page's low-latency parts, without a browser (web/cmaf-parts.js): how packets
// are cut into parts that follow Mediabunny's segments, and what a fragment's `moof` says
// (read from a fragmented MP4 that ffmpeg writes, and from boxes built here).
//
// Run: node --test tests/browser/cmaf-parts.test.mjs
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";

import { PartCutter, boxes, concat, describeFragment, readInit } from "../../web/cmaf-parts.js";

const TARGET = 0.35;
const SOFT = 0.34;

/** Video packets at `fps` for `seconds` from `start`, key frames as Mediabunny forces them
 *  (the first frame of each 2 s multiple of the timestamp) plus any in `extraKeys` (indices). */
function videoPackets(fps, seconds, { start = 0, jitter = 0, extraKeys = [] } = {}) {
  const out = [];
  let bucket = null;
  for (let i = 0; i < fps * seconds; i++) {
    const timestamp = start + i / fps + (jitter ? (Math.sin(i * 12.9898) * jitter) : 0);
    const key = Math.floor(timestamp / 2) !== bucket || extraKeys.includes(i);
    bucket = Math.floor(timestamp / 2);
    out.push({ timestamp, duration: 1 / fps, type: key ? "key" : "delta", i });
  }
  return out;
}

/** AAC-like audio packets (1024 samples at 48 kHz) from `start`. */
function audioPackets(seconds, start = 0) {
  const out = [];
  for (let t = start; t < start + seconds; t += 1024 / 48000) out.push({ timestamp: t, duration: 1024 / 48000, type: "key" });
  return out;
}

/** Mediabunny's HLS segmentation (hls-muxer.js, `advancePlaylist`) over whole packet lists:
 *  the number of video packets and of audio packets in each segment. */
function mediabunnySegments(video, audio, segment) {
  const out = [];
  let v = [...video];
  let a = [...audio];
  let start = Math.min(v[0].timestamp, a[0].timestamp);
  while (v.length) {
    const end = start + segment;
    let best = null;
    if (!v.every((p) => p.timestamp < end)) {
      for (let i = 0; i < v.length; i++) {
        if (best !== null && v[i].timestamp > end) break;
        if (i > 0 && v[i].type === "key") best = i;
      }
    }
    if (best === null) break; // the last, unfinished segment
    const audioEnd = a.findIndex((p) => p.timestamp >= v[best].timestamp);
    out.push({ video: best, audio: audioEnd });
    start = v[best].timestamp;
    v = v.slice(best);
    a = a.slice(audioEnd);
  }
  return out;
}

/** Feeds packets to a cutter in time order (audio arriving `audioLag` s late, as encoders
 *  deliver it) and returns the parts. */
function cut(video, audio, { audioLag = 0.05, target = TARGET, soft = SOFT } = {}) {
  const cutter = new PartCutter({ target, soft, segment: 2 });
  const events = [...video.map((p) => ({ at: p.timestamp, p, kind: "video" })),
    ...audio.map((p) => ({ at: p.timestamp + audioLag, p, kind: "audio" }))].sort((x, y) => x.at - y.at);
  const parts = [];
  for (const { p, kind } of events) {
    if (kind === "video") cutter.addVideo(p);
    else cutter.addAudio(p);
    parts.push(...cutter.take());
  }
  return parts;
}

function checkParts(parts, video, audio, { fps, target = TARGET, regular = true }) {
  const reference = mediabunnySegments(video, audio, 2);
  assert.ok(reference.length >= 3, "several segments");
  // Every packet once, in order, in the segment Mediabunny puts it in.
  const bySegment = new Map();
  for (const part of parts) {
    if (!bySegment.has(part.n)) bySegment.set(part.n, []);
    bySegment.get(part.n).push(part);
  }
  let videoAt = 0;
  let audioAt = 0;
  reference.forEach((segment, i) => {
    const own = bySegment.get(i + 1);
    assert.ok(own, `segment ${i + 1} has parts`);
    assert.deepEqual(own.map((p) => p.index), own.map((_, j) => j), "parts numbered from 0");
    const v = own.flatMap((p) => p.video);
    const a = own.flatMap((p) => p.audio);
    assert.deepEqual(v, video.slice(videoAt, videoAt + segment.video), `segment ${i + 1}'s video`);
    assert.deepEqual(a, audio.slice(audioAt, audioAt + segment.audio), `segment ${i + 1}'s audio`);
    videoAt += segment.video;
    audioAt += segment.audio;
    assert.equal(own[0].independent, true, "a segment's first part starts with its key frame");
  });
  for (const part of parts) {
    assert.ok(part.duration > 0 && part.duration <= target + 1e-9, `part ${part.n}.${part.index}: ${part.duration}`);
    assert.equal(part.start, part.video[0].timestamp);
    assert.equal(part.independent, part.video[0].type === "key");
    assert.ok(part.audio.every((p) => p.timestamp < part.start + part.duration), "audio before the part's end");
  }
  // With regular frame times, parts are as long as the target allows but for those that end
  // at a key frame (a segment's last).
  if (!regular) return;
  const full = Math.floor(SOFT * fps + 1e-9) / fps;
  const inner = parts.filter((p, i) => parts[i + 1] && parts[i + 1].n === p.n && !parts[i + 1].independent);
  assert.ok(inner.every((p) => Math.abs(p.duration - full) < 0.02), inner.map((p) => p.duration.toFixed(3)).join(" "));
}

test("parts of a 30 fps rendition: 10 frames (333 ms), in Mediabunny's segments", () => {
  const video = videoPackets(30, 9);
  const audio = audioPackets(9, -0.03);
  const parts = cut(video, audio);
  checkParts(parts, video, audio, { fps: 30 });
  assert.equal(parts[1].video.length, 10);
  assert.ok(Math.abs(parts[1].duration - 1 / 3) < 1e-9);
  assert.equal(parts.filter((p) => p.n === 2).length, 6, "a 2 s segment is 6 parts");
});

test("parts at 24, 20 and 15 fps and with jittery frame times stay within the target", () => {
  for (const fps of [24, 20, 15]) {
    const video = videoPackets(fps, 9);
    const audio = audioPackets(9);
    checkParts(cut(video, audio), video, audio, { fps });
  }
  const video = videoPackets(30, 9, { start: 0.013, jitter: 0.004 });
  const audio = audioPackets(9);
  const parts = cut(video, audio);
  for (const part of parts) assert.ok(part.duration <= TARGET, String(part.duration));
  checkParts(parts, video, audio, { fps: 30, regular: false });
});

test("a key frame the encoder adds mid-segment cuts where Mediabunny cuts", () => {
  // Extra key frames: one that ends a segment early (the forced one after it lands past the
  // segment's end), one that Mediabunny passes over (a later key frame is still in time).
  for (const start of [0.01, 0.02]) {
    const video = videoPackets(30, 11, { start, extraKeys: [81, 140] });
    const audio = audioPackets(11);
    checkParts(cut(video, audio), video, audio, { fps: 30 });
  }
});

test("a part waits for the audio up to its end", () => {
  const cutter = new PartCutter({ target: TARGET, soft: SOFT, segment: 2 });
  const video = videoPackets(30, 1);
  cutter.addAudio({ timestamp: 0, duration: 0.02, type: "key" });
  video.forEach((p) => cutter.addVideo(p));
  assert.deepEqual(cutter.take(), [], "no audio past the first cut yet");
  cutter.addAudio({ timestamp: 0.34, duration: 0.02, type: "key" });
  const [first, ...rest] = cutter.take();
  assert.equal(first.video.length, 10);
  assert.equal(first.audio.length, 1);
  assert.equal(rest.length, 0);
});

// --- Box reading ---------------------------------------------------------------------------

function box(type, ...payload) {
  const body = concat(payload.map((p) => (p instanceof Uint8Array ? p : new Uint8Array(p))));
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setUint32(0, out.length);
  out.set([...type].map((c) => c.charCodeAt(0)), 4);
  out.set(body, 8);
  return out;
}
const u32 = (...values) => {
  const out = new Uint8Array(4 * values.length);
  values.forEach((v, i) => new DataView(out.buffer).setUint32(4 * i, v));
  return out;
};
const full = (version, flags) => u32((version << 24) | flags);

/** An init segment with a video track (id 1, timescale 90000) and an audio one (id 2, 48000). */
function initSegment() {
  const trak = (id, timescale, handler) => box("trak",
    box("tkhd", full(0, 3), u32(0, 0, id, 0, 0)),
    box("mdia", box("mdhd", full(0, 0), u32(0, 0, timescale, 0, 0)),
      box("hdlr", full(0, 0), u32(0), new TextEncoder().encode(handler), u32(0, 0, 0), [0])));
  return concat([box("ftyp", new TextEncoder().encode("cmfc"), u32(0)),
    box("moov", box("mvhd", full(0, 0), u32(0, 0, 1000, 0)), trak(1, 90000, "vide"), trak(2, 48000, "soun"))]);
}

test("readInit gives each track's timescale and kind", () => {
  assert.deepEqual([...readInit(initSegment())],
    [[1, { timescale: 90000, kind: "vide" }], [2, { timescale: 48000, kind: "soun" }]]);
});

test("describeFragment: tfhd default durations, first-sample flags, tfdt v1, styp first", () => {
  const tracks = readInit(initSegment());
  const NON_SYNC = 0x10000;
  // Video: 9 samples of 3000 (tfhd default), the first flagged sync by first_sample_flags and
  // the rest non-sync by default; audio: per-sample durations.
  const video = box("traf", box("tfhd", full(0, 0x020000 | 0x8 | 0x20), u32(1, 3000, NON_SYNC)),
    box("tfdt", full(1, 0), u32(0, 90000 * 4)),
    box("trun", full(0, 0x1 | 0x4 | 0x200), u32(9, 0, 0x02000000), u32(...Array(9).fill(100))));
  const audio = box("traf", box("tfhd", full(0, 0x020000), u32(2)), box("tfdt", full(0, 0), u32(48000 * 4)),
    box("trun", full(0, 0x1 | 0x100 | 0x200), u32(2, 0), u32(1024, 10, 1024, 10)));
  const moof = box("moof", box("mfhd", full(0, 0), u32(7)), video, audio);
  const fragment = concat([box("styp", new TextEncoder().encode("msdh"), u32(0)), moof, box("mdat", new Uint8Array(920))]);
  assert.deepEqual(describeFragment(fragment, tracks), { durationUs: 300000, startUs: 4000000, independent: true, sequence: 7 });
  // Per-sample flags: the first sample non-sync.
  const delta = box("traf", box("tfhd", full(0, 0x020000), u32(1)), box("tfdt", full(0, 0), u32(0)),
    box("trun", full(0, 0x100 | 0x400), u32(2), u32(3000, NON_SYNC, 3000, 0)));
  const part = concat([box("moof", box("mfhd", full(0, 0), u32(8)), delta), box("mdat")]);
  assert.deepEqual(describeFragment(part, tracks), { durationUs: 66667, startUs: 0, independent: false, sequence: 8 });
  assert.throws(() => describeFragment(box("moof", box("mfhd", full(0, 0), u32(1)), delta), tracks), /mdat/);
});

test("describeFragment reads ffmpeg's fragmented MP4 (1/3 s fragments, a key frame every 2 s)", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "cmaf-parts-"));
  try {
    const file = path.join(dir, "frag.mp4");
    execFileSync("ffmpeg", ["-v", "error", "-f", "lavfi", "-i", "testsrc=rate=30:size=320x240", "-f", "lavfi",
      "-i", "sine=sample_rate=48000", "-t", "4", "-c:v", "libx264", "-g", "60", "-keyint_min", "60",
      "-sc_threshold", "0", "-bf", "0", "-c:a", "aac", "-movflags", "empty_moov+default_base_moof",
      "-frag_duration", "333333", "-f", "mp4", file]);
    const bytes = new Uint8Array(readFileSync(file));
    const tracks = readInit(bytes);
    assert.deepEqual([...tracks.values()].map((t) => t.kind), ["vide", "soun"]);
    const fragments = [];
    let moof = null;
    for (const b of boxes(bytes)) {
      if (b.type === "moof") moof = b;
      if (b.type === "mdat" && moof) {
        fragments.push(describeFragment(bytes.subarray(moof.start, b.start + b.size), tracks));
        moof = null;
      }
    }
    assert.ok(fragments.length >= 10, JSON.stringify(fragments));
    fragments.forEach((f, i) => {
      assert.equal(f.sequence, i + 1);
      if (i > 0) {
        const before = fragments[i - 1];
        assert.ok(Math.abs(before.startUs + before.durationUs - f.startUs) <= 1, "each fragment starts where the last ended");
      }
      if (i > 0 && i < fragments.length - 1) assert.ok(Math.abs(f.durationUs - 333333) <= 1, String(f.durationUs));
    });
    assert.deepEqual(fragments.map((f, i) => (f.independent ? i : null)).filter((i) => i !== null), [0, 6],
      "key frames at 0 and 2 s");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// --- The uploader's parts ------------------------------------------------------------------

test("the uploader names parts, sends them before their segment, drops the rest of a segment's parts after a failure, and commits a segment whose parts all went up", async () => {
  const { Uploader, describeFile } = await import("../../web/golive-upload.js");
  assert.deepEqual(describeFile("v720_00003.part2.m4s?duration_us=333333&part_target_us=350000&independent=0"),
    { kind: "part", lane: "v720", segment: "v720_00003.m4s", index: 2 });
  assert.equal(describeFile("v720_init.part0.m4s"), null);
  assert.equal(describeFile("v720_00003.m4s?x=1"), null, "only parts carry a query");
  assert.equal(describeFile("v720_00003.m4s").kind, "segment");

  const started = []; // names, in the order their PUTs started
  const done = new Set(); // names whose PUT has answered
  const sending = new Set();
  let mostParts = 0; // most parts in flight at once
  const checks = []; // broken ordering rules, seen when a PUT starts
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    const [path, query = ""] = url.split("?");
    const name = path.split("/").pop() + (query.startsWith("from_parts=") ? `?${query}` : "");
    started.push({ name, bytes: init.body ? (init.body.byteLength ?? init.body.length) : 0 });
    const file = describeFile(path.split("/").pop());
    if (file.kind === "part" && !done.has("v_init.mp4")) checks.push(`${name} before the init was up`);
    for (const s of sending) {
      if (file.kind === "segment" && s.segment === name.split("?")[0]) checks.push(`${name} while ${s.name} was in flight`);
    }
    const entry = { name, ...file };
    sending.add(entry);
    mostParts = Math.max(mostParts, [...sending].filter((s) => s.kind === "part").length);
    try {
      // The second part of segment 2 fails at once: the edge is briefly unreachable.
      if (name === "v_00002.part1.m4s") return new Response("{}", { status: 503 });
      await new Promise((r) => setTimeout(r, 20));
      // Segment 3's commit is refused (its parts were not all stored): its bytes must follow.
      if (name === "v_00003.m4s?from_parts=3") return new Response("{}", { status: 422 });
      return new Response("{}", { status: name.endsWith(".m3u8") ? 200 : 201 });
    } finally {
      sending.delete(entry);
      done.add(name);
    }
  };
  try {
    const up = new Uploader("https://edge.test/ingest/t/");
    const body = new Uint8Array(8).buffer;
    up.put("v_init.mp4", body);
    for (const n of ["00001", "00002", "00003"]) {
      for (let i = 0; i < 3; i++) up.put(`v_${n}.part${i}.m4s?duration_us=333333&part_target_us=350000&independent=${i ? 0 : 1}`, body);
      if (n === "00002") up.put("v_00002.part3.m4s?duration_us=1&part_target_us=350000&independent=0", body);
      up.put(`v_${n}.m4s`, body, { parts: n === "00002" ? 4 : 3 });
    }
    up.put("v_00002.part2.m4s?duration_us=333333&part_target_us=350000&independent=0", body); // after its segment
    // A segment cut into more parts than went up is sent as bytes.
    up.put("v_00004.part0.m4s?duration_us=333333&part_target_us=350000&independent=1", body);
    up.put("v_00004.m4s", body, { parts: 2 });
    assert.equal(await up.drain(5000), true);
    assert.deepEqual(checks, []);
    assert.equal(mostParts, 3, "a rendition's parts go three at a time");
    const media = started.filter((s) => !s.name.endsWith(".m3u8")).map((s) => s.name);
    assert.deepEqual(new Set(media), new Set(["v_init.mp4",
      "v_00001.part0.m4s", "v_00001.part1.m4s", "v_00001.part2.m4s", "v_00001.m4s?from_parts=3",
      "v_00002.part0.m4s", "v_00002.part1.m4s", "v_00002.part2.m4s", "v_00002.m4s",
      "v_00003.part0.m4s", "v_00003.part1.m4s", "v_00003.part2.m4s", "v_00003.m4s?from_parts=3", "v_00003.m4s",
      "v_00004.part0.m4s", "v_00004.m4s"]));
    assert.equal(media.length, 16, "each file once (the refused commit's bytes aside)");
    // Parts start in order, before their segment; segments in order.
    const at = (name) => media.indexOf(name);
    for (const n of ["00001", "00002", "00003"]) {
      assert.ok(at(`v_${n}.part0.m4s`) < at(`v_${n}.part1.m4s`) && at(`v_${n}.part1.m4s`) < at(`v_${n}.part2.m4s`));
    }
    assert.ok(at("v_00001.m4s?from_parts=3") < at("v_00002.m4s") && at("v_00002.m4s") < at("v_00003.m4s?from_parts=3"));
    assert.ok(at("v_00003.m4s?from_parts=3") < at("v_00003.m4s") && at("v_00003.m4s") < at("v_00004.m4s"));
    assert.equal(started.find((s) => s.name === "v_00001.m4s?from_parts=3").bytes, 0, "a commit carries no bytes");
    assert.equal(started.find((s) => s.name === "v_00003.m4s").bytes, 8, "a refused commit's bytes follow");
    assert.deepEqual(up.parts, { up: 9, dropped: 3, committed: 1 },
      "segment 2's part1 failed (its part2 was already on its way), its part3 skipped, the late part2 left out");
    assert.equal(up.uploaded, 4);
  } finally {
    globalThis.fetch = realFetch;
  }
});
