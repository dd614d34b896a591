"""Autocrop accepts any frame it may be sent: odd sizes (1366x767), tiny frames (<= 64 px), huge ones, and a
change of size mid-stream (which starts a new shot), without raising; every crop stays inside the source."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecast.sidecars.autocrop.analyzer import Analyzer
from sidecast.sidecars.autocrop.detect import FaceDetector, ObjectDetector


@pytest.fixture(scope="module")
def detectors() -> tuple[FaceDetector, ObjectDetector]:
    return FaceDetector(), ObjectDetector()


def frames(w: int, h: int, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 3 * i, axis=1) for i in range(n)]


def check(crops: list, source_w: int, source_h: int) -> None:
    for c in crops:
        assert 0 <= c.x and c.x + c.width <= source_w, c
        assert 0 <= c.y and c.y + c.height <= source_h, c
        assert c.width >= 2 and c.height >= 2


@pytest.mark.parametrize(("source", "frame"), [
    ((1366, 767), (480, 269)), ((1366, 767), (1366, 767)), ((641, 361), (63, 35)), ((64, 36), (64, 36)),
    ((33, 17), (33, 17)), ((1920, 1080), (7, 5)), ((7680, 4320), (3840, 2160)), ((1080, 1920), (271, 481)),
])
def test_odd_tiny_and_huge_frames_give_crops_inside_the_source(detectors, source, frame) -> None:  # type: ignore[no-untyped-def]
    faces, objects = detectors
    an = Analyzer(*source, faces=faces, objects=objects)
    crops = []
    for i, img in enumerate(frames(*frame, 4)):
        crops += an.analyse(i * 0.2, img)
    crops += an.flush()
    assert [round(c.t, 3) for c in crops] == [0.0, 0.2, 0.4, 0.6]
    check(crops, *source)


def test_a_change_of_frame_size_mid_stream_starts_a_new_shot(detectors) -> None:  # type: ignore[no-untyped-def]
    faces, objects = detectors
    an = Analyzer(1366, 767, faces=faces, objects=objects)
    crops = []
    sizes = [(480, 270)] * 5 + [(480, 360)] * 5 + [(63, 35)] * 3
    for i, (w, h) in enumerate(sizes):
        crops += an.analyse(i * 0.2, frames(w, h, 1, seed=i % 5 == 0)[0])
    crops += an.flush()
    assert len(crops) == len(sizes)
    cuts = [round(c.t, 3) for c in crops if c.cut]
    assert 0.0 in cuts and 1.0 in cuts and 2.0 in cuts, cuts
    check(crops, 1366, 767)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sw=st.integers(2, 5000), sh=st.integers(2, 3000), fw=st.integers(1, 700), fh=st.integers(1, 700),
       n=st.integers(1, 4))
def test_any_source_and_frame_size_never_raises(detectors, sw: int, sh: int, fw: int, fh: int, n: int) -> None:  # type: ignore[no-untyped-def]
    faces, objects = detectors
    an = Analyzer(sw, sh, faces=faces, objects=objects)
    crops = []
    for i, img in enumerate(frames(fw, fh, n)):
        crops += an.analyse(i * 0.2, img)
    crops += an.flush()
    assert len(crops) == n
    check(crops, sw, sh)


def test_a_frame_that_is_not_bgr_is_one_clear_error(detectors) -> None:  # type: ignore[no-untyped-def]
    faces, objects = detectors
    an = Analyzer(640, 360, faces=faces, objects=objects)
    with pytest.raises(ValueError, match="HxWx3 BGR"):
        an.analyse(0.0, np.zeros((36, 64), np.uint8))
