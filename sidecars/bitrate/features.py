"""Content features of one segment, computed from the small gray frames the sidecar analyses.

These numbers are what the rate model sees: how detailed the picture is (spatial information, edges,
high-frequency energy), how much it changes (temporal information, frame differences, scene cuts) and
how much of that change a motion search can predict (global motion and the residual left after it), and
what an actual encoder makes of it: a tiny probe encode of the analysis frames (x264 ultrafast at a fixed
QP), whose intra and inter bits per pixel are the best single predictors of a segment's rate and of how
fast its quality falls with CRF (grain and fine text show there, even when a 256-px frame hides them).
The same function runs in the sidecar, in the corpus builder and in the bench, so the model is trained on
exactly the numbers it is later fed.

Frames are expected at the analysis rate and size the sidecar asks for (``ANALYSIS_FPS``,
``ANALYSIS_WIDTH``): differences between frames are 1/ANALYSIS_FPS s apart, not one source frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np

ANALYSIS_FPS = 10.0
ANALYSIS_WIDTH = 1280  # what the sidecar asks the core for: the detail a smaller encode loses is only there
STATS_WIDTH = 256  # the classic statistics and the probe encode run on the frame scaled to this width
DETAIL_EVERY = 4  # the detail bands are measured on every 4th analysed frame (they cost ~3 ms a frame)
# Widths of the detail pyramid, as fractions of the analysed width: band k is what scaling level k down to
# level k+1 loses. For a 1280-px analysis: 1280->960, 960->640, 640->480, 480->320, the bands a 720p, 480p
# or 360p rung loses when encoded at 0.75 or 0.5 of its size.
DETAIL_LEVELS = (1.0, 0.75, 0.5, 0.375, 0.25)

FEATURE_NAMES: tuple[str, ...] = (
    "si_mean",  # ITU-T P.910 spatial information (std of the Sobel magnitude), mean over frames
    "si_max",  # the P.910 figure proper: its maximum
    "ti_mean",  # P.910 temporal information (std of the frame difference), mean over frame pairs
    "ti_max",
    "mad_mean",  # mean absolute frame difference
    "residual_mean",  # mean absolute difference left after compensating global (camera) motion
    "motion_mean",  # global motion, fraction of the frame width per analysed frame
    "cut_rate",  # fraction of frame pairs that are scene cuts
    "edge_density",  # fraction of pixels on a strong edge
    "hf_energy",  # mean absolute high-pass (frame minus its blur)
    "luma_mean",
    "luma_std",
    "probe_intra_bpp",  # bits per pixel of the probe encode's first (intra) frame
    "probe_inter_bpp",  # mean bits per pixel of its predicted frames
    # detail bands of the full-size analysed frame: mean absolute error of one pyramid level scaled to the
    # next and back (DETAIL_LEVELS): the detail a smaller encode of a rung cannot keep, whatever its bit rate
    "band_1280_960",
    "band_960_640",
    "band_640_480",
    "band_480_320",
    # fraction of 8x8 blocks (of the 256-px frame) that are flat (std < 1 level): the large uniform areas of
    # screen content and slides, which natural footage, its noise and grain never have
    "flat_ratio",
)
N_FEATURES = len(FEATURE_NAMES)

PROBE_QP = 28  # fixed quantiser: the bits are a pure measure of complexity
_EDGE_THRESHOLD = 96.0  # Sobel magnitude (8-bit scale) counted as a strong edge
_CUT_HIST_DISTANCE = 0.5  # half the histogram mass moved between two frames: a cut
_FLAT_BLOCK = 8  # block size (pixels of the 256-px frame) of the flat-area ratio
_FLAT_VAR = 1.0  # a block with a variance under this (8-bit levels squared) is flat


class FeatureError(ValueError):
    """The frames cannot be analysed (wrong shape or type); the message says what was wrong."""


def _check(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.ndim != 2:
        shape = getattr(frame, "shape", None)
        raise FeatureError(f"expected a 2-D gray8 frame, got shape {shape}")
    if frame.dtype != np.uint8:
        raise FeatureError(f"expected uint8 gray pixels, got {frame.dtype}")
    if frame.shape[0] < 16 or frame.shape[1] < 16:
        raise FeatureError(f"frame {frame.shape[1]}x{frame.shape[0]} is too small to analyse (min 16x16)")
    return frame


class FrameStats:
    """Per-frame numbers kept while a segment fills, so each frame is analysed once, on arrival."""

    __slots__ = ("si", "edges", "hf", "luma_mean", "luma_std", "hist", "small", "tiny", "flat", "bands", "gray")

    def __init__(self, frame: np.ndarray, detail: bool = True) -> None:
        _check(frame)
        self.bands = detail_bands(frame) if detail else None
        if frame.shape[1] > STATS_WIDTH:
            h = max(16, int(round(frame.shape[0] * STATS_WIDTH / frame.shape[1] / 2.0)) * 2)
            frame = cv2.resize(frame, (STATS_WIDTH, h), interpolation=cv2.INTER_AREA)
        self.gray = frame  # what the probe encoder gets
        # OpenCV's reductions (double accumulators) instead of numpy's: the same numbers, a third of the cost
        f = frame.astype(np.float32)
        gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
        mag = cv2.magnitude(gx, gy)
        self.si = float(cv2.meanStdDev(mag)[1][0, 0])
        self.edges = np.count_nonzero(mag > _EDGE_THRESHOLD) / mag.size
        self.hf = cv2.norm(f, cv2.GaussianBlur(f, (5, 5), 1.2), cv2.NORM_L1) / f.size
        mean, std = cv2.meanStdDev(frame)
        self.luma_mean, self.luma_std = float(mean[0, 0]), float(std[0, 0])
        hist = cv2.calcHist([frame], [0], None, [16], [0, 256]).ravel()  # 16 bins of 16 levels
        self.hist = hist / max(float(hist.sum()), 1.0)
        self.small = f
        # the global-motion search runs at half this size: a quarter of the cost of the phase correlation,
        # and the shift is still sub-pixel (the residual is measured at full stats size)
        self.tiny = cv2.resize(f, (max(8, f.shape[1] // 2), max(8, f.shape[0] // 2)), interpolation=cv2.INTER_AREA)
        bw, bh = f.shape[1] // _FLAT_BLOCK, f.shape[0] // _FLAT_BLOCK
        if bw and bh:
            crop = f[:bh * _FLAT_BLOCK, :bw * _FLAT_BLOCK]
            m = cv2.resize(crop, (bw, bh), interpolation=cv2.INTER_AREA)
            m2 = cv2.resize(crop * crop, (bw, bh), interpolation=cv2.INTER_AREA)
            self.flat = float(np.count_nonzero(m2 - m * m < _FLAT_VAR) / m.size)
        else:
            self.flat = 0.0


def detail_bands(frame: np.ndarray) -> tuple[float, ...]:
    """Per band of ``DETAIL_LEVELS``: mean absolute error of that pyramid level scaled to the next and back
    (bilinear both ways, in 8 bits: fast), in 8-bit levels. Measured on the central half of the frame
    (a quarter of its pixels), the part viewers look at, to keep the cost ~1 ms."""
    h, w = frame.shape
    level = frame[h // 4:h // 4 + max(16, h // 2), w // 4:w // 4 + max(16, w // 2)]
    ch, cw = level.shape
    out = []
    for b in DETAIL_LEVELS[1:]:
        size = (max(2, int(round(cw * b))), max(2, int(round(ch * b))))
        small = cv2.resize(level, size, interpolation=cv2.INTER_LINEAR)
        back = cv2.resize(small, (level.shape[1], level.shape[0]), interpolation=cv2.INTER_LINEAR)
        out.append(float(cv2.mean(cv2.absdiff(level, back))[0]))
        level = small
    return tuple(out)


def pair_stats(prev: FrameStats, cur: FrameStats) -> tuple[float, float, float, float, bool]:
    """TI, MAD, motion-compensated residual, global motion and cut flag between two frames."""
    a, b = prev.small, cur.small
    if a.shape != b.shape:
        return 0.0, 0.0, 0.0, 0.0, True  # a size change is a cut as far as the encoder is concerned
    ti = float(cv2.meanStdDev(cv2.subtract(b, a))[1][0, 0])
    mad = cv2.norm(b, a, cv2.NORM_L1) / a.size
    h, w = a.shape
    (dx, dy), _ = cv2.phaseCorrelate(prev.tiny, cur.tiny)
    dx, dy = dx * w / prev.tiny.shape[1], dy * h / prev.tiny.shape[0]
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32)
    shifted = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mx, my = int(min(abs(dx), w // 4)) + 1, int(min(abs(dy), h // 4)) + 1
    inner_b, inner_s = b[my:h - my, mx:w - mx], shifted[my:h - my, mx:w - mx]
    residual = cv2.norm(inner_b, inner_s, cv2.NORM_L1) / max(inner_b.size, 1)
    residual = min(residual, mad)  # a wrong shift estimate must not look worse than no compensation
    motion = float(np.hypot(dx, dy) / w)
    cut = float(np.abs(cur.hist - prev.hist).sum()) / 2.0 > _CUT_HIST_DISTANCE
    return ti, mad, residual, motion, cut


def features_from_stats(frames: Sequence[FrameStats], pairs: Sequence[tuple[float, float, float, float, bool]],
                        probe: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The feature vector (``FEATURE_NAMES`` order) of a segment from its per-frame and per-pair stats and its
    probe encode's (intra, inter) bits per pixel."""
    if not frames:
        raise FeatureError("a segment with no analysed frames has no features")
    si = np.array([s.si for s in frames])
    measured = [s.bands for s in frames if s.bands is not None]
    bands = np.mean(measured, axis=0) if measured else np.zeros(len(DETAIL_LEVELS) - 1)
    if pairs:
        ti = np.array([p[0] for p in pairs])
        mad = np.array([p[1] for p in pairs])
        res = np.array([p[2] for p in pairs])
        mot = np.array([p[3] for p in pairs])
        cuts = np.array([p[4] for p in pairs], dtype=np.float64)
    else:  # one frame: a still, as far as we can tell
        ti = mad = res = mot = cuts = np.zeros(1)
    return np.array(
        [
            si.mean(), si.max(), ti.mean(), ti.max(), mad.mean(), res.mean(), mot.mean(), cuts.mean(),
            np.mean([s.edges for s in frames]), np.mean([s.hf for s in frames]),
            np.mean([s.luma_mean for s in frames]), np.mean([s.luma_std for s in frames]),
            probe[0], probe[1],
            *bands,
            np.mean([s.flat for s in frames]),
        ],
        dtype=np.float32,
    )


class ProbeEncoder:
    """A tiny x264 encode of one segment's analysis frames (ultrafast, fixed QP, one GOP, no B-frames).

    Frames are encoded as they arrive, so a segment's close only flushes the encoder. The gray frames go in
    as yuv420p with neutral chroma (what the sidecar is sent is luma only).
    """

    def __init__(self) -> None:
        self._ctx: Any = None  # av.VideoCodecContext (PyAV's stubs type create() as the base class)
        self._bits: list[int] = []
        self._buf: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None
        self._n = 0

    def _open(self, w: int, h: int) -> Any:
        ctx: Any = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
        ctx.time_base = Fraction(1, 10)
        ctx.framerate = Fraction(10)
        ctx.thread_count = 1
        ctx.options = {"preset": "ultrafast", "qp": str(PROBE_QP),
                       "x264-params": "keyint=100000:min-keyint=100000:scenecut=0:bframes=0:rc-lookahead=0:threads=1"}
        ctx.open()
        return ctx

    def add(self, frame: np.ndarray) -> None:
        h, w = frame.shape
        w2, h2 = w - w % 2, h - h % 2
        if self._ctx is None:
            self._shape = (h2, w2)
            self._ctx = self._open(w2, h2)
            # one yuv420p picture buffer, its chroma neutral for good; each frame only copies its luma in
            self._buf = np.full((h2 * 3 // 2, w2), 128, np.uint8)
        elif self._shape != (h2, w2):
            return  # the picture changed size mid-segment: the probe keeps the first size's frames
        assert self._buf is not None
        self._buf[:h2] = frame[:h2, :w2]
        vf = av.VideoFrame.from_ndarray(self._buf, format="yuv420p")
        vf.pts = self._n
        self._n += 1
        self._bits.extend(p.size * 8 for p in self._ctx.encode(vf))

    def result(self) -> tuple[float, float]:
        """(intra, inter) bits per pixel; (0, 0) with no frames."""
        if self._ctx is None or self._shape is None:
            return 0.0, 0.0
        self._bits.extend(p.size * 8 for p in self._ctx.encode(None))
        self._ctx = None
        pixels = float(self._shape[0] * self._shape[1])
        bits = self._bits
        intra = bits[0] / pixels if bits else 0.0
        inter = float(np.mean(bits[1:])) / pixels if len(bits) > 1 else 0.0
        return intra, inter


class SegmentAnalyser:
    """Everything one segment's features need, accumulated frame by frame (each frame analysed once)."""

    def __init__(self) -> None:
        self.frames: list[FrameStats] = []
        self.pairs: list[tuple[float, float, float, float, bool]] = []
        self.last: FrameStats | None = None
        self.probe = ProbeEncoder()

    def add(self, frame: np.ndarray) -> None:
        stats = FrameStats(frame, detail=len(self.frames) % DETAIL_EVERY == 0)
        if self.last is not None:
            self.pairs.append(pair_stats(self.last, stats))
        self.frames.append(stats)
        self.last = stats
        self.probe.add(stats.gray)

    def features(self) -> np.ndarray:
        return features_from_stats(self.frames, self.pairs, self.probe.result())


def segment_features(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Features of a segment given its analysed gray frames in order (the batch form of the above)."""
    seg = SegmentAnalyser()
    for f in frames:
        seg.add(f)
    return seg.features()


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """The size frames are analysed at: ``ANALYSIS_WIDTH`` wide, the source's aspect, even height."""
    w = min(ANALYSIS_WIDTH, width)
    h = max(16, int(round(height * w / width / 2.0)) * 2)
    return w, h
