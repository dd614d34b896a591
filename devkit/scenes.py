"""Ground-truth scenes for autocrop's tests and bench: a real photo of a person (scikit-image's
``astronaut``) moved over real backgrounds along known paths, and the figures that judge a crop path.

Needs scikit-image (a dev dependency); nothing here runs in production.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1
Window = tuple[int, int, int, int]  # x, y, w, h

WIDTH, HEIGHT, FPS = 640, 360, 25.0


@cache
def _astronaut() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@cache
def _background(name: str) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = cv2.cvtColor(img[..., :3].astype(np.uint8), cv2.COLOR_RGB2BGR)
    return cv2.resize(img, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


@cache
def _patch(size: int) -> np.ndarray:
    return cv2.resize(_astronaut(), (size, size), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class Actor:
    """An astronaut of ``size`` px whose top-left corner follows ``path(t)``; ``key`` actors must stay in."""

    size: int
    path: Callable[[float], tuple[float, float]]
    key: bool = True

    def box(self, t: float) -> Box:
        x, y = self.path(t)
        return (x, y, x + self.size, y + self.size)


@dataclass(frozen=True)
class Shot:
    start: float
    end: float
    background: str
    actors: tuple[Actor, ...]


@dataclass(frozen=True)
class Scene:
    """Shots with known subject boxes; ``holds`` are the spans where the key subject stands still."""

    name: str
    shots: tuple[Shot, ...]
    holds: tuple[tuple[float, float], ...] = ()
    fps: float = FPS
    width: int = WIDTH
    height: int = HEIGHT
    seed: int = 7
    _rng: dict[str, np.random.Generator] = field(default_factory=dict, compare=False, repr=False)

    @property
    def duration(self) -> float:
        return self.shots[-1].end

    @property
    def cuts(self) -> list[float]:
        return [s.start for s in self.shots[1:]]

    def shot_at(self, t: float) -> Shot:
        for s in self.shots:
            if s.start <= t < s.end:
                return s
        return self.shots[-1]

    def key_boxes(self, t: float) -> list[Box]:
        return [a.box(t) for a in self.shot_at(t).actors if a.key]

    def render(self, t: float) -> np.ndarray:
        """The BGR frame at time t (with a little deterministic sensor noise, so detections jitter)."""
        shot = self.shot_at(t)
        frame = _background(shot.background).copy()
        for a in shot.actors:
            x, y = (int(round(v)) for v in a.path(t))
            p = _patch(a.size)
            x0, y0 = max(x, 0), max(y, 0)
            x1, y1 = min(x + a.size, self.width), min(y + a.size, self.height)
            if x1 > x0 and y1 > y0:
                frame[y0:y1, x0:x1] = p[y0 - y:y1 - y, x0 - x:x1 - x]
        rng = np.random.default_rng(self.seed + int(round(t * 1000)))
        noise = rng.normal(0, 2.0, frame.shape)
        return np.clip(frame.astype(np.float32) + noise, 0, 255).astype(np.uint8)

    def frame_times(self) -> list[float]:
        n = int(round(self.duration * self.fps))
        return [i / self.fps for i in range(n)]


def _hold(x: float, y: float) -> Callable[[float], tuple[float, float]]:
    return lambda t: (x, y)


def _line(t0: float, t1: float, a: tuple[float, float], b: tuple[float, float]) -> Callable[[float], tuple[float, float]]:
    def path(t: float) -> tuple[float, float]:
        u = min(max((t - t0) / (t1 - t0), 0.0), 1.0)
        return (a[0] + u * (b[0] - a[0]), a[1] + u * (b[1] - a[1]))

    return path


def _sway(cx: float, amp: float, period: float, y: float) -> Callable[[float], tuple[float, float]]:
    return lambda t: (cx + amp * math.sin(2 * math.pi * t / period), y + 12 * math.sin(2 * math.pi * t / 1.3))


def _walk_hold_walk(t: float) -> tuple[float, float]:
    if t < 1.5:
        return (60 + 120 * t, 110)  # 120 px/s to the right
    if t < 3.5:
        return (240, 110)
    return (240 + 90 * (t - 3.5), 110)


def _fidget(x: float, y: float, px: float) -> Callable[[float], tuple[float, float]]:
    """Standing still the way people do: a few pixels of random sway per frame (deterministic)."""
    def path(t: float) -> tuple[float, float]:
        rng = np.random.default_rng(int(round(t * 1000)))
        dx, dy = rng.normal(0, px, 2)
        return (x + float(dx), y + float(dy))

    return path


def ground_truth_scenes() -> list[Scene]:
    """The scenes the bench and tests judge: hold, linear pan, cuts, two subjects together, two apart,
    irregular motion (tracking), walk / hold / walk, and a subject that stands but sways (fidget: the
    camera must not chase it)."""
    return [
        Scene("hold", (Shot(0, 3, "coffee", (Actor(110, _hold(430, 110)),)),), holds=((0, 3),)),
        Scene("pan", (Shot(0, 5, "rocket", (Actor(110, _line(1, 4, (40, 120), (480, 120))),)),),
              holds=((0, 1), (4, 5))),
        Scene("cuts", (
            Shot(0, 2, "coffee", (Actor(110, _hold(60, 100)),)),
            Shot(2, 4, "hubble_deep_field", (Actor(110, _hold(470, 140)),)),
            Shot(4, 6, "rocket", (Actor(100, _hold(250, 90)),)),
        ), holds=((0, 2), (2, 4), (4, 6))),
        Scene("two_together", (Shot(0, 3, "brick", (
            Actor(80, _hold(232, 130)), Actor(80, _hold(328, 140)))),), holds=((0, 3),)),
        Scene("two_apart", (Shot(0, 3, "grass", (
            Actor(130, _hold(40, 100)), Actor(70, _hold(520, 150), key=False))),), holds=((0, 3),)),
        Scene("tracking", (Shot(0, 5, "coffee", (Actor(110, _sway(265, 150, 4.0, 110)),)),)),
        Scene("walk_hold_walk", (Shot(0, 5, "rocket", (Actor(110, _walk_hold_walk),)),), holds=((1.5, 3.5),)),
        Scene("fidget", (Shot(0, 3, "brick", (Actor(110, _fidget(300, 120, 4.0)),)),), holds=((0, 3),)),
    ]


# ---------------------------------------------------------------- figures


def inside(box: Box, win: Window) -> bool:
    x, y, w, h = win
    return box[0] >= x - 0.5 and box[1] >= y - 0.5 and box[2] <= x + w + 0.5 and box[3] <= y + h + 0.5


def coverage(scene: Scene, windows: Sequence[Window]) -> float:
    """Share of full-rate frames whose key subjects all lie inside the crop window."""
    times = scene.frame_times()
    ok = sum(all(inside(b, w) for b in scene.key_boxes(t)) for t, w in zip(times, windows, strict=True))
    return ok / len(times)


def steadiness(scene: Scene, windows: Sequence[Window]) -> float:
    """Mean |change of the window centre| per full-rate frame while the key subject holds still (px)."""
    times = scene.frame_times()
    deltas = []
    for i in range(1, len(times)):
        for t0, t1 in scene.holds:
            if t0 <= times[i - 1] and times[i] < t1:
                (xa, ya, wa, ha), (xb, yb, wb, hb) = windows[i - 1], windows[i]
                deltas.append(abs((xb + wb / 2) - (xa + wa / 2)) + abs((yb + hb / 2) - (ya + ha / 2)))
                break
    return float(np.mean(deltas)) if deltas else 0.0


def cut_reaction(scene: Scene, crops: Sequence[tuple[float, Window]]) -> int:
    """Worst number of analysed frames, after each cut, before the crop covers the new shot's subject."""
    worst = 0
    for c in scene.cuts:
        after = [(t, w) for t, w in crops if t >= c - 1e-9]
        late = 0
        for t, w in after:
            if all(inside(b, w) for b in scene.key_boxes(t)):
                break
            late += 1
        worst = max(worst, late)
    return worst
