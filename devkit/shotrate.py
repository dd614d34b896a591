"""What the learned shot model would gain from full-rate frames: a measurement for a contract change.

The sidecar sees 5 frames a second; TransNetV2 was trained on full-rate video. This renders every clip of
``devkit/cutcorpus.py`` and ``devkit/footage.py`` at its full 25 fps once, and runs, on the same frames:

- ``hand-made``  ``ShotDetector`` alone on the 5 fps, 480 px analysed frames;
- ``5fps``       the sidecar as shipped: the same, asking the model (on the 5 fps frames) when unsure;
- ``full-rate``  the same decision rule, but the model sees the *full-rate* 48x27 frames: for the analysed
                 frame at t = i/5 (decided, as always, when frame i+1 arrives) its window is the 20 full-rate
                 frames before the interval ((i-1)/5, i/5], the 5 frames of that interval and the 5 after it
                 (31 frames, all received by then); the probability is the largest over the interval; a
                 frame scoring in [1.4, 1.6) is a cut when it reaches 0.3 (chosen on the tune split);
- ``--alone``    also the model alone over every full-rate frame with full context (TransNetV2's own 100-frame
                 windows, a cut where the probability peaks over 0.5 / 0.7): costly (~9 ms of CPU per frame).

Run (long: ~25k frames rendered; under ``nice``, it is not a timing)::

    .venv/bin/python -m devkit.shotrate [--alone] [--clips NAME ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import cv2
import numpy as np

from devkit import cutcorpus, footage
from sidecast.sidecars.autocrop.decide import ShotDetector
from sidecast.sidecars.autocrop.shotmodel import ShotModel, thumbnail

FULL_FPS = 25.0
STEP = 5  # full-rate frames per analysed frame (25 / 5)
PAST = 20


class FullRateShots(ShotDetector):
    """``ShotDetector`` whose learned second opinion reads full-rate thumbnails (``full``, by frame index)."""

    def __init__(self, model: ShotModel, full: list[np.ndarray], **kw: Any) -> None:
        super().__init__(model=model, model_threshold=0.3, **kw)
        self.full = full

    def _model_probability(self, t: float, final: bool) -> float:
        assert self.model is not None
        i = int(round(t * FULL_FPS / STEP))
        n = len(self.full)
        idx = np.clip(np.arange(STEP * (i - 1) - PAST, STEP * (i + 1) + 1), 0, n - 1)
        p = self.model.probabilities(np.stack([self.full[k] for k in idx]))
        return float(p[PAST:PAST + STEP].max())


def alone(model: ShotModel, full: list[np.ndarray], threshold: float) -> list[float]:
    """The model alone, TransNetV2's own windowing (100 frames, the middle 50 kept): cut times."""
    x = np.stack(full)
    n = len(x)
    pad_end = 25 + 50 - (n % 50 if n % 50 else 50)
    padded = np.concatenate([np.repeat(x[:1], 25, 0), x, np.repeat(x[-1:], pad_end, 0)])
    p = np.concatenate([model.probabilities(padded[s:s + 100])[25:75]
                        for s in range(0, len(padded) - 99, 50)])[:n]
    out: list[float] = []
    for j in range(n):
        if p[j] >= threshold and (j == 0 or p[j] >= p[j - 1]) and (j + 1 >= n or p[j] >= p[j + 1]):
            t = (j + 1) / FULL_FPS  # the model marks the last frame of a shot
            if not out or t - out[-1] >= 0.4:
                out.append(t)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alone", action="store_true", help="also the model alone over every full-rate frame")
    ap.add_argument("--clips", nargs="*", help="only these clips")
    args = ap.parse_args(argv)
    model = ShotModel()
    clips: list[Any] = [*cutcorpus.stress(), *footage.corpus()]
    methods = ["hand-made", "5fps", "full-rate"] + (["alone>=0.5", "alone>=0.7"] if args.alone else [])
    print(f"{'clip':17s} {'split':9s} {'length':>7s}" + "".join(f"{m:>16s}" for m in methods))
    totals: dict[tuple[str, str, str], list[float]] = {}
    runs: dict[str, int] = {m: 0 for m in methods}
    for c in clips:
        if args.clips and c.name not in args.clips:
            continue
        kind = "stress" if isinstance(c, cutcorpus.StressClip) else "footage"
        n = int(np.floor(c.duration * FULL_FPS + 1e-9))
        full: list[np.ndarray] = []
        dets = {"hand-made": ShotDetector(), "5fps": ShotDetector(model=model),
                "full-rate": FullRateShots(model, full)}
        found: dict[str, list[float]] = {m: [] for m in methods}
        for k, (t, img) in enumerate(c.frames([i / FULL_FPS for i in range(n)])):
            full.append(thumbnail(img))
            if k % STEP == 0:
                small = cv2.resize(img, (480, 270), interpolation=cv2.INTER_AREA)
                for m, det in dets.items():
                    r0 = model.runs
                    found[m] += [ft for ft, cut in det.push(t, small) if cut]
                    runs[m] += model.runs - r0
        for m, det in dets.items():
            found[m] += [ft for ft, cut in det.flush() if cut]
        if args.alone:
            for thr in (0.5, 0.7):
                found[f"alone>={thr}"] = alone(model, full, thr)
        row = f"{c.name:17s} {c.split:9s} {c.duration:6.0f}s"
        for m in methods:
            hit, false = footage.match_cuts(c.cuts, found[m], 0.2)
            tot = totals.setdefault((c.split, kind, m), [0, 0, 0, 0.0])
            tot[0] += hit
            tot[1] += len(c.cuts)
            tot[2] += false
            tot[3] += c.duration
            row += f"{f'{hit}/{len(c.cuts)} f{false}':>16s}"
        print(row, flush=True)
    print()
    for (split, kind, m), (hit, total, false, dur) in sorted(totals.items()):
        print(f"{split:9s} {kind:8s} {m:11s} cut recall {hit:.0f}/{total:.0f} = {100 * hit / max(total, 1):.0f}%, "
              f"false cuts {false:.0f} = {false / dur * 600:.1f} per 10 min ({dur / 60:.1f} min)")
    print("model windows run: " + ", ".join(f"{m} {r}" for m, r in runs.items() if m in ("5fps", "full-rate")))
    return 0


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    raise SystemExit(rc)
