// The embeddable player (/embed/{id}, served by the worker): asks for a playback URL of the
// channel (live) or the video and plays it with hls.js (MSE) or the browser's own HLS. It
// runs inside an iframe on someone else's page: no navigation, no account, no cookies needed.
const id = document.body.dataset.id;
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

function play(url) {
  const Hls = window.Hls;
  if (Hls && Hls.isSupported()) {
    const hls = new Hls({ liveDurationInfinity: true });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) {
        say(`Playback error: ${data.details}`);
        document.body.dataset.playerError = data.details;
      }
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
    hls.loadSource(url);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    video.play().catch(() => {});
  } else {
    say("This browser cannot play HLS video.");
  }
}

video.addEventListener("playing", () => say(""));
video.addEventListener("error", () => {
  const code = video.error ? video.error.code : 0;
  say(`The browser could not decode this video (media error ${code}).`);
  document.body.dataset.playerError = `media_error_${code}`;
});
playbackUrl().then(play, (err) => {
  say(err.message);
  document.body.dataset.playerError = "no_playback_url";
});
