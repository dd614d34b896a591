"""WebRTC helpers for tests and benches: a WHIP publisher (aiortc) that sends a synthetic clip whose frames
carry their own number, and a WHEP viewer that reads those numbers back.

The clip is made for measuring: every frame shows its number as a barcode in the top quarter
(``devkit.barcode``), and once a second (``devkit.nasty.MARK_EVERY_S``) the rest of the picture flashes white while the audio beeps, so
``devkit.avcheck`` can measure A/V sync in what sidecast publishes. The publisher logs the wall-clock time
at which each frame was handed to the encoder: frame number → send time, the reference of every
glass-to-glass figure.
"""

from __future__ import annotations

import asyncio
import fractions
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import av
import httpx
import numpy as np

from devkit.barcode import barcode_image, read_barcode
from devkit.nasty import _beep

VIDEO_RATE = 90_000
AUDIO_RATE = 48_000


def _track_base() -> Any:
    from aiortc import MediaStreamTrack

    return MediaStreamTrack


class BarcodeVideo(_track_base()):  # type: ignore[misc]
    """Video frames numbered by barcode, paced in real time from the first ``recv``; ``sent[n]`` is the
    wall-clock time frame ``n`` was handed over. A flash every ``mark_every`` seconds (0: never)."""

    kind = "video"

    def __init__(self, size: tuple[int, int] = (640, 360), fps: int = 30, mark_every: float = 1.0,
                 frames: int | None = None) -> None:
        super().__init__()
        self.size, self.fps, self.mark_every, self.frames = size, fps, mark_every, frames
        self.sent: dict[int, float] = {}
        self.late_frames = 0  # frames handed over more than a frame interval after they were due
        self.start: float | None = None
        self._n = 0
        # pre-render the 2 x 65536 possible pictures lazily: a frame costs a numpy fill, not a render
        self._cache: dict[tuple[int, bool], av.VideoFrame] = {}

    async def recv(self) -> av.VideoFrame:
        from aiortc.mediastreams import MediaStreamError

        if self.frames is not None and self._n >= self.frames:
            self.stop()
            raise MediaStreamError
        if self.start is None:
            self.start = time.time()
        n = self._n
        self._n += 1
        due = self.start + n / self.fps
        wait = due - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -1 / self.fps:
            self.late_frames += 1
        t = n / self.fps
        flash = self.mark_every > 0 and abs(t - round(t / self.mark_every) * self.mark_every) < 0.5 / self.fps
        img = barcode_image(n & 0xFFFF, *self.size, flash=flash)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = round(n * VIDEO_RATE / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_RATE)
        self.sent[n] = time.time()
        return frame


class EncodedStampedVideo(_track_base()):  # type: ignore[misc]
    """The RTMP bench's camera (``devkit.latency.StampedSource``: the same picture, the same ``ffmpeg`` x264
    veryfast zero-latency encode, a keyframe a second, 4 Mb/s) sent over WebRTC as encoded packets, as OBS
    publishes over WHIP: its own encoder, not aiortc's. ``sent[n]`` is when frame ``n`` was written to the
    encoder, as for RTMP, so WHIP and RTMP figures measure the same thing. (aiortc's own encoder is x264 at
    its default preset on a Python-drawn picture: on two shared cores it fell to ~24 fps at 720p, and a
    publisher slower than real time is what the bench then measured.) Encoded packets cannot honour a
    keyframe request: a keyframe comes every second whatever the receiver asks, as from OBS."""

    kind = "video"

    def __init__(self, size: tuple[int, int] = (1280, 720), fps: int = 30, bitrate_k: int = 4000) -> None:
        super().__init__()
        from devkit.latency import StampedSource

        self.size, self.fps, self.mark_every = size, fps, 0.0
        self.source = StampedSource("pipe:1", size=size, fps=fps, fmt="h264", bitrate_k=bitrate_k)
        self.start: float | None = None
        self._queue: asyncio.Queue[av.Packet | None] | None = None
        self._count = 0

    @property
    def sent(self) -> dict[int, float]:
        return self.source.sent

    @property
    def late_frames(self) -> int:
        return self.source.late_frames

    def _begin(self) -> None:
        import subprocess

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[av.Packet | None] = asyncio.Queue()
        self._queue = queue
        cmd = self.source.command()
        at = cmd.index("-f", cmd.index("-c:v"))  # the output format: WebRTC takes Constrained Baseline
        cmd[at:at] = ["-profile:v", "baseline", "-flush_packets", "1"]
        src = self.source
        src.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        src._thread = threading.Thread(target=src._run, name="whip-camera", daemon=True)
        src._thread.start()
        self.start = time.time()

        def read() -> None:
            assert src.proc is not None and src.proc.stdout is not None
            parser = av.CodecContext.create("h264", "r")
            while chunk := src.proc.stdout.read1(1 << 16):  # type: ignore[attr-defined]
                for packet in parser.parse(chunk):
                    loop.call_soon_threadsafe(queue.put_nowait, packet)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=read, name="whip-camera-out", daemon=True).start()

    async def recv(self) -> av.Packet:
        from aiortc.mediastreams import MediaStreamError

        if self._queue is None:
            self._begin()
        assert self._queue is not None
        packet = await self._queue.get()
        if packet is None:
            self.stop()
            raise MediaStreamError
        packet.pts = packet.dts = round(self._count * VIDEO_RATE / self.fps)  # one picture per packet, in order
        packet.time_base = fractions.Fraction(1, VIDEO_RATE)
        self._count += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class BeepAudio(_track_base()):  # type: ignore[misc]
    """20 ms Opus-ready frames on the same content clock as ``BarcodeVideo``: a 1 kHz beep at every marker."""

    kind = "audio"

    def __init__(self, video: BarcodeVideo | EncodedStampedVideo) -> None:
        super().__init__()
        self.video = video
        self._n = 0

    async def recv(self) -> av.AudioFrame:
        samples = AUDIO_RATE // 50
        while self.video.start is None:
            await asyncio.sleep(0.005)
        t0 = self._n * samples / AUDIO_RATE
        self._n += 1
        wait = self.video.start + t0 - time.time()
        if wait > 0:
            await asyncio.sleep(wait)
        pcm = (_beep(t0, samples) * 32767).astype(np.int16) if self.video.mark_every > 0 else np.zeros(samples, np.int16)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self._n * samples - samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


NTP_UNIX = 2_208_988_800  # seconds from the NTP epoch (1900) to the Unix epoch


@dataclass
class SenderReport:
    """One RTCP sender report a publisher sent: when aiortc stamped it, and the capture time of its RTP
    timestamp on the clip's own clock; ``skew`` (stamped - captured) is how late the report says the media is."""

    kind: str
    stamped: float   # Unix seconds: the report's NTP time as aiortc formed it (when its last packet left)
    captured: float  # Unix seconds: when the clip was due to show the media at the report's RTP timestamp

    @property
    def skew(self) -> float:
        return self.stamped - self.captured


class CaptureClockReports:
    """Make an aiortc publisher's RTCP sender reports pair each RTP timestamp with its *capture* time, as
    browsers and OBS (libwebrtc) do, and log every report it sends.

    aiortc stamps a report with the wall-clock time its stream's last packet was *sent*: after the frame was
    drawn, encoded (libx264 / libvpx in a thread of this Python process) and packetised. On a loaded CPU a
    video frame leaves tens of ms after its audio, so the reports themselves say the flash came after its
    beep, and a receiver that keeps A/V as the sender stamped it (sidecast) publishes exactly that skew. Here
    every report's NTP time is rewritten to when the clip was due to show that media (``video.start`` +
    content time), so the reports are truthful and an A/V error in the output is the receiver's. ``reports``
    keeps the original stamps: ``skew`` per report is the error aiortc's own reports would have carried.

    Install before the connection starts (after ``addTransceiver``): it wraps two methods of each sender
    (aiortc keeps the RTP origin and the stamps private)."""

    def __init__(self, pc: Any, video: BarcodeVideo | EncodedStampedVideo, rewrite: bool = True) -> None:
        self.video = video
        self.rewrite = rewrite
        self.reports: list[SenderReport] = []
        self.empty_reports = 0  # reports aiortc formed before its stream's first packet left
        for sender in pc.getSenders():
            if sender.track is not None:
                self._hook(sender, sender.track.kind)

    def skews(self, kind: str) -> list[float]:
        return [r.skew for r in self.reports if r.kind == kind]

    def _captured(self, kind: str, sender: Any, rel: int) -> float | None:
        """The clip's time (Unix seconds) of the media at ``rel`` RTP ticks after the stream's first packet."""
        if self.video.start is None:
            return None
        if kind == "video":
            return self.video.start + rel / VIDEO_RATE
        # aiortc's Opus encoder counts from its first packet, which starts before the first sample (priming)
        lead = getattr(getattr(sender, "_RTCRtpSender__encoder", None), "first_packet_pts", None) or 0
        return self.video.start + (rel + lead) / AUDIO_RATE

    def _hook(self, sender: Any, kind: str) -> None:
        from aiortc.rtp import RtcpSrPacket

        state: dict[str, int | None] = {"origin": None, "last": None}
        next_frame = sender._next_encoded_frame
        send_rtcp = sender._send_rtcp

        async def next_encoded_frame(codec: Any) -> Any:
            # called again only once the previous frame's packets are sent: the sender's last RTP timestamp is
            # then its (private, random) origin plus that frame's timestamp
            if state["origin"] is None and state["last"] is not None and sender._RTCRtpSender__packet_count:
                state["origin"] = (sender._RTCRtpSender__rtp_timestamp - state["last"]) & 0xFFFFFFFF
            frame = await next_frame(codec)
            if frame is not None:
                state["last"] = frame.timestamp
            return frame

        async def send(packets: list[Any]) -> None:
            origin = state["origin"]
            if origin is None and any(isinstance(p, RtcpSrPacket) for p in packets):
                self.empty_reports += 1
                if self.rewrite:  # nothing sent yet: aiortc's report pairs RTP 0 with NTP 0; libwebrtc sends none
                    packets = [p for p in packets if not isinstance(p, RtcpSrPacket)]
            for packet in packets:
                if not isinstance(packet, RtcpSrPacket) or origin is None:
                    continue
                info = packet.sender_info
                captured = self._captured(kind, sender, (info.rtp_timestamp - origin) & 0xFFFFFFFF)
                if captured is None or info.packet_count == 0:
                    continue
                stamped = (info.ntp_timestamp >> 32) + (info.ntp_timestamp & 0xFFFFFFFF) / 2**32 - NTP_UNIX
                self.reports.append(SenderReport(kind, stamped, captured))
                if self.rewrite:
                    ntp = captured + NTP_UNIX
                    info.ntp_timestamp = (int(ntp) << 32) | int((ntp % 1) * 2**32)
                    sender._RTCRtpSender__lsr = (info.ntp_timestamp >> 16) & 0xFFFFFFFF  # RTT from the echo
            await send_rtcp(packets)

        sender._next_encoded_frame = next_encoded_frame
        sender._send_rtcp = send


@dataclass
class Publication:
    """A WHIP session this process publishes: the HTTP answer, and how to end it."""

    status: int
    text: str
    location: str | None
    pc: Any = None
    video: BarcodeVideo | EncodedStampedVideo | None = None
    headers: dict[str, str] = field(default_factory=dict)
    reports: CaptureClockReports | None = None

    async def delete(self, endpoint: str, key: str) -> int:
        status = await delete_session(endpoint, self.location, key) if self.location else 0
        if self.pc is not None:
            await self.pc.close()
        return status


async def delete_session(endpoint: str, location: str, key: str) -> int:
    """DELETE a WHIP session (``location``: the Location its offer's answer gave); the status code."""
    async with httpx.AsyncClient() as client:
        r = await client.delete(httpx.URL(endpoint).join(location), headers={"Authorization": f"Bearer {key}"})
        return r.status_code


def _prefer(transceiver: Any, kind: str, codec: str | None) -> None:
    from aiortc import RTCRtpSender

    if codec is None:
        return
    caps = RTCRtpSender.getCapabilities(kind)
    chosen = [c for c in caps.codecs if c.mimeType.lower() == f"{kind}/{codec}".lower()]
    if not chosen:
        raise ValueError(f"aiortc cannot send {codec}")
    transceiver.setCodecPreferences(chosen)


async def whip_publish(endpoint: str, key: str | None, *, video: BarcodeVideo | EncodedStampedVideo | None = None, audio: bool = True,
                       codec: str | None = "H264", capture_clock_reports: bool = True) -> Publication:
    """Publish ``video`` (and its beeps) to a WHIP endpoint; on anything but 201 the connection is closed and
    the refusal returned. Sender reports carry capture times (``CaptureClockReports``) unless
    ``capture_clock_reports`` is false (aiortc's own send-time stamps, still logged)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from sidecast.core.webrtc import ice

    ice.register_bind("127.0.0.1")  # tests and benches stay on loopback
    video = video or BarcodeVideo()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    vt = pc.addTransceiver(video, direction="sendonly")
    _prefer(vt, "video", codec)
    if audio:
        pc.addTransceiver(BeepAudio(video), direction="sendonly")
    reports = CaptureClockReports(pc, video, rewrite=capture_clock_reports)
    await pc.setLocalDescription(await pc.createOffer())
    headers = {"Content-Type": "application/sdp"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(endpoint, content=pc.localDescription.sdp.encode(), headers=headers)
    if r.status_code != 201:
        await pc.close()
        return Publication(r.status_code, r.text, None, headers=dict(r.headers))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    return Publication(r.status_code, r.text, r.headers.get("location"), pc, video, dict(r.headers), reports)



class ThreadedPublisher:
    """An aiortc WHIP publisher of ``BarcodeVideo`` (and its beeps) on its own event-loop thread, for benches
    that drive everything else synchronously; ``video.sent`` is the send log."""

    def __init__(self, endpoint: str, key: str | None, size: tuple[int, int] = (1280, 720),
                 encoded: bool = False) -> None:
        self.endpoint, self.key = endpoint, key
        self.video: BarcodeVideo | EncodedStampedVideo = EncodedStampedVideo(size) if encoded else BarcodeVideo(size=size)
        self.loop = asyncio.new_event_loop()
        self.posted_at = time.time()
        self.publication = self.loop.run_until_complete(whip_publish(endpoint, key, video=self.video))
        if self.publication.status != 201:
            raise RuntimeError(f"WHIP publish refused ({self.publication.status}): {self.publication.text[:300]}")
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.publication.delete(self.endpoint, self.key), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class ProcessPublisher:
    """A WHIP publisher in a process of its own (``python -m devkit.webrtc``), as a camera or OBS is: its
    encode, packetising and SRTP do not share the bench's interpreter (and GIL) with the threads that draw
    and log frames. ``sent`` (frame number → wall-clock send time) and ``late_frames`` follow the child's
    reports, five times a second. ``encoded``: the RTMP bench's ffmpeg encode (``EncodedStampedVideo``);
    otherwise aiortc's own encoder (``BarcodeVideo``)."""

    def __init__(self, endpoint: str, key: str, size: tuple[int, int] = (1280, 720), encoded: bool = True,
                 audio: bool = True, timeout: float = 60) -> None:
        import subprocess
        import sys
        from pathlib import Path

        self.sent: dict[int, float] = {}
        self.late_frames = 0
        self.status: str | None = None
        self._ready = threading.Event()
        root = Path(__file__).resolve().parent.parent
        cmd = [sys.executable, "-m", "devkit.webrtc", endpoint, key, f"{size[0]}x{size[1]}",
               "encoded" if encoded else "aiortc", "audio" if audio else "video-only"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)
        self._thread = threading.Thread(target=self._read, name="whip-publisher-log", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self.status != "201":
            err = self.proc.stderr.read()[-2000:] if self.proc.poll() is not None and self.proc.stderr else ""
            self.close()
            raise RuntimeError(f"WHIP publish failed ({self.status}): {err}")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            word, _, rest = line.strip().partition(" ")
            if word == "sent":
                n, t = rest.split()
                self.sent[int(n)] = float(t)
            elif word == "late":
                self.late_frames = int(rest)
            elif word == "status":
                self.status = rest.split()[0]
                self._ready.set()
        self._ready.set()

    def close(self) -> None:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the child DELETEs its session, then exits
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._thread.join(5)


def _publish_main(argv: list[str]) -> int:
    """``python -m devkit.webrtc ENDPOINT KEY WxH encoded|aiortc audio|video-only``: publish until SIGTERM;
    print ``status CODE``, then ``sent N T`` for every frame and ``late N`` (ProcessPublisher reads them)."""
    import signal

    endpoint, key, size_s, kind, audio = argv
    w, h = (int(x) for x in size_s.split("x"))
    loop = asyncio.new_event_loop()
    video = EncodedStampedVideo((w, h)) if kind == "encoded" else BarcodeVideo(size=(w, h))
    publication = loop.run_until_complete(whip_publish(endpoint, key, video=video, audio=audio == "audio"))
    print(f"status {publication.status}", flush=True)
    if publication.status != 201:
        print(publication.text[:500], file=__import__("sys").stderr)
        return 1
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def report() -> None:
        k = 0  # frame numbers are logged modulo 65536 (the barcode's range): fine for runs under 36 minutes
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 0.2)
            except TimeoutError:
                pass
            sent = video.sent
            lines = []
            while k in sent:
                lines.append(f"sent {k} {sent[k]!r}")
                k += 1
            lines.append(f"late {video.late_frames}")
            print("\n".join(lines), flush=True)
        await publication.delete(endpoint, key)
        video.stop()

    loop.run_until_complete(report())
    return 0


async def post_offer(endpoint: str, sdp: str | bytes, key: str | None,
                     content_type: str = "application/sdp") -> httpx.Response:
    """A raw POST to a WHIP/WHEP endpoint (for the refusal cases)."""
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(endpoint, content=sdp if isinstance(sdp, bytes) else sdp.encode(), headers=headers)


async def offer_sdp(*, video_codec: str | None = "H264", audio: bool = True) -> str:
    """A real offer from aiortc (sendonly), for requests that should be refused before any ICE work."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    vt = pc.addTransceiver("video", direction="sendonly")
    _prefer(vt, "video", video_codec)
    if audio:
        pc.addTransceiver("audio", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


__all__ = ["BarcodeVideo", "BeepAudio", "CaptureClockReports", "EncodedStampedVideo", "ProcessPublisher", "Publication", "SenderReport", "ThreadedPublisher", "barcode_image", "offer_sdp", "post_offer",
           "read_barcode", "whip_publish"]


if __name__ == "__main__":
    import sys

    raise SystemExit(_publish_main(sys.argv[1:]))
