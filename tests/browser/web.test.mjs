// The web pages in a real browser (Debian's Chromium, driven by playwright-core) against the
// real Workers runtime: sign up, create a channel, push a live broadcast with ffmpeg, see it
// appear on the home page without a reload, watch it (hls.js), see the viewer count reach 2
// with two pages open, send a reaction and see it on the other page, and check that every
// user-supplied string renders as text. Screenshots go to target/screenshots/.
//
// Run: node --test tests/browser/ (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createServer } from "node:http";
import { chromium } from "playwright-core";

import {
  cleanup, freePort, launchChromium, pushLive, screenshotPath, signupInBrowser, startWorker, waitFor,
} from "./harness.mjs";

// A channel name that would run script if any page parsed it as HTML.
const HOSTILE = "<img src=x onerror=alert(1)>";
const PASSWORD = "correct horse battery staple";

let worker;
let broadcasterBrowser;
let viewerBrowser;
let ffmpeg;
const dialogs = [];
const state = {};

function watchDialogs(page) {
  page.on("dialog", (dialog) => {
    dialogs.push(dialog.message());
    dialog.dismiss().catch(() => {});
  });
  return page;
}

async function noInjectedImages(page) {
  return page.evaluate(() => document.querySelectorAll('img[src="x"]').length === 0);
}


// Another site: pages on a second origin (another port) that embed our player in an iframe
// or play our playback URLs with their own copy of hls.js.
let otherOrigin;
async function startOtherOrigin() {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const server = createServer((req, res) => {
    const query = new URL(req.url, url).searchParams;
    let body;
    if (req.url.startsWith("/host.html")) {
      body = `<!doctype html><title>A blog</title><h1>Someone else's page</h1>
        <iframe id="embed" src="${query.get("src")}" width="640" height="360" allow="autoplay"></iframe>`;
    } else if (req.url.startsWith("/player.html")) {
      body = `<!doctype html><title>Another player</title>
        <script src="${worker.url}/vendor/hls.min.js"></script>
        <video id="video" muted autoplay playsinline></video>
        <script>
          const hls = new Hls();
          document.body.dataset.fragments = "0";
          hls.on(Hls.Events.FRAG_LOADED, () => {
            document.body.dataset.fragments = String(Number(document.body.dataset.fragments) + 1);
          });
          hls.on(Hls.Events.ERROR, (_e, data) => {
            if (data.fatal) document.body.dataset.playerError = data.details;
          });
          hls.loadSource(${JSON.stringify(query.get("src") || "")});
          hls.attachMedia(document.getElementById("video"));
        </script>`;
    } else {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": "text/html" }).end(body);
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return { url, close: () => new Promise((resolve) => server.close(resolve)) };
}

/** Whether this Chromium decodes H.264 through MSE (Debian's build may not). */
async function decodesH264(page) {
  return page.evaluate(() => MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001e,mp4a.40.2"'));
}

/** Waits until the video element of `frame` plays (currentTime advances) where H.264
 * decodes, or reports a decode error where it does not; returns what happened. */
async function playsOrReportsCodec(frame, h264) {
  if (h264) {
    const t = await waitFor(() => frame.evaluate(() => {
      const v = document.querySelector("video");
      return v && v.currentTime > 1 ? v.currentTime : 0;
    }), 40000, "currentTime advances");
    return `played to ${t.toFixed(2)} s`;
  }
  const error = await waitFor(() => frame.evaluate(() => document.body?.dataset.playerError),
    40000, "the player reports the missing codec");
  return `no H.264 in this Chromium; the player reported ${error}`;
}

/** Plays `playbackUrl` from another origin: hls.js on that origin loads the playlist and
 * fragments cross-origin (CORS), and our embed page in an iframe plays `embedId`. */
async function playsOnAnotherOrigin(browser, playbackUrl, embedId) {
  otherOrigin ??= await startOtherOrigin();
  const page = watchDialogs(await browser.newPage());
  const h264 = await decodesH264(page);
  await page.goto(`${otherOrigin.url}/player.html?src=${encodeURIComponent(playbackUrl)}`);
  await waitFor(() => page.evaluate(() => Number(document.body.dataset.fragments) >= 2), 40000,
    "hls.js on another origin loads fragments");
  const direct = await playsOrReportsCodec(page.mainFrame(), h264);
  await page.goto(`${otherOrigin.url}/host.html?src=${encodeURIComponent(`${worker.url}/embed/${embedId}`)}`);
  const frame = await waitFor(() => page.frames().find((f) => f.url().includes("/embed/")), 15000,
    "the iframe loads");
  const embedded = await playsOrReportsCodec(frame, h264);
  await page.close();
  return { direct, embedded };
}

before(async () => {
  worker = await startWorker();
  broadcasterBrowser = await launchChromium(chromium);
  viewerBrowser = await launchChromium(chromium);
});

after(async () => {
  if (ffmpeg && ffmpeg.exitCode === null) ffmpeg.kill("SIGKILL");
  await broadcasterBrowser?.close();
  await viewerBrowser?.close();
  await worker?.stop();
  await otherOrigin?.close();
  cleanup();
});

test("a broadcaster signs up and creates a channel", async () => {
  const page = watchDialogs(await broadcasterBrowser.newPage());
  state.broadcaster = page;
  await page.goto(`${worker.url}/login`);
  const email = `web-${Date.now()}@broadcast.test`;
  state.email = email;
  await page.fill("#signup-email", email);
  await page.fill("#signup-password", PASSWORD);
  await page.screenshot({ path: screenshotPath("01-login"), fullPage: true });
  await page.click("#signup button[type=submit]");
  // No session yet: the page says where the link went, and the real SMTP server has it.
  const notice = await page.waitForSelector("#status.ok");
  assert.match(await notice.textContent(), new RegExp(email.replace(/[.]/g, "\\.")));
  const link = await worker.mail.linkToken(email);
  await page.goto(`${worker.url}/verify#${link}`);
  assert.equal(new URL(page.url()).hash, "", "the token leaves the address bar");
  await page.fill("#verify-password", "not the password at all");
  await page.click("#verify button[type=submit]");
  await page.waitForSelector("#status.error");
  await page.fill("#verify-password", PASSWORD);
  await page.screenshot({ path: screenshotPath("01b-verify"), fullPage: true });
  await page.click("#verify button[type=submit]");
  await page.waitForURL(`${worker.url}/`);
  await page.waitForSelector("header#nav .who");
  assert.equal(await page.textContent("header#nav .who"), email);
  // The session is the HttpOnly cookie only: no script on the page can read a token.
  const readable = await page.evaluate(() => ({
    stored: Object.keys(localStorage).concat(Object.keys(sessionStorage)),
    cookies: document.cookie,
  }));
  assert.deepEqual(readable.stored, []);
  assert.ok(!readable.cookies.includes("ev_session"), readable.cookies);

  await page.goto(`${worker.url}/broadcast`);
  await page.waitForSelector("#content:not([hidden])");
  await page.fill("#name", HOSTILE);
  await page.fill("#description", "Browser test channel");
  await page.click("#create button[type=submit]");
  const item = await page.waitForSelector("#channels li[data-channel]");
  state.channelId = await item.getAttribute("data-channel");
  assert.match(state.channelId, /^ch_/);
  await item.$eval("button", (b) => b.click());
  await page.waitForSelector(".ingest-url");
  state.ingestUrl = await page.inputValue(".ingest-url");
  const command = await page.textContent(".ffmpeg-command");
  assert.ok(command.includes(state.ingestUrl) && command.startsWith("ffmpeg "), command);
  // OBS / phone apps: the gateway's server (config/dev.env) and the key, masked until shown.
  const token = new URL(state.ingestUrl).pathname.split("/")[2];
  const id = state.channelId;
  assert.equal(await page.inputValue(`#rtmp-server-${id}`), "rtmp://127.0.0.1:1935/live");
  assert.equal(await page.inputValue(`#rtmp-key-${id}`), token);
  assert.equal(await page.inputValue(`#rtmp-url-${id}`), `rtmp://127.0.0.1:1935/live/${token}`);
  assert.equal(await page.inputValue(`#srt-streamid-${id}`), `#!::r=${token},m=publish`);
  assert.equal(await page.getAttribute(`#rtmp-key-${id}`, "type"), "password");
  await page.click(".gateway .show-key");
  assert.equal(await page.getAttribute(`#rtmp-key-${id}`, "type"), "text");
  assert.equal(await page.getAttribute(".gateway .show-key", "aria-pressed"), "true");
  const howto = await page.textContent(".gateway .howto");
  assert.ok(howto.includes("OBS") && howto.includes("Larix") && howto.includes("keyframe interval 2 s"), howto);
  assert.ok((await page.textContent(".gateway")).includes("revokes it at once"));
  // The settings fit a phone (375 px) without horizontal scrolling.
  await page.setViewportSize({ width: 375, height: 740 });
  const wide = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  await page.screenshot({ path: screenshotPath("02-broadcast-mobile"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  assert.equal(wide, false, "the broadcast page's ingest settings fit 375 px");
  assert.ok((await page.textContent("#channels")).includes(HOSTILE), "the name shows as text");
  assert.ok(await noInjectedImages(page));
  await page.screenshot({ path: screenshotPath("02-broadcast"), fullPage: true });
});

test("the home page shows the broadcast live without a reload", async () => {
  const home = watchDialogs(await viewerBrowser.newPage());
  state.home = home;
  await home.goto(`${worker.url}/`);
  await home.waitForSelector("#live-empty:not([hidden])");
  await home.evaluate(() => { window.__sameDocument = true; });

  ffmpeg = pushLive(state.ingestUrl, 60);
  const entry = await home.waitForSelector(`#live-list li[data-channel="${state.channelId}"]`,
    { timeout: 30000 });
  assert.equal(await home.evaluate(() => window.__sameDocument), true, "no reload happened");
  assert.ok((await entry.textContent()).includes(HOSTILE));
  assert.ok(await noInjectedImages(home));
  await home.screenshot({ path: screenshotPath("03-home-live"), fullPage: true });
});

test("two viewers watch: the video plays, the count reaches 2, reactions reach the other page",
  async () => {
    const watchUrl = `${worker.url}/watch?c=${state.channelId}`;
    const first = watchDialogs(await viewerBrowser.newPage());
    await first.goto(watchUrl);
    await first.waitForSelector("body[data-live='1']", { timeout: 30000 });

    // What this Chromium can decode: hls.js transmuxes MPEG-TS to fragmented MP4 for MSE, so
    // H.264 playback needs MSE support for avc1.
    const codecs = await first.evaluate(() => ({
      mseH264: MediaSource.isTypeSupported('video/mp4; codecs="avc1.64001e,mp4a.40.2"'),
      mseAac: MediaSource.isTypeSupported('audio/mp4; codecs="mp4a.40.2"'),
      hlsjs: Boolean(window.Hls && window.Hls.isSupported()),
    }));
    console.log(`# Chromium media support: ${JSON.stringify(codecs)}`);
    assert.ok(codecs.hlsjs, "hls.js (served by us) loads and finds MSE");

    if (codecs.mseH264) {
      // Proved: the live HLS stream decodes and plays in the browser.
      const t0 = await waitFor(() => first.evaluate(() => {
        const v = document.getElementById("video");
        return v.currentTime > 0 ? v.currentTime : 0;
      }), 40000, "playback starts");
      const t1 = await waitFor(() => first.evaluate((start) => {
        const v = document.getElementById("video");
        return v.currentTime > start + 1 ? v.currentTime : 0;
      }, t0), 20000, "currentTime advances");
      console.log(`# video.currentTime advanced from ${t0.toFixed(2)} to ${t1.toFixed(2)} s`);
    } else {
      // This build cannot decode H.264: what can be proved is that the page loaded the live
      // playlist and segments through hls.js and told the viewer, rather than failing silently.
      const error = await waitFor(() => first.evaluate(() => document.body.dataset.playerError),
        40000, "the player reports the missing codec");
      console.log(`# H.264 unavailable in this Chromium; player reported: ${error}`);
      assert.ok(await first.isVisible("#player-status"));
    }

    const second = watchDialogs(await viewerBrowser.newPage());
    await second.goto(watchUrl);
    for (const page of [first, second]) {
      await page.waitForSelector("#viewers[data-count='2']", { timeout: 15000 });
      assert.equal(await page.textContent("#viewers"), "2 watching");
    }
    // The home page's next read of the live list shows the count (the lobby hears a small
    // change within 10 s of the last one it was told; the page reads the list every 5 s).
    await state.home.waitForSelector(
      `#live-list li[data-channel="${state.channelId}"] [data-viewers="2"]`, { timeout: 25000 });

    await first.click("#reactions button[data-emoji='🔥']");
    await second.waitForFunction(
      () => document.getElementById("reaction-log").textContent.includes("🔥"), null,
      { timeout: 10000 });
    assert.equal(await first.textContent("h1"), HOSTILE);
    assert.ok(await noInjectedImages(first) && await noInjectedImages(second));
    await first.evaluate(() => window.scrollTo(0, 0));
    await first.screenshot({ path: screenshotPath("04-watch-first"), fullPage: true });
    await second.screenshot({ path: screenshotPath("05-watch-second"), fullPage: true });
    await state.home.screenshot({ path: screenshotPath("06-home-two-viewers"), fullPage: true });

    await second.close();
    await first.waitForSelector("#viewers[data-count='1']", { timeout: 15000 });
    state.first = first;
  });

test("a player on another origin plays the channel live, directly and embedded", async () => {
  const r = await fetch(`${worker.url}/api/channels/${state.channelId}/playback`, { method: "POST" });
  const { url } = await r.json();
  const result = await playsOnAnotherOrigin(viewerBrowser, url, state.channelId);
  console.log(`# cross-origin live: hls.js ${result.direct}; embed ${result.embedded}`);
});

test("the recording shows on the broadcaster page with its status and history, as text",
  async () => {
    ffmpeg.kill("SIGINT");
    await waitFor(async () => {
      const r = await fetch(`${worker.url}/api/channels/${state.channelId}`);
      return (await r.json()).last_broadcast;
    }, 30000, "the broadcast ends");
    const page = state.broadcaster;
    await page.goto(`${worker.url}/broadcast`);
    const row = await page.waitForSelector("#videos tr[data-video]");
    assert.ok((await row.textContent()).includes(HOSTILE), "the title shows as text");
    await row.$eval("button", (b) => b.click()); // History
    await page.waitForSelector("ol.timeline li");
    const timeline = await page.textContent("ol.timeline");
    assert.ok(timeline.includes("broadcast.started") && timeline.includes("broadcast.ended"), timeline);
    assert.ok(await noInjectedImages(page));
    await page.screenshot({ path: screenshotPath("07-broadcast-videos"), fullPage: true });
  });

test("a player on another origin plays the recording, directly and embedded", async () => {
  const channel = await (await fetch(`${worker.url}/api/channels/${state.channelId}`)).json();
  const videoId = channel.last_broadcast.video_id;
  const r = await fetch(`${worker.url}/api/videos/${videoId}/playback`, { method: "POST" });
  assert.equal(r.status, 200, await r.clone().text());
  const { hls_url: url } = await r.json();
  const result = await playsOnAnotherOrigin(viewerBrowser, url, videoId);
  console.log(`# cross-origin VOD: hls.js ${result.direct}; embed ${result.embedded}`);
});

test("a developer registers a plugin, sees its secret once and its deliveries", async () => {
  // The first admin of this fresh deployment (ADMIN_EMAILS in config/dev.env); admins hold
  // every role, the developer role included.
  const page = watchDialogs(await broadcasterBrowser.newPage());
  await signupInBrowser(page, worker, "admin@edgevideo.test", PASSWORD, "/developer");
  await page.waitForSelector("#content:not([hidden])");
  await page.fill("#name", `watcher-${Date.now()}`);
  await page.selectOption("#hook", "postMetadata");
  await page.fill("#url", "http://127.0.0.1:9/hook");
  await page.fill("#description", HOSTILE);
  await page.click("#register button[type=submit]");
  const secret = await page.waitForSelector(".plugin-secret");
  assert.match(await secret.textContent(), /^whsec_/);
  const item = await page.waitForSelector("#plugins li[data-plugin]");
  await item.$eval("button", (b) => b.click());
  await page.waitForSelector("#plugins li[data-plugin] p.meta, #plugins li[data-plugin] table");
  await page.screenshot({ path: screenshotPath("08-developer"), fullPage: true });
  // A reload shows the plugin but never its secret again.
  await page.reload();
  await page.waitForSelector("#plugins li[data-plugin]");
  assert.equal(await page.isVisible(".plugin-secret"), false);
  assert.ok(await noInjectedImages(page));
});

test("signing in never leaves the site, whatever `next` says", async () => {
  const context = await launchChromium(chromium);
  try {
    for (const next of ["/\\evil.example", "//evil.example", "https://evil.example/", "javascript:alert(1)"]) {
      const page = watchDialogs(await context.newPage());
      await page.goto(`${worker.url}/login?next=${encodeURIComponent(next)}`);
      await page.fill("#login-email", state.email);
      await page.fill("#login-password", PASSWORD);
      await page.click("#login button[type=submit]");
      await page.waitForURL(`${worker.url}/`);
      await page.close();
    }
    const page = await context.newPage();
    const response = await page.goto(`${worker.url}/`);
    const headers = response.headers();
    assert.match(headers["content-security-policy"], /frame-ancestors 'none'/);
    assert.equal(headers["x-content-type-options"], "nosniff");
  } finally {
    await context.close();
  }
});

test("pages work at mobile width", async () => {
  const page = watchDialogs(await viewerBrowser.newPage());
  await page.setViewportSize({ width: 375, height: 740 });
  await page.goto(`${worker.url}/`);
  await page.waitForSelector("#videos-status, #videos li", { state: "attached" });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
  assert.equal(overflow, false, "no horizontal scrolling at 375 px");
  await page.screenshot({ path: screenshotPath("09-home-mobile"), fullPage: true });
  await page.goto(`${worker.url}/developer`);
  await page.waitForSelector("#status:not([hidden])");
  await page.screenshot({ path: screenshotPath("10-developer-mobile"), fullPage: true });
  assert.deepEqual(dialogs, [], "no page ever ran injected script");
});

test("the account page changes the password and signs the other sessions out", async () => {
  // Two browsers of one user: the change on the first ends the second's session.
  const first = await launchChromium(chromium);
  const second = await launchChromium(chromium);
  try {
    const email = `account-${Date.now()}@example.com`;
    const page = watchDialogs(await first.newPage());
    await signupInBrowser(page, worker, email, PASSWORD);
    const other = await second.newPage();
    await other.goto(`${worker.url}/login`);
    await other.fill("#login-email", email);
    await other.fill("#login-password", PASSWORD);
    await other.click("#login button[type=submit]");
    await other.waitForURL(`${worker.url}/`);
    const signedIn = async (p) => (await p.evaluate(async () => (await fetch("/api/me")).status)) === 200;
    assert.equal(await signedIn(other), true);

    await page.click("header#nav a.who");
    await page.waitForURL(`${worker.url}/account`);
    await page.waitForSelector("#content:not([hidden])");
    assert.match(await page.textContent("#who"), new RegExp(`${email.replace(/[.]/g, "\\.")} · viewer`));
    // A wrong current password changes nothing.
    await page.fill("#current-password", "not my password");
    await page.fill("#new-password", "a brand new passphrase");
    await page.click("#password button[type=submit]");
    await page.waitForSelector("#status.error");
    assert.equal(await signedIn(other), true);
    await page.fill("#current-password", PASSWORD);
    await page.fill("#new-password", "a brand new passphrase");
    await page.click("#password button[type=submit]");
    await page.waitForSelector("#status.ok");
    await page.screenshot({ path: screenshotPath("11-account"), fullPage: true });
    assert.equal(await signedIn(page), true, "this browser got the new session");
    assert.equal(await signedIn(other), false, "the other one is signed out");

    // Signing out everywhere ends this one too.
    await page.click("#everywhere");
    await page.waitForURL(`${worker.url}/`);
    assert.equal(await signedIn(page), false);
    assert.deepEqual(dialogs, [], "no page ever ran injected script");
  } finally {
    await first.close();
    await second.close();
  }
});
