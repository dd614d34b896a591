"""WebVTT subtitle renditions: one VTT segment per video segment, and its media playlist.

Segments are cut on exactly the video's boundaries, each carrying every cue shown during its window and an
X-TIMESTAMP-MAP to the video's PTS at the segment start (``core/captions.py`` renders them). The
playlist shares the video's target duration, window and PROGRAM-DATE-TIME.

One rendition per caption track: the source-language captions (``Cue.track == ""``, ``subs/<lang>/``) and
one per translation (``Cue.track`` = the target language, ``subs/<target>/``). Which tracks exist is decided
before the stream starts, from the run's caption options and what the running sidecars declare, so the
master playlist can list them from its first version.
"""

from __future__ import annotations

from sidecast.contract.records import ResultKind
from sidecast.hls import timebase
from sidecast.hls.live import atomic_write

from ..captions import CaptionCarrier, render_vtt_segment, write_transcript
from .base import Output, SegmentJob, StreamContext

# Names players show in their caption menus (NAME in the master playlist).
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español", "it": "Italiano",
                  "pt": "Português", "nl": "Nederlands", "ja": "日本語", "zh": "中文", "ar": "العربية"}


def language_name(tag: str, translated: bool = False) -> str:
    name = LANGUAGE_NAMES.get(tag.split("-")[0], "Captions" if tag == "und" else tag)
    return f"{name} (machine translation)" if translated else name


class SubtitleRendition(Output):
    """The captions of one track. ``track`` is the ``Cue.track`` it carries ("" = source language)."""

    needs: frozenset[ResultKind] = frozenset({"cues"})
    essential = False

    def __init__(self, ctx: StreamContext, language: str, track: str = "") -> None:
        self.ctx = ctx
        self.language = language
        self.track = track
        self.name = f"subtitles-{language}"
        self.dir = ctx.outdir / "subs" / language
        self.dir.mkdir(parents=True, exist_ok=True)
        # Remembers what earlier segments carried, and shows a final cue that came after all of its
        # segments were published at the start of the next one (live) instead of losing it.
        self.carrier = CaptionCarrier()
        self.playlist = ctx.playlist(self.dir / "index.m3u8")
        self.full = ctx.playlist(self.dir / "vod.m3u8", 0)

    @property
    def translated(self) -> bool:
        return self.track != ""

    @property
    def display_name(self) -> str:
        return language_name(self.language, self.translated)

    def publish(self, job: SegmentJob) -> None:
        lookback = self.carrier.lookback
        cues = self.ctx.timeline.cues_between(job.start - lookback, job.end, track=self.track)
        name = f"{job.name}.vtt"
        carried = self.carrier.segment_cues(cues, job.start, job.end)
        atomic_write(self.dir / name, render_vtt_segment(carried, job.start, job.end, timebase.media_to_pts(job.start)))
        seg = job.segment(name)
        self.playlist.add(seg)
        self.full.add(seg)

    def finish(self, complete: bool) -> None:
        if not complete:
            return
        self.playlist.end()
        self.full.end()
        cues = self.ctx.timeline.final_cues(self.track)
        stem = "transcript" if not self.translated else f"transcript.{self.language}"
        write_transcript(cues, self.ctx.outdir / f"{stem}.vtt", self.ctx.outdir / f"{stem}.json")


__all__ = ["SubtitleRendition", "language_name", "LANGUAGE_NAMES"]
