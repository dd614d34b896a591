"""The WebVTT subtitle rendition: one VTT segment per video segment, and its media playlist.

Segments are cut on exactly the video's boundaries, each carrying every cue shown during its window and an
X-TIMESTAMP-MAP to the video's PTS at the segment start (``core/captions.py`` renders them). The
playlist shares the video's target duration, window and PROGRAM-DATE-TIME.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from sidecast.contract.records import Cue
from sidecast.hls import Segment
from sidecast.hls.breaks import BreakSignal
from sidecast.hls.live import LivePlaylist, atomic_write


class SubtitleTrack:
    def __init__(self, directory: Path, segment_duration: float, window: int, language: str = "en",
                 track: str = "") -> None:
        self.dir = directory
        self.track = track  # which Cue.track this rendition carries ("" = the main captions)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.language = language
        from .captions import CaptionCarrier

        # Remembers what earlier segments carried, and shows a final cue that came after all of its
        # segments were published at the start of the next one (live) instead of losing it.
        self.carrier = CaptionCarrier()
        self.playlist = LivePlaylist(directory / "index.m3u8", segment_duration, window)
        self.full = LivePlaylist(directory / "vod.m3u8", segment_duration, 0)

    def add_segment(self, index: int, start: float, end: float, video_pts90k: int, pdt: datetime,
                    cues: Sequence[Cue], discontinuity: bool = False, signal: BreakSignal | None = None) -> None:
        """Write segment ``index``; ``cues`` are the final cues ending after ``start - carrier.lookback``."""
        from .captions import render_vtt_segment

        name = f"seg_{index:06d}.vtt"
        carried = self.carrier.segment_cues(cues, start, end)
        atomic_write(self.dir / name, render_vtt_segment(carried, start, end, video_pts90k))
        seg = Segment(uri=name, duration=round(max(end - start, 1e-3), 5), program_date_time=pdt,
                      discontinuity=discontinuity, tags=signal.tags if signal else (),
                      dateranges=signal.dateranges if signal else ())
        self.playlist.add(seg)
        self.full.add(seg)

    def finish(self) -> None:
        self.playlist.end()
        self.full.end()

    def write_transcript(self, cues: Sequence[Cue], outdir: Path) -> None:
        from .captions import write_transcript

        write_transcript([c for c in cues if c.final], outdir / "transcript.vtt", outdir / "transcript.json")
