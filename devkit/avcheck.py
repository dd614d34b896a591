"""An independent reader of sidecast's HLS output: A/V sync and segment-duration truth.

It reads what a player would get, with Debian's ffprobe/ffmpeg (never sidecast's own code):
- every segment's real media duration from its packet timestamps, against its EXTINF;
- the sync markers of ``devkit.nasty`` clips: each white flash in the video against the nearest beep in
  the audio (their offset is the A/V sync error where it matters, mid-stream);
- the A/V offset at the end: where the last video frame ends against where the last audio sample ends.
"""

from __future__ import annotations

import bisect
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class SegmentTruth:
    uri: str
    extinf: float
    media: float

    @property
    def error(self) -> float:
        return abs(self.extinf - self.media)


@dataclass
class Report:
    video: list[SegmentTruth] = field(default_factory=list)
    audio: list[SegmentTruth] = field(default_factory=list)
    marker_offsets: list[float] = field(default_factory=list)  # beep time - flash time, seconds
    marker_periods: list[int] = field(default_factory=list)    # per marker: EXT-X-DISCONTINUITYs before it
    end_offset: float = 0.0          # audio end - video end, seconds
    video_seconds: float = 0.0
    audio_seconds: float = 0.0
    width: int = 0
    height: int = 0

    @property
    def worst_extinf_error(self) -> float:
        return max((s.error for s in self.video + self.audio), default=0.0)

    @property
    def worst_marker_offset(self) -> float:
        return max((abs(x) for x in self.marker_offsets), default=0.0)

    def line(self) -> str:
        return (f"A/V end offset {self.end_offset * 1000:+6.1f} ms, markers {len(self.marker_offsets)} "
                f"(worst {self.worst_marker_offset * 1000:5.1f} ms), worst |EXTINF-media| "
                f"{self.worst_extinf_error * 1000:5.1f} ms, video {self.video_seconds:.2f} s, "
                f"audio {self.audio_seconds:.2f} s, {self.width}x{self.height}")


def _playlist(path: Path) -> list[tuple[str, float, int]]:
    """(URI, EXTINF, period) per segment; the period counts the EXT-X-DISCONTINUITY tags before it."""
    out, dur, period = [], None, 0
    for ln in path.read_text().splitlines():
        if ln.startswith("#EXTINF:"):
            dur = float(ln.split(":", 1)[1].split(",", 1)[0])
        elif ln == "#EXT-X-DISCONTINUITY":
            period += 1
        elif ln and not ln.startswith("#") and dur is not None:
            out.append((ln, dur, period))
            dur = None
    return out


def _input(path: Path) -> list[str]:
    """FFmpeg's input arguments for a segment, with its container named as a player knows it (from the
    playlist): FFmpeg's own format probe takes a TS file of a few packets (the 43 ms of audio that end a
    period) for an MPEG program stream and then cannot decode it."""
    return (["-f", "mpegts"] if path.suffix == ".ts" else []) + ["-i", str(path)]


def _packets(path: Path) -> list[dict[str, float]]:
    r = subprocess.run(["ffprobe", "-v", "error", "-show_packets", "-show_entries",
                        "packet=codec_type,pts_time,duration_time", "-of", "json", *_input(path)],
                       capture_output=True, text=True, timeout=60, check=True)
    return [t for p in json.loads(r.stdout).get("packets", []) if (t := _timed(p)) is not None]


def _timed(p: dict[str, Any]) -> dict[str, float] | None:
    """One ffprobe packet as ``{"pts", "dur"}`` in seconds; None for a packet without a timestamp."""
    if "pts_time" not in p or p["pts_time"] in ("N/A", None):
        return None
    return {"pts": float(p["pts_time"]), "dur": float(p.get("duration_time") or 0)}


def _packets_of(segments: list[Path]) -> list[list[dict[str, float]]]:
    """``_packets`` of every segment, in one ffprobe run where they are all MPEG-TS: the segments are read as
    one stream (FFmpeg's ``concat:`` protocol, the bytes end to end, as a player's demuxer would get them) and
    each packet goes back to the segment its first byte came from (its ``pos``). A process per segment cost
    most of a check's CPU. Timestamp-overflow correction is off: across segments it would take a timestamp
    that goes back at a discontinuity for a 33-bit wrap (read one by one, no segment has either)."""
    if len(segments) < 2 or any(s.suffix != ".ts" or "|" in str(s) for s in segments):
        return [_packets(s) for s in segments]
    ends, total = [], 0
    for s in segments:
        total += s.stat().st_size
        ends.append(total)
    r = subprocess.run(["ffprobe", "-v", "error", "-correct_ts_overflow", "0", "-show_packets", "-show_entries",
                        "packet=stream_index,codec_type,pts_time,duration_time,pos", "-of", "json", "-f", "mpegts", "-i",
                        "concat:" + "|".join(str(s) for s in segments)],
                       capture_output=True, text=True, timeout=60, check=True)
    out: list[list[dict[str, float]]] = [[] for _ in segments]
    last: dict[int, int] = {}  # per stream, the segment of its last packet
    for p in json.loads(r.stdout).get("packets", []):
        # A PES of several AAC frames is split by FFmpeg's parser: the frames after its first have no position
        # of their own, and belong where their PES began.
        k = last[p["stream_index"]] = bisect.bisect_right(ends, int(p["pos"])) if "pos" in p else \
            last[p["stream_index"]]
        if (t := _timed(p)) is not None:
            out[k].append(t)
    return out


def _span(packets: list[dict[str, float]], frame_dur: float | None = None) -> tuple[float, float]:
    start = min(p["pts"] for p in packets)
    end = max(p["pts"] + (p["dur"] or (frame_dur or 0)) for p in packets)
    return start, end


def _flashes(seg: Path) -> list[float]:
    """Times of frames that are mostly white (luma average above mid-grey)."""
    r = subprocess.run(["ffprobe", "-v", "error", "-f", "lavfi", "-i", f"movie={seg},signalstats",
                        "-show_entries", "frame=pts_time:frame_tags=lavfi.signalstats.YAVG", "-of", "json"],
                       capture_output=True, text=True, timeout=60, check=True)
    out = []
    for fr in json.loads(r.stdout).get("frames", []):
        yavg = float(fr.get("tags", {}).get("lavfi.signalstats.YAVG", 0))
        if yavg > 128:
            out.append(float(fr["pts_time"]))
    return out


def _beeps(seg: Path, first_pts: float) -> list[float]:
    """Onsets of the 1 kHz beeps: where the 1 ms envelope rises through half the beep's level."""
    r = subprocess.run(["ffmpeg", "-v", "error", *_input(seg), "-f", "f32le", "-ac", "1", "-ar", "48000", "-"],
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"ffmpeg cannot decode {seg}: {r.stderr.decode(errors='replace')[-500:]}")
    pcm = np.frombuffer(r.stdout, np.float32)
    if pcm.size == 0:
        return []
    env = np.abs(pcm)
    win = 48
    env = np.convolve(env, np.ones(win) / win, mode="same")
    on = env > 0.15
    rises = np.flatnonzero(on[1:] & ~on[:-1]) + 1
    if on[0]:
        rises = np.concatenate([[0], rises])
    # a beep lasts 50 ms: keep the first rise of each
    onsets: list[int] = []
    for i in rises:
        if not onsets or i - onsets[-1] > 48_000 * 0.2:
            onsets.append(int(i))
    return [first_pts + (i - win / 2) / 48_000 for i in onsets]


def comb_score(path: Path) -> float:
    """How combed the pictures are: the mean difference between each line and the average of its two
    neighbours (interlaced motion makes alternate lines disagree). Decoded by FFmpeg's CLI."""
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                            "stream=width,height", "-of", "csv=p=0", str(path)],
                           capture_output=True, text=True, timeout=60, check=True)
    w, h = (int(x) for x in probe.stdout.strip().splitlines()[0].split(",")[:2])
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                       capture_output=True, timeout=120, check=True)
    frames = np.frombuffer(r.stdout, np.uint8)[: len(r.stdout) // (w * h) * w * h].reshape(-1, h, w).astype(np.int16)
    # |2·line - above - below| / 2 in integers (exact, and ~15x less CPU than the same in float32)
    return float(np.abs(2 * frames[:, 1:-1] - frames[:, :-2] - frames[:, 2:]).mean(dtype=np.float64)) / 2


def check(outdir: Path, fps: float) -> Report:
    """Read ``outdir`` (a finished sidecast run) and measure it."""
    frame_dur = 1 / fps
    master = (outdir / "master.m3u8").read_text().splitlines()
    variants = [ln for ln in master if ln and not ln.startswith("#")]
    video_pl = outdir / variants[-1]  # the lowest rung: cheapest to decode
    res = next(ln for ln in master if ln.startswith("#EXT-X-STREAM-INF"))
    w, h = (int(x) for x in res.split("RESOLUTION=")[1].split(",")[0].split("x"))
    report = Report(width=w, height=h)
    vend = 0.0
    vstart = None
    flashes: list[tuple[float, int]] = []
    video_list = _playlist(video_pl)
    video_packets = _packets_of([video_pl.parent / uri for uri, _, _ in video_list])
    for (uri, extinf, period), pk in zip(video_list, video_packets, strict=True):
        seg = video_pl.parent / uri
        if not pk:
            report.video.append(SegmentTruth(uri, extinf, 0.0))
            continue
        a, b = _span(pk, frame_dur)
        report.video.append(SegmentTruth(uri, extinf, b - a))
        vstart = a if vstart is None else vstart
        vend = max(vend, b)
        flashes += [(f, period) for f in _flashes(seg)]
    audio_pl = outdir / "audio" / "index.m3u8"
    aend = 0.0
    astart = None
    beeps: list[float] = []
    if audio_pl.exists():
        audio_list = _playlist(audio_pl)
        audio_packets = _packets_of([audio_pl.parent / uri for uri, _, _ in audio_list])
        for (uri, extinf, _), pk in zip(audio_list, audio_packets, strict=True):
            seg = audio_pl.parent / uri
            if not pk:
                report.audio.append(SegmentTruth(uri, extinf, 0.0))
                continue
            first, b = _span(pk)
            a = first
            if astart is None and vstart is not None:
                # The AAC encoder's priming packet starts before the stream (negative media time): it is
                # decoder warm-up, not media.
                a = max(first, vstart)
            report.audio.append(SegmentTruth(uri, extinf, b - a))
            astart = a if astart is None else astart
            aend = max(aend, b)
            beeps += _beeps(seg, first)
    report.video_seconds = vend - (vstart or 0.0)
    report.audio_seconds = aend - (astart or 0.0)
    report.end_offset = aend - vend if audio_pl.exists() else 0.0
    for f, period in flashes:
        near = min(beeps, key=lambda b: abs(b - f), default=None)
        if near is not None and abs(near - f) < 0.4:
            report.marker_offsets.append(near - f)
            report.marker_periods.append(period)
    return report


__all__ = ["check", "comb_score", "Report", "SegmentTruth"]
