// sidecast server dashboard: polls /v1 every 2 s and renders; plays a stream with the vendored hls.js.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  const frag = new URLSearchParams(location.hash.slice(1));
  if (frag.get("key")) sessionStorage.setItem("sidecast-key", frag.get("key"));
  let key = sessionStorage.getItem("sidecast-key") || "";
  let hls = null, playing = null, rendition = frag.get("rendition") === "vertical" ? "vertical" : "master";
  const seen = [];

  function text(el, t) { el.textContent = t == null ? "" : String(t); return el; }
  function cell(tr, t, cls) { const td = document.createElement("td"); text(td, t); if (cls) td.className = cls; tr.appendChild(td); return td; }
  function when(ts) { return ts ? new Date(ts * 1000).toLocaleTimeString() : "–"; }
  function mb(n) { return n == null ? "–" : (n / 1048576).toFixed(1) + " MB"; }
  function showError(t) { text($("error"), t); }

  async function api(method, path, body) {
    const r = await fetch("/v1" + path, {
      method, headers: Object.assign({ "Authorization": "Bearer " + key },
        body ? { "Content-Type": "application/json" } : {}),
      body: body ? JSON.stringify(body) : undefined });
    if (r.status === 401) { $("login").hidden = false; throw new Error("the API key was refused"); }
    const data = r.status === 204 ? null : await r.json();
    if (!r.ok) throw new Error((data && data.detail) || ("HTTP " + r.status));
    return data;
  }

  let refreshing = false, again = false;

  async function refresh() {
    if (!key) { $("login").hidden = false; return; }
    // One refresh at a time: under load a refresh can outlast the 2 s tick, and two interleaved ones
    // would each rebuild the tables from answers of different moments. A refresh asked for meanwhile (a
    // button's) runs once the current one ends.
    if (refreshing) { again = true; return; }
    refreshing = true;
    try {
      const info = await api("GET", "/server");
      text($("server"), info.version + " · " + info.storage + (info.disk_full ? " · STORAGE FULL" : ""));
      const list = await api("GET", "/streams?limit=1000");
      // Every status is fetched before the table changes, and the rows are swapped in one step: a table
      // emptied first and filled one awaited status at a time showed no streams for as long as those
      // requests took (a whole refresh under load), to a viewer and to the browser test that read it.
      const statuses = await Promise.all(list.streams.map((s) =>
        api("GET", "/streams/" + encodeURIComponent(s.id) + "/status").catch(() => ({ state: "?" }))));
      const rows = [];
      list.streams.forEach((s, i) => {
        const st = statuses[i];
        const tr = document.createElement("tr");
        tr.dataset.stream = s.id;
        cell(tr, s.id + (s.name ? " (" + s.name + ")" : ""));
        cell(tr, s.ingest + (s.source ? " " + s.source : ""));
        cell(tr, st.state, "state " + st.state);
        cell(tr, (st.input_bitrate ? (st.input_bitrate / 1000).toFixed(0) + " kb/s " : "") +
          (st.input_fps != null ? st.input_fps + " fps" : ""));
        cell(tr, st.speed != null ? st.speed + "×" : "–");
        cell(tr, st.segments);
        cell(tr, (st.sidecars || []).map((c) => c.name + (c.live ? "" : " (down)") +
          (c.lag != null ? " lag " + c.lag + "s" : "")).join(", "));
        cell(tr, mb(st.storage_bytes));
        cell(tr, s.key && s.key.prefix ? s.key.prefix : (s.ingest === "push" ? "none" : "–"), "mono");
        cell(tr, st.last_error, "err");
        const actions = cell(tr, "");
        const add = (label, fn) => { const b = document.createElement("button"); b.textContent = label;
          b.onclick = () => fn().then(refresh).catch((e) => showError(e.message)); actions.appendChild(b); };
        add("play", async () => play(s.id));
        add(s.enabled ? "stop" : "start", () => api("POST", "/streams/" + s.id + (s.enabled ? "/stop" : "/start")));
        if (s.ingest === "push") add("new key", async () => {
          const k = await api("POST", "/streams/" + s.id + "/key");
          text($("secret"), "new stream key for " + s.id + " (shown once): " + k.key + "  · RTMP " + k.publish.rtmp);
        });
        rows.push(tr);
        streams[s.id] = s;
      });
      $("streams").querySelector("tbody").replaceChildren(...rows);
      try {
        const keys = await api("GET", "/api-keys");
        const kb = $("apikeys").querySelector("tbody"); kb.textContent = "";
        for (const k of keys) { const tr = document.createElement("tr"); cell(tr, k.name); cell(tr, k.prefix, "mono");
          cell(tr, k.scopes.join(" ")); cell(tr, when(k.last_used_at)); kb.appendChild(tr); }
      } catch (e) { /* a key without the admin scope */ }
      try {
        const log = await api("GET", "/webhooks/deliveries?limit=20");
        const hb = $("hooks").querySelector("tbody"); hb.textContent = "";
        for (const d of log) { const tr = document.createElement("tr"); cell(tr, when(d.created_at)); cell(tr, d.type);
          cell(tr, d.stream_id); cell(tr, d.status); cell(tr, d.attempts); cell(tr, d.last_status || d.last_error || "");
          hb.appendChild(tr); }
      } catch (e) { /* a key without the webhooks scope */ }
      showError("");
      if (frag.get("play") && !playing && streams[frag.get("play")]) play(frag.get("play"));
    } catch (e) { showError(e.message); } finally {
      refreshing = false;
      if (again) { again = false; refresh(); }
    }
  }

  const streams = {};

  async function play(id) {
    const s = streams[id];
    let base = s.urls.hls.replace(/master\.m3u8$/, "");
    if (s.settings.playback_protection) {
      const tok = await api("POST", "/streams/" + id + "/playback-token", { ttl: 3600 });
      base = tok.urls.hls.replace(/master\.m3u8$/, "");
    }
    playing = { id, base };
    start();
  }

  function start() {
    if (!playing) return;
    const src = playing.base + (rendition === "vertical" ? "vertical.m3u8" : "master.m3u8");
    text($("playing"), playing.id + " · " + rendition);
    const video = $("video");
    if (hls) hls.destroy();
    hls = new Hls({ enableInterstitialPlayback: false });
    window.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch((e) => showError("autoplay: " + e.message)));
    hls.on(Hls.Events.SUBTITLE_TRACKS_UPDATED, (_e, data) => {
      if ($("cc").checked && data.subtitleTracks.length > 0) { hls.subtitleDisplay = true; hls.subtitleTrack = 0; }
    });
    hls.on(Hls.Events.ERROR, (_e, d) => { if (d.fatal) showError("player: " + d.type + "/" + d.details); });
    hls.loadSource(src);
    hls.attachMedia(video);
  }

  function watchCaptions() {
    const video = $("video");
    for (const track of video.textTracks) {
      if (track.mode === "disabled") continue;
      for (const cue of Array.from(track.activeCues || [])) {
        const t = cue.text.replace(/\s+/g, " ").trim();
        if (t && seen[seen.length - 1] !== t) { seen.push(t); if (seen.length > 8) seen.shift(); }
      }
    }
    text($("captions"), seen.join("\n"));
    text($("pstatus"), (video.videoWidth ? video.videoWidth + "x" + video.videoHeight : "–") +
      " · t=" + video.currentTime.toFixed(1) + "s");
  }

  for (const b of document.querySelectorAll("button[data-r]")) b.onclick = () => { rendition = b.dataset.r; start(); };
  $("cc").onchange = () => { if (hls) hls.subtitleTrack = $("cc").checked ? 0 : -1; };
  $("keysave").onclick = () => { key = $("keyinput").value.trim(); sessionStorage.setItem("sidecast-key", key);
    $("login").hidden = true; refresh(); };
  $("create").onclick = () => {
    const body = { ingest: $("newingest").value, options: {} };
    if ($("newid").value) body.id = $("newid").value;
    if (body.ingest === "pull") body.source = $("newsource").value;
    if ($("newladder").value) body.options.ladder = $("newladder").value;
    api("POST", "/streams", body).then((r) => {
      if (r.key) text($("secret"), "stream key for " + r.stream.id + " (shown once): " + r.key.key + "  · RTMP " + r.key.publish.rtmp);
    }).then(refresh).catch((e) => showError(e.message));
  };
  if (location.hash) history.replaceState(null, "", location.pathname);  // the key leaves the address bar
  setInterval(watchCaptions, 200);
  setInterval(() => { if (!refreshing) refresh(); }, 2000);  // a tick during a refresh is skipped
  refresh();
})();
