"""The subjects the autocrop sidecar sees at 5 fps in every clip of the cut corpora, cached once.

For choosing a cut cue that reads the subject (a jump cut moves the person, not the picture), the cut
replays (``devkit/cuttune.py``, ``devkit/jumpcuts.py``) need what ``analyzer.Analyzer.detect`` finds on each
analysed frame: faces (YuNet) first, people (HOG) when there is no face, at the sidecar's 480 px analysis
width. Saliency objects are left out (the cue does not read them). Stored as ``DIR/boxes-<clip>.npz``: ``t``
(analysed frame times) and ``boxes`` rows (frame index, x0, y0, x1, y1, score, kind: 0 face, 1 person) in
480 px analysis-frame pixels. Not a timing; run niced::

    setsid sh -c 'echo 19 > /proc/self/autogroup; exec nice -n 19 .venv/bin/python -m devkit.cutboxes \
        --split tune --dir /tmp/cutframes-jump'
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from devkit import cutframes
from devkit.shotrate import FULL_FPS, STEP
from sidecast.sidecars.autocrop.detect import FaceDetector, PersonDetector
from sidecast.sidecars.autocrop.jumpcut import Box

KINDS = {"face": 0, "person": 1}


def build(c: Any, faces: FaceDetector, people: PersonDetector, out: Path) -> None:
    n = int(np.floor(c.duration * FULL_FPS + 1e-9))
    times = [k / FULL_FPS for k in range(0, n, STEP)]
    rows: list[list[float]] = []
    for i, (_t, img) in enumerate(c.frames(times)):
        small = cv2.resize(img, (480, 270), interpolation=cv2.INTER_AREA)
        found = faces.detect(small) or people.detect(small)
        rows += [[i, s.x0, s.y0, s.x1, s.y1, s.score, KINDS[s.kind]] for s in found]
    np.savez_compressed(out, t=np.array(times), boxes=np.array(rows, np.float64).reshape(-1, 7))


def load(name: str, folder: Path) -> list[list[Box]] | None:
    """Per analysed frame, its subjects as ``decide.ShotDetector.push`` takes them; None without a cache."""
    path = folder / f"boxes-{name}.npz"
    if not path.exists():
        return None
    z = np.load(path)
    kinds = {v: k for k, v in KINDS.items()}
    per: list[list[Box]] = [[] for _ in range(len(z["t"]))]
    for r in z["boxes"]:
        per[int(r[0])].append((float(r[1]), float(r[2]), float(r[3]), float(r[4]), kinds[int(r[6])]))
    return per


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split")
    ap.add_argument("--dir", type=Path, default=cutframes.DIR)
    ap.add_argument("--clips", nargs="*", help="only these clips")
    ap.add_argument("--part", default="0/1", help="K/N: only every N-th clip from the K-th (to run N at once)")
    args = ap.parse_args(argv)
    k, n = (int(x) for x in args.part.split("/"))
    args.dir.mkdir(parents=True, exist_ok=True)
    faces, people = FaceDetector(), PersonDetector()
    todo = [c for c in cutframes.clips(args.split) if not args.clips or c.name in args.clips]
    for c in todo[k::n]:
        out = args.dir / f"boxes-{c.name}.npz"
        if out.exists():
            continue
        t0 = time.time()
        tmp = out.with_suffix(".tmp.npz")
        build(c, faces, people, tmp)
        tmp.rename(out)
        print(f"{c.name} {c.split} {c.duration:.0f}s in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
