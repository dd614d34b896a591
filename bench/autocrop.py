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
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit import footage  # noqa: E402
from devkit.autocrop_replay import comfort_steps, operator_holds, replay, reversals_per_min  # noqa: E402
from devkit.scenes import Scene, coverage, cut_reaction, ground_truth_scenes, steadiness  # noqa: E402
from sidecast.contract.records import Crop  # noqa: E402
from sidecast.core.croppath import CropPath  # noqa: E402
from sidecast.sidecars.autocrop.analyzer import Analyzer  # noqa: E402
from sidecast.sidecars.autocrop.detect import FaceDetector, ObjectDetector  # noqa: E402
from sidecast.sidecars.autocrop.shotmodel import ShotModel, thumbnail  # noqa: E402
from sidecast.sidecars.autocrop.sidecar import DEFAULT_FPS, DEFAULT_WIDTH  # noqa: E402
from sidecast.sidecars.autocrop.smooth import PathOptions  # noqa: E402

SHOTS: ShotModel | None = None  # the learned cut model every Analyzer here shares (main() loads it once)
FULL_RATE = True  # feed the real-footage analysis the full-rate thumbnails the live core sends (--no-thumbs: off)
OLD_SMOOTH: Any = None  # --smoother REV: that revision's smooth.py, fed autocrop's own kept focus ("smoother")
OLD_PLAN: tuple[Any, Any] | None = None  # --planning REV: that revision's decide.py and smooth.py ("planning")


def analysed_times(duration: float, fps: float) -> list[float]:
    n = int(np.floor(duration * fps + 1e-9))
    return [i / fps for i in range(n) if i / fps < duration]


def run_scene(scene: Scene, faces: FaceDetector, objects: ObjectDetector, fps: float,
              width: int) -> dict[str, object]:
    """Analyse one scene at ``fps``; returns the crops of each method and the analysis time."""
    an = Analyzer(scene.width, scene.height, PathOptions(), faces, objects=objects, shot_model=SHOTS or False)
    h = round(scene.height * width / scene.width)
    frames = [(t, cv2.resize(scene.render(t), (width, h), interpolation=cv2.INTER_AREA))
              for t in analysed_times(scene.duration, fps)]
    return analyse_frames(an, frames)


def analyse_frames(an: Any, frames: list[tuple[float, np.ndarray]],
                   thumbs: list[tuple[float, np.ndarray]] | None = None) -> dict[str, object]:
    """Autocrop's crops, the unsmoothed per-frame baseline's crops, and the analysis' wall and CPU time.
    ``thumbs``: the full-rate 48x27 RGB thumbnails of the core's ``shots`` feed, each handed over before the
    analysed frame at the same or a later time, as the core sends them (the live sidecar's cut detector
    runs on them; without them it falls back to the analysed frames)."""
    smoothed: list[Crop] = []
    wall = cpu = 0.0
    sw, sh = an.source_w, an.source_h
    decided: list[Any] = []
    an.keep_history = True
    pending = list(thumbs or [])
    pending.reverse()
    for t, small in frames:
        t0, c0 = time.perf_counter(), time.process_time()
        while pending and pending[-1][0] <= t + 1e-6 and hasattr(an, "thumbnail"):
            an.thumbnail(*pending.pop())
        smoothed += an.analyse(t, small)
        wall += time.perf_counter() - t0
        cpu += time.process_time() - c0
        if not hasattr(an, "history"):  # the previous version decides every frame at once
            decided.append(an.last)
    smoothed += an.flush()
    decided = an.history if hasattr(an, "history") else decided
    raw: list[Crop] = []
    cw, ch = an.planner.crop_w, an.planner.crop_h
    for a in decided:
        if a.focus is not None:
            x = int(min(max(a.focus.cx - cw / 2, 0), sw - cw))
            y = int(min(max(a.focus.cy - ch / 2, 0), sh - ch))
        else:
            x, y = (sw - cw) // 2, (sh - ch) // 2
        raw.append(Crop(a.t, x, y, cw, ch, "per-frame", a.focus.confidence if a.focus else 0.0, a.cut))
    return {"autocrop": smoothed, "per-frame": raw, "centre": [], "wall": wall, "cpu": cpu, "history": decided}


def replan(smooth: Any, history: list[Any], source_w: int, source_h: int) -> list[Crop]:
    """The crops another planner (``smooth``: a smooth.py module) makes of the same kept focus per analysed
    frame: the smoothers compared on identical detections, cuts and keeper decisions."""
    planner = smooth.CropPlanner(source_w, source_h, smooth.PathOptions())
    out: list[Crop] = []
    for a in history:
        out += planner.push(smooth.Observation(a.t, a.cut, a.focus))
    return out + planner.flush()


def previous_version(rev: str, name: str = "autocrop_prev", module: str = "analyzer") -> Any:
    """The sidecar's analysis (or another ``module`` of it) as it was at git revision ``rev`` (a package
    loaded from ``git show`` under the name ``name``)."""
    root = Path(__file__).resolve().parents[1]
    tmp = Path(tempfile.mkdtemp(prefix="autocrop-prev-")) / name
    tmp.mkdir()
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, "sidecars/autocrop/"], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    for n in names:
        if n.endswith(".py"):
            (tmp / Path(n).name).write_text(subprocess.run(["git", "show", f"{rev}:{n}"], cwd=root, check=True,
                                                           capture_output=True, text=True).stdout)
    spec = importlib.util.spec_from_file_location(name, tmp / "__init__.py",
                                                  submodule_search_locations=[str(tmp)])
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return importlib.import_module(f"{name}.{module}")


def path_windows(w: int, h: int, crops: list[Crop], times: list[float]) -> list[tuple[int, int, int, int]]:
    path = CropPath(w, h, (9, 16))
    for c in crops:
        path.add(c)
    return [path.window_at(t) for t in times]


def real_footage(faces: FaceDetector, objects: ObjectDetector, fps: float, width: int, previous: str | None,
                 clips: list[str] | None) -> None:
    """The edited real footage of ``devkit/footage.py``, judged against reference boxes from detectors the
    sidecar does not use (CenterFace faces, MOG2 movers, hand-drawn boxes) and the edit's cut list."""
    prev_mod = previous_version(previous) if previous else None
    methods = ["centre", "per-frame", "autocrop"] + (["smoother"] if OLD_SMOOTH is not None else []) \
        + (["planning"] if OLD_PLAN is not None else []) + (["previous"] if prev_mod else [])
    print()
    print("cut detector fed the full-rate 48x27 thumbnails of the live core's shots feed" if FULL_RATE else
          "cut detector on the analysed frames only (--no-thumbs: the 5 fps fallback)")
    print(f"real edited footage ({footage.WIDTH}x{footage.HEIGHT}, {footage.FPS:g} fps), rendered at full rate "
          "through CropPath; references: CenterFace faces, MOG2 movers, hand-drawn boxes")
    print(f"{'clip':17s} {'split':9s} {'method':10s} {'cover':>6s} {'hold':>9s} {'moving':>6s} {'still':>7s}"
          f" {'walk':>7s} {'none':>7s} {'comf':>7s} {'op':>7s} {'rev/min':>7s} {'cuts':>6s} {'false':>5s} {'react':>6s}"
          f" {'CPU/frame':>10s}")
    totals: dict[tuple[str, str], dict[str, float]] = {}
    for c in footage.corpus():
        if clips and c.name not in clips:
            continue
        times = c.frame_times()
        picked_t = [t for t in analysed_times(c.duration, fps)]
        h = round(footage.HEIGHT * width / footage.WIDTH)
        frames = [(t, cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA)) for t, img in c.frames(picked_t)]
        thumbs = [(t, thumbnail(img)) for t, img in c.frames(times)] if FULL_RATE else None
        res = analyse_frames(Analyzer(footage.WIDTH, footage.HEIGHT, PathOptions(), faces, objects=objects,
                                      shot_model=SHOTS or False), frames, thumbs)
        results = {m: res[m] for m in ("centre", "per-frame", "autocrop")}
        if OLD_SMOOTH is not None:
            results["smoother"] = replan(OLD_SMOOTH, res["history"], footage.WIDTH, footage.HEIGHT)  # type: ignore[arg-type]
        if OLD_PLAN is not None:  # the keeper and planner of --planning REV on the same detections and cuts
            results["planning"] = replay([(a.t, a.cut, a.subjects) for a in res["history"]], *OLD_PLAN)  # type: ignore[attr-defined]
        cpu = {"autocrop": float(res["cpu"]) / len(frames)}  # type: ignore[arg-type]
        if prev_mod is not None:
            old = analyse_frames(prev_mod.Analyzer(footage.WIDTH, footage.HEIGHT, prev_mod.PathOptions(),
                                                   prev_mod.FaceDetector()), frames)
            results["previous"] = old["autocrop"]
            cpu["previous"] = float(old["cpu"]) / len(frames)  # type: ignore[arg-type]
        cw = 202
        spans = footage.holds(c, times, cw)
        by_kind = {k: [sp for sp in spans if footage.hold_kind(c, times, sp, cw) == k] for k in ("still", "walk", "none")}
        for m in methods:
            crops: list[Crop] = results[m]  # type: ignore[assignment]
            wins = path_windows(footage.WIDTH, footage.HEIGHT, crops, times)
            cov, n = footage.coverage(c, times, wins)
            motion = footage.hold_motion(times, wins, spans)
            found = [cr.t for cr in crops if cr.cut]
            hit, false = footage.match_cuts(c.cuts, found, 1.0 / fps) if m != "centre" else (0, 0)
            analysed = [(cr.t, path_windows(footage.WIDTH, footage.HEIGHT, crops, [cr.t])[0]) for cr in crops] \
                if m != "centre" else [(t, wins[int(round(t * footage.FPS))]) for t in picked_t]
            react = footage.reaction(c, analysed)
            moving = footage.hold_moving(times, wins, spans)
            kind_motion = {k: footage.hold_motion(times, wins, sp) for k, sp in by_kind.items()}
            # issue 20's reading: only the hold steps where the subject stays in the comfortable region of
            # the crop as it stood (not those where it is leaving it: re-frames)
            comf = comfort_steps(c, times, wins, cw)
            csteps = [i for i in range(1, len(times)) if comf[i] and footage._in_spans(times, i, spans)]
            cpx = sum(abs(wins[i][0] - wins[i - 1][0]) + abs(wins[i][1] - wins[i - 1][1]) for i in csteps)
            op = operator_holds(c, times, wins, cw)
            osteps = [i for i in range(1, len(times)) if op[i] and footage._in_spans(times, i, spans)]
            opx = sum(abs(wins[i][0] - wins[i - 1][0]) + abs(wins[i][1] - wins[i - 1][1]) for i in osteps)
            rev = reversals_per_min(wins, times, c.cuts)
            tot = totals.setdefault((c.split, m), {"cuts": 0, "hit": 0, "false": 0, "dur": 0, "cov": 0, "n": 0,
                                                   "hold": 0, "hold_n": 0, "moving": 0, "still": 0, "still_n": 0,
                                                   "walk": 0, "walk_n": 0, "none": 0, "none_n": 0,
                                                   "comf": 0, "comf_n": 0, "op": 0, "op_n": 0, "rev": 0})
            tot["comf"] += cpx
            tot["comf_n"] += len(csteps)
            tot["op"] += opx
            tot["op_n"] += len(osteps)
            tot["rev"] += rev * c.duration / 60
            tot["cuts"] += len(c.cuts)
            tot["hit"] += hit
            tot["false"] += false
            tot["dur"] += c.duration
            tot["cov"] += cov * n
            tot["n"] += n
            nh = footage.hold_frames(times, spans)
            tot["hold"] += motion * nh
            tot["hold_n"] += nh
            tot["moving"] += moving * nh
            for k, sp in by_kind.items():
                tot[k] += kind_motion[k] * footage.hold_frames(times, sp)
                tot[k + "_n"] += footage.hold_frames(times, sp)
            kinds = " ".join(f"{kind_motion[k]:5.2f}px" if by_kind[k] else f"{'-':>7s}" for k in by_kind)
            cuts = f"{hit}/{len(c.cuts)}" if m != "centre" else "-"
            comf_s = f"{cpx / len(csteps):5.2f}px" if csteps else f"{'-':>7s}"
            comf_s += f" {opx / len(osteps):5.2f}px" if osteps else f" {'-':>7s}"
            print(f"{c.name:17s} {c.split:9s} {m:10s} {cov * 100:5.1f}% {motion:6.2f}px {moving * 100:5.0f}% {kinds} "
                  f"{comf_s} {rev:7.1f} {cuts:>6s} "
                  f"{false if m != 'centre' else '-':>5} {'-' if react is None else f'{react:.1f}s':>6s} "
                  f"{f'{cpu[m] * 1000:.1f} ms' if m in cpu else '':>10s}")
    print()
    print(f"{'split':9s} {'method':10s} {'coverage':>9s} {'hold motion':>12s} {'moving':>7s} {'still':>8s} "
          f"{'walk':>8s} {'none':>8s} {'comf':>8s} {'op':>8s} {'rev/min':>7s} {'cut recall':>11s} {'false cuts':>16s}")
    for (split, m), tot in totals.items():
        recall = f"{tot['hit']}/{tot['cuts']} {100 * tot['hit'] / max(tot['cuts'], 1):.0f}%" if m != "centre" else "-"
        rate = f"{tot['false']} ({tot['false'] / tot['dur'] * 600:.1f}/10 min)" if m != "centre" else "-"
        kinds = " ".join(f"{tot[k] / tot[k + '_n']:5.2f} px" if tot[k + "_n"] else f"{'-':>8s}"
                         for k in ("still", "walk", "none"))
        print(f"{split:9s} {m:10s} {100 * tot['cov'] / max(tot['n'], 1):8.1f}% "
              f"{tot['hold'] / max(tot['hold_n'], 1):9.2f} px {100 * tot['moving'] / max(tot['hold_n'], 1):6.0f}% "
              f"{kinds} {tot['comf'] / max(tot['comf_n'], 1):5.2f} px {tot['op'] / max(tot['op_n'], 1):5.2f} px "
              f"{tot['rev'] * 60 / tot['dur']:7.1f} "
              f"{recall:>11s} {rate:>16s}   ({tot['dur']:.0f} s of footage)")
    print("hold: mean |change of the crop centre| per frame during holds (spans >= 1 s where the reference subject's "
          "boxes fit in 80 % of the crop, or no subject); moving: share of hold frames where the crop moves; "
          "still / walk / none: hold motion where the reference subject stays within a quarter crop / travels "
          "slowly / is absent; comf: hold motion over the hold steps where the reference subject stays inside the "
          "crop as it stood, less 10 % of the crop each side, for the next 0.4 s (issue 20's 'while the subject "
          "stays inside a comfortable region of the crop'; steps where it leaves are re-frames); op: the same with "
          "each re-frame taken out whole (a move that starts while the subject leaves that region, until the crop "
          "rests or the subject has been comfortable for 1 s; devkit/autocrop_replay.operator_holds); rev/min: turns "
          "of the crop's horizontal motion per minute inside shots")
    print("targets: cut recall >= 95% with <= 1 false cut per 10 min (held out); hold motion <= 0.2 px/frame")


def stress_cuts(previous: str | None, shot_model: ShotModel | None, clips: list[str] | None = None) -> None:
    """Cut recall and false cuts over minutes of real footage through a virtual camera
    (``devkit/cutcorpus.py``: whips, flashes, shake, long ping-pong shots, known cuts), the shot detector
    alone, as the sidecar runs it (5 fps, 480 px), in the same run for: ``autocrop`` (the hand-made detector
    with the learned second opinion), ``hand-made`` (the same without the model) and ``previous`` (the
    detector at revision ``previous``). Every clip is rendered once and fed to all of them."""
    from devkit import cutcorpus
    from sidecast.sidecars.autocrop import decide

    factories: dict[str, Any] = {"autocrop": lambda: decide.ShotDetector(model=shot_model)}
    if shot_model is None:
        print("(no shot model loaded: autocrop = hand-made)")
    factories["hand-made"] = decide.ShotDetector
    if previous:
        previous_version(previous)
        factories["previous"] = importlib.import_module("autocrop_prev.decide").ShotDetector
    print()
    print("shot cuts on real footage through a virtual camera (devkit/cutcorpus.py), shot detector at 5 fps, 480 px:\n"
          "the 5 fps fallback only; the live detector reads full-rate thumbnails, measured by devkit/shotrate.py")
    print(f"{'clip':17s} {'split':9s} {'length':>7s} " + "".join(f"{m + ' cuts':>16s} {'false':>5s}" for m in factories))
    totals: dict[tuple[str, str], list[float]] = {}
    runs0, cpu0 = (shot_model.runs, shot_model.cpu_seconds) if shot_model else (0, 0.0)
    analysed = 0
    h = round(cutcorpus.HEIGHT * DEFAULT_WIDTH / cutcorpus.WIDTH)
    for c in cutcorpus.stress(wide=False):  # the wide tune programmes: devkit/shotrate.py
        if clips and c.name not in clips:
            continue
        dets = {m: f() for m, f in factories.items()}
        found: dict[str, list[float]] = {m: [] for m in dets}
        times = [i / DEFAULT_FPS for i in range(int(c.duration * DEFAULT_FPS + 1e-9))]
        analysed += len(times)
        for t, img in c.frames(times):
            small = cv2.resize(img, (DEFAULT_WIDTH, h), interpolation=cv2.INTER_AREA)
            for m, det in dets.items():
                found[m] += [ft for ft, cut in det.push(t, small) if cut]
        row = f"{c.name:17s} {c.split:9s} {c.duration:6.0f}s "
        for m, det in dets.items():
            found[m] += [ft for ft, cut in det.flush() if cut]
            hit, false = footage.match_cuts(c.cuts, found[m], 0.2)
            tot = totals.setdefault((c.split, m), [0, 0, 0, 0.0])
            tot[0] += hit
            tot[1] += len(c.cuts)
            tot[2] += false
            tot[3] += c.duration
            row += f"{f'{hit}/{len(c.cuts)}':>16s} {false:>5d}"
        print(row, flush=True)
    for (split, m), (hit, n, false, dur) in sorted(totals.items()):
        print(f"{split:9s} {m:9s} cut recall {hit:.0f}/{n:.0f} = {100 * hit / max(n, 1):.0f}%, false cuts {false:.0f} "
              f"= {false / dur * 600:.1f} per 10 min ({dur / 60:.1f} min of footage)")
    if shot_model is not None and analysed:
        runs, cpu = shot_model.runs - runs0, shot_model.cpu_seconds - cpu0
        print(f"shot model: asked about {runs} of {analysed} analysed frames ({100 * runs / analysed:.1f}%), "
              f"{1000 * cpu / max(runs, 1):.0f} ms of CPU per question ({ShotModel.__name__}, 11-frame window), "
              f"{1000 * cpu / analysed:.2f} ms per analysed frame on average")


def windows(scene: Scene, crops: list[Crop]) -> tuple[list[tuple[int, int, int, int]], list]:
    path = CropPath(scene.width, scene.height, (9, 16))
    for c in crops:
        path.add(c)
    full = [path.window_at(t) for t in scene.frame_times()]
    analysed = [(c.t, path.window_at(c.t)) for c in crops]
    return full, analysed


def under_load(faces: FaceDetector, objects: ObjectDetector, fps: float, width: int) -> None:
    """Feed the analysis at its real rate (one frame every 1/fps s of wall time) while FFmpeg encodes the
    default ladder live from a 1080p30 source, and measure how late the analysis falls behind."""
    import shutil

    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "needs Debian's ffmpeg"
    src = footage.source_path("vtest")
    enc = subprocess.Popen([
        ffmpeg, "-v", "error", "-re", "-stream_loop", "-1", "-i", str(src),
        "-filter_complex", "[0:v]fps=30,scale=1920:1080,split=3[a][b][c];[a]scale=1280:720[v1];[b]scale=854:480[v2];"
                           "[c]scale=640:360[v3]",
        *[x for i in (1, 2, 3) for x in ("-map", f"[v{i}]", "-c:v", "libx264", "-preset", "veryfast", "-g", "60",
                                         "-f", "null", "-")],
    ], stdin=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # let the encoder settle into its real-time pace
        clips = [footage.clip(n) for n in ("mixed_held", "pedestrians_held")]
        an_frames: list[tuple[float, np.ndarray]] = []
        media = 0.0
        for c in clips:
            h = round(footage.HEIGHT * width / footage.WIDTH)
            times = analysed_times(c.duration, fps)
            an_frames += [(media + t, cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA))
                          for t, img in c.frames(times)]
            media += c.duration
        an = Analyzer(footage.WIDTH, footage.HEIGHT, PathOptions(), faces, objects=objects, shot_model=SHOTS or False)
        start = time.perf_counter()
        lateness = []
        cpu0 = time.process_time()
        for t, img in an_frames:
            due = start + t
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            an.analyse(t, img)
            lateness.append(time.perf_counter() - due)
        an.flush()
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - start
        alive = enc.poll() is None
    finally:
        enc.terminate()
        enc.wait()
    lat = np.array(lateness)
    print(f"analysis next to a live 1080p30 -> 720/480/360 x264 veryfast encode (encoder alive: {alive}):")
    print(f"  {media:.0f} s of media at {fps:g} fps in {wall:.1f} s wall; analysis CPU {cpu / len(lat) * 1000:.1f} ms/frame "
          f"({cpu / media * 100:.0f}% of one core); frame done after its due time: median "
          f"{np.median(lat) * 1000:.0f} ms, p95 {np.percentile(lat, 95) * 1000:.0f} ms, max {lat.max() * 1000:.0f} ms; "
          f"keeps real time: {wall <= media + 1.0}")
    print(f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fps", type=float, default=DEFAULT_FPS)
    ap.add_argument("--width", type=int, default=DEFAULT_WIDTH)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-real", action="store_true", help="skip the real-footage section")
    ap.add_argument("--no-synthetic", action="store_true", help="skip the synthetic scenes")
    ap.add_argument("--clips", nargs="*", help="only these real clips (devkit/footage.py names)")
    ap.add_argument("--no-stress", action="store_true", help="skip the cut section on devkit/cutcorpus.py")
    ap.add_argument("--previous", metavar="REV", help="also run the sidecar as it was at this git revision")
    ap.add_argument("--smoother", metavar="REV", help="also the planner (smooth.py) as it was at this git revision, "
                    "fed autocrop's own kept focus (method 'smoother': the smoothers on identical detections)")
    ap.add_argument("--planning", metavar="REV", help="also the focus keeper and planner (decide.py, smooth.py) as "
                    "they were at this git revision, fed autocrop's own detections and cuts (method 'planning')")
    ap.add_argument("--no-shot-model", action="store_true", help="autocrop without the learned cut model")
    ap.add_argument("--stress-clips", nargs="*", help="only these devkit/cutcorpus.py clips")
    ap.add_argument("--no-thumbs", action="store_true",
                    help="real footage without the full-rate thumbnails (the cut detector's 5 fps fallback)")
    ap.add_argument("--with-encode", action="store_true",
                    help="time the analysis in real time next to a live x264 ladder encode (1080p30 -> "
                         "720/480/360 veryfast, ffmpeg -re) and report whether it keeps up")
    args = ap.parse_args(argv)
    root = Path(__file__).resolve().parents[1]
    for flag, rev in (("--previous", args.previous), ("--smoother", args.smoother), ("--planning", args.planning)):
        if rev and subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=root,
                                  capture_output=True).returncode != 0:
            ap.error(f"{flag}: {rev!r} is not a git revision of this repository")

    global SHOTS, FULL_RATE, OLD_SMOOTH, OLD_PLAN
    FULL_RATE = not args.no_thumbs
    if args.smoother:
        OLD_SMOOTH = previous_version(args.smoother, "autocrop_smoother", "smooth")
    if args.planning:
        OLD_PLAN = (previous_version(args.planning, "autocrop_planning", "decide"),
                    importlib.import_module("autocrop_planning.smooth"))
    faces = FaceDetector(threads=args.threads)
    objects = ObjectDetector(threads=args.threads)
    SHOTS = None if args.no_shot_model else ShotModel(threads=args.threads)
    media = wall = cpu = 0.0
    if not args.no_synthetic:
        methods = ("centre", "per-frame", "autocrop")
        per_scene: dict[str, dict[str, tuple[float, float, int | None]]] = {m: {} for m in methods}
        for scene in ground_truth_scenes():
            res = run_scene(scene, faces, objects, args.fps, args.width)
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
    if args.with_encode:
        under_load(faces, objects, args.fps, args.width)
        return 0
    if not args.no_real:
        real_footage(faces, objects, args.fps, args.width, args.previous, args.clips)
    if not args.no_stress:
        stress_cuts(args.previous, SHOTS, args.stress_clips)
    if media:
        n = media * args.fps
        print()
        print(f"analysis cost (autocrop, in-process, {n:.0f} analysed frames): CPU {cpu / n * 1000:.1f} ms/frame = "
              f"{media / cpu:.1f}x real time; wall {wall / n * 1000:.1f} ms/frame = {media / wall:.1f}x real time "
              f"at {args.fps:g} fps (target >= 10x; wall includes waiting for a busy CPU: load average now "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
