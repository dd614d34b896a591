"""Jump cuts: one take cut to a later moment of itself, found from the subject and a lone change in the picture.

A jump cut keeps the camera, the background and the colours; only what the subject does changes, so the cut
detectors' whole-picture distances barely move (the shipped full-rate score, the 5 fps score and TransNetV2 all
miss them: docs/autocrop.md, "Cuts: jump cuts"). Each cue alone also fires on ordinary moments (a head turn, a
source that repeats frames, hand-held shake); the two together did not on the tune split:

- **the subject jumped** (``box_jump``): the main subject the detectors found (the largest face, else the largest
  person) is, at the next analysed frame, at least ``JUMP`` of its own width away (or that much bigger or smaller,
  in log size) from where it was, while across the analysed intervals before and after it moved less than
  ``STEADY``: a still subject that is somewhere else, all at once;
- **the picture changed in one frame** (``ResidualJumps``): on the 48x27 full-rate thumbnails, the share of 3x4 px
  blocks whose *motion-compensated* change (each block against its best match within +-2 px in the frame before,
  so motion does not count and a new pose does) is over 3x, and 6 grey levels over, the block's own 90th
  percentile over the last 25 frames that moved; kept where the change is still there two frames later (not a
  flash), and at least ``LONE`` times the share of the nearest frames before and after that moved at all (a
  source that repeats frames is judged against its real steps, not against its repeats).

Constants chosen on the tune split only (``devkit/jumpcues/`` on branch ``s21-jump``; docs/autocrop.md, "Cuts: the 5 fps
detector when it is sure, and subject cues for jump cuts").
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

#: (x0, y0, x1, y1, kind): a detected subject, kind "face" or "person"; any pixel scale (the cue is relative)
Box = tuple[float, float, float, float, str]

JUMP = 0.35  # the subject moved at least this many of its widths between two analysed frames ...
STEADY = 0.08  # ... and less than this across the intervals before and after
SHARE = 0.01  # blocks whose motion-compensated change jumped: at least this share of the picture ...
LONE = 2.0  # ... and this many times the share of the nearest frames that moved


def _main(boxes: Sequence[Box]) -> Box | None:
    boxes = [b for b in boxes if all(math.isfinite(v) for v in b[:4])]
    faces = [b for b in boxes if b[4] == "face"]
    pool = faces or [b for b in boxes if b[4] == "person"]
    return max(pool, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if pool else None


def _moved(a: Box | None, boxes: Sequence[Box]) -> float | None:
    """How far ``a`` went to the nearest box of ``boxes`` (of its kind when there is one), in its widths (or in log
    size, whichever is more)."""
    if a is None:
        return None
    boxes = [b for b in boxes if all(math.isfinite(v) for v in b[:4])]  # a caller's odd values are no subject
    pool = [b for b in boxes if b[4] == a[4]] or [b for b in boxes if b[4] in ("face", "person")]
    if not pool:
        return None
    ax, ay, aw = (a[0] + a[2]) / 2, (a[1] + a[3]) / 2, max(a[2] - a[0], 1e-6)
    b = min(pool, key=lambda b: math.hypot((b[0] + b[2]) / 2 - ax, (b[1] + b[3]) / 2 - ay))
    bw = max(b[2] - b[0], 1e-6)
    return max(math.hypot((b[0] + b[2]) / 2 - ax, (b[1] + b[3]) / 2 - ay) / aw, abs(math.log(bw / aw)))


def box_jump(before: Sequence[Box], prev: Sequence[Box], now: Sequence[Box], after: Sequence[Box],
             jump: float = JUMP, steady: float = STEADY) -> bool:
    """The main subject at ``prev`` is elsewhere at ``now`` (the analysed frames either side of the judged
    interval), and it held still from ``before`` to ``prev`` and from ``now`` to ``after``."""
    m = _moved(_main(prev), now)
    p = _moved(_main(before), prev)
    q = _moved(_main(now), after)
    return m is not None and p is not None and q is not None and m >= jump and max(p, q) <= steady


@dataclass
class _Frame:
    t: float
    grey: np.ndarray  # mean taken out
    raw: float  # mean |change| from the frame before (-1: none before)
    res: np.ndarray | None = None  # per block, the motion-compensated change from the frame before (when asked)


class ResidualJumps:
    """Per full-rate thumbnail, the motion-compensated change of each block; per interval, the lone jump share.

    The block changes are computed only when an interval is asked about (``share``: the subject cue fired), for
    the frames it needs (~0.5 ms each); ``push`` only keeps the thumbnail (~0.02 ms)."""

    BLOCK = (3, 4)  # rows, columns of a block in thumbnail pixels
    SEARCH = 2  # px each way a block may have moved
    MEMORY = 25  # frames that moved whose changes are each block's statistics
    MOVED = 0.3  # mean raw change (grey levels) from which a frame moved (not a repeat)
    TIMES, LEVEL = 3.0, 6.0  # a block jumped: change > max(TIMES x its 90th percentile, percentile + LEVEL)
    KEEP = 0.6  # ... and skipping the frame keeps this share of its change (not a flash)
    NEAR = 5  # frames to look either way for the nearest frame that moved
    HISTORY = 7  # frames kept before a frame can be judged
    KEPT = 64

    def __init__(self) -> None:
        self._frames: deque[_Frame] = deque(maxlen=self.KEPT)
        self._shifts = [(dx, dy) for dy in range(-self.SEARCH, self.SEARCH + 1)
                        for dx in range(-self.SEARCH, self.SEARCH + 1)]

    def reset(self) -> None:
        self._frames.clear()

    def _blocks(self, d: np.ndarray) -> np.ndarray:
        by, bx = self.BLOCK
        h, w = d.shape[0] // by * by, d.shape[1] // bx * bx
        return d[:h, :w].reshape(h // by, by, w // bx, bx).mean(axis=(1, 3))  # type: ignore[no-any-return]

    def residual(self, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        """Each block of ``cur`` against its best match in ``prev`` within ``SEARCH`` px (mean |difference|)."""
        r = self.SEARCH
        h, w = cur.shape
        pad = cv2.copyMakeBorder(prev, r, r, r, r, cv2.BORDER_REPLICATE)
        return np.min(np.stack([self._blocks(np.abs(cur - pad[r + dy:r + dy + h, r + dx:r + dx + w]))
                                for dx, dy in self._shifts]), axis=0)

    def push(self, t: float, grey: np.ndarray) -> None:
        """The grey thumbnail (float32) of the source frame at ``t``; frames out of order are ignored, a new size restarts."""
        fr = self._frames
        if fr and t <= fr[-1].t + 1e-9:
            return
        g = grey - float(grey.mean())
        if fr and fr[-1].grey.shape != g.shape:
            fr.clear()
        fr.append(_Frame(t, g, float(np.abs(g - fr[-1].grey).mean()) if fr else -1.0))

    def _res(self, fr: list[_Frame], k: int) -> np.ndarray | None:
        if k < 1 or fr[k].raw < 0:
            return None
        if fr[k].res is None:
            fr[k].res = self.residual(fr[k - 1].grey, fr[k].grey)
        return fr[k].res

    def _jumped(self, fr: list[_Frame], k: int) -> np.ndarray | None:
        past = [r for j in range(max(0, k - self.MEMORY), k)
                if fr[j].raw > self.MOVED and (r := self._res(fr, j)) is not None]
        cur = self._res(fr, k)
        if cur is None or len(past) < 3:
            return None
        ref = np.percentile(np.stack(past), 90, axis=0)
        return cur > np.maximum(self.TIMES * ref, ref + self.LEVEL)  # type: ignore[no-any-return]

    def share(self, t0: float, t: float) -> tuple[float, float]:
        """(the largest jump share of a frame whose previous frame lies in [t0, t), the share of the nearest
        frames that moved either side of that frame); (0, 0) when no frame qualifies."""
        fr = list(self._frames)
        n = len(fr)
        best = (0.0, 0.0)
        for k in range(1, n):
            if (not t0 - 1e-6 <= fr[k - 1].t < t - 1e-6 or k < self.HISTORY or k + 3 >= n
                    or fr[k].raw <= self.MOVED):
                continue
            m = self._jumped(fr, k)
            cur = self._res(fr, k)
            if m is None or cur is None:
                continue
            across = self.residual(fr[k - 1].grey, fr[k + 2].grey)
            s = float((m & (across >= self.KEEP * cur)).mean())
            if s <= best[0]:
                continue
            near = []
            for step in (-1, 1):
                q = k + step
                while 1 <= q < n and fr[q].raw <= self.MOVED and abs(q - k) < self.NEAR + 1:
                    q += step
                if 1 <= q < n:
                    jq = self._jumped(fr, q)
                    near.append(float(jq.mean()) if jq is not None else 0.0)
            best = (s, max(near, default=0.0))
        return best
