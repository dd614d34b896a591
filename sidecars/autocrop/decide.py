"""Decision: per analysed frame, which region the crop must keep (``choose_focus``), and where shots cut
(``ShotDetector``). Pure functions over plain data plus one small stateful histogram comparator.

The crop follows a *focus*: the union of the subjects that fit in the crop together, else the most
salient one. Faces and people always outrank saliency; saliency is only the fallback when nobody is in
frame. A face is widened to head-and-shoulders, because a crop that frames only the face cuts the person.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from .detect import Subject


@dataclass(frozen=True)
class Focus:
    """The region (source pixels) to keep inside the crop, with how sure we are and what it is."""

    x0: float
    y0: float
    x1: float
    y1: float
    confidence: float
    kind: str
    count: int = 1

    @property
    def cx(self) -> float:
        return (self.x0 + self.x1) / 2

    @property
    def cy(self) -> float:
        return (self.y0 + self.y1) / 2


def subject_region(s: Subject, source_w: float, source_h: float) -> Subject:
    """Head-and-shoulders around a face (2.4x its width, down to one face height below); others as is."""
    if s.kind != "face":
        return s
    w, h = s.width, s.height
    cx = (s.x0 + s.x1) / 2
    return Subject(
        max(0.0, cx - 1.2 * w), max(0.0, s.y0 - 0.25 * h), min(source_w, cx + 1.2 * w),
        min(source_h, s.y1 + 1.0 * h), s.score, s.kind,
    )


def choose_focus(
    subjects: Sequence[Subject],
    crop_w: float,
    crop_h: float,
    source_w: float,
    source_h: float,
    safe_margin: float = 0.05,
    previous: Focus | None = None,
) -> Focus | None:
    """The focus for one frame: all subjects if they fit in the crop, else the most salient that do.

    ``previous`` keeps the choice sticky: when two subjects that cannot share the crop are about equally
    salient, the one nearer the previous focus wins, so the camera does not flip between them.
    """
    regions = [subject_region(s, source_w, source_h) for s in subjects if s.width > 0 and s.height > 0]
    people = [r for r in regions if r.kind in ("face", "person")]
    pool = people or regions
    if not pool:
        return None

    def rank(r: Subject) -> float:
        sal = r.salience
        if previous is not None:
            dist = abs((r.x0 + r.x1) / 2 - previous.cx) / max(crop_w, 1.0)
            sal *= 1.0 + 0.35 * max(0.0, 1.0 - dist)  # stickiness: up to +35% for the one we were on
        return sal

    ordered = sorted(pool, key=rank, reverse=True)
    fit_w = crop_w * (1 - 2 * safe_margin)
    fit_h = crop_h * (1 - 2 * safe_margin)
    chosen = [ordered[0]]
    box = [ordered[0].x0, ordered[0].y0, ordered[0].x1, ordered[0].y1]
    for r in ordered[1:]:
        nb = [min(box[0], r.x0), min(box[1], r.y0), max(box[2], r.x1), max(box[3], r.y1)]
        if nb[2] - nb[0] <= fit_w and nb[3] - nb[1] <= fit_h:
            box = nb
            chosen.append(r)
    conf = max(r.score for r in chosen)
    return Focus(box[0], box[1], box[2], box[3], float(conf), chosen[0].kind, len(chosen))


class ShotDetector:
    """Hard cuts from the hue-saturation histogram distance between consecutive analysed frames.

    A cut is a distance above ``threshold`` that also stands well above the recent distances in the shot
    (so a fast pan over a busy scene, whose distances are all high, does not cut every frame), and at
    least ``min_shot`` seconds after the previous cut (flashes are not shots).
    """

    def __init__(self, threshold: float = 0.4, min_shot: float = 0.5, width: int = 96) -> None:
        self.threshold = threshold
        self.min_shot = min_shot
        self.width = width
        self._prev: np.ndarray | None = None
        self._recent: deque[float] = deque(maxlen=15)
        self._last_cut = -1e9
        self.last_distance = 0.0

    def reset(self) -> None:
        self._prev = None
        self._recent.clear()

    def histogram(self, bgr: np.ndarray) -> np.ndarray:
        h, w = bgr.shape[:2]
        small = cv2.resize(bgr, (self.width, max(1, round(h * self.width / w))), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 6, 4], [0, 180, 0, 256, 0, 256])
        total = float(hist.sum())
        return np.asarray(hist, dtype=np.float32).ravel() / (total if total > 0 else 1.0)

    def update(self, t: float, bgr: np.ndarray) -> bool:
        """True when ``bgr`` (at media time ``t``) starts a new shot; the first frame always does."""
        hist = self.histogram(bgr)
        prev, self._prev = self._prev, hist
        if prev is None:
            self._last_cut = t
            return True
        d = float(cv2.compareHist(prev.astype(np.float32), hist.astype(np.float32), cv2.HISTCMP_BHATTACHARYYA))
        self.last_distance = d
        baseline = float(np.median(self._recent)) if self._recent else 0.0
        is_cut = d > self.threshold and d > 2.5 * baseline + 0.1 and t - self._last_cut >= self.min_shot
        if is_cut:
            self._last_cut = t
            self._recent.clear()
        else:
            self._recent.append(d)
        return is_cut
