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
//                 the report lists {n, shownAt} (ms since epoch, the frame's expected display time);
//                 the reader is barcode.mjs, shared with play.mjs.
//   timeout       overall deadline in seconds [90]
// WebRTC needs no STUN/TURN on loopback: Chromium is told to gather loopback candidates and to show real
// addresses instead of mDNS names (which sidecast's ICE agent would have to resolve).

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { installReader } from './barcode.mjs';
import { shareStanding } from './standing.mjs';

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
    report.browserGroupsMoved = shareStanding();  // the bench's priority reaches the browser too
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
