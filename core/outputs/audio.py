"""The audio rendition: one continuous AAC encoder (no priming gap between segments), muxed per segment
on the video's boundaries, so audio and video segments share names, durations and PDT.

A segment's audio is published once the source's audio has reached the segment's end. Audio that is
merely late (demuxers interleave loosely; live audio often trails the video) is waited for; audio that
is missing (a gap in the source) is known to be missing once the video has moved ``AUDIO_LAG_S`` past the
segment's end, and is then filled with silence. So every audio segment holds exactly its share of media.

Low latency (``--latency low``): AAC in CMAF, and parts on a fixed grid from each segment's start
(``PART-TARGET`` each, the last one ending at the segment's end), written as soon as the encoder's packets
reach a part's end, from the thread that pushes the audio; the segment's full file is its parts back to back.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import av

from sidecast.hls import Part, timebase
from sidecast.hls.live import atomic_write

from .. import fmp4, media
from ..ladder import AUDIO_BITRATE, AUDIO_SAMPLE_RATE
from .base import Output, SegmentJob, StreamContext
from .parts import part_name

AUDIO_LAG_S = 1.0        # how far audio may trail the video before a hole is taken to be a gap
WAIT_LIMIT_S = 15.0      # a stalled ingest never holds the audio rendition longer than this


class AudioRendition(Output):
    name = "audio"

    def __init__(self, ctx: StreamContext, copy: bool = False) -> None:
        self.ctx = ctx
        self.dir = ctx.outdir / "audio"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.low_latency = ctx.part_target is not None and not copy
        self.ext = "m4s" if self.low_latency else "ts"
        init = "init.mp4" if self.low_latency else None
        self.playlist = ctx.playlist(self.dir / "index.m3u8", init_uri=init, parts=self.low_latency)
        self.full = ctx.playlist(self.dir / "vod.m3u8", 0, init_uri=init)
        # low latency: the segment whose parts are being cut, where it starts, its next part, its parts so far
        self._fragmenter = fmp4.Fragmenter()
        self._init_done = False
        self._ends: dict[int, float] = {}    # segment index -> its end (known once the ingest closed it)
        self._cur, self._part, self._start = 0, 0, 0.0
        self._parts: list[bytes] = []
        self._complete: dict[int, list[bytes]] = {}
        # Passthrough of an AAC source copies its packets; everything else is encoded here.
        self.encoder: media.AudioEncoder | media.AudioCopy = media.AudioCopy() if copy else media.AudioEncoder()
        self._lock = threading.Condition()  # the ingest pushes while this output's thread takes packets
        self.video_time = 0.0  # how far the ingest has read the video
        self.ended = False
        self.peak_bps = 0.0
        self.total_bytes = 0

    # ------------------------------------------------------------ ingest side

    def push(self, frame: av.AudioFrame, t: float) -> None:
        with self._lock:
            if isinstance(self.encoder, media.AudioEncoder):
                self.encoder.push(frame, t)
                if self.low_latency:
                    self._cut_parts()
            self._lock.notify_all()

    def segment_closed(self, job: SegmentJob) -> None:
        if self.low_latency:
            with self._lock:
                self._ends[job.index] = job.end
                if job.index == self._cur and self._part == 0 and not self._parts:
                    self._start = job.start  # a segment after a discontinuity starts where its video does
                self._cut_parts()
                self._lock.notify_all()

    # ------------------------------------------------------------ low latency

    def _cut_parts(self) -> None:
        """Write every part the encoder's packets now cover (call with the lock held)."""
        enc = self.encoder
        assert self.ctx.part_target is not None and isinstance(enc, media.AudioEncoder)
        while True:
            end = self._ends.get(self._cur)
            part_end = self._start + (self._part + 1) * self.ctx.part_target
            if end is not None and part_end > end - 0.25 * self.ctx.part_target:
                part_end = end  # the segment's last part takes what is left (never a sliver of a part)
            if enc.encoded_until < part_end - enc.TOLERANCE_S:
                return
            part_start = self._start + self._part * self.ctx.part_target
            packets = enc.take_until(part_end)
            if packets or not (end is not None and part_end >= end and self._parts
                               and part_end - part_start < 0.25 * self.ctx.part_target):
                self._write_part(packets, part_end - part_start)
            # else: the parts already reach the segment's end (the end became known only after the last of
            # them was cut, on the grid): an empty sliver of a part would be listed (0 bytes, DURATION 0.001),
            # and hls.js stalls on it — the audio fell behind and took the whole player with it
            if end is not None and part_end >= end:
                self._complete[self._cur] = self._parts
                self._cur, self._part, self._start, self._parts = self._cur + 1, 0, end, []
            else:
                self._part += 1

    def _write_part(self, packets: list[av.Packet[Any]], duration: float) -> None:
        enc = self.encoder
        assert isinstance(enc, media.AudioEncoder)
        if not self._init_done:
            asc = bytes(enc.stream.codec_context.extradata or b"")
            atomic_write(self.dir / "init.mp4", fmp4.audio_init(AUDIO_SAMPLE_RATE, 2, asc, bitrate=AUDIO_BITRATE))
            self._init_done = True
        offset = timebase.PTS_OFFSET * AUDIO_SAMPLE_RATE // timebase.CLOCK
        samples = [fmp4.Sample(bytes(p), int(p.duration or 1024)) for p in packets if p.pts is not None]
        base = (packets[0].pts + offset) if packets and packets[0].pts is not None else \
            int(round((self._start + self._part * (self.ctx.part_target or 0)) * AUDIO_SAMPLE_RATE)) + offset
        data = self._fragmenter.fragment(int(base), samples) if samples else b""
        name = part_name(self._cur, self._part)
        atomic_write(self.dir / name, data)
        self._parts.append(data)
        self.playlist.add_part(Part.of(name, max(duration, 0.001), independent=True),
                               next_uri=part_name(self._cur, self._part + 1), segment=self._cur)

    def push_packet(self, packet: av.Packet[Any], t: float, duration: float) -> None:
        """Passthrough: a compressed audio packet of the source, at media time ``t``."""
        with self._lock:
            if isinstance(self.encoder, media.AudioCopy):
                self.encoder.push_packet(packet, t, duration)
            self._lock.notify_all()

    def advance(self, video_time: float) -> None:
        """The ingest has read the video up to ``video_time`` (called per frame; cheap)."""
        self.video_time = video_time
        if self.encoder.input_next + AUDIO_LAG_S < video_time:
            with self._lock:
                self._lock.notify_all()

    def end_period(self, t: float) -> None:
        """The source dropped or ended at media time ``t``: the audio up to it, exactly, and nothing after."""
        with self._lock:
            self.encoder.end_period(t)
            self._lock.notify_all()

    def start_period(self, t: float) -> None:
        """The source came back: a new period of audio starts at media time ``t``."""
        with self._lock:
            self.encoder.start_period(t)

    # ------------------------------------------------------------ packager side

    def publish(self, job: SegmentJob) -> None:
        deadline = time.monotonic() + WAIT_LIMIT_S
        with self._lock:
            enc = self.encoder
            # Wait until the encoder's packets reach the segment's end (the encoder trails its input by
            # ENCODER_DELAY_S), or until the video is AUDIO_LAG_S past it: then the source's audio has a
            # hole here, filled with silence (through the encoder's delay) rather than a short segment.
            while (enc.open and enc.encoded_until < job.end - enc.TOLERANCE_S
                   and self.video_time < job.end + AUDIO_LAG_S and not job.final):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.5))
            if job.final:
                enc.end_period(job.end)
            elif enc.open and enc.encoded_until < job.end - enc.TOLERANCE_S:
                enc.pad_to(job.end + enc.ENCODER_DELAY_S)
            if self.low_latency:
                self._ends[job.index] = job.end
                self._cut_parts()
                parts = self._complete.pop(job.index, None)
                if parts is None:
                    raise RuntimeError(f"audio parts of segment {job.index} are incomplete")
                path = self.dir / f"{job.name}.m4s"
                atomic_write(path, b"".join(parts))
                size = path.stat().st_size
            elif isinstance(enc, media.AudioCopy):
                size = enc.write_segment(enc.take_until(None if job.final else job.end), self.dir / f"{job.name}.ts")
            else:
                size = enc.write_segment(enc.take_until(None if job.final else job.end), self.dir / f"{job.name}.ts")
        self.peak_bps = max(self.peak_bps, size * 8 / job.duration)
        self.total_bytes += size
        seg = job.segment(f"{job.name}.{self.ext}")
        self.playlist.add(seg, next_part_uri=part_name(job.index + 1, 0), index=job.index)
        self.full.add(seg)

    def finish(self, complete: bool) -> None:
        if complete:
            self.playlist.end()
            self.full.end()
        self.encoder.close()


__all__ = ["AudioRendition"]
