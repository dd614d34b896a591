"""Ad breaks: the one ``Break`` record the core and the ads share, and how breaks are signalled in HLS.

A break is a slot for ads in the content timeline. The core schedules breaks (from SCTE-35 in its source,
``--break-at``, its HTTP API) and signals them on every media playlist it writes (``segment_signal``); the
ads find the same breaks again in any origin's playlists (``breaks_from_playlist``) or in MPEG-TS
(``breaks_from_ts``), then stitch (SSAI) or announce (SGAI) them. Writer and reader live side by side
so the dialect the core writes is the one the ads read.

Signalling written on the segments of a break (RFC 8216bis §4.4.5.1.1 for DATERANGE; the rest de-facto):
- ``EXT-X-DATERANGE`` with ``START-DATE`` (the segment's PDT), ``PLANNED-DURATION`` and ``SCTE35-OUT`` (the
  original section, when there is one) on its first segment;
- ``EXT-X-CUE-OUT:DURATION=d`` on the first segment, ``EXT-X-CUE-OUT-CONT:ElapsedTime=e,Duration=d`` on the
  following ones and ``EXT-X-CUE-IN`` on the first segment after the break.
Dialects read (anything that can be wrong in the wild is logged with what was ignored and why, and the
content simply plays: a bad cue never stops a stream):
- ``#EXT-X-CUE-OUT:30`` / ``#EXT-X-CUE-OUT:DURATION=30`` ... ``#EXT-X-CUE-IN``
- ``#EXT-X-CUE-OUT-CONT:ElapsedTime=4,Duration=30`` and ``#EXT-X-CUE-OUT-CONT:4/30`` (a window that starts
  inside a break)
- ``#EXT-X-DATERANGE:...,SCTE35-OUT=0x...`` and a later DATERANGE with the same ID and ``SCTE35-IN``
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, NamedTuple

from . import tags as T
from . import timebase
from .attributes import parse_attributes, quote, unquote
from .errors import PlaylistError
from .model import DateRange, MediaPlaylist
from .scte35 import Splice, splices_in_ts, try_decode_cue

__all__ = [
    "Break",
    "BreakSignal",
    "Position",
    "breaks_from_playlist",
    "breaks_from_splices",
    "breaks_from_ts",
    "announcement",
    "segment_signal",
    "with_wall_clock",
]

log = logging.getLogger("sidecast.hls.breaks")

Position = Literal["pre", "mid", "post"]


@dataclass(frozen=True)
class Break:
    """An ad break: where in the content timeline ads may go, and where the break came from.

    ``start`` is in media seconds (for a break read from a playlist: seconds from its first segment);
    ``start_date`` is its wall clock when known, which is what a live stitcher matches on across reloads.
    ``duration`` is None while the break is open: a SCTE-35 splice-out without a duration, until the
    splice-in arrives (the core, live). The ads act only on closed breaks.
    """

    id: str
    start: float
    duration: float | None
    position: Position = "mid"
    start_date: datetime | None = None
    source: str = "scte35"   # "scte35", "cue-tags", "daterange", "api", "cli"
    scte35: bytes = b""      # the splice_info_section that opened the break, when there is one

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration


# ------------------------------------------------------------------------------------------- writing


class BreakSignal(NamedTuple):
    """The signalling one segment carries: verbatim cue tags and DATERANGEs (``Segment.tags`` /
    ``Segment.dateranges``)."""

    tags: tuple[str, ...] = ()
    dateranges: tuple[DateRange, ...] = ()


_EPS = 0.02  # seconds: a break starts "at" a segment when within this (plus a frame at 60 fps)


def segment_signal(breaks: Iterable[Break], start: float, pdt: datetime) -> BreakSignal:
    """How ``breaks`` are signalled on the segment that starts at media time ``start`` (wall clock ``pdt``).

    A break starts on a segment boundary (the core forces one), so its first segment carries the
    DATERANGE and EXT-X-CUE-OUT, the segments inside it EXT-X-CUE-OUT-CONT, and the first one after it
    EXT-X-CUE-IN."""
    near = _EPS + 1 / 60
    tags: list[str] = []
    dateranges: list[DateRange] = []
    for b in breaks:
        dur = None if b.duration is None else f"{b.duration:.3f}"
        if abs(b.start - start) < near:
            # a break announced ahead of time keeps the START-DATE it was announced with (a DATERANGE's
            # attributes never change once published)
            attrs = {"ID": quote(b.id), "START-DATE": quote(timebase.format_pdt(b.start_date or pdt))}
            if dur:
                attrs["PLANNED-DURATION"] = dur
            if b.scte35:
                attrs["SCTE35-OUT"] = "0x" + b.scte35.hex().upper()
            dateranges.append(DateRange(attrs))
            tags.append(f"{T.EXT_X_CUE_OUT}:DURATION={dur}" if dur else T.EXT_X_CUE_OUT)
        elif b.start + _EPS < start and (b.end is None or start < b.end - _EPS):
            tags.append(f"{T.EXT_X_CUE_OUT_CONT}:ElapsedTime={start - b.start:.3f}"
                        + (f",Duration={dur}" if dur else ""))
        elif b.end is not None and abs(b.end - start) < near:
            tags.append(T.EXT_X_CUE_IN)
    return BreakSignal(tuple(tags), tuple(dateranges))


def announcement(b: Break) -> DateRange:
    """The DATERANGE announcing ``b`` before it reaches the live edge (the same ID and attributes its first
    segment will carry), so a stitcher or an interstitials player has the break in hand early."""
    assert b.start_date is not None
    attrs = {"ID": quote(b.id), "START-DATE": quote(timebase.format_pdt(b.start_date))}
    if b.duration is not None:
        attrs["PLANNED-DURATION"] = f"{b.duration:.3f}"
    if b.scte35:
        attrs["SCTE35-OUT"] = "0x" + b.scte35.hex().upper()
    return DateRange(attrs)


# ------------------------------------------------------------------------------------------- reading


@dataclass
class _Open:
    id: str
    start: float
    duration: float | None
    start_date: datetime | None
    raw: bytes = b""


def breaks_from_splices(splices: Iterable[tuple[float, Splice]], source: str = "scte35") -> list[Break]:
    """Pair ``out``/``in`` splices (already placed on the media timeline, in seconds) into breaks."""
    out: list[Break] = []
    cur: _Open | None = None

    def close(end: float | None) -> None:
        nonlocal cur
        assert cur is not None
        dur = cur.duration if end is None else end - cur.start
        if cur.duration is not None and end is not None:
            dur = min(cur.duration, end - cur.start)
        if dur is None or dur <= 0:
            log.warning("ignoring break %s: its cue gives no duration and no CUE-IN ends it", cur.id)
        else:
            out.append(Break(cur.id, cur.start, dur, start_date=cur.start_date, source=source, scte35=cur.raw))
        cur = None

    for t, sp in sorted(splices, key=lambda x: x[0]):
        if cur is not None and cur.duration is not None and t >= cur.start + cur.duration:
            close(None)
        if sp.kind == "out":
            if cur is not None:
                log.warning("ignoring SCTE-35 out at %.3f s: break %s (from %.3f s) is still open", t, cur.id, cur.start)
                continue
            cur = _Open(f"scte-{sp.event_id}" if sp.event_id is not None else f"scte-{t:.3f}", t, sp.duration, None,
                        sp.raw)
        else:
            if cur is None:
                log.warning("ignoring SCTE-35 in at %.3f s: no break is open (an in without an out)", t)
                continue
            close(t)
    if cur is not None:
        close(None)
    return out


def breaks_from_ts(path: str | Path, pts_zero: float = timebase.PTS_OFFSET_SECONDS) -> list[Break]:
    """SCTE-35 cues carried in an MPEG-TS file → breaks on its media timeline: PTS minus ``pts_zero``
    (the core's offset by default), unwrapped across the 33-bit wrap from one cue to the next."""
    placed: list[tuple[float, Splice]] = []
    near = 0.0
    for pts, sp in splices_in_ts(path):
        near = timebase.unwrap_seconds(pts - pts_zero, near)
        placed.append((near, sp))
    return breaks_from_splices(placed, source="scte35")


_CONT_SLASH = re.compile(r"^\s*([0-9.]+)\s*/\s*([0-9.]+)")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _cue_out_duration(value: str) -> float | None:
    if not value:
        return None
    try:
        attrs = parse_attributes(value.upper())
    except PlaylistError:
        attrs = {}
    if "DURATION" in attrs:
        return _number(unquote(attrs["DURATION"]))
    return _number(value.split(",")[0])


def _cue_out_cont(value: str) -> tuple[float | None, float | None]:
    """(elapsed, duration) from either dialect: ``ElapsedTime=4,Duration=30`` or ``4/30``."""
    m = _CONT_SLASH.match(value)
    if m:
        return _number(m.group(1)), _number(m.group(2))
    attrs = {k.upper(): v for k, v in re.findall(r"([A-Za-z0-9-]+)=(\"[^\"]*\"|[^,]*)", value)}
    e = attrs.get("ELAPSEDTIME")
    d = attrs.get("DURATION")
    return (_number(unquote(e)) if e else None, _number(unquote(d)) if d else None)


def breaks_from_playlist(pl: MediaPlaylist) -> list[Break]:
    """Breaks signalled in a media playlist by cue tags or SCTE35 DATERANGEs.

    ``start`` is seconds from the first segment of this playlist; ``start_date`` is set when the playlist
    carries EXT-X-PROGRAM-DATE-TIME, and is what a live stitcher matches on across reloads.
    """
    times = pl.segment_times()
    pdts = pl.program_date_times()
    total = pl.duration
    breaks: list[Break] = []
    cur: _Open | None = None

    def bid(i: int, start_date: datetime | None, offset: float) -> str:
        if start_date is not None:
            return f"cue-{int(round(start_date.timestamp() * 1000))}"
        return f"cue-{pl.media_sequence + i - int(round(offset / max(pl.target_duration, 1)))}"

    def close(end: float | None) -> None:
        nonlocal cur
        assert cur is not None
        if end is not None and end < cur.start:
            log.warning("ignoring CUE-IN before its CUE-OUT (break %s)", cur.id)
            return
        dur = cur.duration
        if end is not None:
            dur = end - cur.start if dur is None else min(dur, end - cur.start)
        if dur is None or dur <= 0:
            log.warning("ignoring break %s: CUE-OUT has no duration and no CUE-IN ends it", cur.id)
        else:
            breaks.append(Break(cur.id, cur.start, dur, _position(cur.start, total, pl.endlist),
                                  cur.start_date, "cue-tags"))
        cur = None

    for i, seg in enumerate(pl.segments):
        t, pdt = times[i], pdts[i]
        auto_closed = False
        if cur is not None and cur.duration is not None and t >= cur.start + cur.duration - 0.05:
            close(None)
            auto_closed = True  # the CUE-IN that usually follows on this segment is expected
        for tag in seg.tags:
            name, _, value = tag.partition(":")
            if name == T.EXT_X_CUE_OUT:
                if cur is not None:
                    log.warning("ignoring EXT-X-CUE-OUT at segment %d: break %s is still open",
                                pl.media_sequence + i, cur.id)
                    continue
                cur = _Open(bid(i, pdt, 0.0), t, _cue_out_duration(value), pdt)
            elif name == T.EXT_X_CUE_OUT_CONT:
                if cur is None:
                    elapsed, dur = _cue_out_cont(value)
                    if elapsed is None or dur is None:
                        log.warning("ignoring EXT-X-CUE-OUT-CONT %r: cannot read elapsed/duration", value)
                        continue
                    sd = pdt - timedelta(seconds=elapsed) if pdt is not None else None
                    cur = _Open(bid(i, sd, elapsed), t - elapsed, dur, sd)
            elif name == T.EXT_X_CUE_IN:
                if cur is None and (auto_closed or i == 0):
                    continue  # expected: the break ended here, or began before this live window
                if cur is not None and cur.start == t:
                    continue  # CUE-OUT and CUE-IN on one segment: the IN closes the previous break
                if cur is None:
                    log.warning("ignoring EXT-X-CUE-IN at segment %d: no EXT-X-CUE-OUT opened a break",
                                pl.media_sequence + i)
                    continue
                close(t)
            elif name == T.EXT_OATCLS_SCTE35:
                try_decode_cue(value, f"at segment {pl.media_sequence + i}")
    if cur is not None:
        close(None)
    # One break signalled both ways (the core writes a SCTE35 DATERANGE and cue tags for a SCTE-35 break)
    # is one break: the DATERANGE's, which carries an explicit ID and the original section.
    ranged = _breaks_from_dateranges(pl, times, pdts, total)
    breaks = [b for b in breaks if not any(abs(r.start - b.start) < 0.1 for r in ranged)] + ranged
    breaks.sort(key=lambda b: b.start)
    return breaks


def _breaks_from_dateranges(pl: MediaPlaylist, times: list[float], pdts: list[datetime | None],
                            total: float) -> list[Break]:
    # §4.4.5.1.1: SCTE35-OUT on the DATERANGE that opens a splice; SCTE35-IN on one with the same ID
    # (or END-DATE/DURATION on the first) closes it.
    anchor = next(((times[i], p) for i, p in enumerate(pdts) if p is not None), None)
    outs: dict[str, tuple[datetime, float | None, bytes]] = {}
    ins: dict[str, datetime] = {}
    for dr in pl.dateranges():
        sd = dr.start_date
        if sd is None:
            continue
        if "SCTE35-OUT" in dr.attrs:
            dur = dr.number("DURATION") or dr.number("PLANNED-DURATION")
            sp = try_decode_cue(dr.attrs["SCTE35-OUT"], f"in DATERANGE {dr.id}")
            if dur is None and sp is not None:
                dur = sp.duration
            outs[dr.id] = (sd, dur, sp.raw if sp is not None else b"")
        elif "SCTE35-IN" in dr.attrs:
            ins[dr.id] = sd
    if anchor is None and (outs or ins):
        log.warning("ignoring SCTE35 DATERANGEs: the playlist has no EXT-X-PROGRAM-DATE-TIME to place them")
        return []
    out: list[Break] = []
    for drid in ins:
        if drid not in outs:
            log.warning("ignoring SCTE35-IN DATERANGE %s: no SCTE35-OUT with that ID", drid)
    for drid, (sd, dur, raw) in outs.items():
        if drid in ins:
            span = (ins[drid] - sd).total_seconds()
            if span <= 0:
                log.warning("ignoring SCTE35-IN DATERANGE %s: it is before its SCTE35-OUT", drid)
            else:
                dur = span if dur is None else min(dur, span)
        if not dur or dur <= 0:
            log.warning("ignoring SCTE35-OUT DATERANGE %s: no duration and no SCTE35-IN", drid)
            continue
        assert anchor is not None
        start = anchor[0] + (sd - anchor[1]).total_seconds()
        out.append(Break(drid, start, dur, _position(start, total, pl.endlist), sd, "daterange", raw))
    return out


def _position(start: float, total: float, vod: bool) -> Position:
    if vod and start <= 0.05:
        return "pre"
    if vod and start >= total - 0.05:
        return "post"
    return "mid"


def with_wall_clock(breaks: Iterable[Break], media_zero: datetime) -> list[Break]:
    """Breaks on the media timeline (e.g. from ``breaks_from_ts``) placed on the wall clock, so that a live
    stitcher can find them by EXT-X-PROGRAM-DATE-TIME. ``media_zero`` is the PDT of media time 0 (the
    core's first segment)."""
    return [b if b.start_date is not None else replace(b, start_date=media_zero + timedelta(seconds=b.start))
            for b in breaks]
