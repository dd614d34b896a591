"""FLV as the RTMP server writes it out: a file header, then each audio, video and script message of the
publisher as one tag with its RTMP timestamp (32-bit milliseconds), which is what FFmpeg's ``flv``
demuxer (and so ``av.open(..., format="flv")``) reads."""

from __future__ import annotations

AUDIO, VIDEO, SCRIPT = 8, 9, 18
TAG_HEADER = 11


def header(has_audio: bool = True, has_video: bool = True) -> bytes:
    """The 9-byte file header and PreviousTagSize0."""
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return b"FLV\x01" + bytes((flags,)) + b"\x00\x00\x00\x09" + b"\x00\x00\x00\x00"


def tag(tag_type: int, timestamp: int, payload: bytes) -> bytes:
    """One tag and the PreviousTagSize that follows it. ``timestamp`` wraps at 2^32 ms, as RTMP's."""
    n = len(payload)
    ts = timestamp & 0xFFFFFFFF
    head = bytes((tag_type, (n >> 16) & 0xFF, (n >> 8) & 0xFF, n & 0xFF,
                  (ts >> 16) & 0xFF, (ts >> 8) & 0xFF, ts & 0xFF, (ts >> 24) & 0xFF, 0, 0, 0))
    return b"".join((head, payload, (TAG_HEADER + n).to_bytes(4, "big")))


def split_aggregate(payload: bytes, timestamp: int) -> list[tuple[int, int, bytes]]:
    """The (type, timestamp, data) messages inside an RTMP aggregate message (type 22), whose body is FLV
    tags; their timestamps are re-based so the first one carries the aggregate's own timestamp.

    Raises ValueError on a body that does not parse as tags."""
    out: list[tuple[int, int, bytes]] = []
    pos = 0
    first: int | None = None
    while pos < len(payload):
        if len(payload) - pos < TAG_HEADER:
            raise ValueError("aggregate message ends inside a tag header")
        t = payload[pos]
        n = int.from_bytes(payload[pos + 1:pos + 4], "big")
        ts = int.from_bytes(payload[pos + 4:pos + 7], "big") | (payload[pos + 7] << 24)
        end = pos + TAG_HEADER + n
        if end + 4 > len(payload):
            raise ValueError("aggregate message ends inside a tag")
        if t not in (AUDIO, VIDEO, SCRIPT):
            raise ValueError(f"aggregate message holds a tag of type {t}")
        if first is None:
            first = ts
        out.append((t, (timestamp + ts - first) & 0xFFFFFFFF, payload[pos + TAG_HEADER:end]))
        pos = end + 4
    return out


__all__ = ["header", "tag", "split_aggregate", "AUDIO", "VIDEO", "SCRIPT"]
