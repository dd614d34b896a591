"""Smoothing: turns per-frame focus regions into a camera path that moves like an operator would.

``CropPlanner`` is pure (no I/O, no clock): feed it one ``Observation`` per analysed frame, in media-time
order, and it hands back the ``Crop`` records it has become sure of. It holds each frame until it has seen
``lookahead`` seconds beyond it (or a cut), so the decision for time t uses the frames up to t+lookahead.

Per shot and per axis the camera is in one of three modes, re-decided on every frame from the subject's
motion inside the look-ahead window, like an operator who only re-frames when needed:

- stationary: the camera holds still while the focus stays inside the crop's safe zone (plus a small
  dead-band for detection jitter) over the next ``hold_horizon`` s — jitter and sway are never chased — or
  while the detections themselves (a face, not the head-and-shoulders region around it) stay inside the crop
  less ``core_comfort`` of it a side: the subject is comfortable, so a face found late in a hold does not
  re-frame;
- panning: the focus is about to leave: the camera glides to the one position that frames the focus over
  the whole look-ahead window, and stops there — for a slow walk (under ``step_speed`` crop widths a
  second), the position that leaves the subject the whole crop to walk into, so the camera holds, steps,
  holds — unless the walker is a person box: that one is *pushed* (``push_people``), the camera moving at
  its speed only as far as frames it over the next ``push_ahead`` s, so it never moves on once the walker is
  comfortable; or the focus travels steadily one way faster than that: the camera pans along its trend.
  When the target changes under a move (a face found late, a group formed, another subject) and the crop as
  it stands already frames the new target comfortably, the camera brakes and rests there
  (``hold_new_target``) instead of going on to centre it. For ``reverse_hold`` s after a move ends, the
  camera does not swing back the other way while the subject's detections stay inside the crop: an operator
  who has just re-framed one way does not re-frame back for a subject still in the picture (a group that
  formed and broke up, a detection that jumped and came back);
- tracking: the focus moves about more than the crop can hold still: the camera follows a least-squares
  trend of its centre.

Moves respect a maximum speed and acceleration and brake to a stop; shot cuts jump (no smoothing across a
cut) and reset the state.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from sidecast.contract.records import Crop

from .decide import Focus


@dataclass(frozen=True)
class PathOptions:
    """How the camera may move. Speeds are fractions of the source width (per s, per s^2)."""

    aspect: tuple[int, int] = (9, 16)
    safe_margin: float = 0.05
    max_pan_speed: float = 0.5
    max_accel: float = 1.5
    lookahead: float = 1.0
    dead_band: float = 0.03
    response: float = 0.3
    hold_horizon: float = 0.4
    trend_ahead: float = 0.4
    trend_behind: float = 0.4
    weak_slack: float = 0.3
    hold_memory: float = 2.5
    step_speed: float = 0.6
    walk_travel: float = 0.25
    push_people: bool = True
    push_ahead: float = 0.4
    core_comfort: float | None = 0.1
    hold_new_target: bool = True
    reverse_hold: float = 2.0
    # the nineteenth session's hold for any newcomer (handover_faces False) helped cyclists held out and cost
    # pedestrians_held; the twentieth session's choice on tune: hold 1.0 s, only for a face newcomer while the
    # new subject is not a face (docs/autocrop.md, "Stillness: fresh held-out footage")
    handover_hold: float | None = 1.0
    handover_faces: bool = True


@dataclass(frozen=True)
class Observation:
    """One analysed frame as the planner sees it: its time, whether a shot starts, the focus (or None);
    whether the focus keeper handed the camera over to another subject on this frame (``handover``) and the
    faces and people in the frame the focus does not hold (``present``, boxes), for the hand-over hold."""

    t: float
    cut: bool
    focus: Focus | None
    handover: bool = False
    present: tuple[tuple[float, float, float, float, str], ...] = ()


def crop_size(source_w: int, source_h: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """The largest even-sized window of ``aspect`` that fits the source (the crop never zooms in)."""
    aw, ah = aspect
    if source_w * ah >= source_h * aw:  # source is wider than the target: full height
        h = source_h - source_h % 2
        w = int(h * aw / ah)
    else:
        w = source_w - source_w % 2
        h = int(w * ah / aw)
    w, h = max(2, w - w % 2), max(2, h - h % 2)
    return min(w, source_w - source_w % 2 or 2), min(h, source_h - source_h % 2 or 2)


@dataclass
class _Entry:
    t: float
    lo: float
    hi: float
    c: float
    whole: bool = False  # the region is the whole subject (a person box), not a face's or a saliency guess
    # centres that keep the detections themselves (a face, not its head and shoulders) inside the crop less
    # the comfortable margin a side: the subject is comfortable there even when its region is not
    clo: float = -math.inf
    chi: float = math.inf
    # centres that keep the detections themselves inside the crop at all (no margin): the subject is in the picture
    ilo: float = -math.inf
    ihi: float = math.inf


def _fit(entries: Sequence[_Entry]) -> tuple[float, float, float]:
    """Least-squares line c = a + b*t through the entries' centres: (a, b, rms residual)."""
    n = len(entries)
    mt = sum(e.t for e in entries) / n
    mc = sum(e.c for e in entries) / n
    var = sum((e.t - mt) ** 2 for e in entries)
    b = 0.0 if var < 1e-9 else sum((e.t - mt) * (e.c - mc) for e in entries) / var
    a = mc - b * mt
    rms = math.sqrt(sum((a + b * e.t - e.c) ** 2 for e in entries) / n)
    return a, b, rms


class _Axis:
    """One axis of the camera: position p of the crop centre, velocity v, and whether it is moving.

    The camera behaves like an operator who only re-frames when needed: it holds while the focus stays in
    the crop's safe zone (plus a dead-band) over the next ``hold_horizon`` s; when the focus is about to
    leave, it glides to the position that frames the whole look-ahead window (where the subject will be,
    sway included) and stops there; only a subject that keeps moving one way (a walk, a ride) is followed
    continuously, along the least-squares trend of its centre.
    """

    def __init__(self, crop: float, extent: float, vmax: float, amax: float, dead_band: float,
                 response: float, hold_horizon: float = 0.4, trend_ahead: float = 0.4,
                 step_speed: float = 0.0, walk_travel: float = 0.0, push_ahead: float | None = None,
                 core_comfort: float | None = None, hold_new_target: bool = False,
                 reverse_hold: float = 0.0) -> None:
        self.reverse_hold = reverse_hold
        self.move_from: float | None = None  # where the current move began
        self.last_dir, self.last_end = 0.0, -math.inf  # the direction (+1/-1) and end time of the last move
        self.hold_horizon, self.trend_ahead = hold_horizon, trend_ahead
        self.core_comfort = core_comfort
        self.hold_new_target = hold_new_target and core_comfort is not None
        self.step_speed, self.walk_travel, self.push_ahead = step_speed, walk_travel, push_ahead
        self.crop = crop
        self.cmin = crop / 2
        self.cmax = extent - crop / 2
        self.vmax, self.amax, self.dead_band, self.response = vmax, amax, dead_band, response
        self.p = (self.cmin + self.cmax) / 2
        self.v = 0.0
        self.moving = False
        self.target: float | None = None
        self.pushing = False  # this move pushes a walker along (it stays a push if the walker turns into a face)
        self.move_steps = 0  # steps since this move began
        self.retargeted = False  # this move's target changed after it began

    def clamp(self, x: float) -> float:
        return min(max(x, self.cmin), self.cmax)

    def entry(self, t: float, f0: float, f1: float, margin: float, slack: float = 0.0,
              core: tuple[float, float] | None = None, whole: bool = False) -> _Entry:
        """Centres that keep [f0, f1] inside the crop with ``margin``; when that does not fit, centres that
        keep the ``core`` (the detections themselves) inside, with the margin if it fits; a point last.

        ``slack`` widens the interval for weak signals (saliency): roughly in frame is good enough, so the
        camera does not chase every shift of a saliency blob."""
        lo, hi = f1 + margin - self.crop / 2, f0 - margin + self.crop / 2
        mid = (f0 + f1) / 2
        if lo > hi and core is not None:
            c0, c1 = core
            mid = (c0 + c1) / 2
            lo, hi = c1 + margin - self.crop / 2, c0 - margin + self.crop / 2
            if lo > hi:
                lo, hi = c1 - self.crop / 2, c0 + self.crop / 2
        if lo > hi:
            lo = hi = mid
        clo, chi = math.inf, -math.inf  # never comfortable unless asked for
        c0, c1 = core if core is not None else (f0, f1)
        if self.core_comfort is not None:
            m = self.core_comfort * self.crop
            clo, chi = self.clamp(c1 + m - self.crop / 2), self.clamp(c0 - m + self.crop / 2)
        ilo, ihi = self.clamp(c1 - self.crop / 2), self.clamp(c0 + self.crop / 2)
        return _Entry(t, self.clamp(lo - slack), self.clamp(hi + slack), self.clamp(mid), whole, clo, chi,
                      ilo, ihi)

    @staticmethod
    def _common(entries: Sequence[_Entry]) -> tuple[float, float]:
        return max(e.lo for e in entries), min(e.hi for e in entries)

    def _comfortable(self, span: Sequence[_Entry]) -> bool:
        """Whether the subject's detections stay inside the crop as it stands, less ``core_comfort`` of it a
        side, over ``span``: an operator does not re-frame then, though a face's head-and-shoulders region
        (the planner's wish, not the subject) touches the safe margin — a face found late in a hold, inside
        a person box or a saliency blob the crop framed, or a talking head whose shoulders sway out."""
        return bool(span) and max(e.clo for e in span) <= self.p <= min(e.chi for e in span)

    def _rest_target(self, span: Sequence[_Entry]) -> float | None:
        """Where to stop so every entry of ``span`` stays framed (nearest to centring the focus), or None."""
        lo, hi = self._common(span)
        if lo > hi:
            return None
        mean_c = sum(e.c for e in span) / len(span)
        return min(max(mean_c, lo), hi)

    def _travelling(self, entries: Sequence[_Entry]) -> tuple[float, float, float] | None:
        """(a, b, rms) of the focus' trend when it keeps moving one way, faster than a quarter of the crop
        per second and steadily; else None."""
        if len(entries) < 3:
            return None
        a, b, rms = _fit(entries)
        if abs(b) >= 0.25 * self.crop and rms < 0.1 * self.crop:
            return a, b, rms
        return None

    def _reverses(self, entries: Sequence[_Entry], b: float) -> bool:
        """Whether the focus centre moved against direction ``b`` by more than a tenth of the crop."""
        sign = 1.0 if b >= 0 else -1.0
        peak = -math.inf
        for e in entries:
            peak = max(peak, sign * e.c)
            if peak - sign * e.c > 0.1 * self.crop:
                return True
        return False

    def _walking(self, entries: Sequence[_Entry]) -> float | None:
        """The speed of a subject that walks one way, however slowly, over this shot's recent past and the
        look-ahead: it has travelled ``walk_travel`` of the crop along a steady line (rms under a tenth of the
        crop) and never turned back by more than a tenth of the crop; else None (a sway, a stand)."""
        if len(entries) < 5 or entries[-1].t - entries[0].t < 1.5 - 1e-9:
            return None
        _a, b, rms = _fit(entries)
        travelled = abs(b) * (entries[-1].t - entries[0].t)
        if travelled < self.walk_travel * self.crop or rms >= 0.1 * self.crop or self._reverses(entries, b):
            return None
        return b

    def _swings_back(self, t: float, near: Sequence[_Entry], lo: float, hi: float) -> bool:
        """Whether a move starting now would turn back against the move that ended less than ``reverse_hold``
        s ago while the subject's detections stay inside the crop as it stands over ``near``: the camera
        holds instead (``step``). A subject about to leave the picture is followed at once."""
        if t - self.last_end > self.reverse_hold + 1e-9:
            return False
        db = self.dead_band
        way = 1.0 if lo - db > self.p else -1.0 if hi + db < self.p else 0.0
        return way * self.last_dir < 0 and max(e.ilo for e in near) <= self.p <= min(e.ihi for e in near)

    def _ended(self, t: float) -> None:
        """The current move ends at ``t``: remember which way it went."""
        if self.move_from is not None and abs(self.p - self.move_from) >= 1.0:
            self.last_dir, self.last_end = math.copysign(1.0, self.p - self.move_from), t
        self.move_from = None

    def start(self, window: Sequence[_Entry]) -> str:
        self.v, self.moving, self.target, self.pushing = 0.0, False, None, False
        self.move_steps, self.retargeted = 0, False
        self.move_from, self.last_dir, self.last_end = None, 0.0, -math.inf
        if not window:
            self.p = (self.cmin + self.cmax) / 2
            return "centered"
        near = [e for e in window if e.t - window[0].t <= self.hold_horizon + 1e-9]
        for span in (window, near):
            rest = self._rest_target(span)
            if rest is not None:
                self.p = rest
                return "stationary"
        a, b, rms = _fit(window)
        self.p = self.clamp(a + b * window[0].t)
        self.v = max(-self.vmax, min(self.vmax, b))
        self.moving = True
        return "panning" if rms < 0.02 * self.crop else "tracking"

    def comfortable_at(self, c0: float, c1: float) -> tuple[float, float]:
        """Centres that keep [c0, c1] inside the crop less ``core_comfort`` of it a side (empty when off)."""
        if self.core_comfort is None:
            return math.inf, -math.inf
        m = self.core_comfort * self.crop
        return self.clamp(c1 + m - self.crop / 2), self.clamp(c0 - m + self.crop / 2)

    def step(self, t: float, dt: float, window: Sequence[_Entry], history: Sequence[_Entry],
             memory: Sequence[_Entry] = (), stay: Sequence[tuple[float, float]] = ()) -> str:
        """Move the camera on by ``dt`` to ``t``; ``stay``: centres (intervals) at which someone the camera
        does not follow is comfortable in the crop, during a hand-over (``PathOptions.handover_hold``): the
        camera does not start a move while it stands in one of them."""
        if self.cmax - self.cmin < 0.5:  # the crop spans this whole axis: nothing to decide
            return "stationary"
        if not window:  # nobody to follow: come to rest where we are
            self.v, self.moving, self.target, self.pushing = 0.0, False, None, False
            return "stationary"
        near = [e for e in window if e.t - t <= self.hold_horizon + 1e-9] or list(window[:1])
        lo, hi = self._common(near)
        db = self.dead_band
        if not self.moving and (lo - db <= self.p <= hi + db or self._comfortable(near)
                                or self._swings_back(t, near, lo, hi)
                                or any(a <= self.p <= b for a, b in stay)):
            self.v, self.pushing = 0.0, False
            return "stationary"
        if not self.moving:
            self.move_from = self.p
        if self.moving:
            self.move_steps += 1
        else:
            self.move_steps, self.retargeted = 0, False
        self.moving = True
        # An operator holds a subject that sways: when this shot's recent past and the look-ahead fit in
        # the crop together, re-frame once to hold them all. Else a subject that travels one way is
        # followed along its trend; else re-frame to hold the look-ahead; else follow what we can.
        trend = self._travelling([*history, *window])
        rest = self._rest_target([*memory, *window]) if memory else None
        if trend is not None and rest is not None and self._reverses([*memory, *window], trend[1]):
            trend = None  # it went the other way a moment ago and the crop holds both ends: a sway
        lead = 0.0
        if trend is not None and abs(trend[1]) < self.step_speed * self.crop:
            # A slow walk (under ``step_speed`` crop widths a second): hold, and re-frame in steps that put
            # the subject at the crop's trailing side, so it has the whole crop to walk into before the
            # next step; only faster subjects are followed continuously.
            lead, trend, rest = trend[1], None, None
        elif trend is None and memory and self.walk_travel > 0:
            # Slower still (under a quarter crop a second), but walking one way over this shot's recent
            # past: the same hold and step. Re-centring such a walker on its recent past would leave it
            # only half the crop to walk into, and the camera would creep after it in small moves.
            slow = self._walking([*memory, *window])
            if slow is not None:
                lead, rest = slow, None
        if trend is not None:
            rest = None
        push: float | None = None
        if trend is None and rest is None and lead != 0.0:
            ahead = [e for e in window if e.t - t <= (self.push_ahead or 0.0) + 1e-9] or list(window[:1])
            if self.push_ahead is not None and (self.pushing or all(e.whole for e in ahead)):
                # A person box is the whole walker: push the crop along only as far as frames it over the
                # next ``push_ahead`` s, at its own speed. The walker stays at the edge of the comfortable
                # region while it walks, and the camera never moves on once it is comfortable again (issue
                # 20's words). A face's region (head and shoulders of a body the detector does not see) and
                # a saliency box are rough: those walkers get the lead step below, which frames them with
                # room to spare.
                lo_s, hi_s = self._common(ahead)
                if lo_s <= hi_s:
                    push = lo_s if lead > 0 else hi_s
            if push is None:
                for span in (window, near):
                    lo_s, hi_s = self._common(span)
                    if lo_s <= hi_s:
                        rest = hi_s if lead > 0 else lo_s
                        break
        if trend is None and rest is None and push is None:
            rest = self._rest_target(window)
            if rest is None:
                rest = self._rest_target(near)
        self.pushing = push is not None
        if push is not None:
            target, v_target, mode = push, lead, "panning"
            self.target = None
        elif trend is None and rest is not None:
            if self.target is None or not (lo <= self.target <= hi):
                self.retargeted = self.retargeted or self.move_steps > 0
                self.target = rest
            if self.retargeted and self.hold_new_target and self._comfortable(near):
                # The target changed under a move (the focus is someone or something else now: a face found
                # late, a group that formed or broke up, a box that grew or shrank) and the crop as it stands
                # frames the new target comfortably: an operator stops rather than re-frame onto it (issue 20).
                # The camera brakes as hard as it may, when it can come to rest inside the comfortable region
                # sooner than at the new target; at rest, the comfortable hold above keeps it there until the
                # new target itself leaves that region.
                stop = self.clamp(self.p + self.v * abs(self.v) / (2 * self.amax))
                if max(e.clo for e in near) <= stop <= min(e.chi for e in near) and \
                        abs(stop - self.p) < abs(self.target - self.p):
                    self.target = stop
            target, v_target, mode = self.target, 0.0, "panning"
        else:
            ahead = [e for e in window if e.t - t <= self.trend_ahead + 1e-9]
            a, b, rms = _fit([*history, *ahead])
            target, v_target = a + b * t, b
            mode = "panning" if trend is not None and rms < 0.02 * self.crop else "tracking"
            self.target = None
        target = self.clamp(target)
        gap = target - self.p
        # The target is for time t and p is where the camera was at t - dt: close what the trend does not
        # already cover, a share dt/response of it per step (all of it when response <= dt).
        v_des = v_target + (gap - v_target * dt) / max(self.response, dt)
        if v_target == 0.0:  # brake so that we stop on the target instead of overshooting it
            v_des = math.copysign(min(abs(v_des), math.sqrt(2 * self.amax * abs(gap))), gap)
        elif push is not None:  # a push goes the walker's way or stops, never back
            v_des = max(v_des, 0.0) if v_target > 0 else min(v_des, 0.0)
        dv = self.amax * dt
        v = min(max(v_des, self.v - dv), self.v + dv)
        self.v = min(max(v, -self.vmax), self.vmax)
        new_p = self.clamp(self.p + self.v * dt)
        if new_p in (self.cmin, self.cmax):
            self.v = 0.0
        self.p = new_p
        if v_target == 0.0 and abs(target - self.p) < 1.0:  # arrived: stop and hold
            self.p = target
            self.v, self.moving, self.target = 0.0, False, None
            self._ended(t)
        elif push is not None and self.v == 0.0:  # the walker is framed from here: hold until it needs a push
            self.moving = False
            self._ended(t)
            return "stationary"
        return mode


_MODE_RANK = {"centered": 0, "stationary": 1, "panning": 2, "tracking": 3}


class CropPlanner:
    """Observations in, crops out, with bounded look-ahead. See the module docstring for the behaviour."""

    def __init__(self, source_w: int, source_h: int, options: PathOptions | None = None) -> None:
        self.options = options or PathOptions()
        o = self.options
        self.source_w, self.source_h = source_w, source_h
        self.crop_w, self.crop_h = crop_size(source_w, source_h, o.aspect)
        vmax = o.max_pan_speed * source_w
        amax = o.max_accel * source_w
        push = o.push_ahead if o.push_people else None
        self.ax = _Axis(self.crop_w, source_w, vmax, amax, o.dead_band * self.crop_w, o.response,
                        o.hold_horizon, o.trend_ahead, o.step_speed, o.walk_travel, push, o.core_comfort,
                        o.hold_new_target, o.reverse_hold)
        self.ay = _Axis(self.crop_h, source_h, vmax, amax, o.dead_band * self.crop_h, o.response,
                        o.hold_horizon, o.trend_ahead, o.step_speed, o.walk_travel, push, o.core_comfort,
                        o.hold_new_target, o.reverse_hold)
        self.pending: deque[Observation] = deque()
        self.history: deque[Observation] = deque()
        self.memory: deque[Observation] = deque()  # this shot's last ``hold_memory`` s
        self.last_t: float | None = None
        self.published_until = -1.0
        self._force_cut = True

    # ------------------------------------------------------------ feeding

    def push(self, obs: Observation) -> list[Crop]:
        """Add the next analysed frame; returns the crops whose look-ahead is now complete."""
        if self.pending and obs.t <= self.pending[-1].t:
            return []  # out of order or duplicate: the path only moves forward
        if self._force_cut:
            obs = Observation(obs.t, True, obs.focus, obs.handover, obs.present)
            self._force_cut = False
        self.pending.append(obs)
        out = []
        while self.pending and self._ready():
            out.append(self._decide())
        return out

    def flush(self) -> list[Crop]:
        """Decide everything still pending (end of stream, or before a discontinuity)."""
        out = []
        while self.pending:
            out.append(self._decide())
        return out

    def discontinuity(self) -> list[Crop]:
        """The source jumped: publish what is pending, then treat the next frame as a new shot."""
        out = self.flush()
        self._force_cut = True
        return out

    # ------------------------------------------------------------ deciding

    def _ready(self) -> bool:
        head = self.pending[0]
        if self.pending[-1].t - head.t >= self.options.lookahead - 1e-9:
            return True
        return any(o.cut for o in list(self.pending)[1:])

    def _window(self) -> list[Observation]:
        head = self.pending[0]
        win = [head]
        for o in list(self.pending)[1:]:
            if o.cut or o.t - head.t > self.options.lookahead + 1e-9:
                break
            win.append(o)
        return win

    def _entries(self, obs: Sequence[Observation]) -> tuple[list[_Entry], list[_Entry]]:
        mx = self.options.safe_margin * self.crop_w
        my = self.options.safe_margin * self.crop_h
        weak = self.options.weak_slack
        ex, ey = [], []
        for o in obs:
            f = o.focus
            if f is None:
                continue
            slack = weak if f.kind == "object" else 0.0
            core = f.core or (f.x0, f.y0, f.x1, f.y1)
            whole = f.kind == "person"
            ex.append(self.ax.entry(o.t, f.x0, f.x1, mx, slack * self.crop_w, (core[0], core[2]), whole))
            ey.append(self.ay.entry(o.t, f.y0, f.y1, my, slack * self.crop_h, (core[1], core[3]), whole))
        return ex, ey

    def _stay(self, t: float, window: Sequence[Observation]) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """Per axis, the centres at which someone in the picture the focus does not hold is comfortable in the
        crop over the look-ahead, when the keeper hands the camera over to another subject within
        ``handover_hold`` s of ``t`` (before or after); else nothing.

        Foresight: the followed subject left, the keeper took someone else, and the camera would leave for
        them while a face or a person that walks into the crop within the look-ahead (found by the detector
        only now, later than by eye) stays comfortably in it. An operator waits for the picture to settle; the
        hold ends once nobody the camera does not follow is comfortable in the crop over the look-ahead, or
        ``handover_hold`` s after the hand-over (the nineteenth session's tune clip ``street_crowd_b``).

        ``handover_faces``: only a face newcomer holds the camera, and only while the new subject is not a face
        (a person box or a saliency blob): a late-found face in the crop is the picture an operator waits for,
        while another body walking through a crowd is what the camera hands over among all the time (the
        nineteenth session's hold for anyone cost the held-out crowd ``pedestrians_held``)."""
        h = self.options.handover_hold
        overs = [o for o in (*self.memory, *window) if o.handover and abs(o.t - t) <= h + 1e-9] if h is not None else []
        if not overs:
            return [], []
        if self.options.handover_faces and all(o.focus is not None and o.focus.kind == "face" for o in overs):
            return [], []  # the new subject is a face itself: a face newcomer is no better a picture to wait on
        present = [b for o in window for b in o.present if not self.options.handover_faces or b[4] == "face"]
        sx = [self.ax.comfortable_at(b[0], b[2]) for b in present]
        sy = [self.ay.comfortable_at(b[1], b[3]) for b in present]
        return sx, sy

    def _decide(self) -> Crop:
        window = self._window()
        head = self.pending.popleft()
        wx, wy = self._entries(window)
        if head.cut:
            self.history.clear()
            self.memory.clear()
            mode = max(self.ax.start(wx), self.ay.start(wy), key=_MODE_RANK.__getitem__)
        else:
            dt = max(1e-3, head.t - (self.last_t if self.last_t is not None else head.t))
            hx, hy = self._entries(self.history)
            kx, ky = self._entries(self.memory)
            sx, sy = self._stay(head.t, window)
            mx = self.ax.step(head.t, dt, wx, hx, kx, sx)
            my = self.ay.step(head.t, dt, wy, hy, ky, sy)
            mode = max(mx, my, key=_MODE_RANK.__getitem__)
        self.history.append(head)
        while self.history and head.t - self.history[0].t > self.options.trend_behind + 1e-9:
            self.history.popleft()
        self.memory.append(head)
        while self.memory and head.t - self.memory[0].t > self.options.hold_memory + 1e-9:
            self.memory.popleft()
        self.last_t = head.t
        self.published_until = head.t
        x = int(round(self.ax.p - self.crop_w / 2))
        y = int(round(self.ay.p - self.crop_h / 2))
        x = min(max(x, 0), self.source_w - self.crop_w)
        y = min(max(y, 0), self.source_h - self.crop_h)
        conf = head.focus.confidence if head.focus is not None else 0.0
        return Crop(t=head.t, x=x, y=y, width=self.crop_w, height=self.crop_h, mode=mode,
                    confidence=round(conf, 3), cut=head.cut)
