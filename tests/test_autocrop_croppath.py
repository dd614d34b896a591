"""core/croppath.py: the window the vertical encoder follows between the sidecar's analysed crops."""

from __future__ import annotations

import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.contract.records import Crop
from sidecast.core.croppath import CropPath, vertical_ladder, window_size


def crop(t: float, x: int, cut: bool = False, w: int = 202, h: int = 360, y: int = 0, mode: str = "tracking") -> Crop:
    return Crop(t=t, x=x, y=y, width=w, height=h, mode=mode, confidence=0.9, cut=cut)


def test_window_size_fits_the_aspect_inside_the_source_and_is_even() -> None:
    assert window_size(1920, 1080, (9, 16)) == (606, 1080)
    assert window_size(640, 360, (9, 16)) == (202, 360)
    assert window_size(1920, 1080, (1, 1)) == (1080, 1080)
    assert window_size(1920, 1080, (4, 5)) == (864, 1080)
    assert window_size(176, 144, (9, 16)) == (80, 144)
    # a portrait source cropped to 1:1 keeps the full width
    assert window_size(720, 1280, (1, 1)) == (720, 720)


def test_no_crop_yet_gives_a_centred_window() -> None:
    path = CropPath(640, 360)
    assert path.window_at(0.0) == (220, 0, 202, 360)
    assert path.window_at(12.5) == (220, 0, 202, 360)


def test_window_interpolates_linearly_between_analysed_crops() -> None:
    path = CropPath(640, 360)
    path.add(crop(1.0, 100))
    path.add(crop(2.0, 300))
    assert path.window_at(1.0) == (100, 0, 202, 360)
    assert path.window_at(1.5) == (200, 0, 202, 360)
    assert path.window_at(1.25) == (150, 0, 202, 360)
    assert path.window_at(2.0) == (300, 0, 202, 360)
    # after the last crop the window holds (until the path goes stale)
    assert path.window_at(3.0) == (300, 0, 202, 360)


def test_no_interpolation_across_a_cut_the_window_jumps_at_the_cut_time() -> None:
    path = CropPath(640, 360)
    path.add(crop(1.0, 40))
    path.add(crop(1.2, 40))
    path.add(crop(1.4, 420, cut=True))
    path.add(crop(1.6, 420))
    assert path.window_at(1.3)[0] == 40
    assert path.window_at(1.3999)[0] == 40
    assert path.window_at(1.4)[0] == 420
    assert path.window_at(1.5)[0] == 420


def test_windows_are_clamped_inside_the_frame_and_even() -> None:
    path = CropPath(641, 361)
    path.add(crop(0.0, -50))  # a crop hanging off the left edge
    path.add(crop(1.0, 600))  # and one off the right edge
    for t in (0.0, 0.33, 0.5, 0.77, 1.0):
        x, y, w, h = path.window_at(t)
        assert x >= 0 and y >= 0 and x + w <= 641 and y + h <= 361
        assert x % 2 == 0 and y % 2 == 0 and w % 2 == 0 and h % 2 == 0


def test_stale_path_falls_back_to_the_centre() -> None:
    path = CropPath(640, 360, stale_after=2.0)
    path.add(crop(1.0, 0))
    assert path.window_at(2.5)[0] == 0  # within 2 s: hold the last crop
    assert path.window_at(3.5) == path.centre_window()  # the sidecar went quiet: centre


def test_keep_centered_overrides_the_path_until_switched_off() -> None:
    path = CropPath(640, 360)
    path.add(crop(0.0, 0))
    path.add(crop(1.0, 0))
    path.keep_centered(True)
    assert path.centered
    assert path.window_at(0.5) == (220, 0, 202, 360)
    path.keep_centered(False)
    assert path.window_at(0.5) == (0, 0, 202, 360)


def test_out_of_order_crops_are_sorted_and_same_time_replaces() -> None:
    path = CropPath(640, 360)
    path.add(crop(2.0, 200))
    path.add(crop(1.0, 100))
    path.add(crop(2.0, 300))
    assert len(path) == 2
    assert path.window_at(1.5)[0] == 200


def test_vertical_crop_of_a_narrow_window_uses_the_crop_y() -> None:
    # 1:1 from a portrait source crops vertically
    path = CropPath(720, 1280, aspect=(1, 1))
    path.add(Crop(t=0.0, x=0, y=400, width=720, height=720))
    path.add(Crop(t=1.0, x=0, y=500, width=720, height=720))
    assert path.window_at(0.5) == (0, 450, 720, 720)


def test_crops_jsonl_has_time_rectangle_mode_and_confidence_segment_by_segment() -> None:
    path = CropPath(640, 360)
    path.add(crop(0.0, 10, cut=True, mode="stationary"))
    path.add(crop(1.8, 12))
    path.add(crop(2.0, 14, mode="panning"))
    buf = io.StringIO()
    assert path.to_jsonl(buf, 0.0, 2.0) == 2  # segment 0 covers [0, 2)
    assert path.to_jsonl(buf, 2.0, 4.0) == 1
    assert path.to_jsonl(buf, 4.0, 6.0) == 0
    records = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["t"] for r in records] == [0.0, 1.8, 2.0]
    assert records[0] == {"t": 0.0, "x": 10, "y": 0, "width": 202, "height": 360, "mode": "stationary",
                          "confidence": 0.9, "cut": True}
    assert records[2]["mode"] == "panning"
    assert len(path.jsonl_records()) == 3


def test_vertical_ladder_never_upscales_beyond_the_crop() -> None:
    assert vertical_ladder(606, 1080) == [(606, 1080), (480, 854), (360, 640)]
    assert vertical_ladder(1080, 1920) == [(1080, 1920), (720, 1280), (480, 854), (360, 640)]
    assert vertical_ladder(202, 360) == [(202, 360)]
    assert vertical_ladder(202, 360, allow_upscale=True, aspect=(9, 16))[0] == (1080, 1920)
    assert CropPath(1920, 1080).ladder() == [(606, 1080), (480, 854), (360, 640)]


def test_bad_source_size_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="source size"):
        CropPath(0, 360)


@settings(max_examples=200, deadline=None)
@given(
    w=st.integers(16, 4000), h=st.integers(16, 4000),
    aspect=st.sampled_from([(9, 16), (4, 5), (1, 1), (16, 9)]),
    xs=st.lists(st.tuples(st.floats(0, 10), st.integers(-5000, 5000), st.booleans()), min_size=1, max_size=8),
    t=st.floats(-1, 12),
)
def test_every_window_is_inside_the_frame_even_and_of_constant_size(
    w: int, h: int, aspect: tuple[int, int], xs: list[tuple[float, int, bool]], t: float
) -> None:
    path = CropPath(w, h, aspect)
    for tt, x, cut in xs:
        path.add(Crop(t=tt, x=x, y=x // 3, width=path.width, height=path.height, cut=cut))
    x, y, cw, ch = path.window_at(t)
    assert (cw, ch) == (path.width, path.height)
    assert 0 <= x and x + cw <= w and 0 <= y and y + ch <= h
    assert x % 2 == 0 and y % 2 == 0 and cw % 2 == 0 and ch % 2 == 0
    assert path.window_at(t) == (x, y, cw, ch)  # stable: the same time gives the same window
