"""Caption carriage: cues from the stt sidecar into WebVTT segments for HLS, and whole transcripts for VOD.

Pure functions over ``Cue`` records, plus ``CueStore`` (the stream's cues with the replacement rules: the
core's timeline keeps every caption result in one) and one writer that touches files. The packager calls ``render_vtt_segment`` once per segment, with the same window as the
video segment, so subtitles line up segment for segment with the video.

Why we write our own segmenter instead of FFmpeg's: a live WebVTT segment needs an ``X-TIMESTAMP-MAP``
header tying its local clock to the video's MPEG-TS PTS (players place cues with it), and a cue that is on
screen across a segment boundary must be repeated in every segment it touches, or a player that joins (or
seeks) mid-cue never shows it. Players de-duplicate repeated cues with identical timing and text.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sidecast.contract.records import Cue
from sidecast.hls import timebase


def vtt_timestamp(seconds: float) -> str:
    """WebVTT time ``HH:MM:SS.mmm``; hours grow past 99 for very long streams, which WebVTT allows."""
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(f"WebVTT times must be finite and non-negative, got {seconds!r}")
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _escape(text: str) -> str:
    # A blank line would end the cue early, and "-->" inside a payload confuses some parsers.
    lines = [ln.strip() for ln in text.replace("\r", "").split("\n")]
    body = "\n".join(ln for ln in lines if ln)
    return body.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("-->", "--&gt;")


def cue_identifier(cue: Cue) -> str:
    """The WebVTT cue identifier of ``cue``: the same in every segment and part that carries it, and
    different for different cues, so players keep one copy. hls.js de-duplicates by it; without one it
    hashes the start time it computed, which differs in the last bits from part to part (each part has its
    own X-TIMESTAMP-MAP), and a cue carried by three low-latency parts was shown three times over. The
    sidecar's id alone may come back after a sidecar restart, so the start time is part of it."""
    base = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in (cue.id or "cue"))[:64]
    return f"{base}@{vtt_timestamp(cue.start)}"


def _cue_block(cue: Cue) -> str:
    return (f"{cue_identifier(cue)}\n{vtt_timestamp(cue.start)} --> {vtt_timestamp(max(cue.end, cue.start))}\n"
            f"{_escape(cue.text)}\n")


def cues_shown_during(cues: Iterable[Cue], start: float, end: float) -> list[Cue]:
    """Cues on screen at any moment of [start, end), in display order; empty-text cues are skipped."""
    shown = [c for c in cues if c.start < end and c.end > start and _escape(c.text)]
    return sorted(shown, key=lambda c: (c.start, c.end))


def render_vtt_segment(cues: Iterable[Cue], seg_start: float, seg_end: float, video_pts90k: int) -> str:
    """One WebVTT media segment for the window [seg_start, seg_end).

    ``video_pts90k`` is the PTS of the video at ``seg_start`` as the TS muxer wrote it (the core computes
    ``timebase.media_to_pts(seg_start)``, or passes the first video DTS where players anchor on that). It
    is wrapped to 33 bits here, so callers may pass an unwrapped value. Cue times stay in media seconds: the
    header says media time ``seg_start`` is that PTS. A window where nobody speaks yields a header-only
    segment, which players accept and which keeps the subtitle playlist in step with the video.
    """
    if seg_end < seg_start:
        raise ValueError(f"segment ends ({seg_end}) before it starts ({seg_start})")
    mpegts = timebase.wrap(int(video_pts90k))
    out = ["WEBVTT", f"X-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:{vtt_timestamp(seg_start)}", ""]
    for cue in cues_shown_during(cues, seg_start, seg_end):
        out.append(_cue_block(cue))
    return "\n".join(out).rstrip("\n") + "\n"


@dataclass
class _Entry:
    cue: Cue
    seq: int


class CueStore:
    """The cues received so far, per track, with the sidecar's replacement rules applied.

    A partial cue (``final=False``) is replaced by any later cue with the same id, and dropped once a final
    cue of its track covers its start. A final cue is never rewritten: a later cue with the same id is
    ignored, so text that reached a published segment stays what it was.
    """

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], _Entry] = {}
        self._seq = 0

    def add(self, cue: Cue) -> bool:
        """Take one cue from the sidecar; returns whether it changed what the store holds."""
        self._seq += 1
        key = (cue.track, cue.id or f"@{cue.start:.3f}:{cue.text}")
        old = self._by_key.get(key)
        if old is not None and old.cue.final:
            return False
        self._by_key[key] = _Entry(cue, self._seq)
        if cue.final:
            stale = [k for k, e in self._by_key.items()
                     if k != key and k[0] == cue.track and not e.cue.final and cue.start <= e.cue.start < cue.end]
            for k in stale:
                del self._by_key[k]
        return True

    def cues_between(self, a: float, b: float, track: str = "", include_partial: bool = False) -> list[Cue]:
        """Cues of ``track`` on screen during [a, b); partial ones only when asked (they may still change)."""
        return cues_shown_during(
            (e.cue for e in self._by_key.values()
             if e.cue.track == track and (e.cue.final or include_partial)), a, b)

    def finals(self, track: str = "") -> list[Cue]:
        return sorted((e.cue for e in self._by_key.values() if e.cue.track == track and e.cue.final),
                      key=lambda c: (c.start, c.end))


class CaptionCarrier:
    """Decides which cues each WebVTT segment carries, remembering what earlier segments carried.

    Live segments are immutable once published. A final cue that arrives after every segment it belongs
    to was published (the recogniser was slower than the decision window) would be lost for live
    viewers; here it is shown late instead: re-timed to the start of the next segment (after whatever
    is still on screen there), for its own duration clamped to [min_display, late_hold]. A cue carried
    once keeps the same timing in every later segment it touches, so players de-duplicate it.

    Feed it the final cues that may matter: those ending after ``seg_start - lookback`` (a cue that
    ended before the lookback is not shown late any more).
    """

    def __init__(self, min_display: float = 1.0, late_hold: float = 3.0, lookback: float = 30.0) -> None:
        self.min_display = min_display
        self.late_hold = late_hold
        self.lookback = lookback
        self._display: dict[tuple[str, str], Cue] = {}
        self.late_count = 0

    @staticmethod
    def _key(c: Cue) -> tuple[str, str]:
        return (c.track, c.id or f"@{c.start:.3f}:{c.text}")

    def segment_cues(self, cues: Iterable[Cue], seg_start: float, seg_end: float) -> list[Cue]:
        on_time: list[Cue] = []
        late: list[Cue] = []
        for c in cues:
            if not c.final or not _escape(c.text):
                continue
            shown = self._display.get(self._key(c))
            if shown is not None:
                on_time.append(shown)
            elif c.end > seg_start:
                on_time.append(c)
            elif c.end > seg_start - self.lookback:
                late.append(c)
        window = cues_shown_during(on_time, seg_start, seg_end)
        t = max([seg_start, *(c.end for c in window if c.start <= seg_start)])
        upcoming = [c.start for c in window if c.start > seg_start]
        limit = min(upcoming) if upcoming else None
        for c in sorted(late, key=lambda c: (c.start, c.end)):
            end = t + min(max(c.end - c.start, self.min_display), self.late_hold)
            if limit is not None:
                end = min(end, limit)
            if end - t < 0.3 or t >= seg_end:
                break  # no room on screen: the cue stays in the transcript only
            moved = dataclasses.replace(c, start=t, end=end)
            self._display[self._key(c)] = moved
            window.append(moved)
            self.late_count += 1
            t = end
        for c in window:
            self._display.setdefault(self._key(c), c)
        for k in [k for k, c in self._display.items() if c.end < seg_start - 2 * self.lookback]:
            del self._display[k]
        return sorted(window, key=lambda c: (c.start, c.end))


def render_vtt_part(cues: Iterable[Cue], start: float, end: float, video_pts90k: int) -> str:
    """A low-latency WebVTT part for [start, end): like ``render_vtt_segment``, but a cue that was decided
    after the part it belonged to was published is kept with its own, earlier times (it is carried by a
    later part, never re-timed, never shown early)."""
    head = render_vtt_segment([], start, end, video_pts90k).rstrip("\n")
    blocks = [_cue_block(c) for c in sorted(cues, key=lambda c: (c.start, c.end)) if _escape(c.text)]
    return "\n\n".join([head, *blocks]).rstrip("\n") + "\n"


def render_transcript_vtt(cues: Sequence[Cue]) -> str:
    """A whole-stream WebVTT file (no timestamp map: times are media seconds from the start)."""
    out = ["WEBVTT", ""]
    for c in sorted((c for c in cues if _escape(c.text)), key=lambda c: (c.start, c.end)):
        out.append(_cue_block(c))
    return "\n".join(out).rstrip("\n") + "\n"


def transcript_document(cues: Sequence[Cue]) -> dict[str, object]:
    """The JSON transcript: cues with their word timings, and the running text, for search and editing."""
    ordered = sorted(cues, key=lambda c: (c.start, c.end))
    return {
        "format": "sidecast-transcript/1",
        "language": ordered[0].language if ordered else "",
        "text": " ".join(" ".join(c.text.split()) for c in ordered),
        "cues": [
            {
                "id": c.id,
                "start": round(c.start, 3),
                "end": round(c.end, 3),
                "text": c.text,
                "language": c.language,
                "track": c.track,
                "words": [
                    {"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3),
                     "probability": round(float(w.probability), 3)}
                    for w in c.words
                ],
            }
            for c in ordered
        ],
    }


def write_transcript(cues: Iterable[Cue], path_vtt: str | Path, path_json: str | Path) -> None:
    """Write the final cues of one track as WebVTT and as JSON with word timings (for VOD use).

    Partial cues are left out: a transcript only holds text the recogniser committed. Files are written
    to a temporary name and renamed, so a reader never sees half a file.
    """
    finals = [c for c in cues if c.final]
    for path, text in ((Path(path_vtt), render_transcript_vtt(finals)),
                       (Path(path_json), json.dumps(transcript_document(finals), ensure_ascii=False, indent=1))):
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
