"""Playlist text → the model (``model.py``). Pure functions; any input either parses or raises
``PlaylistError`` with a one-line reason and the line number, never another exception.

Strict where a wrong guess would lose or corrupt data (numbers, attribute lists of the tags the model
interprets, a segment URI without EXTINF, control characters), lenient where the wild needs it (unknown
tags and comments are kept verbatim, attribute names in lower case, blanks around commas, a fractional
EXT-X-TARGETDURATION is rounded up).
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from . import model as M
from . import tags as T
from .attributes import parse_attributes, read_decimal, read_integer
from .errors import PlaylistError
from .timebase import format_pdt, parse_pdt

__all__ = ["parse", "parse_master", "parse_media"]

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _lines(text: str) -> list[tuple[int, str]]:
    """(line number, stripped line) for every non-blank line; checks the playlist's first line."""
    if text.startswith("\ufeff"):
        raise PlaylistError("playlist starts with a byte order mark (RFC 8216bis §4.1 forbids it)")
    out: list[tuple[int, str]] = []
    for n, raw in enumerate(text.split("\n"), 1):
        ln = raw.strip(" \t\r")
        if not ln:
            continue
        bad = _CONTROL.search(ln)
        if bad:
            raise PlaylistError(f"line {n}: control character {bad.group()!r} (a playlist is UTF-8 text lines)")
        out.append((n, ln))
    if not out or out[0][1] != T.EXTM3U:
        raise PlaylistError("not an HLS playlist: the first line is not #EXTM3U")
    return out[1:]


def _attrs(value: str, tag: str, n: int) -> dict[str, str]:
    try:
        return parse_attributes(value)
    except PlaylistError as exc:
        raise PlaylistError(f"line {n}: {tag}: {exc}") from None


def _kind(lines: list[tuple[int, str]]) -> str:
    master = media = None
    for n, ln in lines:
        name = ln.partition(":")[0]
        if name in T.MULTIVARIANT_ONLY and master is None:
            master = n
        elif name in T.MEDIA_ONLY and media is None:
            media = n
    if master is not None and media is not None:
        raise PlaylistError(f"mixes multivariant tags (line {master}) with media playlist tags (line {media})")
    return "master" if master is not None else "media"


def parse(text: str) -> M.MediaPlaylist | M.MasterPlaylist:
    """A media or a multivariant (master) playlist, whichever the text is."""
    lines = _lines(text)
    return _master(lines) if _kind(lines) == "master" else _media(lines)


def parse_media(text: str) -> M.MediaPlaylist:
    """A media playlist; PlaylistError for a master playlist or anything that is not HLS."""
    lines = _lines(text)
    if _kind(lines) == "master":
        raise PlaylistError("this is a multivariant (master) playlist; a media playlist was expected")
    return _media(lines)


def parse_master(text: str) -> M.MasterPlaylist:
    """A multivariant (master) playlist; PlaylistError for a media playlist or anything that is not HLS."""
    lines = _lines(text)
    if _kind(lines) != "master":
        raise PlaylistError("this is a media playlist; a multivariant (master) playlist was expected")
    return _master(lines)


def _media(lines: list[tuple[int, str]]) -> M.MediaPlaylist:
    pl = M.MediaPlaylist(target_duration=0)
    seen_target = False
    # What has been read for the next segment.
    tags: list[str] = []
    dateranges: list[M.DateRange] = []
    parts: list[M.Part] = []
    disc = False
    pdt: datetime | None = None
    extinf: tuple[int, float, str] | None = None
    # EXT-X-KEY / EXT-X-MAP are state: they apply to every segment after them until replaced.
    keys: tuple[M.Key, ...] = ()
    init: M.Map | None = None
    state_lines: list[str] = []   # KEY/MAP lines since the last segment, kept verbatim if no segment follows
    for n, ln in lines:
        if not ln.startswith("#"):
            if extinf is None:
                raise PlaylistError(f"line {n}: segment URI {ln!r} has no #EXTINF before it")
            pl.segments.append(M.Segment(ln, extinf[1], extinf[2], disc, pdt, tuple(tags), tuple(dateranges),
                                       tuple(parts), keys, init))
            tags, dateranges, parts, state_lines = [], [], [], []
            disc, pdt, extinf = False, None, None
            continue
        name, _, value = ln.partition(":")
        if name == T.EXTINF:
            if extinf is not None:
                raise PlaylistError(f"line {n}: a second #EXTINF before the segment URI of line {extinf[0]}'s")
            dur, _, title = value.partition(",")
            extinf = (n, _decimal(dur, "#EXTINF duration", n), title)
        elif name == T.EXT_X_TARGETDURATION:
            # a decimal-integer; a fraction (met in the wild) is rounded up, never down
            whole, dot, _ = value.strip(" \t").partition(".")
            pl.target_duration = (_integer(value, name, n) if not dot
                                  else max(_integer(whole or "0", name, n), math.ceil(_decimal(value, name, n))))
            seen_target = True
        elif name == T.EXT_X_MEDIA_SEQUENCE:
            pl.media_sequence = _integer(value, name, n)
        elif name == T.EXT_X_DISCONTINUITY_SEQUENCE:
            pl.discontinuity_sequence = _integer(value, name, n)
        elif name == T.EXT_X_VERSION:
            pl.version = _integer(value, name, n)
        elif name == T.EXT_X_PLAYLIST_TYPE:
            pl.playlist_type = value
        elif name == T.EXT_X_ENDLIST:
            pl.endlist = True
        elif name == T.EXT_X_DISCONTINUITY:
            disc = True
        elif name == T.EXT_X_PROGRAM_DATE_TIME:
            try:
                pdt = parse_pdt(value)
            except ValueError:
                raise PlaylistError(f"line {n}: bad {name} {value!r}") from None
        elif name == T.EXT_X_DATERANGE:
            dateranges.append(M.DateRange(_attrs(value, name, n)))
        elif name == T.EXT_X_KEY:
            key = M.Key(_attrs(value, name, n))
            keys = () if key.method == "NONE" else (*(k for k in keys if k.keyformat != key.keyformat), key)
            state_lines.append(ln)
        elif name == T.EXT_X_MAP:
            init = M.Map(_attrs(value, name, n))
            state_lines.append(ln)
        elif name == T.EXT_X_PART:
            parts.append(M.Part(_attrs(value, name, n)))
        elif name == T.EXT_X_PRELOAD_HINT:
            pl.preload_hints.append(M.PreloadHint(_attrs(value, name, n)))
        elif name == T.EXT_X_RENDITION_REPORT:
            pl.rendition_reports.append(M.RenditionReport(_attrs(value, name, n)))
        elif name in T.MEDIA_HEADER and not pl.segments and extinf is None:
            # a playlist-level tag before the first segment stays one, whatever comments or vendor tags
            # came before it (they may belong to the first segment; it does not)
            pl.header_tags.append(ln)
        elif not name.startswith("#EXT") and not pl.segments and not (tags or dateranges or parts or extinf):
            pl.header_tags.append(ln)  # comments before the first segment
        else:
            tags.append(ln)
    if extinf is not None:
        raise PlaylistError(f"line {extinf[0]}: #EXTINF has no segment URI after it")
    if not seen_target:
        raise PlaylistError("media playlist has no #EXT-X-TARGETDURATION")
    # What no complete segment followed: the segment still being built (low latency) or tags at the end.
    lead = [T.EXT_X_DISCONTINUITY] if disc else []
    if pdt is not None:
        lead.append(f"{T.EXT_X_PROGRAM_DATE_TIME}:{format_pdt(pdt)}")
    pl.trailing_tags = lead + state_lines + tags
    pl.trailing_dateranges = dateranges
    pl.trailing_parts = parts
    return pl


def _master(lines: list[tuple[int, str]]) -> M.MasterPlaylist:
    pl = M.MasterPlaylist()
    pending: tuple[int, dict[str, str]] | None = None   # an EXT-X-STREAM-INF waiting for its URI line
    for n, ln in lines:
        if not ln.startswith("#"):
            if pending is None:
                raise PlaylistError(f"line {n}: URI {ln!r} has no #EXT-X-STREAM-INF before it")
            pl.variants.append(M.Variant(ln, pending[1]))
            pending = None
            continue
        name, _, value = ln.partition(":")
        if name == T.EXT_X_STREAM_INF:
            if pending is not None:
                raise PlaylistError(f"line {n}: #EXT-X-STREAM-INF of line {pending[0]} has no URI after it")
            pending = (n, _attrs(value, name, n))
        elif name == T.EXT_X_MEDIA:
            pl.renditions.append(M.Rendition(_attrs(value, name, n)))
        elif name == T.EXT_X_I_FRAME_STREAM_INF:
            pl.iframe_variants.append(M.IFrameVariant(_attrs(value, name, n)))
        elif name == T.EXT_X_VERSION:
            pl.version = _integer(value, name, n)
        else:
            pl.tags.append(ln)
    if pending is not None:
        raise PlaylistError(f"line {pending[0]}: #EXT-X-STREAM-INF has no URI after it")
    return pl


def _decimal(text: str, what: str, n: int) -> float:
    try:
        return read_decimal(text, what)
    except PlaylistError as exc:
        raise PlaylistError(f"line {n}: {exc}") from None


def _integer(text: str, what: str, n: int) -> int:
    try:
        return read_integer(text, what)
    except PlaylistError as exc:
        raise PlaylistError(f"line {n}: {exc}") from None
