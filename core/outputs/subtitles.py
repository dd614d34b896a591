"""WebVTT subtitle renditions: one VTT segment per video segment, and its media playlist.

Segments are cut on exactly the video's boundaries, each carrying every cue shown during its window and an
X-TIMESTAMP-MAP to the video's PTS at the segment start (``core/captions.py`` renders them). The
playlist shares the video's target duration, window and PROGRAM-DATE-TIME.

One rendition per caption track: the source-language captions (``Cue.track == ""``, ``subs/<lang>/``) and
one per translation (``Cue.track`` = the target language, ``subs/<target>/``). Which tracks exist is decided
before the stream starts, from the run's caption options and what the running sidecars declare, so the
master playlist can list them from its first version.

Low latency (``--latency low``): the rendition also lists WebVTT parts on a PART-TARGET grid from each
segment's start. A part is written once the media has passed its end and the caption sidecars' watermark
covers all of it (``--caption-part-cut covered``, the default) or has passed its start (``decided``), or the
decision window after that has run out; a cue decided after its part was published is carried by the next
part with its original timing (never lost, never shown early).

How they are listed (``--caption-segments``). ``part`` (the default): every WebVTT part is also a segment of
its own in the low-latency playlist (EXTINF = the part's DURATION, one EXT-X-PART each), numbered by the
rendition's own media sequence, so hls.js never loads a *part* of a growing subtitle segment. hls.js 1.7.4's
subtitle loader loses caption parts there as playback starts (docs/latency.md, seventeenth and eighteenth
sessions): a segment it takes for complete while its parts still grow leaves a part requested twice and then by
nobody, and a segment whose part load the first seek cancels stays "appending" and the rest of its parts are
never requested. A one-part segment is complete the moment its part is processed, and a cancelled load leaves
nothing half loaded. Such a segment is listed as soon as its part is written if its PDT is known: the nearest
segment of the stream at or before it whose PDT was published, with no discontinuity since (the ingest says
at ``segment_opened``), plus the media time between them; otherwise it waits for its own segment's PDT
(the first segment, and the first after a discontinuity). TARGETDURATION stays the stream's (hls.js times a
blocking reload out at 0.8 of it), and the live window spans the same time as the video's. ``segment`` (the
layout before): one WebVTT segment per video segment, its parts listed as that segment grows. Either way the
full list (``vod.m3u8``) and the whole-segment ``.vtt`` files are one per video segment.

Why "passed its start" is enough: every cue starting before the watermark is final, so the part carries all
it can; a cue still being decided starts after the watermark and is carried, when final, by the next parts
it overlaps (or, ending inside this part, by the next part), written at the moment this one would have been.
Waiting for the watermark to cover the whole part held a cue's *last* part until the captioner committed
the words after the cue (one more recogniser pass, ~0.8 s, or the next cue's end), and hls.js loads no
subtitle part that lies behind its playhead, nor anything while the subtitle playlist ends behind it: a cue
that became final with the playhead inside its last part never reached the player (docs/latency.md,
thirteenth session).
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from datetime import datetime, timedelta
from typing import NamedTuple

from sidecast.contract.records import Cue, ResultKind
from sidecast.hls import Part, Segment, timebase
from sidecast.hls.breaks import BreakSignal
from sidecast.hls.live import atomic_write
from sidecast.hls.model import PART_DURATION_DIGITS

from ..captions import CaptionCarrier, render_vtt_part, render_vtt_segment, write_transcript
from .base import Output, SegmentJob, StreamContext
from .parts import part_name

_UNITS = 10 ** PART_DURATION_DIGITS  # a part's DURATION as the playlist writes it, in counts of 10 us

# Names players show in their caption menus (NAME in the master playlist).
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español", "it": "Italiano",
                  "pt": "Português", "nl": "Nederlands", "ja": "日本語", "zh": "中文", "ar": "العربية"}


class _Cut(NamedTuple):
    """A WebVTT part written but not yet listed as a segment of its own (its PDT is not known yet)."""

    segment: int       # the stream's segment it belongs to
    part: int          # its index in that segment
    start: float
    units: int         # its DURATION in units of 10 us
    name: str
    last: bool         # the last part of its segment (the next one is the next segment's first)


def language_name(tag: str, translated: bool = False) -> str:
    name = LANGUAGE_NAMES.get(tag.split("-")[0], "Captions" if tag == "und" else tag)
    return f"{name} (machine translation)" if translated else name


class SubtitleRendition(Output):
    """The captions of one track. ``track`` is the ``Cue.track`` it carries ("" = source language)."""

    needs: frozenset[ResultKind] = frozenset({"cues"})
    essential = False

    def __init__(self, ctx: StreamContext, language: str, track: str = "", part_segments: bool = True) -> None:
        """``part_segments`` (low latency, ``--caption-segments part``): list every WebVTT part as a segment of
        its own (see the module's docstring); False: the video's segments, their parts listed as they grow."""
        self.ctx = ctx
        self.language = language
        self.track = track
        self.name = f"subtitles-{language}"
        self.dir = ctx.outdir / "subs" / language
        self.dir.mkdir(parents=True, exist_ok=True)
        # Remembers what earlier segments carried, and shows a final cue that came after all of its
        # segments were published at the start of the next one (live) instead of losing it.
        self.carrier = CaptionCarrier()
        self.low_latency = ctx.part_target is not None
        self.part_segments = self.low_latency and part_segments
        per = 1
        if self.part_segments:
            assert ctx.part_target is not None
            per = max(1, math.ceil(ctx.segment_duration / ctx.part_target - 1e-6))  # parts per segment
        self.playlist = ctx.playlist(self.dir / "index.m3u8", parts=self.low_latency, per_segment=per)
        # part_segments: parts written and not yet listed, and what is known of the stream's segments
        self._unlisted: list[_Cut] = []
        self._opened: dict[int, tuple[bool, BreakSignal]] = {}  # discontinuity, signal (segment_opened)
        self._jobs: dict[int, SegmentJob] = {}
        self.full = ctx.playlist(self.dir / "vod.m3u8", 0)
        # low latency: the part grid, what the caption sidecars are, and which cues parts carried
        self.producers: list[str] = []
        self.window_s = 0.0
        self.cut_decided = False  # --caption-part-cut decided (opt-in): a part waits only for the watermark to pass its start
        self._seg, self._part, self._start = 0, 0, 0.0
        self._ends: dict[int, float] = {}
        self._due_since: dict[tuple[int, int], float] = {}
        self._sent: set[str] = set()
        # per segment, the sum of its listed parts' DURATIONs in units of 10 us (what the playlist says)
        self._listed: dict[int, int] = {}
        # Parts are cut from the ingest thread (frame) and from the packager's (publish): one at a time, and
        # a segment is listed before the next segment's parts (bench/latency.py crashed here with stt on).
        self._lock = threading.RLock()

    @property
    def translated(self) -> bool:
        return self.track != ""

    @property
    def display_name(self) -> str:
        return language_name(self.language, self.translated)

    # ------------------------------------------------------------ low latency

    def frame(self, frame: object, t: float, segment: int) -> None:
        if self.low_latency:
            with self._lock:
                self._cut_parts(t, force_until=None)
                self._list_parts()

    def segment_opened(self, index: int, start: float, discontinuity: bool, signal: BreakSignal) -> None:
        if self.part_segments:
            with self._lock:
                self._opened[index] = (discontinuity, signal)

    def segment_closed(self, job: SegmentJob) -> None:
        if self.low_latency:
            with self._lock:
                self._ends[job.index] = job.end
                if job.index == self._seg and self._part == 0:
                    self._start = job.start
                if self.part_segments:
                    self._jobs[job.index] = job

    def _covered(self, t: float) -> bool:
        return all(self.ctx.timeline.watermark_of(n) >= t - 1e-6 for n in self.producers
                   if n in self.ctx.timeline.live_sidecars())

    def _decided(self, start: float, end: float) -> bool:
        """May the part [start, end) be written: the captioners decided all of it, or (``cut_decided``) some
        of it: every watermark is past its start (see the module's docstring)."""
        if self._covered(end):
            return True
        return self.cut_decided and all(self.ctx.timeline.watermark_of(n) > start + 1e-6 for n in self.producers
                                        if n in self.ctx.timeline.live_sidecars())

    def _cut_parts(self, now_t: float, force_until: float | None) -> None:
        """Write every part the media has passed and the captions cover (or whose window ran out);
        ``force_until``: write up to there regardless (the segment is being published)."""
        pt = self.ctx.part_target
        assert pt is not None
        while True:
            end = self._ends.get(self._seg)
            part_end = self._start + (self._part + 1) * pt
            if end is not None and part_end > end - 0.25 * pt:
                part_end = end
            forced = force_until is not None and part_end <= force_until + 1e-6
            if not forced:
                if now_t < part_end:
                    return
                since = self._due_since.setdefault((self._seg, self._part), time.monotonic())
                if not self._decided(self._start + self._part * pt, part_end) and time.monotonic() < since + self.window_s:
                    return
            if not (end is not None and self._part > 0 and part_end - (self._start + self._part * pt) < 1e-3):
                self._write_part(self._start + self._part * pt, part_end)
            # else: the parts already reach the segment's end, which became known only after the last of them
            # was cut: no empty part (DURATION 0.001) is listed, which makes hls.js stall
            self._due_since.pop((self._seg, self._part), None)
            if end is not None and part_end >= end - 1e-6:
                self._seg, self._part, self._start = self._seg + 1, 0, end
                if force_until is not None and end >= force_until - 1e-6:
                    return
            else:
                self._part += 1

    def _write_part(self, start: float, end: float) -> None:
        cues = self.ctx.timeline.cues_between(start - self.carrier.lookback, end, track=self.track)
        # on screen in this window, and finals decided too late for the parts they belong to
        carried = [c for c in cues if (c.end > start and c.start < end) or (c.end <= start and self._key(c) not in self._sent)]
        for c in carried:
            self._sent.add(self._key(c))
        name = part_name(self._seg, self._part).replace(".m4s", ".vtt")
        atomic_write(self.dir / name, render_vtt_part(carried, start, end, timebase.media_to_pts(start)))
        # DURATIONs from the part boundaries rounded as the playlist writes them (to 10 us), so that a
        # segment's parts add up to its EXTINF exactly: hls.js counts a subtitle segment loaded part by part
        # as done only when its last part ends within 1e-6 s of the segment's end, and until then loads no
        # other subtitle; six parts of 0.33333 s under an EXTINF of 2.0 stopped every caption after the
        # first segment a viewer joined in (bench/latency.py (d), (k): 1 of 9 and 0 of 5 shown).
        a, b = (round((t - self._start) * _UNITS) for t in (start, end))
        units = max(b - a, _UNITS // 1000)
        if self.part_segments:
            end_of_segment = self._ends.get(self._seg)
            last = end_of_segment is not None and end >= end_of_segment - 1e-6
            self._unlisted.append(_Cut(self._seg, self._part, start, units, name, last))
            return
        self._listed[self._seg] = self._listed.get(self._seg, 0) + units
        self.playlist.add_part(Part.of(name, units / _UNITS, independent=True),
                               next_uri=part_name(self._seg, self._part + 1).replace(".m4s", ".vtt"),
                               segment=self._seg)

    def _pdt_at(self, segment: int, t: float) -> datetime | None:
        """The PDT of media time ``t`` in the stream's segment ``segment``, or None while it is not known: from
        the nearest segment at or before it whose PDT was published, with no discontinuity after it (PDT
        advances by exactly the media time within a period: core/ingest.py)."""
        n = segment
        while True:
            job = self._jobs.get(n)
            if job is not None:
                pdt = job.known_program_date_time()
                if pdt is not None:
                    return pdt + timedelta(seconds=t - job.start)
                discontinuity = job.discontinuity
            elif n in self._opened:
                discontinuity = self._opened[n][0]
            else:
                return None
            if discontinuity or n == 0:
                return None  # its own PDT starts a new period (or the stream): wait for it
            n -= 1

    def _list_parts(self) -> None:
        """part_segments: list, in order, every written part whose PDT is now known, as a segment of its own
        (one EXT-X-PART, the same file); the segment that starts a stream's segment carries its discontinuity
        and break signalling."""
        while self._unlisted:
            cut = self._unlisted[0]
            pdt = self._pdt_at(cut.segment, cut.start)
            if pdt is None:
                return
            discontinuity, signal = False, BreakSignal()
            if cut.part == 0:
                job = self._jobs.get(cut.segment)
                if job is not None:
                    discontinuity, signal = job.discontinuity, job.signal
                else:
                    discontinuity, signal = self._opened.get(cut.segment, (False, BreakSignal()))
            duration = cut.units / _UNITS
            seg = Segment(uri=cut.name, duration=duration, program_date_time=pdt, discontinuity=discontinuity,
                          tags=signal.tags, dateranges=signal.dateranges,
                          parts=(Part.of(cut.name, duration, independent=True),))
            after = (cut.segment + 1, 0) if cut.last else (cut.segment, cut.part + 1)
            self.playlist.add(seg, next_part_uri=part_name(*after).replace(".m4s", ".vtt"))
            self._unlisted.pop(0)
            for old in [n for n in (*self._jobs, *self._opened) if n < cut.segment - 2]:
                self._jobs.pop(old, None)
                self._opened.pop(old, None)

    @staticmethod
    def _key(c: Cue) -> str:
        return c.id or f"@{c.start:.3f}:{c.text}"

    # ------------------------------------------------------------ segments

    def publish(self, job: SegmentJob) -> None:
        job.program_date_time()  # may wait for the arrival clock, which the ingest thread moves: not under the lock
        with self._lock:
            if self.low_latency:  # the captions were waited for: what is left of the segment's parts now
                self._ends[job.index] = job.end
                self._cut_parts(job.end, force_until=job.end)
            if self.part_segments:
                self._jobs[job.index] = job
                self._list_parts()
            lookback = self.carrier.lookback
            cues = self.ctx.timeline.cues_between(job.start - lookback, job.end, track=self.track)
            name = f"{job.name}.vtt"
            carried = self.carrier.segment_cues(cues, job.start, job.end)
            atomic_write(self.dir / name,
                         render_vtt_segment(carried, job.start, job.end, timebase.media_to_pts(job.start)))
            seg = job.segment(name)
            if not self.part_segments:  # else its parts are the live playlist's segments (_list_parts)
                listed = self._listed.pop(job.index, None)
                if listed is not None and abs(listed / _UNITS - seg.duration) < 2e-3:
                    # the parts reach the segment's end (a sliver under 1 ms is never listed as a part): the
                    # EXTINF is their sum, to the digit (see _write_part)
                    seg = dataclasses.replace(seg, duration=listed / _UNITS)
                self.playlist.add(seg, next_part_uri=part_name(job.index + 1, 0).replace(".m4s", ".vtt"),
                                  index=job.index)
            self.full.add(seg)

    def finish(self, complete: bool) -> None:
        if not complete:
            return
        with self._lock:
            self._list_parts()  # every segment was published: every part's PDT is known
        self.playlist.end()
        self.full.end()
        cues = self.ctx.timeline.final_cues(self.track)
        stem = "transcript" if not self.translated else f"transcript.{self.language}"
        write_transcript(cues, self.ctx.outdir / f"{stem}.vtt", self.ctx.outdir / f"{stem}.json")


__all__ = ["SubtitleRendition", "language_name", "LANGUAGE_NAMES"]
