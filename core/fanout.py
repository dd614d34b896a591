"""Fan-out: convert each decoded frame once per distinct request and share it with every sidecar.

Negotiation happens once, when sidecars describe themselves (GStreamer-style caps): every (sidecar,
request) pair asking for the same ``VideoWants`` (rate, size, pixel format) joins one group with one
converter, one rate selector and, for shared-memory transport, one ring. A request is a sidecar's main
feed (``Description.video``) or one of its extra feeds (``Description.extra_video``), so one sidecar may sit
in several groups, and its extra feed shares a buffer with another sidecar's identical main feed. Per frame
the work is: rate check → one ``reformat`` straight from the decoded frame → one copy into a ring slot → a
small message per sidecar. ``conversions`` counts converter runs, so tests and bench/transport.py can check
that three sidecars asking for the same 320 px gray frame cost one conversion.

Extra feeds travel inline (bytes: they are meant to be small, a 48x27 thumbnail is 3.9 kB), each in its
own bounded queue on the link (``SidecarLink.feed_limits``), so a full-rate feed and the main feed never
starve each other and a slow sidecar drops frames instead of stalling the stream. For one source frame a
sidecar gets its extra feeds' frames before its main frame, so when a main frame arrives, every extra-feed
frame up to its time has arrived too (unless dropped).

Groups that shrink the picture at least 8 times each way (thumbnails) scale with area averaging: what
models trained on area-resized thumbnails expect, and cheaper than the default bilinear at that ratio.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass, field, replace
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from sidecast.contract import codec, pb2
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
AREA_RATIO = 8  # shrink at least this much each way: area averaging (thumbnails)
MAX_FEED_QUEUE = 256  # frames an extra feed may queue per sidecar, whatever its rate


def feed_kind(feed: str) -> str:
    """The queue kind of a feed's frames on a link: "video" for the main feed, "feed:NAME" for an extra one."""
    return f"feed:{feed}" if feed else "video"


@dataclass
class VideoGroup:
    wants: VideoWants
    subs: list[tuple[SidecarLink, str]]  # (sidecar, feed): feed "" is the sidecar's main request
    width: int
    height: int
    next_due: float = -1.0
    seq: int = 0
    conversions: int = 0
    ring: ShmRing | None = None
    scaler: VideoReformatter = field(default_factory=VideoReformatter)
    interpolation: str | None = None  # None: PyAV's default (bilinear); "AREA" for thumbnails

    @property
    def links(self) -> list[SidecarLink]:
        return list(dict.fromkeys(lk for lk, _ in self.subs))


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
        """Group described sidecars' requests by what they want; create converters and rings once."""
        self.info = info
        use_shm = self.transport in ("auto", "shm") and shm_available()
        by_video: dict[VideoWants, list[tuple[SidecarLink, str]]] = {}
        by_audio: dict[AudioWants, list[SidecarLink]] = {}
        for link in self.links:
            d = link.description
            if d is None or link.failed:
                continue
            if d.video is not None:
                by_video.setdefault(d.video, []).append((link, ""))
            for feed in d.extra_video:
                by_video.setdefault(feed.wants, []).append((link, feed.name))
            if d.audio is not None:
                by_audio.setdefault(d.audio, []).append(link)
            self._size_feed_queues(link, info.source_fps)
        for wants, subs in by_video.items():
            w, h = scaled_size(info.source_width, info.source_height, wants)
            group = VideoGroup(wants=wants, subs=subs, width=w, height=h,
                               interpolation=_interpolation(info.source_width, info.source_height, w, h))
            links = [lk for lk, feed in subs if not feed]  # only main feeds may use the ring
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
                                             "sidecars": ",".join(f"{lk.name}:{feed}" if feed else lk.name
                                                                  for lk, feed in subs),
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
            link.set_start(self._info_for(link), self._ring_of(link))

    def _ring_of(self, link: SidecarLink) -> ShmRingInfo | None:
        ring = next((g.ring for g in self.video_groups if (link, "") in g.subs and g.ring is not None), None)
        return ShmRingInfo(ring.name, ring.slot_size, ring.slots) if ring else None

    def _info_for(self, link: SidecarLink) -> StreamInfo:
        """The stream as this sidecar is told it: with the names of the extra feeds it will get."""
        assert self.info is not None
        d = link.description
        feeds = tuple(f.name for f in d.extra_video) if d is not None and not link.failed else ()
        return replace(self.info, video_feeds=feeds) if feeds else self.info

    @staticmethod
    def _size_feed_queues(link: SidecarLink, source_fps: float) -> None:
        """Each extra feed queues as much media time as the main feed (``max_video`` main frames), so a
        25 fps thumbnail feed next to a 5 fps main feed may hold 5x as many frames, up to MAX_FEED_QUEUE."""
        d = link.description
        if d is None or d.video is None:
            return
        src = source_fps if source_fps > 0 else 30.0
        main_rate = min(d.video.fps or src, src)
        for feed in d.extra_video:
            rate = min(feed.wants.fps or src, src)
            link.feed_limits[feed_kind(feed.name)] = min(
                MAX_FEED_QUEUE, max(link.max_video, math.ceil(link.max_video * rate / max(main_rate, 1e-3))))

    def change_source(self, width: int, height: int, fps: float) -> None:
        """The source changed size mid-stream: every video group scales to the new picture (a bigger ring
        if its frames no longer fit), and every sidecar gets a new StreamStart in-band, before the first
        frame of the new size (the contract's way to say "re-initialise")."""
        if self.info is None:
            return
        self.info = replace(self.info, source_width=width, source_height=height, source_fps=fps)
        for g in self.video_groups:
            g.width, g.height = scaled_size(width, height, g.wants)
            g.interpolation = _interpolation(width, height, g.width, g.height)
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
            info = self._info_for(link)
            self._size_feed_queues(link, fps)
            link.set_start(info, ring)
            if link.live:
                link.offer(Outgoing(codec.encode_core(StreamStarted(info, ring if link.transport == "shm"
                                                                    else None)), "control"))

    # ------------------------------------------------------------ video

    def video(self, frame: av.VideoFrame, t: float, segment: int) -> None:
        main: list[tuple[SidecarLink, Outgoing]] = []  # offered last: extra feeds go first (module docstring)
        for g in self.video_groups:
            if g.wants.fps > 0:
                if t + 1e-6 < g.next_due:
                    continue
                step = 1.0 / g.wants.fps
                g.next_due = max(g.next_due + step, t + step * 0.5) if g.next_due >= 0 else t + step
            live = [(lk, feed) for lk, feed in g.subs if lk.live]
            if not live:
                continue
            planes = self._convert(frame, g)
            size = sum(len(p) for p in planes)
            g.seq += 1
            shm_links = [lk for lk, feed in live if not feed and lk.transport == "shm"] if g.ring is not None else []
            byte_subs = [(lk, feed) for lk, feed in live if feed or lk not in shm_links]
            if shm_links:
                assert g.ring is not None
                ref = g.ring.write(planes, refs=len(shm_links))
                if ref is None:
                    byte_subs += [(lk, "") for lk in shm_links]  # ring exhausted: this frame as bytes, never block
                else:
                    slot, gen = ref
                    ring = g.ring
                    msg = codec.encode_core(FrameHeader(g.seq, t, g.width, g.height, g.wants.pixel_format, segment,
                                                        shm=ShmSlot(slot, gen, size)))
                    main += [(lk, Outgoing(msg, "video", release=_releaser(ring, slot), slot=slot)) for lk in shm_links]
            if byte_subs:
                pixels = b"".join(planes)
                msgs: dict[str, pb2.CoreMessage] = {}  # one message per feed name (usually one in all)
                for lk, feed in byte_subs:
                    if feed not in msgs:
                        msgs[feed] = codec.encode_core(FrameHeader(g.seq, t, g.width, g.height, g.wants.pixel_format,
                                                                   segment, pixels=pixels, feed=feed))
                    if feed:
                        lk.offer(Outgoing(msgs[feed], feed_kind(feed)))
                    else:
                        main.append((lk, Outgoing(msgs[feed], "video")))
        for lk, item in main:
            lk.offer(item)

    def _convert(self, frame: av.VideoFrame, g: VideoGroup) -> list[memoryview]:
        """One conversion, from the decoded frame straight to the requested size and format (a thumbnail
        never goes through a full-size conversion); returns the planes as views (no copy when rows are
        unpadded)."""
        g.conversions += 1
        return convert_frame(frame, g)

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


def convert_frame(frame: av.VideoFrame, g: VideoGroup) -> list[memoryview]:
    """``frame`` as group ``g`` wants it: one ``reformat`` from the decoded frame (none when it already is
    what was asked), as tightly packed planes. devkit/shotrate.py makes its thumbnails with it too."""
    fmt = _AV_PIX[g.wants.pixel_format]
    if frame.width == g.width and frame.height == g.height and frame.format.name == fmt:
        out = frame  # the decoder's own buffer already is what the sidecar asked for
    elif g.interpolation is not None:
        out = g.scaler.reformat(frame, g.width, g.height, fmt, interpolation=g.interpolation)
    else:
        out = g.scaler.reformat(frame, g.width, g.height, fmt)
    return plane_views(out)


def group_for(wants: VideoWants, src_w: int, src_h: int) -> VideoGroup:
    """A converter for ``wants`` from a ``src_w`` x ``src_h`` source, with no sidecar (tools, benches)."""
    w, h = scaled_size(src_w, src_h, wants)
    return VideoGroup(wants=wants, subs=[], width=w, height=h, interpolation=_interpolation(src_w, src_h, w, h))


def _interpolation(src_w: int, src_h: int, w: int, h: int) -> str | None:
    return "AREA" if w * AREA_RATIO <= src_w and h * AREA_RATIO <= src_h else None


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


__all__ = ["FanOut", "VideoGroup", "convert_frame", "feed_kind", "group_for", "scaled_size", "plane_views"]
