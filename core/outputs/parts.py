"""Low-latency video: one segment of one rendition encoded to CMAF parts as its frames arrive.

x264 runs with no B-frames, no look-ahead and sliced threads (``tune=zerolatency``), so a frame's
compressed sample comes out as the frame goes in; every ``part_frames`` frames the samples become a part
(``seg_NNNNNN-K.m4s``: one ``moof``+``mdat``), written into place at once and announced to the playlist.
When the segment closes, its full file (``seg_NNNNNN.m4s``: the parts back to back) is written for players
that do not do low latency. The first part of every segment starts with an IDR (INDEPENDENT=YES); the
rendition's ``init.mp4`` is written from the first keyframe's parameter sets.

A sample's duration is the time to the next frame, known when the next frame is handed over, so a part is
published one frame after its last frame was read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.video.reformatter import VideoReformatter

from sidecast.contract.encoding import x264_options
from sidecast.hls import timebase
from sidecast.hls.live import atomic_write

from .. import fmp4, media


def low_latency_options(crf: float | None, max_bitrate: int, keyint: int) -> dict[str, str]:
    """The core's x264 settings, minus what delays a frame: B-frames, look-ahead, frame threads."""
    opts = dict(x264_options(crf, max_bitrate, keyint))
    params = [p for p in opts["x264-params"].split(":") if not p.startswith(("bframes=", "rc-lookahead="))]
    opts["x264-params"] = ":".join([*params, "bframes=0", "rc-lookahead=0", "sync-lookahead=0", "sliced-threads=1"])
    opts["tune"] = "zerolatency"
    return opts


def part_name(segment: int, part: int) -> str:
    return f"seg_{segment:06d}-{part}.m4s"


@dataclass
class PartReady:
    segment: int
    part: int
    uri: str
    duration: float
    independent: bool


def encoder_threads(cpus: int, encoders: int) -> int:
    """x264 threads for each of ``encoders`` low-latency encoders running at once on ``cpus`` cores: their
    share of the cores, at least one. Sliced threads split every frame into one slice per thread; a ladder
    already runs its renditions' encoders in parallel, so on a machine with fewer cores than renditions
    more slices only add thread hand-offs and slice headers (2026-12-01, 720p30 on this 2-core box: one
    thread against x264's automatic count (a slice per core), about 1 point of a core less per rendition and 3-4 % fewer bits at
    the same CRF). A frame coded by one thread still takes a few milliseconds, against a 1/3 s part."""
    return max(1, cpus // max(1, encoders))


class PartEncoder:
    """Encodes one segment of one rendition into parts (the interface of ``media.SegmentEncoder``).
    ``threads``: x264 threads (0: x264's automatic count; see ``encoder_threads``)."""

    def __init__(self, directory: Path, segment: int, width: int, height: int, fps: Fraction, crf: float | None,
                 max_bitrate: int, keyint: int, part_frames: int, fragmenter: fmp4.Fragmenter,
                 init_written: Callable[[], bool], write_init: Callable[[bytes], None],
                 on_part: Callable[[PartReady], None], threads: int = 0) -> None:
        self.dir, self.segment = directory, segment
        self.width, self.height = width, height
        self.part_frames = max(1, part_frames)
        self.fragmenter = fragmenter
        self.init_written, self.write_init, self.on_part = init_written, write_init, on_part
        self.cc = av.CodecContext.create("libx264", "w")
        self.cc.width, self.cc.height, self.cc.pix_fmt = width, height, "yuv420p"
        self.cc.time_base = timebase.TIME_BASE
        self.cc.framerate = fps
        self.cc.options = low_latency_options(crf, max_bitrate, keyint)
        if threads > 0:  # 0: x264's own choice (1.5 threads a core, one slice each)
            self.cc.thread_count = threads
        self.scaler = VideoReformatter()
        self.times: list[float] = []                                   # media times of the frames handed over
        self.samples: list[tuple[int, bytes, bool]] = []               # (pts, AVCC data, keyframe), not yet in a part
        self.parts: list[bytes] = []
        self.frames = 0
        self.codecs = "avc1.64001f"
        self.nominal = 1 / float(fps) if fps else 1 / 30

    def encode(self, frame: av.VideoFrame, t: float, crop: tuple[int, int, int, int] | None = None) -> None:
        out = media.rendition_frame(frame, self.width, self.height, self.scaler, crop)
        out.pts = timebase.media_to_pts(t)
        out.time_base = timebase.TIME_BASE
        out.pict_type = av.video.frame.PictureType.I if self.frames == 0 else av.video.frame.PictureType.NONE
        self.frames += 1
        self.times.append(t)
        for pkt in self.cc.encode(out):
            self._take(pkt)
        self._emit(final=False)

    def _take(self, pkt: av.Packet) -> None:  # type: ignore[type-arg]
        data, sps, pps = fmp4.avc_sample(bytes(pkt))
        if sps and pps and not self.init_written():
            self.write_init(fmp4.video_init(self.width, self.height, sps, pps))
        if sps and self.codecs == "avc1.64001f":
            self.codecs = f"avc1.{sps[0][1]:02x}{sps[0][2]:02x}{sps[0][3]:02x}"
        if pkt.pts is not None:
            self.samples.append((int(pkt.pts), data, bool(pkt.is_keyframe)))

    def _duration_after(self, pts: int, end: float | None) -> int:
        """90 kHz duration of the sample at ``pts``: to the next frame handed over, or to the segment's end."""
        t = (pts - timebase.PTS_OFFSET) / timebase.CLOCK
        later = [x for x in self.times if x > t + 1e-6]
        nxt = min(later) if later else (end if end is not None else t + self.nominal)
        return max(1, round((nxt - t) * timebase.CLOCK))

    def _emit(self, final: bool, end: float | None = None) -> None:
        while self.samples and (final or len(self.samples) >= self.part_frames):
            take = self.samples[: self.part_frames] if not final else self.samples[: self.part_frames]
            if not final:
                # the last sample's duration needs the next frame's time: wait for it
                last_t = (take[-1][0] - timebase.PTS_OFFSET) / timebase.CLOCK
                if not any(x > last_t + 1e-6 for x in self.times):
                    return
            self.samples = self.samples[len(take):]
            samples = [fmp4.Sample(data, self._duration_after(pts, end), key) for pts, data, key in take]
            data = self.fragmenter.fragment(take[0][0], samples)
            k = len(self.parts)
            name = part_name(self.segment, k)
            atomic_write(self.dir / name, data)
            self.parts.append(data)
            self.on_part(PartReady(self.segment, k, name, sum(s.duration for s in samples) / timebase.CLOCK,
                                   take[0][2]))

    def close(self, duration: float) -> media.SegmentStats:
        for pkt in self.cc.encode(None):
            self._take(pkt)
        end = self.times[0] + duration if self.times else None
        self._emit(final=True, end=end)
        path = self.dir / f"seg_{self.segment:06d}.m4s"
        atomic_write(path, b"".join(self.parts))
        return media.SegmentStats(path=path, bytes=path.stat().st_size, duration=duration, codecs=self.codecs,
                                  frames=self.frames)

    def abort(self) -> None:
        self.samples = []


__all__ = ["PartEncoder", "PartReady", "encoder_threads", "low_latency_options", "part_name"]
