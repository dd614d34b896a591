"""Every HLS tag name sidecast reads or writes, in one place (the vocabulary of ``model`` and ``parse``).

Names follow draft-pantos-hls-rfc8216bis (section numbers of -16 in the comments), plus the de-facto ad
signalling tags that SSAI servers and encoders write (``EXT-X-CUE-*``, ``EXT-OATCLS-SCTE35``...). Code
compares against these constants instead of spelling tags out, so one typo cannot hide a tag.

The groups at the end say where a tag may appear; the parser uses them to tell a multivariant (master)
playlist from a media playlist and to keep playlist-level tags in the header.
"""

from __future__ import annotations

# §4.4.1 Basic tags
EXTM3U = "#EXTM3U"
EXT_X_VERSION = "#EXT-X-VERSION"

# §4.4.2 Media or multivariant playlist tags
EXT_X_INDEPENDENT_SEGMENTS = "#EXT-X-INDEPENDENT-SEGMENTS"
EXT_X_START = "#EXT-X-START"
EXT_X_DEFINE = "#EXT-X-DEFINE"

# §4.4.3 Media playlist tags
EXT_X_TARGETDURATION = "#EXT-X-TARGETDURATION"
EXT_X_MEDIA_SEQUENCE = "#EXT-X-MEDIA-SEQUENCE"
EXT_X_DISCONTINUITY_SEQUENCE = "#EXT-X-DISCONTINUITY-SEQUENCE"
EXT_X_ENDLIST = "#EXT-X-ENDLIST"
EXT_X_PLAYLIST_TYPE = "#EXT-X-PLAYLIST-TYPE"
EXT_X_I_FRAMES_ONLY = "#EXT-X-I-FRAMES-ONLY"
EXT_X_PART_INF = "#EXT-X-PART-INF"              # low latency (§4.4.3.7)
EXT_X_SERVER_CONTROL = "#EXT-X-SERVER-CONTROL"  # low latency (§4.4.3.8)

# §4.4.4 Media segment tags
EXTINF = "#EXTINF"
EXT_X_BYTERANGE = "#EXT-X-BYTERANGE"
EXT_X_DISCONTINUITY = "#EXT-X-DISCONTINUITY"
EXT_X_KEY = "#EXT-X-KEY"
EXT_X_MAP = "#EXT-X-MAP"
EXT_X_PROGRAM_DATE_TIME = "#EXT-X-PROGRAM-DATE-TIME"
EXT_X_GAP = "#EXT-X-GAP"
EXT_X_BITRATE = "#EXT-X-BITRATE"
EXT_X_PART = "#EXT-X-PART"                      # low latency (§4.4.4.9)

# §4.4.5 Media metadata tags
EXT_X_DATERANGE = "#EXT-X-DATERANGE"
EXT_X_SKIP = "#EXT-X-SKIP"                      # low latency: playlist delta updates (§4.4.5.2)
EXT_X_PRELOAD_HINT = "#EXT-X-PRELOAD-HINT"      # low latency (§4.4.5.3)
EXT_X_RENDITION_REPORT = "#EXT-X-RENDITION-REPORT"  # low latency (§4.4.5.4)

# §4.4.6 Multivariant playlist tags
EXT_X_MEDIA = "#EXT-X-MEDIA"
EXT_X_STREAM_INF = "#EXT-X-STREAM-INF"
EXT_X_I_FRAME_STREAM_INF = "#EXT-X-I-FRAME-STREAM-INF"
EXT_X_SESSION_DATA = "#EXT-X-SESSION-DATA"
EXT_X_SESSION_KEY = "#EXT-X-SESSION-KEY"
EXT_X_CONTENT_STEERING = "#EXT-X-CONTENT-STEERING"

# Obsolete, still met in the wild
EXT_X_ALLOW_CACHE = "#EXT-X-ALLOW-CACHE"

# Image playlists (Roku trick play), met in the wild
EXT_X_IMAGE_STREAM_INF = "#EXT-X-IMAGE-STREAM-INF"
EXT_X_IMAGES_ONLY = "#EXT-X-IMAGES-ONLY"
EXT_X_TILES = "#EXT-X-TILES"

# De-facto ad signalling (not in the RFC; what encoders and SSAI servers write and read)
EXT_X_CUE_OUT = "#EXT-X-CUE-OUT"
EXT_X_CUE_OUT_CONT = "#EXT-X-CUE-OUT-CONT"
EXT_X_CUE_IN = "#EXT-X-CUE-IN"
EXT_X_CUE_SPAN = "#EXT-X-CUE-SPAN"
EXT_OATCLS_SCTE35 = "#EXT-OATCLS-SCTE35"
EXT_X_SCTE35 = "#EXT-X-SCTE35"
EXT_X_ASSET = "#EXT-X-ASSET"

# Where tags may appear.
MULTIVARIANT_ONLY = frozenset({
    EXT_X_MEDIA, EXT_X_STREAM_INF, EXT_X_I_FRAME_STREAM_INF, EXT_X_SESSION_DATA, EXT_X_SESSION_KEY,
    EXT_X_CONTENT_STEERING, EXT_X_IMAGE_STREAM_INF,
})
MEDIA_ONLY = frozenset({
    EXTINF, EXT_X_TARGETDURATION, EXT_X_MEDIA_SEQUENCE, EXT_X_DISCONTINUITY_SEQUENCE, EXT_X_ENDLIST,
    EXT_X_PLAYLIST_TYPE, EXT_X_PART, EXT_X_PART_INF, EXT_X_SERVER_CONTROL, EXT_X_PRELOAD_HINT,
    EXT_X_RENDITION_REPORT, EXT_X_SKIP,
})
# Playlist-level tags of a media playlist: kept in its header when they come before the first segment.
MEDIA_HEADER = frozenset({
    EXT_X_INDEPENDENT_SEGMENTS, EXT_X_START, EXT_X_DEFINE, EXT_X_I_FRAMES_ONLY, EXT_X_IMAGES_ONLY,
    EXT_X_PART_INF, EXT_X_SERVER_CONTROL, EXT_X_SKIP, EXT_X_ALLOW_CACHE,
})
# Ad signalling a stitcher removes once it has acted on it (the breaks are stitched).
AD_SIGNALLING = frozenset({
    EXT_X_CUE_OUT, EXT_X_CUE_OUT_CONT, EXT_X_CUE_IN, EXT_X_CUE_SPAN, EXT_OATCLS_SCTE35, EXT_X_SCTE35, EXT_X_ASSET,
})
