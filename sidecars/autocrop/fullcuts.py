"""Hard cuts judged on every source frame: the hand-made detector at full rate, on the 48x27 thumbnails.

At 5 analysed frames a second a whip pan moves most of the picture between two frames and a cut between
two similar street shots changes little more than the shot's own motion does; at 25-30 fps consecutive
frames are 33-40 ms apart, a whip pan of one picture width in 0.6 s moves ~6 % of the picture per frame
while a cut replaces all of it in one. The autocrop sidecar already gets every source frame as a 48x27 RGB
thumbnail (its extra video feed ``shots``), so this costs no new plumbing: ``FullRateCuts.push`` takes each
thumbnail (~0.15 ms of CPU), ``FullRateCuts.score`` judges an interval between two analysed frames.

Per pair of consecutive frames: *structure* (1 - normalised cross-correlation of the grey thumbnails at the
best of the shifts around no motion and around the previous frame's motion: a pan moves the picture, a cut
replaces it; correlation ignores brightness and contrast, so a flash changes little) and *colour*
(Bhattacharyya distance of hue/saturation histograms). The same for frames two and three apart, with the
shift search centred on the sum of the shifts in between (a whip pan of any speed the one-frame search
follows).

A frame ``k`` (the first of a new shot) scores the geometric mean of its distance's ratios (structure
counted twice, colour once) to the shot's own statistics: the largest of the neighbouring pairs' distances
(a lone spike: motion, a whip pan, a flash raise the neighbours too) and the 90th percentile of the last 25
non-trivial distances (a source that repeats frames, 0, 0, 0, jump, is measured against its jumps, not
against its zeros; the colour reference also counts jumps that changed the colours only, as a still shot of
a repeating source does). A frame of the next interval, a frame or two after the best one, that outscores
it takes the cut there (a flash or a whip pan starting just before a cut). It counts only if frames before it and frames after it still differ when it is
skipped (*bridge*: a flash of one or two frames is followed by the picture it interrupted), in structure
or in colour (a cut to another place of the same scene keeps much of its structure, not its colours);
a large colour jump whose colours are back across it is a flash too (NCC ignores gain, so a flash on a
changing picture barely returns in structure). A shot one or two frames long just before a cut (a
source's own edit crossed) raises two neighbouring pairs; the distance across two frames, judged the same
way against its own neighbours, finds that cut, when both one-frame steps carry it. ``last_motion`` says
how fast the camera moved beside the best frame: there (a whip pan starting faster than the shift search
follows) ``decide.ShotDetector`` lets the learned model decide.

Constants chosen on the tune split only (``devkit/cutframes.py``, ``devkit/cuttune.py``, ``devkit/shotrate.py``;
docs/autocrop.md, "Cuts at full rate", "A wider tune split" and "Fewer false cuts").
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

Shift = tuple[int, int]


def structure_shift(a: np.ndarray, b: np.ndarray, px: int = 0, py: int = 0, rx: int = 3,
                    ry: int = 2) -> tuple[float, Shift]:
    """(1 - the best normalised cross-correlation, its shift) of grey images ``a`` and ``b`` over shifts
    (px +- rx, py +- ry): ``b`` shows ``a`` moved by the shift. (1.0, (0, 0)) when the shift leaves too
    little overlap; a flat pair compares brightness (0 when the same, 1 when not)."""
    h, w = a.shape
    mx, my = abs(px) + rx, abs(py) + ry
    if w - 2 * mx < w // 3 or h - 2 * my < h // 3:
        return 1.0, (0, 0)
    tpl = b[my:h - my, mx:w - mx]
    img = a[my - py - ry:h - my - py + ry, mx - px - rx:w - mx - px + rx]
    r = cv2.matchTemplate(img, tpl, cv2.TM_CCOEFF_NORMED)
    _lo, best, _lo_at, at = cv2.minMaxLoc(r)
    if not np.isfinite(best) or float(tpl.std()) < 1e-3 or float(img.std()) < 1e-3:
        return (0.0 if abs(float(a.mean()) - float(b.mean())) < 8 else 1.0), (px, py)
    return 1.0 - float(best), (px + rx - at[0], py + ry - at[1])


@dataclass
class _Frame:
    t: float
    grey: np.ndarray
    hist: np.ndarray
    shift: Shift = (0, 0)
    d: list[np.ndarray | None] = field(default_factory=lambda: [None, None, None])  # to 1, 2, 3 frames back


class FullRateCuts:
    """Per source frame thumbnails in, cut scores per interval between analysed frames out."""

    MEMORY = 25  # past pairs whose distances are the shot's statistics
    QUANTILE = 90  # their percentile a cut must stand out against
    FLOOR = 0.02  # added to every reference distance: a still shot's 0.001 is not a reference
    BRIDGE = 0.6  # a frame counts when skipping it keeps >= this share of its distance (not a flash) ...
    BRIDGE_COLOUR = 0.6  # ... in structure or in colour (a cut to the same place keeps much of the structure)
    FLASH = 0.4  # a colour jump of >= FLASH_STEP whose colours are back (< this share) across it: a flash
    FLASH_STEP = 0.15
    STEPS = 0.3  # the two-frame distance counts when both one-frame steps carry >= this share of it
    MOTION = 5  # px a frame of camera motion beside the best frame from which the score alone cannot cut
    MOVED_COLOUR: float | None = 0.05  # a pair this far apart in colour changed (not a repeat): colour statistics
    AHEAD = 2  # a frame this close after the best one, in the next interval, that outscores it: the cut is there
    MIN_HISTORY = 6  # frames (pairs) of history needed before a frame can be judged
    MAX_GAP = 0.11  # s between thumbnails above which the interval is not covered (dropped, < 10 fps)
    KEEP = 64  # frames kept: the statistics, and the interval up to the next analysed frame at 5-60 fps

    def __init__(self, keep: int = KEEP) -> None:
        self._frames: deque[_Frame] = deque(maxlen=keep)
        self.last_motion = 0  # px a frame the camera moved beside the best frame of the last ``score``
        self.frames = 0  # thumbnails taken, and the CPU they and the scoring cost (for the bench)
        self.cpu_seconds = 0.0

    def reset(self, keep_from: float | None = None) -> None:
        """Forget frames before ``keep_from`` (all without it): a discontinuity, a new stream size."""
        while self._frames and (keep_from is None or self._frames[0].t < keep_from - 1e-6):
            self._frames.popleft()
        if self._frames:
            self._frames[0].d = [None, None, None]

    @property
    def last_time(self) -> float | None:
        return self._frames[-1].t if self._frames else None

    def push(self, t: float, rgb: np.ndarray) -> None:
        """The thumbnail (HxWx3 RGB, any small size) of the source frame at ``t``; out of order: ignored."""
        if self._frames and t <= self._frames[-1].t + 1e-9:
            return
        c0 = time.process_time()
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        hist = cv2.calcHist([hsv], [0, 1], None, [12, 4], [0, 180, 0, 256]).ravel()
        hist = np.asarray(hist / max(float(hist.sum()), 1.0), dtype=np.float32)
        f = _Frame(t, grey, hist)
        fr = self._frames
        if fr and fr[-1].grey.shape != grey.shape:
            fr.clear()
        n = len(fr)
        if n >= 1:
            p1 = fr[-1]
            s, f.shift = self._structure(p1.grey, grey, {(0, 0), p1.shift})
            f.d[0] = np.array([s, self._colour(p1.hist, hist)])
            if n >= 2 and p1.d[0] is not None:
                p2 = fr[-2]
                sx, sy = p1.shift[0] + f.shift[0], p1.shift[1] + f.shift[1]
                s, _ = self._structure(p2.grey, grey, {(0, 0), (sx, sy), (2 * p1.shift[0], 2 * p1.shift[1])})
                f.d[1] = np.array([s, self._colour(p2.hist, hist)])
                if n >= 3 and p2.d[0] is not None:
                    p3 = fr[-3]
                    sx, sy = sx + p2.shift[0], sy + p2.shift[1]
                    s, _ = self._structure(p3.grey, grey, {(0, 0), (sx, sy), (3 * p2.shift[0], 3 * p2.shift[1])})
                    f.d[2] = np.array([s, self._colour(p3.hist, hist)])
        fr.append(f)
        self.frames += 1
        self.cpu_seconds += time.process_time() - c0

    @staticmethod
    def _structure(a: np.ndarray, b: np.ndarray, around: set[Shift]) -> tuple[float, Shift]:
        best = (2.0, (0, 0))
        for px, py in sorted(around):
            best = min(best, structure_shift(a, b, px, py))
        return best

    @staticmethod
    def _colour(a: np.ndarray, b: np.ndarray) -> float:
        return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))

    def _ratio(self, d: np.ndarray, ref: list[np.ndarray], past: list[np.ndarray]) -> float:
        # the shot's own statistics: the percentile of the recent distances where the picture changed (a
        # source that repeats frames gives 0, 0, 0, jump: it is judged against its jumps). Structure from the
        # pairs whose structure moved; colour also from pairs whose colours did while the structure barely
        # did (a still street shot whose frames jump in colour only): without them a person stepping into
        # such a shot was judged against nothing and scored as a cut
        moved = [x for x in past if x[0] > 0.005]
        coloured = moved if self.MOVED_COLOUR is None else [x for x in past if x[0] > 0.005 or x[1] > self.MOVED_COLOUR]
        if coloured:
            ref = [*ref, np.array([np.percentile([x[0] for x in moved], self.QUANTILE) if moved else 0.0,
                                   np.percentile([x[1] for x in coloured], self.QUANTILE)])]
        r = np.maximum(d / ((np.max(np.stack(ref), axis=0) if ref else np.zeros(2)) + self.FLOOR), 0.5)
        return float(np.exp((2 * np.log(r[0]) + np.log(r[1])) / 3))

    def _frame_score(self, d1: list[np.ndarray | None], d2: list[np.ndarray | None], d3: list[np.ndarray | None],
                     k: int) -> float:
        """How much frame ``k`` stands out as the first frame of a new shot (``d1``, ``d2``, ``d3``: every
        kept frame's distances to the frame 1, 2 and 3 before it)."""
        n = len(d1)
        dk = d1[k]
        if dk is None or k < self.MIN_HISTORY or any(x is None for x in d1[k - self.MIN_HISTORY + 1:k]):
            return 0.0
        near = [x for x in (d1[k - 1], d1[k + 1] if k + 1 < n else None) if x is not None]
        past = [x for x in d1[max(0, k - self.MEMORY):k] if x is not None]
        lone = self._ratio(dk, near, past)
        across = [x for x in (d2[k], d3[k], d2[k + 1] if k + 1 < n else None, d3[k + 1] if k + 1 < n else None,
                              d3[k + 2] if k + 2 < n else None) if x is not None]
        if across:
            kept = np.min(np.stack(across), axis=0) / np.maximum(dk, 1e-3)
            if kept[0] < self.BRIDGE and kept[1] < self.BRIDGE_COLOUR:
                lone = 0.0  # the pictures either side of it are the same one: a flash, not a cut
            elif self.FLASH and float(dk[1]) >= self.FLASH_STEP and kept[1] < self.FLASH:
                lone = 0.0  # a large change of colour that the pictures either side do not share: a flash
        two = 0.0
        d2k = d2[k]
        dk1 = d1[k - 1]
        if d2k is not None and dk1 is not None and min(float(dk1[0]), float(dk[0])) < self.STEPS * float(d2k[0]):
            d2k = None  # one step carries the change: the one-frame test judges it (a lone spike or not)
        if d2k is not None:
            near2 = [x for x in (d2[k - 2], d2[k + 2] if k + 2 < n else None) if x is not None]
            past2 = [x for x in d2[max(0, k - self.MEMORY):k - 1] if x is not None]
            two = self._ratio(d2k, near2, past2)
        return max(lone, two)

    def score(self, t0: float, t: float) -> tuple[float, float] | None:
        """(the largest score, the time of its frame) of the frames whose previous frame lies in [t0, t)
        (the cut between analysed frames t0 and t), or None when the thumbnails do not cover the interval:
        none there, a gap longer than ``MAX_GAP`` (dropped thumbnails, a source under 10 fps), or not yet
        the frame after ``t`` and one more (the bridge and the lone-spike test need them)."""
        c0 = time.process_time()
        try:
            return self._score(t0, t)
        finally:
            self.cpu_seconds += time.process_time() - c0

    def score_final(self, t0: float, t: float) -> tuple[float, float] | None:
        """``score`` at the end of the stream, where the frames after ``t`` may never come."""
        c0 = time.process_time()
        try:
            return self._score(t0, t, final=True)
        finally:
            self.cpu_seconds += time.process_time() - c0

    def _score(self, t0: float, t: float, final: bool = False) -> tuple[float, float] | None:
        fr = list(self._frames)
        idx = [k for k in range(1, len(fr)) if t0 - 1e-6 <= fr[k - 1].t < t - 1e-6]
        if not idx or any(fr[k].t - fr[k - 1].t > self.MAX_GAP for k in idx):
            return None
        if not final and (fr[idx[0] - 1].t > t0 + self.MAX_GAP or idx[-1] + 2 >= len(fr)
                          or fr[idx[-1]].t < t - self.MAX_GAP):
            return None
        d1, d2, d3 = ([f.d[j] for f in fr] for j in range(3))
        best, k = max(((self._frame_score(d1, d2, d3, k), k) for k in idx), key=lambda x: x[0])
        if not final and self.AHEAD:
            # a disturbance just before a cut (a flash, a whip pan starting): the cut's own frame, a frame or
            # two later in the next interval, outscores it. Cutting here would put the cut before the new
            # shot's first frame and, within ``min_shot``, block the next interval, which will cut
            later = [self._frame_score(d1, d2, d3, j) for j in range(idx[-1] + 1, min(k + self.AHEAD, len(fr) - 3) + 1)]
            if later and max(later) > best:
                best = 0.0
        self.last_motion = max((max(abs(f.shift[0]), abs(f.shift[1])) for f in fr[max(0, k - 2):k] + fr[k + 1:k + 3]),
                               default=0)
        return best, fr[k].t
