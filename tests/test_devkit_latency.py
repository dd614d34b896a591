"""The glass-to-glass bench's instruments (devkit/barcode.py, devkit/latency.py): a stamp survives a real
x264 encode and downscaling, the source paces frames in real time, and send/show times pair up."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from devkit.barcode import barcode_band, barcode_image, read_barcode
from devkit.latency import Figures, StampedSource, latencies, percentile


@pytest.mark.parametrize("n", [0, 1, 0x5A5A, 0xFFFF])
def test_a_stamp_reads_back_at_its_size_and_at_a_quarter_of_it(n: int) -> None:
    gray = barcode_image(n, 1280, 720)[:, :, 0]
    assert read_barcode(gray) == n
    assert read_barcode(gray[::4, ::4]) == n, "320x180: what a 360p rendition scaled down keeps"
    assert barcode_band(n + 0x10000, 64, 8).tobytes() == barcode_band(n, 64, 8).tobytes(), "numbers wrap at 2^16"


def test_a_picture_without_a_stamp_reads_as_none() -> None:
    assert read_barcode(np.full((720, 1280), 16, np.uint8)) is None
    flipped = 251 - barcode_image(0x1234, 1280, 720)[:, :, 0]  # guards inverted: white last, black first
    assert read_barcode(flipped) is None


def test_the_source_publishes_every_frame_in_order_in_real_time(tmp_path: Path) -> None:
    out = tmp_path / "stamped.flv"
    src = StampedSource(str(out), size=(640, 360), frames=24, log=tmp_path / "ffmpeg.log").start()
    assert src.wait(60) == 0, (tmp_path / "ffmpeg.log").read_text()
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert (stream.width, stream.height) == (640, 360)
        numbers = [read_barcode(f.to_ndarray(format="gray")) for f in c.decode(stream)]
    assert numbers == list(range(24)), "x264 at 4 Mb/s keeps every stamp readable"
    sent = [src.sent[n] for n in range(24)]
    span = sent[-1] - sent[0]
    assert 23 / 30 * 0.9 <= span <= 23 / 30 + 1.0, f"paced at 30 fps, not as fast as the pipe takes it ({span:.2f} s)"


def test_send_and_show_times_pair_by_frame_number() -> None:
    sent = {7: 100.0, 8: 100.5}
    shown = [{"n": 7, "shownAt": 101_250.0}, {"n": 9, "shownAt": 102_000.0}, {"n": 8, "shownAt": 103_000.0}]
    assert latencies(shown, sent) == pytest.approx([1.25, 2.5]), "an unknown number is dropped, not guessed"
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.95) == 4.0
    f = Figures.of([1.0, 2.0, 3.0])
    assert f is not None and (f.median, f.max, f.samples) == (2.0, 3.0, 3)
    assert Figures.of([]) is None
