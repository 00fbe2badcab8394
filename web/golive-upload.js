// Pushes a browser broadcast to the edge: every file is `PUT {base}/{name}` (the signed token
// is in the path). One lane per rendition, in order: its init, then its segments; after each
// segment, its newest media playlist cut to the segments already up (so a playlist never
// names a file the edge lacks, and playlists keep flowing when uploads lag). The
// multivariant playlist waits until every rendition it names has a media playlist up.
// 5xx and network errors are retried with backoff; 403 and 409 stop everything.
// Low-latency parts (`{r}_{n}.part{i}.m4s?...`) go on their rendition's lane before their
// segment, up to PARTS_IN_FLIGHT at once (beside the lane's segment or playlist, never
// before its init is up; the edge lists a segment's parts in index order up to the first
// one missing), each tried once: a part that fails, or waits longer than PART_LAG_MS behind
// other uploads, is dropped with the rest of its segment's parts (the segment still goes).
// A segment all of whose parts went up is committed from them (`PUT {segment}?from_parts=N`,
// no body: the edge joins the stored parts), so its bytes cross the uplink once; if the
// commit is refused, the segment's bytes follow as usual.

const MAX_SEGMENTS = 24; // queued segments over all lanes; beyond, the broadcast cannot keep up
const PLAYLIST_LAG_MS = 4000; // when segments queue up, playlists go at least this often
const KEEPALIVE_BUDGET = 60 * 1024; // browsers allow 64 KiB of keepalive bodies in flight
const PART_LAG_MS = 1000; // a part not sent by then is useless to low-latency viewers
// Parts of one rendition sent at once: a part is made every ~1/3 s, so one at a time falls
// behind as soon as a PUT takes longer than that (a slow uplink, a busy edge).
const PARTS_IN_FLIGHT = 3;

/** An answer from the edge that stops or skips an upload: `status`, `code`, plain `message`. */
export class UploadError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** What a file is, from its name: `master.m3u8`, `{r}.m3u8`, `{r}_init.mp4`, `{r}_{n}.m4s`,
 *  or a part `{r}_{n}.part{i}.m4s` (with its query; `segment` names its segment). */
export function describeFile(name) {
  if (name === "master.m3u8") return { kind: "master", lane: "master" };
  const m = /^([A-Za-z0-9-]+)(?:_(init|\d+))?(?:\.part(\d+))?\.(m3u8|mp4|m4s)(\?.*)?$/.exec(name);
  if (!m || (m[5] && m[3] === undefined)) return null;
  if (m[3] !== undefined) {
    if (m[4] !== "m4s" || !m[2] || m[2] === "init") return null;
    return { kind: "part", lane: m[1], segment: `${m[1]}_${m[2]}.m4s`, index: Number(m[3]) };
  }
  const kind = m[4] === "m3u8" ? "playlist" : m[2] === "init" ? "init" : "segment";
  return { kind, lane: m[1] };
}

/** The rendition names a multivariant playlist lists (its bare `{r}.m3u8` URIs). */
export function variantsOf(master) {
  return master.split("\n").filter((l) => /^[^#\s].*\.m3u8$/.test(l.trim()))
    .map((l) => l.trim().replace(/\.m3u8$/, ""));
}

/** `master` without the variants of the renditions in `dropped`. */
export function withoutVariants(master, dropped) {
  const lines = master.split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const next = (lines[i + 1] || "").trim();
    if (lines[i].startsWith("#EXT-X-STREAM-INF:") && dropped.has(next.replace(/\.m3u8$/, ""))) {
      i++; // skip the tag and its URI
      continue;
    }
    out.push(lines[i]);
  }
  return out.join("\n");
}

/** Media playlist `text` cut before its first segment not in `up`; null if it lists none. */
export function publishable(text, up) {
  const out = [];
  let pending = [];
  let segments = 0;
  for (const line of text.split("\n")) {
    if (!line.trim() || line.startsWith("#")) {
      pending.push(line);
      continue;
    }
    if (!up.has(line.trim())) return segments ? `${out.join("\n")}\n` : null;
    out.push(...pending, line);
    pending = [];
    segments++;
  }
  return segments ? out.concat(pending).join("\n") : null;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function errorOf(response) {
  let error = {};
  try {
    error = (await response.json()).error || {};
  } catch {
    // Not JSON.
  }
  return new UploadError(response.status, error.code || `http_${response.status}`,
    error.message || response.statusText || `HTTP ${response.status}`);
}

export class Uploader {
  /** `base` ends with `/`. `onFatal(error)`: 403/409 or a full queue; `onSkip(error, name)`:
   *  a file the edge refused (413, 422, other 4xx) and that was left out. */
  constructor(base, { onFatal = () => {}, onSkip = () => {} } = {}) {
    this.base = base;
    this.onFatal = onFatal;
    this.onSkip = onSkip;
    this.lanes = new Map();
    this.dropped = new Set();
    this.published = new Set(); // renditions whose media playlist is up
    this.lastPlaylist = new Map(); // rendition -> text of its last uploaded playlist
    this.history = []; // [time, bytes] of recent uploads, for the bitrate
    this.lastLatency = null;
    this.failures = 0;
    this.uploaded = 0; // segments
    this.parts = { up: 0, dropped: 0, committed: 0 }; // committed: segments made of their parts
    this.stopped = false;
    this.idle = [];
  }

  lane(name) {
    if (!this.lanes.has(name)) {
      this.lanes.set(name, { jobs: [], inflight: new Set(), up: new Set(), playlist: null, sent: null, sentAt: -Infinity,
        noParts: new Set(), // segments whose (further) parts are not sent
        skipped: new Set(), // segments some of whose parts were dropped
        partsUp: new Map() }); // segment -> indexes of its parts that went up
    }
    return this.lanes.get(name);
  }

  /** Queues `PUT {base}/{name}`; `body` is an ArrayBuffer or a string. A media playlist
   *  replaces the previous one and goes up as far as its segments are up. A part is left
   *  out when its segment is already queued or its parts are being skipped. A segment's
   *  `parts` is how many parts it was cut into (0: unknown, never committed from parts). */
  put(name, body, { parts = 0 } = {}) {
    const file = describeFile(name);
    if (!file) throw new Error(`not an ingest file name: ${name}`);
    if (this.stopped || this.dropped.has(file.lane)) return;
    const lane = this.lane(file.lane);
    if (file.kind === "playlist") {
      lane.playlist = body;
    } else if (file.kind === "part") {
      if (lane.noParts.has(file.segment)) {
        this.parts.dropped++;
        return;
      }
      lane.jobs.push({ name, body, kind: "part", lane: file.lane, segment: file.segment, index: file.index,
        at: performance.now() });
    } else {
      if (file.kind === "segment" && this.segmentsQueued() >= MAX_SEGMENTS) {
        this.fail(new UploadError(0, "queue_full",
          "Your connection is too slow to keep this broadcast going, so it was stopped."));
        return;
      }
      if (file.kind === "master") lane.jobs = lane.jobs.filter((j) => lane.inflight.has(j));
      if (file.kind === "segment") lane.noParts.add(name); // its parts come before it or not at all
      lane.jobs.push({ name, body, kind: file.kind, lane: file.lane, parts, at: performance.now() });
    }
    this.pump();
  }

  /** Stops uploading the files of rendition `name` (its queued segments are forgotten). */
  drop(name) {
    this.dropped.add(name);
    this.lanes.delete(name);
    this.published.delete(name);
    this.pump();
  }

  segmentsQueued() {
    let n = 0;
    for (const lane of this.lanes.values()) n += lane.jobs.filter((j) => j.kind === "segment").length;
    return n;
  }

  /** Queue depth, how late the renditions' uploads are (their oldest file not up yet), last
   *  latency and upload bitrate. */
  stats() {
    const now = performance.now();
    let oldest = 0;
    for (const [name, lane] of this.lanes) {
      if (name !== "master" && lane.jobs.length) oldest = Math.max(oldest, now - lane.jobs[0].at);
    }
    this.history = this.history.filter(([t]) => now - t < 10000);
    const bytes = this.history.reduce((sum, [, b]) => sum + b, 0);
    return { queued: this.segmentsQueued(), oldestMs: oldest, latencyMs: this.lastLatency,
      bitsPerSecond: (bytes * 8) / 10, failures: this.failures };
  }

  /** The job lane `name` can start now, or null. Its playlist if it can say more (when
   *  behind, at most every PLAYLIST_LAG_MS, segments first), else its next file not being
   *  sent: a part while fewer than PARTS_IN_FLIGHT are and the init is up; any other file
   *  once the lane's previous one is up (a segment also once its parts are: its commit
   *  joins them; the multivariant playlist once the renditions it names are up). */
  next(name, lane) {
    // Parts that waited too long are dropped, and with them the rest of their segment's.
    for (const job of lane.jobs) {
      if (job.kind !== "part" || lane.inflight.has(job)) continue;
      if (performance.now() - job.at > PART_LAG_MS) {
        this.skipParts(lane, job.segment);
        break;
      }
    }
    const sending = [...lane.inflight];
    const file = sending.find((j) => j.kind !== "part");
    const parts = sending.filter((j) => j.kind === "part");
    if (!file) {
      const text = lane.playlist && publishable(lane.playlist, lane.up);
      const behind = lane.jobs.some((j) => j.kind === "segment") && performance.now() - lane.sentAt < PLAYLIST_LAG_MS;
      if (text && text !== lane.sent && !behind) {
        return { name: `${name}.m3u8`, body: text, kind: "playlist", lane: name };
      }
    }
    const job = lane.jobs.find((j) => !lane.inflight.has(j));
    if (!job) return null;
    if (job.kind === "part") return parts.length < PARTS_IN_FLIGHT && file?.kind !== "init" ? job : null;
    if (file || (job.kind === "segment" && parts.some((p) => p.segment === job.name))) return null;
    if (job.kind === "master" && !variantsOf(job.body).every((r) => this.published.has(r))) return null;
    return job;
  }

  pump() {
    for (const [name, lane] of this.lanes) {
      for (let job = this.next(name, lane); job; job = this.next(name, lane)) {
        const started = job;
        lane.inflight.add(started);
        this.send(started).then(() => {
          lane.inflight.delete(started);
          lane.jobs = lane.jobs.filter((j) => j !== started);
          if (started.kind === "segment") lane.up.add(started.name);
          if (started.kind === "playlist") Object.assign(lane, { sent: started.body, sentAt: performance.now() });
          this.pump();
        });
      }
    }
    if (this.busyLanes() === 0) this.idle.splice(0).forEach((resolve) => resolve());
  }

  /** Sends no more parts of `segment` (those queued are forgotten). */
  skipParts(lane, segment) {
    lane.noParts.add(segment);
    lane.skipped.add(segment);
    const before = lane.jobs.length;
    lane.jobs = lane.jobs.filter((j) => j.kind !== "part" || j.segment !== segment || lane.inflight.has(j));
    this.parts.dropped += before - lane.jobs.length;
  }

  busyLanes() {
    let n = 0;
    for (const [name, lane] of this.lanes) if (lane.inflight.size || this.next(name, lane)) n++;
    return n;
  }

  /** Sends one job until it succeeds, is refused, or the uploader stops (a part: once; a
   *  segment whose parts all went up: committed from them first). */
  async send(job) {
    if (job.kind === "part") {
      await this.sendPart(job);
      return;
    }
    if (job.kind === "segment" && await this.commit(job)) return;
    for (let attempt = 0; !this.stopped && !this.dropped.has(job.lane); attempt++) {
      const started = performance.now();
      try {
        const response = await fetch(this.base + job.name, {
          method: "PUT", body: job.body, credentials: "omit",
          headers: { "content-type": job.kind === "init" || job.kind === "segment" ? "video/mp4"
            : "application/vnd.apple.mpegurl" },
        });
        if (response.ok) {
          this.lastLatency = performance.now() - started;
          this.history.push([performance.now(), job.body.byteLength ?? job.body.length]);
          if (job.kind === "segment") this.uploaded++;
          if (job.kind === "playlist") {
            this.published.add(job.lane);
            this.lastPlaylist.set(job.lane, job.body);
          }
          return;
        }
        const error = await errorOf(response);
        if (response.status === 403 || response.status === 409) {
          this.fail(error);
          return;
        }
        if (response.status < 500 && response.status !== 408 && response.status !== 429) {
          this.onSkip(error, job.name);
          return;
        }
      } catch {
        // A network error: retried like a 5xx.
      }
      this.failures++;
      await sleep(Math.min(500 * 2 ** attempt, 8000));
    }
  }

  /** Commits segment `job` from its parts when every one of them went up: true when the edge
   *  took it (or refused the broadcast: 403 stops everything), false when its bytes must go. */
  async commit(job) {
    const lane = this.lanes.get(job.lane);
    if (!lane) return false;
    const up = lane.partsUp.get(job.name);
    lane.partsUp.delete(job.name);
    const skipped = lane.skipped.delete(job.name);
    if (!job.parts || skipped || !up || up.size !== job.parts) return false;
    const started = performance.now();
    try {
      const response = await fetch(`${this.base}${job.name}?from_parts=${job.parts}`, {
        method: "PUT", credentials: "omit",
      });
      if (response.ok) {
        this.lastLatency = performance.now() - started;
        this.uploaded++;
        this.parts.committed++;
        return true;
      }
      if (response.status === 403) {
        this.fail(await errorOf(response));
        return true;
      }
    } catch {
      // The bytes follow.
    }
    return false;
  }

  /** One try; on any failure but 403/409 (which stop everything) the segment's later parts
   *  are skipped. */
  async sendPart(job) {
    if (this.stopped || this.dropped.has(job.lane)) return;
    try {
      const response = await fetch(this.base + job.name, {
        method: "PUT", body: job.body, credentials: "omit", headers: { "content-type": "video/mp4" },
      });
      if (response.ok) {
        this.parts.up++;
        this.history.push([performance.now(), job.body.byteLength]);
        const lane = this.lanes.get(job.lane);
        if (lane) {
          if (!lane.partsUp.has(job.segment)) lane.partsUp.set(job.segment, new Set());
          lane.partsUp.get(job.segment).add(job.index);
        }
        return;
      }
      if (response.status === 403 || response.status === 409) {
        this.fail(await errorOf(response));
        return;
      }
    } catch {
      // A network error: the part is dropped, the segment will carry its media.
    }
    const lane = this.lanes.get(job.lane);
    if (lane) this.skipParts(lane, job.segment);
    this.parts.dropped++;
  }

  fail(error) {
    if (this.stopped) return;
    this.stop();
    this.onFatal(error);
  }

  /** Forgets everything queued; sends nothing more. */
  stop() {
    this.stopped = true;
    this.lanes.clear();
    this.idle.splice(0).forEach((resolve) => resolve());
  }

  /** Resolves once everything queued is uploaded (or after `timeoutMs`). */
  drain(timeoutMs) {
    if (this.busyLanes() === 0) return Promise.resolve(true);
    return Promise.race([new Promise((resolve) => this.idle.push(() => resolve(true))),
      sleep(timeoutMs).then(() => false)]);
  }

  /** The tab is closing: ends every rendition's last uploaded playlist with ENDLIST in
   *  keepalive requests (they outlive the page), within the browser's keepalive budget. */
  endWithKeepalive() {
    let budget = KEEPALIVE_BUDGET;
    for (const [name, text] of this.lastPlaylist) {
      if (this.dropped.has(name)) continue;
      const body = text.includes("#EXT-X-ENDLIST") ? text : `${text.trimEnd()}\n#EXT-X-ENDLIST\n`;
      budget -= body.length;
      if (budget < 0) break;
      fetch(`${this.base}${name}.m3u8`, { method: "PUT", body, keepalive: true, credentials: "omit",
        headers: { "content-type": "application/vnd.apple.mpegurl" } }).catch(() => {});
    }
    this.stop();
  }
}
