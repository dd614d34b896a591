"""The vertical ladder encodes each frame as soon as its crop is final, not when the segment's decision
window closes (issue 20: the vertical must be published at most one segment after the main ladder).

Real parts: the core's ``VideoLadder`` with real x264 encoder threads, the real ``Timeline`` and
``CropPath``; crops and watermarks are fed the way the autocrop sidecar's link feeds them. Progress is
observed through events (frames handed to the encoders, the segment file renamed into place), never
through sleeps. The picture is checked too: the source is a horizontal ramp, so the brightness of a
vertical frame's left edge says where its window was.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from sidecast.contract.records import Crop
from sidecast.core.croppath import CropPath
from sidecast.core.ladder import Rung
from sidecast.core.outputs.base import JsonLines, SegmentJob, StreamContext
from sidecast.core.outputs.video import VideoLadder
from sidecast.core.timeline import Timeline
from sidecast.hls import parse_media
from tests.conftest import wait_for

W, H, FPS = 640, 360, 25
CROP_W = 202  # 9:16 of a 360-line source
RAMP = np.tile((np.arange(W) * 255 // (W - 1)).astype(np.uint8), (H, 1))


def ramp_frame() -> av.VideoFrame:
    """A decoded-looking yuv420p frame whose brightness grows left to right (column x: x * 255 / 639)."""
    bgr = np.repeat(RAMP[:, :, None], 3, axis=2)
    return av.VideoFrame.from_ndarray(bgr, format="bgr24").reformat(format="yuv420p")


class Vertical:
    """A vertical ladder (one rendition at the crop size) following crops from a sidecar named autocrop."""

    def __init__(self, tmp: Path, part_target: float | None = None) -> None:
        self.timeline = Timeline()
        self.timeline.set_live("autocrop", True)
        self.pool = ThreadPoolExecutor(max_workers=2)
        ctx = StreamContext(outdir=tmp, width=W, height=H, fps=Fraction(FPS), has_audio=False,
                            segment_duration=1.0, window=0 if part_target is None else 6, timeline=self.timeline,
                            log=JsonLines(tmp / "segments.jsonl"), part_target=part_target)
        self.path = CropPath(W, H)
        assert self.path.width == CROP_W
        self.timeline.listeners.append(lambda _name, r: self.path.add(r) if isinstance(r, Crop) else None)
        self.ladder = VideoLadder(ctx, [Rung("v360p", H, 800_000, 23.0, width=CROP_W)], self.pool,
                                  kind="vertical", crop_path=self.path)
        self.ladder.stream(producers=lambda: ["autocrop"])
        assert self.ladder.gate is not None and not self.ladder.buffers_frames
        self.gate = self.ladder.gate
        self.dir = tmp / "vertical" / "v360p"
        self.frame = ramp_frame()

    def feed(self, segment: int, n: int = FPS) -> SegmentJob:
        times = [segment + i / FPS for i in range(n)]
        for t in times:
            self.ladder.frame(self.frame, t, segment)
        return SegmentJob(index=segment, start=times[0], end=segment + n / FPS, frames=[], times=times,
                          discontinuity=False, pdt=datetime.now(UTC), closed_at=time.monotonic())

    def crops(self, xs: dict[float, int]) -> None:
        """Crops at these times (sidecar order), then the watermark at the last one."""
        for t, x in sorted(xs.items()):
            self.timeline.add("autocrop", Crop(t=t, x=x, y=0, width=CROP_W, height=H, mode="panning",
                                               confidence=0.9, cut=False))
        self.timeline.watermark("autocrop", max(xs))

    def close(self) -> None:
        self.ladder.finish(True)
        self.pool.shutdown()


@pytest.fixture
def vertical(tmp_path: Path):  # type: ignore[no-untyped-def]
    v = Vertical(tmp_path)
    yield v
    v.close()


def left_edges(path: Path) -> list[tuple[float, bool, float]]:
    """(media time, keyframe, estimated window x) per decoded frame: the left edge's brightness on the ramp."""
    out = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            grey = f.to_ndarray(format="gray")
            out.append((float(f.time or 0.0), bool(f.key_frame), float(grey[:, :3].mean()) * (W - 1) / 255))
    return out


def test_frames_are_encoded_as_their_crops_land_and_the_segment_is_ready_before_the_window(vertical: Vertical
                                                                                          ) -> None:
    job = vertical.feed(0)
    # No crop yet: every frame waits (nothing can pass the gate before a watermark covers it).
    assert vertical.gate.pending() == FPS and vertical.gate.encoded_final == 0
    xs = {0.0: 40, 0.2: 120, 0.4: 200, 0.6: 280}
    vertical.crops(xs)
    # The frames up to the watermark (t <= 0.6: 16 of 25) go to the encoder now; the rest keep waiting.
    wait_for(lambda: vertical.gate.encoded_final == 16, 20, "the frames whose crops landed to be encoded")
    assert vertical.gate.pending() == FPS - 16
    more = {0.8: 360, 1.0: 400}
    vertical.crops(more)
    wait_for(lambda: vertical.gate.encoded_final == FPS, 20, "the rest of the segment to be encoded")
    vertical.ladder.segment_closed(job)
    # The segment is finished without publish() being called: the packager's decision window is not
    # needed when the crops are there, only the encoder's flush of the last frames.
    wait_for(lambda: (vertical.dir / "seg_000000.ts").exists(), 30, "the segment file")
    assert vertical.gate.encoded_released == 0
    vertical.ladder.publish(job)
    listed = parse_media((vertical.dir / "index.m3u8").read_text())
    assert [s.uri for s in listed.segments] == ["seg_000000.ts"]
    # The picture followed the path: each frame's window is the crop path's window at its time.
    frames = left_edges(vertical.dir / "seg_000000.ts")
    assert len(frames) == FPS and frames[0][1], "a whole closed-GOP segment starting with a keyframe"
    for i, (_t, _key, x) in enumerate(frames):
        expected = vertical.path.window_at(i / FPS)[0]
        assert abs(x - expected) <= 8, (i, x, expected)
    assert abs(frames[-1][2] - 384) <= 8  # 0.96 s: between 360 (0.8 s) and 400 (1.0 s)


def test_the_decision_window_releases_frames_whose_crops_never_came(vertical: Vertical) -> None:
    job = vertical.feed(0)
    vertical.crops({0.0: 100, 0.2: 200, 0.4: 300})
    wait_for(lambda: vertical.gate.encoded_final == 11, 20, "the frames up to 0.4 s")
    vertical.ladder.segment_closed(job)
    assert vertical.gate.pending() == FPS - 11
    vertical.ladder.publish(job)  # what the packager does when the decision window closes
    assert vertical.gate.encoded_released == FPS - 11 and vertical.gate.pending() == 0
    frames = left_edges(vertical.dir / "seg_000000.ts")
    assert len(frames) == FPS
    assert all(abs(x - 300) <= 8 for _t, _k, x in frames[11:]), "held at the last crop there was"
    # The next segment starts with a fresh IDR and follows crops again as they land.
    job1 = vertical.feed(1)
    vertical.crops({1.0: 50, 1.2: 60, 1.4: 70, 1.6: 80, 1.8: 90, 2.0: 100})
    wait_for(lambda: vertical.gate.encoded_final == 11 + FPS, 20, "segment 1 encoded on its crops")
    vertical.ladder.segment_closed(job1)
    vertical.ladder.publish(job1)
    frames1 = left_edges(vertical.dir / "seg_000001.ts")
    assert frames1[0][1] and abs(frames1[0][2] - 50) <= 8


def test_a_sidecar_that_goes_down_is_not_waited_for(vertical: Vertical) -> None:
    job = vertical.feed(0)
    assert vertical.gate.pending() == FPS
    vertical.timeline.set_live("autocrop", False)  # the link reports the sidecar stalled or gone
    wait_for(lambda: vertical.gate.pending() == 0, 20, "the frames to go to the encoder")
    vertical.ladder.segment_closed(job)
    vertical.ladder.publish(job)
    frames = left_edges(vertical.dir / "seg_000000.ts")
    assert len(frames) == FPS
    assert all(abs(x - (W - CROP_W) / 2) <= 8 for _t, _k, x in frames), "centred without crops"


def test_at_low_latency_the_vertical_publishes_cropped_parts_as_their_crops_land(tmp_path: Path) -> None:
    # --latency low: the vertical is CMAF parts too (issue 21: every rendition is low latency). A part is
    # listed as soon as its frames' crops are final, before the segment closes, and shows its crop window.
    v = Vertical(tmp_path, part_target=0.2)  # 5 frames a part
    try:
        job = v.feed(0)
        assert not list(v.dir.glob("*.m4s")), "no part before any crop is final"
        v.crops({0.0: 40, 0.2: 120, 0.4: 200, 0.6: 280})  # frames up to 0.6 s may go (16 of 25)
        # 3 whole parts (frames 0-14) once the encoder has the frame after each part's last
        wait_for(lambda: len(list(v.dir.glob("seg_000000-*.m4s"))) >= 3, 30, "the parts whose crops landed")
        listed = parse_media((v.dir / "index.m3u8").read_text())
        assert [p.uri for p in listed.trailing_parts][:3] == [f"seg_000000-{k}.m4s" for k in range(3)]
        assert not listed.segments, "the segment itself is listed when it is complete"
        v.crops({0.8: 360, 1.0: 400})
        v.ladder.segment_closed(job)
        v.ladder.publish(job)
        listed = parse_media((v.dir / "index.m3u8").read_text())
        assert [s.uri for s in listed.segments] == ["seg_000000.m4s"]
        init = listed.segments[0].init_section
        assert (v.dir / "init.mp4").exists() and init is not None and init.uri == "init.mp4"
        assert [p.uri for p in listed.segments[0].parts] == [f"seg_000000-{k}.m4s" for k in range(5)]
        # The picture of the parts followed the crop path, as the MPEG-TS vertical does.
        whole = v.dir / "whole.mp4"
        whole.write_bytes((v.dir / "init.mp4").read_bytes() + (v.dir / "seg_000000.m4s").read_bytes())
        frames = left_edges(whole)
        assert len(frames) == FPS and frames[0][1]
        for i, (_t, _key, x) in enumerate(frames):
            assert abs(x - v.path.window_at(i / FPS)[0]) <= 8, (i, x)
    finally:
        v.close()
