"""Ad breaks in the core: where they come from (SCTE-35 in the source, ``--break-at``, the HTTP API) and
how they are signalled in every media playlist.

A break forces a segment boundary (hence an IDR, since every segment starts with one) at its start and at
its end, so a stitcher can swap whole segments. Each playlist then carries, on the segments concerned:
- ``EXT-X-DATERANGE`` with ``SCTE35-OUT`` (the original section, when there is one), ``START-DATE`` (the
  segment's PROGRAM-DATE-TIME) and ``PLANNED-DURATION`` (RFC 8216bis §4.4.5.1.1);
- ``EXT-X-CUE-OUT:DURATION=d`` on the first segment, ``EXT-X-CUE-OUT-CONT:ElapsedTime=e,Duration=d`` on the
  following ones and ``EXT-X-CUE-IN`` on the first segment after the break (the de-facto dialect SSAI
  servers read). ``breaks.jsonl`` in OUTDIR lists every break for tools.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .playlist import format_pdt

log = logging.getLogger("sidecast.breaks")

PTS_WRAP_S = 2**33 / 90_000


@dataclass
class Break:
    id: str
    start: float                # media seconds
    duration: float | None      # None: open until a CUE-IN / splice-in arrives
    source: str                 # "scte35", "cli", "api"
    scte35: bytes = b""

    @property
    def end(self) -> float | None:
        return None if self.duration is None else self.start + self.duration


class BreakSchedule:
    """Breaks by media time, thread-safe (the HTTP API adds breaks while the ingest thread reads)."""

    def __init__(self, log_path: Path | None = None) -> None:
        self._lock = threading.Lock()
        self.breaks: list[Break] = []
        self._cuts: list[float] = []
        self._log_path = log_path

    def add(self, brk: Break) -> None:
        with self._lock:
            if any(abs(b.start - brk.start) < 0.05 for b in self.breaks):
                log.info("duplicate break ignored", extra={"id": brk.id, "start": brk.start})
                return
            self.breaks.append(brk)
            self.breaks.sort(key=lambda b: b.start)
            for t in (brk.start, brk.end):
                if t is not None:
                    bisect.insort(self._cuts, t)
        log.info("ad break scheduled", extra={"id": brk.id, "start": round(brk.start, 3),
                                              "duration": brk.duration, "source": brk.source})

    def end_open_break(self, t: float) -> None:
        """A splice-in: close the latest open break at t."""
        with self._lock:
            for b in reversed(self.breaks):
                if b.duration is None and b.start < t:
                    b.duration = t - b.start
                    bisect.insort(self._cuts, t)
                    return
        log.warning("SCTE-35 splice-in without an open break ignored", extra={"t": round(t, 3)})

    def cut_due(self, t: float, half_frame: float) -> bool:
        """True when a forced boundary falls at or before the frame at ``t`` (consumes it)."""
        with self._lock:
            due = False
            while self._cuts and self._cuts[0] <= t + half_frame:
                self._cuts.pop(0)
                due = True
            return due

    def tags_for(self, start: float, end: float, pdt: datetime) -> tuple[str, ...]:
        """Playlist tags for the segment [start, end)."""
        eps = 0.02
        tags: list[str] = []
        with self._lock:
            breaks = list(self.breaks)
        for b in breaks:
            if abs(b.start - start) < eps + 1 / 60:
                dur = f"{b.duration:.3f}" if b.duration is not None else None
                attrs = [f'ID="{b.id}"', f'START-DATE="{format_pdt(pdt)}"']
                if dur:
                    attrs.append(f"PLANNED-DURATION={dur}")
                if b.scte35:
                    attrs.append(f"SCTE35-OUT=0x{b.scte35.hex().upper()}")
                tags.append("#EXT-X-DATERANGE:" + ",".join(attrs))
                tags.append(f"#EXT-X-CUE-OUT:DURATION={dur}" if dur else "#EXT-X-CUE-OUT")
            elif b.start + eps < start and (b.end is None or start < b.end - eps):
                elapsed = start - b.start
                tags.append(f"#EXT-X-CUE-OUT-CONT:ElapsedTime={elapsed:.3f}"
                            + (f",Duration={b.duration:.3f}" if b.duration is not None else ""))
            elif b.end is not None and abs(b.end - start) < eps + 1 / 60:
                tags.append("#EXT-X-CUE-IN")
        return tuple(tags)

    def write_log(self, path: Path) -> None:
        with self._lock:
            rows = [{"id": b.id, "start": round(b.start, 3), "duration": b.duration, "source": b.source,
                     "scte35": b.scte35.hex() if b.scte35 else None} for b in self.breaks]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def media_time_of_splice(pts_seconds: float, offset: float, now: float) -> float:
    """Map a splice time on the 33-bit PTS clock to media time, choosing the wrap nearest ``now``."""
    t = pts_seconds + offset
    while t < now - PTS_WRAP_S / 2:
        t += PTS_WRAP_S
    while t > now + PTS_WRAP_S / 2:
        t -= PTS_WRAP_S
    return t


def parse_break_at(spec: str) -> tuple[float, float]:
    """``--break-at 30:20`` = a 20 s break at media time 30 s (duration defaults to 30 s)."""
    at, _, dur = spec.partition(":")
    try:
        start, duration = float(at), float(dur) if dur else 30.0
    except ValueError as exc:
        raise ValueError(f"bad --break-at {spec!r}: expected SECONDS[:DURATION]") from exc
    if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 or not (0 < duration <= 600):
        raise ValueError(f"bad --break-at {spec!r}: start ≥ 0 and 0 < duration ≤ 600")
    return start, duration
