"""Encode a segment the way the core does and measure its VMAF: the yardstick of the corpus and the bench.

Encoding uses PyAV's libx264 with ``core.ladder.x264_options`` (capped CRF, one closed GOP per segment),
so a training label means exactly what it will mean in the core. VMAF (model vmaf_v0.6.1, built into
libvmaf) is measured with the static FFmpeg shipped in the ``imageio-ffmpeg`` wheel, because Debian's and
PyAV's FFmpeg are built without libvmaf. Quality is measured at the *display size* of the rendition (its
declared RESOLUTION, the size a player that picked it for a viewport of that size shows it at): an encode
made smaller than its rendition is scaled back up (bicubic) before it is compared, and the reference is the
source scaled to the display size with the same scaler the encode input used. PSNR (luma) and SSIM come
from the same libvmaf pass when asked for.

Training and benchmarking only: the sidecar itself never imports this module.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sidecast.contract.encoding import X264_PRESET, x264_options
from sidecast.core import anchor
from sidecast.sidecars.bitrate.features import ANALYSIS_FPS, analysis_size


@dataclass
class Segment:
    """One segment of a source clip: its analysis frames, and its source frames scaled to any size asked."""

    clip: str
    index: int
    fps: Fraction
    analysis: list[np.ndarray]  # gray8 frames at ANALYSIS_FPS, ANALYSIS_WIDTH wide
    source: list[av.VideoFrame]  # the source frames (yuv420p)
    _sized: dict[tuple[int, int], list[av.VideoFrame]] | None = None

    def at(self, height: int, width: int | None = None) -> list[av.VideoFrame]:
        """The source frames scaled (bicubic, as the core's encoder input) to ``height`` (width: aspect)."""
        src_w, src_h = self.source[0].width, self.source[0].height
        w = width or even(src_w * height / src_h)
        if self._sized is None:
            self._sized = {}
        key = (w, height)
        if key not in self._sized:
            if (w, height) == (src_w, src_h):
                self._sized[key] = self.source
            else:
                self._sized[key] = [fr.reformat(width=w, height=height, format="yuv420p", interpolation="BICUBIC")
                                    for fr in self.source]
        return self._sized[key]

    def drop_sizes(self) -> None:
        self._sized = None


def ffmpeg_exe() -> str:
    """The libvmaf-enabled FFmpeg from imageio-ffmpeg (a dev dependency), with a message if it is missing."""
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - dev extra missing
        raise RuntimeError("VMAF needs the imageio-ffmpeg wheel: pip install -e '.[dev]'") from exc
    return str(imageio_ffmpeg.get_ffmpeg_exe())


def even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def load_segments(path: Path, clip: str, heights: Sequence[int] = (), segment_duration: float = 2.0
                  ) -> list[Segment]:
    """Decode a (lossless) source clip into whole segments, keeping analysis frames and source frames
    (``heights``: sizes to prepare now; any other is scaled on first use)."""
    segments: list[Segment] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        fps = Fraction(stream.average_rate or 25)
        per_segment = int(round(float(fps) * segment_duration))
        frames: list[av.VideoFrame] = []
        for frame in container.decode(stream):
            frames.append(frame)
    n_segments = len(frames) // per_segment
    for s in range(n_segments):
        chunk = frames[s * per_segment:(s + 1) * per_segment]
        src_w, src_h = chunk[0].width, chunk[0].height
        aw, ah = analysis_size(src_w, src_h)
        analysis = []
        next_t = 0.0
        for i, fr in enumerate(chunk):
            t = i / float(fps)
            if t + 1e-6 >= next_t:
                analysis.append(fr.reformat(width=aw, height=ah, format="gray").to_ndarray())
                next_t += 1.0 / ANALYSIS_FPS
        src = [fr if fr.format.name == "yuv420p" else fr.reformat(format="yuv420p") for fr in chunk]
        seg = Segment(clip, s, fps, analysis, src)
        for h in heights:
            seg.at(h)
        segments.append(seg)
    return segments


def write_y4m(frames: Sequence[av.VideoFrame], fps: Fraction, path: Path) -> None:
    """Raw reference for libvmaf (lossless, carries size and rate in its header): the core anchor's writer."""
    with open(path, "wb") as f:
        anchor.write_y4m(f, frames, fps, frames[0].width, frames[0].height)


def encode(frames: Sequence[av.VideoFrame], fps: Fraction, crf: float | None, max_bitrate: int, path: Path,
           preset: str = X264_PRESET, extra: str = "") -> int:
    """Encode one segment as the core does (fresh encoder, keyint = segment length); returns its bits.

    ``crf=None`` is the fixed-bitrate static ladder: one-pass ABR at ``max_bitrate`` (``core.ladder``).
    ``extra``: x264 parameters appended to the core's (``aq-mode=3``: candidates the core does not use)."""
    options = dict(x264_options(crf, max_bitrate, keyint=len(frames), preset=preset))
    if extra:
        options["x264-params"] += ":" + extra
    bits = 0
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].width, frames[0].height
        stream.pix_fmt = "yuv420p"
        stream.options = options  # type: ignore[assignment]
        for i, fr in enumerate(frames):
            fr.pts = i
            fr.time_base = Fraction(1) / fps
            for pkt in stream.encode(fr):
                bits += pkt.size * 8
                out.mux(pkt)
        for pkt in stream.encode(None):
            bits += pkt.size * 8
            out.mux(pkt)
    return bits


@dataclass(frozen=True)
class Scores:
    vmaf: float
    psnr: float = float("nan")  # luma PSNR, dB (mean over frames)
    ssim: float = float("nan")  # luma SSIM (float_ssim)


def vmaf(distorted: Path, reference: Path, fps: Fraction, threads: int = 2, subsample: int = 1) -> float:
    """Mean VMAF (vmaf_v0.6.1) of an encode against its reference (scaled up to the reference's size)."""
    return scores(distorted, reference, fps, threads, subsample).vmaf


def scores(distorted: Path, reference: Path, fps: Fraction, threads: int = 2, subsample: int = 1,
           psnr_ssim: bool = False) -> Scores:
    """Mean VMAF (vmaf_v0.6.1), and with ``psnr_ssim`` luma PSNR and SSIM, of an encode against its reference.

    An encode smaller than the reference is scaled up to it (bicubic) first: quality at the display size.
    ``subsample`` scores every n-th frame only (libvmaf ``n_subsample``; the corpus uses 3 to save time).
    Both inputs are re-stamped frame by frame (N-th frame at N/fps) before libvmaf pairs them: Matroska's
    millisecond clock and the y4m's exact rate disagree at 30 fps, and libvmaf's time-based pairing would
    then compare neighbouring frames and report a motion clip as badly encoded.
    """
    log = distorted.with_suffix(".vmaf.json")
    tb = f"{fps.denominator}/{fps.numerator}"
    with open(reference, "rb") as fh:
        header = fh.readline().decode().split()
    rw = next(int(t[1:]) for t in header if t.startswith("W"))
    rh = next(int(t[1:]) for t in header if t.startswith("H"))
    feats = ":feature=name=psnr|name=float_ssim" if psnr_ssim else ""
    graph = (f"[0:v]scale={rw}:{rh}:flags=bicubic,settb={tb},setpts=N[d];[1:v]settb={tb},setpts=N[r];"
             f"[d][r]libvmaf=n_threads={threads}:n_subsample={subsample}{feats}:log_fmt=json:log_path={log}")
    cmd = [
        # -reinit_filter 0: a rendition playlist whose segments change size (the measured size decision) keeps one
        # graph; a rebuilt one restarts setpts=N at 0 and libvmaf pairs the rest with the reference's first frames
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-reinit_filter", "0", "-i", str(distorted),
        "-i", str(reference),
        "-lavfi", graph, "-f", "null", "-",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"libvmaf failed: {proc.stderr.strip()[-400:]}")
    data = json.loads(log.read_text())["pooled_metrics"]
    log.unlink()
    if psnr_ssim:
        return Scores(float(data["vmaf"]["mean"]), float(data["psnr_y"]["mean"]), float(data["float_ssim"]["mean"]))
    return Scores(float(data["vmaf"]["mean"]))
