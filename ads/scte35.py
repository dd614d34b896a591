"""Finding ad breaks: SCTE-35 cues (base64/hex, MPEG-TS) and playlist cue tags → ``AdBreak``s.

SCTE-35 is decoded with threefive. Everything that can be wrong in the wild (a cue that does not decode,
a CUE-IN with no CUE-OUT, cues in the wrong order, a CUE-OUT with no duration that never ends) is logged
with a message that says what was ignored and why, and the content simply plays: a bad cue must never stop
a stream.

Playlist dialects understood (RFC 8216bis §4.4.5.1.1 for DATERANGE; the others are de-facto):
- ``#EXT-X-CUE-OUT:30`` / ``#EXT-X-CUE-OUT:DURATION=30`` ... ``#EXT-X-CUE-IN``
- ``#EXT-X-CUE-OUT-CONT:ElapsedTime=4,Duration=30`` and ``#EXT-X-CUE-OUT-CONT:4/30`` (a window that starts
  inside a break)
- ``#EXT-X-DATERANGE:...,SCTE35-OUT=0x...`` and a later DATERANGE with the same ID and ``SCTE35-IN``
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import threefive

from .models import AdBreak
from .playlist import MediaPlaylist, parse_attributes, unquote

log = logging.getLogger("sidecast.ads.scte35")

# SCTE-35 2023 table 23: segmentation_type_id values that open / close an ad opportunity.
_OUT_TYPES = {0x22, 0x30, 0x32, 0x34, 0x36, 0x38, 0x3A, 0x44, 0x46}
_IN_TYPES = {0x23, 0x31, 0x33, 0x35, 0x37, 0x39, 0x3B, 0x45, 0x47}

# The core writes video PTS = 900000 + media_time * 90000, i.e. media time 0 is PTS 10 s.
CORE_PTS_ZERO = 10.0
_PTS_WRAP = 2**33 / 90000.0


class CueError(ValueError):
    """A SCTE-35 cue that cannot be used (malformed, wrong table, bad CRC, unsupported command)."""


@dataclass(frozen=True)
class Splice:
    """What one SCTE-35 cue means for ads: the start (``out``) or end (``in``) of a break."""

    kind: Literal["out", "in"]
    command: str                  # "splice_insert" or "time_signal"
    pts_time: float | None        # splice time in seconds on the stream's PTS clock; None = immediate
    duration: float | None
    event_id: int | None
    raw: bytes


def _to_bytes(data: str | bytes) -> bytes:
    if isinstance(data, bytes):
        return data
    s = data.strip()
    if s[:2].lower() == "0x":
        try:
            return bytes.fromhex(s[2:])
        except ValueError:
            raise CueError("not valid hex") from None
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise CueError("neither base64 nor hex") from None


def _crc32_mpeg2(data: bytes) -> int:
    return int(threefive.crc.crc32(data))


def _event_id(d: object) -> int | None:
    v = getattr(d, "segmentation_event_id", None)
    if v is None:
        return None
    if isinstance(v, str):  # threefive renders it as hex text
        try:
            return int(v, 0)
        except ValueError:
            return None
    return int(v)


def decode_cue(data: str | bytes) -> Splice:
    """Decode one splice_info_section. Raises CueError with a reason a person can act on."""
    raw = _to_bytes(data)
    if len(raw) < 17:
        raise CueError(f"too short for a splice_info_section ({len(raw)} bytes)")
    if raw[0] != 0xFC:
        raise CueError(f"table_id is 0x{raw[0]:02x}, SCTE-35 needs 0xfc")
    section_length = ((raw[1] & 0x0F) << 8) | raw[2]
    if section_length + 3 > len(raw):
        raise CueError(f"section_length {section_length} runs past the {len(raw)} bytes given")
    raw = raw[: section_length + 3]
    if _crc32_mpeg2(raw[:-4]) != int.from_bytes(raw[-4:], "big"):
        raise CueError("CRC-32 mismatch (corrupted cue)")
    cue = threefive.Cue(raw)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            cue.decode()
    except Exception as exc:  # threefive raises assorted errors on odd input
        raise CueError(f"threefive could not decode it ({type(exc).__name__})") from None
    cmd = cue.command
    if cmd is None:
        raise CueError("no splice command")
    adj = float(getattr(cue.info_section, "pts_adjustment", 0.0) or 0.0)

    def at(pts: float | None) -> float | None:
        return None if pts is None else (float(pts) + adj) % _PTS_WRAP

    if cmd.command_type == 5:  # splice_insert
        if cmd.splice_event_cancel_indicator:
            raise CueError(f"splice_insert {cmd.splice_event_id} cancels an event; nothing to do")
        pts = None if cmd.splice_immediate_flag else at(cmd.pts_time)
        dur = float(cmd.break_duration) if cmd.duration_flag and cmd.break_duration else None
        kind: Literal["out", "in"] = "out" if cmd.out_of_network_indicator else "in"
        return Splice(kind, "splice_insert", pts, dur, int(cmd.splice_event_id), raw)
    if cmd.command_type == 6:  # time_signal + segmentation descriptors
        for d in cue.descriptors:
            tid = getattr(d, "segmentation_type_id", None)
            if tid is None or getattr(d, "segmentation_event_cancel_indicator", False):
                continue
            if tid in _OUT_TYPES:
                dur = getattr(d, "segmentation_duration", None)
                return Splice("out", "time_signal", at(cmd.pts_time), float(dur) if dur else None,
                              _event_id(d), raw)
            if tid in _IN_TYPES:
                return Splice("in", "time_signal", at(cmd.pts_time), None, _event_id(d), raw)
        raise CueError("time_signal without an ad-related segmentation descriptor")
    raise CueError(f"splice command type {cmd.command_type} ({cmd.name}) does not start or end a break")


def try_decode_cue(data: str | bytes, where: str = "") -> Splice | None:
    """decode_cue, but a bad cue is logged and ignored (the content plays on)."""
    try:
        return decode_cue(data)
    except CueError as exc:
        log.warning("ignoring SCTE-35 cue%s: %s", f" {where}" if where else "", exc)
        return None


@dataclass
class _Open:
    id: str
    start: float
    duration: float | None
    start_date: datetime | None


def breaks_from_splices(splices: Iterable[tuple[float, Splice]], source: str = "scte35") -> list[AdBreak]:
    """Pair ``out``/``in`` splices (already placed on the media timeline, in seconds) into breaks."""
    out: list[AdBreak] = []
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
            out.append(AdBreak(cur.id, cur.start, dur, start_date=cur.start_date, source=source))
        cur = None

    for t, sp in sorted(splices, key=lambda x: x[0]):
        if cur is not None and cur.duration is not None and t >= cur.start + cur.duration:
            close(None)
        if sp.kind == "out":
            if cur is not None:
                log.warning("ignoring SCTE-35 out at %.3f s: break %s (from %.3f s) is still open", t, cur.id, cur.start)
                continue
            cur = _Open(f"scte-{sp.event_id}" if sp.event_id is not None else f"scte-{t:.3f}", t, sp.duration, None)
        else:
            if cur is None:
                log.warning("ignoring SCTE-35 in at %.3f s: no break is open (an in without an out)", t)
                continue
            close(t)
    if cur is not None:
        close(None)
    return out


def breaks_from_ts(path: str | Path, pts_zero: float = CORE_PTS_ZERO) -> list[AdBreak]:
    """SCTE-35 cues carried in an MPEG-TS file → breaks on its media timeline (PTS minus ``pts_zero``)."""
    sink = io.StringIO()
    splices: list[tuple[float, Splice]] = []
    try:
        with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
            cues = list(threefive.Stream(str(path)).decode_next())
    except FileNotFoundError:
        raise
    except Exception as exc:
        log.warning("could not read SCTE-35 from %s: %s", path, exc)
        return []
    for cue in cues:
        raw = cue.bites if isinstance(getattr(cue, "bites", None), bytes) else None
        sp = try_decode_cue(raw, f"in {path}") if raw else None
        if sp is None:
            continue
        pts = sp.pts_time
        if pts is None:
            pkt = getattr(cue, "packet_data", None)
            pts = getattr(pkt, "pts", None) if pkt is not None else None
        if pts is None:
            log.warning("ignoring immediate SCTE-35 cue in %s: no PTS to place it", path)
            continue
        splices.append((pts - pts_zero, sp))
    return breaks_from_splices(splices, source="scte35")


_CONT_SLASH = re.compile(r"^\s*([0-9.]+)\s*/\s*([0-9.]+)")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _cue_out_duration(value: str) -> float | None:
    if not value:
        return None
    attrs = parse_attributes(value.upper())
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


def breaks_from_playlist(pl: MediaPlaylist) -> list[AdBreak]:
    """Breaks signalled in a media playlist by cue tags or SCTE35 DATERANGEs.

    ``start`` is seconds from the first segment of this playlist; ``start_date`` is set when the playlist
    carries EXT-X-PROGRAM-DATE-TIME, and is what a live stitcher matches on across reloads.
    """
    times = pl.segment_times()
    pdts = pl.program_date_times()
    total = pl.duration
    breaks: list[AdBreak] = []
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
            breaks.append(AdBreak(cur.id, cur.start, dur, _position(cur.start, total, pl.endlist),
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
            if name == "#EXT-X-CUE-OUT":
                if cur is not None:
                    log.warning("ignoring EXT-X-CUE-OUT at segment %d: break %s is still open",
                                pl.media_sequence + i, cur.id)
                    continue
                cur = _Open(bid(i, pdt, 0.0), t, _cue_out_duration(value), pdt)
            elif name == "#EXT-X-CUE-OUT-CONT":
                if cur is None:
                    elapsed, dur = _cue_out_cont(value)
                    if elapsed is None or dur is None:
                        log.warning("ignoring EXT-X-CUE-OUT-CONT %r: cannot read elapsed/duration", value)
                        continue
                    sd = pdt - timedelta(seconds=elapsed) if pdt is not None else None
                    cur = _Open(bid(i, sd, elapsed), t - elapsed, dur, sd)
            elif name == "#EXT-X-CUE-IN":
                if cur is None and (auto_closed or i == 0):
                    continue  # expected: the break ended here, or began before this live window
                if cur is not None and cur.start == t:
                    continue  # CUE-OUT and CUE-IN on one segment: the IN closes the previous break
                if cur is None:
                    log.warning("ignoring EXT-X-CUE-IN at segment %d: no EXT-X-CUE-OUT opened a break",
                                pl.media_sequence + i)
                    continue
                close(t)
            elif name == "#EXT-OATCLS-SCTE35":
                try_decode_cue(value, f"at segment {pl.media_sequence + i}")
    if cur is not None:
        close(None)
    breaks.extend(_breaks_from_dateranges(pl, times, pdts, total))
    breaks.sort(key=lambda b: b.start)
    return breaks


def _breaks_from_dateranges(pl: MediaPlaylist, times: list[float], pdts: list[datetime | None],
                            total: float) -> list[AdBreak]:
    # §4.4.5.1.1: SCTE35-OUT on the DATERANGE that opens a splice; SCTE35-IN on one with the same ID
    # (or END-DATE/DURATION on the first) closes it.
    anchor = next(((times[i], p) for i, p in enumerate(pdts) if p is not None), None)
    outs: dict[str, tuple[datetime, float | None]] = {}
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
            outs[dr.id] = (sd, dur)
        elif "SCTE35-IN" in dr.attrs:
            ins[dr.id] = sd
    if anchor is None and (outs or ins):
        log.warning("ignoring SCTE35 DATERANGEs: the playlist has no EXT-X-PROGRAM-DATE-TIME to place them")
        return []
    out: list[AdBreak] = []
    for drid in ins:
        if drid not in outs:
            log.warning("ignoring SCTE35-IN DATERANGE %s: no SCTE35-OUT with that ID", drid)
    for drid, (sd, dur) in outs.items():
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
        out.append(AdBreak(drid, start, dur, _position(start, total, pl.endlist), sd, "daterange"))
    return out


def _position(start: float, total: float, vod: bool) -> Literal["pre", "mid", "post"]:
    if vod and start <= 0.05:
        return "pre"
    if vod and start >= total - 0.05:
        return "post"
    return "mid"


def with_wall_clock(breaks: Iterable[AdBreak], media_zero: datetime) -> list[AdBreak]:
    """Breaks on the media timeline (e.g. from ``breaks_from_ts``) placed on the wall clock, so that a live
    stitcher can find them by EXT-X-PROGRAM-DATE-TIME. ``media_zero`` is the PDT of media time 0 (the
    core's first segment)."""
    from dataclasses import replace

    return [b if b.start_date is not None else replace(b, start_date=media_zero + timedelta(seconds=b.start))
            for b in breaks]
