"""Minutes of real footage for the shot-cut detector: the registry clips of ``devkit/footage.py`` played
through a virtual camera, cut together at known times.

The registries hold only ~2.5 minutes of real video (``devkit/footage.py`` lists it), too little to state a
false-cut rate per 10 minutes. This corpus stretches the same real pixels into long shots and hard
negatives without inventing any picture content:

- a *segment* shows one source span played forwards and backwards (ping-pong: continuous motion, no
  cut at the turn) through a virtual camera: keyframed zoom/centre over the 16:9-filled source frame
  (slow pans, zooms, hand-held shake, **whip pans** with real motion blur: each output frame averages the
  camera's positions over a 1/50 s exposure) and **flashes** (one or two frames at 1.6-2.6x brightness);
- a *clip* is segments back to back: every boundary is a hard cut at a known frame, and so is every frame
  where the source's own edit (``footage.SOURCE_CUTS``) is crossed in either direction;
- some segments end in a whip pan right up to the cut (the case the detector missed in ``bikes``), some
  start with one, others whip in the middle of a continuous shot and must not be cut there.

Nothing here is tuned against itself: ``tune`` clips use only the sources (and time ranges) of
``footage``'s tune split (carphone, vtest 0-48 s, tree 0-12 s); ``held_out`` clips use only held-out
material (Megamind, bikes, Big Buck Bunny, vtest 50-79 s, tree 12-22 s). The held-out clips were generated
once with fixed seeds; after the first held-out run, ``tree`` after 22 s was taken out of the material: a
hand passes over the lens there while the file delivers ~2.5 frames a second, so the picture jumps every
0.4 s, and both the old and the new detector fired on most jumps (docs/autocrop.md, "limits").
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import Any

import cv2
import numpy as np

from devkit import footage

WIDTH, HEIGHT, FPS = footage.WIDTH, footage.HEIGHT, footage.FPS
EXPOSURE = 1 / 50  # shutter time of the virtual camera: motion blur comes from camera motion inside it

Key = tuple[float, float, float, float]  # segment time, zoom, cx, cy (fractions of the filled frame)


@dataclass(frozen=True)
class Segment:
    """``source`` between ``a`` and ``b`` source seconds, ping-ponged for ``duration`` s, through a camera
    keyframed by ``keys`` (linear in between), with ``flashes`` (segment time, gain) and ``shake`` (px)."""

    source: str
    a: float
    b: float
    duration: float
    keys: tuple[Key, ...]
    flashes: tuple[tuple[float, float], ...] = ()
    shake: float = 0.0
    seed: int = 0
    tags: tuple[str, ...] = ()
    speed: float = 1.0  # source seconds per segment second: > 1 is fast action

    def source_time(self, u: float) -> float:
        span = self.b - self.a
        p = (u * self.speed) % (2 * span)
        return self.a + (p if p <= span else 2 * span - p)

    def camera(self, u: float) -> tuple[float, float, float]:
        ks = self.keys
        if u <= ks[0][0]:
            z, cx, cy = ks[0][1:]
        elif u >= ks[-1][0]:
            z, cx, cy = ks[-1][1:]
        else:
            j = next(i for i in range(1, len(ks)) if ks[i][0] >= u)
            (t0, *p0), (t1, *p1) = ks[j - 1], ks[j]
            f = (u - t0) / max(t1 - t0, 1e-9)
            f = f * f * (3 - 2 * f)  # ease in and out, like a hand on a tripod
            z, cx, cy = (p0[i] + f * (p1[i] - p0[i]) for i in range(3))
        if self.shake:
            rnd = random.Random(self.seed * 100003 + int(u * FPS))
            cx += rnd.uniform(-1, 1) * self.shake / WIDTH
            cy += rnd.uniform(-1, 1) * self.shake / HEIGHT
        return z, cx, cy


def _rect(source: str, z: float, cx: float, cy: float) -> tuple[float, float, float, float]:
    return footage.Shot(source, 0.0, 1.0, zoom=z, cx=cx, cy=cy).rect()


def _warp(img: np.ndarray, rect: tuple[float, float, float, float]) -> np.ndarray:
    x, y, w, h = rect
    m = np.array([[WIDTH / w, 0, -x * WIDTH / w], [0, HEIGHT / h, -y * HEIGHT / h]], np.float32)
    return cv2.warpAffine(img, m, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


#: Two shot starts closer than this are one cut: a source's own cut 1-3 frames before an edit shows a 1-3
#: frame flash of a shot, which a viewer does not see as a shot. (It was 0.5 s until 2026-12-01, which also
#: merged the 8-12 frame shots a virtual camera segment leaves when it starts 0.32-0.48 s after a source's
#: own cut: real cuts, left out of the reference.)
FLASH_MERGE = 0.15


@dataclass(frozen=True)
class StressClip:
    name: str
    split: str
    segments: tuple[Segment, ...]
    note: str = ""
    _cache: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    def starts(self) -> list[float]:
        out, t = [], 0.0
        for s in self.segments:
            out.append(t)
            t += s.duration
        return out

    def at(self, t: float) -> tuple[Segment, float]:
        for s, t0 in zip(self.segments, self.starts(), strict=True):
            if t < t0 + s.duration - 1e-9:
                return s, t - t0
        return self.segments[-1], self.segments[-1].duration - 1e-6

    def source_index(self, t: float) -> tuple[Segment, int]:
        seg, u = self.at(t)
        times = footage.source_times(seg.source)
        i = int(np.searchsorted(times, seg.source_time(u) + 1e-6, side="right")) - 1
        return seg, max(0, min(i, len(times) - 1))

    @property
    def cuts(self) -> list[float]:
        """Clip times (on the 25 fps grid) of the first frame of every new shot: segment boundaries, and
        frames whose source frame lies across one of the source's own cuts from the previous frame's."""
        if "cuts" not in self._cache:
            out: list[float] = []
            prev: tuple[Segment, int] | None = None
            for t in _grid(self.duration):
                seg, i = self.source_index(t)
                if prev is not None:
                    if prev[0] is not seg:
                        out.append(t)
                    else:
                        times = footage.source_times(seg.source)
                        ta, tb = times[prev[1]], times[i]
                        # the first frame of a source's new shot is stamped at the cut (to the ms)
                        if any((ta < c - 0.01) != (tb < c - 0.01) for c in _source_cuts(seg.source)):
                            out.append(t)
                prev = (seg, i)
            kept: list[float] = []
            for t in sorted(set(out)):  # a 1-3 frame flash of a shot before an edit is one cut, not two
                if not kept or t - kept[-1] >= FLASH_MERGE:
                    kept.append(t)
            self._cache["cuts"] = kept
        return list(self._cache["cuts"])  # type: ignore[call-overload]

    def frames(self, times: Sequence[float]) -> Iterator[tuple[float, np.ndarray]]:
        """Render at ``times``: one output frame each, decoded sources cached per segment span."""
        for t in times:
            seg, u = self.at(t)
            _seg, i = self.source_index(t)
            scale, decoded = _decoded(seg.source, seg.a, seg.b)
            img = decoded[i]
            z, cx, cy = seg.camera(u)
            z2, cx2, cy2 = seg.camera(max(0.0, u - EXPOSURE))
            step = max(abs(cx - cx2) * WIDTH * z, abs(cy - cy2) * HEIGHT * z, abs(z - z2) * WIDTH)
            n = int(min(12, max(1, math.ceil(step / 3))))  # one sub-position per 3 px of travel
            acc = np.zeros((HEIGHT, WIDTH, 3), np.float32)
            for k in range(n):
                f = (k + 0.5) / n
                rect = _rect(seg.source, z2 + f * (z - z2), cx2 + f * (cx - cx2), cy2 + f * (cy - cy2))
                acc += _warp(img, tuple(v * scale for v in rect))  # type: ignore[arg-type]
            out = acc / n
            for ft, gain in seg.flashes:
                if ft - 1e-6 <= u < ft + 2 / FPS - 1e-6:
                    out = out * gain + 30.0
            yield t, np.clip(out, 0, 255).astype(np.uint8)


def _grid(duration: float) -> list[float]:
    n = int(math.floor(duration * FPS + 1e-9))
    return [i / FPS for i in range(n)]


def _source_cuts(source: str) -> tuple[float, ...]:
    return footage.SOURCE_CUTS.get(source, ())


@lru_cache(maxsize=2)
def _decoded(source: str, a: float, b: float) -> tuple[float, dict[int, np.ndarray]]:
    """Source frames between ``a`` and ``b`` (s), by index, at most 960 px wide (and that scale): spans are
    at most 8 s, so this holds ~100 MB."""
    import av

    times = footage.source_times(source)
    lo = max(0, int(np.searchsorted(times, a + 1e-6, side="right")) - 1)
    hi = int(np.searchsorted(times, b + 1e-6, side="right"))
    out: dict[int, np.ndarray] = {}
    with av.open(str(footage.source_path(source))) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= lo:
                img = f.to_ndarray(format="bgr24")
                scale = min(1.0, 960 / img.shape[1])
                if scale < 1:
                    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
                out[i] = img
            if i >= hi:
                break
    last = max(out)
    for i in range(lo, hi + 1):  # a decoder that gave fewer frames than the demuxer counted
        out.setdefault(i, out[last])
    return min(1.0, 960 / footage.source_size(source)[0]), out


# ---------------------------------------------------------------- generation


def _whip_to(cx: float, z: float) -> float:
    """Where a whip pan from ``cx`` ends: one picture width (1/z of the frame) towards the farther side.
    Faster whips leave consecutive analysed frames (0.2 s apart) sharing under half their picture: at
    5 fps nothing tells them from a cut, and an operator cuts there anyway."""
    step = 1.0 / z
    return max(0.05, cx - step) if cx > 0.5 else min(0.95, cx + step)


#: How often each camera move is drawn: an ordinary programme, and a hard one (whips, flashes, hand-held
#: shake and fast action: where the held-out false cuts fell)
MOVES = (("hold", 3.0), ("pan", 3.0), ("zoom", 2.0), ("whip", 1.2), ("flash", 1.0))
HARD_MOVES = (("hold", 1.5), ("pan", 2.0), ("zoom", 1.0), ("whip", 3.0), ("flash", 2.5))


def _segment(rnd: random.Random, source: str, a: float, b: float, duration: float, seed: int,
             whip_out: bool = False, whip_in: bool = False, hard: bool = False, fast: bool = False) -> Segment:
    """A camera move plan: holds, slow pans, zooms, a whip pan now and then, flashes, maybe hand-held.
    ``hard``: whips and flashes 2-3x as often, hand-held shake in half the segments, and half of them
    played at 1.5-3x speed (fast action). ``fast``: the whip into or out of the shot is cut at full speed
    (0.3-0.7 s for a picture width, cut 30-70 % of the way through it), not settled: a real cut beside
    camera motion of 4-10 thumbnail px a frame, the case ``FullRateCuts.MOTION`` leaves to the model."""
    moves = HARD_MOVES if hard else MOVES
    z = rnd.uniform(1.25, 1.9)
    cx, cy = rnd.uniform(0.3, 0.7), rnd.uniform(0.4, 0.6)
    keys: list[Key] = []
    tags: list[str] = []
    u = 0.0
    if whip_in and fast:  # the shot starts in the middle of a fast whip pan
        span, frac = rnd.uniform(0.3, 0.7), rnd.uniform(0.3, 0.7)
        keys.append((-span * frac, z, _whip_to(cx, z), cy))
        u = span * (1 - frac)
        tags.append("fast-whip-in")
    elif whip_in:  # the shot starts inside a whip pan that settles
        keys.append((0.0, z, _whip_to(cx, z), cy))
        u = rnd.uniform(0.6, 0.8)
        tags.append("whip-in")
    keys.append((u, z, cx, cy))
    out_span, out_frac = (rnd.uniform(0.3, 0.7), rnd.uniform(0.3, 0.7)) if fast else (0.6, 1.0)
    end = duration - (out_span * out_frac if whip_out else 0.0)
    flashes: list[tuple[float, float]] = []
    while u < end - 0.5:
        move = rnd.choices([m for m, _ in moves], [w for _, w in moves])[0]
        if move == "hold":
            u = min(end, u + rnd.uniform(1.0, 4.0))
        elif move == "pan":
            d = rnd.uniform(1.5, 5.0)
            cx = min(0.95, max(0.05, cx + rnd.choice([-1, 1]) * rnd.uniform(0.1, 0.4)))
            u = min(end, u + d)
        elif move == "zoom":
            z = min(2.6, max(1.0, z * rnd.choice([0.7, 1.4])))
            u = min(end, u + rnd.uniform(1.0, 3.0))
        elif move == "whip":  # a fast horizontal pan: one picture width in 0.6-1.0 s
            cx = _whip_to(cx, z)
            u = min(end, u + rnd.uniform(0.6, 1.0))
            tags.append("whip")
        else:
            flashes.append((round(u + rnd.uniform(0.1, 1.0), 2), rnd.uniform(1.6, 2.6)))
            u = min(end, u + 1.2)
            tags.append("flash")
            continue
        keys.append((u, z, cx, cy))
    if whip_out:  # a whip pan right up to the cut, its last frames blurred (``fast``: cut in the middle)
        keys.append((end, z, cx, cy))
        keys.append((end + out_span if fast else duration, z, _whip_to(cx, z), cy))
        tags.append("fast-whip-out" if fast else "whip-out")
    shake = rnd.choice([0.0, 0.0, 0.0, rnd.uniform(2.0, 6.0)])
    speed = 1.0
    if hard:
        shake = shake or rnd.choice([0.0, 0.0, rnd.uniform(2.0, 8.0)])
        speed = rnd.choice([1.0, rnd.uniform(1.5, 3.0)])
        if speed > 1:
            tags.append("fast")
    if shake:
        tags.append("shake")
    return Segment(source, a, b, duration, tuple(keys), tuple(flashes), shake, seed, tuple(tags), speed)


def _span(rnd: random.Random, source: str, lo: float, hi: float) -> tuple[float, float]:
    """A source span of 2-8 s whose ends lie >= 0.6 s from the source's own cuts (the ping-pong turns
    there, so no shot of the edit is shorter than 1.2 s)."""
    cuts = _source_cuts(source)
    for _ in range(200):
        span = min(hi - lo, rnd.uniform(2.0, 8.0))
        a = rnd.uniform(lo, hi - span)
        if all(abs(a - c) >= 0.6 and abs(a + span - c) >= 0.6 for c in cuts):
            return round(a, 2), round(a + span, 2)
    raise ValueError(f"no span in {source} {lo}-{hi} away from its cuts")


def _clip(name: str, split: str, seed: int, material: Sequence[tuple[str, float, float]], duration: float,
          long_every: int = 3, note: str = "", hard: bool = False, fast: bool = False) -> StressClip:
    rnd = random.Random(seed)
    segs: list[Segment] = []
    total = 0.0
    k = 0
    while total < duration - 1.0:
        source, lo, hi = rnd.choice(material)
        a, b = _span(rnd, source, lo, hi)
        d = rnd.uniform(20.0, 45.0) if k % long_every == long_every - 1 else rnd.uniform(1.5, 8.0)
        d = max(1.5, min(d, duration - total))
        out_p, in_p = (0.6, 0.3) if fast else (0.35, 0.15)
        segs.append(_segment(rnd, source, a, b, round(d, 2), seed * 1000 + k,
                             whip_out=rnd.random() < out_p, whip_in=rnd.random() < in_p, hard=hard, fast=fast))
        total += segs[-1].duration
        k += 1
    return StressClip(name, split, tuple(segs), note)


TUNE_MATERIAL = (("carphone", 0.0, 4.0), ("vtest", 0.0, 48.0), ("tree", 0.0, 12.0))
HELD_MATERIAL = (("megamind", 0.0, 11.2), ("bikes", 0.0, 10.0), ("bunny", 0.0, 5.2), ("vtest", 50.0, 79.0),
                 ("tree", 12.0, 22.0))


@cache
def stress_corpus() -> tuple[StressClip, ...]:
    return (
        _clip("stress_tune_a", "tune", 11, TUNE_MATERIAL, 110.0),
        _clip("stress_tune_b", "tune", 12, TUNE_MATERIAL, 110.0),
        _clip("stress_tune_cuts", "tune", 13, TUNE_MATERIAL, 90.0, long_every=1000),
        *(_clip(f"stress_held_{i}", "held_out", 100 + i, HELD_MATERIAL, 110.0) for i in range(1, 7)),
    )


@cache
def stress_wide() -> tuple[StressClip, ...]:
    """More tune programmes (22 min, tune material only): the first three clips' 5.2 min hold too few
    false cuts to tell a rate of 1 per 10 minutes from 0. Six ordinary programmes and six hard ones
    (``_segment(hard=True)``: whips, flashes, shake, fast action; the last three only short shots, so
    many cuts come after a whip, a flash or fast action)."""
    return (*(_clip(f"stress_tune_w{i}", "tune", 13 + i, TUNE_MATERIAL, 110.0) for i in range(1, 7)),
            *(_clip(f"stress_tune_h{i}", "tune", 40 + i, TUNE_MATERIAL, 110.0, hard=True,
                    long_every=3 if i <= 3 else 1000) for i in range(1, 7)))


@cache
def stress_motion() -> tuple[StressClip, ...]:
    """Tune programmes whose cuts come in the middle of fast whip pans (``fast``: 60 % of the shots whip out
    at full speed into the cut, 30 % start inside one), short shots only: the wide tune split has almost no
    real cut beside fast camera motion, so it could not tell what ``FullRateCuts.MOTION`` costs. Four
    ordinary (``m1``, ``m2``, ``m5``, ``m6``) and four hard (whips, flashes, shake, fast action elsewhere in
    the shot) programmes of 60 s."""
    return tuple(_clip(f"stress_tune_m{i}", "tune", 60 + i, TUNE_MATERIAL, 60.0, long_every=1000,
                       hard=(i - 1) % 4 >= 2, fast=True) for i in range(1, 9))


def stress(split: str | None = None, wide: bool = True) -> list[StressClip]:
    """The corpus' clips (of ``split``); ``wide=False`` leaves out the wide tune programmes (``stress_wide``,
    ``stress_motion``)."""
    every = stress_corpus() + (stress_wide() + stress_motion() if wide else ())
    return [c for c in every if split is None or c.split == split]


def detect_cuts(clip: StressClip, fps: float = 5.0, width: int = 480,
                detector: Any = None) -> tuple[list[float], dict[float, float]]:
    """Run the sidecar's shot detector as the sidecar builds it (the hand-made detector with the learned
    second opinion when the model loads), or ``detector`` (an object with the same ``push``/``flush``), over
    ``clip`` as the sidecar sees it (``fps`` frames a second, ``width`` px wide): the cut times it reports
    and every analysed frame's score."""
    from sidecast.sidecars.autocrop.analyzer import load_shot_model
    from sidecast.sidecars.autocrop.decide import ShotDetector

    det = detector if detector is not None else ShotDetector(model=load_shot_model())
    h = round(HEIGHT * width / WIDTH)
    found: list[float] = []
    scores: dict[float, float] = {}
    times = [i / fps for i in range(int(clip.duration * fps + 1e-9))]
    for t, img in clip.frames(times):
        for ft, cut in det.push(t, cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)):
            scores[ft] = det.last_score
            if cut:
                found.append(ft)
    for ft, cut in det.flush():
        scores[ft] = det.last_score
        if cut:
            found.append(ft)
    return found, scores
