// Viewers of the llhls benchmark (bench/llhls.py): each URL (one per viewer, each with its own
// token) is polled as hls.js does in low-latency mode, a blocking reload for the next part
// after the one it has, from part 0 of segment 1 on (six parts a segment), for SECONDS.
// Prints one JSON line: answers, errors (not 200, or no answer), stale (200 without the part:
// the hold ran out first), and for each part `msn.part` when its last viewer had it (Unix ms).
//
// Run: node bench/llhls-viewers.mjs SECONDS URLS_FILE
import { readFileSync } from "node:fs";

const [seconds, file] = process.argv.slice(2);
const urls = readFileSync(file, "utf8").split("\n").filter(Boolean);
const PARTS = 6;
const until = Date.now() + Number(seconds) * 1000;
const answered = {};
let answers = 0;
let errors = 0;
let stale = 0;

async function viewer(url) {
  let [msn, part] = [1, 0];
  while (Date.now() < until) {
    let ok = false;
    try {
      const r = await fetch(`${url}?_HLS_msn=${msn}&_HLS_part=${part}`, { signal: AbortSignal.timeout(15000) });
      const text = await r.text();
      if (r.status !== 200) errors++;
      else if (!text.includes(`index_${String(msn).padStart(5, "0")}.part${part}.m4s`)) stale++;
      else ok = true;
    } catch {
      errors++;
    }
    if (!ok) continue;
    answers++;
    const key = `${msn}.${part}`;
    answered[key] = Math.max(answered[key] || 0, Date.now());
    [msn, part] = part + 1 < PARTS ? [msn, part + 1] : [msn + 1, 0];
  }
}

await Promise.all(urls.map(viewer));
console.log(JSON.stringify({ answers, errors, stale, answered }));
