// The watch page: `?c={channel}` plays a channel live, `?v={video}` a recorded video; both
// with hls.js (MSE) or the browser's own HLS, the channel's viewer count and reactions over
// the channel's WebSocket.
import { api, fill, fmtDuration, fmtTime, h, nav, playHls, say, socket } from "/app.js";

const REACTIONS = ["🔥", "❤️", "👏", "😂", "😮", "🎉", "👍", "💯"];
const params = new URLSearchParams(location.search);
const channelParam = params.get("c");
const videoParam = params.get("v");
const video = document.getElementById("video");
const playerStatus = document.getElementById("player-status");
const reactStatus = document.getElementById("react-status");
const log = document.getElementById("reaction-log");
const lowLatency = document.getElementById("low-latency");
let hls = null;
let room = null;
let playing = null;

// `?latency=normal` (or unticking the box) plays live channels a few segments behind, as
// ordinary HLS: steadier on a poor connection.
lowLatency.checked = params.get("latency") !== "normal";

function play(url) {
  if (hls) { hls.destroy(); hls = null; }
  playing = url;
  hls = playHls(video, url, (text, code) => {
    say(playerStatus, text, "error");
    document.body.dataset.playerError = code;
  }, { lowLatency: lowLatency.checked });
}

lowLatency.addEventListener("change", () => { if (playing) play(playing); });

video.addEventListener("playing", () => say(playerStatus, ""));

function showReaction(emoji) {
  log.append(h("span", {}, emoji));
  while (log.children.length > 30) log.firstChild.remove();
  const floater = h("span", { class: "floater", style: `left:${10 + Math.random() * 80}%` }, emoji);
  document.getElementById("floaters").append(floater);
  setTimeout(() => floater.remove(), 2600);
}

function connect(channelId, onLive) {
  room = socket(`/api/channels/${encodeURIComponent(channelId)}/ws`, (m) => {
    if (m.type === "viewers") {
      document.getElementById("viewers").textContent = `${m.count} watching`;
      document.getElementById("viewers").dataset.count = m.count;
    } else if (m.type === "reactions") {
      // The room pushes the reactions of the last half second together: show each one, up
      // to a screenful.
      const shown = Object.entries(m.counts).flatMap(([emoji, n]) => Array(Math.min(n, 20)).fill(emoji));
      for (const emoji of shown.slice(0, 30)) showReaction(emoji);
    } else if (m.type === "error") {
      say(reactStatus, m.message, "warn");
    } else if (onLive) {
      onLive(m);
    }
  });
  fill(document.getElementById("reactions"), REACTIONS.map((emoji) =>
    h("button", { type: "button", "aria-label": `React ${emoji}`, "data-emoji": emoji,
      onclick: () => { say(reactStatus, ""); room.send({ type: "reaction", emoji }); } }, emoji)));
}

async function watchChannel(id) {
  const channel = await api(`/api/channels/${encodeURIComponent(id)}`);
  document.title = `${channel.name} · edgevideo`;
  document.getElementById("title").textContent = channel.name;
  document.getElementById("sub").textContent = channel.description || "";
  const state = document.getElementById("live-state");
  const setLive = (isLive) => {
    fill(state, isLive ? h("span", { class: "live-badge" }, "LIVE") : h("span", { class: "meta" }, "Offline"));
    document.body.dataset.live = isLive ? "1" : "0";
  };
  const start = async () => {
    const { url } = await api(`/api/channels/${encodeURIComponent(id)}/playback`, { method: "POST" });
    play(url);
  };
  document.getElementById("latency-choice").hidden = false;
  setLive(channel.live);
  if (channel.live) await start();
  else say(playerStatus, "This channel is not live right now; the page starts playing when it goes live.");
  connect(id, (m) => {
    if (m.type === "live") { setLive(true); say(playerStatus, ""); start(); }
    if (m.type === "ended") {
      setLive(false);
      say(playerStatus, "The broadcast has ended.");
      if (m.video_id) {
        fill(playerStatus, "The broadcast has ended. ",
          h("a", { href: `/watch?v=${encodeURIComponent(m.video_id)}` }, "Watch the recording"));
      }
    }
  });
}

async function watchVideo(id) {
  const v = await api(`/api/videos/${encodeURIComponent(id)}`);
  document.title = `${v.title} · edgevideo`;
  document.getElementById("title").textContent = v.title || "Untitled";
  document.getElementById("sub").textContent =
    [v.channel_name, fmtDuration(v.duration_ms), fmtTime(v.created_at), v.status].filter(Boolean).join(" · ");
  fill(document.getElementById("tags"), (v.tags || []).map((t) => h("span", { class: "tag" }, t)));
  document.getElementById("description").textContent = v.description || "";
  const transcript = document.getElementById("transcript");
  if (typeof v.transcript === "string" && v.transcript) {
    transcript.textContent = v.transcript;
  } else if (typeof v.transcript_url === "string" && /^https?:\/\//.test(v.transcript_url)) {
    fill(transcript, h("a", { href: v.transcript_url, rel: "noopener" }, "Open the transcript"));
  }
  document.getElementById("about").hidden = false;
  const playback = await api(`/api/videos/${encodeURIComponent(id)}/playback`, { method: "POST" });
  play(playback.hls_url);
  connect(v.channel_id, null);
}

nav();
(async () => {
  try {
    if (channelParam) await watchChannel(channelParam);
    else if (videoParam) await watchVideo(videoParam);
    else throw new Error("Nothing to watch: open a channel or a video from the home page.");
  } catch (e) {
    document.getElementById("title").textContent = "Cannot play";
    say(playerStatus, e.message, "error");
  }
})();
