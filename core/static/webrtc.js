// sidecast's WHIP/WHEP client (RFC 9725 and the WHEP draft), shared by publish.html and preview.html.
// No trickle ICE: the offer is sent once ICE gathering is complete (sidecast's endpoints answer PATCH 501).
"use strict";

async function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);  // send what was gathered so far
  });
}

// POST the local offer; returns {location, answer} or throws Error("HTTP <status>: <server's line>").
async function exchange(pc, url, token) {
  await pc.setLocalDescription(await pc.createOffer());
  await gathered(pc, 2000);
  const headers = { "Content-Type": "application/sdp" };
  if (token) headers["Authorization"] = "Bearer " + token;
  const res = await fetch(url, { method: "POST", headers, body: pc.localDescription.sdp });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`HTTP ${res.status}: ${text.trim()}`);
  await pc.setRemoteDescription({ type: "answer", sdp: text });
  return { location: new URL(res.headers.get("Location"), url).href, status: res.status };
}

// Publish a MediaStream to a WHIP endpoint. Returns {pc, location, stop()}.
export async function whipPublish(url, token, stream, { videoCodec = null, maxBitrate = 2500000 } = {}) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getTracks()) {
    const tr = pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    if (track.kind === "video") {
      if (videoCodec && RTCRtpSender.getCapabilities) {
        const codecs = RTCRtpSender.getCapabilities("video").codecs
          .filter((c) => c.mimeType.toLowerCase() === "video/" + videoCodec.toLowerCase());
        if (codecs.length) tr.setCodecPreferences(codecs);
      }
      const params = tr.sender.getParameters();
      params.degradationPreference = "maintain-resolution";
      if (params.encodings && params.encodings[0]) params.encodings[0].maxBitrate = maxBitrate;
      try { await tr.sender.setParameters(params); } catch (e) { /* not every browser takes both */ }
    }
  }
  const { location } = await exchange(pc, url, token);
  return {
    pc, location,
    async stop() {  // DELETE first: closing first would end the session before the server hears why
      const headers = token ? { "Authorization": "Bearer " + token } : {};
      const status = (await fetch(location, { method: "DELETE", headers })).status;
      pc.close();
      return status;
    },
  };
}

// Play a WHEP endpoint into a <video>; captions (JSON cues on the "captions" data channel) go to onCue.
export async function whepView(url, token, video, { onCue = () => {}, audio = true } = {}) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  pc.addTransceiver("video", { direction: "recvonly" });
  if (audio) pc.addTransceiver("audio", { direction: "recvonly" });
  const channel = pc.createDataChannel("captions");
  channel.onmessage = (ev) => { try { onCue(JSON.parse(ev.data)); } catch (e) { /* not ours */ } };
  const stream = new MediaStream();
  pc.ontrack = (ev) => {
    // sub-second: ask for the smallest jitter buffer the browser allows
    if ("jitterBufferTarget" in ev.receiver) ev.receiver.jitterBufferTarget = 0;
    if ("playoutDelayHint" in ev.receiver) ev.receiver.playoutDelayHint = 0;
    stream.addTrack(ev.track);
    video.srcObject = stream;
  };
  const { location } = await exchange(pc, url, token);
  return {
    pc, location, channel,
    async stop() {  // DELETE first: closing first would end the session before the server hears why
      const headers = token ? { "Authorization": "Bearer " + token } : {};
      const status = (await fetch(location, { method: "DELETE", headers })).status;
      pc.close();
      return status;
    },
  };
}
