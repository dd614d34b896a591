"""SCTE-35 cues: decoding a splice_info_section (base64, hex or bytes) and finding the cues in MPEG-TS.

Decoded with threefive. A cue that does not decode (too short, wrong table, bad CRC, a command that neither
starts nor ends a break) is a ``CueError`` with a reason a person can act on; ``try_decode_cue`` logs it
and returns None, because a bad cue must never stop a stream: the content simply plays. The meaning of a
cue for ads is a ``Splice``: the start (``out``) or end (``in``) of a break at a time on the stream's
33-bit PTS clock. ``breaks`` pairs splices into breaks and reads the same signalling in playlists.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import threefive
import threefive.stuff

from . import timebase
from .errors import CueError

__all__ = ["CueError", "Splice", "decode_cue", "splices_in_ts", "try_decode_cue"]

log = logging.getLogger("sidecast.hls.scte35")

_QUIET = threading.Lock()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """threefive prints its diagnostics to the stderr it bound at import (and some to stdout); the
    problems it finds reach our logger instead, as the CueError a caller sees."""
    sink = io.StringIO()
    with _QUIET, contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink):
        bound = threefive.stuff.stderr
        threefive.stuff.stderr = sink
        try:
            yield
        finally:
            threefive.stuff.stderr = bound


# SCTE-35 2023 table 23: segmentation_type_id values that open / close an ad opportunity.
_OUT_TYPES = {0x22, 0x30, 0x32, 0x34, 0x36, 0x38, 0x3A, 0x44, 0x46}
_IN_TYPES = {0x23, 0x31, 0x33, 0x35, 0x37, 0x39, 0x3B, 0x45, 0x47}


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
    try:
        with _quiet():
            cue = threefive.Cue(raw)
            cue.decode()
            return _splice(cue, raw)
    except CueError:
        raise
    except Exception as exc:  # threefive raises assorted errors (or leaves fields unset) on odd input
        raise CueError(f"threefive could not decode it ({type(exc).__name__})") from None


def _splice(cue: threefive.Cue, raw: bytes) -> Splice:
    """What a decoded cue means for ads."""
    cmd = cue.command
    if cmd is None:
        raise CueError("no splice command")
    adj = float(getattr(cue.info_section, "pts_adjustment", 0.0) or 0.0)

    def at(pts: float | None) -> float | None:
        return None if pts is None else timebase.wrap_seconds(float(pts) + adj)

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


def splices_in_ts(path: str | Path) -> list[tuple[float, Splice]]:
    """The SCTE-35 cues carried in an MPEG-TS file, each with its splice time in seconds on the file's PTS
    clock (the cue's own splice time, else the PTS of the packet that carried an immediate cue).

    Cues that do not decode are logged and skipped; a file threefive cannot read gives no cues."""
    try:
        with _quiet():
            cues = list(threefive.Stream(str(path)).decode_next())
    except FileNotFoundError:
        raise
    except Exception as exc:  # threefive raises assorted errors on odd input
        log.warning("could not read SCTE-35 from %s: %s", path, exc)
        return []
    out: list[tuple[float, Splice]] = []
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
        out.append((float(pts), sp))
    return out
