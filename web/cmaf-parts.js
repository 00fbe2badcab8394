// Low-latency HLS parts for the broadcast page, pure and testable without a browser:
//
// - `PartCutter` decides, from a rendition's encoded packets as they arrive, which of them
//   make each part: parts of at most the part target, ending where their segment ends. The
//   segments are Mediabunny's (its HLS muxer cuts a segment at the last video key frame at
//   or before its start plus the target duration, else at the first one after), so the
//   cutter follows the same rule and numbers segments as Mediabunny does (from 1): part `i`
//   of segment `n` holds exactly the samples of that segment between its cut times.
// - `readInit` and `describeFragment` read a CMAF init segment's tracks and a fragment's
//   `moof` (its duration and whether it starts with a video sync sample), so what a part
//   declares to the edge is what its bytes hold.

/** Box headers in `bytes` from `start` to `end`: {type, start, size, body} (body: offset of
 *  the payload). Stops at a truncated box. */
export function boxes(bytes, start = 0, end = bytes.length) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = [];
  let at = start;
  while (at + 8 <= end) {
    let size = view.getUint32(at);
    const type = String.fromCharCode(bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]);
    let body = at + 8;
    if (size === 1) {
      if (at + 16 > end) break;
      size = Number(view.getBigUint64(at + 8));
      body = at + 16;
    } else if (size === 0) {
      size = end - at;
    }
    if (size < body - at || at + size > end) break;
    out.push({ type, start: at, size, body });
    at += size;
  }
  return out;
}

const child = (bytes, box, type) => boxes(bytes, box.body, box.start + box.size).find((b) => b.type === type);
const children = (bytes, box, type) => boxes(bytes, box.body, box.start + box.size).filter((b) => b.type === type);
const viewOf = (bytes) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** The tracks of an init segment (`ftyp` + `moov`): Map of track id -> {timescale, kind}
 *  (`kind` is the `hdlr` handler type: "vide", "soun", ...). */
export function readInit(bytes) {
  const view = viewOf(bytes);
  const tracks = new Map();
  const moov = boxes(bytes).find((b) => b.type === "moov");
  if (!moov) throw new Error("no moov box");
  for (const trak of children(bytes, moov, "trak")) {
    const tkhd = child(bytes, trak, "tkhd");
    const mdia = child(bytes, trak, "mdia");
    const mdhd = mdia && child(bytes, mdia, "mdhd");
    const hdlr = mdia && child(bytes, mdia, "hdlr");
    if (!tkhd || !mdhd || !hdlr) continue;
    const id = view.getUint32(tkhd.body + (bytes[tkhd.body] === 1 ? 20 : 12));
    const timescale = view.getUint32(mdhd.body + (bytes[mdhd.body] === 1 ? 20 : 12));
    const kind = String.fromCharCode(...bytes.subarray(hdlr.body + 8, hdlr.body + 12));
    tracks.set(id, { timescale, kind });
  }
  return tracks;
}

const NON_SYNC = 0x10000; // sample_is_non_sync_sample in the sample flags

/** One track's run in a `traf`: {trackId, baseTime, duration, samples, firstSync}. */
function readTraf(bytes, traf) {
  const view = viewOf(bytes);
  const tfhd = child(bytes, traf, "tfhd");
  if (!tfhd) throw new Error("traf without tfhd");
  const tfhdFlags = view.getUint32(tfhd.body) & 0xffffff;
  const trackId = view.getUint32(tfhd.body + 4);
  let at = tfhd.body + 8;
  if (tfhdFlags & 0x1) at += 8; // base_data_offset
  if (tfhdFlags & 0x2) at += 4; // sample_description_index
  let defaultDuration = 0;
  let defaultFlags = 0;
  if (tfhdFlags & 0x8) { defaultDuration = view.getUint32(at); at += 4; }
  if (tfhdFlags & 0x10) at += 4; // default_sample_size
  if (tfhdFlags & 0x20) defaultFlags = view.getUint32(at);
  const tfdt = child(bytes, traf, "tfdt");
  let baseTime = null;
  if (tfdt) {
    baseTime = bytes[tfdt.body] === 1 ? Number(view.getBigUint64(tfdt.body + 4)) : view.getUint32(tfdt.body + 4);
  }
  let duration = 0;
  let samples = 0;
  let firstSync = null;
  for (const trun of children(bytes, traf, "trun")) {
    const flags = view.getUint32(trun.body) & 0xffffff;
    const count = view.getUint32(trun.body + 4);
    let p = trun.body + 8;
    if (flags & 0x1) p += 4; // data_offset
    let firstFlags = null;
    if (flags & 0x4) { firstFlags = view.getUint32(p); p += 4; }
    for (let i = 0; i < count; i++) {
      let sampleDuration = defaultDuration;
      let sampleFlags = defaultFlags;
      if (flags & 0x100) { sampleDuration = view.getUint32(p); p += 4; }
      if (flags & 0x200) p += 4; // sample_size
      if (flags & 0x400) { sampleFlags = view.getUint32(p); p += 4; }
      if (flags & 0x800) p += 4; // sample_composition_time_offset
      if (i === 0 && firstFlags !== null) sampleFlags = firstFlags;
      if (samples === 0) firstSync = !(sampleFlags & NON_SYNC);
      duration += sampleDuration;
      samples++;
    }
  }
  return { trackId, baseTime, duration, samples, firstSync };
}

/** What a fragment (`moof` + `mdat`, optionally after `styp`) holds, given the init
 *  segment's `tracks` (`readInit`): its duration in µs and whether it starts with a video
 *  sync sample (by the video track; by the longest track when there is no video), its
 *  decode start in µs, and its `mfhd` sequence number. */
export function describeFragment(bytes, tracks) {
  const top = boxes(bytes);
  const moof = top.find((b) => b.type === "moof");
  if (!moof) throw new Error("no moof box");
  if (!top.some((b) => b.type === "mdat")) throw new Error("no mdat box");
  const mfhd = child(bytes, moof, "mfhd");
  const sequence = mfhd ? viewOf(bytes).getUint32(mfhd.body + 4) : null;
  const runs = children(bytes, moof, "traf").map((traf) => readTraf(bytes, traf))
    .filter((run) => run.samples > 0 && tracks.has(run.trackId))
    .map((run) => ({ ...run, ...tracks.get(run.trackId) }));
  if (!runs.length) throw new Error("no samples of a known track");
  const seconds = (run, units) => units / run.timescale;
  const video = runs.find((run) => run.kind === "vide");
  const main = video || runs.reduce((a, b) => (seconds(a, a.duration) >= seconds(b, b.duration) ? a : b));
  return {
    durationUs: Math.round(seconds(main, main.duration) * 1e6),
    startUs: main.baseTime === null ? null : Math.round(seconds(main, main.baseTime) * 1e6),
    independent: video ? video.firstSync : true,
    sequence,
  };
}

/** Joins byte arrays. */
export function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Cuts one rendition's packets (video and audio, each in decode order; `{timestamp,
 *  duration, type}` in seconds, `type` "key" or "delta", e.g. Mediabunny's EncodedPacket)
 *  into parts of at most `target` seconds of video. A part ends before the video frame that
 *  would take it past `soft` (a little below `target`, so that jittery frame times still fit),
 *  and always at a segment boundary, which follows Mediabunny's HLS segmentation for
 *  segments of `segment` seconds. `take()` returns the parts that are complete:
 *  `{n, index, video, audio, start, duration, independent}`; a part holds the audio packets
 *  that start before its end. */
export class PartCutter {
  constructor({ target, soft = target, segment }) {
    Object.assign(this, { target, soft, segment });
    this.n = 1; // Mediabunny numbers a playlist's segments from 1
    this.index = 0; // the next part's index in segment n
    this.video = []; // segment n's video packets, from its first
    this.emitted = 0; // how many of them are in parts
    this.audio = []; // audio packets in no part yet
    this.firstAudio = null;
    this.lastAudio = -Infinity;
    this.ready = [];
    this.closed = false;
  }

  addVideo(packet) {
    this.video.push(packet);
    this.advance();
  }

  addAudio(packet) {
    this.firstAudio ??= packet.timestamp;
    this.lastAudio = Math.max(this.lastAudio, packet.timestamp);
    this.audio.push(packet);
    this.advance();
  }

  /** The parts complete so far (each returned once). */
  take() {
    return this.ready.splice(0);
  }

  /** Where segment n ends: the index in `video` of the next segment's first packet, or null
   *  while unknown (Mediabunny's rule: once a video packet reaches the segment's end time,
   *  the last key frame at or before it, else the first key frame after it). */
  boundary() {
    const start = this.n === 1 && this.firstAudio !== null
      ? Math.min(this.video[0].timestamp, this.firstAudio) : this.video[0].timestamp;
    const end = start + this.segment;
    if (this.video.every((p) => p.timestamp < end)) return null;
    let best = null;
    for (let i = 0; i < this.video.length; i++) {
      const p = this.video[i];
      if (best !== null && p.timestamp > end) break;
      if (i > 0 && p.type === "key") best = i;
    }
    return best;
  }

  advance() {
    while (this.video.length) {
      const boundary = this.boundary();
      if (boundary !== null && this.emitted === boundary) {
        // Segment n is complete: the next one starts at this key frame.
        this.video = this.video.slice(boundary);
        this.emitted = 0;
        this.n++;
        this.index = 0;
        continue;
      }
      if (this.emitted >= this.video.length) return;
      // Frames from `limit` on may belong to the next segment: a part stops there.
      let limit = boundary;
      if (limit === null) {
        limit = this.video.findIndex((p, i) => i > this.emitted && p.type === "key");
        if (limit === -1) limit = Infinity;
      }
      const start = this.video[this.emitted].timestamp;
      let cut = null;
      for (let j = this.emitted + 1; j < this.video.length && j <= limit; j++) {
        const p = this.video[j];
        if (p.timestamp - start > this.target) {
          cut = j - 1 > this.emitted ? j - 1 : j;
          break;
        }
        const duration = p.duration || p.timestamp - this.video[j - 1].timestamp;
        if (j === limit || p.timestamp + duration - start > this.soft) {
          cut = j;
          break;
        }
      }
      if (cut === null) return;
      const end = this.video[cut].timestamp;
      // The audio up to the cut must have arrived.
      if (!this.closed && this.lastAudio < end && this.firstAudio !== null) return;
      if (this.firstAudio === null && !this.closed) return;
      const audio = [];
      while (this.audio.length && this.audio[0].timestamp < end) audio.push(this.audio.shift());
      const video = this.video.slice(this.emitted, cut);
      this.ready.push({ n: this.n, index: this.index++, video, audio, start, duration: end - start,
        independent: video[0].type === "key" });
      this.emitted = cut;
    }
  }
}
