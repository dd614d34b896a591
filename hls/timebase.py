"""The one clock: MPEG-TS time (90 kHz, 33 bits), the core's PTS offset, and wall-clock PDT text.

Everything that turns seconds into PTS or back goes through here: the encoder stamping frames, the
WebVTT X-TIMESTAMP-MAP, SCTE-35 splice times, the stitcher rebasing caption maps, and the tests.

- MPEG-TS timestamps count a 90 kHz clock in 33 bits (ISO/IEC 13818-1 §2.4.3.7), so they wrap every
  2**33 / 90000 s (about 26.5 h). Code keeps *unwrapped* tick counts internally and wraps only where the
  wire needs it (``wrap``); a wrapped value read from the wire is placed back with ``unwrap`` next to a
  time it is known to be near.
- The core writes media time t (seconds from the start of the stream) as PTS ``PTS_OFFSET + t * 90000``:
  media time 0 is PTS 900000 (10 s), which leaves room for B-frame DTS below the first PTS.
- EXT-X-PROGRAM-DATE-TIME is ISO 8601 with milliseconds; written in UTC with ``Z`` (RFC 8216bis §4.4.4.6).
"""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

CLOCK = 90_000                    # ticks per second
TIME_BASE = Fraction(1, CLOCK)    # for PyAV streams and frames
WRAP = 1 << 33                    # PTS/DTS are 33-bit
WRAP_SECONDS = WRAP / CLOCK
PTS_OFFSET = 900_000              # the PTS of media time 0 in the core's output
PTS_OFFSET_SECONDS = PTS_OFFSET / CLOCK


def ticks(t: float) -> int:
    """Seconds → 90 kHz ticks (rounded to the nearest tick)."""
    return round(t * CLOCK)


def seconds(n: int) -> float:
    """90 kHz ticks → seconds."""
    return n / CLOCK


def wrap(pts: int) -> int:
    """An unwrapped tick count as the 33-bit field carries it."""
    return pts % WRAP


def unwrap(pts: int, near: int) -> int:
    """The tick count that wraps to ``wrap(pts)`` and lies closest to ``near`` (both in ticks)."""
    half = WRAP // 2
    return near + (pts - near + half) % WRAP - half


def wrap_seconds(t: float) -> float:
    """Seconds on the 33-bit clock (what a splice time in a SCTE-35 cue means)."""
    return t % WRAP_SECONDS


def unwrap_seconds(t: float, near: float) -> float:
    """The time ``t + k * WRAP_SECONDS`` closest to ``near``: where a wrapped clock reading belongs."""
    half = WRAP_SECONDS / 2
    return near + (t - near + half) % WRAP_SECONDS - half


def media_to_pts(t: float) -> int:
    """The unwrapped PTS (ticks) of media time ``t`` in the core's output; ``wrap`` it for the wire."""
    return PTS_OFFSET + ticks(t)


def pts_to_media(pts: int, near: float = 0.0) -> float:
    """The media time of a (possibly wrapped) PTS in the core's output, taking the wrap nearest ``near``."""
    return seconds(unwrap(pts, media_to_pts(near)) - PTS_OFFSET)


def format_pdt(dt: datetime) -> str:
    """``2026-05-01T18:00:00.000Z``: ISO 8601 in UTC with milliseconds, as RFC 8216bis §4.4.4.6 wants.

    A naive datetime is taken as UTC (the core's clocks are all UTC)."""
    if dt.tzinfo is not UTC:
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_pdt(text: str) -> datetime:
    """An EXT-X-PROGRAM-DATE-TIME or START-DATE value → an aware datetime (no offset = UTC).

    Raises ValueError with the text when it is not an ISO 8601 date-time."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except (ValueError, OverflowError):
        raise ValueError(f"{text!r} is not an ISO 8601 date-time") from None
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)
