// Go live from the broadcast page, in the browser (Debian's Chromium with a fake camera and
// microphone): the page encodes an adaptive ladder with WebCodecs (Mediabunny) and PUTs CMAF
// renditions and a multivariant playlist to the signed ingest URL, with low-latency parts
// while each segment is made; ffprobe reads every rendition at the channel's playback URL,
// each rendition's live playlist lists the page's parts (which hold the same packets as their
// segment), the watch page plays it with hls.js in low-latency mode and switches rendition
// when its bandwidth is capped; the page's thumbnail shows on the home page; Stop
// ends it, and the recording becomes a published MP4 shown as a card with its poster.
// Screenshots (desktop and 375 px) go to target/screenshots/.
//
// Run: node --test tests/browser/golive.test.mjs (after scripts/build-worker.sh).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

import {
  cleanup, launchChromium, screenshotPath, signupInBrowser, startWorker, waitFor,
} from "./harness.mjs";

const PASSWORD = "correct horse battery staple";
const run = promisify(execFile);

let worker;
let broadcasterBrowser;
let viewerBrowser;
const state = {};

before(async () => {
  worker = await startWorker({ transcoder: true });
  broadcasterBrowser = await launchChromium(chromium, { width: 375, height: 740 }, { fakeMedia: true });
  viewerBrowser = await launchChromium(chromium);
});

after(async () => {
  await broadcasterBrowser?.close();
  await viewerBrowser?.close();
  await worker?.stop();
  cleanup();
});

const PART_TARGET = 0.35; // web/golive.js

/** The packets ffprobe reads from `bytes` (an init segment and fragments), one line each:
 *  stream, pts, dts, size, flags (not the duration: a part's last frame lasts until the
 *  next part, where a segment's last one has the encoder's duration). */
async function packets(bytes) {
  const dir = mkdtempSync(path.join(tmpdir(), "golive-parts-"));
  try {
    const file = path.join(dir, "media.mp4");
    writeFileSync(file, bytes);
    const { stdout } = await run("ffprobe", ["-v", "error", "-show_entries", "packet=stream_index,pts,dts,size,flags",
      "-of", "csv=p=0", file], { timeout: 30000 });
    // By stream, then decode time: a segment's one fragment has its video then its audio, its
    // parts each a little of both.
    const key = (line) => line.split(",").map(Number);
    return stdout.trim().split("\n").sort((a, b) => key(a)[0] - key(b)[0] || key(a)[2] - key(b)[2]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const bytesOf = async (url) => {
  const r = await fetch(url);
  assert.equal(r.status, 200, url);
  return Buffer.from(await r.arrayBuffer());
};

/** What the broadcast page says about itself: state, status text, ladder, segments up. */
async function pageState(page) {
  return page.evaluate(() => {
    const section = document.getElementById("golive");
    const health = document.getElementById("golive-health");
    return { state: section.dataset.state, status: document.getElementById("golive-status").textContent,
      ladder: health.dataset.ladder || "", segments: Number(health.dataset.segments || 0) };
  });
}

test("a broadcaster opens the camera on the broadcast page at phone width", async () => {
  const page = await broadcasterBrowser.newPage();
  state.page = page;
  page.on("pageerror", (e) => console.log(`# page error: ${e.message}`));
  // broadcast.test is a broadcaster domain in config/dev.env (the role comes with the
  // verified address).
  await signupInBrowser(page, worker, `golive-${Date.now()}@broadcast.test`, PASSWORD, "/broadcast");
  await page.waitForSelector("#content:not([hidden])");
  await page.fill("#name", "Live from a phone");
  await page.click("#create button[type=submit]");
  const item = await page.waitForSelector("#channels li[data-channel]");
  state.channelId = await item.getAttribute("data-channel");
  await page.click(`#channels li[data-channel="${state.channelId}"] button.go-live`);
  await page.waitForSelector("#golive[data-state=preview]", { timeout: 20000 });
  await waitFor(() => page.evaluate(() => document.getElementById("golive-preview").videoWidth > 0),
    15000, "the camera preview shows");
  assert.equal(await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth), false,
    "no horizontal scrolling at 375 px");
  await page.screenshot({ path: screenshotPath("golive-01-preview"), fullPage: true });
});

test("Go live pushes a ladder that ffprobe reads and the watch page plays", async () => {
  const page = state.page;
  await page.click("#golive-start");
  await waitFor(async () => {
    const s = await pageState(page);
    if (s.state === "failed" || s.state === "preview") throw new Error(`Go live failed: ${s.status}`);
    return s.state === "live";
  }, 60000, "the page goes live");
  state.wentLiveAt = Date.now();
  const first = await waitFor(async () => {
    const s = await pageState(page);
    if (s.state !== "live") throw new Error(`the broadcast stopped: ${s.status}`);
    return s.segments >= 3 ? s : null;
  }, 30000, "segments reach the edge");
  const ladder = first.ladder.split(",");
  const health = await page.evaluate(() => [...document.querySelectorAll("#golive-health dt")]
    .map((dt) => `${dt.textContent}: ${dt.nextElementSibling.textContent}`).join("; "));
  console.log(`# ladder ${first.ladder}; ${health}`);
  assert.ok(ladder.length >= 1 && ladder.length <= 3, first.ladder);

  const r = await fetch(`${worker.url}/api/channels/${state.channelId}/playback`, { method: "POST" });
  assert.equal(r.status, 200, await r.clone().text());
  const { url } = await r.json();
  // ffprobe reads the multivariant playlist: every rendition, its codec and its size.
  const probe = await waitFor(async () => {
    try {
      const { stdout } = await run("ffprobe", ["-v", "error", "-show_entries",
        "stream=codec_type,codec_name,width,height", "-of", "json", url], { timeout: 30000 });
      const streams = JSON.parse(stdout).streams || [];
      return streams.some((s) => s.codec_type === "video") ? streams : null;
    } catch {
      return null;
    }
  }, 40000, "ffprobe reads the live multivariant playlist");
  const videos = probe.filter((s) => s.codec_type === "video");
  const audios = probe.filter((s) => s.codec_type === "audio");
  console.log(`# ffprobe: ${videos.map((s) => `${s.codec_name} ${s.width}x${s.height}`).join(", ")}; `
    + `audio ${[...new Set(audios.map((s) => s.codec_name))].join(", ")}`);
  assert.ok(videos.every((s) => s.codec_name === "h264"));
  state.topShortSide = Math.max(...videos.map((s) => Math.min(s.width, s.height)));
  assert.equal(new Set(videos.map((s) => s.height)).size, ladder.length, "one video size per rendition");
  assert.ok(audios.length >= ladder.length && audios.every((s) => ["aac", "opus"].includes(s.codec_name)),
    "every rendition carries the audio");

  // Low-latency parts: each rendition's live playlist lists the page's parts of its newest
  // segments and hints the next one.
  const base = url.replace(/live\.m3u8$/, "");
  for (const name of ladder) {
    const variant = new URL(`live/${name}.m3u8`, base).href;
    const listing = (pattern) => async () => {
      const body = await (await fetch(variant)).text();
      return pattern.test(body) ? body : null;
    };
    // At least one complete segment listed with its parts. A loaded machine drops late
    // parts (their segment then lists none): give it time.
    const complete = /#EXT-X-PART:[^\n]*\n(#EXT-X-PROGRAM-DATE-TIME[^\n]*\n)?#EXTINF/;
    let text;
    try {
      text = await waitFor(listing(complete), 60000, `parts in ${name}'s live playlist`);
    } catch (e) {
      // Under make test's parallel load a lower rendition's parts, uploaded after the
      // higher ones', can all be late for a minute: its segments then go whole. The top
      // rendition must show a complete segment with its parts; a lower one its newest parts.
      if (name === ladder[0]) throw e;
      text = await waitFor(listing(/#EXT-X-PART:/), 30000, `any part in ${name}'s live playlist`);
      console.log(`# ${name}: no complete segment with its parts within 60 s (late parts dropped)`);
    }
    assert.match(text, /#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1\.05\b/);
    assert.match(text, /#EXT-X-PART-INF:PART-TARGET=0\.35\b/);
    assert.match(text, new RegExp(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="\\.\\./seg/[^/"]+/${name}_\\d{5}\\.part\\d+\\.m4s"`));
    const parts = [...text.matchAll(/#EXT-X-PART:DURATION=([\d.]+),URI="([^"]+)"(,INDEPENDENT=YES)?/g)]
      .map(([, duration, uri, independent]) => ({ duration: Number(duration), uri, independent: Boolean(independent) }));
    assert.ok(parts.length >= (complete.test(text) ? 3 : 1), text);
    for (const part of parts) {
      assert.match(part.uri, new RegExp(`/${name}_\\d{5}\\.part\\d+\\.m4s$`));
      assert.ok(part.duration > 0 && part.duration <= PART_TARGET, `part duration ${part.duration}`);
      if (/\.part0\.m4s$/.test(part.uri)) assert.ok(part.independent, `${part.uri} starts with a key frame`);
    }
    console.log(`# ${name} parts: ${parts.map((p) => p.duration).join(" ")} s`);

    // A complete segment's parts hold the same packets as the segment itself.
    const lines = text.split("\n");
    const map = /#EXT-X-MAP:URI="([^"]+)"/.exec(text)[1];
    let group = [];
    let checked = null;
    for (const line of lines) {
      const part = /^#EXT-X-PART:.*URI="([^"]+)"/.exec(line);
      if (part) group.push(part[1]);
      if (line.startsWith("#") || !line.trim()) continue;
      if (group.length && /\.part0\.m4s$/.test(group[0]) && !checked) checked = { segment: line.trim(), parts: group };
      group = [];
    }
    if (!checked && name !== ladder[0]) continue;
    assert.ok(checked, `a complete segment with its parts in ${text}`);
    const init = await bytesOf(new URL(map, variant).href);
    const whole = await packets(Buffer.concat([init, await bytesOf(new URL(checked.segment, variant).href)]));
    const pieces = [];
    for (const uri of checked.parts) pieces.push(await bytesOf(new URL(uri, variant).href));
    const fromParts = await packets(Buffer.concat([init, ...pieces]));
    assert.ok(whole.length > 10, whole.join("; "));
    assert.deepEqual(fromParts, whole, `the parts of ${checked.segment} hold its packets`);
  }

  // The watch page (hls.js) plays it.
  const watch = await viewerBrowser.newPage();
  state.watch = watch;
  await watch.goto(`${worker.url}/watch?c=${state.channelId}`);
  await watch.waitForSelector("body[data-live='1']", { timeout: 30000 });
  const t0 = await waitFor(() => watch.evaluate(() => {
    const v = document.getElementById("video");
    if (document.body.dataset.playerError) throw new Error(`player: ${document.body.dataset.playerError}`);
    return v.currentTime > 0 ? v.currentTime : 0;
  }), 40000, "playback starts");
  const t1 = await waitFor(() => watch.evaluate((start) => {
    const v = document.getElementById("video");
    return v.currentTime > start + 2 ? v.currentTime : 0;
  }, t0), 20000, "currentTime advances");
  // Low-latency mode: hls.js loads playlists that list parts (counted over the reloads: on a
  // loaded machine the page drops late parts, so reloads may list none for a while).
  const watching = await waitFor(() => watch.evaluate(() => {
    const data = { ...document.getElementById("video").dataset };
    return Number(data.partLoads || 0) > 0 ? data : null;
  }), 60000, "hls.js loads a playlist with parts in low-latency mode");
  console.log(`# watch page: currentTime ${t0.toFixed(2)} -> ${t1.toFixed(2)} s, `
    + `low latency ${watching.lowLatency}, hls.js latency ${watching.latency} s`);

  // hls.js climbs to the top rendition, and switches down when the viewer's bandwidth is
  // capped (Chromium's network emulation: 400 kb/s, below the top rendition's bitrate).
  if (ladder.length > 1) {
    const heights = videos.map((s) => s.height);
    const top = Math.max(...heights);
    const playing = () => watch.evaluate(() => Number(document.getElementById("video").dataset.height || 0));
    await waitFor(async () => (await playing()) === top, 40000, `hls.js plays the ${top}p rendition`);
    const cdp = await watch.context().newCDPSession(watch);
    await cdp.send("Network.enable");
    await cdp.send("Network.emulateNetworkConditions",
      { offline: false, latency: 40, downloadThroughput: 50_000, uploadThroughput: 50_000 });
    const lower = await waitFor(async () => {
      const height = await playing();
      return height > 0 && height < top ? height : 0;
    }, 60000, "hls.js switches down when the bandwidth is capped");
    console.log(`# hls.js switched from ${top}p to ${lower}p at 400 kb/s`);
    await cdp.send("Network.emulateNetworkConditions",
      { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  }

  // The page's camera picture reaches the home page: the live card shows it.
  await waitFor(() => page.evaluate(() => Number(document.getElementById("golive").dataset.thumbnails || 0) > 0),
    30000, "the page sends a thumbnail");
  const live = await (await fetch(`${worker.url}/api/live`)).json();
  const entry = live.channels.find((c) => c.channel_id === state.channelId);
  assert.ok(entry && entry.thumbnail_url, JSON.stringify(live));
  const thumb = await fetch(`${worker.url}${entry.thumbnail_url}`);
  assert.equal(thumb.status, 200);
  assert.equal(thumb.headers.get("content-type"), "image/jpeg");
  for (const [name, viewport] of [["desktop", { width: 1280, height: 800 }], ["375", { width: 375, height: 740 }]]) {
    const home = await viewerBrowser.newPage();
    await home.setViewportSize(viewport);
    await home.goto(worker.url);
    await home.waitForFunction((id) => {
      const img = document.querySelector(`#live-list li[data-channel="${id}"] img`);
      return img && img.complete && img.naturalWidth > 0;
    }, state.channelId, { timeout: 20000 });
    await home.screenshot({ path: screenshotPath(`golive-home-live-${name}`), fullPage: true });
    await home.close();
  }

  // About 20 s of pushing in all.
  await waitFor(async () => {
    const s = await pageState(page);
    if (s.state !== "live") throw new Error(`the broadcast stopped: ${s.status}`);
    return s.segments >= 10 * ladder.length;
  }, 40000, "20 s of segments");
  const partsUp = await page.evaluate(() => Number(document.getElementById("golive-health").dataset.parts || 0));
  assert.ok(partsUp >= 30 * ladder.length, `parts uploaded: ${partsUp}`);
  // Segments whose parts all went up are committed from them (their bytes cross the uplink
  // once); the recording below is made of them and must still decode end to end.
  const committed = await page.evaluate(() => Number(document.getElementById("golive-health").dataset.committed || 0));
  console.log(`# ${committed} of ${(await pageState(page)).segments} segments committed from their parts`);
  assert.ok(committed > 0, "no segment was committed from its parts");
  await page.screenshot({ path: screenshotPath("golive-02-live"), fullPage: true });
  await watch.screenshot({ path: screenshotPath("golive-03-watch"), fullPage: true });
});

test("Stop ends the broadcast cleanly", async () => {
  const page = state.page;
  await page.click("#golive-stop");
  await page.waitForSelector("#golive[data-state=ended]", { timeout: 40000 });
  assert.match(await page.textContent("#golive-status"), /ended/);
  await waitFor(async () => {
    const r = await fetch(`${worker.url}/api/channels/${state.channelId}`);
    const channel = await r.json();
    return !channel.live && channel.last_broadcast;
  }, 40000, "the edge ends the broadcast");
  await state.watch.waitForSelector("body[data-live='0']", { timeout: 20000 });
  await page.screenshot({ path: screenshotPath("golive-04-ended"), fullPage: true });
  state.liveSeconds = (Date.now() - state.wentLiveAt) / 1000;
});

test("the recording becomes a published MP4 of the top rendition, shown as a card with its poster", async () => {
  const r = await fetch(`${worker.url}/api/channels/${state.channelId}`);
  const videoId = (await r.json()).last_broadcast.video_id;
  assert.ok(videoId);
  await waitFor(async () => {
    const v = await (await fetch(`${worker.url}/api/_diag/video/${videoId}`)).json();
    return v.status === "published";
  }, 120000, "the video is published");
  const playback = await (await fetch(`${worker.url}/api/videos/${videoId}/playback`, { method: "POST" })).json();
  const { stdout } = await run("ffprobe", ["-v", "error", "-show_entries", "format=duration:stream=codec_type,codec_name,width,height",
    "-of", "json", playback.mp4_url], { timeout: 60000 });
  const info = JSON.parse(stdout);
  const mp4Seconds = Number(info.format.duration);
  const vod = await run("ffprobe", ["-v", "error", "-show_entries", "format=duration", "-of", "json",
    playback.hls_url], { timeout: 60000 });
  const hlsSeconds = Number(JSON.parse(vod.stdout).format.duration);
  console.log(`# MP4 ${mp4Seconds.toFixed(2)} s, recording ${hlsSeconds.toFixed(2)} s, live on the page `
    + `${state.liveSeconds.toFixed(1)} s; streams ${info.streams.map((s) => s.codec_name).join(", ")}`);
  assert.ok(Math.abs(mp4Seconds - hlsSeconds) <= 1, "the MP4 lasts as long as the recording");
  assert.ok(mp4Seconds <= state.liveSeconds + 1 && mp4Seconds >= state.liveSeconds - 4,
    "the recording lasts as long as the broadcast (less the encoder's start-up)");
  const video = info.streams.find((s) => s.codec_type === "video");
  assert.equal(video.codec_name, "h264");
  assert.equal(Math.min(video.width, video.height), state.topShortSide, "the top rendition");
  const decode = await run("ffmpeg", ["-v", "error", "-i", playback.mp4_url, "-f", "null", "-"], { timeout: 120000 });
  assert.equal(decode.stderr.trim(), "", "ffmpeg decodes the MP4 with no error");

  for (const [name, viewport] of [["desktop", { width: 1280, height: 800 }], ["375", { width: 375, height: 740 }]]) {
    const home = await viewerBrowser.newPage();
    await home.setViewportSize(viewport);
    await home.goto(worker.url);
    await home.waitForFunction((id) => {
      const img = document.querySelector(`#videos li[data-video="${id}"] img`);
      return img && img.complete && img.naturalWidth > 0;
    }, videoId, { timeout: 20000 });
    assert.equal(await home.evaluate(() => document.documentElement.scrollWidth > window.innerWidth), false);
    await home.screenshot({ path: screenshotPath(`golive-home-cards-${name}`), fullPage: true });
    await home.close();
  }
});
