"""HLS playlists as the core writes them: media playlists with a live window, and master playlists.

Written by hand rather than with the m3u8 package because the writer's rules are few and strict and must
hold across the whole life of a live stream (RFC 8216bis §6.2.2):
- a segment, once listed, never changes (URI, duration, PDT, discontinuity);
- EXT-X-MEDIA-SEQUENCE grows by exactly the number of segments that slid out of the window, and
  EXT-X-DISCONTINUITY-SEQUENCE by the number of discontinuities that slid out with them;
- EXT-X-TARGETDURATION never changes (it is fixed from the configured segment duration up front);
- every segment carries EXT-X-PROGRAM-DATE-TIME.
Files are replaced atomically (write a temp file, rename), so a player never reads half a playlist.
Tests read the output back with the m3u8 package.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


def atomic_write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    data = text.encode() if isinstance(text, str) else text
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def format_pdt(dt: datetime) -> str:
    """ISO 8601 with milliseconds and an explicit offset, as RFC 8216bis §4.4.4.6 wants."""
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Segment:
    uri: str
    duration: float
    pdt: datetime
    discontinuity: bool = False
    bytes: int = 0
    tags: tuple[str, ...] = ()  # written before the segment: ad-break signalling (DATERANGE, CUE-OUT/IN)


class MediaPlaylist:
    """One rendition's media playlist. ``window=0`` keeps every segment (an EVENT playlist)."""

    def __init__(self, path: Path, target_duration: float, window: int = 0, version: int = 3) -> None:
        self.path = path
        self.target_duration = int(math.ceil(target_duration))
        self.window = window
        self.version = version
        self.segments: deque[Segment] = deque()
        self.media_sequence = 0
        self.discontinuity_sequence = 0
        self.ended = False
        self.total = 0

    def add(self, segment: Segment) -> None:
        if self.ended:
            raise RuntimeError(f"{self.path}: segment added after the end of the stream")
        if segment.duration > self.target_duration + 0.5:
            # Rounded duration must not exceed the target duration (RFC 8216bis §4.4.3.1).
            raise ValueError(
                f"{self.path}: segment of {segment.duration:.3f}s exceeds target duration {self.target_duration}s"
            )
        self.segments.append(segment)
        self.total += 1
        if self.window > 0:
            while len(self.segments) > self.window:
                gone = self.segments.popleft()
                self.media_sequence += 1
                # A discontinuity tag belongs to the segment after it: it leaves with that segment.
                if gone.discontinuity:
                    self.discontinuity_sequence += 1
        self.write()

    def end(self) -> None:
        self.ended = True
        self.write()

    def render(self) -> str:
        lines = [
            "#EXTM3U",
            f"#EXT-X-VERSION:{self.version}",
            f"#EXT-X-TARGETDURATION:{self.target_duration}",
            f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}",
        ]
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        if self.window == 0:
            lines.append("#EXT-X-PLAYLIST-TYPE:" + ("VOD" if self.ended else "EVENT"))
        lines.append("#EXT-X-INDEPENDENT-SEGMENTS")
        for i, seg in enumerate(self.segments):
            if seg.discontinuity and not (i == 0 and self.media_sequence == 0):
                lines.append("#EXT-X-DISCONTINUITY")
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(seg.pdt)}")
            lines.extend(seg.tags)
            lines.append(f"#EXTINF:{seg.duration:.5f},")
            lines.append(seg.uri)
        if self.ended:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def write(self) -> None:
        atomic_write(self.path, self.render())


@dataclass(frozen=True)
class VariantStream:
    uri: str
    bandwidth: int
    average_bandwidth: int
    width: int
    height: int
    codecs: str
    frame_rate: float


@dataclass(frozen=True)
class Media:
    type: str  # AUDIO or SUBTITLES
    group_id: str
    name: str
    uri: str
    language: str = ""
    default: bool = True
    autoselect: bool = True
    channels: str = ""


def render_master(variants: list[VariantStream], media: list[Media], audio_group: str | None,
                  subtitles_group: str | None) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:4", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for m in media:
        attrs = [f"TYPE={m.type}", f'GROUP-ID="{m.group_id}"', f'NAME="{m.name}"']
        if m.language:
            attrs.append(f'LANGUAGE="{m.language}"')
        attrs.append(f"DEFAULT={'YES' if m.default else 'NO'}")
        attrs.append(f"AUTOSELECT={'YES' if m.autoselect else 'NO'}")
        if m.channels:
            attrs.append(f'CHANNELS="{m.channels}"')
        attrs.append(f'URI="{m.uri}"')
        lines.append("#EXT-X-MEDIA:" + ",".join(attrs))
    for v in variants:
        attrs = [
            f"BANDWIDTH={v.bandwidth}",
            f"AVERAGE-BANDWIDTH={v.average_bandwidth}",
            f"RESOLUTION={v.width}x{v.height}",
            f'CODECS="{v.codecs}"',
            f"FRAME-RATE={v.frame_rate:.3f}",
        ]
        if audio_group:
            attrs.append(f'AUDIO="{audio_group}"')
        if subtitles_group:
            attrs.append(f'SUBTITLES="{subtitles_group}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(v.uri)
    return "\n".join(lines) + "\n"
