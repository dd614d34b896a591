"""Try the autocrop sidecar's decision and smoothing constants in seconds, on the real footage of
``devkit/footage.py``, without running the detectors again.

Detection (YuNet, HOG, UNISAL) and the shot detector cost ~30 ms per analysed frame, the focus keeper and the
planner almost nothing. ``cache`` runs the whole analysis once per clip (5 fps, 480 px, as the sidecar does)
and keeps, per analysed frame, its time, whether a shot starts there and the subjects found; ``score`` feeds
those through ``choose_focus`` -> ``FocusKeeper`` -> ``CropPlanner`` (as ``Analyzer._finish`` does) and
prints coverage and hold motion per clip and split, the way ``bench/autocrop.py`` computes them. Before any
change the figures are the bench's own (``score --check`` asserts the replayed crops equal the cached ones).

    .venv/bin/python -m devkit.autocrop_replay cache            # once, ~1 min per clip on a busy machine
    .venv/bin/python -m devkit.autocrop_replay score --split tune
    .venv/bin/python -m devkit.autocrop_replay score --code /tmp/my-autocrop   # a modified copy of sidecars/autocrop
    .venv/bin/python -m devkit.autocrop_replay causes --split tune    # where the motion during holds comes from
    .venv/bin/python -m devkit.autocrop_replay holds --split tune     # hold steps: subject comfortable / leaving
    .venv/bin/python -m devkit.autocrop_replay moves --split tune     # every move: travel, comf px, reversals
    .venv/bin/python -m devkit.autocrop_replay frontier --split tune  # least hold motion per coverage, foreseen
    .venv/bin/python -m devkit.autocrop_replay horizon --split tune --replan 5   # the same, foreseeing H s only

Tune on ``--split tune`` only; look at ``held_out`` and ``fresh`` once, when a change is chosen.
"""

from __future__ import annotations

import argparse
import importlib.util
import pickle
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np

from devkit import footage
from sidecast.contract.records import Crop
from sidecast.core.croppath import CropPath

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "autocrop-replay"
FPS, WIDTH = 5.0, 480


def analysed_times(duration: float, fps: float = FPS) -> list[float]:
    n = int(np.floor(duration * fps + 1e-9))
    return [i / fps for i in range(n) if i / fps < duration]


def load_code(code: Path | None) -> tuple[ModuleType, ModuleType]:
    """(decide, smooth) from ``code`` (a copy of sidecars/autocrop), or the installed sidecar's."""
    if code is None:
        from sidecast.sidecars.autocrop import decide, smooth
        return decide, smooth
    name = "autocrop_replayed"
    spec = importlib.util.spec_from_file_location(name, code / "__init__.py", submodule_search_locations=[str(code)])
    assert spec is not None and spec.loader is not None
    pkg = importlib.util.module_from_spec(spec)
    sys.modules[name] = pkg
    # only the two pure modules are needed: do not run the package's __init__ (the sidecar and its models)
    mods = []
    for sub in ("decide", "smooth"):
        s = importlib.util.spec_from_file_location(f"{name}.{sub}", code / f"{sub}.py")
        assert s is not None and s.loader is not None
        m = importlib.util.module_from_spec(s)
        sys.modules[f"{name}.{sub}"] = m
        s.loader.exec_module(m)
        mods.append(m)
    return mods[0], mods[1]


def cache(clips: list[footage.Clip]) -> None:
    from sidecast.sidecars.autocrop.analyzer import Analyzer
    from sidecast.sidecars.autocrop.detect import FaceDetector, ObjectDetector
    from sidecast.sidecars.autocrop.smooth import PathOptions

    CACHE.mkdir(parents=True, exist_ok=True)
    faces, objects = FaceDetector(threads=1), ObjectDetector(threads=1)
    h = round(footage.HEIGHT * WIDTH / footage.WIDTH)
    for c in clips:
        an = Analyzer(footage.WIDTH, footage.HEIGHT, PathOptions(), faces, objects=objects)
        an.keep_history = True
        crops: list[Crop] = []
        for t, img in c.frames(analysed_times(c.duration)):
            crops += an.analyse(t, cv2.resize(img, (WIDTH, h), interpolation=cv2.INTER_AREA))
        crops += an.flush()
        data = {"history": [(a.t, a.cut, a.subjects) for a in an.history], "crops": crops}
        (CACHE / f"{c.name}.pkl").write_bytes(pickle.dumps(data))
        print(f"{c.name}: {len(an.history)} analysed frames cached", flush=True)


def replay(history: list[tuple[float, bool, list[Any]]], decide: ModuleType, smooth: ModuleType,
           record: list[tuple[float, bool, Any, Any]] | None = None) -> list[Crop]:
    """The crops the keeper and planner make of the cached detections (``Analyzer._finish``'s steps);
    ``record`` gets (t, cut, the frame's focus, the kept focus) per analysed frame."""
    opts = smooth.PathOptions()
    planner = smooth.CropPlanner(footage.WIDTH, footage.HEIGHT, opts)
    try:
        keeper = decide.FocusKeeper(planner.crop_w, frame_w=footage.WIDTH)
        tracks = True
    except TypeError:  # a version before the keeper kept tracks
        keeper = decide.FocusKeeper(planner.crop_w)
        tracks = False
    last = None
    crops: list[Crop] = []
    for t, cut, subjects in history:
        if cut:
            last = None
            keeper.reset()
        focus = decide.choose_focus(subjects, planner.crop_w, planner.crop_h, footage.WIDTH, footage.HEIGHT,
                                    opts.safe_margin, previous=keeper.held or last)
        if focus is not None:
            last = focus
        if tracks:
            others = [f for s in subjects if len(subjects) > 1 and (f := decide.choose_focus(
                [s], planner.crop_w, planner.crop_h, footage.WIDTH, footage.HEIGHT, opts.safe_margin)) is not None]
            kept = keeper.update(t, focus, others)
        else:
            kept = keeper.update(t, focus)
        if record is not None:
            record.append((t, cut, focus, kept))
        if "handover" in getattr(smooth.Observation, "__dataclass_fields__", {}):  # the hand-over hold's inputs
            obs = smooth.Observation(t, cut, kept, bool(getattr(keeper, "switched", False)),
                                     decide.present_people(subjects, kept))
        else:
            obs = smooth.Observation(t, cut, kept)
        crops += planner.push(obs)
    return crops + planner.flush()


def windows(crops: list[Crop], times: list[float]) -> list[tuple[int, int, int, int]]:
    path = CropPath(footage.WIDTH, footage.HEIGHT, (9, 16))
    for c in crops:
        path.add(c)
    return [path.window_at(t) for t in times]


def comfort_steps(clip: footage.Clip, times: list[float], wins: list[tuple[int, int, int, int]], crop_w: float,
                  margin: float = 0.1, horizon: float = 0.4) -> list[bool]:
    """Per frame step (index i: times[i-1] -> times[i]), whether the crop had no need to move there, in issue
    20's words ("while the subject stays inside a comfortable region of the crop, the crop does not move"):
    the shot has no subject, or the reference subject's main box stays inside the crop as it stood at
    times[i-1], less ``margin`` of the crop width on each side (the bench's 80 %), from times[i] to
    times[i] + ``horizon`` (within the shot). Steps where the subject is outside that region, or leaves it
    within ``horizon`` (the planner's own reach before a move), are re-frames, not holds."""
    shot = np.searchsorted(np.array([0.0, *clip.cuts]), np.array(times) + 1e-9, side="right").tolist()
    xs = [(r[0][0], r[0][2]) if (r := clip.references(t)) else None for t in times]
    none = [clip.subject(t) == "none" for t in times]
    return comfort_flags(xs, none, shot, times, wins, crop_w, margin, horizon)


def comfort_flags(xs: list[tuple[float, float] | None], none: list[bool], shot: list[int], times: list[float],
                  wins: list[tuple[int, int, int, int]], crop_w: float, margin: float = 0.1,
                  horizon: float = 0.4) -> list[bool]:
    """``comfort_steps`` on plain data: per frame the reference subject's (x0, x1) or None, whether the shot
    has no subject, and the shot's number."""
    out = [False]
    for i in range(1, len(times)):
        if shot[i] != shot[i - 1]:
            out.append(False)
            continue
        if none[i]:
            out.append(True)
            continue
        x, _, w, _ = wins[i - 1]
        lo, hi = x + margin * crop_w, x + w - margin * crop_w
        ok, j = True, i
        while j < len(times) and shot[j] == shot[i] and times[j] <= times[i] + horizon + 1e-9:
            box = xs[j]
            if box is None or box[0] < lo or box[1] > hi:
                ok = False
                break
            j += 1
        out.append(ok)
    return out


def operator_holds(clip: footage.Clip, times: list[float], wins: list[tuple[int, int, int, int]], crop_w: float,
                   settle: float = 1.0, rest_frames: int = 3) -> list[bool]:
    """Per frame step, whether the crop should be still there, reading issue 20 as an operator's rule: it may
    move only to re-frame. A move that starts while the subject is leaving (or outside) the comfortable
    region (``comfort_steps`` false) is a re-frame as a whole, until the crop comes to rest (``rest_frames``
    still frames) or the subject has been comfortable in the moving crop for ``settle`` s (a move that
    outlasts its need is drift again); a move that starts while the subject is comfortable is not one.
    True: the subject is comfortable and no re-frame is under way (motion there is hold motion)."""
    comf = comfort_steps(clip, times, wins, crop_w)
    shot = np.searchsorted(np.array([0.0, *clip.cuts]), np.array(times) + 1e-9, side="right").tolist()
    return operator_flags(comf, shot, times, wins, settle, rest_frames)


def operator_flags(comf: list[bool], shot: list[int], times: list[float], wins: list[tuple[int, int, int, int]],
                   settle: float = 1.0, rest_frames: int = 3) -> list[bool]:
    """``operator_holds`` on plain data: ``comf`` from ``comfort_flags``, the shot number of each frame."""
    out = [False]
    reframing, still, comfy_since = False, 0, None
    for i in range(1, len(times)):
        if shot[i] != shot[i - 1]:
            reframing, still, comfy_since = False, 0, None
            out.append(False)
            continue
        moved = wins[i][:2] != wins[i - 1][:2]
        still = 0 if moved else still + 1
        if reframing:
            if still >= rest_frames:
                reframing = False
            elif comf[i]:
                comfy_since = times[i] if comfy_since is None else comfy_since
                if times[i] - comfy_since > settle + 1e-9:
                    reframing = False
            else:
                comfy_since = None
        if not reframing and moved and not comf[i]:
            reframing, comfy_since = True, None
        out.append(comf[i] and not reframing)
    return out


def reversals_per_min(wins: list[tuple[int, int, int, int]], times: list[float], cuts: list[float]) -> float:
    """How often the crop's horizontal motion turns back (a move one way, then the other, inside one shot),
    per minute of footage: a wandering crop reverses often, an operator's holds and single moves rarely."""
    shot = np.searchsorted(np.array([0.0, *cuts]), np.array(times) + 1e-9, side="right")
    n, last = 0, 0
    for i in range(1, len(times)):
        if shot[i] != shot[i - 1]:
            last = 0
            continue
        d = wins[i][0] - wins[i - 1][0]
        if d:
            s = 1 if d > 0 else -1
            n += last == -s
            last = s
    return 60.0 * n / max(times[-1] - times[0], 1e-9)


def _load(c: footage.Clip) -> dict[str, Any]:
    path = CACHE / f"{c.name}.pkl"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python -m devkit.autocrop_replay cache` first")
    data: dict[str, Any] = pickle.loads(path.read_bytes())
    return data


def score(clips: list[footage.Clip], code: Path | None, check: bool) -> None:
    decide, smooth = load_code(code)
    totals: dict[str, list[float]] = {}
    print(f"{'clip':17s} {'split':9s} {'cover':>6s} {'hold':>8s} {'moving':>7s} {'still':>7s} {'walk':>7s}"
          f" {'none':>7s} {'moved':>8s}")
    for c in clips:
        data = _load(c)
        crops = replay(data["history"], decide, smooth)
        if check:
            assert [(a.t, a.x, a.y, a.cut) for a in crops] == [(a.t, a.x, a.y, a.cut) for a in data["crops"]], c.name
        times = c.frame_times()
        wins = windows(crops, times)
        cov, n = footage.coverage(c, times, wins)
        spans = footage.holds(c, times, 202)
        motion = footage.hold_motion(times, wins, spans)
        nh = footage.hold_frames(times, spans)
        by_kind = {k: [s for s in spans if footage.hold_kind(c, times, s, 202) == k] for k in ("still", "walk", "none")}
        kinds = " ".join(f"{footage.hold_motion(times, wins, sp):5.2f}px" if sp else f"{'-':>7s}"
                         for sp in by_kind.values())
        moved = float(np.mean([abs(b[0] - a[0]) for a, b in zip(wins, wins[1:], strict=False)]))
        print(f"{c.name:17s} {c.split:9s} {cov * 100:5.1f}% {motion:6.2f}px "
              f"{100 * footage.hold_moving(times, wins, spans):6.0f}% {kinds} {moved:6.2f}px")
        tot = totals.setdefault(c.split, [0.0, 0.0, 0.0, 0.0])
        tot[0] += cov * n
        tot[1] += n
        tot[2] += motion * nh
        tot[3] += nh
    for split, (cov_n, n, hold_n, nh) in totals.items():
        print(f"{split:9s} coverage {100 * cov_n / max(n, 1):5.1f}%, hold motion {hold_n / max(nh, 1):.2f} px/frame")
    print("hold: mean |change of the crop centre| per frame during holds; moving: share of hold frames where it "
          "moves; still / walk / none: hold motion in spans where the reference subject stays within a quarter "
          "crop / travels / is absent; moved: mean |change of the crop's x| per frame over the whole clip")


def causes(clips: list[footage.Clip], code: Path | None) -> None:
    """Where the crop's motion during holds comes from, per clip: every frame step inside a hold where the
    crop moves is put down to what the kept focus did within the planner's reach (the step's analysed
    frames, back 0.4 s and ahead by the look-ahead)."""
    decide, smooth = load_code(code)
    look = smooth.PathOptions().lookahead
    for c in clips:
        data = _load(c)
        rec: list[tuple[float, bool, Any, Any]] = []
        crops = replay(data["history"], decide, smooth, rec)
        times = c.frame_times()
        wins = windows(crops, times)
        spans = footage.holds(c, times, 202)
        found: dict[str, list[float]] = {}
        for i in range(1, len(times)):
            if not any(a <= times[i - 1] and times[i] <= b for a, b in spans):
                continue
            d = abs(wins[i][0] - wins[i - 1][0]) + abs(wins[i][1] - wins[i - 1][1])
            if not d:
                continue
            near = [r for r in rec if times[i] - 0.4 <= r[0] <= times[i] + look + 0.2]
            kept = [r[3] for r in near]
            refs = c.references(times[i])
            first = next((k for k in kept if k is not None), None)
            pairs = list(zip(kept, kept[1:], strict=False))
            if any(a is not None and b is not None and abs(a.cx - b.cx) > 0.35 * 202 for a, b in pairs):
                why = "another subject followed (switch)"
            elif any((a is None) != (b is None) for a, b in pairs):
                why = "subject lost or found"
            elif any(a is not None and b is not None and a.kind != b.kind and abs(a.cx - b.cx) > 0.1 * 202
                     for a, b in pairs):
                why = "same subject, detector kind changes"  # a face's region, then a body box 20+ px off
            elif refs and first is not None and abs((refs[0][0] + refs[0][2]) / 2 - first.cx) > 101:
                why = "framing another subject than the reference"
            else:
                why = "re-framing the same subject"
            f = found.setdefault(why, [0, 0.0])
            f[0] += 1
            f[1] += d
        nh = footage.hold_frames(times, spans)
        total = sum(v[1] for v in found.values())
        print(f"{c.name} ({c.split}): {nh} hold frame steps, {sum(v[0] for v in found.values()):.0f} moving, "
              f"{total:.0f} px = {total / max(nh, 1):.2f} px/frame")
        for why, (k, px) in sorted(found.items(), key=lambda kv: -kv[1][1]):
            print(f"    {why:45s} {k:4.0f} steps {px:6.0f} px ({100 * px / max(total, 1):3.0f}%)")


def hold_split(clips: list[footage.Clip], code: Path | None) -> None:
    """The bench's hold steps split by issue 20's words: steps where the reference subject stays inside the
    comfortable region of the crop as it stood (``comfort_steps``) and steps where it is outside it or
    leaving it (re-frames, or another subject framed), with the crop's motion in each."""
    decide, smooth = load_code(code)
    print(f"{'clip':17s} {'split':9s} {'hold steps':>10s} {'px':>5s} {'leaving':>8s} {'px':>5s} {'comfortable':>11s} {'px':>5s}"
          f" {'comf px/frame':>13s} {'op steps':>8s} {'op px/frame':>11s} {'rev/min':>7s}")
    for c in clips:
        times = c.frame_times()
        wins = windows(replay(_load(c)["history"], decide, smooth), times)
        spans = footage.holds(c, times, 202)
        comf = comfort_steps(c, times, wins, 202)
        d = [0] + [abs(wins[i][0] - wins[i - 1][0]) for i in range(1, len(times))]
        hs = [i for i in range(1, len(times)) if footage._in_spans(times, i, spans)]
        hc = [i for i in hs if comf[i]]
        hn = [i for i in hs if not comf[i]]
        op = operator_holds(c, times, wins, 202)
        ho = [i for i in hs if op[i]]
        print(f"{c.name:17s} {c.split:9s} {len(hs):10d} {sum(d[i] for i in hs):5d} {len(hn):8d} "
              f"{sum(d[i] for i in hn):5d} {len(hc):11d} {sum(d[i] for i in hc):5d} "
              f"{sum(d[i] for i in hc) / max(len(hc), 1):13.2f} {len(ho):8d} {sum(d[i] for i in ho) / max(len(ho), 1):11.2f} "
              f"{reversals_per_min(wins, times, c.cuts):7.1f}")


def crop_moves(wins: list[tuple[int, int, int, int]], times: list[float], cuts: list[float],
               gap: int = 3) -> list[tuple[int, int]]:
    """The crop's moves inside shots as (first, last) frame step: runs of steps where its x changes, apart by at
    least ``gap`` still steps (a move that pauses for less is one move); a cut ends a move."""
    shot = np.searchsorted(np.array([0.0, *cuts]), np.array(times) + 1e-9, side="right")
    out: list[tuple[int, int]] = []
    for i in range(1, len(times)):
        if shot[i] != shot[i - 1] or wins[i][0] == wins[i - 1][0]:
            continue
        if out and i - out[-1][1] <= gap and shot[out[-1][1]] == shot[i]:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


def moves(clips: list[footage.Clip], code: Path | None) -> None:
    """Every move of the crop, with what the camera saw when it began: its travel, the px of it the bench's comf
    counts (steps in holds with the reference subject comfortable), whether the kept focus' detections were
    comfortable in the crop as it stood when the move began (``self``: the planner's own view), the kept focus'
    kind and count before and at the start, and whether it reverses the previous move within 3 s."""
    decide, smooth = load_code(code)
    for c in clips:
        rec: list[tuple[float, bool, Any, Any]] = []
        crops = replay(_load(c)["history"], decide, smooth, rec)
        times = c.frame_times()
        wins = windows(crops, times)
        spans = footage.holds(c, times, 202)
        comf = comfort_steps(c, times, wins, 202)
        ms = crop_moves(wins, times, c.cuts)
        print(f"{c.name} ({c.split}): {len(ms)} moves")
        prev: tuple[int, int] | None = None
        for a, b in ms:
            d = [wins[i][0] - wins[i - 1][0] for i in range(a, b + 1)]
            cpx = sum(abs(wins[i][0] - wins[i - 1][0]) for i in range(a, b + 1)
                      if footage._in_spans(times, i, spans) and comf[i])
            x = wins[a - 1][0]
            lo, hi = x + 0.1 * 202, x + 202 - 0.1 * 202
            ahead = [r for r in rec if times[a] - 0.2 - 1e-9 <= r[0] <= times[a] + 0.4 + 1e-9]
            kept = [r[3] for r in ahead if r[3] is not None]
            cores = [k.core or (k.x0, k.y0, k.x1, k.y1) for k in kept]
            self_ok = bool(cores) and all(lo <= k[0] and k[2] <= hi for k in cores)
            before = [r[3] for r in rec if times[a] - 1.0 <= r[0] < times[a] - 0.2 and r[3] is not None]
            desc = lambda fs: ",".join(sorted({f"{f.kind[0]}{f.count}@{f.cx:.0f}" for f in fs}))  # noqa: E731
            rev = ""
            if prev is not None and times[a] - times[prev[1]] <= 3.0:
                pd = wins[prev[1]][0] - wins[prev[0] - 1][0]
                if pd * sum(d) < 0:
                    rev = " REVERSES"
            print(f"  {times[a - 1]:6.2f}-{times[b]:6.2f}s net {sum(d):+4d} px total {sum(abs(v) for v in d):4d}"
                  f" comf {cpx:3d} self {'ok ' if self_ok else 'out'} x {x:3d}{rev}")
            print(f"      before {desc(before)[:110]}")
            print(f"      start  {desc(kept)[:110]}")
            prev = (a, b)


def frontier(clips: list[footage.Clip], weights: list[float]) -> None:
    """What a camera that knew the reference boxes in advance could reach on the bench's own definitions:
    the least hold motion for a given coverage, by dynamic programming over the crop's x (``dp_path``: 2 px
    grid, |speed| <= 12 px/frame, |change of speed| <= 2 px/frame per frame), planned per shot (a free jump
    at cuts), motion outside the bench's holds priced 1/1000. ``weights``: px of hold motion one uncovered
    frame is worth (high: coverage first). ``horizon`` with H = 0 plans the same camera."""
    cw = 202
    xs = np.arange(0, footage.WIDTH - cw + 1, FRONTIER_GRID)
    for lam in weights:
        tot = [0.0, 0.0, 0.0, 0.0]
        for c in clips:
            times = c.frame_times()
            spans = footage.holds(c, times, cw)
            shot = np.searchsorted(np.array([0.0, *c.cuts]), np.array(times) + 1e-9, side="right")
            unc = uncovered(c, times, xs, cw)
            step_w = np.array([1.0 if footage._in_spans(times, i, spans) else 1e-3 for i in range(len(times))])
            bounds = [0, *(i for i in range(1, len(times)) if shot[i] != shot[i - 1]), len(times)]
            path = [x for a, b in zip(bounds, bounds[1:], strict=False)
                    for x, _ in dp_path(unc[a:b], step_w[a:b], lam)]
            wins = [(int(xs[p]), 0, cw, footage.HEIGHT) for p in path]
            cov, n = footage.coverage(c, times, wins)
            motion, nh = footage.hold_motion(times, wins, spans), footage.hold_frames(times, spans)
            print(f"  weight {lam:6.1f} {c.name:17s} cover {cov * 100:5.1f}% hold {motion:.2f} px/frame", flush=True)
            tot[0] += cov * n
            tot[1] += n
            tot[2] += motion * nh
            tot[3] += nh
        print(f"weight {lam:6.1f}: coverage {100 * tot[0] / max(tot[1], 1):5.1f}%, hold motion "
              f"{tot[2] / max(tot[3], 1):.2f} px/frame", flush=True)


# ---------------------------------------------------------------- foresight: how far ahead must a camera see?

FRONTIER_GRID, FRONTIER_VMAX = 2, 12  # px per x cell; |speed| <= 12 px/frame, |change of speed| <= 1 cell


def dp_path(unc: np.ndarray, weights: np.ndarray, lam: float, start: tuple[int, int] | None = None,
            grid: int = FRONTIER_GRID, vmax: int = FRONTIER_VMAX) -> list[tuple[int, int]]:
    """The camera path through ``len(unc)`` frames of one shot that minimises the weighted motion plus ``lam``
    per uncovered frame: sum over steps i of ``weights[i]`` * |speed at i| (px) + ``lam`` * ``unc[i, x]``.

    States are (x cell, speed index) with x in cells of ``grid`` px and speeds -vmax..vmax px/frame in steps of
    ``grid``; the speed changes by at most one step a frame (an operator eases in and out). ``start``: the
    state at frame 0 (a camera already on its way), or None for a free one at rest (a cut: the core jumps).
    Returns the state of every frame."""
    n, nx = unc.shape
    speeds = np.arange(-vmax, vmax + 1, grid)
    nv = len(speeds)
    shift = speeds // grid
    xi = np.arange(nx)
    src = xi[:, None] - shift[None, :]
    valid = (src >= 0) & (src < nx)
    srcc = np.clip(src, 0, nx - 1)
    vcol = np.broadcast_to(np.arange(nv)[None, :], (nx, nv))
    absv = np.abs(speeds).astype(float)[None, :]
    cost = np.full((nx, nv), np.inf)
    if start is None:
        cost[:, nv // 2] = lam * unc[0]
    else:
        cost[start] = lam * unc[0, start[0]]
    backs: list[np.ndarray] = []
    inf_col = np.full((nx, 1), np.inf)
    for i in range(1, n):
        cand = np.stack([np.hstack([inf_col, cost[:, :-1]]), cost, np.hstack([cost[:, 1:], inf_col])])
        arg = np.argmin(cand, axis=0)
        m = np.take_along_axis(cand, arg[None], axis=0)[0]
        nxt = np.where(valid, m[srcc, vcol], np.inf) + weights[i] * absv
        cost = nxt + lam * unc[i][:, None]
        backs.append(arg.astype(np.int8))
    x, v = np.unravel_index(int(np.argmin(cost)), cost.shape)
    x, v = int(x), int(v)
    out = [(x, v)]
    for arg in reversed(backs):
        x = x - int(shift[v])  # arg is kept where the camera was: its speed there was v + arg - 1
        v = v + int(arg[x, v]) - 1
        out.append((x, v))
    return out[::-1]


def hold_spans_index(xs: list[tuple[float, float] | None], none: list[bool], shot: list[int], times: list[float],
                     crop_w: float, span: float = 1.0) -> tuple[list[int], list[bool]]:
    """``footage.holds`` on plain data, per frame: the greedy span it belongs to (-1: none) and, per span,
    whether it is a hold (it lasts ``span`` s). A step i lies in a hold when frames i-1 and i share a hold span.
    Spans are found forwards, so a camera that knows the boxes up to frame e knows every span that closed
    before e exactly; only the one still open at e is unknown (``receding_path`` counts it as a hold)."""
    ids = [-1] * len(times)
    holds: list[bool] = []
    starts: list[float] = []
    nones: list[bool] = []
    cur: list[float] | None = None  # lo, hi
    shot_t0: dict[int, float] = {}
    for i, t in enumerate(times):
        s = shot[i]
        if s not in shot_t0:
            shot_t0[s] = t
            cur = None
        if t < shot_t0[s] + 0.2 - 1e-9:  # the first moments after a cut belong to the jump
            continue
        if none[i]:
            if cur is None or cur[0] != -1.0:
                holds.append(False)
                starts.append(t)
                nones.append(True)
                cur = [-1.0, -1.0]
            ids[i] = len(holds) - 1
            continue
        box = xs[i]
        if box is None:
            cur = None
            continue
        if cur is not None and cur[0] != -1.0 and max(cur[1], box[1]) - min(cur[0], box[0]) <= 0.8 * crop_w:
            cur = [min(cur[0], box[0]), max(cur[1], box[1])]
        else:
            holds.append(False)
            starts.append(t)
            nones.append(False)
            cur = [box[0], box[1]]
        ids[i] = len(holds) - 1
    last_t: dict[int, float] = {}
    for i, k in enumerate(ids):
        if k >= 0:
            last_t[k] = times[i]
    for k in range(len(holds)):
        holds[k] = nones[k] or last_t[k] - starts[k] >= span - 1e-9  # a shot with no subject: a hold whole
    return ids, holds


def hold_step_weights(ids: list[int], holds: list[bool], lo: int, hi: int, known: int | None = None,
                      outside: float = 1e-3) -> np.ndarray:
    """Per frame lo..hi, the weight of the step into it: 1 inside a hold, ``outside`` elsewhere (the frontier's
    price of moving where the bench does not look). ``known``: the last frame whose boxes the camera knows;
    the span still open there counts as a hold."""
    open_span = ids[known] if known is not None else -2
    w = np.full(hi - lo + 1, outside)
    if outside >= 1.0:
        return w
    for j in range(max(lo, 1), hi + 1):
        k = ids[j]
        if k >= 0 and ids[j - 1] == k and (holds[k] or k == open_span):
            w[j - lo] = 1.0
    return w


def receding_path(unc: np.ndarray, ids: list[int], holds: list[bool], shot: list[int], lam: float,
                  horizon: int | None, replan: int = 1, outside: float = 1e-3, tail: int = 50) -> list[int]:
    """The x cell of a camera that decides frame t knowing the boxes only up to frame t + ``horizon`` (None:
    the whole shot): every ``replan`` frames it plans the least-cost path (``dp_path``) from where it is over
    what it knows, and follows that plan's first ``replan`` frames. At a cut it starts afresh, free.

    Past what it knows, the plan assumes the subject stays where it was last seen for ``tail`` more frames
    (unless the shot ends first, which a camera sees coming only within its horizon): without that, a camera
    whose subject is further than it can travel within its horizon would never start the move (moving
    costs, and no frame it can see gets covered)."""
    out: list[int] = []
    bounds = [0] + [i for i in range(1, len(shot)) if shot[i] != shot[i - 1]] + [len(shot)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        if horizon is None:
            out += [x for x, _ in dp_path(unc[a:b], hold_step_weights(ids, holds, a, b - 1, None, outside), lam)]
            continue
        state: tuple[int, int] | None = None
        i = a
        while i < b:
            e = min(b - 1, i + horizon)
            lo = a if state is None else i - 1
            u, w = unc[lo:e + 1], hold_step_weights(ids, holds, lo, e, e, outside)
            if e < b - 1 and tail > 0:
                u = np.vstack([u, np.repeat(unc[e:e + 1], tail, axis=0)])
                w = np.concatenate([w, np.full(tail, w[-1] if len(w) > 1 else 1.0)])
            plan = dp_path(u, w, lam, state)
            take = plan[i - lo:i - lo + replan]
            out += [x for x, _ in take]
            state = take[-1]
            i += len(take)
    return out


def uncovered(c: footage.Clip, times: list[float], xs: np.ndarray, crop_w: int = 202) -> np.ndarray:
    """1 where a crop at x (px) would leave the reference subject out (the bench's coverage), per frame."""
    unc = np.zeros((len(times), len(xs)))
    for i, t in enumerate(times):
        refs = c.references(t)
        if refs and c.subject(t) != "none":
            unc[i] = [0.0 if footage.covered(refs, (int(x), 0, crop_w, footage.HEIGHT)) else 1.0 for x in xs]
    return unc


def horizon(clips: list[footage.Clip], horizons: list[float], weights: list[float], replan: int,
            outside: float = 1e-3) -> None:
    """How much foresight stillness needs: for each horizon H (s; 0 = the whole shot) and weight, the path of
    a camera that knows the reference boxes only up to H s ahead (``receding_path``), with the bench's
    figures: coverage, hold motion, comf, op, rev/min, per split. ``outside`` 1: every px of motion is priced
    alike (a camera that does not know where the bench measures)."""
    cw, g = 202, FRONTIER_GRID
    xs = np.arange(0, footage.WIDTH - cw + 1, g)
    prep = []
    for c in clips:
        times = c.frame_times()
        shot = np.searchsorted(np.array([0.0, *c.cuts]), np.array(times) + 1e-9, side="right").tolist()
        boxes = [(r[0][0], r[0][2]) if (r := c.references(t)) else None for t in times]
        none = [c.subject(t) == "none" for t in times]
        ids, hl = hold_spans_index(boxes, none, shot, times, cw)
        spans = footage.holds(c, times, cw)
        assert [w == 1.0 for w in hold_step_weights(ids, hl, 0, len(times) - 1)][1:] == \
            [footage._in_spans(times, i, spans) for i in range(1, len(times))], c.name
        prep.append((c, times, shot, ids, hl, spans, uncovered(c, times, xs, cw)))
    print(f"{'H':>6s} {'weight':>7s} {'coverage':>9s} {'hold':>8s} {'comf':>8s} {'op':>8s} {'rev/min':>8s}   per clip: "
          "cover hold", flush=True)
    for h in horizons:
        hf = None if h <= 0 else int(round(h * footage.FPS))
        for lam in weights:
            tot = {"cov": 0.0, "n": 0.0, "hold": 0.0, "nh": 0.0, "comf": 0.0, "nc": 0.0, "op": 0.0, "no": 0.0,
                   "rev": 0.0, "dur": 0.0}
            per = []
            for c, times, shot, ids, hl, spans, unc in prep:
                path = receding_path(unc, ids, hl, shot, lam, hf, replan, outside)
                wins = [(int(xs[p]), 0, cw, footage.HEIGHT) for p in path]
                cov, n = footage.coverage(c, times, wins)
                motion, nh = footage.hold_motion(times, wins, spans), footage.hold_frames(times, spans)
                d = [0] + [abs(wins[i][0] - wins[i - 1][0]) for i in range(1, len(times))]
                hs = [i for i in range(1, len(times)) if footage._in_spans(times, i, spans)]
                comf = comfort_steps(c, times, wins, cw)
                op = operator_flags(comf, shot, times, wins)
                hc, ho = [i for i in hs if comf[i]], [i for i in hs if op[i]]
                tot["cov"] += cov * n
                tot["n"] += n
                tot["hold"] += motion * nh
                tot["nh"] += nh
                tot["comf"] += sum(d[i] for i in hc)
                tot["nc"] += len(hc)
                tot["op"] += sum(d[i] for i in ho)
                tot["no"] += len(ho)
                tot["rev"] += reversals_per_min(wins, times, c.cuts) * c.duration / 60
                tot["dur"] += c.duration
                per.append(f"{c.name} {100 * cov:.1f}% {motion:.2f}")
            label = "whole" if hf is None else f"{h:g}s"
            print(f"{label:>6s} {lam:7.1f} {100 * tot['cov'] / max(tot['n'], 1):8.1f}% "
                  f"{tot['hold'] / max(tot['nh'], 1):5.2f} px {tot['comf'] / max(tot['nc'], 1):5.2f} px "
                  f"{tot['op'] / max(tot['no'], 1):5.2f} px {tot['rev'] * 60 / max(tot['dur'], 1e-9):8.1f}   "
                  + "; ".join(per), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["cache", "score", "causes", "holds", "moves", "frontier", "horizon"])
    ap.add_argument("--split", choices=["tune", "held_out", "fresh"], help="only this split's clips")
    ap.add_argument("--clips", nargs="*", help="only these clips")
    ap.add_argument("--code", type=Path, help="a modified copy of sidecars/autocrop to score")
    ap.add_argument("--check", action="store_true", help="assert the replay gives the cached crops (no change)")
    ap.add_argument("--weights", type=float, nargs="*", default=[1000.0, 10.0, 3.0, 1.0],
                    help="frontier: px of hold motion one uncovered frame is worth")
    ap.add_argument("--horizons", type=float, nargs="*", default=[0.5, 1.0, 2.0, 4.0, 0.0],
                    help="horizon: seconds of foresight to try (0: the whole shot)")
    ap.add_argument("--replan", type=int, default=1, help="horizon: frames between re-plans (1: every frame)")
    ap.add_argument("--outside", type=float, default=1e-3,
                    help="horizon: price of 1 px of motion outside the bench's holds (1: the camera does not know them)")
    args = ap.parse_args(argv)
    if any(h < 0 for h in args.horizons):
        ap.error("--horizons must be >= 0 (0: the whole shot)")
    if args.replan < 1:
        ap.error("--replan must be >= 1")
    if not 0 < args.outside <= 1:
        ap.error("--outside must be in (0, 1]")
    clips = [c for c in footage.corpus(args.split) if not args.clips or c.name in args.clips]
    if args.what == "cache":
        cache(clips)
    elif args.what == "causes":
        causes(clips, args.code)
    elif args.what == "holds":
        hold_split(clips, args.code)
    elif args.what == "moves":
        moves(clips, args.code)
    elif args.what == "frontier":
        frontier(clips, args.weights)
    elif args.what == "horizon":
        horizon(clips, args.horizons, args.weights, args.replan, args.outside)
    else:
        score(clips, args.code, args.check)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
