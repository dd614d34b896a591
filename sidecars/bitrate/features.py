"""Content features of one segment, computed from the small gray frames the sidecar analyses.

These numbers are what the rate model sees: how detailed the picture is (spatial information, edges,
high-frequency energy), how much it changes (temporal information, frame differences, scene cuts) and
how much of that change a motion search can predict (global motion and the residual left after it).
The same function runs in the sidecar, in the corpus builder and in the bench, so the model is trained on
exactly the numbers it is later fed.

Frames are expected at the analysis rate and size the sidecar asks for (``ANALYSIS_FPS``,
``ANALYSIS_WIDTH``): differences between frames are 1/ANALYSIS_FPS s apart, not one source frame.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

ANALYSIS_FPS = 10.0
ANALYSIS_WIDTH = 256

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
)
N_FEATURES = len(FEATURE_NAMES)

_EDGE_THRESHOLD = 96.0  # Sobel magnitude (8-bit scale) counted as a strong edge
_CUT_HIST_DISTANCE = 0.5  # half the histogram mass moved between two frames: a cut


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

    __slots__ = ("si", "edges", "hf", "luma_mean", "luma_std", "hist", "small")

    def __init__(self, frame: np.ndarray) -> None:
        f = _check(frame).astype(np.float32)
        gx = cv2.Sobel(f, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(f, cv2.CV_32F, 0, 1, ksize=3)
        mag = cv2.magnitude(gx, gy)
        self.si = float(mag.std())
        self.edges = float((mag > _EDGE_THRESHOLD).mean())
        self.hf = float(np.abs(f - cv2.GaussianBlur(f, (5, 5), 1.2)).mean())
        self.luma_mean = float(f.mean())
        self.luma_std = float(f.std())
        hist = np.bincount((frame >> 4).ravel(), minlength=16).astype(np.float32)
        self.hist = hist / max(hist.sum(), 1.0)
        self.small = f


def pair_stats(prev: FrameStats, cur: FrameStats) -> tuple[float, float, float, float, bool]:
    """TI, MAD, motion-compensated residual, global motion and cut flag between two frames."""
    a, b = prev.small, cur.small
    if a.shape != b.shape:
        return 0.0, 0.0, 0.0, 0.0, True  # a size change is a cut as far as the encoder is concerned
    d = b - a
    ti = float(d.std())
    mad = float(np.abs(d).mean())
    (dx, dy), _ = cv2.phaseCorrelate(a, b)
    h, w = a.shape
    m = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]], dtype=np.float32)
    shifted = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    mx, my = int(min(abs(dx), w // 4)) + 1, int(min(abs(dy), h // 4)) + 1
    residual = float(np.abs(b - shifted)[my:h - my, mx:w - mx].mean())
    residual = min(residual, mad)  # a wrong shift estimate must not look worse than no compensation
    motion = float(np.hypot(dx, dy) / w)
    cut = float(np.abs(cur.hist - prev.hist).sum()) / 2.0 > _CUT_HIST_DISTANCE
    return ti, mad, residual, motion, cut


def features_from_stats(frames: Sequence[FrameStats], pairs: Sequence[tuple[float, float, float, float, bool]]
                        ) -> np.ndarray:
    """The feature vector (``FEATURE_NAMES`` order) of a segment from its per-frame and per-pair stats."""
    if not frames:
        raise FeatureError("a segment with no analysed frames has no features")
    si = np.array([s.si for s in frames])
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
        ],
        dtype=np.float32,
    )


def segment_features(frames: Sequence[np.ndarray]) -> np.ndarray:
    """Features of a segment given its analysed gray frames in order (the batch form of the above)."""
    stats = [FrameStats(f) for f in frames]
    pairs = [pair_stats(a, b) for a, b in zip(stats, stats[1:], strict=False)]
    return features_from_stats(stats, pairs)


def analysis_size(width: int, height: int) -> tuple[int, int]:
    """The size frames are analysed at: ``ANALYSIS_WIDTH`` wide, the source's aspect, even height."""
    w = min(ANALYSIS_WIDTH, width)
    h = max(16, int(round(height * w / width / 2.0)) * 2)
    return w, h
