"""LL-HLS delivery directives (RFC 8216bis §6.2.5): blocking playlist reload (``_HLS_msn``, ``_HLS_part``)
and delta updates (``_HLS_skip``).

A player asking for ``index.m3u8?_HLS_msn=N&_HLS_part=P`` is answered as soon as the playlist lists part P
of segment N (or anything after it), not before: it learns of a new part the moment it exists, without
polling. Waiting requests cost no thread: each watched playlist has one poller task (a ``stat`` every
``POLL_S``) shared by everyone waiting on it, so thousands of blocked requests cost as much as one.

Rules from the RFC: a directive on a playlist without ``CAN-BLOCK-RELOAD=YES`` is ignored; malformed values
are 400; a segment more than two past the last one is 400 at once; a request not satisfied within three
target durations is 503.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

POLL_S = 0.005
_INT = re.compile(r"^\d{1,12}$")


class DirectiveError(ValueError):
    """A malformed or impossible delivery directive: answered with 400 and this message."""


@dataclass(frozen=True)
class Edge:
    """Where a low-latency playlist stands: its last segment (complete or being made) and last part."""

    msn: int          # the last segment that has at least one part listed, or the last complete one
    part: int         # the last listed part of that segment (-1: none listed)
    complete: int     # the last complete segment (-1: none)
    target: float     # EXT-X-TARGETDURATION
    can_block: bool
    skip_until: float | None
    ended: bool


def playlist_edge(text: str) -> Edge:
    media_sequence, target = 0, 6.0
    can_block, skip_until, ended = False, None, False
    segments, parts_since, last_parts = 0, 0, 0
    for line in text.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            media_sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-TARGETDURATION:"):
            target = float(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-SERVER-CONTROL:"):
            attrs = dict(a.split("=", 1) for a in line.split(":", 1)[1].split(",") if "=" in a)
            can_block = attrs.get("CAN-BLOCK-RELOAD") == "YES"
            if "CAN-SKIP-UNTIL" in attrs:
                skip_until = float(attrs["CAN-SKIP-UNTIL"])
        elif line.startswith("#EXT-X-PART:"):
            parts_since += 1
        elif line.startswith("#EXT-X-ENDLIST"):
            ended = True
        elif line and not line.startswith("#"):
            segments += 1
            last_parts = parts_since
            parts_since = 0
    complete = media_sequence + segments - 1
    if parts_since:
        return Edge(complete + 1, parts_since - 1, complete, target, can_block, skip_until, ended)
    return Edge(complete, (last_parts - 1) if segments else -1, complete, target, can_block, skip_until, ended)


@dataclass(frozen=True)
class Directives:
    msn: int | None = None
    part: int | None = None
    skip: bool = False

    @property
    def blocking(self) -> bool:
        return self.msn is not None


def parse_directives(query: Mapping[str, str]) -> Directives:
    msn_s, part_s, skip_s = query.get("_HLS_msn"), query.get("_HLS_part"), query.get("_HLS_skip")
    if msn_s is None and part_s is not None:
        raise DirectiveError("_HLS_part needs _HLS_msn")
    for name, value in (("_HLS_msn", msn_s), ("_HLS_part", part_s)):
        if value is not None and not _INT.match(value):
            raise DirectiveError(f"{name} must be a non-negative integer, not {value[:40]!r}")
    if skip_s is not None and skip_s not in ("YES", "v2"):
        raise DirectiveError(f"_HLS_skip must be YES or v2, not {skip_s[:40]!r}")
    return Directives(int(msn_s) if msn_s is not None else None, int(part_s) if part_s is not None else None,
                      skip_s is not None)


def satisfied(edge: Edge, d: Directives) -> bool:
    assert d.msn is not None
    if edge.ended:
        return True
    if d.part is None:  # the whole segment N
        return edge.complete >= d.msn
    return edge.msn > d.msn or (edge.msn == d.msn and edge.part >= d.part)


class Watcher:
    """One poller per playlist path while anyone waits on it; waiters are woken on every change."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self._waiters: dict[str, int] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def _poll(self, path: str) -> None:
        last = None
        while self._waiters.get(path, 0) > 0:
            try:
                st = os.stat(path)
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            except OSError:
                stamp = None
            if stamp != last:
                last = stamp
                ev = self._events.pop(path, None)
                if ev is not None:
                    ev.set()
            await asyncio.sleep(POLL_S)
        self._tasks.pop(path, None)

    async def changed(self, path: str, timeout: float) -> None:
        """Return at the playlist's next change (or after ``timeout``)."""
        ev = self._events.setdefault(path, asyncio.Event())
        self._waiters[path] = self._waiters.get(path, 0) + 1
        if path not in self._tasks:
            self._tasks[path] = asyncio.get_running_loop().create_task(self._poll(path))
        try:
            await asyncio.wait_for(ev.wait(), timeout)
        except TimeoutError:
            pass
        finally:
            self._waiters[path] -= 1
            if not self._waiters[path]:
                del self._waiters[path]


def delta(text: str, edge: Edge) -> str:
    """The playlist with its older segments replaced by EXT-X-SKIP (RFC 8216bis §6.2.5.1): segments are
    kept from the end back to CAN-SKIP-UNTIL; the rest are skipped (their DATERANGEs too are dropped,
    which the player keeps from earlier reloads)."""
    if edge.skip_until is None:
        return text
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("#EXTINF:")]
    if not starts:
        return text
    durations = [float(lines[i].split(":", 1)[1].split(",", 1)[0]) for i in starts]
    keep_from, total = len(starts), 0.0
    while keep_from > 0 and total + durations[keep_from - 1] <= edge.skip_until:
        keep_from -= 1
        total += durations[keep_from]
    skipped = keep_from
    if skipped == 0:
        return text
    # where the first skipped segment's tags begin (EXT-X-MAP stays: it applies to every segment)
    header_end = starts[0]
    while header_end > 0 and lines[header_end - 1].startswith(SEGMENT_TAGS):
        header_end -= 1
    kept_start = starts[keep_from]
    while kept_start > 0 and lines[kept_start - 1].startswith(SEGMENT_TAGS):
        kept_start -= 1
    out = [*lines[:header_end], f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}", *lines[kept_start:]]
    return "\n".join(out) + "\n"


# Tags that belong to the segment after them (they travel with it when segments are skipped).
SEGMENT_TAGS = ("#EXT-X-PROGRAM-DATE-TIME", "#EXT-X-DATERANGE", "#EXT-X-PART:", "#EXT-X-DISCONTINUITY",
                "#EXT-X-KEY", "#EXT-X-CUE", "#EXT-X-BYTERANGE", "#EXT-X-GAP", "#EXT-X-BITRATE")


__all__ = ["Directives", "DirectiveError", "Edge", "Watcher", "delta", "parse_directives", "playlist_edge",
           "satisfied", "POLL_S"]
