"""WHIP ingest (WebRTC-HTTP Ingestion Protocol, RFC 9725): a publisher (OBS 30+, a browser page, any WHIP
client) sends its camera and microphone over WebRTC into the stream's pipeline.

    POST   /APP                 Authorization: Bearer KEY, Content-Type: application/sdp, the offer
                                → 201 Created, the answer (application/sdp), Location: /APP/sessions/ID
    DELETE /APP/sessions/ID     → 200, the session ends (the source drops, as an RTMP publisher leaving)
    PATCH  /APP/sessions/ID     → 501: no trickle ICE or ICE restart (RFC 9725 4.3.1); sidecast's answer
                                  carries all its candidates, and clients send theirs in the offer
    OPTIONS                     → 204 with CORS headers and Accept-Post: application/sdp

Refusals come before any ICE or DTLS work, each as one line of text: 401 (missing or unknown key, the same
keys as RTMP and SRT), 415 (not application/sdp), 413 (an offer over 64 KiB), 400 (malformed SDP), 422 (no
codec sidecast takes: H.264 Constrained Baseline or VP8 video, Opus audio), 409 (a publisher is already
live: one stream, one publisher), 404 (DELETE of an unknown session), 405 (any other method).

The HTTP endpoint and every peer connection live on one asyncio loop (uvicorn's, in a background thread);
aiortc decodes there. Decoded frames cross to the pipeline's thread through a queue, where ``events``
turns them into ``sources`` events on the same media clock as every other source: times from the RTP
timestamps mapped onto the sender's clock by its RTCP sender reports (``sync``), gaps filled and jumps
re-based by ``SourceClock``. A publisher that leaves is a ``Dropped``; one that comes back within
``--reconnect-timeout`` continues the stream after a ``Discontinuity``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import av
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from ..clock import SourceClock
from ..errors import SourceError
from ..serve import bare_app, run_in_thread
from ..serve.media import STATIC_DIR, serve_file
from . import end_sessions_at_close, ice, require_aiortc
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
from .sdp import Codec, SdpError
from .sync import SYNC_WAIT_S, SessionSync, StreamSync

if TYPE_CHECKING:
    from ..sources import Event, Source

log = logging.getLogger("sidecast.ingest")

CONNECT_TIMEOUT_S = 15.0
"""A session whose ICE/DTLS has not connected by then is ended (the client went away after POST)."""
QUEUE_ITEMS = 3000
"""Frames waiting for the pipeline (~20 s of 30 fps video and Opus audio); past it new frames are dropped
(and counted) rather than memory growing without bound."""
@dataclass
class _Item:
    kind: str
    frame: av.VideoFrame | av.AudioFrame
    arrival: float  # time.time() when aiortc handed the decoded frame over


@dataclass
class WhipSession:
    """One publisher's peer connection, and its media on the way to the pipeline."""

    id: str
    pc: Any                                   # aiortc.RTCPeerConnection
    codecs: dict[str, Codec]
    peer: str
    sync: SessionSync = field(default_factory=SessionSync)
    items: queue.Queue[_Item | None] = field(default_factory=queue.Queue)
    ended: threading.Event = field(default_factory=threading.Event)
    end_reason: str = ""
    created: float = field(default_factory=time.monotonic)
    dropped: int = 0
    keyframe_requests: int = 0

    @property
    def kinds(self) -> list[str]:
        return sorted(self.codecs)


class WhipIngest:
    """The WHIP endpoint of one stream, on its own port: ``POST {path}`` with the stream key as Bearer token.

    ``events(source)`` yields the publishers' media as source events; ``close()`` ends every session and
    frees the port."""

    def __init__(self, host: str, port: int, path: str, keys: set[str]) -> None:
        require_aiortc()
        self.host = host
        self.path = "/" + path.strip("/")
        self.keys = set(keys)
        self.sessions: dict[str, WhipSession] = {}
        self.arrivals: queue.Queue[WhipSession] = queue.Queue()
        self.rejected = 0
        self.peer_connections = 0             # ever created: stays 0 while every offer is refused
        self.sync_modes: list[str] = []        # per session, once decided: "rtcp" or "arrival"
        self._start_lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        ice.register_bind(host)
        try:
            self.server = run_in_thread(bare_app(self.router()), port, host)
        except OSError as exc:
            ice.unregister_bind(host)
            raise SourceError(f"cannot listen for WHIP on {host}:{port}: {exc.strerror or exc}") from exc
        self.port = self.server.port

    @property
    def url(self) -> str:
        """The endpoint URL a publisher is given (wildcard binds shown as loopback)."""
        return self.server.url.rstrip("/") + self.path

    # ------------------------------------------------------------------ HTTP

    def router(self) -> APIRouter:
        router = APIRouter()
        router.add_route(self.path, self._endpoint, methods=ALL_METHODS, include_in_schema=False)
        router.add_route(self.path + "/sessions/{sid}", self._session, methods=ALL_METHODS, include_in_schema=False)
        # the publisher page and its client, so a browser can publish from this port alone
        router.add_route("/publish", self._file("publish.html"), methods=["GET", "HEAD"], include_in_schema=False)
        router.add_route("/_player/webrtc.js", self._file("webrtc.js"), methods=["GET", "HEAD"],
                         include_in_schema=False)
        return router

    @staticmethod
    def _file(name: str) -> Any:
        async def page(request: Request) -> Response:
            return serve_file(os.path.realpath(STATIC_DIR), "/" + name, request)
        return page

    async def _endpoint(self, request: Request) -> Response:
        if request.method == "OPTIONS":
            return options_response(ENDPOINT_METHODS, accept_post=True)
        if request.method != "POST":
            return refuse(405, f"{request.method} is not allowed on a WHIP endpoint: POST an SDP offer",
                          {"Allow": ENDPOINT_METHODS})
        read = await read_offer(request, self.keys, publish=True)
        if isinstance(read, Response):
            if read.status_code == 401:
                self.rejected += 1
            return read
        text, _offer, codecs = read
        peer = request.client.host if request.client else "?"
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
            self._loop = asyncio.get_running_loop()
        async with self._start_lock:
            if any(not s.ended.is_set() for s in self.sessions.values()):
                return refuse(409, "a publisher is already live on this stream: DELETE its WHIP session first, "
                                   "or wait for it to time out")
            try:
                session, answer = await self._start(text, codecs, peer)
            except SdpError as exc:
                return refuse(exc.status, str(exc))
        log.info("WHIP publisher accepted", extra={"peer": peer, "session": session.id,
                                                   "codecs": ",".join(c.name for c in codecs.values())})
        return Response(answer.encode(), status_code=201, media_type="application/sdp",
                        headers={"Location": f"{self.path}/sessions/{session.id}", "ETag": f'"{session.id}"', **CORS})

    async def _session(self, request: Request) -> Response:
        sid = request.path_params["sid"]
        if request.method == "OPTIONS":
            return options_response(SESSION_METHODS, accept_post=False)
        session = self.sessions.get(sid)
        if request.method not in ("PATCH", "DELETE"):
            return refuse(405, f"{request.method} is not allowed on a WHIP session: DELETE ends it",
                          {"Allow": SESSION_METHODS})
        if session is None or session.ended.is_set():
            return refuse(404, f"no WHIP session {sid[:64]!r}")
        if request.method == "PATCH":
            return refuse(501, "this WHIP session does not support PATCH (no trickle ICE, no ICE restart): "
                               "send every candidate in the offer")
        await self._end(session, "the publisher ended the session (DELETE)")
        return refuse(200, "WHIP session ended")

    # ------------------------------------------------------------------ peer connections

    async def _start(self, offer_sdp: str, codecs: dict[str, Codec], peer: str) -> tuple[WhipSession, str]:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription

        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # host candidates only: no STUN/TURN lookups
        self.peer_connections += 1
        session = WhipSession(id=secrets.token_urlsafe(12), pc=pc, codecs=codecs, peer=peer)
        session.sync = SessionSync({k: StreamSync(c.clock_rate) for k, c in codecs.items()})
        if "audio" in codecs:
            # aiortc would also take G.711/G.722; sidecast's answer offers Opus only
            caps = RTCRtpReceiver.getCapabilities("audio")
            opus = [c for c in (caps.codecs if caps else []) if c.mimeType.lower() == "audio/opus"]
            pc.addTransceiver("audio", direction="recvonly").setCodecPreferences(opus)

        @pc.on("track")
        def on_track(track: Any) -> None:
            receiver = next((t.receiver for t in pc.getTransceivers() if t.receiver.track is track), None)
            stream = session.sync.streams.get(track.kind)
            if receiver is None or stream is None:
                return
            _hook_sender_reports(receiver, stream)
            if track.kind == "video":
                asyncio.ensure_future(_ask_keyframe(receiver, session))
            asyncio.ensure_future(self._pump(session, track, receiver, stream))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._end(session, f"the WebRTC connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:  # aiortc raises ValueError, OperationError, KeyError... on offers it cannot take
            await pc.close()
            raise stack_error(exc, "WHIP") from exc
        self.sessions[session.id] = session
        asyncio.ensure_future(self._watch_connect(session))
        return session, pc.localDescription.sdp

    async def _watch_connect(self, session: WhipSession) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT_S)
        if not session.ended.is_set() and session.pc.connectionState != "connected":
            await self._end(session, f"no WebRTC connection within {CONNECT_TIMEOUT_S:g} s of the offer")

    async def _pump(self, session: WhipSession, track: Any, receiver: Any, stream: StreamSync) -> None:
        from aiortc.mediastreams import MediaStreamError

        announced = False
        while not session.ended.is_set():
            try:
                frame = await track.recv()
            except MediaStreamError:
                break
            if stream.origin is None:
                stream.origin = _timestamp_origin(receiver)
            if not announced:
                announced = True
                if track.kind == "video":
                    self.arrivals.put(session)  # the pipeline reads a session once its video flows
            if session.items.qsize() >= QUEUE_ITEMS:
                session.dropped += 1
                if session.dropped % 300 == 1:
                    log.warning("WHIP frames dropped: the pipeline is not keeping up",
                                extra={"dropped": session.dropped})
                continue
            session.items.put(_Item(track.kind, frame, time.time()))
        if track.kind == "video":
            await self._end(session, "the publisher's video track ended")

    async def _end(self, session: WhipSession, reason: str) -> None:
        if session.ended.is_set():
            return
        session.end_reason = reason
        session.ended.set()
        session.items.put(None)
        log.info("WHIP session ended: %s", reason, extra={"session": session.id, "peer": session.peer})
        try:
            await session.pc.close()
        except Exception as exc:  # closing a half-open connection must not take the endpoint down
            log.debug("closing a WHIP peer connection failed: %s", exc)
        self.sessions.pop(session.id, None)

    def close(self) -> None:
        """End every session and stop the HTTP server."""
        end_sessions_at_close(self._loop, self.sessions.values, self._end, "WHIP sessions")
        self.server.close()
        ice.unregister_bind(self.host)

    # ------------------------------------------------------------------ media → source events

    def events(self, source: Source) -> Iterator[Event]:
        """The stream's events across publishers: the first publisher opens it, a publisher that leaves is a
        ``Dropped``, the next one (within the source's reconnect timeout) continues after a ``Discontinuity``."""
        from ..sources import Discontinuity, Dropped

        base, last_t, frame_dur = 0.0, -1.0, 1 / 30
        first = True
        away_since: float | None = None
        log.info("listening for WHIP publishers", extra={"endpoint": self.url, "keys": len(self.keys)})
        while not source._stop.is_set():
            if (away_since is not None and time.monotonic() - away_since > source.reconnect_timeout
                    and not self._connecting(away_since, source.reconnect_timeout)):
                log.warning("publisher did not come back; ending the stream",
                            extra={"waited_s": source.reconnect_timeout})
                return
            try:
                session = self.arrivals.get(timeout=0.25)
            except queue.Empty:
                continue
            if session.ended.is_set() and session.items.empty():
                continue
            if not first:
                gap = time.monotonic() - (away_since or time.monotonic())
                base = last_t + frame_dur
                log.info("publisher back; continuing with a discontinuity",
                         extra={"gap_s": round(gap, 2), "media_time": round(base, 3)})
                yield Discontinuity(t=base, gap=gap)
            source.connections += 1
            yield from self._read(session, source, base, first)
            frame_dur = float(1 / source.fps)
            first = False
            last_t = max(last_t, source._last_t)
            if source._stop.is_set():
                return
            away_since = time.monotonic()
            yield Dropped(t=last_t + frame_dur)
            log.warning("WHIP publisher left; waiting for it to come back",
                        extra={"reconnect_timeout_s": source.reconnect_timeout, "reason": session.end_reason})

    def _connecting(self, away_since: float, window: float) -> bool:
        """A publisher answered (201) within the reconnect window is back, though its media flows only once ICE
        and DTLS connect (a second or two; more on a loaded box): the stream waits for it until its connection
        is up or ``CONNECT_TIMEOUT_S`` ends it, instead of ending under a publisher it has just accepted."""
        now = time.monotonic()
        return any(away_since <= s.created <= away_since + window and now - s.created < CONNECT_TIMEOUT_S
                   and not s.ended.is_set() for s in list(self.sessions.values()))

    def _read(self, session: WhipSession, source: Source, base: float, first: bool) -> Iterator[Event]:
        from ..sources import AudioEvent, Discontinuity, Opened, SourceChanged, VideoEvent

        # Hold the session's first frames until every stream has a sender report (or SYNC_WAIT_S passed).
        held: list[_Item] = []
        ended = False
        deadline = time.monotonic() + SYNC_WAIT_S
        while not session.sync.ready() and time.monotonic() < deadline and not source._stop.is_set():
            try:
                item = session.items.get(timeout=0.05)
            except queue.Empty:
                continue
            if item is None:
                ended = True
                break
            held.append(item)
            session.sync.streams[item.kind].on_frame(int(item.frame.pts or 0), item.arrival)
        mode = session.sync.decide()
        self.sync_modes.append(mode)
        log.info("WHIP A/V sync by %s after %.2f s", mode, SYNC_WAIT_S - max(0.0, deadline - time.monotonic()),
                 extra={"frames_held": len(held)})
        if mode == "arrival":
            log.warning("no RTCP sender report from the WHIP publisher within %g s: A/V mapped by arrival time",
                        SYNC_WAIT_S)
        video_pts = [int(i.frame.pts or 0) for i in held if i.kind == "video"]
        fps = _estimate_fps(video_pts, session.sync.streams["video"].rate)
        if first:
            source.fps = fps
        frame_dur = float(1 / source.fps)
        clock = SourceClock(base, frame_dur)
        source._last_t = base - frame_dur
        size: tuple[int, int] | None = None
        opened = not first
        pending_audio: list[av.AudioFrame] = []
        last_frame: av.VideoFrame | None = None
        resized = False

        def emit(item: _Item) -> Iterator[Event]:
            nonlocal size, opened, last_frame, resized
            frame = item.frame
            t_src = session.sync.time(item.kind, int(frame.pts or 0))
            if isinstance(frame, av.VideoFrame):
                if size is None:
                    size = (frame.width, frame.height)
                    if not opened:
                        opened = True
                        source.size = size
                        codec = session.codecs["video"].name
                        audio = session.codecs.get("audio")
                        yield Opened(width=size[0], height=size[1], fps=source.fps, has_audio=audio is not None,
                                     description=f"WHIP {codec} {size[0]}x{size[1]} {float(source.fps):.3f} fps"
                                                 + (f", audio {audio.name} {audio.clock_rate} Hz" if audio else "")
                                                 + f", A/V sync by {mode}",
                                     codec=codec.lower(), audio_codec=audio.name.lower() if audio else "")
                    elif size != source.size:
                        log.warning("the WHIP publisher came back at another size",
                                    extra={"from": "x".join(map(str, source.size)), "to": "x".join(map(str, size))})
                        source.size = size
                        yield SourceChanged(t=base, width=size[0], height=size[1])
                elif (frame.width, frame.height) != size:
                    # WebRTC senders scale down under load and back up; the stream keeps the session's size
                    if not resized:
                        resized = True
                        log.info("the WHIP publisher changed its picture size mid-session; scaling back",
                                 extra={"to": f"{frame.width}x{frame.height}", "kept": "x".join(map(str, size))})
                    frame = frame.reformat(width=size[0], height=size[1])
                started = clock.started
                step = clock.video(t_src)
                if step.jumped and step.jump_s > 0:
                    yield Discontinuity(t=step.t, gap=step.jump_s, wall_clock=False)
                for ft in step.fill:
                    if last_frame is not None:
                        yield VideoEvent(last_frame, ft)
                source._last_t = step.t
                source.last_source_t = t_src
                last_frame = frame
                yield VideoEvent(frame, step.t)
                if not started:
                    for af in pending_audio:
                        at = clock.audio(session.sync.time("audio", int(af.pts or 0)), af.samples / af.sample_rate)
                        if at is not None:
                            yield AudioEvent(af, at)
                    pending_audio.clear()
            elif isinstance(frame, av.AudioFrame) and frame.sample_rate > 0:
                at = clock.audio(t_src, frame.samples / frame.sample_rate)
                if at is None:
                    pending_audio.append(frame)
                    del pending_audio[:-500]
                else:
                    yield AudioEvent(frame, at)

        timing = _Timing()
        for item in held:
            timing.note(item, session)
            yield from emit(item)
        while not ended and not source._stop.is_set():
            try:
                nxt = session.items.get(timeout=0.25)
            except queue.Empty:
                continue
            if nxt is None:
                break
            timing.note(nxt, session)
            yield from emit(nxt)
        source.filled_frames += clock.filled_frames
        source.timestamp_jumps += clock.jumps


NTP_UNIX = 2_208_988_800  # seconds from the NTP epoch (1900) to the Unix epoch


class _Timing:
    """Where a WHIP frame's time goes, logged every ``every`` seconds: transit (sent on the publisher's clock,
    by its sender reports → handed over decoded by aiortc: the publisher's pacing, the network, aiortc's
    jitter buffer and decoder), queue (handed over → read by the pipeline), the queue's depth and the video
    frame rate that arrived. It is how the WHIP figures of docs/latency.md were taken apart."""

    def __init__(self, every: float = 5.0) -> None:
        self.every = every
        self._reset()

    def _reset(self) -> None:
        self.since = time.monotonic()
        self.transit: list[float] = []
        self.waited: list[float] = []
        self.frames = 0

    def note(self, item: _Item, session: WhipSession) -> None:
        if item.kind != "video":
            return
        now = time.time()
        self.frames += 1
        self.waited.append(now - item.arrival)
        if session.sync.mode == "rtcp":
            sent = session.sync.time("video", int(item.frame.pts or 0)) + session.sync.epoch - NTP_UNIX
            self.transit.append(item.arrival - sent)
        elapsed = time.monotonic() - self.since
        if elapsed >= self.every:
            log.info("WHIP video timing", extra={"transit_ms": _median_ms(self.transit),
                                                  "queue_ms": _median_ms(self.waited),
                                                  "queue_max_ms": round(max(self.waited) * 1000),
                                                  "queued": session.items.qsize(),
                                                  "fps_in": round(self.frames / elapsed, 1)})
            self._reset()


def _median_ms(xs: list[float]) -> int | None:
    return round(statistics.median(xs) * 1000) if xs else None


def _estimate_fps(pts: list[int], rate: int) -> Fraction:
    """The publisher's frame rate from its first frames' timestamps (WebRTC does not signal one), snapped to
    a common rate; 30 when there are too few frames to tell."""
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False) if b > a]
    if len(steps) < 5:
        return Fraction(30)
    fps = rate / statistics.median(steps)
    common = [Fraction(x) for x in (10, 12, 15, 20, 24, 25, 30, 50, 60)] + [Fraction(30000, 1001), Fraction(60000, 1001)]
    return min(common, key=lambda c: abs(float(c) - fps))


async def _ask_keyframe(receiver: Any, session: WhipSession) -> None:
    """Ask the publisher for a keyframe (RTCP PLI, RFC 4585 6.3.1) as soon as its video arrives. Its encoder
    ran before the connection was up, and nothing can be decoded before a keyframe: without asking, the
    stream starts at the publisher's next scheduled one (OBS: every 2 s by default, some encoders 10 s), and
    the first segment waits that long. aiortc itself asks only once decoding has failed."""
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not session.ended.is_set() and time.monotonic() < deadline:
        sources = receiver.getSynchronizationSources()  # the publisher's SSRC, once its first packet came
        if sources:
            try:
                await receiver._send_rtcp_pli(sources[0].source)
                session.keyframe_requests += 1
            except Exception as exc:  # a connection closing meanwhile: nothing to ask any more
                log.debug("asking the WHIP publisher for a keyframe failed: %s", exc)
            return
        await asyncio.sleep(0.02)


def _hook_sender_reports(receiver: Any, stream: StreamSync) -> None:
    """See the publisher's RTCP sender reports: aiortc keeps them private, so its per-receiver handler is
    wrapped (an instance attribute; the transport looks the handler up on the receiver each time)."""
    from aiortc.rtp import RtcpSrPacket

    original = receiver._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            stream.on_report(packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp)
        await original(packet)

    receiver._handle_rtcp_packet = handle


def _timestamp_origin(receiver: Any) -> int | None:
    """The raw RTP timestamp aiortc counts frame pts from (its receiver's private TimestampMapper); None if a
    future aiortc moved it, and sync then falls back to arrival times (logged)."""
    mapper = getattr(receiver, "_RTCRtpReceiver__timestamp_mapper", None)
    origin = getattr(mapper, "_origin", None)
    return origin if isinstance(origin, int) else None


__all__ = ["WhipIngest", "WhipSession"]
