// The in-page reader of devkit/barcode.py's frame-number barcodes, shared by webrtc.mjs (WHEP preview) and
// play.mjs (hls.js, `barcode` option). Pass it to page.evaluate: it runs inside the page.
//
// Every frame the first <video> presents (requestVideoFrameCallback) is drawn to a canvas and its barcode
// read: 22 bars across the top quarter (white guard, 16 bits, 4 check bits = popcount & 15, black guard).
// window.__frames gets {n, shownAt, w, h} (shownAt: ms since epoch, the frame's expected display time) each
// time the number changes; window.__unread counts frames whose bars did not check out.
// opts.everyMs > 0 reads at most one frame per that many ms (a 720p picture read 30 times a second costs a
// loaded 2-core machine more than the measurement needs); 0 reads every frame.
export function installReader(opts) {
  const everyMs = (opts && opts.everyMs) || 0;
  const video = document.querySelector('video');
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const out = window.__frames = [];
  window.__unread = 0;
  let lastRead = -Infinity;
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
    if (now - lastRead >= everyMs) {
      lastRead = now;
      const n = read();
      const shownAt = performance.timeOrigin + (meta.expectedDisplayTime || now);
      if (n === null) window.__unread++;
      else if (!out.length || out[out.length - 1].n !== n) out.push({ n, shownAt, w: meta.width, h: meta.height });
    }
    video.requestVideoFrameCallback(onFrame);
  }
  video.requestVideoFrameCallback(onFrame);
}
