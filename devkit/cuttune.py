"""Choosing the full-rate cut detector's constants on the tune split, fast: replays of cached thumbnails.

``devkit/cutframes.py`` caches every clip's full-rate ``shots`` thumbnails (the core's conversion). This
replays ``fullcuts.FullRateCuts`` (or a subclass with other constants) over them exactly as
``decide.ShotDetector`` calls it (the interval since the previous analysed frame at 5 fps, judged when the
next analysed frame's thumbnail is in), keeps every interval's score, and then applies decision rules (a cut
at >= ``threshold``; TransNetV2 asked on the same 31-frame window from ``ask_from``, a cut at probability >=
``model_threshold``; no cut within ``min_shot`` of the last) without replaying again. The model's
probability of an interval depends on the thumbnails only, so it is computed once per interval and kept in
``DIR/probs-<clip>.npz``. ``devkit/shotrate.py --thumbs`` is the end-to-end check of the shipped detector.
Tune clips only (``--split held_out`` exists for the one run at the end). Not a timing; run niced::

    setsid nice -n 19 .venv/bin/python -m devkit.cuttune --dir /tmp/cutframes-wide [--errors]
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devkit import cutframes, footage
from devkit.shotrate import FULL_FPS, STEP
from sidecast.sidecars.autocrop.decide import ShotDetector
from sidecast.sidecars.autocrop.fullcuts import FullRateCuts


@dataclass
class Interval:
    t: float  # the analysed frame judged (the cut between it and the previous one)
    score: float
    at: float  # the time of the best-scoring frame
    i: int  # analysed frame index
    motion: int = 0  # the largest one-frame shift (px) of the two frames either side of the best one
    five: float = 0.0  # the 5 fps hand-made score of the same analysed frame (cutframes' ``scores``)


def replay(thumbs: np.ndarray, cls: type[FullRateCuts] = FullRateCuts, five: np.ndarray | None = None) -> list[Interval]:
    """Every analysed interval's full-rate score, the thumbnails pushed as the sidecar gets them (``five``:
    the 5 fps scores, rows of (t, score), for the vote)."""
    by_t = {round(float(t) * FULL_FPS): float(sc) for t, sc in five} if five is not None else {}
    fc = cls()
    n = len(thumbs)
    out: list[Interval] = []
    pushed = 0
    last = (n - 1) // STEP
    for i in range(1, last + 1):
        upto = min(n - 1, STEP * (i + 1))  # decided when the next analysed frame (and its thumbnail) is in
        while pushed <= upto:
            fc.push(pushed / FULL_FPS, thumbs[pushed])
            pushed += 1
        t0, t = (i - 1) * STEP / FULL_FPS, i * STEP / FULL_FPS
        got = fc.score_final(t0, t) if i == last else fc.score(t0, t)
        if got is None:
            raise SystemExit(f"interval {t0}-{t} not covered")
        out.append(Interval(t, got[0], got[1], i, fc.last_motion, by_t.get(STEP * i, 0.0)))
    return out


class Probs:
    """TransNetV2's probability for an interval, as ``ShotDetector._full_rate_window`` asks it, cached."""

    def __init__(self, name: str, thumbs: np.ndarray, folder: Path) -> None:
        self.path = folder / f"probs-{name}.npz"
        self.thumbs = thumbs
        self.got: dict[int, float] = {}
        if self.path.exists():
            z = np.load(self.path)
            self.got = dict(zip(z["i"].tolist(), z["p"].tolist(), strict=True))
        self.model: Any = None
        self.dirty = False

    def __call__(self, i: int) -> float:
        if i not in self.got:
            if self.model is None:
                from sidecast.sidecars.autocrop.shotmodel import ShotModel
                self.model = ShotModel()
            n = len(self.thumbs)
            first, last = STEP * (i - 1), STEP * i - 1
            past = [self.thumbs[max(0, k)] for k in range(first - ShotDetector.FULL_PAST, first)]
            after = [self.thumbs[k] for k in range(last + 1, min(n - 1, STEP * (i + 1)) + 1)]
            if not after:  # the end of the stream: repeated, as the detector does
                after = [self.thumbs[last]] * (STEP + 1)
            window = np.stack(past + [self.thumbs[k] for k in range(first, last + 1)] + after)
            p = self.model.probabilities(window)
            self.got[i] = float(p[ShotDetector.FULL_PAST:ShotDetector.FULL_PAST + STEP].max())
            self.dirty = True
        return self.got[i]

    def save(self) -> None:
        if self.dirty:
            keys = sorted(self.got)
            np.savez(self.path, i=np.array(keys), p=np.array([self.got[k] for k in keys]))


def decide(intervals: list[Interval], probs: Probs | None, threshold: float = 2.25, ask_from: float = 1.5,
           model_threshold: float = 0.3, min_shot: float = 0.4, motion: int = 0,
           vote: float | None = None) -> list[float]:
    """Cut times, ShotDetector's rule on full-rate scores (``motion`` > 0: from that camera motion on, only
    the model cuts; as in the sidecar, only where a model is asked: not without ``probs`` or with
    ``ask_from`` above ``threshold``, the "score alone" rows; ``vote``: a score from ``ask_from`` (1.5
    without a model) also cuts when the 5 fps score reaches it). The 5 fps scores come from the 5 fps
    detector deciding alone, whose shot statistics restart at its own cuts; in the sidecar they restart
    at the decided cuts, so ``devkit/shotrate.py`` is the end-to-end check."""
    cuts: list[float] = []
    last = 0.0  # the first frame starts a shot
    model = probs is not None and ask_from <= threshold
    for iv in intervals:
        cut = iv.score >= threshold and not (model and motion and iv.motion >= motion)
        if not cut and vote is not None and iv.score >= min(ask_from, 1.5) and iv.five >= vote:
            cut = True
        if not cut and probs is not None and iv.score >= ask_from:
            cut = probs(iv.i) >= model_threshold
        if cut and iv.t - last >= min_shot:
            cuts.append(iv.t)
            last = iv.t
    return cuts


def errors(cuts: list[float], found: list[float], tol: float = 0.2) -> tuple[list[float], list[float]]:
    """(missed cuts, false cuts), matched as ``footage.match_cuts`` does (a found cut within one analysis
    interval after a true one)."""
    used: set[int] = set()
    missed = []
    for c in cuts:
        j = next((j for j, f in enumerate(found) if j not in used and c - 1e-6 <= f <= c + tol + 1e-6), None)
        if j is None:
            missed.append(c)
        else:
            used.add(j)
    false = [f for j, f in enumerate(found) if j not in used and f > 1e-6]
    assert (len(cuts) - len(missed), len(false)) == footage.match_cuts(cuts, found, tol)
    return missed, false


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=cutframes.DIR)
    ap.add_argument("--split", default="tune")
    ap.add_argument("--errors", action="store_true", help="list every miss and false cut at the defaults")
    ap.add_argument("--set", nargs="*", default=[], help="FullRateCuts constants, NAME=VALUE")
    ap.add_argument("--motion", type=int, default=0, help="the grid's camera motion (px a frame) from which only the model cuts")
    ap.add_argument("--quick", action="store_true", help="only the shipped rule, and it without the model")
    ap.add_argument("--thresholds", type=float, nargs="+", default=[2.0, 2.25, 2.5, 3.0], help="the grid's score thresholds")
    ap.add_argument("--ask", type=float, nargs="+", default=[1.5, 1.75, 2.0, 99.0], help="the grid's ask-from scores (99: score alone)")
    ap.add_argument("--model-cuts", type=float, nargs="+", default=[0.3, 0.5, 0.7], help="the grid's model cut-offs")
    ap.add_argument("--votes", type=float, nargs="+", default=[0.0],
                    help="the grid's 5 fps scores from which a full-rate score in the ask band cuts (0: no vote)")
    args = ap.parse_args(argv)
    names = [c.name for c in cutframes.clips(args.split) if (args.dir / f"{c.name}.npz").exists()]
    data = {name: cutframes.load(name, args.dir) for name in names}
    minutes = sum(float(d["duration"]) for d in data.values()) / 60
    print(f"{len(names)} clips, {minutes:.1f} min, {sum(len(d['cuts']) for d in data.values())} cuts", flush=True)
    consts = {k: (int(v) if v.isdigit() else float(v)) for k, v in (x.split("=") for x in args.set)}
    cls = type("Variant", (FullRateCuts,), consts) if consts else FullRateCuts
    scored = {name: replay(d["thumbs"], cls, d.get("scores")) for name, d in data.items()}
    probs = {name: Probs(name, d["thumbs"], args.dir) for name, d in data.items()}
    rules = [dict(threshold=th, ask_from=a, model_threshold=p, motion=args.motion, **({"vote": v} if v else {}))
             for th, a, p, v in itertools.product(args.thresholds, args.ask, args.model_cuts, args.votes)
             if a < th or a == 99.0]
    if args.quick:
        rules = [dict(threshold=2.25, ask_from=1.5, model_threshold=0.3), dict(threshold=2.25, ask_from=99.0),
                 *(dict(threshold=2.25, ask_from=1.5, model_threshold=p, motion=m)
                   for m in (0, 3, 4, 5, 6, 8) for p in (0.3, 0.5))]
    for rule in rules:
        miss = false = 0
        for name, d in data.items():
            m, f = errors(d["cuts"].tolist(), decide(scored[name], probs[name], **rule))
            miss += len(m)
            false += len(f)
        print(f"{rule}: missed {miss}, false {false} = {false / minutes * 10:.1f} per 10 min", flush=True)
    cut_scores, other = [], []
    for name, d in data.items():
        cuts = d["cuts"].tolist()
        ivs = scored[name]
        for c in cuts:
            near = [iv for iv in ivs if c - 1e-6 <= iv.t <= c + 0.2 + 1e-6]
            if near:
                best = max(near, key=lambda iv: iv.score)
                cut_scores.append((best.score, name, c))
        other += [(iv.score, name, iv.t) for iv in ivs if not any(c - 1e-6 <= iv.t <= c + 0.2 + 1e-6 for c in cuts)]
    moving = [(iv, probs[name]) for name, d in data.items() for c in d["cuts"].tolist() for iv in scored[name]
              if c - 1e-6 <= iv.t <= c + 0.2 + 1e-6 and iv.score >= 2.25]
    print("cuts scoring >= 2.25 beside camera motion (px a frame): "
          + ", ".join(f">= {m}: {sum(iv.motion >= m for iv, _ in moving)} "
                      f"(model >= 0.5 on {sum(iv.motion >= m and p(iv.i) >= 0.5 for iv, p in moving)})"
                      for m in (3, 4, 5, 6, 8)), flush=True)
    cut_scores.sort()
    other.sort(reverse=True)
    print("lowest cut intervals: " + ", ".join(f"{s:.2f} {n} {t:.1f}" for s, n, t in cut_scores[:6]))
    print("highest other intervals: " + ", ".join(f"{s:.2f} {n} {t:.1f}" for s, n, t in other[:6]))
    if args.errors:
        for name, d in data.items():
            m, f = errors(d["cuts"].tolist(), decide(scored[name], probs[name], motion=args.motion,
                                                     vote=args.votes[-1] or None))
            by_t = {iv.t: iv for iv in scored[name]}
            for t in m:
                iv = by_t.get(math.ceil(t * 5 - 1e-6) / 5)
                print(f"  {name} missed {t:.2f} (score {iv.score if iv else float('nan'):.2f}, motion {iv.motion if iv else -1}, "
                      f"p {probs[name](iv.i) if iv else -1:.2f}, 5 fps {iv.five if iv else float('nan'):.2f})")
            for t in f:
                print(f"  {name} false {t:.2f} (score {by_t[t].score:.2f} at {by_t[t].at:.2f}, "
                      f"p {probs[name](by_t[t].i):.2f})")
    for p in probs.values():
        p.save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
