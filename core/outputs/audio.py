"""The audio rendition: one continuous AAC encoder (no priming gap between segments), muxed per segment
on the video's boundaries, so audio and video segments share names, durations and PDT.

A segment's audio is published once the source's audio has reached the segment's end. Audio that is
merely late (demuxers interleave loosely; live audio often trails the video) is waited for; audio that
is missing (a gap in the source) is known to be missing once the video has moved ``AUDIO_LAG_S`` past the
segment's end, and is then filled with silence. So every audio segment holds exactly its share of media.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import av

from .. import media
from .base import Output, SegmentJob, StreamContext

AUDIO_LAG_S = 1.0        # how far audio may trail the video before a hole is taken to be a gap
WAIT_LIMIT_S = 15.0      # a stalled ingest never holds the audio rendition longer than this


class AudioRendition(Output):
    name = "audio"

    def __init__(self, ctx: StreamContext, copy: bool = False) -> None:
        self.ctx = ctx
        self.dir = ctx.outdir / "audio"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.playlist = ctx.playlist(self.dir / "index.m3u8")
        self.full = ctx.playlist(self.dir / "vod.m3u8", 0)
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
            self._lock.notify_all()

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
            packets = enc.take_until(None if job.final else job.end)
        size = self.encoder.write_segment(packets, self.dir / f"{job.name}.ts")  # type: ignore[arg-type]
        self.peak_bps = max(self.peak_bps, size * 8 / job.duration)
        self.total_bytes += size
        seg = job.segment(f"{job.name}.ts")
        self.playlist.add(seg)
        self.full.add(seg)

    def finish(self, complete: bool) -> None:
        if complete:
            self.playlist.end()
            self.full.end()
        self.encoder.close()


__all__ = ["AudioRendition"]
