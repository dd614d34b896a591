"""Detection -> decision -> smoothing for one stream, in source pixels, without any transport.

``Analyzer`` is what the sidecar runs per frame, and what ``bench/autocrop.py`` runs in-process to time
the analysis and compare it with its baselines. Frames of any size are accepted (odd, tiny, huge); a change
of frame size mid-stream re-initialises the shot state and starts a new shot.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from sidecast.contract.records import Crop

from .decide import Focus, FocusKeeper, ShotDetector, choose_focus, present_people
from .detect import FaceDetector, ObjectDetector, PersonDetector, Subject
from .shotmodel import ShotModel, ShotModelError
from .smooth import CropPlanner, Observation, PathOptions

log = logging.getLogger("sidecast.autocrop")


def load_shot_model(path: str | None = None, threads: int = 1) -> ShotModel | None:
    """The learned shot-cut model, or None with one logged warning when it cannot be loaded: a damaged
    install must not stop the vertical rendition, the hand-made cut detector works without it."""
    try:
        return ShotModel(path, threads=threads)
    except ShotModelError as exc:
        log.warning("%s; shot cuts from the hand-made detector only", exc)
        return None


@dataclass
class FrameAnalysis:
    """What one analysed frame yielded, kept for debugging and for the bench's unsmoothed baseline."""

    t: float
    cut: bool
    subjects: list[Subject] = field(default_factory=list)
    focus: Focus | None = None


@dataclass
class _Pending:
    t: float
    subjects: list[Subject]
    fresh_objects: bool  # the object subjects were computed on this frame (not carried from an earlier one)


class Analyzer:
    """One stream's analysis: frames (any size, BGR) in, crops in source pixels out.

    ``object_fps``: how often the saliency model may run (it runs only when no face or person is found,
    and once more right after a cut); between runs its last box is reused for up to ``1.5 / object_fps`` s.
    ``shot_model``: the learned second opinion on cuts (True: load the shipped one, None/False: none).
    """

    def __init__(self, source_w: int, source_h: int, options: PathOptions | None = None,
                 faces: FaceDetector | None = None, people: bool = True,
                 objects: ObjectDetector | None | bool = True, object_fps: float = 1.0,
                 shot_model: ShotModel | None | bool = True) -> None:
        if source_w < 2 or source_h < 2:
            raise ValueError(f"source size must be at least 2x2, got {source_w}x{source_h}")
        self.source_w, self.source_h = source_w, source_h
        self.planner = CropPlanner(source_w, source_h, options)
        self.options = self.planner.options
        self.faces = faces if faces is not None else FaceDetector()
        self.people = PersonDetector() if people else None
        if objects is True:
            self.objects: ObjectDetector | None = ObjectDetector()
        else:
            self.objects = objects or None
        self.object_fps = object_fps
        if shot_model is True:
            shot_model = load_shot_model()
        self.shots = ShotDetector(model=shot_model or None)
        self.keeper = FocusKeeper(self.planner.crop_w, frame_w=source_w)
        self._focus: Focus | None = None
        self._pending: deque[_Pending] = deque()
        self._shape: tuple[int, int] | None = None
        self._object_t = -1e9
        self._objects: list[Subject] = []
        self._objects_now = True
        self.last: FrameAnalysis | None = None
        self.history: list[FrameAnalysis] = []  # every decided frame, for the bench (cleared by the caller)
        self.keep_history = False

    def detect(self, t: float, bgr: np.ndarray) -> tuple[list[Subject], bool]:
        """Faces first; people when there is no face; the salient object only when nobody is in frame, at
        most ``object_fps`` times a second. Returns the subjects and whether object boxes are fresh."""
        found = self.faces.detect(bgr)
        if not found and self.people is not None:
            found = self.people.detect(bgr)
        if found or self.objects is None:
            return found, False
        if self._objects_now or t - self._object_t >= 1.0 / max(self.object_fps, 1e-3) - 1e-6:
            self._objects = self.objects.detect(bgr)
            self._object_t = t
            self._objects_now = False
            return list(self._objects), True
        if t - self._object_t <= 1.5 / max(self.object_fps, 1e-3):
            return list(self._objects), False
        return [], False

    def _finish(self, t: float, cut: bool) -> list[Crop]:
        """The frame at ``t`` is decided (cut or not): choose its focus and hand it to the planner."""
        while self._pending and self._pending[0].t < t - 1e-9:  # never decided (cannot happen): drop
            self._pending.popleft()
        if not self._pending:
            return []
        p = self._pending.popleft()
        subjects = p.subjects
        if cut:
            self._focus = None
            self.keeper.reset()
            if not p.fresh_objects:  # an object seen before the cut belongs to the old shot
                subjects = [s for s in subjects if s.kind != "object"]
                self._objects, self._objects_now = [], True
        focus = choose_focus(subjects, self.planner.crop_w, self.planner.crop_h, self.source_w, self.source_h,
                             self.options.safe_margin, previous=self.keeper.held or self._focus)
        if focus is not None:
            self._focus = focus
        others = [f for s in subjects if (f := self._single(s)) is not None] if len(subjects) > 1 else []
        focus = self.keeper.update(p.t, focus, others)
        self.last = FrameAnalysis(p.t, cut, subjects, focus)
        if self.keep_history:
            self.history.append(self.last)
        return self.planner.push(Observation(p.t, cut, focus, self.keeper.switched,
                                             present_people(subjects, focus)))

    def _single(self, s: Subject) -> Focus | None:
        """One subject as a focus of its own (a face widened to head and shoulders), for the keeper."""
        return choose_focus([s], self.planner.crop_w, self.planner.crop_h, self.source_w, self.source_h,
                            self.options.safe_margin)

    def analyse(self, t: float, bgr: np.ndarray) -> list[Crop]:
        """One analysed frame in; the crops that became final out (they lag by the look-ahead)."""
        if bgr.ndim != 3 or bgr.shape[0] < 1 or bgr.shape[1] < 1:
            raise ValueError(f"autocrop needs an HxWx3 BGR frame, got shape {bgr.shape}")
        out: list[Crop] = []
        shape = (int(bgr.shape[0]), int(bgr.shape[1]))
        if self._shape is not None and shape != self._shape:  # the stream changed size: a new shot
            out += self._drain()
            self.shots.reset(keep_from=t)
            self._focus, self._objects, self._objects_now = None, [], True
            self.keeper.reset()
        self._shape = shape
        h, w = shape
        sx, sy = self.source_w / w, self.source_h / h
        subjects, fresh = self.detect(t, bgr)
        self._pending.append(_Pending(t, [s.scaled(sx, sy) for s in subjects], fresh))
        people = [(s.x0, s.y0, s.x1, s.y1, s.kind) for s in subjects if s.kind in ("face", "person")]
        for ft, cut in self.shots.push(t, bgr, people):
            out += self._finish(ft, cut)
        return out

    def thumbnail(self, t: float, rgb: np.ndarray) -> None:
        """A full-rate 48x27 RGB thumbnail of the source frame at ``t``, for the full-rate cut detector and the
        learned cut opinion; it must come before the analysed frame at the same or a later time (the core's extra-feed order)."""
        self.shots.thumbnail(t, rgb)

    def _drain(self) -> list[Crop]:
        out: list[Crop] = []
        for ft, cut in self.shots.flush():
            out += self._finish(ft, cut)
        return out

    def flush(self) -> list[Crop]:
        return self._drain() + self.planner.flush()

    def discontinuity(self) -> list[Crop]:
        out = self._drain()
        self.shots.reset()
        self._focus, self._objects, self._objects_now = None, [], True
        self.keeper.reset()
        return out + self.planner.discontinuity()

    @property
    def published_until(self) -> float:
        return self.planner.published_until
