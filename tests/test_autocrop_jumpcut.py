"""Jump cuts (``jumpcut``, inside ``decide.ShotDetector``): the subject jumped and the picture changed in one frame.

Fed as the sidecar feeds it: the core's 48x27 thumbnail of every frame, the analysed 480 px frames at 5 fps and,
with each analysed frame, the faces and people the sidecar's detectors find on it. Real tune footage: the
pianist of PyPI ``musicalgestures`` cut to later moments of the same take (``devkit/footage.py`` ``JUMP_CUTS``),
and spans of ``devkit/cutcorpus.py`` where one of the two cues fires alone.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from devkit import footage
from sidecast.sidecars.autocrop.decide import ShotDetector
from sidecast.sidecars.autocrop.detect import FaceDetector, PersonDetector
from sidecast.sidecars.autocrop.jumpcut import Box, ResidualJumps, box_jump
from sidecast.sidecars.autocrop.shotmodel import ShotModel
from tests.test_autocrop_fullcuts import FPS, Frames, as_fed, corpus_span

Fed = list[tuple[float, np.ndarray, np.ndarray, list[Box] | None]]  # + the subjects of analysed frames


def with_subjects(frames: Frames) -> Fed:
    """The subjects the sidecar's ``Analyzer.detect`` finds on each analysed frame (faces, else people)."""
    faces, people = FaceDetector(), PersonDetector()
    out: Fed = []
    for t, thumb, small in frames:
        boxes = None
        if round(t * FPS) % 5 == 0:
            found = faces.detect(small) or people.detect(small)
            boxes = [(s.x0, s.y0, s.x1, s.y1, s.kind) for s in found]
        out.append((t, thumb, small, boxes))
    return out


def run(det: ShotDetector, fed: Fed) -> list[float]:
    cuts: list[float] = []
    for t, thumb, small, boxes in fed:
        det.thumbnail(t, thumb)
        if boxes is not None:
            cuts += [ft for ft, cut in det.push(t, small, boxes) if cut]
    cuts += [ft for ft, cut in det.flush() if cut]
    return [c for c in cuts if c > fed[0][0] + 1e-6]


def span(clip: object, start: float, end: float) -> Fed:
    times = [k / FPS for k in range(int(round(start * FPS)), int(round(end * FPS)))]
    return with_subjects(as_fed(list(clip.frames(times))))  # type: ignore[attr-defined]


def stress(name: str, start: float, end: float) -> Fed:
    return with_subjects(corpus_span(name, start, end))


@pytest.fixture(scope="module")
def model() -> ShotModel:
    return ShotModel()


def test_the_pianist_jump_cuts_are_found_from_the_subject(model: ShotModel) -> None:
    # jump_pianist 5.0-13.0 s: a pianist at the keys, one static framing, cut at 8.0 s and 12.0 s to moments 2 s
    # and 5 s later in the same take; every whole-picture detector misses them (full-rate 0.53 / 0.63, 5 fps
    # 0.58 / 0.65, TransNetV2 0.00)
    fed = span(footage.clip("jump_pianist"), 5.0, 13.0)
    det = ShotDetector(model=model)
    assert run(det, fed) == [8.0, 12.0]
    assert det.subject_jumps == 2
    assert run(ShotDetector(model=model, subject_jumps=False), fed) == []
    # without the subjects (a caller that does not pass them) the cue stays off
    assert run(ShotDetector(model=model), [(t, th, sm, [] if b is not None else None) for t, th, sm, b in fed]) == []


def test_a_subject_that_jumps_while_the_whole_picture_moves_is_not_a_cut(model: ShotModel) -> None:
    # stress_tune_h3 97.6-101.0 s (no cut): the face found there moves > 0.35 of its width in one analysed
    # interval, still before and after, but the picture's change is no lone spike (hand-held shake)
    fed = stress("stress_tune_h3", 97.6, 101.0)
    analysed = [b for *_, b in fed if b is not None]
    assert any(box_jump(*analysed[k - 2:k + 2]) for k in range(2, len(analysed) - 1))
    det = ShotDetector(model=model)
    assert run(det, fed) == []
    assert det.subject_jumps == 0


def test_a_lone_change_in_the_picture_without_a_subject_jump_is_not_a_cut(model: ShotModel) -> None:
    # stress_tune_a 80.2-83.4 s (no cut): carphone's talking head, whose source repeats frames; at 82.0 s and
    # 82.8 s the picture changes in one frame (motion-compensated blocks, a lone spike: a cut for that cue alone)
    # while the face never jumps
    fed = stress("stress_tune_a", 80.2, 83.4)
    jumps = ResidualJumps()
    for t, thumb, *_ in fed:
        jumps.push(t, cv2.cvtColor(thumb, cv2.COLOR_RGB2GRAY).astype(np.float32))
    analysed = [(t, b) for t, _, _, b in fed if b is not None]
    lone = [t for (t0, _), (t, _) in zip(analysed, analysed[1:], strict=False)
            if (got := jumps.share(t0, t))[0] >= 0.01 and got[0] >= 2 * got[1]]
    assert lone, "the picture cue should fire alone somewhere in this span"
    assert not any(box_jump(*(b for _, b in analysed[k - 2:k + 2])) for k in range(2, len(analysed) - 1))
    det = ShotDetector(model=model)
    assert run(det, fed) == []
    assert det.subject_jumps == 0


def test_box_jump_on_plain_boxes() -> None:
    face: Box = (100.0, 50.0, 140.0, 100.0, "face")
    moved: Box = (120.0, 50.0, 160.0, 100.0, "face")  # half its width to the right
    assert box_jump([face], [face], [moved], [moved])
    assert not box_jump([face], [face], [face], [face])  # still
    drifted: Box = (110.0, 50.0, 150.0, 100.0, "face")
    assert not box_jump([drifted], [face], [moved], [moved])  # it was moving before: motion, not a jump
    assert not box_jump([face], [face], [moved], [face])  # back at once: detector noise
    assert not box_jump([face], [face], [], [moved])  # lost on the frame after the interval
    grown: Box = (90.0, 37.0, 150.0, 112.0, "face")  # 1.5x bigger around the same centre
    assert box_jump([face], [face], [grown], [grown])
    # a second, bigger face appearing does not move the first one
    other: Box = (300.0, 40.0, 380.0, 140.0, "face")
    assert not box_jump([face], [face], [face, other], [face, other])
    person: Box = (100.0, 50.0, 160.0, 200.0, "person")
    walked: Box = (140.0, 50.0, 200.0, 200.0, "person")
    assert box_jump([person], [person], [walked], [walked])


def test_residual_jumps_on_a_textured_take() -> None:
    rng = np.random.default_rng(7)
    scene = cv2.GaussianBlur(rng.uniform(0, 255, (40, 80)).astype(np.float32), (0, 0), 1.2)

    def frame(x: int, patch: bool) -> np.ndarray:
        img = scene[5:32, x:x + 48].copy()
        if patch:  # a small part of the picture is another one (the subject after a jump)
            img[9:18, 20:32] = 255 - img[9:18, 20:32]
        return img

    # a camera panning 1 px a frame, a source that repeats every other frame: no lone change anywhere
    pan = ResidualJumps()
    for k in range(40):
        pan.push(k / FPS, frame(k // 2, False))
    assert pan.share(0.6, 1.2)[0] == 0.0
    # the same take where, from frame 30 on, a part of the picture is another one: a lone change at 30
    jump = ResidualJumps()
    for k in range(40):
        jump.push(k / FPS, frame(k // 2, k >= 30))
    share, near = jump.share(1.0, 1.2)
    assert share >= 0.05 and share >= 2 * near, (share, near)


_coord = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e4, 1e4))
_box = st.tuples(_coord, _coord, _coord, _coord, st.sampled_from(["face", "person", "object", ""]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_box, max_size=4), min_size=4, max_size=4))
@example([[(0.0, 0.0, float("inf"), 10.0, "face")]] * 2 + [[(0.0, 0.0, 1.0, 1.0, "face")]] * 2)  # was log(0)
def test_box_jump_takes_any_boxes(frames: list[list[Box]]) -> None:
    # ShotDetector.push is public: odd boxes (NaN, infinities, inverted, unknown kinds) are no subject, not an error
    assert box_jump(*frames) in (True, False)
