"""HLS for the core and the ads: one playlist model, one clock, one ad-break record.

    from sidecast.hls import parse_media, MediaPlaylist, Segment    # the model (model.py, parse.py)
    from sidecast.hls import timebase                                # 90 kHz / 33-bit PTS, PDT text
    from sidecast.hls.live import LivePlaylist, atomic_write         # the live window the packager grows
    from sidecast.hls.breaks import Break, breaks_from_playlist      # ad breaks and their signalling
    from sidecast.hls.scte35 import decode_cue                       # SCTE-35 (threefive)

Both the core and the ads may import this package; it imports neither (and nothing but the contract's
error tree). Tag names are in ``tags``. docs/design.md says what the model keeps and why it is not the
m3u8 package.
"""

from __future__ import annotations

from . import tags, timebase
from .attributes import format_attributes, parse_attributes, quote, unquote
from .errors import CueError, PlaylistError
from .model import (
    AttributeTag,
    DateRange,
    IFrameVariant,
    Key,
    Map,
    MasterPlaylist,
    MediaPlaylist,
    Part,
    PreloadHint,
    Rendition,
    RenditionReport,
    Segment,
    Variant,
    target_duration_for,
)
from .parse import parse, parse_master, parse_media

__all__ = [
    "AttributeTag",
    "CueError",
    "DateRange",
    "IFrameVariant",
    "Key",
    "Map",
    "MasterPlaylist",
    "MediaPlaylist",
    "Part",
    "PlaylistError",
    "PreloadHint",
    "Rendition",
    "RenditionReport",
    "Segment",
    "Variant",
    "format_attributes",
    "parse",
    "parse_attributes",
    "parse_master",
    "parse_media",
    "quote",
    "tags",
    "target_duration_for",
    "timebase",
    "unquote",
]
