"""HLS playlists as plain models for the ad transformations: parse, transform, dump.

Why not the m3u8 package for this: m3u8 6.0.0 loses interstitial data (it drops the EXT-X-DATERANGE ``CUE``
attribute and ``DURATION=0``, and discards any EXT-X-DATERANGE after the last segment or after
EXT-X-ENDLIST), and SSAI/SGAI are exactly about those tags. This model keeps every tag it does not
understand verbatim, keeps DATERANGE attributes in their written form (RFC 8216bis §4.4.5.1), and is small
enough to dump thousands of personalised playlists per second. Tests read the output back with m3u8 to
check validity.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

__all__ = [
    "DateRange",
    "MasterPlaylist",
    "MediaPlaylist",
    "PlaylistError",
    "Segment",
    "Variant",
    "format_attributes",
    "format_pdt",
    "parse_attributes",
    "parse_master",
    "parse_media",
    "parse_pdt",
    "quote",
]


class PlaylistError(ValueError):
    """The text is not an HLS playlist this module can work with."""


# RFC 8216bis §4.2: AttributeName=AttributeValue, comma separated; quoted strings may contain commas.
_ATTR_RE = re.compile(r'([A-Z0-9-]+)=("[^"\r\n]*"|[^,]*)')


def parse_attributes(text: str) -> dict[str, str]:
    """Attribute list → {name: value as written} (quoted strings keep their quotes, so dumps round-trip)."""
    return {m.group(1): m.group(2) for m in _ATTR_RE.finditer(text)}


def format_attributes(attrs: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in attrs.items())


def quote(value: str) -> str:
    """A quoted-string attribute value (§4.2: no double quotes or line breaks inside)."""
    if '"' in value or "\n" in value or "\r" in value:
        raise PlaylistError(f"cannot quote {value!r}: HLS quoted strings cannot contain '\"' or line breaks")
    return f'"{value}"'


def unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == '"' and value[-1] == '"' else value


def parse_pdt(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip())
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def format_pdt(dt: datetime) -> str:
    """ISO 8601 with milliseconds and an explicit offset (RFC 8216bis §4.4.4.6)."""
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fmt_duration(d: float) -> str:
    s = f"{d:.6f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


@dataclass(frozen=True, slots=True)
class DateRange:
    """One EXT-X-DATERANGE tag (§4.4.5.1). ``attrs`` holds every attribute exactly as written."""

    attrs: dict[str, str]

    @property
    def id(self) -> str:
        return unquote(self.attrs.get("ID", '""'))

    @property
    def cls(self) -> str:
        return unquote(self.attrs.get("CLASS", '""'))

    @property
    def start_date(self) -> datetime | None:
        v = self.attrs.get("START-DATE")
        return parse_pdt(unquote(v)) if v else None

    def string(self, name: str) -> str | None:
        v = self.attrs.get(name)
        return None if v is None else unquote(v)

    def number(self, name: str) -> float | None:
        v = self.attrs.get(name)
        if v is None:
            return None
        try:
            return float(v)
        except ValueError:
            return None

    def dumps(self) -> str:
        return "#EXT-X-DATERANGE:" + format_attributes(self.attrs)


@dataclass(frozen=True, slots=True)
class Segment:
    """A media segment and the tags that belong to it.

    ``tags`` are the lines written before the segment that this model does not interpret (EXT-X-KEY,
    EXT-X-MAP, EXT-X-BYTERANGE, EXT-X-CUE-OUT, ...), kept verbatim and in order. ``dateranges`` are the
    EXT-X-DATERANGE tags written just before it.
    """

    uri: str
    duration: float
    title: str = ""
    discontinuity: bool = False
    program_date_time: datetime | None = None
    tags: tuple[str, ...] = ()
    dateranges: tuple[DateRange, ...] = ()


@dataclass(slots=True)
class MediaPlaylist:
    target_duration: int
    segments: list[Segment] = field(default_factory=list)
    media_sequence: int = 0
    discontinuity_sequence: int = 0
    version: int | None = None
    playlist_type: str | None = None
    endlist: bool = False
    header_tags: list[str] = field(default_factory=list)   # e.g. EXT-X-INDEPENDENT-SEGMENTS, EXT-X-START
    trailing_dateranges: list[DateRange] = field(default_factory=list)  # after the last segment / ENDLIST
    trailing_tags: list[str] = field(default_factory=list)

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
                cur = cur + timedelta(seconds=s.duration)
        return out

    def dumps(self) -> str:
        lines = ["#EXTM3U"]
        if self.version is not None:
            lines.append(f"#EXT-X-VERSION:{self.version}")
        lines.append(f"#EXT-X-TARGETDURATION:{self.target_duration}")
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{self.media_sequence}")
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        if self.playlist_type:
            lines.append(f"#EXT-X-PLAYLIST-TYPE:{self.playlist_type}")
        lines.extend(self.header_tags)
        for s in self.segments:
            if s.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            lines.extend(s.tags)
            if s.program_date_time is not None:
                lines.append("#EXT-X-PROGRAM-DATE-TIME:" + format_pdt(s.program_date_time))
            for d in s.dateranges:
                lines.append(d.dumps())
            lines.append(f"#EXTINF:{_fmt_duration(s.duration)},{s.title}")
            lines.append(s.uri)
        lines.extend(self.trailing_tags)
        for d in self.trailing_dateranges:
            lines.append(d.dumps())
        if self.endlist:
            lines.append("#EXT-X-ENDLIST")
        return "\n".join(lines) + "\n"

    def with_uris(self, fn: Callable[[str], str]) -> MediaPlaylist:
        """A copy whose segment URIs (and URI="..." attributes of KEY/MAP tags) are mapped by ``fn``."""
        segs = [replace(s, uri=fn(s.uri), tags=tuple(_map_uri_attr(t, fn) for t in s.tags)) for s in self.segments]
        return replace(self, segments=segs, header_tags=list(self.header_tags))


_URI_ATTR_RE = re.compile(r'URI="([^"]*)"')


def _map_uri_attr(line: str, fn: Callable[[str], str]) -> str:
    if 'URI="' not in line or not line.startswith(("#EXT-X-KEY", "#EXT-X-MAP", "#EXT-X-PART", "#EXT-X-MEDIA")):
        return line
    return _URI_ATTR_RE.sub(lambda m: f'URI="{fn(m.group(1))}"', line)


_HEADER_ONLY = ("#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-START", "#EXT-X-SERVER-CONTROL", "#EXT-X-PART-INF",
                "#EXT-X-I-FRAMES-ONLY", "#EXT-X-ALLOW-CACHE", "#EXT-X-DEFINE")


def _lines(text: str) -> list[str]:
    if text.startswith("\ufeff"):
        raise PlaylistError("playlist starts with a byte order mark (RFC 8216bis §4.1 forbids it)")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines or lines[0] != "#EXTM3U":
        raise PlaylistError("not an HLS playlist: the first line is not #EXTM3U")
    return lines


def parse_media(text: str) -> MediaPlaylist:
    """Parse a media playlist. Raises PlaylistError for a master playlist or anything that is not HLS."""
    lines = _lines(text)
    pl = MediaPlaylist(target_duration=0)
    pending_tags: list[str] = []
    pending_dr: list[DateRange] = []
    disc = False
    pdt: datetime | None = None
    extinf: tuple[float, str] | None = None
    seen_targetdur = False
    for ln in lines[1:]:
        if not ln.startswith("#"):
            if extinf is None:
                raise PlaylistError(f"segment URI {ln!r} has no #EXTINF before it")
            pl.segments.append(Segment(ln, extinf[0], extinf[1], disc, pdt, tuple(pending_tags), tuple(pending_dr)))
            pending_tags, pending_dr, disc, pdt, extinf = [], [], False, None, None
            continue
        tag, _, value = ln.partition(":")
        if tag == "#EXTINF":
            dur, _, title = value.partition(",")
            try:
                extinf = (float(dur), title)
            except ValueError:
                raise PlaylistError(f"bad #EXTINF duration {dur!r}") from None
        elif tag == "#EXT-X-TARGETDURATION":
            pl.target_duration = int(float(value))
            seen_targetdur = True
        elif tag == "#EXT-X-MEDIA-SEQUENCE":
            pl.media_sequence = int(value)
        elif tag == "#EXT-X-DISCONTINUITY-SEQUENCE":
            pl.discontinuity_sequence = int(value)
        elif tag == "#EXT-X-VERSION":
            pl.version = int(value)
        elif tag == "#EXT-X-PLAYLIST-TYPE":
            pl.playlist_type = value
        elif tag == "#EXT-X-ENDLIST":
            pl.endlist = True
        elif tag == "#EXT-X-DISCONTINUITY":
            disc = True
        elif tag == "#EXT-X-PROGRAM-DATE-TIME":
            try:
                pdt = parse_pdt(value)
            except ValueError:
                raise PlaylistError(f"bad #EXT-X-PROGRAM-DATE-TIME {value!r}") from None
        elif tag == "#EXT-X-DATERANGE":
            pending_dr.append(DateRange(parse_attributes(value)))
        elif tag in ("#EXT-X-STREAM-INF", "#EXT-X-MEDIA", "#EXT-X-I-FRAME-STREAM-INF"):
            raise PlaylistError("this is a master (multivariant) playlist; a media playlist was expected")
        elif tag in _HEADER_ONLY and not pl.segments and not pending_tags:
            pl.header_tags.append(ln)
        else:
            pending_tags.append(ln)
    if not seen_targetdur:
        raise PlaylistError("media playlist has no #EXT-X-TARGETDURATION")
    pl.trailing_dateranges = pending_dr
    pl.trailing_tags = pending_tags
    return pl


@dataclass(frozen=True, slots=True)
class Variant:
    """A rendition a master playlist points at: a STREAM-INF variant or an EXT-X-MEDIA rendition."""

    kind: str                  # "video" (STREAM-INF), "AUDIO", "SUBTITLES", "CLOSED-CAPTIONS"
    uri: str
    attrs: dict[str, str]

    @property
    def resolution(self) -> tuple[int, int] | None:
        r = self.attrs.get("RESOLUTION")
        if not r or "x" not in r:
            return None
        w, _, h = r.partition("x")
        return int(w), int(h)


@dataclass(slots=True)
class MasterPlaylist:
    lines: list[str]

    def variants(self) -> list[Variant]:
        out: list[Variant] = []
        for i, ln in enumerate(self.lines):
            if ln.startswith("#EXT-X-STREAM-INF:"):
                j = i + 1
                while j < len(self.lines) and self.lines[j].startswith("#"):
                    j += 1
                if j < len(self.lines):
                    out.append(Variant("video", self.lines[j], parse_attributes(ln.partition(":")[2])))
            elif ln.startswith("#EXT-X-MEDIA:"):
                attrs = parse_attributes(ln.partition(":")[2])
                if "URI" in attrs:
                    out.append(Variant(attrs.get("TYPE", ""), unquote(attrs["URI"]), attrs))
        return out

    def with_uris(self, fn: Callable[[str], str]) -> MasterPlaylist:
        out = []
        for ln in self.lines:
            if ln.startswith("#"):
                out.append(_map_uri_attr(ln, fn))
            else:
                out.append(fn(ln))
        return MasterPlaylist(out)

    def dumps(self) -> str:
        return "\n".join(self.lines) + "\n"


def is_master(text: str) -> bool:
    return "#EXT-X-STREAM-INF" in text


def parse_master(text: str) -> MasterPlaylist:
    lines = _lines(text)
    if not is_master(text):
        raise PlaylistError("this is a media playlist; a master (multivariant) playlist was expected")
    return MasterPlaylist(lines)


def target_duration_for(durations: Iterable[float]) -> int:
    """§4.4.3.1: EXTINF rounded to the nearest integer must not exceed the target duration."""
    return max((int(math.floor(d + 0.5)) for d in durations), default=1)
