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
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import replace
from pathlib import Path

from . import tags as T
from .errors import PlaylistError
from .model import DateRange, MediaPlaylist, Segment

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
                 target_from_first: bool = False) -> None:
        self.path = path
        self.target_duration = int(math.ceil(target_duration))
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

    def add(self, segment: Segment) -> None:
        """Append a segment (and slide the window); PlaylistError if it breaks a rule of the playlist."""
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
        self.write()

    def end(self) -> None:
        self.ended = True
        self.write()

    def playlist(self) -> MediaPlaylist:
        """The playlist as it stands, as a model."""
        segs = list(self.segments)
        if self._carried and segs:
            segs[0] = replace(segs[0], dateranges=(*self._carried, *segs[0].dateranges))
        return MediaPlaylist(
            target_duration=self.target_duration, segments=segs, media_sequence=self.media_sequence,
            discontinuity_sequence=self.discontinuity_sequence, version=self.version,
            playlist_type=None if self.window else ("VOD" if self.ended else "EVENT"), endlist=self.ended,
            header_tags=[T.EXT_X_INDEPENDENT_SEGMENTS])

    def render(self) -> str:
        return self.playlist().dumps()

    def write(self) -> None:
        if self.path is not None:
            atomic_write(self.path, self.render())
