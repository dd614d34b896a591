#!/usr/bin/env node
// Plays one HLS URL with hls.js in Debian's headless Chromium and prints ONE JSON report on stdout.
//
// Why this exists: sidecast's promises (captions on time, ads that play, vertical video at the right size)
// are only true if a real player agrees. Tests call this through tests/browser/harness.py (`play_hls`).
//
// Usage:  node play.mjs '{"url": "http://127.0.0.1:8080/master.m3u8", "seconds": 6}'
//         node play.mjs http://127.0.0.1:8080/master.m3u8 --seconds 6 --interstitials true
// Options (JSON keys or --flags):
//   url            HLS playlist (absolute http(s) URL; the harness page is placed on the same origin)
//   seconds        stop after this much observed playback (sum of forward currentTime steps)     [6]
//   timeout        overall deadline in seconds, browser start included                           [90]
//   interstitials  construct Hls with enableInterstitialPlayback: true (false otherwise)          [false]
//   subtitles      false | true (first track) | track index | language or name to select          [false]
//   startLevel     hls.js startLevel (index into levels; -1 = automatic)                           [unset]
//   untilTime      also wait until the primary position reaches this many seconds                 [unset]
//   untilEvent     also wait until this hls.js event (e.g. INTERSTITIALS_PRIMARY_RESUMED) fired   [unset]
//   hlsConfig      extra hls.js config object merged into the constructor's config               [{}]
//   sampleMs       playback sampling period (ms)                                                 [100]
//   barcode        read devkit/barcode.py frame numbers off the presented picture (barcode.mjs): false,
//                  or {"everyMs": N}; the report gets `frames` [{n, shownAt, w, h}] and `unread`  [false]
//   cueMs          text-track activeCues polling period (ms)                                     [50]
//   hlsDebug       false | true | a regular expression: hls.js's own log lines (matching it) go into the
//                  report as `debugLog` [{t, ct, level, line}]                                    [false]
//   network        a regular expression: every request whose URL matches, as the browser made it, goes into
//                  the report as `network` [{url, start, end (wall ms), status | failure}]        [unset]
//   chromium       browser executable  [$SIDECAST_CHROMIUM or /usr/bin/chromium]
//   wsEndpoint     play in a fresh context of this running browser (browser_server.mjs) instead of
//                  starting one                                                                    [unset]
//   hlsPath        hls.js build to load [$SIDECAST_HLS_JS or ../../core/static/hls.min.js, the one the server ships]
//   until          page mode: also wait until this JavaScript expression is true in the page          [unset]
//   page           true: open `url` as a page that plays by itself (e.g. the server's player page) and
//                  report its first <video> and its text instead of driving hls.js               [false]
// Exit status: 0 when a report was produced (even if playback failed: the report says how),
// 2 when the harness itself could not run (the report then has "harnessError").

import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { installReader } from './barcode.mjs';
import { CHROMIUM_ARGS } from './chromium.mjs';
import { shareStanding } from './standing.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..');
const HARNESS_DIR = '/__sidecast_harness__/';

const DEFAULTS = {
  url: null, page: false, until: null, seconds: 6, timeout: 90, interstitials: false, subtitles: false, startLevel: null,
  untilTime: null, untilEvent: null, hlsConfig: {}, barcode: false, sampleMs: 100, cueMs: 50, maxEvents: 20000, network: null,
  chromium: process.env.SIDECAST_CHROMIUM || '/usr/bin/chromium',
  hlsPath: process.env.SIDECAST_HLS_JS || join(REPO, 'core', 'static', 'hls.min.js'),
};

function parseValue(text) {
  try { return JSON.parse(text); } catch { return text; }
}

function parseArgs(argv) {
  const opts = { ...DEFAULTS };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg.startsWith('{')) Object.assign(opts, JSON.parse(arg));
    else if (arg.startsWith('--')) {
      const [key, inline] = arg.slice(2).split(/=(.*)/s);
      const value = inline !== undefined ? inline : argv[++i];
      if (value === undefined) throw new Error(`option --${key} needs a value`);
      opts[key] = parseValue(value);
    } else opts.url = arg;
  }
  if (!opts.url) throw new Error('no HLS url given (pass it first, or as {"url": ...})');
  let u;
  try { u = new URL(opts.url); } catch { throw new Error(`not an absolute URL: ${opts.url}`); }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`url must be http(s): ${opts.url}`);
  return opts;
}

// ---- everything below this function runs inside the page ------------------------------------------
function recorder(opts) {
  const T0 = performance.now();
  const WALL0 = Date.now();  // the wall clock at t = 0: every `t` below is ms after it
  const now = () => Math.round(performance.now() - T0);
  const r3 = (x) => (typeof x === 'number' && isFinite(x) ? Math.round(x * 1000) / 1000 : x);
  const video = document.getElementById('video');
  const sc = window.__sc = {
    events: [], samples: [], cues: [], cuesAdded: [], mediaErrors: [], played: 0, done: false, stopReason: null,
    autoplayError: null, droppedEvents: 0, subtitleChoice: null, fatal: false, untilEventSeen: false,
    // every event counted, even past maxEvents; `media.waiting` after the first `media.playing` is a stall
    eventCounts: {}, started: false,
  };
  const cfg = Object.assign({}, opts.hlsConfig || {});
  cfg.enableInterstitialPlayback = !!opts.interstitials;
  if (opts.startLevel !== null && opts.startLevel !== undefined) cfg.startLevel = opts.startLevel;
  sc.debugLog = [];
  if (opts.hlsDebug) {  // hls.js's own log lines (matching the hlsDebug regular expression) into the report
    const wanted = new RegExp(typeof opts.hlsDebug === 'string' ? opts.hlsDebug : '.');
    const keep = (level) => (...args) => {
      const line = args.map((a) => (typeof a === 'string' ? a : String(a))).join(' ');
      if (wanted.test(line) && sc.debugLog.length < 20000) sc.debugLog.push({ t: now(), ct: r3(video.currentTime), level, line: line.slice(0, 400) });
    };
    cfg.debug = { trace: keep('trace'), debug: keep('debug'), log: keep('log'), info: keep('info'), warn: keep('warn'), error: keep('error') };
  }
  const hls = new Hls(cfg);
  window.__hls = hls;
  const names = {};
  for (const [key, value] of Object.entries(Hls.Events)) names[value] = key;

  const prim = (v) => (v === null || ['number', 'boolean'].includes(typeof v) ? r3(v)
    : typeof v === 'string' ? (v.length > 300 ? v.slice(0, 300) + '…' : v) : undefined);
  const asset = (a) => a && {
    id: a.identifier, uri: a.uri, duration: r3(a.duration), startOffset: r3(a.startOffset),
    timelineStart: r3(a.timelineStart), error: a.error ? String(a.error.message || a.error) : null,
  };
  const ievent = (e) => {
    if (!e || typeof e !== 'object') return e;
    const out = { id: e.identifier };
    for (const k of ['startTime', 'duration', 'resumeTime', 'resumeOffset', 'playoutLimit', 'hasPlayed',
      'appendInPlace', 'assetUrl', 'assetListUrl']) {
      try { out[k] = prim(e[k]); } catch { /* getters may throw on half-built events */ }
    }
    try { out.cue = e.cue ? { pre: !!e.cue.pre, post: !!e.cue.post, once: !!e.cue.once } : null; } catch { }
    try { out.assets = (e.assetList || []).map(asset); } catch { }
    if (e.error) out.error = String(e.error.message || e.error);
    return out;
  };
  const frag = (f) => f && { sn: f.sn, type: f.type, level: f.level, start: r3(f.start),
    duration: r3(f.duration), url: prim(f.relurl || f.url) };
  const track = (t) => t && { id: t.id, name: t.name, lang: t.lang, groupId: t.groupId, default: !!t.default,
    autoselect: !!t.autoselect, forced: !!t.forced, url: prim(t.url) };
  const level = (l, i) => ({ index: i, width: l.width, height: l.height, bitrate: l.bitrate, name: l.name,
    videoCodec: l.videoCodec, audioCodec: l.audioCodec, frameRate: l.frameRate, url: prim(l.url) });

  function summarize(name, data) {
    if (!data || typeof data !== 'object') return {};
    const out = {};
    try {
      for (const k of Object.keys(data)) {
        const v = prim(data[k]);
        if (v !== undefined) out[k] = v;
      }
      if (data.error) out.error = String(data.error.message || data.error);
      if (data.frag) out.frag = frag(data.frag);
      if (data.part) {
        out.part = { index: data.part.index, start: r3(data.part.start), duration: r3(data.part.duration),
          url: prim(data.part.relurl || data.part.url) };
        const l = data.part.stats && data.part.stats.loading;
        if (l && l.start) out.part.loading = { start: r3(l.start - T0), end: r3(l.end - T0) };
      }
      if (data.event && typeof data.event === 'object') out.event = ievent(data.event);
      if (data.asset) out.asset = asset(data.asset);
      if (Array.isArray(data.events)) out.events = data.events.map(ievent);
      if (Array.isArray(data.schedule)) {
        out.schedule = data.schedule.map((s) => ({ start: r3(s.start), end: r3(s.end),
          event: s.event ? s.event.identifier : null,
          playout: s.playout ? { start: r3(s.playout.start), end: r3(s.playout.end) } : null }));
      }
      if (data.durations) out.durations = data.durations;
      if (data.removedIds) out.removedIds = data.removedIds;
      if (data.assetListResponse) {
        const assets = data.assetListResponse.ASSETS || [];
        out.assetListResponse = { assets: assets.map((a) => ({ uri: a.URI, duration: a.DURATION })) };
      }
      if (Array.isArray(data.subtitleTracks)) out.subtitleTracks = data.subtitleTracks.map(track);
      if (Array.isArray(data.audioTracks)) out.audioTracks = data.audioTracks.map(track);
      if (Array.isArray(data.levels)) out.levels = data.levels.map(level);
      if (data.details && typeof data.details === 'object') {
        const d = data.details;
        out.details = { live: d.live, totalduration: r3(d.totalduration), startSN: d.startSN, endSN: d.endSN,
          targetduration: d.targetduration, fragments: (d.fragments || []).length,
          dateRanges: Object.keys(d.dateRanges || {}).length };
        // low latency: where the playlist's live edge was, and whether this load moved it (a player that
        // skips parts does so from these)
        if (d.partList) {
          Object.assign(out.details, { lastPartSn: d.lastPartSn, lastPartIndex: d.lastPartIndex,
            partEnd: r3(d.partEnd), fragmentEnd: r3(d.fragmentEnd), fragmentStart: r3(d.fragmentStart),
            updated: d.updated, advanced: d.advanced, misses: d.misses, partHoldBack: d.partHoldBack,
            parts: d.partList.length });
        }
      }
      if (data.deliveryDirectives && typeof data.deliveryDirectives === 'object') {
        const dd = data.deliveryDirectives;
        out.deliveryDirectives = { msn: dd.msn, part: dd.part, skip: dd.skip };
      }
      if (data.stats && data.stats.loading) {  // performance.now() times of the request, its first byte, its end
        const l = data.stats.loading;
        out.loading = { start: r3(l.start - T0), first: r3(l.first - T0), end: r3(l.end - T0) };
      }
      if (data.response && typeof data.response === 'object') out.response = { code: data.response.code, text: prim(data.response.text) };
      if (data.context && data.context.url) out.url = prim(data.context.url);
      if (name === 'ERROR') out.fatal = !!data.fatal;
    } catch (e) {
      out.summaryError = String(e && e.message || e);
    }
    return out;
  }

  function record(name, type, data) {
    if (name === 'media.playing') sc.started = true;
    const key = name === 'ERROR' ? 'ERROR:' + data.details : name + (sc.started ? '' : ':beforePlaying');
    sc.eventCounts[key] = (sc.eventCounts[key] || 0) + 1;
    if (sc.events.length >= opts.maxEvents) { sc.droppedEvents++; return; }
    sc.events.push({ name, type, t: now(), ct: r3(video.currentTime), data });
    if (name === 'ERROR' && data.fatal) sc.fatal = true;
    if (opts.untilEvent && (name === opts.untilEvent || type === opts.untilEvent)) sc.untilEventSeen = true;
  }

  for (const type of Object.values(Hls.Events)) {
    hls.on(type, (ev, data) => record(names[ev] || ev, ev, summarize(names[ev], data)));
  }
  for (const type of ['loadedmetadata', 'playing', 'waiting', 'seeking', 'seeked', 'ended', 'error',
    'resize', 'pause']) {
    video.addEventListener(type, () => {
      const d = { width: video.videoWidth, height: video.videoHeight };
      if (type === 'error' && video.error) {
        d.code = video.error.code; d.message = video.error.message;
        sc.mediaErrors.push({ t: now(), code: video.error.code, message: video.error.message });
      }
      record('media.' + type, 'media', d);
    });
  }

  // Subtitles: select the wanted track once hls.js knows the tracks.
  function chooseSubtitles() {
    if (opts.subtitles === false || opts.subtitles === null || sc.subtitleChoice !== null) return;
    const tracks = hls.subtitleTracks || [];
    if (!tracks.length) return;
    let idx = -1;
    if (opts.subtitles === true) idx = 0;
    else if (typeof opts.subtitles === 'number') idx = opts.subtitles;
    else idx = tracks.findIndex((t) => t.lang === opts.subtitles || t.name === opts.subtitles);
    sc.subtitleChoice = idx;
    if (idx < 0 || idx >= tracks.length) return;
    hls.subtitleDisplay = true;
    hls.subtitleTrack = idx;
  }
  // hls.js picks its own default track right after announcing the tracks; choose after that.
  hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, () => setTimeout(chooseSubtitles, 0));
  hls.on(Hls.Events.MANIFEST_PARSED, () => {
    video.play().catch((e) => { sc.autoplayError = String(e.message || e); });
  });

  // Captions: every cue that became active, with the playhead at the moment it was seen; and every cue
  // that reached a text track (cuesAdded), with the playhead when it arrived: a cue added after its end
  // had already played can never be shown, which tells "arrived late" from "never arrived".
  const seen = new Map();
  const added = new Set();
  function pollCues() {
    const tracks = video.textTracks;
    for (let i = 0; i < tracks.length; i++) {
      const tt = tracks[i];
      if (tt.cues) {
        for (let j = 0; j < tt.cues.length; j++) {
          const cue = tt.cues[j];
          const key = i + '|' + cue.startTime + '|' + cue.endTime + '|' + cue.text;
          if (added.has(key)) continue;
          added.add(key);
          sc.cuesAdded.push({ track: i, text: cue.text, start: r3(cue.startTime), end: r3(cue.endTime),
            addedAt: r3(video.currentTime), t: now() });
        }
      }
      if (tt.mode === 'disabled' || !tt.activeCues) continue;
      for (let j = 0; j < tt.activeCues.length; j++) {
        const cue = tt.activeCues[j];
        const key = i + '|' + cue.startTime + '|' + cue.endTime + '|' + cue.text;
        const ct = r3(video.currentTime);
        const known = seen.get(key);
        if (known) { known.lastSeenAt = ct; continue; }
        const entry = { track: i, label: tt.label, language: tt.language, kind: tt.kind, text: cue.text,
          start: r3(cue.startTime), end: r3(cue.endTime), seenAt: ct, lastSeenAt: ct, t: now() };
        seen.set(key, entry);
        sc.cues.push(entry);
      }
    }
  }
  video.textTracks.addEventListener('addtrack', (e) => e.track.addEventListener('cuechange', pollCues));
  const cueTimer = setInterval(pollCues, opts.cueMs);

  // Playback: sample the playhead, count forward progress, decide when to stop.
  let last = null;
  let endedSince = null;
  function primaryPosition() {
    const im = opts.interstitials ? hls.interstitialsManager : null;
    return im && im.primary ? im.primary.currentTime : video.currentTime;
  }
  function stop(reason) {
    if (sc.done) return;
    sc.stopReason = reason;
    sc.done = true;
    clearInterval(sampleTimer);
    clearInterval(cueTimer);
    pollCues();
    const lastSample = sc.samples[sc.samples.length - 1];
    if (!lastSample || lastSample.t !== now()) sample();
  }
  sc.stop = stop;
  function sample() {
    const t = now();
    const ct = video.currentTime;
    const b = video.buffered;
    const s = { t, ct: r3(ct), paused: video.paused, ended: video.ended, rs: video.readyState,
      bufferedEnd: b.length ? r3(b.end(b.length - 1)) : null, w: video.videoWidth, h: video.videoHeight };
    // live: hls.js's own view of the distance to the live edge, and the wall clock of the playhead
    try { s.latency = r3(hls.latency); } catch { }
    try { s.playingDate = hls.playingDate ? hls.playingDate.getTime() : null; s.wall = Date.now(); } catch { }
    const im = opts.interstitials ? hls.interstitialsManager : null;
    if (im) {
      s.primary = r3(im.primary ? im.primary.currentTime : null);
      s.integrated = r3(im.integrated ? im.integrated.currentTime : null);
      s.playingAd = !!(im.playingItem && im.playingItem.event);
      s.adId = im.playingItem && im.playingItem.event ? im.playingItem.event.identifier : null;
      s.assetId = im.playingAsset ? im.playingAsset.identifier : null;
    }
    if (last) {
      const step = ct - last.ct;
      const allowed = ((t - last.t) / 1000) * 1.5 + 0.25;  // real playback, not a seek or a restart
      if (step > 0 && step <= allowed) sc.played += step;
    }
    last = { t, ct };
    sc.samples.push(s);
    return s;
  }
  function tick() {
    const s = sample();
    if (sc.fatal) return stop('fatal');
    if (s.ended) {
      endedSince = endedSince === null ? s.t : endedSince;
      // With interstitials a post-roll may still follow the primary's end: give it a second.
      if (!opts.interstitials || s.t - endedSince >= 1000) return stop('ended');
    } else endedSince = null;
    const wantsTime = opts.untilTime === null || opts.untilTime === undefined || primaryPosition() >= opts.untilTime;
    const wantsEvent = !opts.untilEvent || sc.untilEventSeen;
    if (sc.played >= opts.seconds && wantsTime && wantsEvent) stop('played');
  }
  const sampleTimer = setInterval(tick, opts.sampleMs);

  window.__scReport = () => {
    const im = opts.interstitials ? hls.interstitialsManager : null;
    const tts = [];
    for (let i = 0; i < video.textTracks.length; i++) {
      const tt = video.textTracks[i];
      tts.push({ index: i, kind: tt.kind, label: tt.label, language: tt.language, mode: tt.mode,
        cues: tt.cues ? tt.cues.length : null });
    }
    return {
      hlsVersion: Hls.version, stopReason: sc.stopReason, played: r3(sc.played), wallMs: now(), wall0: WALL0,
      events: sc.events, droppedEvents: sc.droppedEvents, eventCounts: sc.eventCounts, samples: sc.samples, cues: sc.cues, cuesAdded: sc.cuesAdded, debugLog: sc.debugLog,
      levels: (hls.levels || []).map(level), currentLevel: hls.currentLevel,
      audioTracks: (hls.audioTracks || []).map(track), subtitleTracks: (hls.subtitleTracks || []).map(track),
      subtitleTrack: hls.subtitleTrack, subtitleChoice: sc.subtitleChoice, textTracks: tts,
      video: { width: video.videoWidth, height: video.videoHeight, currentTime: r3(video.currentTime),
        duration: isFinite(video.duration) ? r3(video.duration) : null, paused: video.paused,
        ended: video.ended, errors: sc.mediaErrors },
      autoplayError: sc.autoplayError,
      interstitials: im ? {
        events: (im.events || []).map(ievent),
        schedule: (im.schedule || []).map((s) => ({ start: r3(s.start), end: r3(s.end),
          event: s.event ? s.event.identifier : null })),
        primary: im.primary ? { currentTime: r3(im.primary.currentTime), duration: r3(im.primary.duration) } : null,
        integrated: im.integrated ? { currentTime: r3(im.integrated.currentTime), duration: r3(im.integrated.duration) } : null,
      } : null,
    };
  };

  hls.loadSource(opts.url);
  hls.attachMedia(video);
}
// ---- end of page code -----------------------------------------------------------------------------

const PAGE_HTML = `<!doctype html><html><head><meta charset="utf-8"><title>sidecast harness</title></head>
<body style="margin:0;background:#000"><video id="video" muted autoplay playsinline width="640" height="360"></video>
<script src="hls.min.js"></script></body></html>`;

async function run(opts, report) {
  const started = Date.now();
  const deadline = started + opts.timeout * 1000;
  // Time kept back from the deadline to collect the report and close the browser.
  const COLLECT_RESERVE_MS = Math.min(4000, opts.timeout * 150);
  const remaining = (reserve = 0) => Math.max(1000, deadline - Date.now() - reserve);
  if (!existsSync(opts.chromium)) {
    throw new Error(`Chromium not found at ${opts.chromium}: install Debian's chromium (./dev.sh install) or set SIDECAST_CHROMIUM`);
  }
  if (!existsSync(opts.hlsPath)) throw new Error(`hls.js not found at ${opts.hlsPath}`);
  const { chromium } = await import('playwright-core').catch(() => {
    throw new Error(`playwright-core is not installed in ${HERE}/node_modules: run ./dev.sh install`);
  });
  const profile = opts.wsEndpoint ? null : mkdtempSync(join(tmpdir(), 'sidecast-chromium-'));
  let context = null;
  let shared = null;
  try {
    if (opts.wsEndpoint) {  // a browser this test worker shares (browser_server.mjs): a fresh context of our own
      shared = await chromium.connect(opts.wsEndpoint, { timeout: remaining(COLLECT_RESERVE_MS) });
      context = await shared.newContext();
      report.browserGroupsMoved = 0;
    } else {
      context = await chromium.launchPersistentContext(profile, {
        executablePath: opts.chromium, headless: true, args: CHROMIUM_ARGS, timeout: remaining(COLLECT_RESERVE_MS),
      });
      report.browserGroupsMoved = shareStanding();  // the bench's priority reaches the browser too
    }
    report.browserStartMs = Date.now() - started;
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (msg) => {
      if ((msg.type() === 'error' || msg.type() === 'warning') && report.console.length < 100) {
        report.console.push({ type: msg.type(), text: msg.text().slice(0, 500) });
      }
    });
    page.on('pageerror', (err) => report.pageErrors.push(String(err.message || err).slice(0, 500)));
    if (opts.network) {  // the requests whose URL matches, as the browser made them: what a server's access log says
      const wanted = new RegExp(opts.network);
      const sent = new Map();
      report.network = [];
      const done = (req, failure, end) => {
        const entry = sent.get(req);
        if (!entry) return;
        sent.delete(req);
        entry.end = end;
        if (failure) entry.failure = failure;
        report.network.push(entry);
      };
      page.on('request', (req) => {
        if (wanted.test(req.url()) && report.network.length < 20000) sent.set(req, { url: req.url(), start: Date.now() });
      });
      page.on('requestfinished', async (req) => {
        const end = Date.now();
        const entry = sent.get(req);
        if (entry) {
          try { entry.status = (await req.response()).status(); } catch { }
        }
        done(req, null, end);
      });
      page.on('requestfailed', (req) => done(req, (req.failure() || {}).errorText || 'failed', Date.now()));
    }
    let crashed = false;
    page.on('crash', () => { crashed = true; });
    if (opts.page) return await inspectPage(page, opts, remaining, report, () => crashed);
    const origin = new URL(opts.url).origin;
    const hlsSource = readFileSync(opts.hlsPath);
    await page.route(origin + HARNESS_DIR + 'index.html',
      (route) => route.fulfill({ status: 200, contentType: 'text/html', body: PAGE_HTML }));
    await page.route(origin + HARNESS_DIR + 'hls.min.js',
      (route) => route.fulfill({ status: 200, contentType: 'text/javascript', body: hlsSource }));
    await page.goto(origin + HARNESS_DIR + 'index.html', { timeout: remaining(COLLECT_RESERVE_MS) });
    report.userAgent = await page.evaluate(() => navigator.userAgent);
    const supported = await page.evaluate(() => !!(window.Hls && Hls.isSupported()));
    if (!supported) throw new Error('hls.js reports no MSE support in this Chromium');
    await page.evaluate(recorder, opts);
    if (opts.barcode) await page.evaluate(installReader, opts.barcode);
    try {
      await page.waitForFunction(() => window.__sc.done, null,
        { timeout: remaining(COLLECT_RESERVE_MS), polling: 100 });
    } catch (err) {
      if (crashed) throw new Error('the Chromium page crashed during playback');
      if (err.name !== 'TimeoutError') throw err;
      await page.evaluate(() => window.__sc.stop('timeout'));
    }
    Object.assign(report, await page.evaluate(() => window.__scReport()));
    if (opts.barcode) {
      Object.assign(report, await page.evaluate(() => ({ frames: window.__frames, unread: window.__unread })));
    }
  } finally {
    if (context) await context.close().catch(() => {});
    if (shared) await shared.close().catch(() => {});  // disconnects; the shared browser stays
    if (profile) rmSync(profile, { recursive: true, force: true });
  }
}

// Page mode: open a page that plays video by itself (the server's player page) and report what the
// first <video> did and what the page says, once it has played `seconds` or at the deadline.
async function inspectPage(page, opts, remaining, report, crashed) {
  const COLLECT_RESERVE_MS = Math.min(4000, opts.timeout * 150);
  await page.goto(opts.url, { timeout: remaining(COLLECT_RESERVE_MS) });
  report.stopReason = 'played';
  try {
    await page.waitForFunction((s) => {
      const v = document.querySelector('video');
      return !!v && (v.currentTime >= s || v.ended);
    }, opts.seconds, { timeout: remaining(COLLECT_RESERVE_MS), polling: 100 });
    // `until`: a JavaScript expression that must also become true (evaluated by the driver, not the page)
    // (made a function here: Playwright runs functions through the debugger protocol, which the page's
    // Content-Security-Policy does not block, while a string would be eval'ed by the page)
    if (opts.until) {
      const until = new Function(`return (${opts.until});`);  // eslint-disable-line no-new-func
      await page.waitForFunction(until, null, { timeout: remaining(COLLECT_RESERVE_MS), polling: 100 });
    }
  } catch (err) {
    if (crashed()) throw new Error('the Chromium page crashed during playback');
    if (err.name !== 'TimeoutError') throw err;
    report.stopReason = 'timeout';
  }
  Object.assign(report, await page.evaluate(() => {
    const v = document.querySelector('video');
    return {
      hlsVersion: window.Hls ? Hls.version : null,
      pageText: document.body.innerText.slice(0, 5000),
      video: v ? { width: v.videoWidth, height: v.videoHeight, currentTime: v.currentTime, paused: v.paused,
        ended: v.ended, errors: v.error ? [{ code: v.error.code, message: v.error.message }] : [] } : null,
    };
  }));
}

async function main() {
  const report = { url: null, options: null, harnessError: null, console: [], pageErrors: [] };
  let code = 0;
  try {
    const opts = parseArgs(process.argv.slice(2));
    report.url = opts.url;
    report.options = opts;
    await run(opts, report);
  } catch (err) {
    report.harnessError = String(err && err.message || err).split('\n')[0];
    code = 2;
  }
  process.stdout.write(JSON.stringify(report) + '\n', () => process.exit(code));
}

main();
