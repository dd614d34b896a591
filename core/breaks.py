"""Ad breaks in the core: where they come from (SCTE-35 in the source, ``--break-at``, the HTTP API) and
when they force segment boundaries.

A break forces a segment boundary (hence an IDR, since every segment starts with one) at its start and at
its end, so a stitcher can swap whole segments. Every media playlist then signals it on the segments
concerned (EXT-X-DATERANGE, EXT-X-CUE-OUT / -CONT / -IN: ``sidecast.hls.breaks.segment_signal``, the same
module the ads read it back with). ``breaks.jsonl`` in OUTDIR lists every break for tools.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from sidecast.hls import DateRange
from sidecast.hls.breaks import Break, BreakSignal, announcement, segment_signal

log = logging.getLogger("sidecast.breaks")


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
            for i in range(len(self.breaks) - 1, -1, -1):
                b = self.breaks[i]
                if b.duration is None and b.start < t:
                    self.breaks[i] = replace(b, duration=t - b.start)
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

    def announce(self, now: float, pdt_at: Callable[[float], datetime]) -> None:
        """Fix the START-DATE of every break still ahead of media time ``now`` (once: it is published)."""
        with self._lock:
            for i, b in enumerate(self.breaks):
                if b.start_date is None and b.start > now:
                    self.breaks[i] = replace(b, start_date=pdt_at(b.start))

    def upcoming(self, after: datetime) -> list[DateRange]:
        """Announcements of the breaks that start after wall clock ``after`` (not yet in any segment)."""
        with self._lock:
            return [announcement(b) for b in self.breaks if b.start_date is not None and b.start_date > after]

    def signal_for(self, start: float, pdt: datetime) -> BreakSignal:
        """The break signalling of the segment that starts at media time ``start`` (wall clock ``pdt``)."""
        with self._lock:
            breaks = list(self.breaks)
        return segment_signal(breaks, start, pdt)

    def write_log(self, path: Path) -> None:
        with self._lock:
            rows = [{"id": b.id, "start": round(b.start, 3), "duration": b.duration, "source": b.source,
                     "scte35": b.scte35.hex() if b.scte35 else None} for b in self.breaks]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))


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
