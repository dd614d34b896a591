"""Fan-out: convert each decoded frame once per distinct request and share it with every sidecar.

Negotiation happens once, when sidecars describe themselves (GStreamer-style caps): sidecars asking for
the same ``VideoWants`` (rate, size, pixel format) form one group with one converter, one rate selector
and, for shared-memory transport, one ring. Per frame the work is: rate check → one ``reformat`` → one
copy into a ring slot → a small message per sidecar. ``conversions`` counts converter runs, so tests and
bench/transport.py can check that three sidecars asking for the same 320 px gray frame cost one
conversion.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from sidecast.contract import codec
from sidecast.contract.codec import scaled_size
from sidecast.contract.records import (
    AudioChunk,
    AudioWants,
    CoreEvent,
    Discontinuity,
    FrameHeader,
    SegmentBoundary,
    ShmRingInfo,
    ShmSlot,
    StreamEnded,
    StreamInfo,
    StreamStarted,
    VideoWants,
)
from sidecast.contract.shm import ShmRing, shm_available

from .links import Outgoing, SidecarLink

log = logging.getLogger("sidecast.fanout")

_AV_PIX = {"gray8": "gray", "rgb24": "rgb24", "bgr24": "bgr24", "yuv420p": "yuv420p"}


@dataclass
class VideoGroup:
    wants: VideoWants
    links: list[SidecarLink]
    width: int
    height: int
    next_due: float = -1.0
    seq: int = 0
    conversions: int = 0
    ring: ShmRing | None = None
    scaler: VideoReformatter = field(default_factory=VideoReformatter)


@dataclass
class AudioGroup:
    wants: AudioWants
    links: list[SidecarLink]
    resampler: Any = None
    pending: list[np.ndarray] = field(default_factory=list)
    pending_samples: int = 0
    next_pts: float | None = None
    conversions: int = 0


class FanOut:
    def __init__(self, links: list[SidecarLink], transport: str = "auto") -> None:
        self.links = links
        self.transport = transport
        self.video_groups: list[VideoGroup] = []
        self.audio_groups: list[AudioGroup] = []
        self.info: StreamInfo | None = None
        self._retired: list[ShmRing] = []
        self._lock = threading.Lock()

    def negotiate(self, info: StreamInfo) -> None:
        """Group described sidecars by what they want; create converters and rings once."""
        self.info = info
        use_shm = self.transport in ("auto", "shm") and shm_available()
        by_video: dict[VideoWants, list[SidecarLink]] = {}
        by_audio: dict[AudioWants, list[SidecarLink]] = {}
        for link in self.links:
            d = link.description
            if d is None or link.failed:
                continue
            if d.video is not None:
                by_video.setdefault(d.video, []).append(link)
            if d.audio is not None:
                by_audio.setdefault(d.audio, []).append(link)
        for wants, links in by_video.items():
            w, h = scaled_size(info.source_width, info.source_height, wants)
            group = VideoGroup(wants=wants, links=links, width=w, height=h)
            shm_links = [lk for lk in links if lk.transport == "shm"]
            if use_shm and shm_links:
                size = codec.frame_nbytes(w, h, wants.pixel_format)
                slots = sum(lk.max_video + lk.max_inflight + 1 for lk in shm_links) + 2
                try:
                    group.ring = ShmRing(size, slots)
                except OSError as exc:
                    log.warning("shared memory unavailable, sending bytes: %s", exc)
            if group.ring is None:
                for lk in links:
                    lk.transport = "bytes"
            self.video_groups.append(group)
            log.info("video request", extra={"size": f"{w}x{h}", "fps": wants.fps, "format": wants.pixel_format,
                                             "sidecars": ",".join(lk.name for lk in links),
                                             "shm": group.ring is not None})
        for awants, alinks in by_audio.items():
            self.audio_groups.append(AudioGroup(
                wants=awants, links=alinks,
                resampler=av.AudioResampler(format="flt" if awants.sample_format == "f32" else "s16",
                                            layout="mono" if awants.channels == 1 else f"{awants.channels}c"
                                            if awants.channels > 2 else "stereo",
                                            rate=awants.sample_rate),
            ))
        for link in self.links:
            link.set_start(info, self._ring_of(link))

    def _ring_of(self, link: SidecarLink) -> ShmRingInfo | None:
        ring = next((g.ring for g in self.video_groups if link in g.links and g.ring is not None), None)
        return ShmRingInfo(ring.name, ring.slot_size, ring.slots) if ring else None

    def change_source(self, width: int, height: int, fps: float) -> None:
        """The source changed size mid-stream: every video group scales to the new picture (a bigger ring
        if its frames no longer fit), and every sidecar gets a new StreamStart in-band, before the first
        frame of the new size (the contract's way to say "re-initialise")."""
        if self.info is None:
            return
        self.info = replace(self.info, source_width=width, source_height=height, source_fps=fps)
        for g in self.video_groups:
            g.width, g.height = scaled_size(width, height, g.wants)
            g.scaler = VideoReformatter()
            size = codec.frame_nbytes(g.width, g.height, g.wants.pixel_format)
            if g.ring is not None and size > g.ring.slot_size:
                self._retired.append(g.ring)  # frames in flight still point into it
                try:
                    g.ring = ShmRing(size, g.ring.slots)
                except OSError as exc:
                    log.warning("shared memory unavailable after the size change, sending bytes: %s", exc)
                    g.ring = None
                    for lk in g.links:
                        lk.transport = "bytes"
        for link in self.links:
            ring = self._ring_of(link)
            link.set_start(self.info, ring)
            if link.live:
                link.offer(Outgoing(codec.encode_core(StreamStarted(self.info, ring if link.transport == "shm"
                                                                    else None)), "control"))

    # ------------------------------------------------------------ video

    def video(self, frame: av.VideoFrame, t: float, segment: int) -> None:
        for g in self.video_groups:
            if g.wants.fps > 0:
                if t + 1e-6 < g.next_due:
                    continue
                step = 1.0 / g.wants.fps
                g.next_due = max(g.next_due + step, t + step * 0.5) if g.next_due >= 0 else t + step
            live = [lk for lk in g.links if lk.live]
            if not live:
                continue
            planes = self._convert(frame, g)
            size = sum(len(p) for p in planes)
            g.seq += 1
            shm_links = [lk for lk in live if lk.transport == "shm"] if g.ring is not None else []
            byte_links = [lk for lk in live if lk not in shm_links]
            if shm_links:
                assert g.ring is not None
                ref = g.ring.write(planes, refs=len(shm_links))
                if ref is None:
                    byte_links += shm_links  # ring exhausted: degrade this frame to bytes, never block
                else:
                    slot, gen = ref
                    ring = g.ring
                    msg = codec.encode_core(FrameHeader(g.seq, t, g.width, g.height, g.wants.pixel_format, segment,
                                                        shm=ShmSlot(slot, gen, size)))
                    for lk in shm_links:
                        lk.offer(Outgoing(msg, "video", release=_releaser(ring, slot), slot=slot))
            if byte_links:
                msg = codec.encode_core(FrameHeader(g.seq, t, g.width, g.height, g.wants.pixel_format, segment,
                                                    pixels=b"".join(planes)))
                for lk in byte_links:
                    lk.offer(Outgoing(msg, "video"))

    def _convert(self, frame: av.VideoFrame, g: VideoGroup) -> list[memoryview]:
        """One conversion; returns the converted planes as views (no copy when rows are unpadded)."""
        g.conversions += 1
        fmt = _AV_PIX[g.wants.pixel_format]
        if frame.width == g.width and frame.height == g.height and frame.format.name == fmt:
            out = frame  # the decoder's own buffer already is what the sidecar asked for
        else:
            out = g.scaler.reformat(frame, g.width, g.height, fmt)
        return plane_views(out)

    # ------------------------------------------------------------ audio

    def audio(self, frame: av.AudioFrame, t: float) -> None:
        for g in self.audio_groups:
            live = [lk for lk in g.links if lk.live]
            if g.next_pts is None:
                g.next_pts = t
            frame.pts = None
            for r in g.resampler.resample(frame):
                g.conversions += 1
                arr = r.to_ndarray().reshape(-1)
                g.pending.append(arr)
                g.pending_samples += len(arr) // g.wants.channels
            chunk = int(g.wants.sample_rate * g.wants.chunk_ms / 1000)
            while g.pending_samples >= chunk:
                buf = np.concatenate(g.pending)
                take = chunk * g.wants.channels
                piece, rest = buf[:take], buf[take:]
                g.pending = [rest] if len(rest) else []
                g.pending_samples -= chunk
                msg = codec.encode_core(AudioChunk(pts=g.next_pts, sample_rate=g.wants.sample_rate,
                                                   channels=g.wants.channels, samples=piece))
                g.next_pts += chunk / g.wants.sample_rate
                for lk in live:
                    lk.offer(Outgoing(msg, "audio"))

    def rebase_audio(self, t: float) -> None:
        """After a discontinuity: drop partial chunks and restart the audio clock at t."""
        for g in self.audio_groups:
            g.pending, g.pending_samples, g.next_pts = [], 0, t

    # ------------------------------------------------------------ control

    def control(self, event: CoreEvent) -> None:
        msg = codec.encode_core(event)
        for lk in self.links:
            if lk.live:
                lk.offer(Outgoing(msg, "control"))

    def segment(self, index: int, start: float, end: float) -> None:
        self.control(SegmentBoundary(segment=index, start=start, end=end))

    def discontinuity(self, t: float) -> None:
        self.rebase_audio(t)
        self.control(Discontinuity(t))

    def end(self) -> None:
        self.control(StreamEnded())

    def close(self) -> None:
        for g in self.video_groups:
            if g.ring is not None:
                g.ring.close()
        for ring in self._retired:
            ring.close()


def plane_views(frame: av.VideoFrame) -> list[memoryview]:
    """A frame's planes as tightly packed byte views, in contract order (Y, U, V for yuv420p)."""
    views = []
    for plane in frame.planes:
        width = plane.width * (3 if frame.format.name in ("rgb24", "bgr24") else 1)
        buf = memoryview(plane)
        if plane.line_size == width:
            views.append(buf[: width * plane.height])
        else:  # rows padded for SIMD alignment: drop the padding (one copy)
            rows = np.frombuffer(buf, dtype=np.uint8)[: plane.line_size * plane.height]
            packed = np.ascontiguousarray(rows.reshape(plane.height, plane.line_size)[:, :width])
            views.append(memoryview(packed.data).cast("B"))
    return views


class _Releaser:
    """Frees one slot reference exactly once, whichever path (release, drop, disconnect) gets there."""

    __slots__ = ("ring", "slot", "done")

    def __init__(self, ring: ShmRing, slot: int) -> None:
        self.ring, self.slot, self.done = ring, slot, False

    def __call__(self) -> None:
        if not self.done:
            self.done = True
            self.ring.release(self.slot)


def _releaser(ring: ShmRing, slot: int) -> Any:
    return _Releaser(ring, slot)


__all__ = ["FanOut", "scaled_size", "plane_views"]
