"""WHEP preview (WebRTC-HTTP Egress): operators and monitors watch the stream at sub-second latency, with
its captions, in any WHEP player or the page at ``/preview``.

    POST   /whep                the viewer's offer (application/sdp; Bearer key when --whep-key is set)
                                → 201, the answer, Location: /whep/sessions/ID
    DELETE /whep/sessions/ID    → 200, the viewer is gone
    PATCH  /whep/sessions/ID    → 501 (no trickle ICE, no ICE restart)
    GET    /preview             the preview page (plays /whep, shows the captions)

What a viewer gets: the source's pictures scaled to one preview rendition (360p by default), encoded
**once** for every viewer of a codec (H.264 Constrained Baseline by x264 ultrafast/zerolatency, or VP8
for a viewer that offers no H.264) and the source's audio encoded once to Opus; each viewer's aiortc
sender only packetizes and encrypts the shared packets. A new viewer, or a picture-loss report, asks the
shared encoder for a keyframe; a viewer that falls behind skips to the next one. Captions travel on the
viewer's data channel labelled ``captions`` (the page opens it before its offer) as JSON text:
``{"type": "cue", "text", "start", "end", "final", "track", "language", "now"}``, times in media seconds,
``now`` the media time of the latest preview frame (so a page can show how far a caption trails).

The frames come from the source as it yields them (``Source.taps``), before the segmenter, the sidecars
and the ladder; the cues from the pipeline's ``Timeline.listeners``. The preview encodes nothing while no
viewer is connected.
"""

from __future__ import annotations

import asyncio
import fractions
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
from av.video.reformatter import VideoReformatter
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from sidecast.contract.records import Cue

from ..serve.media import STATIC_DIR, serve_file
from . import end_sessions_at_close, require_aiortc
from .http import (
    ALL_METHODS,
    CORS,
    ENDPOINT_METHODS,
    SESSION_METHODS,
    options_response,
    read_offer,
    refuse,
    stack_error,
)
from .sdp import Codec, SdpError, usable

log = logging.getLogger("sidecast.webrtc")

VIDEO_CLOCK = 90_000
PREVIEW_HEIGHT = 360
PREVIEW_BITRATE = 800_000
KEYFRAME_INTERVAL_S = 2.0
MIN_KEYFRAME_GAP_S = 0.5        # many viewers' picture-loss reports cost one keyframe, not one each
MAX_VIEWERS = 8
VIEWER_QUEUE = 90               # packets a slow viewer may lag (~3 s of video) before it skips to a keyframe
CONNECT_TIMEOUT_S = 15.0
PAGE = "preview.html"


def preview_size(width: int, height: int, target: int) -> tuple[int, int]:
    """The preview's picture: ``target`` lines high (never larger than the source), even sizes, aspect kept."""
    h = min(target, height)
    w = round(width * h / height / 2) * 2 if height else 0
    return max(2, w), max(2, h - h % 2)


class SharedVideoEncoder:
    """One encode of the preview for every viewer of one codec, on its own thread.

    ``submit`` keeps only the newest frame (a slow encoder drops frames rather than adding delay);
    ``packets`` is called from the encoder thread with each encoded packet and whether it is a keyframe."""

    def __init__(self, codec: str, height: int, bitrate: int, packets: Callable[[av.Packet[Any], bool], None]) -> None:
        self.codec = codec
        self.height = height
        self.bitrate = bitrate
        self.packets = packets
        self.encoded = 0
        self.cpu_s = 0.0
        self._cc: Any = None
        self._scaler = VideoReformatter()  # this encoder's own (see the encode loop)
        self._size: tuple[int, int] | None = None
        self._cond = threading.Condition()
        self._latest: tuple[av.VideoFrame, float] | None = None
        self._closed = False
        self._want_key = True
        self._last_key = 0.0
        self._thread = threading.Thread(target=self._run, name=f"whep-{codec.lower()}", daemon=True)
        self._thread.start()

    def submit(self, frame: av.VideoFrame, t: float) -> None:
        with self._cond:
            self._latest = (frame, t)
            self._cond.notify()

    def force_keyframe(self) -> None:
        with self._cond:
            self._want_key = True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(5)

    def _open(self, width: int, height: int) -> Any:
        w, h = preview_size(width, height, self.height)
        self._size = (w, h)
        if self.codec == "H264":
            cc = av.CodecContext.create("libx264", "w")
            cc.profile = "Baseline"  # with these options x264 writes Constrained Baseline (42e0..)
            cc.options = {"preset": "ultrafast", "tune": "zerolatency", "level": "31",
                          "x264-params": "bframes=0:scenecut=0:repeat-headers=1"}
        else:
            cc = av.CodecContext.create("libvpx", "w")
            cc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "error-resilient": "1",
                          "auto-alt-ref": "0"}
        cc.width, cc.height, cc.pix_fmt = w, h, "yuv420p"
        cc.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        cc.framerate = fractions.Fraction(30)
        cc.bit_rate = self.bitrate
        cc.gop_size = int(KEYFRAME_INTERVAL_S * 30)
        cc.thread_count = 1  # one core's worth at most: the pipeline owns the rest
        cc.open()
        return cc

    def _run(self) -> None:
        last_pts = -1
        while True:
            with self._cond:
                while self._latest is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                assert self._latest is not None
                frame, t = self._latest
                self._latest = None
                now = time.monotonic()
                key = self._want_key and now - self._last_key >= MIN_KEYFRAME_GAP_S
                if key:
                    self._want_key = False
                    self._last_key = now
            c0 = time.thread_time()
            try:
                if self._cc is None:
                    self._cc = self._open(frame.width, frame.height)
                assert self._size is not None
                # this encoder's own scaler: the frame is shared with the other previews, and a frame's own
                # (VideoFrame.reformat) is one libswscale context for every thread (two threads deadlock in it)
                pic = self._scaler.reformat(frame, self._size[0], self._size[1], "yuv420p")
                pts = max(last_pts + 1, round(t * VIDEO_CLOCK))
                last_pts = pts
                pic.pts, pic.time_base = pts, fractions.Fraction(1, VIDEO_CLOCK)
                pic.pict_type = av.video.frame.PictureType.I if key else av.video.frame.PictureType.NONE
                out = self._cc.encode(pic)
            except (av.error.FFmpegError, ValueError) as exc:
                log.warning("preview encode failed: %s", exc)
                continue
            finally:
                self.cpu_s += time.thread_time() - c0
            self.encoded += 1
            for packet in out:
                if packet.time_base is None:
                    packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
                self.packets(packet, bool(packet.is_keyframe))


class SharedAudioEncoder:
    """The source's audio as 20 ms Opus packets (48 kHz stereo), encoded once for every viewer."""

    def __init__(self, packets: Callable[[av.Packet[Any]], None]) -> None:
        self.packets = packets
        self._cc = av.CodecContext.create("libopus", "w")
        self._cc.sample_rate = 48000
        self._cc.layout = "stereo"
        self._cc.format = "s16"
        self._cc.bit_rate = 64000
        self._cc.time_base = fractions.Fraction(1, 48000)
        self._cc.open()
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000, frame_size=960)
        self._next_pts: int | None = None
        self._lock = threading.Lock()

    def submit(self, frame: av.AudioFrame, t: float) -> None:
        with self._lock:
            if self._next_pts is None:
                self._next_pts = round(t * 48000)
            try:
                for f in self._resampler.resample(frame):
                    f.pts, f.time_base = self._next_pts, fractions.Fraction(1, 48000)
                    self._next_pts += f.samples
                    for packet in self._cc.encode(f):
                        packet.time_base = fractions.Fraction(1, 48000)
                        self.packets(packet)
            except (av.error.FFmpegError, ValueError) as exc:
                log.warning("preview audio encode failed: %s", exc)


def _track_class() -> Any:
    from aiortc import MediaStreamTrack

    class PacketTrack(MediaStreamTrack):
        """A viewer's share of an encoder's packets: aiortc's sender packetizes them without re-encoding."""

        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind
            self.queue: asyncio.Queue[av.Packet[Any]] = asyncio.Queue()
            self.waiting_key = kind == "video"
            self.skipped = 0

        def offer(self, packet: av.Packet[Any], key: bool) -> bool:
            """Queue a packet; False when the viewer lags and needs a keyframe to resume."""
            if self.kind == "video":
                if self.queue.qsize() >= VIEWER_QUEUE:
                    while not self.queue.empty():
                        self.queue.get_nowait()
                        self.skipped += 1
                    self.waiting_key = True
                if self.waiting_key and not key:
                    return False
                self.waiting_key = False
            elif self.queue.qsize() >= VIEWER_QUEUE * 2:
                return True
            self.queue.put_nowait(packet)
            return True

        async def recv(self) -> av.Packet[Any]:
            return await self.queue.get()

    return PacketTrack


@dataclass
class Viewer:
    id: str
    pc: Any
    codec: str
    video: Any
    audio: Any = None
    channel: Any = None
    peer: str = ""
    created: float = field(default_factory=time.monotonic)
    ended: bool = False


class WhepPreview:
    """The WHEP endpoint and its shared encoders. Wire ``on_event`` into ``Source.taps`` and ``on_result``
    into ``Timeline.listeners``; mount ``router()`` on the ``--serve`` app."""

    def __init__(self, *, height: int = PREVIEW_HEIGHT, bitrate: int = PREVIEW_BITRATE, max_viewers: int = MAX_VIEWERS,
                 keys: set[str] | None = None, audio: bool = True) -> None:
        require_aiortc()
        self.height, self.bitrate, self.max_viewers = height, bitrate, max_viewers
        self.keys = keys or None
        self.want_audio = audio
        self.viewers: dict[str, Viewer] = {}
        self.video_encoders: dict[str, SharedVideoEncoder] = {}
        self.audio_encoder: SharedAudioEncoder | None = None
        self.media_time = 0.0
        self.has_audio = True
        self.cues_sent = 0
        self.refused = 0
        self.peer_connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._track = _track_class()

    # ------------------------------------------------------------------ source side (pipeline thread)

    def on_event(self, ev: Any) -> None:
        """A ``Source`` tap: frames to the encoders that have viewers; nothing at all while none has."""
        from ..sources import AudioEvent, Opened, VideoEvent

        if isinstance(ev, VideoEvent):
            self.media_time = ev.t
            for enc in list(self.video_encoders.values()):
                enc.submit(ev.frame, ev.t)
        elif isinstance(ev, AudioEvent):
            enc_a = self.audio_encoder
            if enc_a is not None:
                enc_a.submit(ev.frame, ev.t)
        elif isinstance(ev, Opened):
            self.has_audio = ev.has_audio

    def on_result(self, sidecar: str, result: Any) -> None:
        """A ``Timeline`` listener: every caption cue goes to every viewer's data channel."""
        if not isinstance(result, Cue) or self._loop is None or not self.viewers:
            return
        message = json.dumps({"type": "cue", "text": result.text, "start": round(result.start, 3),
                              "end": round(result.end, 3), "final": result.final, "track": result.track,
                              "language": result.language, "id": result.id, "now": round(self.media_time, 3)})
        self._loop.call_soon_threadsafe(self._send_all, message)

    def _send_all(self, message: str) -> None:
        for v in list(self.viewers.values()):
            if v.channel is not None and v.channel.readyState == "open":
                v.channel.send(message)
                self.cues_sent += 1

    # ------------------------------------------------------------------ encoders → viewers (loop thread)

    def _video_packet(self, codec: str, packet: av.Packet[Any], key: bool) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._deliver_video, codec, packet, key)

    def _deliver_video(self, codec: str, packet: av.Packet[Any], key: bool) -> None:
        lagging = False
        for v in list(self.viewers.values()):
            if v.codec == codec and not v.ended and not v.video.offer(packet, key):
                lagging = True
        enc = self.video_encoders.get(codec)
        if lagging and enc is not None:
            enc.force_keyframe()

    def _audio_packet(self, packet: av.Packet[Any]) -> None:
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._deliver_audio, packet)

    def _deliver_audio(self, packet: av.Packet[Any]) -> None:
        for v in list(self.viewers.values()):
            if v.audio is not None and not v.ended:
                v.audio.offer(packet, True)

    def _encoder(self, codec: str) -> SharedVideoEncoder:
        with self._lock:
            enc = self.video_encoders.get(codec)
            if enc is None:
                def packets(packet: av.Packet[Any], key: bool, codec: str = codec) -> None:
                    self._video_packet(codec, packet, key)

                enc = SharedVideoEncoder(codec, self.height, self.bitrate, packets)
                self.video_encoders[codec] = enc
            if self.want_audio and self.has_audio and self.audio_encoder is None:
                self.audio_encoder = SharedAudioEncoder(self._audio_packet)
            return enc

    def _release_unused(self) -> None:
        with self._lock:
            used = {v.codec for v in self.viewers.values()}
            for codec in [c for c in self.video_encoders if c not in used]:
                self.video_encoders.pop(codec).close()
            if not self.viewers:
                self.audio_encoder = None

    def stats(self) -> dict[str, Any]:
        """What an operator (``POST /api/preview``) and the bench read: viewers, frames encoded, and the CPU
        seconds of the shared encoders and of the serving loop (where every viewer's packets are
        packetized, encrypted and sent)."""
        loop_cpu = None
        if self._loop is not None and self._loop.is_running():
            async def thread_cpu() -> float:
                return time.thread_time()
            try:
                loop_cpu = asyncio.run_coroutine_threadsafe(thread_cpu(), self._loop).result(5)
            except Exception:  # the loop is busy or stopping: say so rather than block
                loop_cpu = None
        return {"viewers": len(self.viewers), "max_viewers": self.max_viewers,
                "codecs": sorted(self.video_encoders), "cues_sent": self.cues_sent, "refused": self.refused,
                "frames_encoded": {c: e.encoded for c, e in self.video_encoders.items()},
                "encoder_cpu_s": round(sum(e.cpu_s for e in self.video_encoders.values()), 4),
                "loop_cpu_s": round(loop_cpu, 4) if loop_cpu is not None else None}

    # ------------------------------------------------------------------ HTTP

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_route("/whep", self._endpoint, methods=ALL_METHODS, include_in_schema=False)
        router.add_route("/whep/sessions/{sid}", self._session, methods=ALL_METHODS, include_in_schema=False)
        router.add_route("/preview", self._page, methods=["GET", "HEAD"], include_in_schema=False)
        return router

    async def _page(self, request: Request) -> Response:
        return serve_file(str(Path(STATIC_DIR).resolve()), "/" + PAGE, request)

    async def _endpoint(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return options_response(ENDPOINT_METHODS, accept_post=True)
        if request.method != "POST":
            return refuse(405, f"{request.method} is not allowed on a WHEP endpoint: POST an SDP offer",
                          {"Allow": ENDPOINT_METHODS})
        read = await read_offer(request, self.keys, publish=False)
        if isinstance(read, Response):
            self.refused += 1
            return read
        text, _offer, codecs = read
        self._loop = asyncio.get_running_loop()
        if len(self.viewers) >= self.max_viewers:
            self.refused += 1
            return refuse(503, f"the preview already has {self.max_viewers} viewers (--whep-viewers): try later",
                          {"Retry-After": "10"})
        peer = request.client.host if request.client else "?"
        try:
            viewer, answer = await self._start(text, codecs, peer)
        except SdpError as exc:
            return refuse(exc.status, str(exc))
        log.info("WHEP viewer joined", extra={"peer": peer, "session": viewer.id, "codec": viewer.codec,
                                              "viewers": len(self.viewers)})
        return Response(answer.encode(), status_code=201, media_type="application/sdp",
                        headers={"Location": f"/whep/sessions/{viewer.id}", "ETag": f'"{viewer.id}"', **CORS})

    async def _session(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        if request.method == "OPTIONS":
            return options_response(SESSION_METHODS, accept_post=False)
        if request.method not in ("PATCH", "DELETE"):
            return refuse(405, f"{request.method} is not allowed on a WHEP session: DELETE ends it",
                          {"Allow": SESSION_METHODS})
        viewer = self.viewers.get(sid)
        if viewer is None:
            return refuse(404, f"no WHEP session {sid[:64]!r}")
        if request.method == "PATCH":
            return refuse(501, "this WHEP session does not support PATCH (no trickle ICE, no ICE restart)")
        await self._end(viewer, "the viewer left (DELETE)")
        return refuse(200, "WHEP session ended")

    # ------------------------------------------------------------------ peer connections

    async def _start(self, offer_sdp: str, codecs: dict[str, Codec], peer: str) -> tuple[Viewer, str]:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peer_connections += 1
        offered = {c.name.upper() for c in _video_codecs_offered(offer_sdp)}
        codec = "H264" if "H264" in offered else "VP8"
        video = self._track("video")
        vt = pc.addTransceiver(video, direction="sendonly")
        caps = RTCRtpSender.getCapabilities("video")
        vt.setCodecPreferences([c for c in caps.codecs if c.mimeType.lower() == f"video/{codec.lower()}"])
        viewer = Viewer(id=secrets.token_urlsafe(12), pc=pc, codec=codec, video=video, peer=peer)
        if "audio" in codecs and self.want_audio and self.has_audio:
            viewer.audio = self._track("audio")
            at = pc.addTransceiver(viewer.audio, direction="sendonly")
            acaps = RTCRtpSender.getCapabilities("audio")
            at.setCodecPreferences([c for c in acaps.codecs if c.mimeType.lower() == "audio/opus"])

        @pc.on("datachannel")
        def on_channel(channel: Any) -> None:
            if channel.label == "captions":
                viewer.channel = channel

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._end(viewer, f"the WebRTC connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc's refusals: ValueError, OperationError, KeyError...
            await pc.close()
            raise stack_error(exc, "WHEP") from exc
        enc = self._encoder(codec)
        sender = vt.sender
        # picture loss (PLI/FIR) asks the shared encoder for a keyframe, rate-limited across viewers; aiortc's
        # own keyframe flag only reaches encoders it runs itself
        setattr(sender, "_send_keyframe", enc.force_keyframe)  # noqa: B010
        self.viewers[viewer.id] = viewer
        enc.force_keyframe()
        asyncio.ensure_future(self._watch_connect(viewer))
        return viewer, pc.localDescription.sdp

    async def _watch_connect(self, viewer: Viewer) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not viewer.ended and viewer.pc.connectionState != "connected":
            await self._end(viewer, f"no WebRTC connection within {CONNECT_TIMEOUT_S:g} s of the offer")

    async def _end(self, viewer: Viewer, reason: str) -> None:
        if viewer.ended:
            return
        viewer.ended = True
        self.viewers.pop(viewer.id, None)
        log.info("WHEP viewer left: %s", reason, extra={"session": viewer.id, "viewers": len(self.viewers)})
        try:
            await viewer.pc.close()
        except Exception as exc:
            log.debug("closing a WHEP peer connection failed: %s", exc)
        await asyncio.get_running_loop().run_in_executor(None, self._release_unused)

    def close(self) -> None:
        end_sessions_at_close(self._loop, self.viewers.values, self._end, "WHEP viewers")
        for enc in list(self.video_encoders.values()):
            enc.close()
        self.video_encoders.clear()


def _video_codecs_offered(offer_sdp: str) -> list[Codec]:
    from .sdp import parse_offer

    return [c for m in parse_offer(offer_sdp).of_kind("video") for c in m.codecs if usable(c, "video")]


__all__ = ["MAX_VIEWERS", "PREVIEW_HEIGHT", "SharedAudioEncoder", "SharedVideoEncoder", "Viewer", "WhepPreview",
           "preview_size"]
