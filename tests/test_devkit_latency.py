"""The glass-to-glass bench's instruments (devkit/barcode.py, devkit/latency.py): a stamp survives a real
x264 encode and downscaling, the source paces frames in real time, and send/show times pair up."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from devkit.barcode import barcode_band, barcode_image, read_barcode
from devkit.latency import Figures, PlayerClock, StampedSource, clock_rate, latencies, percentile


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
    # Paced, not as fast as the pipe takes it: no frame goes out before its time on the 30 fps clock that
    # starts once ffmpeg has read frame 0. How late a frame may be is the machine's business, not the
    # source's (a loaded CI box once held ffmpeg's pipe for 3 s): the benches count late frames themselves.
    sent = [src.sent[n] for n in range(24)]
    early = [(n, round(sent[n] - sent[0], 3)) for n in range(1, 24) if sent[n] - sent[0] < n / 30 - 0.001]
    assert not early, f"frames sent before their time at 30 fps (frame, seconds after frame 0): {early}"


def test_send_and_show_times_pair_by_frame_number() -> None:
    sent = {7: 100.0, 8: 100.5}
    shown = [{"n": 7, "shownAt": 101_250.0}, {"n": 9, "shownAt": 102_000.0}, {"n": 8, "shownAt": 103_000.0}]
    assert latencies(shown, sent) == pytest.approx([1.25, 2.5]), "an unknown number is dropped, not guessed"
    assert percentile([3.0, 1.0, 2.0, 4.0], 0.95) == 4.0
    f = Figures.of([1.0, 2.0, 3.0])
    assert f is not None and (f.median, f.max, f.samples) == (2.0, 3.0, 3)
    assert Figures.of([]) is None


# A process with a thread named like Chromium's media thread, and one that is not: what PlayerClock looks for.
_PLAYER = """
import threading, time
def named(name):
    open(f"/proc/self/task/{threading.get_native_id()}/comm", "w").write(name)
    time.sleep(60)
for name in ("Media", "Compositor"):
    threading.Thread(target=named, args=(name,), daemon=True).start()
time.sleep(60)
"""


def _can_use_real_time() -> bool:
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
    except OSError:
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


def test_the_player_clock_puts_the_media_thread_of_a_child_browser_at_real_time_and_nothing_else() -> None:
    if not _can_use_real_time():
        pytest.skip("no right to real-time scheduling here (CAP_SYS_NICE)")
    child = subprocess.Popen([sys.executable, "-c", _PLAYER])
    try:
        task = Path(f"/proc/{child.pid}/task")
        deadline = time.monotonic() + 20
        names: dict[int, str] = {}
        # Both threads rename themselves after they start: wait for both names, not only the first.
        while time.monotonic() < deadline and not {"Media", "Compositor"} <= set(names.values()):
            names = {int(t.name): (t / "comm").read_text().strip() for t in task.iterdir()}
            time.sleep(0.05)
        assert {"Media", "Compositor"} <= set(names.values()), f"the child never named its threads: {names}"
        comm = Path(f"/proc/{child.pid}/comm").read_text().strip()
        assert PlayerClock(processes={"not-" + comm}).raise_once() == 0, "only the browser's processes"
        clock = PlayerClock(processes={comm})
        assert clock.raise_once() == 1
        assert clock.raise_once() == 0, "once per thread"
        policies = {names[tid]: os.sched_getscheduler(tid) for tid in names}
        assert policies["Media"] == os.SCHED_RR
        assert policies["Compositor"] == os.SCHED_OTHER
        assert policies[comm] == os.SCHED_OTHER
    finally:
        child.kill()
        child.wait()


def test_the_clock_rate_is_media_seconds_per_wall_second() -> None:
    assert clock_rate([(float(t), 10 + 0.87 * t) for t in range(30)]) == pytest.approx(0.87)
    assert clock_rate([(0.0, 5.0), (0.0, 6.0)]) is None
    assert clock_rate([(1.0, 1.0)]) is None
