// The broadcaster page: create a channel, get a signed ingest URL and the exact ffmpeg
// command or go live from this browser (golive.js), and manage your videos (status, history,
// delete).
import { api, fill, fmtDuration, fmtTime, h, nav, say, thumb } from "/app.js";
import { openGoLive } from "/golive.js";

const status = document.getElementById("status");
const channelsEl = document.getElementById("channels");
const videosEl = document.getElementById("videos");
const more = document.getElementById("more");
let cursor = null;

function channelItem(c) {
  const ingest = h("div", { class: "ingest", hidden: true });
  const getUrl = async () => {
    try {
      const r = await api(`/api/channels/${encodeURIComponent(c.id)}/ingest`, { method: "POST" });
      fill(ingest,
        h("label", { for: `url-${c.id}` }, "Signed ingest URL (keep it secret; valid until ",
          new Date(r.expires_at * 1000).toLocaleString(), ")"),
        h("input", { id: `url-${c.id}`, class: "mono ingest-url", readonly: true, value: r.ingest_url }),
        h("label", {}, "Go live with ffmpeg (replace INPUT with your camera or file):"),
        h("pre", { class: "ffmpeg-command" }, r.ffmpeg_command),
        h("button", { type: "button", onclick: () => navigator.clipboard && navigator.clipboard.writeText(r.ffmpeg_command) },
          "Copy command"));
      ingest.hidden = false;
    } catch (e) {
      say(status, e.message, "error");
    }
  };
  return h("li", { "data-channel": c.id },
    c.live ? h("span", { class: "live-badge" }, "LIVE") : h("span", { class: "meta" }, "offline"),
    h("a", { href: `/watch?c=${encodeURIComponent(c.id)}` }, c.name),
    h("span", { class: "viewers" }, `${c.viewers} watching`),
    h("button", { type: "button", onclick: getUrl }, "Get ingest URL"),
    h("button", { type: "button", class: "go-live", onclick: () => openGoLive(c) }, "Go live"),
    h("div", { style: "flex-basis:100%" }, ingest));
}

async function loadChannels() {
  const { channels } = await api("/api/channels?mine=true&limit=50");
  fill(channelsEl, channels.length ? channels.map(channelItem) : h("li", {}, "No channels yet."));
}

function describe(event) {
  const d = event.detail || {};
  const bits = [];
  for (const key of ["hook", "plugin", "reason", "segments", "duration_ms", "width", "height", "latency_ms", "status", "error"]) {
    if (d[key] !== undefined && d[key] !== null) bits.push(`${key}: ${typeof d[key] === "object" ? JSON.stringify(d[key]) : d[key]}`);
  }
  if (d.result && typeof d.result === "object") bits.push(`result: ${JSON.stringify(d.result)}`);
  return bits.join(", ");
}

function videoRow(v) {
  const history = h("td", { colspan: 4, hidden: true });
  const historyRow = h("tr", { class: "history" }, history);
  const toggle = async () => {
    if (!history.hidden) { history.hidden = true; return; }
    try {
      const r = await api(`/api/videos/${encodeURIComponent(v.id)}/history`);
      fill(history, h("ol", { class: "timeline", "aria-label": `History of ${v.title}` },
        r.events.map((e) => h("li", {},
          h("strong", {}, e.kind), " ", h("span", { class: "meta" }, fmtTime(e.at_ms)),
          h("div", { class: "meta" }, describe(e))))));
      history.hidden = false;
    } catch (e) {
      say(status, e.message, "error");
    }
  };
  const remove = async () => {
    if (!confirm(`Delete “${v.title}” and its recording? This cannot be undone.`)) return;
    try {
      await api(`/api/videos/${encodeURIComponent(v.id)}`, { method: "DELETE" });
      row.remove(); historyRow.remove();
      say(status, "Video deleted.", "ok");
    } catch (e) {
      say(status, e.message, "error");
    }
  };
  const row = h("tr", { "data-video": v.id },
    h("td", { class: "with-thumb" },
      h("span", { class: "row-thumb" }, thumb(v.poster_url)),
      h("span", {}, h("a", { href: `/watch?v=${encodeURIComponent(v.id)}` }, v.title || "Untitled"),
        h("div", { class: "meta" }, fmtDuration(v.duration_ms)))),
    h("td", {}, h("span", { class: `status ${v.status}` }, v.status)),
    h("td", { class: "hide-narrow" }, fmtTime(v.created_at)),
    h("td", {}, h("button", { type: "button", onclick: toggle }, "History"), " ",
      h("button", { type: "button", class: "danger", onclick: remove }, "Delete")));
  return [row, historyRow];
}

async function loadVideos(reset) {
  const page = await api("/api/videos?mine=true" + (!reset && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""));
  if (reset) videosEl.replaceChildren();
  for (const v of page.videos) videosEl.append(...videoRow(v));
  if (reset && !page.videos.length) videosEl.append(h("tr", {}, h("td", { colspan: 4 }, "No videos yet.")));
  cursor = page.next_cursor;
  more.hidden = !cursor;
}

document.getElementById("create").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  try {
    await api("/api/channels", { method: "POST", body: {
      name: form.name.value, description: form.description.value } });
    form.reset();
    say(status, "Channel created. Get its ingest URL below.", "ok");
    await loadChannels();
  } catch (e) {
    say(status, e.message, "error");
  }
});
more.addEventListener("click", () => loadVideos(false));
// Going live or ending from this page changes the channels' live state and the recordings.
document.addEventListener("golive", () => {
  Promise.all([loadChannels(), loadVideos(true)]).catch((e) => say(status, e.message, "error"));
});

(async () => {
  const user = await nav();
  if (!user) {
    fill(status, "Sign in to broadcast. ", h("a", { href: "/login?next=/broadcast" }, "Sign in"));
    status.hidden = false;
    return;
  }
  if (user.role !== "broadcaster" && user.role !== "admin") {
    say(status, "Your account cannot broadcast yet: ask an admin for the broadcaster role.", "warn");
    return;
  }
  document.getElementById("content").hidden = false;
  try {
    await Promise.all([loadChannels(), loadVideos(true)]);
  } catch (e) {
    say(status, e.message, "error");
  }
})();
