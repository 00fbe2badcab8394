// The broadcaster page: create a channel, get a signed ingest URL and the exact ffmpeg
// command, or the ingest gateway's RTMP(S) and SRT settings for OBS and phone apps, or go
// live from this browser (golive.js), and manage your videos (status, history, delete).
import { api, fill, fmtDuration, fmtTime, h, nav, say, thumb } from "/app.js";
import { openGoLive } from "/golive.js";

const status = document.getElementById("status");
const channelsEl = document.getElementById("channels");
const videosEl = document.getElementById("videos");
const more = document.getElementById("more");
let cursor = null;

const copy = (text) => navigator.clipboard && navigator.clipboard.writeText(text);

/** A read-only field with a copy button; a `secret` one is masked until its section's
 *  "Show" toggle reveals it. */
function field(id, label, value, { secret = false } = {}) {
  return [
    h("label", { for: id }, label),
    h("div", { class: "field-row" },
      h("input", { id, class: `mono${secret ? " secret-value" : ""}`, readonly: true, value,
        type: secret ? "password" : "text", autocomplete: "off", spellcheck: "false" }),
      h("button", { type: "button", "aria-label": `Copy ${label}`, onclick: () => copy(value) }, "Copy")),
  ];
}

/** The "OBS / phone apps" settings of an ingest response: the gateway's RTMP(S) and SRT
 *  addresses with the stream key (hidden until shown), and short encoder settings. */
function gatewaySettings(c, r) {
  const until = new Date(r.expires_at * 1000).toLocaleString();
  const heading = h("h3", {}, "OBS / phone apps");
  if (!r.rtmp && !r.rtmps && !r.srt) {
    return h("div", { class: "gateway" }, heading,
      h("p", { class: "meta gateway-none" }, "This deployment takes HLS push (the ffmpeg command above) "
        + "and the browser only: no RTMP or SRT ingest gateway is configured."));
  }
  const section = h("div", { class: "gateway" });
  const toggle = h("button", { type: "button", class: "show-key", "aria-pressed": "false" }, "Show key");
  toggle.addEventListener("click", () => {
    const shown = toggle.getAttribute("aria-pressed") !== "true";
    toggle.setAttribute("aria-pressed", String(shown));
    toggle.textContent = shown ? "Hide key" : "Show key";
    for (const input of section.querySelectorAll(".secret-value")) input.type = shown ? "text" : "password";
  });
  const rtmp = r.rtmp || r.rtmps;
  const key = rtmp ? rtmp.stream_key : null;
  fill(section, heading,
    h("p", { class: "meta" }, "Stream with OBS, Streamlabs, Larix Broadcaster or ffmpeg through the "
      + `ingest gateway. The key is a secret, valid until ${until}; rotating the channel's stream `
      + "key revokes it at once (then get a new one here)."),
    h("p", {}, toggle),
    r.rtmp && [
      h("h4", {}, "RTMP"),
      field(`rtmp-server-${c.id}`, "RTMP server", r.rtmp.server),
      field(`rtmp-key-${c.id}`, "Stream key", r.rtmp.stream_key, { secret: true }),
      field(`rtmp-url-${c.id}`, "RTMP URL (server and key)", r.rtmp.url, { secret: true }),
    ],
    r.rtmps && [
      h("h4", {}, "RTMPS (TLS)"),
      field(`rtmps-server-${c.id}`, "RTMPS server", r.rtmps.server),
      !r.rtmp && field(`rtmps-key-${c.id}`, "Stream key", r.rtmps.stream_key, { secret: true }),
      field(`rtmps-url-${c.id}`, "RTMPS URL (server and key)", r.rtmps.url, { secret: true }),
    ],
    r.srt && [
      h("h4", {}, "SRT"),
      field(`srt-server-${c.id}`, "SRT server", r.srt.server),
      field(`srt-streamid-${c.id}`, "SRT stream ID", r.srt.stream_id, { secret: true }),
      field(`srt-url-${c.id}`, "SRT URL (server and stream ID)", r.srt.url, { secret: true }),
    ],
    h("h4", {}, "Settings"),
    h("ul", { class: "howto" },
      rtmp && h("li", {}, h("strong", {}, "OBS: "), "Settings → Stream: Service ", h("em", {}, "Custom…"),
        `, Server ${rtmp.server}, Stream Key: the key above. Settings → Output (Advanced): `
        + "keyframe interval 2 s, x264 or a hardware H.264 encoder, rate control CBR, audio AAC 128 kb/s."),
      r.srt && h("li", {}, h("strong", {}, "OBS over SRT: "), "Server: the whole SRT URL (with its streamid), "
        + "Stream Key left empty; same output settings."),
      h("li", {}, h("strong", {}, "Larix Broadcaster: "), "Connections → +: ",
        rtmp ? `URL ${rtmp.server}/ followed by the key (the RTMP URL above)` : null,
        rtmp && r.srt ? "; or for SRT: " : null,
        r.srt ? `URL ${r.srt.server}, Stream ID: the SRT stream ID above, mode Caller` : null,
        ". Video: keyframe interval 2 s."),
      h("li", {}, h("strong", {}, "ffmpeg: "), "-c:v libx264 -g 60 -keyint_min 60 -sc_threshold 0 -c:a aac -b:a 128k, then ",
        rtmp ? "-f flv and the RTMP URL" : "-f mpegts and the SRT URL in quotes", ".")));
  return section;
}

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
        h("button", { type: "button", onclick: () => copy(r.ffmpeg_command) }, "Copy command"),
        gatewaySettings(c, r));
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
