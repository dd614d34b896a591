"""Detection -> decision -> smoothing for one stream, in source pixels, without any transport.

``Analyzer`` is what the sidecar runs per frame, and what ``bench/autocrop.py`` runs in-process to time
the analysis and compare it with its baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sidecast.contract.records import Crop

from .decide import Focus, ShotDetector, choose_focus
from .detect import FaceDetector, PersonDetector, SaliencyDetector, Subject
from .smooth import CropPlanner, Observation, PathOptions


@dataclass
class FrameAnalysis:
    """What one analysed frame yielded, kept for debugging and for the bench's unsmoothed baseline."""

    t: float
    cut: bool
    subjects: list[Subject] = field(default_factory=list)
    focus: Focus | None = None


class Analyzer:
    """One stream's analysis: frames (any size, BGR) in, crops in source pixels out."""

    def __init__(self, source_w: int, source_h: int, options: PathOptions | None = None,
                 faces: FaceDetector | None = None, people: bool = True) -> None:
        self.source_w, self.source_h = source_w, source_h
        self.planner = CropPlanner(source_w, source_h, options)
        self.options = self.planner.options
        self.faces = faces if faces is not None else FaceDetector()
        self.people = PersonDetector() if people else None
        self.saliency = SaliencyDetector()
        self.shots = ShotDetector()
        self._focus: Focus | None = None
        self.last: FrameAnalysis | None = None

    def detect(self, bgr: np.ndarray) -> list[Subject]:
        """Faces first; people when there is no face; saliency/motion only when nobody is in frame."""
        found = self.faces.detect(bgr)
        if not found and self.people is not None:
            found = self.people.detect(bgr)
        salient = self.saliency.detect(bgr)  # always run: it keeps the motion reference frame current
        return found or salient

    def observe(self, t: float, bgr: np.ndarray) -> FrameAnalysis:
        """Detection and decision for one frame (no smoothing)."""
        h, w = bgr.shape[:2]
        cut = self.shots.update(t, bgr)
        if cut:
            self.saliency.reset()
            self._focus = None
        sx, sy = self.source_w / w, self.source_h / h
        subjects = [s.scaled(sx, sy) for s in self.detect(bgr)]
        focus = choose_focus(subjects, self.planner.crop_w, self.planner.crop_h, self.source_w, self.source_h,
                             self.options.safe_margin, previous=self._focus)
        if focus is not None:
            self._focus = focus
        self.last = FrameAnalysis(t, cut, subjects, focus)
        return self.last

    def analyse(self, t: float, bgr: np.ndarray) -> list[Crop]:
        """One analysed frame in; the crops that became final out (they lag by the look-ahead)."""
        a = self.observe(t, bgr)
        return self.planner.push(Observation(t, a.cut, a.focus))

    def flush(self) -> list[Crop]:
        return self.planner.flush()

    def discontinuity(self) -> list[Crop]:
        self.shots.reset()
        self.saliency.reset()
        self._focus = None
        return self.planner.discontinuity()

    @property
    def published_until(self) -> float:
        return self.planner.published_until
