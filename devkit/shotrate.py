"""What the learned shot model gains from full-rate frames, measured with the shipped detector.

The sidecar analyses 5 frames a second; TransNetV2 was trained on full-rate video. Since the contract's
extra video feeds, the autocrop sidecar also gets every source frame as a 48x27 RGB thumbnail (its ``shots``
feed), and ``decide.ShotDetector.thumbnail`` hands them to the model's second opinion. This renders every
clip of ``devkit/cutcorpus.py`` and ``devkit/footage.py`` at its full 25 fps once and runs, on the same
frames, the real ``ShotDetector`` (only its feature computation is shared between the variants, which see
the same analysed frames):

- ``hand-made``   alone on the 5 fps, 480 px analysed frames;
- ``5fps``        the sidecar before the extra feed: the same, asking the model (on the 5 fps frames) when
                  the hand-made score is in [1.4, 1.6), a cut at probability 0.05;
- ``full-cv2``    full-rate thumbnails made here with OpenCV (area resize of the rendered BGR frame): what
                  the simulation ``FullRateShots`` measured before the feed existed (it must reproduce it);
- ``core A/T``    full-rate thumbnails made exactly as the core's fan-out makes the ``shots`` feed (the frame
                  as yuv420p, one swscale area reformat to 48x27 rgb24: ``core.fanout.convert_frame``), asked
                  when the score is in [A, 1.6), a cut at probability T; the grid is there to choose A and T
                  on the tune split only (1.2/0.3 was, on 2026-11-30: docs/autocrop.md);
- ``before``      the same thumbnails, the model asked from a 5 fps score of 1.2, a cut at 0.3 (``core
                  1.2/0.3``): the live sidecar before the full-rate cut detector;
- ``full-rate``   every thumbnail, in order, handed to the detector with its defaults (``ShotDetector.thumbnail``
                  -> ``fullcuts.FullRateCuts``: the hand-made detector on every source frame, TransNetV2 asked
                  where its score hesitates): the live sidecar now;
- ``full-alone``  the same without the model (the hand-made full-rate detector alone);
- ``s20``         ``full-rate`` as shipped before the twenty-first session (a 5 fps score of 2.5 does not cut
                  on its own, ``full_sure=None``; no jump-cut cue); ``--quick`` runs only it, ``no-jumps``
                  (``full-rate`` without the jump-cut cue) and ``full-rate``. The jump-cut cue needs the subjects:
                  with ``--thumbs DIR`` they come from ``devkit/cutboxes.py``'s cache there, else it is off;
- ``s8``          ``full-rate`` as shipped before the ninth session (no 5 fps vote, no look-ahead, shot
                  statistics from pairs whose structure moved only: ``S8Cuts``, ``full_vote=None``);
- ``s7``          ``full-rate`` with the constants shipped before the wider tune split (no colour bridge, no
                  flash test, no two-frame step test, no motion rule: ``S7Cuts``), for the comparison;
- ``--alone``     also the model alone over every full-rate frame with full context (TransNetV2's own
                  100-frame windows, a cut where the probability peaks over 0.5 / 0.7): costly (~9 ms of CPU
                  per frame).

Run (long: ~25k frames rendered; a quality measurement, not a timing, so niced in its own autogroup)::

    setsid sh -c 'echo 19 > /proc/self/autogroup; exec nice -n 19 .venv/bin/python -m devkit.shotrate [--alone] [--clips NAME ...]'

``--thumbs DIR`` reads the full-rate thumbnails from ``devkit/cutframes.py``'s cache (the same core
conversion, made once) instead of rendering every frame; ``--split`` runs one split; ``--grid`` adds the
5 fps gate grid and ``full-cv2``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from devkit import cutcorpus, footage
from sidecast.core.fanout import convert_frame, group_for
from sidecast.sidecars.autocrop.decide import ShotDetector
from sidecast.sidecars.autocrop.fullcuts import FullRateCuts
from sidecast.sidecars.autocrop.shotmodel import THUMB_H, THUMB_W, ShotModel, thumbnail
from sidecast.sidecars.autocrop.sidecar import SHOT_FEED

FULL_FPS = 25.0
STEP = 5  # full-rate frames per analysed frame (25 / 5)
GRID = [(a, thr) for a in (1.0, 1.2, 1.4) for thr in (0.2, 0.3, 0.5)]


class SharedFeatures(ShotDetector):
    """The real detector; its per-frame features and distances are computed once for all the variants
    (``cache`` is shared and cleared by the caller at every analysed frame)."""

    def __init__(self, cache: dict[Any, Any], **kw: Any) -> None:
        super().__init__(**kw)
        self.cache = cache

    def features(self, bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        key = ("f", id(bgr))
        if key not in self.cache:
            self.cache[key] = (bgr, super().features(bgr))  # keep bgr alive: its id stays unique
        return self.cache[key][1]  # type: ignore[no-any-return]

    def distance(self, a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> np.ndarray:
        key = ("d", id(a), id(b))
        if key not in self.cache:
            self.cache[key] = super().distance(a, b)
        return self.cache[key]  # type: ignore[no-any-return]


class LazyFull(SharedFeatures):
    """The real detector fed full-rate thumbnails, rendered only where the model reads them: before each
    question its thumbnail store holds exactly the frames a full feed would have given it for that window
    (``FULL_PAST`` before the interval to the next analysed frame, clipped to the clip), so the decisions
    are those of a full feed at a fraction of the rendering (``thumbs(k)`` gives full-rate frame k's)."""

    def __init__(self, cache: dict[Any, Any], thumbs: Any, n: int, **kw: Any) -> None:
        super().__init__(cache, **kw)
        self.thumbs, self.n = thumbs, n

    def _full_rate_window(self, t: float, final: bool) -> tuple[np.ndarray, int, int] | None:
        i = int(round(t * FULL_FPS / STEP))
        self._full.clear()
        for k in range(max(0, STEP * (i - 1) - self.FULL_PAST), min(self.n - 1, STEP * (i + 1)) + 1):
            self._full.append((k / FULL_FPS, self.thumbs(k)))
        return super()._full_rate_window(t, final)


class S8Cuts(FullRateCuts):
    """The full-rate detector as shipped before the ninth session's rules (branch ``s8-figures3``): shot
    statistics from pairs whose structure moved only, and no look-ahead (``ShotDetector`` with
    ``full_vote=None`` besides)."""

    MOVED_COLOUR = None
    AHEAD = 0


class S7Cuts(S8Cuts):
    """The full-rate detector as shipped before the wider tune split (branch ``s7-cuts``)."""

    BRIDGE_COLOUR = 1e9  # the bridge judged on structure only
    FLASH = 0.0
    STEPS = 0.0
    MOTION = 10**6


class Rendered:
    """A clip's full-rate thumbnails (OpenCV's and the core's), each frame rendered at most once."""

    def __init__(self, clip: Any, group: Any, cached: np.ndarray | None = None) -> None:
        self.clip, self.group, self.cached = clip, group, cached
        self.thumbs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def keep(self, k: int, img: np.ndarray) -> None:
        self.thumbs[k] = (thumbnail(img), core_thumbnail(img, self.group))

    def _get(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k not in self.thumbs:
            for _t, img in self.clip.frames([k / FULL_FPS]):
                self.keep(k, img)
        return self.thumbs[k]

    def cv2(self, k: int) -> np.ndarray:
        return self._get(k)[0]

    def core(self, k: int) -> np.ndarray:
        if self.cached is not None:
            return self.cached[k]  # type: ignore[no-any-return]
        return self._get(k)[1]


def core_thumbnail(bgr: np.ndarray, group: Any) -> np.ndarray:
    """The ``shots`` feed's frame as the core makes it from a decoded yuv420p frame."""
    frame = av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")
    return np.frombuffer(b"".join(convert_frame(frame, group)), np.uint8).reshape(THUMB_H, THUMB_W, 3)


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
    ap.add_argument("--split", choices=("tune", "held_out", "fresh"), help="only this split's clips")
    ap.add_argument("--thumbs", type=Path, help="devkit/cutframes.py's cache: full-rate thumbnails not rendered")
    ap.add_argument("--grid", action="store_true", help="also the 5 fps gate grid and full-cv2")
    ap.add_argument("--quick", action="store_true", help="only the shipped detector (full-rate) and s20")
    args = ap.parse_args(argv)
    from devkit import cutboxes, cutframes  # they import this module

    model = ShotModel()
    clips: list[Any] = [*cutcorpus.stress(), *footage.corpus(), *footage.jump_corpus()]
    grid = [f"core {a:.1f}/{thr:.1f}" for a, thr in GRID] if args.grid else []
    methods = (["hand-made", "5fps"] + (["full-cv2"] if args.grid else [])
               + ["before", *grid, "full-alone", "s7", "s8", "s20", "full-rate"]
               + (["alone>=0.5", "alone>=0.7"] if args.alone else []))
    shown = ["hand-made", "5fps", "before", "full-alone", "s7", "s8", "s20", "full-rate"]
    if args.quick:
        methods = shown = ["s20", "no-jumps", "full-rate"]
    print(f"{'clip':17s} {'split':9s} {'length':>7s}" + "".join(f"{m:>16s}" for m in shown))
    totals: dict[tuple[str, str, str], list[float]] = {}
    asked: dict[str, dict[str, int]] = {m: {"5fps": 0, "full-rate": 0} for m in methods}
    decided: dict[str, dict[str, int]] = {m: {"5fps": 0, "full-rate": 0}
                                          for m in ("full-alone", "s7", "s8", "s20", "no-jumps", "full-rate") if m in methods}
    voted: dict[str, int] = {}
    full_frames, full_cpu = 0, 0.0
    for c in clips:
        if (args.clips and c.name not in args.clips) or (args.split and c.split != args.split):
            continue
        kind = cutframes.kind(c)
        n = int(np.floor(c.duration * FULL_FPS + 1e-9))
        cache: dict[Any, Any] = {}
        group = group_for(SHOT_FEED.wants, footage.WIDTH, footage.HEIGHT)
        cached = cutframes.load(c.name, args.thumbs)["thumbs"] if args.thumbs else None
        if cached is not None and len(cached) != n:
            raise SystemExit(f"{c.name}: {len(cached)} cached thumbnails, {n} frames")
        rendered = Rendered(c, group, cached)
        cv2_thumb, core_thumb = rendered.cv2, rendered.core
        old = {"full_rate_cuts": False}  # the detectors before the full-rate cut detector
        dets: dict[str, ShotDetector] = {"hand-made": SharedFeatures(cache, **old),
                                         "5fps": SharedFeatures(cache, model=model, **old),
                                         "before": LazyFull(cache, core_thumb, n, model=model, **old)}
        if args.grid:
            dets["full-cv2"] = LazyFull(cache, cv2_thumb, n, model=model, full_rate_ask_from=1.4, **old)
        for (a, thr), name in zip(GRID, grid, strict=False):
            dets[name] = LazyFull(cache, core_thumb, n, model=model, full_rate_ask_from=a, full_rate_threshold=thr, **old)
        # fed every thumbnail in order, each before the analysed frame of the same time (the core's order)
        fed = {"full-alone": SharedFeatures(cache), "full-rate": SharedFeatures(cache, model=model),
               "s7": SharedFeatures(cache, model=model, full_vote=None, full_sure=None, subject_jumps=False),
               "s8": SharedFeatures(cache, model=model, full_vote=None, full_sure=None, subject_jumps=False),
               "s20": SharedFeatures(cache, model=model, full_sure=None, subject_jumps=False)}
        fed["s7"].full_cuts = S7Cuts()
        fed["s8"].full_cuts = S8Cuts()
        if args.quick:
            fed = {"s20": fed["s20"], "no-jumps": SharedFeatures(cache, model=model, subject_jumps=False),
                   "full-rate": fed["full-rate"]}
            dets = {}
        # the faces and people the sidecar's detectors find on each analysed frame (devkit/cutboxes.py's cache
        # beside the thumbnails), for the jump-cut cue; without it the cue is off
        boxes = cutboxes.load(c.name, args.thumbs) if args.thumbs else None
        dets.update(fed)
        found: dict[str, list[float]] = {m: [] for m in methods}
        # the virtual-camera clips render any frame on its own: only the analysed ones up front (the rest
        # when a question needs them, or every one when no cache gives the full-rate detector its
        # thumbnails); the short natural clips decode their sources in order: all up front
        every = args.alone or kind != "stress" or cached is None
        times = [k / FULL_FPS for k in range(0, n, 1 if every else STEP)]
        given = 0  # full-rate thumbnails handed to the ``fed`` detectors so far
        for t, img in c.frames(times):
            k = int(round(t * FULL_FPS))
            if cached is None or k % STEP == 0 or args.grid or args.alone:
                rendered.keep(k, img)
            if k % STEP == 0:
                for j in range(given, k + 1):
                    for det in fed.values():
                        det.thumbnail(j / FULL_FPS, core_thumb(j))
                given = k + 1
                cache.clear()
                small = cv2.resize(img, (480, 270), interpolation=cv2.INTER_AREA)
                subjects = boxes[k // STEP] if boxes is not None and k // STEP < len(boxes) else None
                for m, det in dets.items():
                    found[m] += [ft for ft, cut in det.push(t, small, subjects) if cut]
        for j in range(given, n):
            for det in fed.values():
                det.thumbnail(j / FULL_FPS, core_thumb(j))
        for m, det in dets.items():
            found[m] += [ft for ft, cut in det.flush() if cut]
            for src, count in det.asked.items():
                asked[m][src] += count
            if m in decided:
                for src, count in det.decided.items():
                    decided[m][src] += count
                voted[m] = voted.get(m, 0) + det.voted
                if det.sure:
                    voted[f"{m} (5 fps sure alone)"] = voted.get(f"{m} (5 fps sure alone)", 0) + det.sure
                if det.subject_jumps:
                    voted[f"{m} (jump cue)"] = voted.get(f"{m} (jump cue)", 0) + det.subject_jumps
            if m == "full-rate" and det.full_cuts is not None:
                full_frames += det.full_cuts.frames
                full_cpu += det.full_cuts.cpu_seconds
        if args.alone:
            full = [cv2_thumb(k) for k in range(n)]
            for thr in (0.5, 0.7):
                found[f"alone>={thr}"] = alone(model, full, thr)
        print(f"  ({c.name}: {len(rendered.thumbs)} of {n} full-rate frames rendered)", file=sys.stderr, flush=True)
        row = f"{c.name:17s} {c.split:9s} {c.duration:6.0f}s"
        cells: dict[str, str] = {}
        for m in methods:
            hit, false = footage.match_cuts(c.cuts, found[m], 0.2)
            tot = totals.setdefault((c.split, kind, m), [0, 0, 0, 0.0])
            tot[0] += hit
            tot[1] += len(c.cuts)
            tot[2] += false
            tot[3] += c.duration
            cells[m] = f"{hit}/{len(c.cuts)} f{false}"
        print(row + "".join(f"{cells[m]:>16s}" for m in shown), flush=True)  # in the header's order
    print()
    for (split, kind, m), (hit, total, false, dur) in sorted(totals.items()):
        print(f"{split:9s} {kind:8s} {m:13s} cut recall {hit:.0f}/{total:.0f} = {100 * hit / max(total, 1):.0f}%, "
              f"false cuts {false:.0f} = {false / dur * 600:.1f} per 10 min ({dur / 60:.1f} min)")
    print("model questions (read 5 fps frames / full-rate thumbnails): "
          + ", ".join(f"{m} {a['5fps']}/{a['full-rate']}" for m, a in asked.items() if sum(a.values())))
    print("decisions (5 fps path / full-rate path): "
          + ", ".join(f"{m} {a['5fps']}/{a['full-rate']}" for m, a in decided.items()))
    print("cuts made by the 5 fps vote: " + ", ".join(f"{m} {v}" for m, v in voted.items()))
    if full_frames:
        print(f"full-rate detector: {full_frames} thumbnails, {1000 * full_cpu / full_frames:.3f} ms of CPU each "
              "(its push; scoring is per analysed frame)")
    return 0


if __name__ == "__main__":
    t0 = time.time()
    rc = main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    raise SystemExit(rc)
