// The home page: live channels as cards with their thumbnails and viewer counts (the
// edge-cached live list, read again every few seconds), newest videos as cards with their
// posters, cursor paging, and search.
import { api, fill, h, nav, say, thumb, videoCard } from "/app.js";

const liveList = document.getElementById("live-list");
const liveEmpty = document.getElementById("live-empty");
const videos = document.getElementById("videos");
const more = document.getElementById("more");
const status = document.getElementById("videos-status");
const live = new Map(); // channel id -> {name, viewers, thumbnail_url}
// Live thumbnails change about every 10 s; the query makes the browser fetch the new one.
const THUMB_REFRESH_MS = 10000;
// How often a visible home page reads the live list again. Every page reads the same
// snapshot from the edge cache (rebuilt from one lobby call per location at most every 2 s),
// so open home pages cost the lobby nothing each, however many there are (no WebSocket per
// page); a channel going live shows within about 7 s.
const LIVE_POLL_MS = 5000;

const nobodyLive = liveEmpty.textContent;
let rendered = "";

function renderLive() {
  const tick = Math.floor(Date.now() / THUMB_REFRESH_MS);
  // Unchanged list, same thumbnails: the cards stay as they are.
  const shown = JSON.stringify([tick, ...live.entries()]);
  if (shown === rendered) return;
  rendered = shown;
  fill(liveList, [...live.entries()].map(([id, c]) =>
    h("li", { class: "card", "data-channel": id },
      h("a", { href: `/watch?c=${encodeURIComponent(id)}`, class: "card-link" },
        thumb(c.thumbnail_url ? `${c.thumbnail_url}?t=${tick}` : null, "LIVE"),
        h("span", { class: "title" }, c.name)),
      h("p", { class: "meta" },
        h("span", { class: "viewers", "data-viewers": c.viewers }, `${c.viewers} watching`)))));
  liveEmpty.hidden = live.size > 0;
}

// The live channels: one cached snapshot (names, viewer counts, thumbnails).
async function loadLive() {
  const state = document.getElementById("lobby-state");
  try {
    const { channels } = await api("/api/live");
    live.clear();
    for (const c of channels) {
      live.set(c.channel_id, { name: c.name, viewers: c.viewers, thumbnail_url: c.thumbnail_url });
    }
    state.textContent = "";
    liveEmpty.textContent = nobodyLive;
    renderLive();
  } catch (e) {
    if (live.size) {
      state.textContent = "(retrying…)";
    } else {
      liveEmpty.textContent = `Could not load live channels: ${e.message}`;
    }
  }
}
setInterval(() => { if (!document.hidden) loadLive(); }, LIVE_POLL_MS);
document.addEventListener("visibilitychange", () => { if (!document.hidden) loadLive(); });

let cursor = null;
let query = "";

async function loadVideos(reset) {
  const params = new URLSearchParams();
  if (query) params.set("q", query);
  if (!reset && cursor) params.set("cursor", cursor);
  try {
    const page = await api("/api/videos" + (params.size ? `?${params}` : ""));
    if (reset) videos.replaceChildren();
    for (const v of page.videos) videos.append(videoCard(v));
    cursor = page.next_cursor;
    more.hidden = !cursor;
    say(status, videos.children.length ? "" : (query ? `No videos match “${query}”.` : "No videos yet."));
  } catch (e) {
    say(status, `Could not load videos: ${e.message}`, "error");
  }
}

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  query = document.getElementById("q").value.trim();
  cursor = null;
  loadVideos(true);
});
more.addEventListener("click", () => loadVideos(false));

nav();
loadLive();
loadVideos(true);
