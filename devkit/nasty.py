"""Nasty inputs for the A/V sync and segment-truth checks: short clips whose timestamps misbehave the ways
real sources do, each carrying sync markers.

Every second (of the source's own timeline) the picture flashes white for one frame and the audio beeps
(1 kHz, 50 ms) at exactly the same instant; the rest is black and silence. Whatever a case does to the
timestamps, a flash and its beep stay together in the source, so the output must keep them together too
(``devkit.avcheck`` measures that, reading the output with ffprobe and FFmpeg, not with sidecast's code).

Cases (``CASES``): variable frame rate with a 2.6 s freeze, a 2 s audio gap, audio starting 2 s after or
before the video, timestamps jumping forward (+30 s) and back (reset), corrupt packets, 29.97 and 59.94 fps,
audio-first and video-first interleaving, a portrait phone video (90° display matrix), interlaced 576i, a
truncated fast-start MP4, an odd frame size, and a picture size change mid-stream.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 48_000
BEEP_S = 0.05
MARK_EVERY_S = 1.0


@dataclass
class Case:
    name: str
    build: Callable[[Path], Path]
    duration: float                    # media seconds the output should hold
    fps: float = 30.0
    expect_error: str | None = None    # a one-line error the run must end with (and still publish)
    portrait: bool = False
    interlaced: bool = False
    notes: str = ""
    extra_args: tuple[str, ...] = field(default_factory=tuple)


def _marker_frame(w: int, h: int, flash: bool, fmt: str = "yuv420p") -> av.VideoFrame:
    img = np.full((h, w, 3), 235 if flash else 16, np.uint8)
    return av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format=fmt)


def _beep(t0: float, n: int) -> np.ndarray:
    """``n`` samples starting at source time ``t0``: a beep wherever a marker falls, silence elsewhere."""
    t = t0 + np.arange(n) / SAMPLE_RATE
    phase = np.mod(t, MARK_EVERY_S)
    on = (phase >= 0) & (phase < BEEP_S)
    return (0.5 * np.sin(2 * np.pi * 1000 * t) * on).astype(np.float32)


def write_clip(path: Path, *, seconds: float = 8.0, fps: Fraction = Fraction(30), size: tuple[int, int] = (320, 240),
               video_times: list[float] | None = None, audio_spans: list[tuple[float, float, float]] | None = None,
               fmt: str | None = None, interleave: str = "natural",
               video_options: dict[str, str] | None = None) -> Path:
    """Write a marker clip.

    ``video_times``: (source content time → written PTS seconds) is identity unless given as a list of
    content times to write; each entry may be a tuple (content_t, pts_t) to shift timestamps.
    ``audio_spans``: (content_start, content_end, pts_start) spans of audio to write.
    ``interleave``: "natural" (by time), "audio-first" (all audio of the first second before any video),
    "video-first".
    """
    w, h = size
    container = av.open(str(path), "w", format=fmt)
    vs = container.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": str(int(fps)),
                                                           **(video_options or {})})
    vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
    vs.time_base = Fraction(1, 90_000)
    vs.codec_context.time_base = Fraction(1, 90_000)
    aus = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
    aus.time_base = Fraction(1, SAMPLE_RATE)
    frame_dur = float(1 / fps)
    if video_times is None:
        n = int(round(seconds * float(fps)))
        video_times_list: list[tuple[float, float]] = [(i * frame_dur, i * frame_dur) for i in range(n)]
    else:
        video_times_list = [v if isinstance(v, tuple) else (v, v) for v in video_times]  # type: ignore[misc]
    if audio_spans is None:
        audio_spans = [(0.0, seconds, 0.0)]
    vpackets: list[tuple[float, av.Packet]] = []
    apackets: list[tuple[float, av.Packet]] = []
    for content_t, pts_t in video_times_list:
        flash = abs(content_t - round(content_t / MARK_EVERY_S) * MARK_EVERY_S) < frame_dur / 2
        frame = _marker_frame(w, h, flash)
        frame.pts = int(round(pts_t * 90_000))
        frame.time_base = Fraction(1, 90_000)
        for p in vs.encode(frame):
            vpackets.append((float(p.pts * p.time_base), p))
    for p in vs.encode(None):
        vpackets.append((float(p.pts * p.time_base), p))
    for c0, c1, p0 in audio_spans:
        n = int(round((c1 - c0) * SAMPLE_RATE))
        pcm = _beep(c0, n)
        pos = 0
        while pos < n:
            chunk = pcm[pos: pos + 1024]
            frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = int(round(p0 * SAMPLE_RATE)) + pos
            frame.time_base = Fraction(1, SAMPLE_RATE)
            for p in aus.encode(frame):
                apackets.append((float(p.pts * p.time_base), p))
            pos += len(chunk)
    for p in aus.encode(None):
        apackets.append((float(p.pts * p.time_base), p))
    if interleave == "audio-first":
        order = [x for x in apackets if x[0] < 1.0] + sorted(
            [x for x in apackets if x[0] >= 1.0] + vpackets, key=lambda x: x[0])
    elif interleave == "video-first":
        order = [x for x in vpackets if x[0] < 1.0] + sorted(
            [x for x in vpackets if x[0] >= 1.0] + apackets, key=lambda x: x[0])
    else:
        order = sorted(vpackets + apackets, key=lambda x: x[0])
    for _, p in order:
        container.mux(p)
    container.close()
    return path


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True,
                   timeout=120)


# ------------------------------------------------------------------ the cases


def plain(path: Path) -> Path:
    return write_clip(path.with_suffix(".mp4"), seconds=6.0)


def vfr_freeze(path: Path) -> Path:
    """30 fps with a 2.6 s freeze at 3 s (no frames), audio continuous: 10 s in all."""
    fd = 1 / 30
    times = [i * fd for i in range(90)] + [5.6 + i * fd for i in range(132)]
    return write_clip(path.with_suffix(".mkv"), seconds=10.0, video_times=times)


def audio_gap(path: Path) -> Path:
    """Audio missing from 3 to 5 s (its timestamps jump), video continuous."""
    return write_clip(path.with_suffix(".mkv"), seconds=8.0, audio_spans=[(0.0, 3.0, 0.0), (5.0, 8.0, 5.0)])


def audio_late(path: Path) -> Path:
    return write_clip(path.with_suffix(".mkv"), seconds=8.0, audio_spans=[(2.0, 8.0, 2.0)])


def audio_early(path: Path) -> Path:
    """Audio from -2 s: it starts 2 s before the first video frame."""
    fd = 1 / 30
    times = [(2.0 + i * fd, 2.0 + i * fd) for i in range(180)]
    return write_clip(path.with_suffix(".mkv"), seconds=8.0, video_times=times, audio_spans=[(0.0, 8.0, 0.0)])


def jump_forward(path: Path) -> Path:
    """Both clocks jump +30 s at content time 4 s (an encoder restart); content is continuous."""
    fd = 1 / 30
    times = [(i * fd, i * fd + (30.0 if i * fd >= 4.0 else 0.0)) for i in range(240)]
    return write_clip(path.with_suffix(".ts"), seconds=8.0, fmt="mpegts", video_times=times,
                      audio_spans=[(0.0, 4.0, 0.0), (4.0, 8.0, 34.0)])


def jump_back(path: Path) -> Path:
    """Both clocks reset to 0 at content time 4 s (a timestamp reset)."""
    fd = 1 / 30
    a = write_clip(path.with_suffix(".a.ts"), fmt="mpegts", video_times=[(i * fd, 1.0 + i * fd) for i in range(120)],
                   audio_spans=[(0.0, 4.0, 1.0)])
    b = write_clip(path.with_suffix(".b.ts"), fmt="mpegts",
                   video_times=[(4.0 + i * fd, 1.0 + i * fd) for i in range(120)], audio_spans=[(4.0, 8.0, 1.0)])
    out = path.with_suffix(".ts")
    out.write_bytes(a.read_bytes() + b.read_bytes())
    return out


def corrupt(path: Path) -> Path:
    """An MPEG-TS clip with a run of damaged bytes in the middle."""
    src = write_clip(path.with_suffix(".clean.ts"), seconds=8.0, fmt="mpegts")
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(7)
    mid = len(data) // 2
    for start in (mid, mid + 40_000):
        data[start: start + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    out = path.with_suffix(".ts")
    out.write_bytes(bytes(data))
    return out


def ntsc(path: Path) -> Path:
    return write_clip(path.with_suffix(".mp4"), seconds=6.0, fps=Fraction(30000, 1001))


def ntsc60(path: Path) -> Path:
    return write_clip(path.with_suffix(".mp4"), seconds=6.0, fps=Fraction(60000, 1001))


def audio_first(path: Path) -> Path:
    return write_clip(path.with_suffix(".ts"), seconds=6.0, fmt="mpegts", interleave="audio-first")


def video_first(path: Path) -> Path:
    return write_clip(path.with_suffix(".ts"), seconds=6.0, fmt="mpegts", interleave="video-first")


def portrait(path: Path) -> Path:
    """A phone video: stored 320x240 landscape with a 90° display matrix, shown 240x320 portrait."""
    src = write_clip(path.with_suffix(".land.mp4"), seconds=4.0)
    out = path.with_suffix(".mp4")
    _ffmpeg("-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out))
    return out


def interlaced(path: Path) -> Path:
    """576i: a moving bar encoded as interlaced fields (x264 --tff), the way broadcast SD arrives."""
    out = path.with_suffix(".ts")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x576:rate=50,format=yuv420p,tinterlace=interleave_top,"
            "fieldorder=tff", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
            "-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-flags", "+ildct+ilme", "-x264opts", "tff=1",
            "-c:a", "aac", str(out))
    return out


def truncated(path: Path) -> Path:
    """A fast-start MP4 (index first) cut at half its size: the index promises 10 s, the data holds ~5."""
    src = write_clip(path.with_suffix(".full.mp4"), seconds=10.0)
    faststart = path.with_suffix(".fs.mp4")
    _ffmpeg("-i", str(src), "-c", "copy", "-movflags", "+faststart", str(faststart))
    data = faststart.read_bytes()
    out = path.with_suffix(".mp4")
    out.write_bytes(data[: len(data) // 2])
    return out


def odd_size(path: Path) -> Path:
    """1366x767, as screen captures come: odd height, so 4:4:4 (4:2:0 needs even sizes)."""
    out = path.with_suffix(".mkv")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1366x767:rate=30", "-f", "lavfi", "-i",
            "sine=frequency=1000:sample_rate=48000", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
            "-pix_fmt", "yuv444p", "-c:a", "aac", str(out))
    return out


def size_change(path: Path) -> Path:
    """MPEG-TS whose picture goes from 320x240 to 480x270 at 3 s (a new SPS mid-stream)."""
    fd = 1 / 30
    a = write_clip(path.with_suffix(".a.ts"), seconds=3.0, fmt="mpegts", audio_spans=[])
    b = write_clip(path.with_suffix(".b.ts"), size=(480, 270), fmt="mpegts", audio_spans=[],
                   video_times=[(3.0 + i * fd, 3.0 + i * fd) for i in range(90)])
    video = path.with_suffix(".v.ts")
    video.write_bytes(a.read_bytes() + b.read_bytes())
    sound = write_clip(path.with_suffix(".a.mkv"), seconds=6.0, video_times=[])  # one continuous audio track
    out = path.with_suffix(".ts")
    _ffmpeg("-i", str(video), "-i", str(sound), "-map", "0:v", "-map", "1:a", "-c", "copy", "-f", "mpegts", str(out))
    return out


CASES: dict[str, Case] = {c.name: c for c in [
    Case("plain", plain, 6.0),
    Case("vfr_freeze", vfr_freeze, 10.0, notes="2.6 s freeze filled with repeated frames"),
    Case("audio_gap", audio_gap, 8.0, notes="2 s audio gap filled with silence"),
    Case("audio_late", audio_late, 8.0, notes="audio starts 2 s after video"),
    Case("audio_early", audio_early, 6.0, notes="audio starts 2 s before video: trimmed"),
    Case("jump_forward", jump_forward, 8.0, notes="+30 s timestamp jump: discontinuity, no hole"),
    Case("jump_back", jump_back, 8.0, notes="timestamps reset: continues without a hole"),
    Case("corrupt", corrupt, 8.0, notes="damaged packets skipped"),
    Case("ntsc_29.97", ntsc, 6.0, fps=30000 / 1001),
    Case("ntsc_59.94", ntsc60, 6.0, fps=60000 / 1001),
    Case("audio_first", audio_first, 6.0),
    Case("video_first", video_first, 6.0),
    Case("portrait", portrait, 4.0, portrait=True),
    Case("interlaced_576i", interlaced, 4.0, fps=25.0, interlaced=True, extra_args=("--ladder", "576p:2500k")),
    Case("truncated", truncated, 3.0, expect_error="is truncated", notes="the first half of the file holds 3 s"),
    Case("odd_size", odd_size, 4.0),
    Case("size_change", size_change, 6.0),
]}

__all__ = ["CASES", "Case", "write_clip", "MARK_EVERY_S", "BEEP_S"]
