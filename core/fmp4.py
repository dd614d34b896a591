"""A small CMAF (fragmented MP4) writer for low-latency HLS: an init segment per rendition, then fragments
(``moof`` + ``mdat``) that can be written the moment their samples exist.

Why our own and not FFmpeg's mp4 muxer: LL-HLS publishes a part as soon as its last frame is encoded, and
FFmpeg's fragmenting muxer decides itself when a fragment ends (at the next packet after a duration) and
buffers its output; here a part is exactly the samples we hand over, written and renamed into place at
once. The boxes are the few ISO BMFF / CMAF needs for H.264 (``avc1``/``avcC``) and AAC (``mp4a``/``esds``):
``ftyp``, ``moov`` (``mvhd``, ``trak``, ``mvex``), ``styp``, ``moof`` (``mfhd``, ``traf``: ``tfhd`` with
default-base-is-moof, ``tfdt``, ``trun``) and ``mdat`` (ISO/IEC 14496-12, 14496-15, 23000-19).

Timestamps: video on the 90 kHz clock (the same numbers as the core's MPEG-TS PTS, so WebVTT's
``X-TIMESTAMP-MAP`` and SCTE-35 times mean the same thing), audio at its sample rate.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

VIDEO_TIMESCALE = 90_000


def box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


# ------------------------------------------------------------------ H.264 bitstream


def annexb_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream (start codes 00 00 01 / 00 00 00 01 removed)."""
    out: list[bytes] = []
    i, n = 0, len(data)
    starts = []
    while True:
        j = data.find(b"\x00\x00\x01", i)
        if j < 0:
            break
        starts.append(j + 3)
        i = j + 3
    for k, s in enumerate(starts):
        e = starts[k + 1] - 3 if k + 1 < len(starts) else n
        nal = data[s:e]
        while nal.endswith(b"\x00"):  # the zero byte of a following 4-byte start code
            nal = nal[:-1]
        if nal:
            out.append(nal)
    return out


def avc_sample(data: bytes) -> tuple[bytes, list[bytes], list[bytes]]:
    """An Annex B access unit as an MP4 sample (4-byte length prefixes), without the parameter sets and
    delimiters (those go in ``avcC``); also returns the SPS and PPS it carried."""
    sps, pps, parts = [], [], []
    for nal in annexb_nals(data):
        kind = nal[0] & 0x1F
        if kind == 7:
            sps.append(nal)
        elif kind == 8:
            pps.append(nal)
        elif kind == 9:
            continue  # access unit delimiter
        else:
            parts.append(struct.pack(">I", len(nal)) + nal)
    return b"".join(parts), sps, pps


def avcc(sps: list[bytes], pps: list[bytes]) -> bytes:
    first = sps[0]
    return (bytes([1, first[1], first[2], first[3], 0xFF, 0xE0 | len(sps)])
            + b"".join(struct.pack(">H", len(s)) + s for s in sps)
            + bytes([len(pps)]) + b"".join(struct.pack(">H", len(p)) + p for p in pps))


# ------------------------------------------------------------------ init segments


def _matrix() -> bytes:
    return struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)


def _mvhd(timescale: int) -> bytes:
    return full_box(b"mvhd", 0, 0, struct.pack(">IIIIIH", 0, 0, timescale, 0, 0x10000, 0x100), b"\x00" * 10,
                    _matrix(), b"\x00" * 24, struct.pack(">I", 2))


def _tkhd(track_id: int, width: int, height: int, audio: bool) -> bytes:
    return full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, track_id, 0, 0), b"\x00" * 8,
                    struct.pack(">hhhH", 0, 0, 0x100 if audio else 0, 0), _matrix(),
                    struct.pack(">II", width << 16, height << 16))


def _mdhd(timescale: int, language: str = "und") -> bytes:
    lang = sum((ord(c) - 0x60) << (10 - 5 * i) for i, c in enumerate(language[:3].ljust(3, "d")))
    return full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, timescale, 0, lang, 0))


def _hdlr(kind: bytes, name: bytes) -> bytes:
    return full_box(b"hdlr", 0, 0, struct.pack(">I", 0), kind, b"\x00" * 12, name + b"\x00")


def _stbl(sample_entry: bytes) -> bytes:
    empty = struct.pack(">I", 0)
    return box(b"stbl", full_box(b"stsd", 0, 0, struct.pack(">I", 1), sample_entry),
               full_box(b"stts", 0, 0, empty), full_box(b"stsc", 0, 0, empty),
               full_box(b"stsz", 0, 0, empty, empty), full_box(b"stco", 0, 0, empty))


def _dinf() -> bytes:
    return box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))


def _trak(track_id: int, timescale: int, handler: bytes, media_header: bytes, entry: bytes,
          width: int = 0, height: int = 0, language: str = "und") -> bytes:
    audio = handler == b"soun"
    return box(b"trak", _tkhd(track_id, width, height, audio),
               box(b"mdia", _mdhd(timescale, language), _hdlr(handler, b"sidecast"),
                   box(b"minf", media_header, _dinf(), _stbl(entry))))


def _ftyp() -> bytes:
    return box(b"ftyp", b"iso6", struct.pack(">I", 0), b"iso6", b"cmfc", b"isom", b"avc1", b"mp41")


def video_init(width: int, height: int, sps: list[bytes], pps: list[bytes], track_id: int = 1) -> bytes:
    entry = box(b"avc1", b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 16,
                struct.pack(">HHIIIH", width, height, 0x480000, 0x480000, 0, 1), b"\x00" * 32,
                struct.pack(">Hh", 0x18, -1), box(b"avcC", avcc(sps, pps)))
    vmhd = full_box(b"vmhd", 0, 1, b"\x00" * 8)
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))
    return _ftyp() + box(b"moov", _mvhd(VIDEO_TIMESCALE),
                         _trak(track_id, VIDEO_TIMESCALE, b"vide", vmhd, entry, width, height),
                         box(b"mvex", trex))


def _descriptor(tag: int, payload: bytes) -> bytes:
    return bytes([tag, len(payload)]) + payload  # all ours fit in one length byte


def audio_init(sample_rate: int, channels: int, audio_specific_config: bytes, track_id: int = 1,
               bitrate: int = 128_000) -> bytes:
    dec_specific = _descriptor(0x05, audio_specific_config)
    dec_config = _descriptor(0x04, bytes([0x40, 0x15]) + b"\x00\x00\x00" + struct.pack(">II", bitrate, bitrate)
                             + dec_specific)
    es = _descriptor(0x03, struct.pack(">HB", track_id, 0) + dec_config + _descriptor(0x06, b"\x02"))
    entry = box(b"mp4a", b"\x00" * 6, struct.pack(">H", 1), b"\x00" * 8,
                struct.pack(">HHHHI", channels, 16, 0, 0, sample_rate << 16), full_box(b"esds", 0, 0, es))
    smhd = full_box(b"smhd", 0, 0, b"\x00" * 4)
    trex = full_box(b"trex", 0, 0, struct.pack(">IIIII", track_id, 1, 0, 0, 0))
    return _ftyp() + box(b"moov", _mvhd(sample_rate),
                         _trak(track_id, sample_rate, b"soun", smhd, entry), box(b"mvex", trex))


# ------------------------------------------------------------------ fragments


@dataclass
class Sample:
    data: bytes
    duration: int           # in the track's timescale
    keyframe: bool = True
    composition_offset: int = 0


@dataclass
class Fragmenter:
    """Writes one track's fragments; ``sequence`` numbers them across the whole stream (mfhd)."""

    track_id: int = 1
    sequence: int = 0
    written: int = field(default=0)

    def fragment(self, base_decode_time: int, samples: Iterable[Sample]) -> bytes:
        """``styp`` + ``moof`` + ``mdat`` for ``samples`` starting at ``base_decode_time``."""
        samples = list(samples)
        self.sequence += 1
        flags = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800  # offset, duration, size, flags, cts
        entries = b"".join(
            struct.pack(">IIIi", s.duration, len(s.data), 0x02000000 if s.keyframe else 0x01010000,
                        s.composition_offset) for s in samples)

        def moof(data_offset: int) -> bytes:
            trun = full_box(b"trun", 1, flags, struct.pack(">Ii", len(samples), data_offset), entries)
            tfhd = full_box(b"tfhd", 0, 0x020000, struct.pack(">I", self.track_id))  # default-base-is-moof
            tfdt = full_box(b"tfdt", 1, 0, struct.pack(">Q", base_decode_time))
            return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", self.sequence)),
                       box(b"traf", tfhd, tfdt, trun))

        size = len(moof(0))
        styp = box(b"styp", b"msdh", struct.pack(">I", 0), b"msdh", b"msix")
        mdat = box(b"mdat", *(s.data for s in samples))
        self.written += len(samples)
        return styp + moof(size + 8) + mdat


def boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """Top-level boxes of ``data``: (type, offset, size). For tests and tools."""
    out, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size < 8:
            break
        out.append((kind, i, size))
        i += size
    return out


__all__ = ["box", "full_box", "annexb_nals", "avc_sample", "avcc", "video_init", "audio_init", "Sample",
           "Fragmenter", "boxes", "VIDEO_TIMESCALE"]
