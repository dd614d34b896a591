"""The packager: every output on its own worker, each held only for the sidecars whose results it uses,
and a failing non-essential output switched off while the stream goes on."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from sidecast.contract.records import Description, ResultKind, VideoWants
from sidecast.core.links import SidecarLink
from sidecast.core.outputs.base import Output, SegmentJob
from sidecast.core.packager import Packager
from sidecast.core.timeline import Timeline


class Recorder(Output):
    """Records when each segment was published."""

    def __init__(self, name: str, needs: frozenset[ResultKind] = frozenset(), essential: bool = True,
                 fail_at: int | None = None) -> None:
        self.name, self.needs, self.essential, self.fail_at = name, needs, essential, fail_at
        self.published: dict[int, float] = {}
        self.finished = threading.Event()

    def publish(self, job: SegmentJob) -> None:
        if job.index == self.fail_at:
            raise RuntimeError(f"{self.name} broke on segment {job.index}")
        self.published[job.index] = time.monotonic()


def job(i: int, final: bool = False) -> SegmentJob:
    return SegmentJob(index=i, start=2.0 * i, end=2.0 * (i + 1), frames=[], times=[], discontinuity=False,
                      pdt=datetime.now(UTC), closed_at=time.monotonic(), final=final)


def described_link(name: str, timeline: Timeline, produces: tuple[ResultKind, ...]) -> SidecarLink:
    """A link whose sidecar described itself and is live, but sends no watermark (a slow model)."""
    link = SidecarLink(name, "unix:///nonexistent.sock", timeline)
    link.description = Description(name=name, video=VideoWants(), produces=produces)
    timeline.set_live(name, True)
    return link


def test_each_output_waits_only_for_the_sidecars_that_produce_what_it_needs() -> None:
    tl = Timeline()
    links = [described_link("captioner", tl, ("cues",))]
    video = Recorder("video-main", frozenset({"bitrate_hints"}))
    subs = Recorder("subtitles-en", frozenset({"cues"}), essential=False)
    p = Packager([video, subs], tl, links, window_s=0.4, vod=False, drain_timeout=0.5)
    j = job(0)
    p.put(j)
    p.close()
    assert video.published[0] - j.closed_at < 0.2, "no hint producer: the video is not held"
    assert subs.published[0] - j.closed_at >= 0.39, "captions wait for the captioner up to the window"
    assert p.segments_done == 1 and p.error is None


def test_a_non_essential_output_that_fails_is_switched_off_and_the_stream_goes_on() -> None:
    tl = Timeline()
    video = Recorder("video-main")
    vertical = Recorder("video-vertical", essential=False, fail_at=1)
    done: list[int] = []
    p = Packager([video, vertical], tl, [], window_s=0.0, vod=True, drain_timeout=0.1,
                 on_segment=lambda j: done.append(j.index))
    for i in range(4):
        p.put(job(i, final=i == 3))
    p.close()
    assert sorted(video.published) == [0, 1, 2, 3]
    assert sorted(vertical.published) == [0], "switched off at its first failure"
    assert done == [0, 1, 2, 3] and p.error is None


def test_an_essential_output_that_fails_ends_the_stream() -> None:
    p = Packager([Recorder("video-main", fail_at=0)], Timeline(), [], window_s=0.0, vod=True, drain_timeout=0.1)
    p.put(job(0))
    with pytest.raises(RuntimeError, match="broke on segment 0"):
        for i in range(1, 20):  # the ingest learns of it at its next hand-over
            p.put(job(i))
    p.close()
    assert isinstance(p.error, RuntimeError)
