"""The per-stream timeline of sidecar results, and the decision window that reads it.

Sidecars send results stamped in media time and a watermark ("everything up to t is published").
The packager asks ``wait_covered(t_end, deadline)`` before it publishes a segment ending at t_end: it
returns as soon as every *live* sidecar's watermark has passed t_end, or at the deadline — whichever comes
first. A sidecar that is disconnected, stalled or failed is not waited for at all, so it degrades the
output (no captions, a centred crop, the static ladder) without ever holding the stream.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import IO, Any

from sidecast.contract.records import BitrateHint, Crop, Cue, Generic, Result

from .captions import CueStore

log = logging.getLogger("sidecast.timeline")


class Timeline:
    EARLY_MAX = 10_000  # Generic results kept while no results file is open yet

    def __init__(self, results_path: Path | None = None) -> None:
        self._cond = threading.Condition()
        self._watermarks: dict[str, float] = {}
        self._progress_at: dict[str, float] = {}
        self._live: dict[str, bool] = {}
        self.cues = CueStore()  # the replacement rules (partials replaced, finals never rewritten) live there
        self.crops: list[Crop] = []
        self.hints: dict[int, BitrateHint] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self._results_fp: IO[str] | None = open(results_path, "a") if results_path else None  # noqa: SIM115
        # Generic results that came before the file was opened (a sidecar may answer from on_start, before
        # the source is open and the output folder exists): written first when it opens, up to EARLY_MAX.
        self._early: list[str] = []
        self.early_dropped = 0
        self.listeners: list[Any] = []
        self._version = 0  # bumped on every change, so a waiter cannot miss one (``wait_change``)

    def open_results(self, path: Path) -> None:
        """Generic plugin results are appended to this JSON-lines file as they arrive."""
        with self._cond:
            if self._results_fp is None:
                self._results_fp = open(path, "a")  # noqa: SIM115 (closed in close())
                if self._early:
                    self._results_fp.writelines(self._early)
                    self._results_fp.flush()
                    self._early = []
                if self.early_dropped:
                    log.warning("results.jsonl: %d generic results sent before the output was open did not "
                                "fit in memory and were dropped", self.early_dropped)

    # ------------------------------------------------------------ sidecar side

    def set_live(self, name: str, live: bool) -> None:
        with self._cond:
            self._live[name] = live
            self._changed()

    def watermark(self, name: str, pts: float) -> None:
        with self._cond:
            if pts > self._watermarks.get(name, -1.0):
                self._watermarks[name] = pts
                self._progress_at[name] = time.monotonic()
                self._changed()

    def add(self, name: str, result: Result) -> None:
        with self._cond:
            self.counts[name] += 1
            if isinstance(result, Cue):
                if not self.cues.add(result):
                    return  # a final cue is never rewritten
            elif isinstance(result, Crop):
                self.crops.append(result)
            elif isinstance(result, BitrateHint):
                self.hints[result.segment] = result
            elif isinstance(result, Generic):
                line = json.dumps({"sidecar": name, "kind": result.kind, "start": result.start,
                                   "end": result.end, "data": result.data, "labels": result.labels}) + "\n"
                if self._results_fp is not None:
                    self._results_fp.write(line)
                    self._results_fp.flush()
                elif len(self._early) < self.EARLY_MAX:
                    self._early.append(line)
                else:
                    self.early_dropped += 1
            for listener in self.listeners:
                listener(name, result)
            self._changed()

    def _changed(self) -> None:
        self._version += 1
        self._cond.notify_all()

    def poke(self) -> None:
        """Wake every ``wait_change`` waiter: something they also watch (outside the timeline) changed."""
        with self._cond:
            self._changed()

    # ------------------------------------------------------------ packager side

    def live_sidecars(self) -> list[str]:
        with self._cond:
            return [n for n, ok in self._live.items() if ok]

    def watermark_of(self, name: str) -> float:
        with self._cond:
            return self._watermarks.get(name, -1.0)

    def _pending(self, t_end: float, names: list[str] | None) -> list[str]:
        return [n for n, ok in self._live.items()
                if ok and (names is None or n in names) and self._watermarks.get(n, -1.0) < t_end - 1e-6]

    def covered(self, t_end: float, names: list[str] | None = None) -> bool:
        """Whether every live sidecar (of ``names``) has a watermark >= t_end now (``wait_covered`` without
        the wait)."""
        with self._cond:
            return not self._pending(t_end, names)

    def version(self) -> int:
        """A number that changes whenever a result, a watermark or a sidecar's liveness changes (or on
        ``poke``): read it before looking, then ``wait_change`` from it, and no change is missed."""
        with self._cond:
            return self._version

    def wait_change(self, since: int, timeout: float) -> bool:
        """Block until ``version()`` differs from ``since`` or ``timeout`` s pass; True when it changed."""
        with self._cond:
            return self._cond.wait_for(lambda: self._version != since, timeout=timeout)

    def wait_covered(self, t_end: float, deadline: float, names: list[str] | None = None,
                     stall: float | None = None) -> bool:
        """Block until every live sidecar (of ``names``) has a watermark ≥ t_end, or until ``deadline``
        (a ``time.monotonic()`` value). Returns True when covered.

        With ``stall`` (files processed faster than real time, where complete results matter more than
        latency) the deadline moves on while a pending sidecar keeps making progress, and only ``stall``
        seconds without any watermark movement end the wait.
        """
        with self._cond:
            while True:
                pending = self._pending(t_end, names)
                if not pending:
                    return True
                limit = deadline
                if stall is not None:
                    limit = max(deadline, max(self._progress_at.get(n, 0.0) for n in pending) + stall)
                left = limit - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(timeout=min(left, 0.25))

    def cues_between(self, start: float, end: float, track: str = "", final_only: bool = True) -> list[Cue]:
        """Cues of ``track`` on screen during [start, end); partial ones only when ``final_only`` is False."""
        with self._cond:
            return self.cues.cues_between(start, end, track=track, include_partial=not final_only)

    def final_cues(self, track: str = "") -> list[Cue]:
        with self._cond:
            return self.cues.finals(track)

    def hint_for(self, segment: int) -> BitrateHint | None:
        with self._cond:
            return self.hints.get(segment)

    def close(self) -> None:
        if self._results_fp is not None:
            self._results_fp.close()
            self._results_fp = None
