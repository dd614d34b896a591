"""How closely a coarse CRF grid locates where a segment's quality crosses a target, judged on dense curves.

For every training curve (one clip, segment and rung, at the rung's own size) that ``build_corpus.py
--densify`` measured more densely, this takes only the coarse grid's points (CRF 18, 23, 28, 33, 38, 44),
finds from them the highest CRF whose VMAF is still at least N (N = 85, 90, 93, wherever the coarse points
span N) and reads the dense measured curve there: the miss |VMAF - N| a *perfect* model trained on the coarse
grid would make, for three ways of reading between the grid's points:

* ``grid point``: no interpolation, the highest grid CRF reaching N (what the bench's target oracle does
  over its own grid);
* ``linear``: VMAF linear in CRF between grid points (what ``train.py``'s simulation assumes);
* ``log distortion``: log2(101 - VMAF) linear in CRF (the space the model learns VMAF in).

    .venv/bin/python models/bitrate/grid_check.py      # reads corpus.csv, no encodes, a second of CPU
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

COARSE = (18.0, 23.0, 28.0, 33.0, 38.0, 44.0)
TARGETS = (85.0, 90.0, 93.0)
CEIL = 101.0  # as train.VMAF_CEIL


def curves(path: Path) -> dict[tuple[str, int, int], dict[float, float]]:
    """(clip, segment, rung) -> {CRF: VMAF} of training rows at the rung's own size measured densely."""
    out: dict[tuple[str, int, int], dict[float, float]] = {}
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if r["split"] == "train" and float(r["scale"]) == 1.0:
                key = (r["clip"], int(r["segment"]), int(r["display_height"]))
                out.setdefault(key, {})[float(r["crf"])] = float(r["vmaf"])
    return {k: v for k, v in out.items() if set(v) - set(COARSE) and set(COARSE) <= set(v)}


def crossing(crfs: np.ndarray, vmaf: np.ndarray, n: float, how: str) -> float:
    """The highest CRF (0.5 steps) whose VMAF, read from the coarse points ``how``, is at least ``n``."""
    if how == "grid point":
        return float(crfs[vmaf >= n].max())
    grid = np.arange(crfs[0], crfs[-1] + 1e-9, 0.5)
    if how == "linear":
        v = np.interp(grid, crfs, vmaf)
    else:
        v = CEIL - 2.0 ** np.interp(grid, crfs, np.log2(CEIL - np.minimum(vmaf, CEIL - 0.5)))
    return float(grid[np.minimum.accumulate(v) >= n].max())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=Path(__file__).with_name("corpus.csv"))
    args = ap.parse_args(argv)
    dense = curves(args.corpus)
    print(f"{len(dense)} densely measured training curves ({len({k[0] for k in dense})} clips)")
    for how in ("grid point", "linear", "log distortion"):
        misses: list[tuple[float, str]] = []
        for (clip, _seg, height), curve in sorted(dense.items()):
            crfs = np.array(COARSE)
            vmaf = np.array([curve[c] for c in COARSE])
            all_c = np.array(sorted(curve))
            all_v = np.array([curve[c] for c in all_c])
            for n in TARGETS:
                if vmaf.max() >= n >= vmaf.min():
                    crf = crossing(crfs, np.minimum.accumulate(vmaf), n, how)
                    misses.append((float(np.interp(crf, all_c, all_v)) - n, f"{clip} {height}p N={n:g} CRF {crf:g}"))
        err = np.array([m for m, _ in misses])
        worst = sorted(misses, key=lambda m: -abs(m[0]))[:3]
        print(f"  {how:15s} {len(err)} (curve, N): |VMAF - N| median {np.median(np.abs(err)):.2f}, p90 "
              f"{np.percentile(np.abs(err), 90):.2f}, mean signed {err.mean():+.2f}, within 3: "
              f"{np.mean(np.abs(err) <= 3) * 100:.0f}%; worst " + ", ".join(f"{w} {m:+.1f}" for m, w in worst))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
