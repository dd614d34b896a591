"""What every output shares: the segment job the ingest hands over, the stream context, and the ``Output``
interface the packager drives.

An output publishes its part of every segment (a video ladder, the audio rendition, a caption track, the
vertical ladder). It says which sidecar result kinds it waits for (``needs``); the packager holds each
output's segment only for sidecars that declared those kinds, under the decision window. So captions
wait for the caption sidecar, the vertical ladder for crops, the main ladder for bitrate hints, and none of
them for a sidecar whose results they do not use.
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import IO, Any

import av

from sidecast.contract.records import ResultKind
from sidecast.hls import DateRange, RenditionReport, Segment
from sidecast.hls.breaks import BreakSignal
from sidecast.hls.live import LivePlaylist

from ..timeline import Timeline


@dataclass
class SegmentJob:
    """One closed segment: its frames (shared read-only by every output) and where it sits in time."""

    index: int
    start: float
    end: float
    frames: list[av.VideoFrame]
    times: list[float]
    discontinuity: bool
    pdt: datetime
    closed_at: float                 # time.monotonic() when the ingest closed it
    final: bool = False              # the last segment of the stream
    signal: BreakSignal = BreakSignal()  # ad-break signalling every playlist writes with the segment
    # The PDT as published: a live source's arrival clock may still be settling when the segment closes
    # (core/ingest.py), so it is taken once, when the first output publishes the segment.
    resolve_pdt: Callable[[], datetime] | None = None
    _published_pdt: datetime | None = field(default=None, init=False, repr=False)
    _pdt_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def program_date_time(self) -> datetime:
        with self._pdt_lock:
            if self._published_pdt is None:
                self._published_pdt = self.resolve_pdt() if self.resolve_pdt is not None else self.pdt
            return self._published_pdt

    def known_program_date_time(self) -> datetime | None:
        """The PDT as published if an output has taken it already, else None: never waits, not even for the
        lock (an output resolving the PDT holds it while it waits for the arrival clock, which the ingest
        thread, which asks this, moves). Set once, read whole."""
        return self._published_pdt

    @property
    def name(self) -> str:
        return f"seg_{self.index:06d}"

    @property
    def duration(self) -> float:
        """As written in EXTINF, so peaks computed from it match what readers compute."""
        return round(max(self.end - self.start, 1e-3), 5)

    def segment(self, uri: str) -> Segment:
        """This segment as a playlist entry (the same in every rendition but for its URI)."""
        return Segment(uri=uri, duration=self.duration, program_date_time=self.program_date_time(),
                       discontinuity=self.discontinuity,
                       tags=self.signal.tags, dateranges=self.signal.dateranges)


_LADDERS = ("video", "vertical")


def _ladder_of(outdir: Path, path: Path) -> str | None:
    """Which video ladder a playlist belongs to ("video" or "vertical"), None for audio and captions."""
    try:
        top = path.relative_to(outdir).parts[0]
    except (ValueError, IndexError):
        return None
    return top if top in _LADDERS else None


@dataclass
class StreamContext:
    """What outputs know about the stream once the source is open."""

    outdir: Path
    width: int
    height: int
    fps: Fraction
    has_audio: bool
    segment_duration: float
    window: int                      # live sliding window in segments (0: keep every segment)
    timeline: Timeline
    log: JsonLines
    params: dict[str, Any] = field(default_factory=dict)
    target_from_first: bool = False  # passthrough: segments are as long as the source's keyframe interval
    part_target: float | None = None  # low latency: the partial segment duration (CMAF parts)
    part_hold_back: float | None = None  # low latency: PART-HOLD-BACK (None: three part targets)
    live_playlists: list[LivePlaylist] = field(default_factory=list)  # every low-latency playlist, for reports
    upcoming: Callable[[datetime], list[DateRange]] | None = None  # ad breaks announced ahead of the edge

    def playlist(self, path: Path, window: int | None = None, init_uri: str | None = None,
                 parts: bool = False, per_segment: int = 1) -> LivePlaylist:
        """A rendition's media playlist: the live window (``window`` None) or the full VOD list (0). With
        ``parts`` (low latency) the live window lists partial segments and reports every other rendition's
        live edge. ``per_segment``: how many of its segments cover one of the stream's (the low-latency
        captions list one segment per part), so that its live window spans the same time as the others'."""
        low = parts and self.part_target is not None and window is None
        pl = LivePlaylist(path, self.segment_duration, self.window * per_segment if window is None else window,
                          target_from_first=self.target_from_first,
                          part_target=self.part_target if low else None, init_uri=init_uri,
                          part_hold_back=self.part_hold_back if low else None,
                          reports=(lambda: self.rendition_reports(path)) if low else None,
                          upcoming=self.upcoming if window is None else None)
        if low:
            self.live_playlists.append(pl)
        return pl

    def rendition_reports(self, path: Path) -> list[RenditionReport]:
        """EXT-X-RENDITION-REPORT for every other low-latency playlist of the same multivariant playlist,
        URIs relative to ``path``: the main ladder's video (master.m3u8) and the vertical's (vertical.m3u8)
        do not report each other; audio and captions, in both, report both."""
        out = []
        ladder = _ladder_of(self.outdir, path)
        for other in self.live_playlists:
            if other.path is None or other.path == path:
                continue
            theirs = _ladder_of(self.outdir, other.path)
            if ladder and theirs and ladder != theirs:
                continue
            msn, part = other.last_part()
            if msn < 0:
                continue
            uri = os.path.relpath(other.path, path.parent)
            out.append(RenditionReport({"URI": f'"{uri}"', "LAST-MSN": str(msn), "LAST-PART": str(max(part, 0))}))
        return out


class JsonLines:
    """An append-only JSON-lines file written from several output threads (``segments.jsonl``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fp: IO[str] | None = None

    def write(self, records: list[dict[str, Any]]) -> None:
        with self._lock:
            if self._fp is None:
                self._fp = open(self.path, "a")  # noqa: SIM115 (closed in close())
            for r in records:
                self._fp.write(json.dumps(r) + "\n")
            self._fp.flush()

    def close(self) -> None:
        with self._lock:
            if self._fp is not None:
                self._fp.close()
                self._fp = None


class Output(ABC):
    """One published part of the stream. The packager calls ``publish`` once per segment, in order, from
    this output's own worker thread, and ``finish`` once at the end."""

    name: str = "output"
    needs: frozenset[ResultKind] = frozenset()
    # An essential output failing ends the stream (there is nothing to publish without it); any other
    # (captions, the vertical) is switched off with an error in the log and the stream goes on.
    essential: bool = True

    @property
    def buffers_frames(self) -> bool:
        """Whether ``publish`` needs the segment's pictures (kept in the job until then)."""
        return False

    def frame(self, frame: av.VideoFrame, t: float, segment: int) -> None:  # noqa: B027 (optional hook)
        """A frame as the ingest reads it (outputs that encode continuously)."""

    def packet(self, packet: av.Packet[Any], t: float, dts: float, segment: int) -> None:  # noqa: B027
        """A compressed video packet (passthrough outputs copy them)."""

    def segment_opened(self, index: int, start: float, discontinuity: bool,  # noqa: B027 (optional hook)
                       signal: BreakSignal) -> None:
        """The ingest opened segment ``index`` at media time ``start`` (its first frame): whether it follows a
        discontinuity and its break signalling, known before it closes (low-latency captions list segments
        of one part each while the stream's segment is still growing)."""

    def segment_closed(self, job: SegmentJob) -> None:  # noqa: B027 (optional hook)
        """The ingest closed ``job`` (before any output publishes it)."""

    @abstractmethod
    def publish(self, job: SegmentJob) -> None:
        """Write this output's part of ``job`` and list it in its playlists."""

    def finish(self, complete: bool) -> None:  # noqa: B027 (optional hook: most outputs override it)
        """The stream ended (``complete``: normally, with at least one segment): close playlists."""


__all__ = ["SegmentJob", "StreamContext", "JsonLines", "Output"]
