// The home page: live channels as cards with their thumbnails (kept current by the lobby
// WebSocket, viewer counts included), newest videos as cards with their posters, cursor
// paging, and search.
import { api, fill, h, nav, say, socket, thumb, videoCard } from "/app.js";

const liveList = document.getElementById("live-list");
const liveEmpty = document.getElementById("live-empty");
const videos = document.getElementById("videos");
const more = document.getElementById("more");
const status = document.getElementById("videos-status");
const live = new Map(); // channel id -> {name, viewers, thumbnail_url}
// Live thumbnails change about every 10 s; the query makes the browser fetch the new one.
const THUMB_REFRESH_MS = 10000;

function renderLive() {
  const tick = Math.floor(Date.now() / THUMB_REFRESH_MS);
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
  try {
    const { channels } = await api("/api/live");
    live.clear();
    for (const c of channels) {
      live.set(c.channel_id, { name: c.name, viewers: c.viewers, thumbnail_url: c.thumbnail_url });
    }
    renderLive();
  } catch (e) {
    liveEmpty.textContent = `Could not load live channels: ${e.message}`;
  }
}
setInterval(() => { if (live.size && !document.hidden) renderLive(); }, THUMB_REFRESH_MS);

socket("/api/live/ws", (m) => {
  if (m.type === "live") {
    const known = live.get(m.channel_id);
    live.set(m.channel_id, { name: m.name, viewers: known ? known.viewers : (m.viewers || 0),
      thumbnail_url: known ? known.thumbnail_url : null });
    // Its thumbnail URL comes with the next snapshot (rebuilt within 2 s).
    if (!known) setTimeout(loadLive, 2500);
  } else if (m.type === "ended") {
    live.delete(m.channel_id);
  } else if (m.type === "viewers" && live.has(m.channel_id)) {
    live.get(m.channel_id).viewers = m.count;
  } else {
    return;
  }
  renderLive();
}, (state) => {
  document.getElementById("lobby-state").textContent = state === "open" ? "" : "(reconnecting…)";
  if (state === "open") loadLive();
});

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
