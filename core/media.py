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
from typing import Any, cast

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from sidecast.contract.encoding import X264_PRESET, x264_options
from sidecast.hls import timebase

from .ladder import AUDIO_BITRATE, AUDIO_CHANNELS, AUDIO_SAMPLE_RATE

# One Fraction for every audio frame and packet: building one per AAC frame (47 a second) was ~4 % of the
# GIL-holding samples of a caption stream's worker (py-spy --gil, fifteenth session).
_AUDIO_TIME_BASE = Fraction(1, AUDIO_SAMPLE_RATE)

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


class SegmentEncoder:
    """One closed-GOP segment being encoded: a fresh x264 encoder (its first frame an IDR) muxed to MPEG-TS.

    Frames are scaled (or cropped, then scaled) to the rendition's size as they come, so an encoder can be
    fed while the segment is still being read (the streaming path) or from a buffered segment. ``close``
    flushes, renames the file into place (readers never see half a segment) and returns its figures.
    ``crf`` is capped CRF under ``max_bitrate``; ``crf=None`` is one-pass ABR at ``max_bitrate`` (the ``vbr``
    static ladder, see ``core.ladder``). ``keyint`` must exceed the frames a segment can hold.
    """

    def __init__(self, path: Path, width: int, height: int, fps: Fraction, crf: float | None, max_bitrate: int,
                 keyint: int, threads: int = 0, preset: str = X264_PRESET) -> None:
        self.path = path
        self.width, self.height = width, height
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.out = av.open(str(self.tmp), "w", format="mpegts", options=TS_OPTIONS)
        self.codecs = "avc1.64001f"
        self.frames = 0
        try:
            st = self.out.add_stream("libx264", rate=fps, options=x264_options(crf, max_bitrate, max(2, keyint),
                                                                                  preset))
            st.width, st.height, st.pix_fmt = width, height, "yuv420p"
            st.time_base = timebase.TIME_BASE
            st.codec_context.time_base = timebase.TIME_BASE
            if threads:
                st.codec_context.thread_count = threads
        except BaseException:
            self.out.close()
            raise
        self.stream = st
        # Frames are shared by every rendition's thread: each encoder scales through its own reformatter
        # (a frame's built-in one is not safe to use from several threads at once).
        self.scaler = VideoReformatter()

    def encode(self, frame: av.VideoFrame, t: float, crop: tuple[int, int, int, int] | None = None) -> None:
        out_frame = rendition_frame(frame, self.width, self.height, self.scaler, crop)
        out_frame.pts = timebase.media_to_pts(t)
        out_frame.time_base = timebase.TIME_BASE
        out_frame.pict_type = (av.video.frame.PictureType.I if self.frames == 0
                               else av.video.frame.PictureType.NONE)
        self.frames += 1
        self._mux(self.stream.encode(out_frame))

    def _mux(self, packets: list[av.Packet[Any]]) -> None:
        for pkt in packets:
            if self.codecs == "avc1.64001f" and pkt.is_keyframe:
                self.codecs = h264_codecs_string(bytes(pkt))
            self.out.mux(pkt)

    def close(self, duration: float) -> SegmentStats:
        try:
            self._mux(self.stream.encode(None))
        finally:
            self.out.close()
        os.replace(self.tmp, self.path)
        return SegmentStats(path=self.path, bytes=self.path.stat().st_size, duration=duration, codecs=self.codecs,
                            frames=self.frames)

    def abort(self) -> None:
        try:
            self.out.close()
        finally:
            self.tmp.unlink(missing_ok=True)


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
    preset: str = X264_PRESET,
) -> SegmentStats:
    """Encode a buffered segment (see ``SegmentEncoder``); ``crop`` is one window per frame (vertical)."""
    enc = SegmentEncoder(path, width, height, fps, crf, max_bitrate, len(frames) * 2 + 2, threads, preset)
    try:
        for i, (frame, t) in enumerate(zip(frames, times, strict=True)):
            enc.encode(frame, t, crop[i] if crop is not None else None)
    except BaseException:
        enc.abort()
        raise
    return enc.close(duration)


def _planes(frame: av.VideoFrame) -> list[np.ndarray]:
    """A yuv420p frame's planes as 2-D views (rows keep their padding out: views, not copies)."""
    out = []
    for plane in frame.planes:
        buf = np.frombuffer(memoryview(plane), dtype=np.uint8)
        out.append(buf[: plane.line_size * plane.height].reshape(plane.height, plane.line_size)[:, : plane.width])
    return out


def _frame_from_planes(planes: list[np.ndarray], width: int, height: int) -> av.VideoFrame:
    """A new yuv420p frame holding copies of ``planes`` (Y, U, V)."""
    out = av.VideoFrame(width, height, "yuv420p")
    for plane, src in zip(out.planes, planes, strict=True):
        dst = np.frombuffer(memoryview(plane), dtype=np.uint8)[: plane.line_size * plane.height]
        dst.reshape(plane.height, plane.line_size)[: src.shape[0], : src.shape[1]] = src
    return out


def crop_frame(frame: av.VideoFrame, x: int, y: int, w: int, h: int,
               scaler: VideoReformatter | None = None) -> av.VideoFrame:
    """The window (x, y, w, h) of ``frame`` as a new yuv420p frame, clamped inside the picture and aligned
    to even coordinates (chroma is subsampled 2x2). Odd-sized sources are fine: only the window is copied."""
    if frame.format.name != "yuv420p":
        frame = (scaler or VideoReformatter()).reformat(frame, format="yuv420p")
    fw, fh = frame.width, frame.height
    w = max(2, min(w, fw - fw % 2)) & ~1
    h = max(2, min(h, fh - fh % 2)) & ~1
    x = max(0, min(x, fw - w)) & ~1
    y = max(0, min(y, fh - h)) & ~1
    yp, up, vp = _planes(frame)
    cx, cy, cw, ch = x // 2, y // 2, w // 2, h // 2
    return _frame_from_planes([yp[y : y + h, x : x + w], up[cy : cy + ch, cx : cx + cw],
                               vp[cy : cy + ch, cx : cx + cw]], w, h)


def rendition_frame(frame: av.VideoFrame, width: int, height: int, scaler: VideoReformatter,
                    crop: tuple[int, int, int, int] | None = None) -> av.VideoFrame:
    """The picture a rendition encodes: the whole frame fitted to width x height, or (the vertical) the
    window ``crop`` cut from the full-resolution frame first (a copy of the window only), then scaled, so it
    is as sharp as the source allows and costs no full-frame conversion."""
    if crop is None:
        return fit_frame(frame, width, height, scaler)
    x, y, w, h = crop
    return scaler.reformat(crop_frame(frame, x, y, w, h, scaler), width, height, "yuv420p", interpolation="BICUBIC")


def fit_frame(frame: av.VideoFrame, width: int, height: int, scaler: VideoReformatter) -> av.VideoFrame:
    """``frame`` scaled to width x height; when its aspect differs (the source changed size mid-stream),
    scaled to fit and centred on black instead of stretched, so the rendition keeps its declared size."""
    fw, fh = frame.width, frame.height
    if abs(fw * height - fh * width) <= 0.01 * fh * width:
        return scaler.reformat(frame, width, height, "yuv420p", interpolation="BICUBIC")
    scale = min(width / fw, height / fh)
    sw, sh = max(2, int(fw * scale) & ~1), max(2, int(fh * scale) & ~1)
    small = scaler.reformat(frame, sw, sh, "yuv420p", interpolation="BICUBIC")
    canvas = av.VideoFrame(width, height, "yuv420p")
    ox, oy = ((width - sw) // 2) & ~1, ((height - sh) // 2) & ~1
    for plane, src, black, div in zip(canvas.planes, _planes(small), (16, 128, 128), (1, 2, 2), strict=True):
        dst = np.frombuffer(memoryview(plane), dtype=np.uint8)[: plane.line_size * plane.height]
        dst = dst.reshape(plane.height, plane.line_size)
        dst[:] = black
        dst[oy // div : oy // div + src.shape[0], ox // div : ox // div + src.shape[1]] = src
    return canvas


class AudioEncoder:
    """One continuous AAC encoder per period (no priming gap between segments); packets are muxed per segment.

    Audio follows the source's own timestamps: each input frame says where its first sample belongs in
    media time. A frame that starts later than the previous one ended leaves a gap, filled with silence;
    one that starts earlier overlaps, and its first samples are dropped; deviations under
    ``TOLERANCE_S`` are jitter and ignored (they cannot accumulate: each frame is checked against its own
    timestamp). So audio never drifts from video, whatever the source does.

    A period ends where the source dropped or the stream ended (``end_period``): the audio is padded with
    silence up to that media time, flushed, and nothing past it is kept; after a reconnect a new period
    (a fresh encoder) starts at the new media time (``start_period``).
    """

    TOLERANCE_S = 0.015
    # AAC's encoder delay plus one frame: input pushed up to t is encoded up to about t - this.
    ENCODER_DELAY_S = 2048 / AUDIO_SAMPLE_RATE

    def __init__(self, start: float = 0.0) -> None:
        self._holder = av.open(os.devnull, "w", format="mpegts")
        self.packets: list[av.Packet[Any]] = []
        self.encoded_until = start
        self.gaps_filled_s = 0.0
        self.overlap_trimmed_s = 0.0
        self.stream: Any = None
        self.start_period(start)

    def start_period(self, media_time: float) -> None:
        """A fresh encoder whose first sample is at ``media_time`` (never before what was already encoded)."""
        self.stream = self._holder.add_stream("aac", rate=AUDIO_SAMPLE_RATE, layout="stereo")
        self.stream.bit_rate = AUDIO_BITRATE
        self.resampler = av.AudioResampler(format="fltp", layout="stereo", rate=AUDIO_SAMPLE_RATE)
        self.position = int(round(media_time * AUDIO_SAMPLE_RATE))  # output samples: media time * rate
        self.input_next: float = media_time                          # media time of the next input sample
        self.period_start = media_time
        self.encoded_until = media_time                             # media time the packets reach
        self.open = True
        self._template: av.AudioFrame | None = None

    # ------------------------------------------------------------ input

    def push(self, frame: av.AudioFrame | None, media_time: float | None = None) -> None:
        """Encode ``frame`` whose first sample is at ``media_time``; ``None`` flushes the encoder."""
        if frame is None:
            self._flush()
            return
        if not self.open:
            self.start_period(media_time if media_time is not None else self.input_next)
        t = self.input_next if media_time is None else media_time
        rate = frame.sample_rate
        if self._template is None:
            self._template = frame
        d = t - self.input_next
        if d > self.TOLERANCE_S:  # a gap: silence up to where this frame starts
            fill = int(round(d * rate))
            self._encode(_silence_like(frame, fill))
            self.input_next += fill / rate
            self.gaps_filled_s += fill / rate
        elif d < -self.TOLERANCE_S:  # an overlap: what was already encoded wins
            drop = int(round(-d * rate))
            self.overlap_trimmed_s += min(drop, frame.samples) / rate
            if drop >= frame.samples:
                return
            frame = _trim_start(frame, drop)
        self.input_next += frame.samples / rate
        self._encode(frame)

    def _encode(self, frame: av.AudioFrame) -> None:
        frame.pts = None
        for r in self.resampler.resample(frame):
            self._encode_resampled(r)

    def _encode_resampled(self, r: av.AudioFrame) -> None:
        r.pts = self.position
        r.time_base = _AUDIO_TIME_BASE
        self.position += r.samples
        for pkt in self.stream.encode(r):
            self._keep(pkt)

    def _keep(self, pkt: av.Packet[Any]) -> None:
        self.packets.append(pkt)
        if pkt.pts is not None:
            self.encoded_until = max(self.encoded_until, (pkt.pts + (pkt.duration or 1024)) / AUDIO_SAMPLE_RATE)

    def _flush(self) -> None:
        if not self.open:
            return
        for r in self.resampler.resample(None):
            self._encode_resampled(r)
        for pkt in self.stream.encode(None):
            self._keep(pkt)
        self.open = False

    def pad_to(self, media_time: float) -> None:
        """Silence up to ``media_time`` where the source's audio has not reached it (a gap in the source)."""
        gap = media_time - self.input_next
        if self.open and gap > self.TOLERANCE_S and self._template is not None:
            fill = int(round(gap * self._template.sample_rate))
            self._encode(_silence_like(self._template, fill))
            self.input_next += fill / self._template.sample_rate
            self.gaps_filled_s += fill / self._template.sample_rate

    def end_period(self, media_time: float) -> None:
        """The period ends at ``media_time`` (the video's end): pad with silence up to it, flush, and drop
        anything encoded past it, so the last segment holds exactly its share of audio."""
        if not self.open:
            return
        self.pad_to(media_time)
        self._flush()
        limit = media_time * AUDIO_SAMPLE_RATE
        self.packets = [p for p in self.packets if p.pts is None or p.pts + (p.duration or 1024) / 2 < limit]

    # ------------------------------------------------------------ output

    def take_until(self, media_time: float | None) -> list[av.Packet[Any]]:
        """Encoded packets whose middle lies before ``media_time`` (None: all): a segment boundary falls
        between two AAC frames (1024 samples, 21 ms), and choosing by the middle keeps each segment within
        half a frame (~11 ms) of its EXTINF, less than a video frame even at 60 fps."""
        if media_time is None:
            out, self.packets = self.packets, []
            return out
        limit = media_time * AUDIO_SAMPLE_RATE
        out = [p for p in self.packets if p.pts is not None and p.pts + (p.duration or 1024) / 2 < limit]
        self.packets = [p for p in self.packets if not (p.pts is not None and p.pts + (p.duration or 1024) / 2 < limit)]
        return out

    def write_segment(self, packets: list[av.Packet[Any]], path: Path) -> int:
        tmp = path.with_name(f".{path.name}.tmp")
        # The packets' own encoder, not the current one: after a reconnect a lagging packager still writes the
        # last period's segments while ``start_period`` has made a new encoder, whose AudioSpecificConfig is
        # unset until it has encoded (under load, three segments of raw AAC without ADTS headers: undecodable).
        encoder = next((p.stream for p in packets if p.stream is not None), None) or self.stream
        out = av.open(str(tmp), "w", format="mpegts", options=TS_OPTIONS)
        try:
            st = out.add_stream_from_template(encoder)
            # The template copies stream parameters, which never saw the encoder's AudioSpecificConfig
            # (set when the encoder opened): without it the TS muxer cannot write ADTS headers.
            st.codec_context.extradata = encoder.codec_context.extradata
            offset = timebase.PTS_OFFSET * AUDIO_SAMPLE_RATE // timebase.CLOCK
            for pkt in packets:
                if pkt.pts is None:
                    continue
                pkt.stream = st
                pkt.pts = pkt.pts + offset
                pkt.dts = pkt.pts
                pkt.time_base = _AUDIO_TIME_BASE
                out.mux(pkt)
        finally:
            out.close()
        os.replace(tmp, path)
        return path.stat().st_size

    def close(self) -> None:
        self._holder.close()


class AudioCopy:
    """Passthrough audio: the source's AAC packets kept as they are and muxed per segment on the media
    clock. The same interface as ``AudioEncoder`` where the packager uses it; a gap in the source stays a
    gap (nothing is encoded, so there is no silence to fill it with)."""

    TOLERANCE_S = 0.015
    ENCODER_DELAY_S = 0.0

    def __init__(self, start: float = 0.0) -> None:
        self.packets: list[tuple[float, float, av.Packet[Any]]] = []  # (media time, duration, packet)
        self.encoded_until = start
        self.input_next = start
        self.open = True
        # The source's stream parameters, copied while its container is open: segments are written after
        # the source may be gone (the end of a file, a dropped publisher).
        self._holder: Any = None
        self.template: Any = None

    def start_period(self, media_time: float) -> None:
        self.open = True
        self.encoded_until = max(self.encoded_until, media_time)

    def push_packet(self, packet: av.Packet[Any], t: float, duration: float) -> None:
        if not self.open:
            self.start_period(t)
        if t + duration / 2 < self.encoded_until - self.TOLERANCE_S:
            return  # overlaps what is already kept: the first copy wins
        if self.template is None:
            self._holder = av.open(os.devnull, "w", format="mpegts")
            self.template = self._holder.add_stream_from_template(packet.stream)
        self.packets.append((t, duration, packet))
        self.encoded_until = max(self.encoded_until, t + duration)
        self.input_next = self.encoded_until

    def pad_to(self, media_time: float) -> None:
        pass

    def end_period(self, media_time: float) -> None:
        self.packets = [p for p in self.packets if p[0] + p[1] / 2 < media_time]
        self.open = False

    def take_until(self, media_time: float | None) -> list[tuple[float, float, av.Packet[Any]]]:
        if media_time is None:
            out, self.packets = self.packets, []
            return out
        out = [p for p in self.packets if p[0] + p[1] / 2 < media_time]
        self.packets = [p for p in self.packets if not p[0] + p[1] / 2 < media_time]
        return out

    def write_segment(self, packets: list[tuple[float, float, av.Packet[Any]]], path: Path) -> int:
        tmp = path.with_name(f".{path.name}.tmp")
        out = av.open(str(tmp), "w", format="mpegts", options=TS_OPTIONS)
        try:
            if packets and self.template is not None:
                st = out.add_stream_from_template(self.template)
                st.time_base = timebase.TIME_BASE
                for t, _, pkt in packets:
                    pkt.stream = st
                    pkt.pts = pkt.dts = timebase.media_to_pts(t)
                    pkt.time_base = timebase.TIME_BASE
                    out.mux(pkt)
        finally:
            out.close()
        os.replace(tmp, path)
        return path.stat().st_size

    def close(self) -> None:
        self.packets = []
        if self._holder is not None:
            self._holder.close()


def _silence_like(frame: av.AudioFrame, samples: int) -> av.AudioFrame:
    """``samples`` of silence in ``frame``'s format, layout and rate."""
    silent = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=max(1, samples))
    for plane in silent.planes:
        plane.update(bytes(plane.buffer_size))
    silent.sample_rate = frame.sample_rate
    return silent


def _trim_start(frame: av.AudioFrame, drop: int) -> av.AudioFrame:
    """``frame`` without its first ``drop`` samples."""
    arr = frame.to_ndarray()
    kept = arr[:, drop:] if frame.format.is_planar else arr[:, drop * len(frame.layout.channels):]
    out = av.AudioFrame.from_ndarray(cast(Any, np.ascontiguousarray(kept)), format=frame.format.name,
                                     layout=frame.layout.name)
    out.sample_rate = frame.sample_rate
    return out


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
