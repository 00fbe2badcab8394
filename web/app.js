// Shared helpers of the edgevideo pages: DOM building that never parses user text as HTML,
// the JSON API client, the session, the navigation bar and small formatters.
//
// Every user-supplied string reaches the page through text nodes (`h()` children and
// `textContent`), never through innerHTML, so a title like `<img src=x onerror=...>` shows
// as text.

// The session lives in the HttpOnly session cookie only: no token in script-readable
// storage, where any injected script could take it. A token kept there by an older version
// of these pages is dropped.
try {
  localStorage.removeItem("ev_token");
} catch {
  // Storage may be unavailable (private mode).
}

/** Creates an element. `attrs`: `class`, `on<event>` handlers, booleans, other attributes.
 *  Children: strings and numbers become text nodes; nodes are appended; null is skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** An API error with the server's `code` and `message`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API: JSON in and out; throws ApiError on a non-2xx answer. */
export async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "http_" + response.status,
      error.message || response.statusText);
  }
  return data;
}

/** The signed-in user (by the session cookie), or null. */
export async function currentUser() {
  try {
    return (await api("/api/me")).user;
  } catch {
    return null;
  }
}

export async function signOut() {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } catch {
    // The server revokes the session and clears the cookie; if it cannot be reached, the
    // cookie stays until it expires.
  }
  location.href = "/";
}

/** Renders the navigation bar into `#nav` and returns the user (or null). */
export async function nav() {
  const user = await currentUser();
  const here = location.pathname.replace(/\.html$/, "");
  const link = (href, text) =>
    h("a", { href, "aria-current": here === href ? "page" : null }, text);
  const el = document.getElementById("nav");
  if (el) {
    fill(el,
      h("a", { href: "/", class: "brand" }, "edgevideo"),
      h("div", { class: "links" },
        link("/", "Home"),
        link("/broadcast", "Broadcast"),
        link("/developer", "Developers"),
        user
          ? [h("a", { href: "/account", class: "who", title: `${user.role}: your account` }, user.email),
             h("button", { type: "button", class: "link", onclick: signOut }, "Sign out")]
          : link("/login", "Sign in")));
  }
  return user;
}

/** A WebSocket URL on this origin. */
export function wsUrl(path) {
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
}

/** Keeps a WebSocket open, reconnecting with backoff; `onMessage` gets parsed JSON. */
export function socket(path, onMessage, onState = () => {}) {
  let delay = 500;
  let ws;
  const open = () => {
    ws = new WebSocket(wsUrl(path));
    ws.addEventListener("open", () => { delay = 500; onState("open"); });
    ws.addEventListener("message", (event) => {
      try {
        onMessage(JSON.parse(event.data));
      } catch {
        // Not JSON: ignore.
      }
    });
    ws.addEventListener("close", () => {
      onState("closed");
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    });
  };
  open();
  return { send: (message) => ws && ws.readyState === 1 && ws.send(JSON.stringify(message)) };
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "";
  const s = Math.round(ms / 1000);
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, "0")}`;
}

export function fmtTime(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleString();
}

/** Shows a message in a status region (`role=status` or `role=alert`). */
export function say(el, text, kind = "info") {
  if (!el) return;
  el.className = `notice ${kind}`;
  el.textContent = text;
  el.hidden = !text;
}

/** A video card for lists. */
/** A card's 16:9 picture: `src` (a poster or live thumbnail) over a placeholder that stays
 *  when there is none or it fails to load, with an optional `badge` (top left, e.g. LIVE)
 *  and `corner` text (bottom right, e.g. the duration). */
export function thumb(src, badge = null, corner = null) {
  const img = src ? h("img", { src, alt: "", loading: "lazy", decoding: "async" }) : null;
  if (img) img.addEventListener("error", () => img.remove());
  return h("span", { class: "thumb", "aria-hidden": "true" },
    h("span", { class: "placeholder" }, "▶"),
    img,
    badge ? h("span", { class: "live-badge" }, badge) : null,
    corner ? h("span", { class: "corner" }, corner) : null);
}

export function videoCard(video, extra = null) {
  const views = video.views === 1 ? "1 view" : `${video.views || 0} views`;
  return h("li", { class: "card", "data-video": video.id },
    h("a", { href: `/watch?v=${encodeURIComponent(video.id)}`, class: "card-link" },
      thumb(video.poster_url, null, video.duration_ms ? fmtDuration(video.duration_ms) : null),
      h("span", { class: "title" }, video.title || "Untitled")),
    h("p", { class: "meta" },
      video.channel_name || "", ` · ${views}`, ` · ${fmtTime(video.created_at)}`),
    (video.tags || []).length
      ? h("p", { class: "tags" }, (video.tags || []).map((t) => h("span", { class: "tag" }, t)))
      : null,
    extra);
}

/** Plays the HLS `url` in `video`: with hls.js (MSE) where it works, else the browser's own
 *  HLS. `report(message, code)` hears of what stops playback: a fatal hls.js error, no HLS
 *  support, or a media the browser cannot decode (attached once per `video`). A live
 *  playlist with parts plays in hls.js's low-latency mode unless `lowLatency` is false (then
 *  as ordinary HLS, a few segments behind). Returns the hls.js instance (destroy it before
 *  playing another URL), or null. */
export function playHls(video, url, report, { lowLatency = true } = {}) {
  if (!video.dataset.reportsErrors) {
    video.dataset.reportsErrors = "1";
    video.addEventListener("error", () => {
      const code = video.error ? video.error.code : 0;
      report(`The browser could not decode this video (media error ${code}).`, `media_error_${code}`);
    });
  }
  const Hls = window.Hls;
  if (Hls && Hls.isSupported()) {
    // In low-latency mode hls.js may play up to 1.5x (pitch kept, as hls.js's low-latency
    // demo does) to get back to the playlist's PART-HOLD-BACK after a stall or a late start,
    // instead of staying seconds behind (at 1.1x, 4 s took 40 s to recover).
    const hls = new Hls({ liveDurationInfinity: true, lowLatencyMode: lowLatency,
      maxLiveSyncPlaybackRate: lowLatency ? 1.5 : 1 });
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (data.fatal) report(`Playback error: ${data.details}`, data.details);
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
    // How far behind the live edge the playhead is, by hls.js's own estimate (for the curious
    // and for the benchmarks).
    hls.on(Hls.Events.FRAG_CHANGED, () => {
      if (Number.isFinite(hls.latency)) video.dataset.latency = hls.latency.toFixed(2);
    });
    // Whether the playlist has low-latency parts and they are used, and how many loaded
    // playlists so far had them (for the tests: a broadcaster on a loaded machine drops late
    // parts, so one reload may list none while the next does).
    hls.on(Hls.Events.LEVEL_LOADED, (_event, data) => {
      const parts = Boolean(data.details && data.details.partList && data.details.partList.length);
      video.dataset.lowLatency = parts && lowLatency ? "1" : "0";
      if (parts && lowLatency) video.dataset.partLoads = String(Number(video.dataset.partLoads || 0) + 1);
    });
    // Which rendition plays (for the curious and for the tests): its picture height.
    hls.on(Hls.Events.LEVEL_SWITCHED, (_event, data) => {
      const level = hls.levels[data.level];
      video.dataset.renditions = String(hls.levels.length);
      video.dataset.height = level && level.height ? String(level.height) : "";
    });
    hls.loadSource(url);
    hls.attachMedia(video);
    return hls;
  }
  if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = url;
    video.play().catch(() => {});
  } else {
    report("This browser cannot play HLS video.", "no_hls");
  }
  return null;
}
