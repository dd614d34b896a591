#!/usr/bin/env node
// Drives sidecast's WebRTC pages in Debian's headless Chromium and prints ONE JSON report on stdout.
//
// Why: WHIP ingest and the WHEP preview are only proven by a real browser publishing and playing. Tests
// call this through tests/browser/webrtc.py.
//
// Usage: node webrtc.mjs '{"pages": [{"role": "publish", "url": "..."}, {"role": "preview", "url": "..."}],
//                          "seconds": 8}'
//   role publish: a page that sets window.sidecastPublish (core/static/publish.html); after `seconds` the
//                 harness calls window.sidecastStop() (the page's DELETE) and reports the page's state.
//   role preview: a page that sets window.sidecastPreview (core/static/preview.html); every frame the
//                 <video> presents is drawn to a canvas and its barcode (devkit/webrtc.py's layout) read:
//                 the report lists {n, shownAt} (ms since epoch, the frame's expected display time).
//   timeout       overall deadline in seconds [90]
// WebRTC needs no STUN/TURN on loopback: Chromium is told to gather loopback candidates and to show real
// addresses instead of mDNS names (which sidecast's ICE agent would have to resolve).

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  // WebRTC on loopback, with real host addresses
  '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
  // several pages at once: none of them may be throttled as a background tab
  '--disable-background-timer-throttling', '--disable-renderer-backgrounding',
  '--disable-backgrounding-occluded-windows'];

const opts = { pages: [], seconds: 8, timeout: 90, chromium: process.env.SIDECAST_CHROMIUM || '/usr/bin/chromium',
  ...JSON.parse(process.argv[2] || '{}') };

// Injected into preview pages: reads the barcode of every presented frame (22 bars across the top quarter:
// white guard, 16 bits, 4 check bits = popcount & 15, black guard).
function installReader() {
  const video = document.querySelector('video');
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const out = window.__frames = [];
  window.__unread = 0;
  function read() {
    const w = video.videoWidth, h = video.videoHeight;
    if (!w || !h) return null;
    canvas.width = w; canvas.height = h;
    ctx.drawImage(video, 0, 0, w, h);
    const y0 = Math.floor(h / 16), y1 = Math.max(y0 + 1, Math.floor(h * 3 / 16));
    const data = ctx.getImageData(0, y0, w, y1 - y0).data;
    const bits = [];
    for (let i = 0; i < 22; i++) {
      const a = Math.floor(w * (i + 0.3) / 22), b = Math.max(a + 1, Math.floor(w * (i + 0.7) / 22));
      let sum = 0, count = 0;
      for (let y = 0; y < y1 - y0; y += 2) for (let x = a; x < b; x += 2) {
        const k = (y * w + x) * 4; sum += 0.299 * data[k] + 0.587 * data[k + 1] + 0.114 * data[k + 2]; count++;
      }
      bits.push(sum / count > 128 ? 1 : 0);
    }
    if (bits[0] !== 1 || bits[21] !== 0) return null;
    let n = 0; for (let i = 1; i <= 16; i++) n = n * 2 + bits[i];
    let check = 0; for (let i = 17; i <= 20; i++) check = check * 2 + bits[i];
    let pop = 0; for (let i = 0; i < 16; i++) pop += (n >> i) & 1;
    return (pop & 15) === check ? n : null;
  }
  function onFrame(now, meta) {
    const n = read();
    const shownAt = performance.timeOrigin + (meta.expectedDisplayTime || now);
    if (n === null) window.__unread++;
    else if (!out.length || out[out.length - 1].n !== n) out.push({ n, shownAt, w: meta.width, h: meta.height });
    video.requestVideoFrameCallback(onFrame);
  }
  video.requestVideoFrameCallback(onFrame);
}

async function stats(page) {
  return page.evaluate(async () => {
    const s = window.sidecastPreview;
    const pc = s && s.pc;
    if (!pc) return null;
    const out = {};
    (await pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') {
        out.framesDecoded = r.framesDecoded; out.framesDropped = r.framesDropped;
        out.jitterBufferDelayMs = r.jitterBufferEmittedCount ? 1000 * r.jitterBufferDelay / r.jitterBufferEmittedCount : null;
        out.freezeCount = r.freezeCount; out.codecId = r.codecId;
      }
      if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        out.audioPackets = r.packetsReceived; out.audioSamples = r.totalSamplesReceived;
        out.audioLevel = r.audioLevel;
      }
      if (r.type === 'codec' && r.mimeType) out.codecs = (out.codecs || []).concat(r.mimeType);
    });
    return out;
  });
}

async function main() {
  if (!existsSync(opts.chromium)) throw new Error(`Chromium not found at ${opts.chromium}`);
  const { chromium } = await import('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'sidecast-chromium-'));
  const report = { pages: [], browserStartMs: null };
  const started = Date.now();
  let context = null;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: opts.chromium, headless: true, args: CHROMIUM_ARGS, timeout: opts.timeout * 1000,
    });
    report.browserStartMs = Date.now() - started;
    const pages = [];
    for (const spec of opts.pages) {
      const page = await context.newPage();
      const entry = { role: spec.role, url: spec.url, console: [], pageErrors: [] };
      page.on('console', (m) => { if (entry.console.length < 50) entry.console.push(`${m.type()}: ${m.text().slice(0, 300)}`); });
      page.on('pageerror', (e) => entry.pageErrors.push(String(e.message || e).slice(0, 300)));
      await page.goto(spec.url, { timeout: opts.timeout * 1000 });
      if (spec.role === 'preview') {
        await page.waitForFunction(() => window.sidecastPreview && window.sidecastPreview.state !== 'connecting',
          null, { timeout: 30000 }).catch(() => {});
        await page.evaluate(installReader);
      } else {
        await page.waitForFunction(() => window.sidecastPublish && ['publishing', 'connected', 'failed']
          .includes(window.sidecastPublish.state), null, { timeout: 30000 }).catch(() => {});
      }
      entry.readyAtMs = Date.now();
      pages.push({ page, spec, entry });
      report.pages.push(entry);
    }
    const endAt = Date.now() + opts.seconds * 1000;
    while (Date.now() < endAt) await new Promise((r) => setTimeout(r, 200));
    for (const { page, spec, entry } of pages) {
      if (spec.role === 'preview') {
        entry.stats = await page.evaluate(async () => {
          const v = document.querySelector('video');
          return { width: v.videoWidth, height: v.videoHeight, currentTime: v.currentTime, paused: v.paused };
        });
        entry.frames = await page.evaluate(() => window.__frames || []);
        entry.unread = await page.evaluate(() => window.__unread || 0);
        entry.state = await page.evaluate(() => ({ state: window.sidecastPreview.state,
          error: window.sidecastPreview.error, cues: window.sidecastPreview.cues,
          session: window.sidecastPreview.session }));
        entry.rtc = await stats(page);
        entry.deleteStatus = await page.evaluate(async () => {
          const s = window.sidecastPreview; return s && s.stop ? await s.stop() : null; });
      }
    }
    for (const { page, spec, entry } of pages) {
      if (spec.role === 'publish') {
        await page.evaluate(() => window.sidecastStop && window.sidecastStop()).catch(() => {});
        entry.state = await page.evaluate(() => ({ ...window.sidecastPublish }));
      }
    }
  } finally {
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
  return report;
}

main().then((report) => { process.stdout.write(JSON.stringify(report) + '\n'); },
  (err) => { process.stdout.write(JSON.stringify({ harnessError: String(err.stack || err) }) + '\n'); process.exit(2); });
