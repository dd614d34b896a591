"""The crop path the vertical encoder follows: analysed crops in (a few per second), a window per output
frame out. Pure: no I/O beyond writing records to a file object the caller owns.

The autocrop sidecar publishes ``Crop`` records at its analysis rate; the core calls ``window_at(t)`` for
every full-rate frame of the vertical rendition, crops the full-resolution frame to that window and scales
it to the vertical ladder (``vertical_ladder``). Between two crops the window moves linearly in time; at a
crop marked ``cut`` it jumps (a shot change must not be bridged by a pan). Windows are clamped inside the
frame and even-sized (yuv420p), and fall back to a centred window before the first crop, when the path is
stale, or when an operator asks for it (``keep_centered``).
"""

from __future__ import annotations

import bisect
import json
import threading
from collections.abc import Iterable
from typing import IO, Any

from sidecast.contract.records import Crop

Window = tuple[int, int, int, int]

#: Vertical ladder heights tried by default (1080x1920 first), each capped at the crop size.
DEFAULT_VERTICAL_HEIGHTS = (1920, 1280, 854, 640)


def _even(v: float) -> int:
    return int(round(v / 2.0)) * 2


def window_size(source_w: int, source_h: int, aspect: tuple[int, int]) -> tuple[int, int]:
    """The largest even window of ``aspect`` (w:h) that fits the source."""
    aw, ah = aspect
    if aw <= 0 or ah <= 0:
        raise ValueError(f"aspect must be two positive numbers, got {aw}:{ah}")
    if source_w * ah >= source_h * aw:
        h = source_h - source_h % 2
        w = int(h * aw / ah)
    else:
        w = source_w - source_w % 2
        h = int(w * ah / aw)
    return max(2, w - w % 2), max(2, h - h % 2)


def vertical_ladder(crop_w: int, crop_h: int, heights: Iterable[int] = DEFAULT_VERTICAL_HEIGHTS,
                    allow_upscale: bool = False, aspect: tuple[int, int] | None = None) -> list[tuple[int, int]]:
    """Output sizes for the vertical renditions: ``heights`` at the target ``aspect`` (default: the crop's
    own ratio), never larger than the crop unless ``allow_upscale`` (upscaling spends bits on detail that
    is not there). Even, distinct, largest first; a crop smaller than every rung gives one rendition at the
    crop size."""
    aw, ah = aspect if aspect is not None else (crop_w, crop_h)
    sizes: list[tuple[int, int]] = []
    for h in sorted(set(heights), reverse=True):
        if not allow_upscale and h >= crop_h:
            size = (crop_w - crop_w % 2, crop_h - crop_h % 2)
        else:
            size = (max(2, _even(h * aw / ah)), max(2, h - h % 2))
        if size not in sizes:
            sizes.append(size)
    return sizes


class CropPath:
    """Crops from the sidecar, answered as one window per output frame.

    ``stale_after``: with no crop within that many seconds of ``t`` the path is considered lost (a dead or
    lagging sidecar) and the window falls back to the centre rather than freezing on an old subject.
    Thread-safe: the sidecar client adds crops while the encoder reads windows.
    """

    def __init__(self, source_w: int, source_h: int, aspect: tuple[int, int] = (9, 16),
                 stale_after: float = 5.0) -> None:
        if source_w < 2 or source_h < 2:
            raise ValueError(f"source size must be at least 2x2, got {source_w}x{source_h}")
        self.source_w, self.source_h = source_w, source_h
        self.aspect = aspect
        self.width, self.height = window_size(source_w, source_h, aspect)
        self.stale_after = stale_after
        # The source's geometry over time: (from media time, source w, source h, window w, window h). A
        # source that changes size mid-stream starts a new epoch; crops of one epoch never steer another.
        self._epochs: list[tuple[float, int, int, int, int]] = [(float("-inf"), source_w, source_h,
                                                                  self.width, self.height)]
        self._times: list[float] = []
        self._crops: list[Crop] = []
        self._centered = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------ input

    def add(self, crop: Crop) -> None:
        """Record one analysed crop (in any order; a crop at an existing time replaces it)."""
        with self._lock:
            i = bisect.bisect_left(self._times, crop.t)
            if i < len(self._times) and self._times[i] == crop.t:
                self._crops[i] = crop
            else:
                self._times.insert(i, crop.t)
                self._crops.insert(i, crop)

    def change_source(self, t: float, source_w: int, source_h: int) -> None:
        """From media time ``t`` the source is ``source_w`` x ``source_h``: windows fit the new picture, and
        crops analysed on the old one no longer apply."""
        w, h = window_size(source_w, source_h, self.aspect)
        with self._lock:
            self._epochs.append((t, source_w, source_h, w, h))
            self._epochs.sort(key=lambda e: e[0])

    def _epoch(self, t: float) -> tuple[int, tuple[float, int, int, int, int]]:
        i = bisect.bisect_right([e[0] for e in self._epochs], t) - 1
        return i, self._epochs[max(0, i)]

    def keep_centered(self, on: bool) -> None:
        """Operator override: ignore the path and keep the window centred until switched off."""
        self._centered = bool(on)

    @property
    def centered(self) -> bool:
        return self._centered

    def ladder(self, heights: Iterable[int] = DEFAULT_VERTICAL_HEIGHTS,
               allow_upscale: bool = False) -> list[tuple[int, int]]:
        """The vertical renditions' sizes for this path's window (see ``vertical_ladder``)."""
        return vertical_ladder(self.width, self.height, heights, allow_upscale, self.aspect)

    def __len__(self) -> int:
        return len(self._crops)

    # ------------------------------------------------------------ output

    def centre_window(self, t: float | None = None) -> Window:
        _, (_, sw, sh, _, _) = self._epoch(t if t is not None else float("inf"))
        return self._place(sw / 2, sh / 2, t)

    def _place(self, cx: float, cy: float, t: float | None = None) -> Window:
        _, (_, sw, sh, w, h) = self._epoch(t if t is not None else float("inf"))
        x = _even(min(max(cx - w / 2, 0), sw - w))
        y = _even(min(max(cy - h / 2, 0), sh - h))
        x = min(x, (sw - w) - (sw - w) % 2)
        y = min(y, (sh - h) - (sh - h) % 2)
        return max(0, x), max(0, y), w, h

    @staticmethod
    def _centre(c: Crop) -> tuple[float, float]:
        return c.x + c.width / 2, c.y + c.height / 2

    def window_at(self, t: float) -> Window:
        """The window (x, y, w, h) for the output frame at media time ``t``."""
        if self._centered:
            return self.centre_window(t)
        with self._lock:
            e, (start, *_) = self._epoch(t)
            end = self._epochs[e + 1][0] if e + 1 < len(self._epochs) else float("inf")
            i = bisect.bisect_right(self._times, t)  # crops[i-1].t <= t < crops[i].t
            before = self._crops[i - 1] if i > 0 else None
            after = self._crops[i] if i < len(self._crops) else None
        # crops analysed on another geometry do not steer this one
        before = before if before is not None and start <= before.t < end else None
        after = after if after is not None and start <= after.t < end else None
        if before is None and after is None:
            return self.centre_window(t)
        near = min(abs(t - c.t) for c in (before, after) if c is not None)
        if near > self.stale_after:
            return self.centre_window(t)
        if before is None:
            assert after is not None
            return self._place(*self._centre(after), t)  # before the first crop: hold it
        if after is None or after.cut or after.t <= before.t:
            return self._place(*self._centre(before), t)  # hold; never slide into a cut
        a = (t - before.t) / (after.t - before.t)
        (bx, by), (ax, ay) = self._centre(before), self._centre(after)
        return self._place(bx + a * (ax - bx), by + a * (ay - by), t)

    # ------------------------------------------------------------ records

    def _between(self, start: float | None, end: float | None) -> list[Crop]:
        with self._lock:
            return [c for c in self._crops
                    if (start is None or c.t >= start) and (end is None or c.t < end)]

    @staticmethod
    def _record(c: Crop) -> dict[str, Any]:
        return {"t": round(c.t, 6), "x": c.x, "y": c.y, "width": c.width, "height": c.height, "mode": c.mode,
                "confidence": round(float(c.confidence), 3), "cut": c.cut}

    def jsonl_records(self, start: float | None = None, end: float | None = None) -> list[dict[str, Any]]:
        """One record per analysed crop with start <= t < end (a segment's span; None = open), for
        ``crops.jsonl``: media time, rectangle, mode, confidence, and whether a shot cut starts there."""
        return [self._record(c) for c in self._between(start, end)]

    def to_jsonl(self, fp: IO[str], start: float | None = None, end: float | None = None) -> int:
        """Write the records of [start, end) as JSON lines (append segment by segment); returns how many."""
        recs = self.jsonl_records(start, end)
        for rec in recs:
            fp.write(json.dumps(rec, separators=(",", ":")) + "\n")
        return len(recs)
