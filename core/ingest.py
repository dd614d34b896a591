"""The ingest loop: read the source's events, feed the sidecars, cut segments, hand them to the packager.

Runs on the caller's thread. Segments close at the configured duration, at a forced boundary (an ad break
starts or ends: every segment starts with an IDR, so a stitcher can swap whole segments), when the source
drops (what arrived is published at once) and at a discontinuity.

PROGRAM-DATE-TIME tells the truth for live sources: it is when a frame *arrived*, not when the pipeline got
round to it. Where the transport knows (a publisher pushing RTMP or SRT into sidecast's own servers) each
frame carries the wall clock at which its bytes were received (``VideoEvent.arrived``), so a reader that is
seconds behind — a probing burst, or a saturated machine reading at the source's pace but late — still
measures the true arrival. Elsewhere the time of reading is the bound: a demuxer hands over its probing
buffer (a second or more of frames) in one burst after it opens, then frames at the pace they arrive. Either
way the smallest "arrival − media time" seen so far is the arrival offset, and PDT(t) = that offset + t. The offset is fixed once the reading has
caught up (the offset stops shrinking: over the last ``SETTLED_FRAMES`` frames it moved less than
``SETTLED_S``), or ``PDT_SETTLE_S`` after a segment that needs it closed, whichever comes first; after that,
PDTs advance by exactly the segment durations (a player computes positions from them, so a later
"improvement" would be a jump without a discontinuity). A segment's PDT is therefore taken when the segment
is published (``SegmentJob.program_date_time``), not when it closes: a probing burst can be longer than the
first segment (RTMP's probe holds ~2–4 s), and a segment closed inside it would otherwise carry the burst's
delay for the whole session. It is re-measured after every reconnection. Files keep PDT = the time
the run started + media time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import av

from sidecast.hls import timebase
from sidecast.hls.breaks import Break
from sidecast.hls.scte35 import try_decode_cue

from .breaks import BreakSchedule
from .fanout import FanOut
from .outputs.audio import AudioRendition
from .outputs.base import Output, SegmentJob
from .outputs.snapshots import Snapshots
from .packager import Packager
from .sources import (
    AudioEvent,
    AudioPacketEvent,
    CueEvent,
    Discontinuity,
    Dropped,
    Opened,
    PacketEvent,
    Source,
    SourceChanged,
    VideoEvent,
)

log = logging.getLogger("sidecast.ingest")

# The reading has caught up with a live source when "wall clock − media time" moved less than SETTLED_S over
# the last SETTLED_FRAMES frames; PDT_SETTLE_S after a segment closed its PDT is taken whatever the state.
SETTLED_FRAMES = 15
SETTLED_S = 0.02
PDT_SETTLE_S = 4.0

_NO_PICTURE: av.VideoFrame = av.VideoFrame(2, 2, "yuv420p")  # stands in for a picture no output keeps


class Ingest:
    """Owns the segment being built. The pipeline wires the outputs in ``on_opened``."""

    def __init__(self, source: Source, schedule: BreakSchedule, segment_duration: float,
                 on_opened: Callable[[Opened], None], on_progress: Callable[[], None],
                 on_source_changed: Callable[[SourceChanged], None] | None = None) -> None:
        self.source = source
        self.schedule = schedule
        self.segment_duration = segment_duration
        self.on_opened = on_opened
        self.on_progress = on_progress
        self.on_source_changed = on_source_changed
        # set by the pipeline in on_opened
        self.fanout: FanOut | None = None
        self.packager: Packager | None = None
        self.audio: AudioRendition | None = None
        self.snapshots: Snapshots | None = None
        self.outputs: list[Output] = []   # fed every frame (continuous encoders) and told when segments close
        self.keep_frames = True           # whether some output needs a segment's pictures after it closes
        # state
        self.fps = Fraction(30)
        self.frames_in = 0
        self.media_time = 0.0
        self.discontinuities = 0
        self.cue_count = 0
        self._frames: list[av.VideoFrame] = []
        self._times: list[float] = []
        self._index = 0
        self._discontinuity_pending = False
        self._pdt_anchor = (datetime.now(UTC), 0.0)
        self.measure_arrival = source.live or source.pace  # PDT from when frames arrived (see the docstring)
        self._arrival: float | None = None
        self._arrival_fixed = False  # set once the reading has caught up, or at a deadline (see the docstring)
        self._recent: deque[float] = deque(maxlen=SETTLED_FRAMES)
        self._settled = threading.Event()

    def _arrived(self, t: float, at: float | None = None) -> None:
        """A live frame at media time ``t`` arrived at wall clock ``at`` (None: it is being read now, the
        best bound there is): tighten the arrival offset."""
        if self._arrival_fixed:
            return
        offset = (time.time() if at is None else at) - t
        if self._arrival is None or offset < self._arrival:
            self._arrival = offset
        self._recent.append(offset)
        if len(self._recent) == SETTLED_FRAMES and self._recent[0] - offset < SETTLED_S:
            self._arrival_fixed = True  # caught up: frames are read at the pace they arrive
            self._settled.set()

    def _pdt_resolver(self, start: float) -> Callable[[], datetime]:
        """The PDT of a segment starting at ``start``, taken when it is published (see the docstring)."""
        if not self.measure_arrival:
            at = self.pdt_at(start)
            return lambda: at
        settled, deadline = self._settled, time.monotonic() + PDT_SETTLE_S

        def resolve() -> datetime:
            if not self._arrival_fixed and self._settled is settled:
                settled.wait(max(0.0, deadline - time.monotonic()))
                self._arrival_fixed = True  # what was measured by the deadline is the session's offset
            return self.pdt_at(start)

        return resolve

    def pdt_at(self, t: float) -> datetime:
        if self._arrival is not None:
            return datetime.fromtimestamp(self._arrival + t, UTC)
        anchor, at = self._pdt_anchor
        return anchor + timedelta(seconds=t - at)

    # ------------------------------------------------------------ segments

    def close_segment(self, end: float, final: bool = False) -> None:
        if not self._frames:
            if final and self.fanout is not None:
                self.fanout.end()
            return
        start = self._times[0]
        pdt = self.pdt_at(start)  # for the break signal; the published PDT is resolved at publication
        self.schedule.announce(end, self.pdt_at)
        job = SegmentJob(index=self._index, start=start, end=end, frames=self._frames, times=self._times,
                         discontinuity=self._discontinuity_pending, pdt=pdt, closed_at=time.monotonic(),
                         final=final, signal=self.schedule.signal_for(start, pdt),
                         resolve_pdt=self._pdt_resolver(start))
        for output in self.outputs:
            output.segment_closed(job)
        if self.fanout is not None:
            self.fanout.segment(self._index, start, end)
            if final:
                # Everything has been sent: sidecars flush now. Waiting for the last segment's turn
                # would deadlock when earlier segments wait for results that only the flush brings
                # (a caption still open at the end of the file), broken only by the stall timeout.
                self.fanout.end()
        self._frames, self._times = [], []
        self._index += 1
        self._discontinuity_pending = False
        assert self.packager is not None  # set when the source opened, before any frame
        self.packager.put(job)

    def _open_segment(self, start: float) -> None:
        """Tell the outputs a segment opens at ``start``: what they can know of it before it closes."""
        signal = self.schedule.signal_for(start, self.pdt_at(start))
        for output in self.outputs:
            output.segment_opened(self._index, start, self._discontinuity_pending, signal)

    # ------------------------------------------------------------ the loop

    def run(self, should_stop: Callable[[], BaseException | None]) -> None:
        frame_dur = 1 / 30
        last_progress = 0.0
        for ev in self.source.events():
            err = should_stop()
            if err is not None:
                raise err
            if isinstance(ev, PacketEvent):  # passthrough: segments are cut on the source's keyframes
                t = ev.t
                forced = ev.keyframe and self.schedule.cut_due(t, frame_dur / 2)
                if self._times and ev.keyframe and (forced or t >= self._times[0] + self.segment_duration - frame_dur / 2):
                    self.close_segment(t)
                if not self._times and not ev.keyframe:
                    continue  # a segment starts with a keyframe: what comes before the first one is unplayable
                if not self._times:
                    self._open_segment(t)
                self._frames.append(_NO_PICTURE)
                self._times.append(t)
                self.frames_in += 1
                if self.measure_arrival:
                    self._arrived(t, ev.arrived)
                self.media_time = max(self.media_time, t + ev.duration)
                for output in self.outputs:
                    output.packet(ev.packet, t, ev.dts, self._index)
                if self.audio is not None:
                    self.audio.advance(self.media_time)
                now = time.monotonic()
                if now - last_progress >= 1.0:
                    last_progress = now
                    self.on_progress()
            elif isinstance(ev, VideoEvent) and self.source.passthrough:
                # decoded only for the sidecars and snapshots; the segments are the copied packets
                if self.fanout is not None:
                    self.fanout.video(ev.frame, ev.t, self._index)
                if self.snapshots is not None:
                    self.snapshots.frame(ev.frame, ev.t, self.pdt_at(ev.t))
            elif isinstance(ev, VideoEvent):
                t = ev.t
                forced = self.schedule.cut_due(t, frame_dur / 2)  # an ad break starts or ends here
                if self._frames and (forced or t >= self._times[0] + self.segment_duration - frame_dur / 2):
                    self.close_segment(t)
                if not self._frames:
                    self._open_segment(t)
                # The pictures are kept only for outputs that encode after the decision window; the others
                # take each frame now, so memory does not grow with the segment's length.
                self._frames.append(ev.frame if self.keep_frames else _NO_PICTURE)
                self._times.append(t)
                if self.measure_arrival:
                    self._arrived(t, ev.arrived)
                for output in self.outputs:
                    output.frame(ev.frame, t, self._index)
                self.frames_in += 1
                self.media_time = t + frame_dur
                if self.fanout is not None:
                    self.fanout.video(ev.frame, t, self._index)
                if self.snapshots is not None:
                    self.snapshots.frame(ev.frame, t, self.pdt_at(t))
                if self.audio is not None:
                    self.audio.advance(self.media_time)
                now = time.monotonic()
                if now - last_progress >= 1.0:
                    last_progress = now
                    self.on_progress()
            elif isinstance(ev, AudioPacketEvent):
                if self.audio is not None:
                    self.audio.push_packet(ev.packet, ev.t, ev.duration)
            elif isinstance(ev, AudioEvent):
                if self.audio is not None:
                    self.audio.push(ev.frame, ev.t)
                if self.fanout is not None:
                    self.fanout.audio(ev.frame, ev.t)
            elif isinstance(ev, CueEvent):
                self.on_cue(ev)
            elif isinstance(ev, Dropped):
                # Publish what arrived before the drop right away, with exactly the audio that goes with it.
                if self.audio is not None:
                    self.audio.end_period(self.media_time)
                self.close_segment(self.media_time)
            elif isinstance(ev, Discontinuity):
                self.close_segment(self.media_time)
                self.discontinuities += 1
                self._discontinuity_pending = True
                if ev.wall_clock:  # the source was away: its new period starts now on the wall clock
                    self._pdt_anchor = (datetime.now(UTC), ev.t)
                    self._arrival = None
                    self._arrival_fixed = False
                    self._recent.clear()
                    self._settled.set()  # segments of the old session waiting on it go with what they have
                    self._settled = threading.Event()
                    if self.audio is not None:
                        self.audio.start_period(ev.t)
                else:  # its timestamps jumped forward: the programme skipped that much time
                    # (a live source's PDT stays the arrival time: nothing arrived later than it did)
                    self._pdt_anchor = (self.pdt_at(ev.t) + timedelta(seconds=ev.gap), ev.t)
                if self.fanout is not None:
                    self.fanout.discontinuity(ev.t)
            elif isinstance(ev, SourceChanged):
                self.close_segment(ev.t)  # one picture size per segment
                if self.on_source_changed is not None:
                    self.on_source_changed(ev)
            elif isinstance(ev, Opened):
                self.fps = ev.fps
                frame_dur = float(1 / ev.fps)
                self.on_opened(ev)
                self._pdt_anchor = (datetime.now(UTC), 0.0)
        if self.audio is not None:
            self.audio.end_period(self.media_time)
        self.close_segment(self.media_time, final=True)

    # ------------------------------------------------------------ ad breaks

    def on_cue(self, ev: CueEvent) -> None:
        """SCTE-35 from the source: schedule the break (a forced boundary) or close the open one."""
        splice = try_decode_cue(ev.data, "in the source")
        if splice is None:
            return
        now = self.media_time
        t = ev.t if splice.pts_time is None else timebase.unwrap_seconds(splice.pts_time + ev.offset, ev.t)
        if t < now:
            log.warning("SCTE-35 cue arrived after its splice time; the break starts at the next frame",
                        extra={"splice_t": round(t, 3), "now": round(now, 3)})
            t = now
        if splice.kind == "out":
            self.cue_count += 1
            brk_id = f"scte35-{splice.event_id}" if splice.event_id is not None else f"scte35-{self.cue_count}"
            self.schedule.add(Break(id=brk_id, start=t, duration=splice.duration, source="scte35",
                                    scte35=splice.raw))
        else:
            self.schedule.end_open_break(t)


__all__ = ["Ingest"]
