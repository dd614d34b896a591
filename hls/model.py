"""HLS playlists as plain records that dump themselves: the one model the core and the ads share.

The core builds media and multivariant (master) playlists from these records (``live.LivePlaylist`` keeps
the live window); the ads parse an origin's playlists into them (``parse``) and transform them with pure
functions (SSAI stitching, SGAI interstitials) before dumping them per session.

What the model keeps, so that a playlist read and dumped again means the same (RFC 8216bis):
- EXT-X-DATERANGE with every attribute as written (``CUE``, ``DURATION=0``, ``X-*``), wherever it stands:
  before a segment, after the last one, after EXT-X-ENDLIST;
- EXT-X-KEY and EXT-X-MAP as the *state* each segment plays under (``Segment.keys``, ``init_section``), and
  written again wherever that state changes: a transformed or windowed playlist never loses the key or
  initialization section of its first segment, and an ad with its own EXT-X-MAP gets it back after it;
- low-latency tags: EXT-X-PART (per segment, and the parts of the segment still being built),
  EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT, EXT-X-SERVER-CONTROL / PART-INF / SKIP in the header;
- every other tag verbatim, on the segment it preceded (EXT-X-CUE-OUT/-CONT/-IN, EXT-X-BYTERANGE, EXT-X-GAP,
  vendor tags) or in the header / at the end.
What it normalises: number formatting (shortest exact decimal), PDT text (UTC, ``Z``, milliseconds), tag
order within one segment, redundant repeats of the same EXT-X-KEY / EXT-X-MAP, and blank lines.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from . import tags as T
from .attributes import format_attributes, format_decimal, number, parse_attributes, quote, string
from .timebase import format_pdt, parse_pdt

UriMap = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class AttributeTag:
    """A tag whose value is an attribute list, kept as written (``attrs``: name → value text, quoted
    strings with their quotes). Subclasses name the tag and add readers for the attributes they care
    about; a dump writes back exactly the attributes that were read."""

    attrs: dict[str, str]
    TAG: ClassVar[str] = ""

    def string(self, name: str) -> str | None:
        return string(self.attrs, name)

    def number(self, name: str) -> float | None:
        return number(self.attrs, name)

    def date(self, name: str) -> datetime | None:
        """A date-time attribute (START-DATE, END-DATE), or None when absent or not a date-time."""
        v = self.string(name)
        try:
            return parse_pdt(v) if v else None
        except ValueError:
            return None

    @property
    def uri(self) -> str | None:
        return self.string("URI")

    def with_uri(self, fn: UriMap) -> Self:
        """The same tag with its URI attribute (if any) mapped by ``fn``."""
        uri = self.uri
        if uri is None:
            return self
        return replace(self, attrs={**self.attrs, "URI": quote(fn(uri))})

    def dumps(self) -> str:
        return f"{self.TAG}:{format_attributes(self.attrs)}"


@dataclass(frozen=True, slots=True)
class DateRange(AttributeTag):
    """EXT-X-DATERANGE (§4.4.5.1): a span of wall-clock time with attributes (ads, interstitials...)."""

    TAG: ClassVar[str] = T.EXT_X_DATERANGE

    @property
    def id(self) -> str:
        return self.string("ID") or ""

    @property
    def cls(self) -> str:
        return self.string("CLASS") or ""

    @property
    def start_date(self) -> datetime | None:
        return self.date("START-DATE")

    @property
    def end(self) -> datetime | None:
        """Where the range ends: END-DATE, else START-DATE + DURATION (or PLANNED-DURATION); None when the
        tag does not say."""
        if "END-DATE" in self.attrs:
            return self.date("END-DATE")
        start = self.start_date
        d = self.number("DURATION")
        if d is None:
            d = self.number("PLANNED-DURATION")
        if start is None or d is None:
            return None
        try:
            return start + timedelta(seconds=d)
        except OverflowError:
            return None


@dataclass(frozen=True, slots=True)
class Key(AttributeTag):
    """EXT-X-KEY (§4.4.4.4). Keys with different KEYFORMATs apply together."""

    TAG: ClassVar[str] = T.EXT_X_KEY

    @property
    def method(self) -> str:
        return self.string("METHOD") or ""

    @property
    def keyformat(self) -> str:
        return self.string("KEYFORMAT") or "identity"


@dataclass(frozen=True, slots=True)
class Map(AttributeTag):
    """EXT-X-MAP (§4.4.4.5): the media initialization section of the segments that follow."""

    TAG: ClassVar[str] = T.EXT_X_MAP


PART_DURATION_DIGITS = 5
"""A part's DURATION is written to this many decimals (10 us): a writer that must make parts add up to
their segment exactly (core/outputs/subtitles.py) counts in these units."""


@dataclass(frozen=True, slots=True)
class Part(AttributeTag):
    """EXT-X-PART (§4.4.4.9): a partial segment of a low-latency playlist."""

    TAG: ClassVar[str] = T.EXT_X_PART

    @classmethod
    def of(cls, uri: str, duration: float, *, independent: bool = False) -> Part:
        attrs = {"DURATION": format_decimal(round(duration, PART_DURATION_DIGITS)), "URI": quote(uri)}
        if independent:
            attrs["INDEPENDENT"] = "YES"
        return cls(attrs)

    @property
    def duration(self) -> float:
        return self.number("DURATION") or 0.0

    @property
    def independent(self) -> bool:
        return self.attrs.get("INDEPENDENT") == "YES"


@dataclass(frozen=True, slots=True)
class PreloadHint(AttributeTag):
    """EXT-X-PRELOAD-HINT (§4.4.5.3): the next part or map the server is about to publish."""

    TAG: ClassVar[str] = T.EXT_X_PRELOAD_HINT


@dataclass(frozen=True, slots=True)
class RenditionReport(AttributeTag):
    """EXT-X-RENDITION-REPORT (§4.4.5.4): the live edge of another rendition."""

    TAG: ClassVar[str] = T.EXT_X_RENDITION_REPORT


@dataclass(frozen=True, slots=True)
class Segment:
    """A media segment and what belongs to it. Frozen: a segment, once listed, never changes.

    ``tags`` are the lines written before it that the model does not interpret (EXT-X-CUE-OUT,
    EXT-X-BYTERANGE, EXT-X-GAP, vendor tags), kept verbatim and in order. ``dateranges`` are the
    EXT-X-DATERANGE tags written just before it; ``parts`` its EXT-X-PART tags. ``keys`` and
    ``init_section`` are the EXT-X-KEY / EXT-X-MAP in effect for it, wherever they were written.
    """

    uri: str
    duration: float
    title: str = ""
    discontinuity: bool = False
    program_date_time: datetime | None = None
    tags: tuple[str, ...] = ()
    dateranges: tuple[DateRange, ...] = ()
    parts: tuple[Part, ...] = ()
    keys: tuple[Key, ...] = ()
    init_section: Map | None = None

    def with_uris(self, fn: UriMap) -> Segment:
        return replace(self, uri=fn(self.uri), parts=tuple(p.with_uri(fn) for p in self.parts),
                       keys=tuple(k.with_uri(fn) for k in self.keys),
                       init_section=self.init_section.with_uri(fn) if self.init_section else None)


@dataclass(slots=True)
class MediaPlaylist:
    """A media playlist. ``trailing_*`` hold what comes after the last complete segment: tags for a
    segment not listed yet, DATERANGEs placed there (a post-roll), the parts of the segment being built."""

    target_duration: int
    segments: list[Segment] = field(default_factory=list)
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    version: int | None = None
    playlist_type: str | None = None
    endlist: bool = False
    header_tags: list[str] = field(default_factory=list)   # EXT-X-INDEPENDENT-SEGMENTS, EXT-X-START, ...
    trailing_tags: list[str] = field(default_factory=list)
    trailing_dateranges: list[DateRange] = field(default_factory=list)
    trailing_parts: list[Part] = field(default_factory=list)
    preload_hints: list[PreloadHint] = field(default_factory=list)
    rendition_reports: list[RenditionReport] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return sum(s.duration for s in self.segments)

    def dateranges(self) -> list[DateRange]:
        out = [d for s in self.segments for d in s.dateranges]
        out.extend(self.trailing_dateranges)
        return out

    def segment_times(self) -> list[float]:
        """Start of each segment in seconds from the start of this playlist."""
        t, out = 0.0, []
        for s in self.segments:
            out.append(t)
            t += s.duration
        return out

    def program_date_times(self) -> list[datetime | None]:
        """Every segment's wall-clock start: a PDT tag applies to its segment and extrapolates forwards
        (§4.4.4.6) until the next discontinuity without one."""
        out: list[datetime | None] = []
        cur: datetime | None = None
        for s in self.segments:
            if s.program_date_time is not None:
                cur = s.program_date_time
            elif s.discontinuity:
                cur = None
            out.append(cur)
            if cur is not None:
                try:
                    cur = cur + timedelta(seconds=s.duration)
                except OverflowError:
                    cur = None
        return out

    def dumps(self) -> str:
        lines = [T.EXTM3U]
        if self.version is not None:
            lines.append(f"{T.EXT_X_VERSION}:{self.version}")
        lines.append(f"{T.EXT_X_TARGETDURATION}:{self.target_duration}")
        lines.append(f"{T.EXT_X_MEDIA_SEQUENCE}:{self.media_sequence}")
        if self.discontinuity_sequence:
            lines.append(f"{T.EXT_X_DISCONTINUITY_SEQUENCE}:{self.discontinuity_sequence}")
        if self.playlist_type:
            lines.append(f"{T.EXT_X_PLAYLIST_TYPE}:{self.playlist_type}")
        lines.extend(self.header_tags)
        keys: tuple[Key, ...] = ()
        init: Map | None = None
        for s in self.segments:
            if s.discontinuity:
                lines.append(T.EXT_X_DISCONTINUITY)
            if s.keys != keys:
                # A key applies until the next one of its KEYFORMAT: a format that is no longer in use
                # is cleared with METHOD=NONE first, then the whole new set is written.
                if {k.keyformat for k in keys} - {k.keyformat for k in s.keys}:
                    lines.append(f"{T.EXT_X_KEY}:METHOD=NONE")
                lines.extend(k.dumps() for k in s.keys)
                keys = s.keys
            if s.init_section is not None and s.init_section != init:
                lines.append(s.init_section.dumps())
            init = s.init_section
            if s.tags:
                lines.extend(s.tags)
            if s.program_date_time is not None:
                lines.append(f"{T.EXT_X_PROGRAM_DATE_TIME}:{format_pdt(s.program_date_time)}")
            if s.dateranges:
                lines.extend([d.dumps() for d in s.dateranges])
            if s.parts:
                lines.extend([p.dumps() for p in s.parts])
            lines.append(f"{T.EXTINF}:{format_decimal(s.duration)},{s.title}")
            lines.append(s.uri)
        lines.extend(self.trailing_tags)
        lines.extend(d.dumps() for d in self.trailing_dateranges)
        lines.extend(p.dumps() for p in self.trailing_parts)
        lines.extend(h.dumps() for h in self.preload_hints)
        lines.extend(r.dumps() for r in self.rendition_reports)
        if self.endlist:
            lines.append(T.EXT_X_ENDLIST)
        return "\n".join(lines) + "\n"

    def copy(self, **changes: Any) -> MediaPlaylist:
        """A copy with ``changes`` applied and lists of its own, so that a transformed playlist never
        changes the (cached) one it came from."""
        lists: dict[str, Any] = {name: list(getattr(self, name)) for name in _LIST_FIELDS if name not in changes}
        return replace(self, **lists, **changes)

    def with_uris(self, fn: UriMap) -> MediaPlaylist:
        """A copy whose URIs (segments, parts, keys, maps, preload hints, rendition reports) are mapped."""
        return self.copy(segments=[s.with_uris(fn) for s in self.segments],
                         trailing_parts=[p.with_uri(fn) for p in self.trailing_parts],
                         preload_hints=[h.with_uri(fn) for h in self.preload_hints],
                         rendition_reports=[r.with_uri(fn) for r in self.rendition_reports])


_LIST_FIELDS = ("segments", "header_tags", "trailing_tags", "trailing_dateranges", "trailing_parts", "preload_hints",
                "rendition_reports")


def target_duration_for(durations: Iterable[float]) -> int:
    """§4.4.3.1: each EXTINF rounded to the nearest integer must not exceed the target duration."""
    return max((int(math.floor(d + 0.5)) for d in durations), default=1)


# ------------------------------------------------------------------------------------ multivariant


@dataclass(frozen=True, slots=True)
class Rendition(AttributeTag):
    """EXT-X-MEDIA (§4.4.6.1): an audio, subtitle or closed-caption rendition of a group."""

    TAG: ClassVar[str] = T.EXT_X_MEDIA

    @classmethod
    def of(cls, type: str, group_id: str, name: str, uri: str | None = None, *, language: str | None = None,
           default: bool = False, autoselect: bool = False, channels: str | None = None) -> Rendition:
        attrs = {"TYPE": type, "GROUP-ID": quote(group_id), "NAME": quote(name)}
        if language:
            attrs["LANGUAGE"] = quote(language)
        attrs["DEFAULT"] = "YES" if default else "NO"
        attrs["AUTOSELECT"] = "YES" if autoselect else "NO"
        if channels:
            attrs["CHANNELS"] = quote(channels)
        if uri is not None:
            attrs["URI"] = quote(uri)
        return cls(attrs)

    @property
    def type(self) -> str:
        return self.attrs.get("TYPE", "")

    @property
    def group_id(self) -> str:
        return self.string("GROUP-ID") or ""

    @property
    def name(self) -> str:
        return self.string("NAME") or ""

    @property
    def language(self) -> str | None:
        return self.string("LANGUAGE")


@dataclass(frozen=True, slots=True)
class IFrameVariant(AttributeTag):
    """EXT-X-I-FRAME-STREAM-INF (§4.4.6.3): an I-frame playlist; its URI is an attribute."""

    TAG: ClassVar[str] = T.EXT_X_I_FRAME_STREAM_INF


@dataclass(frozen=True, slots=True)
class Variant:
    """EXT-X-STREAM-INF (§4.4.6.2) and the media playlist URI on the line after it."""

    uri: str
    attrs: dict[str, str]

    @classmethod
    def of(cls, uri: str, *, bandwidth: int, average_bandwidth: int | None = None,
           resolution: tuple[int, int] | None = None, codecs: str | None = None, frame_rate: float | None = None,
           audio: str | None = None, subtitles: str | None = None) -> Variant:
        attrs = {"BANDWIDTH": str(int(bandwidth))}
        if average_bandwidth is not None:
            attrs["AVERAGE-BANDWIDTH"] = str(int(average_bandwidth))
        if resolution is not None:
            attrs["RESOLUTION"] = f"{resolution[0]}x{resolution[1]}"
        if codecs:
            attrs["CODECS"] = quote(codecs)
        if frame_rate is not None:
            attrs["FRAME-RATE"] = f"{frame_rate:.3f}"
        if audio:
            attrs["AUDIO"] = quote(audio)
        if subtitles:
            attrs["SUBTITLES"] = quote(subtitles)
        return cls(uri, attrs)

    def string(self, name: str) -> str | None:
        return string(self.attrs, name)

    def number(self, name: str) -> float | None:
        return number(self.attrs, name)

    @property
    def bandwidth(self) -> int | None:
        b = self.number("BANDWIDTH")
        return None if b is None else int(b)

    @property
    def resolution(self) -> tuple[int, int] | None:
        w, x, h = (self.attrs.get("RESOLUTION") or "").partition("x")
        return (int(w), int(h)) if x and w.isdigit() and h.isdigit() else None

    def with_uri(self, fn: UriMap) -> Variant:
        return Variant(fn(self.uri), dict(self.attrs))

    def dumps(self) -> str:
        return f"{T.EXT_X_STREAM_INF}:{format_attributes(self.attrs)}\n{self.uri}"


# Verbatim multivariant tags that point at other files through a URI attribute.
_URI_BEARING = (T.EXT_X_SESSION_KEY, T.EXT_X_SESSION_DATA, T.EXT_X_IMAGE_STREAM_INF)


@dataclass(slots=True)
class MasterPlaylist:
    """A multivariant (master) playlist: renditions (EXT-X-MEDIA), variants (EXT-X-STREAM-INF + URI),
    I-frame variants, and every other tag verbatim in ``tags`` (EXT-X-INDEPENDENT-SEGMENTS,
    EXT-X-SESSION-DATA, EXT-X-START, vendor tags...)."""

    variants: list[Variant] = field(default_factory=list)
    renditions: list[Rendition] = field(default_factory=list)
    iframe_variants: list[IFrameVariant] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    version: int | None = None

    def media_uris(self) -> list[str]:
        """Every media playlist it points at: renditions with a URI first, then the variants."""
        return [r.uri for r in self.renditions if r.uri is not None] + [v.uri for v in self.variants]

    def with_uris(self, fn: UriMap) -> MasterPlaylist:
        def verbatim(line: str) -> str:
            name, _, value = line.partition(":")
            if name not in _URI_BEARING:
                return line
            try:
                return f"{name}:{format_attributes(AttributeTag(parse_attributes(value)).with_uri(fn).attrs)}"
            except ValueError:
                return line

        return MasterPlaylist([v.with_uri(fn) for v in self.variants], [r.with_uri(fn) for r in self.renditions],
                              [i.with_uri(fn) for i in self.iframe_variants], [verbatim(t) for t in self.tags],
                              self.version)

    def dumps(self) -> str:
        lines = [T.EXTM3U]
        if self.version is not None:
            lines.append(f"{T.EXT_X_VERSION}:{self.version}")
        lines.extend(self.tags)
        lines.extend(r.dumps() for r in self.renditions)
        lines.extend(v.dumps() for v in self.variants)
        lines.extend(i.dumps() for i in self.iframe_variants)
        return "\n".join(lines) + "\n"
