// The embeddable player (/embed/{id}, served by the worker): asks for a playback URL of the
// channel (live) or the video and plays it with hls.js (MSE) or the browser's own HLS. It
// runs inside an iframe on someone else's page: no navigation, no account, no cookies needed.
import { playHls } from "/app.js";

const id = document.body.dataset.id;
// `?latency=normal` in the iframe's URL plays a live channel as ordinary HLS.
const lowLatency = new URLSearchParams(location.search).get("latency") !== "normal";
const video = document.getElementById("video");
const status = document.getElementById("status");

function say(text) {
  status.textContent = text;
}

async function playbackUrl() {
  const path = id.startsWith("ch_") ? `/api/channels/${id}/playback` : `/api/videos/${id}/playback`;
  const r = await fetch(path, { method: "POST" });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(body.error ? body.error.message : `HTTP ${r.status}`);
  return id.startsWith("ch_") ? body.url : body.hls_url;
}

video.addEventListener("playing", () => say(""));
playbackUrl().then(
  (url) => playHls(video, url, (text, code) => {
    say(text);
    document.body.dataset.playerError = code;
  }, { lowLatency }),
  (err) => {
    say(err.message);
    document.body.dataset.playerError = "no_playback_url";
  },
);
