"""A live media playlist grown one segment at a time, and the atomic file write every playlist goes through.

``LivePlaylist`` keeps the rules that must hold over the whole life of a live stream (RFC 8216bis §6.2.1,
§6.2.2), so that a player reloading it never sees the past change:
- a segment, once listed, never changes (URI, duration, PDT, discontinuity): segments are frozen records
  and are only ever appended or slid out;
- EXT-X-MEDIA-SEQUENCE grows by exactly the number of segments that slid out of the window, and
  EXT-X-DISCONTINUITY-SEQUENCE by the number of EXT-X-DISCONTINUITY tags that slid out with them (a tag
  belongs to the segment after it, so it leaves with that segment). The stream's very first segment never
  carries one: there is nothing before it to be discontinuous with, and a tag that is never written must
  never be counted;
- EXT-X-TARGETDURATION never changes: it is fixed from the configured segment duration up front, and a
  segment whose rounded duration would exceed it is refused;
- every segment carries EXT-X-PROGRAM-DATE-TIME (players and the ad modules place things by it);
- an EXT-X-DATERANGE is not dropped while the range it describes still overlaps the window: when its
  segment slides out, the tag moves to the head of the playlist until the range has passed.
``window=0`` keeps every segment (an EVENT playlist, VOD once ended). With a ``path``, every change is
written there atomically (a temporary file renamed over the old one), so a player never reads half a file.

Low latency (``part_target`` set, RFC 8216bis §4.4.4.9, §4.4.5.3, §6.2.2): the partial segments of the
segment being made are listed as they are published (``add_part``), with an EXT-X-PRELOAD-HINT for the
next one, EXT-X-SERVER-CONTROL (blocking reload, PART-HOLD-BACK of three part targets, skipping of old
segments in delta updates) and EXT-X-PART-INF; when the segment completes (``add``) its parts stay listed
with it for three target durations, then only the segment remains. Other renditions' live edges
(EXT-X-RENDITION-REPORT) come from ``reports``. Thread-safe: parts and segments may come from different
threads.
"""

from __future__ import annotations

import math
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from . import tags as T
from .attributes import format_decimal
from .errors import PlaylistError
from .model import DateRange, Map, MediaPlaylist, Part, PreloadHint, RenditionReport, Segment

__all__ = ["LivePlaylist", "atomic_write"]


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    data = text.encode() if isinstance(text, str) else text
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class LivePlaylist:
    """One rendition's media playlist while the stream runs (see the module docstring for its rules)."""

    def __init__(self, path: Path | None, target_duration: float, window: int = 0, version: int = 3,
                 target_from_first: bool = False, part_target: float | None = None, init_uri: str | None = None,
                 reports: Callable[[], list[RenditionReport]] | None = None,
                 upcoming: Callable[[datetime], list[DateRange]] | None = None,
                 part_hold_back: float | None = None) -> None:
        self.path = path
        self.target_duration = int(math.ceil(target_duration))
        self.part_target = part_target
        # PART-HOLD-BACK: None = three part targets (RFC 8216bis: at least two, three recommended)
        self.part_hold_back = part_hold_back
        self.init = Map({"URI": f'"{init_uri}"'}) if init_uri else None
        self.reports = reports
        # DATERANGEs announced ahead of the segments they will sit on (ad breaks scheduled in the future)
        self.upcoming = upcoming
        self.parts: list[Part] = []          # the parts of the segment being made
        self.next_part_uri: str | None = None
        # Which segment (the caller's numbering) ``parts`` belong to, and parts of a later segment that
        # arrived before this one was added (held back, unlisted, until it is: see add_part).
        self._parts_of: int | None = None
        self._held: list[tuple[int, Part, str | None]] = []
        self._edge = (-1, -1)
        self._lock = threading.RLock()
        if init_uri:
            version = max(version, 7)  # EXT-X-MAP with fragmented MP4 (RFC 8216bis §7)
        if part_target is not None:
            version = max(version, 9)
        # A source whose segment length is only known once it is seen (passthrough: the source's keyframe
        # interval): the first segment may raise the target duration, which is then fixed for good.
        self.target_from_first = target_from_first
        self.window = window
        self.version = version
        self.segments: deque[Segment] = deque()
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.ended = False
        self.total = 0
        self._carried: list[DateRange] = []   # DATERANGEs whose segment slid out while their range still runs

    @property
    def next_msn(self) -> int:
        """The media sequence number of the segment being made."""
        return self.media_sequence + len(self.segments)

    @property
    def declared_part_target(self) -> float:
        """PART-TARGET as written: in whole milliseconds, rounded up with a millisecond to spare, so that no
        part (whose duration comes from frame times) exceeds it (RFC 8216bis §4.4.3.7)."""
        assert self.part_target is not None
        return (math.ceil(self.part_target * 1000) + 1) / 1000

    @property
    def declared_hold_back(self) -> float:
        """PART-HOLD-BACK as written: the one asked for, never under two declared part targets (a player
        told less could sit on a part that is not yet listed), three by default."""
        assert self.part_target is not None
        if self.part_hold_back is None:
            return 3 * self.declared_part_target
        return max(self.part_hold_back, 2 * self.declared_part_target)

    def last_part(self) -> tuple[int, int]:
        """(media sequence number, part index) of the newest part listed (-1, -1: none yet): what an
        EXT-X-RENDITION-REPORT says and what a blocking reload waits for. Read without the lock (one
        tuple, replaced whole): a playlist rendering its reports reads the others' edges while holding its
        own lock, and taking theirs too would deadlock two renditions reporting on each other."""
        return self._edge

    def _move_edge(self) -> None:
        if self.parts:
            self._edge = (self.next_msn, len(self.parts) - 1)
        elif self.segments:
            self._edge = (self.next_msn - 1, len(self.segments[-1].parts) - 1)

    def add_part(self, part: Part, next_uri: str | None = None, segment: int | None = None) -> None:
        """List a just-published part of the segment being made (low latency); ``next_uri`` is the part the
        server will publish next (the preload hint). ``segment``: the number of the segment it belongs to
        (any numbering the caller also gives ``add``). A part of a later segment than the parts listed so
        far arrives when a rendition cuts the next segment's parts before its packager lists the segment
        they follow; it is held back until ``add`` lists that segment, instead of being folded into it."""
        with self._lock:
            if self.ended:
                raise RuntimeError(f"{self.path}: part added after the end of the stream")
            if segment is not None and self._parts_of is not None and segment != self._parts_of:
                self._held.append((segment, part, next_uri))
                return
            self.parts.append(part)
            self._parts_of = segment
            self.next_part_uri = next_uri
            self._move_edge()
            self.write()

    def add(self, segment: Segment, next_part_uri: str | None = None, index: int | None = None) -> None:
        """Append a segment (and slide the window); PlaylistError if it breaks a rule of the playlist.
        Low latency: ``next_part_uri`` is the next segment's first part (the preload hint from now on); the
        hint the last part left named a part of this segment that will never be published. ``index``: the
        segment's number as given to ``add_part``: the listed parts are this segment's only if they were
        given that number (or none)."""
        with self._lock:
            self._add(segment, next_part_uri, index)

    def _add(self, segment: Segment, next_part_uri: str | None = None, index: int | None = None) -> None:
        mine = index is None or self._parts_of is None or self._parts_of == index
        if self.part_target is not None and self.parts and mine and not segment.parts:
            segment = replace(segment, parts=tuple(self.parts))
        if mine:
            self.parts, self._parts_of = [], None
        if self.part_target is not None:
            self.next_part_uri = next_part_uri if mine and not self._held else self.next_part_uri
        if mine and self._held:  # parts of the next segment that came early: listed now, after their segment
            first = min(n for n, _, _ in self._held)
            now = [(p, hint) for n, p, hint in self._held if n == first]
            self._held = [h for h in self._held if h[0] != first]
            self.parts, self._parts_of, self.next_part_uri = [p for p, _ in now], first, now[-1][1]
        if self.ended:
            raise RuntimeError(f"{self.path}: segment added after the end of the stream")
        if self.target_from_first and self.total == 0:
            self.target_duration = max(self.target_duration, int(math.floor(segment.duration + 0.5)))
        if math.floor(segment.duration + 0.5) > self.target_duration:
            raise PlaylistError(f"{self.path}: segment of {segment.duration:.3f}s exceeds the target duration "
                                f"{self.target_duration}s (RFC 8216bis §4.4.3.1)")
        if segment.program_date_time is None:
            raise PlaylistError(f"{self.path}: segment {segment.uri} has no EXT-X-PROGRAM-DATE-TIME")
        if self.total == 0 and segment.discontinuity:
            segment = replace(segment, discontinuity=False)
        self.segments.append(segment)
        self.total += 1
        while self.window > 0 and len(self.segments) > self.window:
            gone = self.segments.popleft()
            self.media_sequence += 1
            if gone.discontinuity:
                self.discontinuity_sequence += 1
            self._carried.extend(gone.dateranges)
        if self._carried:
            head = self.segments[0].program_date_time
            assert head is not None
            self._carried = [d for d in self._carried if (end := d.end) is not None and end > head]
        self._move_edge()
        self.write()

    def end(self) -> None:
        with self._lock:
            self.ended = True
            self.parts, self._held, self._parts_of = [], [], None
            self.next_part_uri = None
            self.write()

    def playlist(self) -> MediaPlaylist:
        """The playlist as it stands, as a model."""
        with self._lock:
            segs = list(self.segments)
            if self._carried and segs:
                segs[0] = replace(segs[0], dateranges=(*self._carried, *segs[0].dateranges))
            header = [T.EXT_X_INDEPENDENT_SEGMENTS]
            if self.init is not None:  # one init section for every segment (and the parts before the first)
                header.append(self.init.dumps())
            hints: list[PreloadHint] = []
            reports: list[RenditionReport] = []
            if self.part_target is not None:
                # Parts stay listed for the last three target durations (RFC 8216bis §6.2.2), then go.
                keep, total = len(segs), 0.0
                while keep > 0 and total < 3 * self.target_duration:
                    keep -= 1
                    total += segs[keep].duration
                segs = [replace(s, parts=()) if i < keep else s for i, s in enumerate(segs)]
                if not self.ended:
                    header += [f"{T.EXT_X_SERVER_CONTROL}:CAN-BLOCK-RELOAD=YES,"
                               f"PART-HOLD-BACK={format_decimal(round(self.declared_hold_back, 3))},"
                               f"CAN-SKIP-UNTIL={format_decimal(6 * self.target_duration)}",
                               f"{T.EXT_X_PART_INF}:PART-TARGET={format_decimal(self.declared_part_target)}"]
                    if self.next_part_uri:
                        hints = [PreloadHint({"TYPE": "PART", "URI": f'"{self.next_part_uri}"'})]
                    reports = self.reports() if self.reports is not None else []
            ahead: list[DateRange] = []
            if self.upcoming is not None and not self.ended and segs and segs[-1].program_date_time is not None:
                edge = segs[-1].program_date_time + timedelta(seconds=segs[-1].duration - 0.001)
                ahead = self.upcoming(edge)
            return MediaPlaylist(
                target_duration=self.target_duration, segments=segs, media_sequence=self.media_sequence,
                discontinuity_sequence=self.discontinuity_sequence, version=self.version,
                playlist_type=None if self.window else ("VOD" if self.ended else "EVENT"), endlist=self.ended,
                header_tags=header, trailing_parts=list(self.parts) if not self.ended else [],
                trailing_dateranges=ahead,
                preload_hints=hints, rendition_reports=reports)

    def render(self) -> str:
        return self.playlist().dumps()

    def write(self) -> None:
        if self.path is not None:
            atomic_write(self.path, self.render())
