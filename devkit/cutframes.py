"""Full-rate frames of the cut corpora, cached once for choosing a full-rate cut detector.

For every clip of ``devkit/cutcorpus.py`` and ``devkit/footage.py``: the core's 48x27 rgb24 ``shots``
thumbnails of all 25 fps frames (``devkit.shotrate.core_thumbnail``), TransNetV2's probability on every frame
(its own 100-frame windowing, ``devkit.shotrate.alone``), the shipped 5 fps hand-made score of each analysed
frame and the cuts of the shipped detector. Stored as ``DIR/<clip>.npz``; ``load`` reads them back.
Not a timing; run niced::

    setsid nice -n 19 .venv/bin/python -m devkit.cutframes [--split tune] [--dir /tmp/cutframes]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from devkit import cutcorpus, footage
from devkit.shotrate import FULL_FPS, STEP, LazyFull, SharedFeatures, core_thumbnail
from sidecast.core.fanout import group_for
from sidecast.sidecars.autocrop.shotmodel import ShotModel
from sidecast.sidecars.autocrop.sidecar import SHOT_FEED

DIR = Path("/tmp/cutframes")


class Scored(SharedFeatures):
    """The hand-made detector, remembering every analysed frame's score."""

    def __init__(self, cache: dict[Any, Any], **kw: Any) -> None:
        super().__init__(cache, **kw)
        self.scores: dict[float, float] = {}

    def _decide(self, t: float, d: np.ndarray, after: np.ndarray | None) -> bool:
        cut = super()._decide(t, d, after)
        self.scores[t] = self.last_score
        return cut


def probabilities(model: ShotModel, thumbs: np.ndarray) -> np.ndarray:
    """TransNetV2 over every frame, its own windowing (100 frames, the middle 50 kept)."""
    n = len(thumbs)
    pad_end = 25 + 50 - (n % 50 if n % 50 else 50)
    padded = np.concatenate([np.repeat(thumbs[:1], 25, 0), thumbs, np.repeat(thumbs[-1:], pad_end, 0)])
    return np.concatenate([model.probabilities(padded[s:s + 100])[25:75]
                           for s in range(0, len(padded) - 99, 50)])[:n]


def build(c: Any, model: ShotModel, out: Path, thumbs_only: bool = False) -> None:
    n = int(np.floor(c.duration * FULL_FPS + 1e-9))
    group = group_for(SHOT_FEED.wants, footage.WIDTH, footage.HEIGHT)
    thumbs = np.zeros((n, 27, 48, 3), np.uint8)
    if thumbs_only:  # what devkit/cuttune.py and devkit/shotrate.py --thumbs read, a fraction of the CPU
        scored = Scored({})
        for t, img in c.frames([k / FULL_FPS for k in range(n)]):
            k = int(round(t * FULL_FPS))
            thumbs[k] = core_thumbnail(img, group)
            if k % STEP == 0:
                scored.cache.clear()
                scored.push(t, cv2.resize(img, (480, 270), interpolation=cv2.INTER_AREA))
        scored.flush()
        st = np.array(sorted(scored.scores.items()), np.float64).reshape(-1, 2)
        np.savez_compressed(out, thumbs=thumbs, scores=st, cuts=np.array(c.cuts, np.float64), duration=c.duration,
                            split=c.split, kind=kind(c))
        return
    cache: dict[Any, Any] = {}
    hand = Scored(cache)
    shipped = LazyFull(cache, lambda k: thumbs[k], n, model=model)
    found: dict[str, list[float]] = {"hand": [], "shipped": []}
    pending: list[tuple[float, np.ndarray]] = []
    for t, img in c.frames([k / FULL_FPS for k in range(n)]):
        k = int(round(t * FULL_FPS))
        thumbs[k] = core_thumbnail(img, group)
        if k % STEP == 0:
            pending.append((t, cv2.resize(img, (480, 270), interpolation=cv2.INTER_AREA)))
        # the shipped detector's window reaches one analysed frame ahead: push a frame once the next
        # analysed frame's thumbnails exist (LazyFull reads thumbnails up to STEP * (i + 1))
        while pending and (k >= int(round(pending[0][0] * FULL_FPS)) + STEP or k == n - 1):
            pt, small = pending.pop(0)
            cache.clear()
            found["hand"] += [ft for ft, cut in hand.push(pt, small) if cut]
            found["shipped"] += [ft for ft, cut in shipped.push(pt, small) if cut]
    found["hand"] += [ft for ft, cut in hand.flush() if cut]
    found["shipped"] += [ft for ft, cut in shipped.flush() if cut]
    probs = probabilities(model, thumbs)
    st = np.array(sorted(hand.scores.items()), np.float64).reshape(-1, 2)
    np.savez_compressed(out, thumbs=thumbs, probs=probs, scores=st, cuts=np.array(c.cuts, np.float64),
                        hand=np.array(found["hand"]), shipped=np.array(found["shipped"]),
                        duration=c.duration, split=c.split,
                        kind=kind(c))


def kind(c: Any) -> str:
    """What a clip of the cut corpora is: ``stress`` (devkit/cutcorpus.py), ``jump`` (``footage.JUMP_CUTS``) or
    ``footage`` (the natural clips)."""
    return "stress" if isinstance(c, cutcorpus.StressClip) else "jump" if c in footage.JUMP_CUTS else "footage"


def clips(split: str | None = None) -> list[Any]:
    every: list[Any] = [*footage.jump_corpus(), *cutcorpus.stress(), *footage.corpus()]
    return [c for c in every if split is None or c.split == split]


def load(name: str, folder: Path = DIR) -> dict[str, Any]:
    z = np.load(folder / f"{name}.npz")
    return {k: z[k] for k in z.files}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split")
    ap.add_argument("--dir", type=Path, default=DIR)
    ap.add_argument("--clips", nargs="*", help="only these clips")
    ap.add_argument("--thumbs-only", action="store_true",
                    help="only the thumbnails, the 5 fps hand-made scores and the cuts (no model)")
    args = ap.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    model = ShotModel()
    for c in clips(args.split):
        out = args.dir / f"{c.name}.npz"
        if out.exists() or (args.clips and c.name not in args.clips):
            continue
        t0 = time.time()
        tmp = out.with_suffix(".tmp.npz")
        build(c, model, tmp, args.thumbs_only)
        tmp.rename(out)
        print(f"{c.name} {c.split} {c.duration:.0f}s in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
