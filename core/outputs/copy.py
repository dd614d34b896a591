"""Passthrough: the source's H.264/H.265 copied into HLS without re-encoding (``--passthrough``).

For camera fleets: a camera's stream is already a fine H.264 stream, and decoding plus re-encoding it is
what decides how many cameras fit on a box. Packets are muxed as they arrive into MPEG-TS segments cut
on the source's own keyframes (a segment cannot start anywhere else), with the core's timestamps (media
time on the 90 kHz clock, the same as every other rendition and the captions). One rendition, at the
source's size and bit rate.

What it cannot do, by nature: rotate, deinterlace, scale, or change the bit rate; the segment length is
the source's keyframe interval rounded up to the configured duration (a camera with a 4 s GOP makes 4 s
segments: the playlist's target duration is set from the first GOP seen, with room for jitter); ad-break
boundaries fall on the next keyframe. Audio is still re-encoded to AAC (cheap, and it keeps the audio
rendition and the A/V sync rules the same as for encoded streams).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from sidecast.hls import timebase

from .. import media
from ..ladder import Rung
from .base import JsonLines, Output, SegmentJob, StreamContext
from .video import Rendition

log = logging.getLogger("sidecast.outputs.copy")

HEVC_CODECS = "hvc1.1.6.L120.90"  # Main profile, level 4: what players need to pick a decoder


@dataclass
class _Open:
    index: int
    path: Path
    tmp: Path
    container: Any
    stream: Any
    packets: int = 0


class CopyLadder(Output):
    """The main ladder of a passthrough stream: one rendition, the source itself."""

    name = "video-main"
    kind = "main"
    essential = True

    def __init__(self, ctx: StreamContext, codec: str) -> None:
        self.ctx = ctx
        self.codec = codec
        d = ctx.outdir / "video" / "source"
        d.mkdir(parents=True, exist_ok=True)
        rung = Rung("source", ctx.height, 0, 0.0, width=ctx.width)
        self.renditions = [Rendition(rung=rung, dir=d, playlist=ctx.playlist(d / "index.m3u8"),
                                     full=ctx.playlist(d / "vod.m3u8", 0))]
        self._open: _Open | None = None
        self._done: dict[int, media.SegmentStats] = {}
        self._cond = threading.Condition()
        self.published = 0
        self.log: JsonLines = ctx.log

    # ------------------------------------------------------------ ingest side

    def packet(self, packet: av.Packet[Any], t: float, dts: float, segment: int) -> None:
        if self._open is not None and self._open.index != segment:
            self._close(self._open, None)
        if self._open is None:
            rs = self.renditions[0]
            path = rs.dir / f"seg_{segment:06d}.ts"
            tmp = path.with_name(f".{path.name}.tmp")
            container = av.open(str(tmp), "w", format="mpegts", options=media.TS_OPTIONS)
            stream = container.add_stream_from_template(packet.stream)
            stream.time_base = timebase.TIME_BASE
            self._open = _Open(segment, path, tmp, container, stream)
        o = self._open
        packet.stream = o.stream
        packet.pts = timebase.media_to_pts(t)
        packet.dts = timebase.media_to_pts(dts)
        packet.time_base = timebase.TIME_BASE
        o.container.mux(packet)
        o.packets += 1

    def segment_closed(self, job: SegmentJob) -> None:
        if self._open is not None and self._open.index == job.index:
            self._close(self._open, job.duration)

    def _close(self, o: _Open, duration: float | None) -> None:
        self._open = None
        try:
            o.container.close()
            os.replace(o.tmp, o.path)
            data = o.path.read_bytes()[:200_000]
            codecs = media.h264_codecs_string(data) if self.codec == "h264" else HEVC_CODECS
            stats: media.SegmentStats | None = media.SegmentStats(path=o.path, bytes=o.path.stat().st_size,
                                                                  duration=duration or 0.0, codecs=codecs,
                                                                  frames=o.packets)
        except Exception:
            log.exception("closing passthrough segment %d failed", o.index)
            stats = None
        with self._cond:
            if stats is not None:
                self._done[o.index] = stats
            self._cond.notify_all()

    # ------------------------------------------------------------ packager side

    def publish(self, job: SegmentJob) -> None:
        with self._cond:
            self._cond.wait_for(lambda: job.index in self._done, timeout=60)
            stats = self._done.pop(job.index, None)
        if stats is None:
            raise RuntimeError(f"passthrough segment {job.index} was not written")
        rs = self.renditions[0]
        if self.published == 0:
            rs.codecs = stats.codecs
        if math.floor(job.duration + 0.5) > rs.playlist.target_duration:
            log.warning("a keyframe interval longer than the target duration: the source's GOP grew",
                        extra={"segment": job.index, "duration": job.duration})
        self.log.write([{"segment": job.index, "rendition": "source", "start": round(job.start, 3),
                         "duration": job.duration, "bytes": stats.bytes, "rate_control": "copy", "crf": None,
                         "max_bitrate": None, "hinted": False}])
        rs.peak_bps = max(rs.peak_bps, stats.bytes * 8 / job.duration)
        rs.total_bytes += stats.bytes
        rs.total_seconds += job.duration
        seg = job.segment(f"{job.name}.ts")
        rs.playlist.add(seg)
        rs.full.add(seg)
        self.published += 1

    def finish(self, complete: bool) -> None:
        if self._open is not None:
            self._open.container.close()
            self._open.tmp.unlink(missing_ok=True)
            self._open = None
        if complete:
            for rs in self.renditions:
                rs.playlist.end()
                rs.full.end()


__all__ = ["CopyLadder"]
