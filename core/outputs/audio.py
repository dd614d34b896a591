"""The audio rendition: one continuous AAC encoder (no priming gap between segments), muxed per segment
on the video's boundaries, so audio and video segments share names, durations and PDT."""

from __future__ import annotations

import threading

import av

from .. import media
from ..playlist import MediaPlaylist, Segment
from .base import Output, SegmentJob, StreamContext


class AudioRendition(Output):
    name = "audio"

    def __init__(self, ctx: StreamContext) -> None:
        self.ctx = ctx
        self.dir = ctx.outdir / "audio"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.playlist = MediaPlaylist(self.dir / "index.m3u8", ctx.segment_duration, ctx.window)
        self.full = MediaPlaylist(self.dir / "vod.m3u8", ctx.segment_duration, 0)
        self.encoder = media.AudioEncoder()
        self._lock = threading.Lock()  # the ingest pushes while this output's thread takes packets
        self.peak_bps = 0.0
        self.total_bytes = 0

    # ------------------------------------------------------------ ingest side

    def push(self, frame: av.AudioFrame, t: float) -> None:
        with self._lock:
            self.encoder.push(frame, t)

    def rebase(self, t: float) -> None:
        with self._lock:
            self.encoder.rebase(t)

    # ------------------------------------------------------------ packager side

    def publish(self, job: SegmentJob) -> None:
        with self._lock:
            if job.final:
                self.encoder.push(None)
            packets = self.encoder.take_until(None if job.final else job.end)
        size = self.encoder.write_segment(packets, self.dir / f"{job.name}.ts")
        self.peak_bps = max(self.peak_bps, size * 8 / job.duration)
        self.total_bytes += size
        seg = Segment(uri=f"{job.name}.ts", duration=job.duration, pdt=job.pdt, discontinuity=job.discontinuity,
                      bytes=size, tags=job.tags)
        self.playlist.add(seg)
        self.full.add(seg)

    def finish(self, complete: bool) -> None:
        if complete:
            self.playlist.end()
            self.full.end()
        self.encoder.close()


__all__ = ["AudioRendition"]
