"""What an SDP offer carries, and whether sidecast can take it: pure functions, no aiortc.

aiortc parses SDP leniently and fails late (an IndexError on a short line, an OperationError once ICE is
already being set up). The WHIP and WHEP endpoints read an offer here first, so that a malformed offer is a
400 and an offer without a codec sidecast handles is a 422, each with one line that says what to change,
before any ICE or DTLS work starts.

Codecs sidecast takes: video H.264 (Constrained Baseline or Baseline, packetization-mode=1: what aiortc
depayloads; the decoder then reads whatever profile the stream really is) and VP8; audio Opus.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_SDP_BYTES = 64 * 1024
"""An offer is a few kilobytes; anything past this is refused (413) before it is read."""

STATIC_PAYLOADS = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 9: ("G722", 8000)}
VIDEO_CODECS = ("H264", "VP8")
AUDIO_CODECS = ("opus",)
_LINE = re.compile(r"^([a-z])=(.*)$")
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


class SdpError(ValueError):
    """An offer refused before any WebRTC work: ``status`` (400 malformed, 422 unusable) and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Codec:
    payload_type: int
    name: str
    clock_rate: int
    channels: int | None = None
    fmtp: dict[str, str] = field(default_factory=dict, hash=False, compare=False)

    def describe(self) -> str:
        profile = self.fmtp.get("profile-level-id")
        return f"{self.name} ({profile})" if self.name.upper() == "H264" and profile else self.name


@dataclass(frozen=True)
class Media:
    """One m= section."""

    kind: str            # audio, video, application, or what the offer says
    port: int            # 0: a rejected section
    direction: str       # sendrecv when the section does not say
    mid: str | None
    codecs: tuple[Codec, ...]
    ssrcs: tuple[int, ...] = ()


@dataclass(frozen=True)
class Offer:
    media: tuple[Media, ...]

    def of_kind(self, kind: str) -> list[Media]:
        """The live (port != 0) sections of one kind."""
        return [m for m in self.media if m.kind == kind and m.port != 0]


def _bad(line_no: int, what: str) -> SdpError:
    return SdpError(400, f"malformed SDP offer: line {line_no}: {what}")


@dataclass
class _Section:
    kind: str
    port: int
    fmts: list[int]
    direction: str | None = None
    mid: str | None = None
    rtpmap: dict[int, tuple[str, int, int | None]] = field(default_factory=dict)
    fmtp: dict[int, dict[str, str]] = field(default_factory=dict)
    ssrcs: list[int] = field(default_factory=list)

    def media(self, session_direction: str) -> Media:
        codecs = []
        for pt in self.fmts:
            if pt in self.rtpmap:
                name, rate, ch = self.rtpmap[pt]
            elif pt in STATIC_PAYLOADS:
                (name, rate), ch = STATIC_PAYLOADS[pt], None
            else:
                continue  # a payload type the offer never maps: nothing to choose
            codecs.append(Codec(pt, name, rate, ch, self.fmtp.get(pt, {})))
        return Media(kind=self.kind, port=self.port, direction=self.direction or session_direction, mid=self.mid,
                     codecs=tuple(codecs), ssrcs=tuple(self.ssrcs))


def parse_offer(text: str) -> Offer:
    """Read an offer; raises SdpError(400) for anything that is not a usable SDP session description."""
    if len(text.encode("utf-8", "replace")) > MAX_SDP_BYTES:
        raise SdpError(413, f"SDP offer larger than {MAX_SDP_BYTES} bytes")
    lines = [ln for ln in re.split(r"\r?\n", text) if ln != ""]
    if not lines or lines[0].strip() != "v=0":
        raise SdpError(400, "malformed SDP offer: it must start with 'v=0'")
    sections: list[_Section] = []
    session_direction = "sendrecv"
    have = {"ice-ufrag": False, "ice-pwd": False, "fingerprint": False}
    for n, raw in enumerate(lines, start=1):
        line = raw.strip()
        m = _LINE.match(line)
        if m is None:
            raise _bad(n, "not of the form 'x=value'")
        key, value = m.group(1), m.group(2)
        if key == "m":
            parts = value.split()
            if len(parts) < 3:
                raise _bad(n, "an m= line needs '<media> <port> <proto> <formats>'")
            port_text = parts[1].split("/", 1)[0]
            if not port_text.isdigit() or int(port_text) > 65535:
                raise _bad(n, f"port {parts[1][:16]!r} is not a number in 0-65535")
            fmts: list[int] = []
            if "RTP" in parts[2]:
                for f in parts[3:]:
                    if not f.isdigit() or int(f) > 127:
                        raise _bad(n, f"payload type {f[:16]!r} is not a number in 0-127")
                    fmts.append(int(f))
            sections.append(_Section(parts[0].lower(), int(port_text), fmts))
            continue
        if key != "a":
            continue
        name, _, arg = value.partition(":")
        if name in have:
            have[name] = bool(arg.strip())
        current = sections[-1] if sections else None
        if name in _DIRECTIONS:
            if current is None:
                session_direction = name
            else:
                current.direction = name
            continue
        if current is None:
            continue
        if name == "mid":
            current.mid = arg.strip()
        elif name == "rtpmap":
            rm = re.match(r"^(\d{1,3})\s+([^/\s]+)/(\d{1,6})(?:/(\d{1,2}))?\s*$", arg)
            if rm is None or int(rm.group(1)) > 127 or int(rm.group(3)) == 0:
                raise _bad(n, "a=rtpmap needs '<payload type> <name>/<clock rate>[/<channels>]'")
            current.rtpmap[int(rm.group(1))] = (rm.group(2), int(rm.group(3)),
                                                int(rm.group(4)) if rm.group(4) else None)
        elif name == "fmtp":
            fm = re.match(r"^(\d{1,3})\s+(.*)$", arg)
            if fm is None:
                raise _bad(n, "a=fmtp needs '<payload type> <parameters>'")
            params = {}
            for item in fm.group(2).split(";"):
                k, _, v = item.strip().partition("=")
                if k:
                    params[k.strip().lower()] = v.strip()
            current.fmtp[int(fm.group(1))] = params
        elif name == "ssrc":
            sm = re.match(r"^(\d{1,10})\b", arg)
            if sm is not None and int(sm.group(1)) < 2**32 and int(sm.group(1)) not in current.ssrcs:
                current.ssrcs.append(int(sm.group(1)))
    if not sections:
        raise SdpError(400, "malformed SDP offer: it has no m= section (no media)")
    if not have["ice-ufrag"] or not have["ice-pwd"]:
        raise SdpError(400, "malformed SDP offer: no ICE credentials (a=ice-ufrag and a=ice-pwd)")
    if not have["fingerprint"]:
        raise SdpError(400, "malformed SDP offer: no DTLS fingerprint (a=fingerprint)")
    return Offer(tuple(s.media(session_direction) for s in sections))


def usable(codec: Codec, kind: str) -> bool:
    """Whether sidecast (through aiortc) can take this codec for ``kind``."""
    name = codec.name.upper()
    if kind == "audio":
        return name == "OPUS" and codec.clock_rate == 48000
    if kind != "video" or codec.clock_rate != 90000:
        return False
    if name == "VP8":
        return True
    if name == "H264":
        if codec.fmtp.get("packetization-mode", "0") != "1":
            return False
        profile = codec.fmtp.get("profile-level-id", "42e01f")
        return bool(re.fullmatch(r"[0-9a-fA-F]{6}", profile)) and profile[:2] == "42"
    return False


def _offered(media: Media) -> str:
    names = [c.describe() for c in media.codecs if c.name.lower() not in ("rtx", "red", "ulpfec", "flexfec-03")]
    return ", ".join(dict.fromkeys(names)) or "none"


def check_media(offer: Offer, *, publish: bool) -> dict[str, Codec]:
    """The first usable codec of each kind, or SdpError(422) saying what the offer lacks.

    ``publish``: a WHIP offer (it must send video, at most one video and one audio track); otherwise a
    WHEP offer (it must be able to receive video)."""
    videos, audios = offer.of_kind("video"), offer.of_kind("audio")
    role = "WHIP" if publish else "WHEP"
    if not videos:
        raise SdpError(422, f"the {role} offer has no video section: sidecast "
                            f"{'needs a video track' if publish else 'previews video'}")
    if len(videos) > 1 or len(audios) > 1:
        raise SdpError(422, f"the {role} offer has {len(videos)} video and {len(audios)} audio sections: "
                            "send one video track and at most one audio track (one MediaStream)")
    wanted = ("sendonly", "sendrecv") if publish else ("recvonly", "sendrecv")
    chosen: dict[str, Codec] = {}
    for kind, sections, accepted in (("video", videos, "H.264 (Constrained Baseline, packetization-mode=1) or VP8"),
                                     ("audio", audios, "Opus")):
        for m in sections:
            if m.direction not in wanted:
                raise SdpError(422, f"the {role} offer's {kind} is {m.direction}: it must be "
                                    f"{' or '.join(wanted)}")
            codec = next((c for c in m.codecs if usable(c, kind)), None)
            if codec is None:
                raise SdpError(422, f"no {kind} codec sidecast accepts in the offer (offered: {_offered(m)}); "
                                    f"use {accepted}")
            chosen[kind] = codec
    return chosen


__all__ = ["AUDIO_CODECS", "Codec", "MAX_SDP_BYTES", "Media", "Offer", "SdpError", "VIDEO_CODECS", "check_media",
           "parse_offer", "usable"]
