"""The media clock of one source connection: the source's own timestamps, mapped to media time.

Audio and video both follow their source timestamps; neither is re-timed from a counter. What a source
gets wrong is resolved here, the same way for both:

- **gaps** (a freeze in variable-frame-rate video, an audio drop-out, a corrupt packet skipped) are
  *filled*: the video clock reports the missing frame times, which the source fills with the previous
  picture; audio gaps are filled with silence by the audio encoder, which sees the timestamps;
- **jitter and small overlaps** keep the clock monotonic (video) or are trimmed (audio);
- **jumps** (a timestamp reset, a jump beyond ``max_fill`` either way) re-base the stream so media time
  continues without a hole. Video is the master: it continues exactly one frame after its last frame,
  and audio whose timestamps jump by the same amount (before or after the video's) is put on the same
  mapping, so audio and video stay together. A forward jump is reported, so the pipeline can signal a
  discontinuity instead of squeezing out real time.

Media time 0 is the first video frame of the stream; audio before it is trimmed, audio that starts after
it is preceded by silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_FILL_S = 10.0        # longest gap filled with repeated frames / silence; beyond it, a jump
BACKWARD_TOLERANCE_S = 0.5  # video going back less than this is jitter (kept monotonic), more is a jump
MATCH_S = 0.5            # two streams' jumps within this are the same jump


@dataclass
class VideoStep:
    """Where one decoded video frame goes: its media time, the repeated-frame times before it, and
    whether the source clock jumped (``jump_s`` > 0: that much real time was skipped forward)."""

    t: float
    fill: list[float] = field(default_factory=list)
    jumped: bool = False
    jump_s: float = 0.0


class SourceClock:
    def __init__(self, base: float, frame_dur: float, max_fill: float = MAX_FILL_S) -> None:
        self.base = base                 # media time of this connection's first video frame
        self.frame_dur = frame_dur
        self.max_fill = max_fill
        self.video_offset: float | None = None  # media = source + offset
        self.audio_offset: float | None = None
        self.last_video: float | None = None
        self.audio_next: float | None = None    # media time the next audio sample is expected at
        self.jumps = 0
        self.filled_frames = 0
        # the latest jump: (new offset, the raw media time under the old offset at which it happened)
        self._jump: tuple[str, float, float] | None = None

    @property
    def started(self) -> bool:
        return self.video_offset is not None

    def video(self, source_t: float, fill: bool = True) -> VideoStep:
        if self.video_offset is None:
            self.video_offset = self.base - source_t
            if self.audio_offset is None:
                self.audio_offset = self.video_offset
            self.last_video = self.base
            return VideoStep(self.base)
        assert self.last_video is not None
        raw = source_t + self.video_offset
        expected = self.last_video + self.frame_dur
        d = raw - expected
        if -BACKWARD_TOLERANCE_S <= d <= self.frame_dur * 0.5 + 1e-6:
            t = raw if raw > self.last_video + 1e-6 else expected  # never backwards
            self.last_video = t
            return VideoStep(t)
        if 0 < d <= self.max_fill:
            times = []
            f = expected
            while fill and f < raw - self.frame_dur * 0.5:  # copied packets cannot be repeated: a gap stays a gap
                times.append(f)
                f += self.frame_dur
            self.filled_frames += len(times)
            self.last_video = raw
            return VideoStep(raw, times)
        # A jump: video (the master clock) continues exactly where it was expected; audio that already
        # jumped by about the same amount is snapped onto the same mapping, so the two stay together.
        new_offset = expected - source_t
        if self._jump is not None and self._jump[0] == "audio" and abs(self._jump[1] - new_offset) <= MATCH_S:
            self.audio_offset = new_offset
        self._jump = ("video", new_offset, raw)
        self.video_offset = new_offset
        self.jumps += 1
        t = source_t + new_offset
        self.last_video = t
        return VideoStep(t, jumped=True, jump_s=max(0.0, d))

    def audio(self, source_t: float, duration: float) -> float | None:
        """Media time of an audio frame's first sample; None until the first video frame fixed the origin."""
        if self.audio_offset is None:
            return None
        t = source_t + self.audio_offset
        if self.audio_next is not None:
            d = t - self.audio_next
            if d > self.max_fill or d < -BACKWARD_TOLERANCE_S:
                new_offset = self._matching("video", source_t, self.audio_next) or (self.audio_next - source_t)
                self._jump = ("audio", new_offset, t)
                self.audio_offset = new_offset
                t = source_t + new_offset
        self.audio_next = max(self.audio_next or t, t + duration)
        return t

    def _matching(self, other: str, source_t: float, expected: float) -> float | None:
        """The other stream's latest jump offset, when it puts this frame where this stream expects it."""
        if self._jump is None or self._jump[0] != other:
            return None
        offset = self._jump[1]
        return offset if abs(source_t + offset - expected) <= MATCH_S else None


__all__ = ["SourceClock", "VideoStep", "MAX_FILL_S"]
