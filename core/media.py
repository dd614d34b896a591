"""Encoding and muxing primitives: one video segment per call, a continuous AAC encoder, JPEG snapshots.

Timestamps: media time t (seconds from the start of the stream) is written as MPEG-TS PTS
``timebase.media_to_pts(t)`` (media time 0 is PTS 900000: room for B-frame DTS below the first PTS, and
the value caption segments map to in X-TIMESTAMP-MAP). The muxer runs with ``mpegts_copyts`` so FFmpeg
adds no offset of its own, and it wraps PTS at 2**33 as MPEG-TS requires.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from sidecast.contract.encoding import x264_options
from sidecast.hls import timebase

from .ladder import AUDIO_BITRATE, AUDIO_CHANNELS, AUDIO_SAMPLE_RATE

TS_OPTIONS = {"mpegts_copyts": "1", "mpegts_flags": "resend_headers"}


def h264_codecs_string(data: bytes) -> str:
    """RFC 6381 ``avc1.PPCCLL`` from the first SPS in an Annex-B stream; a safe default if none."""
    i = 0
    n = len(data)
    while i + 4 < n:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0 or j + 6 >= n:
            break
        nal_type = data[j + 3] & 0x1F
        if nal_type == 7:
            return f"avc1.{data[j + 4]:02x}{data[j + 5]:02x}{data[j + 6]:02x}"
        i = j + 3
    return "avc1.64001f"


@dataclass
class SegmentStats:
    path: Path
    bytes: int
    duration: float
    codecs: str
    frames: int


def encode_video_segment(
    frames: list[av.VideoFrame],
    times: list[float],
    path: Path,
    width: int,
    height: int,
    fps: Fraction,
    crf: float | None,
    max_bitrate: int,
    duration: float,
    crop: list[tuple[int, int, int, int]] | None = None,
    threads: int = 0,
) -> SegmentStats:
    """Encode one closed-GOP segment with a fresh x264 encoder into an MPEG-TS file.

    ``crf`` is capped CRF under ``max_bitrate``; ``crf=None`` is one-pass ABR at ``max_bitrate`` (the ``vbr``
    static ladder, see ``core.ladder``).

    ``crop`` (one rectangle per frame, source pixels) renders the vertical rendition: the full-resolution
    frame is cropped, then scaled, so the vertical video is as sharp as the source allows.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    keyint = max(2, int(len(frames) * 2 + 2))
    out = av.open(str(tmp), "w", format="mpegts", options=TS_OPTIONS)
    codecs = "avc1.64001f"
    try:
        st = out.add_stream("libx264", rate=fps, options=x264_options(crf, max_bitrate, keyint))
        st.width, st.height, st.pix_fmt = width, height, "yuv420p"
        st.time_base = timebase.TIME_BASE
        st.codec_context.time_base = timebase.TIME_BASE
        if threads:
            st.codec_context.thread_count = threads
        first = True
        # Frames are shared by every rendition's thread: each call scales through its own reformatter
        # (a frame's built-in one is not safe to use from several threads at once).
        scaler = VideoReformatter()
        for i, (frame, t) in enumerate(zip(frames, times, strict=True)):
            if crop is not None:
                x, y, w, h = crop[i]
                arr = scaler.reformat(frame, format="yuv420p").to_ndarray()
                fh, fw = frame.height, frame.width
                yplane = arr[:fh, :fw]
                uv = arr[fh:].reshape(2, fh // 2, fw // 2)
                x, y, w, h = x & ~1, y & ~1, w & ~1, h & ~1
                sub = np.concatenate(
                    [yplane[y : y + h, x : x + w].reshape(-1),
                     uv[0, y // 2 : (y + h) // 2, x // 2 : (x + w) // 2].reshape(-1),
                     uv[1, y // 2 : (y + h) // 2, x // 2 : (x + w) // 2].reshape(-1)]
                ).reshape(h * 3 // 2, w)
                cropped = av.VideoFrame.from_ndarray(sub, format="yuv420p")
                out_frame = scaler.reformat(cropped, width, height, "yuv420p", interpolation="BICUBIC")
            else:
                out_frame = scaler.reformat(frame, width, height, "yuv420p", interpolation="BICUBIC")
            out_frame.pts = timebase.media_to_pts(t)
            out_frame.time_base = timebase.TIME_BASE
            out_frame.pict_type = av.video.frame.PictureType.I if i == 0 else av.video.frame.PictureType.NONE
            for pkt in st.encode(out_frame):
                if first:
                    codecs = h264_codecs_string(bytes(pkt))
                    first = False
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    finally:
        out.close()
    os.replace(tmp, path)
    return SegmentStats(path=path, bytes=path.stat().st_size, duration=duration, codecs=codecs, frames=len(frames))


class AudioEncoder:
    """One continuous AAC encoder (no priming gap between segments); packets are muxed per segment.

    Input frames are resampled to 48 kHz stereo; media time comes from a sample counter anchored at the
    first frame after each (re)connect, so jittery source timestamps cannot drift the audio.
    """

    def __init__(self) -> None:
        self._holder = av.open(os.devnull, "w", format="mpegts")
        self.stream = self._holder.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout="stereo")
        self.stream.bit_rate = AUDIO_BITRATE
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_SAMPLE_RATE)
        self.samples_written = 0  # in AUDIO_SAMPLE_RATE units, media time * rate
        self.anchor: int | None = None
        self.packets: list[av.Packet] = []

    def rebase(self, media_time: float) -> None:
        """After a discontinuity, continue at ``media_time`` (never going back)."""
        self.anchor = max(self.samples_written, int(round(media_time * AUDIO_SAMPLE_RATE)))

    def push(self, frame: av.AudioFrame | None, media_time: float | None = None) -> None:
        if frame is None:
            for pkt in self.stream.encode(None):
                self.packets.append(pkt)
            return
        if self.anchor is None:
            self.anchor = int(round((media_time or 0.0) * AUDIO_SAMPLE_RATE))
        frame.pts = None
        for r in self.resampler.resample(frame):
            pos = self.anchor
            r.pts = pos
            r.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
            self.anchor = pos + r.samples
            self.samples_written = self.anchor
            for pkt in self.stream.encode(r):
                self.packets.append(pkt)

    def take_until(self, media_time: float | None) -> list[av.Packet]:
        """Encoded packets that start before ``media_time`` (None: all)."""
        if media_time is None:
            out, self.packets = self.packets, []
            return out
        limit = int(round(media_time * AUDIO_SAMPLE_RATE))
        out = [p for p in self.packets if p.pts is not None and p.pts < limit]
        self.packets = [p for p in self.packets if p.pts is None or p.pts >= limit]
        return out

    def write_segment(self, packets: list[av.Packet], path: Path) -> int:
        tmp = path.with_name(f".{path.name}.tmp")
        out = av.open(str(tmp), "w", format="mpegts", options=TS_OPTIONS)
        try:
            st = out.add_stream_from_template(self.stream)
            # The template copies stream parameters, which never saw the encoder's AudioSpecificConfig
            # (set when the encoder opened): without it the TS muxer cannot write ADTS headers.
            st.codec_context.extradata = self.stream.codec_context.extradata
            offset = timebase.PTS_OFFSET * AUDIO_SAMPLE_RATE // timebase.CLOCK
            for pkt in packets:
                if pkt.pts is None:
                    continue
                pkt.stream = st
                pkt.pts = pkt.pts + offset
                pkt.dts = pkt.pts
                pkt.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
                out.mux(pkt)
        finally:
            out.close()
        os.replace(tmp, path)
        return path.stat().st_size

    def close(self) -> None:
        self._holder.close()


AUDIO_CODECS = "mp4a.40.2"
AUDIO_CHANNELS_ATTR = str(AUDIO_CHANNELS)


def write_snapshot(frame: av.VideoFrame, width: int, path: Path) -> None:
    """A JPEG of ``frame`` scaled to ``width`` (height keeps the aspect), written atomically."""
    height = max(2, int(round(frame.height * width / frame.width / 2)) * 2)
    small = VideoReformatter().reformat(frame, width, height, "yuvj420p")
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuvj420p"
    ctx.time_base = Fraction(1, 25)
    ctx.options = {"qmin": "2", "qmax": "6"}
    small.pts = 0
    data = b"".join(bytes(p) for p in ctx.encode(small)) + b"".join(bytes(p) for p in ctx.encode(None))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
