"""The ABR ladder: which renditions to encode and the x264 settings for each.

The static ladder has two rate-control modes (``sidecast run --rate-control``):

* ``crf`` (default), *capped CRF*: each rendition encodes at a constant quality (CRF) with a VBV cap
  (maxrate/bufsize). That is what live encoders use when quality matters; it is already content-adaptive
  (a still page costs a tenth of the cap).
* ``vbr``, the classic *fixed-bitrate* ladder: each segment of a rendition is encoded with x264's one-pass
  ABR at the rung's ``max_bitrate``, with VBV maxrate = that rate and bufsize = ``vbv_bufsize``, so
  ``declared_bandwidth`` stays a true bound. This is the baseline per-title/per-shot encoding is measured
  against. Measured with a fresh encoder per 2 s segment (the core's settings, six training clips from
  grainy fast pans to a still text page, 720p at 3000k and 360p at 800k): each segment lands at 0.95-1.10x
  the rung's rate. The overshoot is the VBV buffer starting 90% full (x264's default ``vbv-init``) and being
  drained within the segment; it stays inside the declared bound (rate + bufsize/duration). ``vbv-init=0.5``
  undershot by up to 23% on easy content and ``ratetol``, ``qcomp`` or ``mbtree=0`` changed nothing that
  mattered, so the mode uses x264's defaults. No filler data (not ``nal-hrd=cbr``): content that cannot use
  the rate spends less, which makes the baseline harder to beat, not easier.

Bitrate hints turn either mode into capped CRF for the segment they cover: the hint's CRF under
min(rung cap, hint cap); a hint without a CRF keeps the static mode under that cap (``segment_settings``).
A hint never raises the cap.

Every segment is encoded by a fresh encoder that starts with an IDR frame, so segments are closed GOPs
aligned across renditions by construction (same frame, same instant), and per-segment settings need no
encoder reconfiguration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from sidecast.contract.encoding import vbv_bufsize

RateControl = Literal["crf", "vbr"]
RATE_CONTROLS: tuple[RateControl, ...] = ("crf", "vbr")


@dataclass(frozen=True)
class Rung:
    """One rendition of the ladder. ``max_bitrate`` is the VBV cap in bits/s."""

    name: str
    height: int
    max_bitrate: int
    crf: float = 23.0
    width: int = 0  # 0 = derived from the source aspect

    def sized_for(self, src_w: int, src_h: int) -> Rung:
        h = min(self.height, src_h)
        h -= h % 2
        w = self.width or int(round(src_w * h / src_h / 2.0)) * 2
        return replace(self, height=h, width=max(2, w))


# 1080p/720p/480p/360p, the caps in line with common live ladders for H.264 at 30 fps.
DEFAULT_LADDER: tuple[Rung, ...] = (
    Rung("1080p", 1080, 6_000_000, 23.0),
    Rung("720p", 720, 3_000_000, 23.0),
    Rung("480p", 480, 1_400_000, 23.0),
    Rung("360p", 360, 800_000, 23.0),
)

AUDIO_BITRATE = 128_000
AUDIO_SAMPLE_RATE = 48_000
AUDIO_CHANNELS = 2

def parse_rate_control(value: str) -> RateControl:
    """``--rate-control`` as typed, or a ValueError that says what is accepted."""
    v = value.strip().lower()
    if v == "crf":
        return "crf"
    if v == "vbr":
        return "vbr"
    raise ValueError(f"bad --rate-control {value!r}: expected crf (capped CRF, the default) or vbr "
                     "(fixed-bitrate ladder: each rung at its bitrate)")


def segment_settings(rate_control: RateControl, rung_crf: float, rung_cap: int, hint_crf: float | None,
                     hint_cap: int | None) -> tuple[float | None, int]:
    """The (CRF, or None for ABR, and cap) one segment of a rung is encoded with.

    No hint: the static mode (capped CRF at the rung's CRF, or ABR at the rung's rate). A hint with a CRF
    (0 < crf <= 51) makes the segment capped CRF in either mode: its CRF under min(rung cap, hint cap). A hint
    without one (crf 0, "keep the static value" in the contract) keeps the static mode under that cap: the
    rung's CRF, or ABR at the lowered rate. A hint may lower the cap, never raise it: the declared BANDWIDTH
    depends on that ceiling.
    """
    cap = min(rung_cap, hint_cap) if hint_cap is not None and hint_cap > 0 else rung_cap
    if hint_crf is not None and 0 < hint_crf <= 51:
        return hint_crf, cap
    return (None if rate_control == "vbr" else rung_crf), cap


def segment_size(rung_width: int, rung_height: int, hint_width: int, hint_height: int) -> tuple[int, int]:
    """The picture size one segment of a rung is encoded at: the hint's, when it is a valid smaller size.

    A hint may ask for a segment to be encoded below the rung's declared size (the per-segment resolution
    choice: a hard segment can look better at fewer pixels for the same bits); the player scales it up
    to the size it shows. Accepted: both dimensions set, at most the rung's, at least a quarter of its
    height (and 16 px), the rung's aspect within 2% (the player keeps the decoded picture's aspect, so
    another aspect would change the framing). Odd sizes are rounded down to even. Anything else, or no
    size (0), is the rung's own size.
    """
    w, h = hint_width - hint_width % 2, hint_height - hint_height % 2
    if w <= 0 or h <= 0 or w > rung_width or h > rung_height or h < max(16, rung_height // 4):
        return rung_width, rung_height
    if abs((w / h) / (rung_width / rung_height) - 1.0) > 0.02:
        return rung_width, rung_height
    return w, h


def declared_bandwidth(max_bitrate: int, segment_duration: float) -> int:
    """An upper bound of a segment's peak bit rate, declared while live (before it is measured).

    Under VBV a segment of d seconds holds at most maxrate*d + bufsize bits; MPEG-TS adds ~6% of packet
    and PES overhead. The VOD master written at the end declares the measured peak instead.
    """
    peak = max_bitrate + vbv_bufsize(max_bitrate) / max(segment_duration, 0.5)
    return int(math.ceil(peak * 1.06))


def build_ladder(src_w: int, src_h: int, rungs: tuple[Rung, ...] = DEFAULT_LADDER) -> list[Rung]:
    """The rungs that fit the source, sized to its aspect, never upscaled, highest first.

    A source smaller than the lowest rung still gets one rendition at its own size.
    """
    if src_w <= 0 or src_h <= 0:
        raise ValueError(f"invalid source size {src_w}x{src_h}")
    fitting = [r.sized_for(src_w, src_h) for r in rungs if r.height <= src_h]
    if not fitting:
        lowest = min(rungs, key=lambda r: r.height)
        fitting = [replace(lowest, name=f"{src_h - src_h % 2}p").sized_for(src_w, src_h)]
    seen: set[int] = set()
    out: list[Rung] = []
    for r in sorted(fitting, key=lambda r: -r.height):
        if r.height not in seen:
            seen.add(r.height)
            out.append(r)
    return out


def parse_ladder(spec: str) -> tuple[Rung, ...]:
    """Parse ``--ladder "720p:3000k,480p:1400k:crf=24"`` (height p : max bitrate [: crf=N])."""
    rungs = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        fields = part.split(":")
        try:
            height = int(fields[0].lower().removesuffix("p"))
            rate_s = fields[1].lower() if len(fields) > 1 else ""
            mult = 1000 if rate_s.endswith("k") else 1_000_000 if rate_s.endswith("m") else 1
            rate = int(float(rate_s.rstrip("km")) * mult) if rate_s else 0
            crf = 23.0
            for extra in fields[2:]:
                key, _, value = extra.partition("=")
                if key != "crf":
                    raise ValueError(f"unknown rung option {key!r}")
                crf = float(value)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"bad ladder rung {part!r}: expected HEIGHTp:BITRATE[k|m][:crf=N] ({exc})") from exc
        if height < 64 or height > 4320 or rate <= 0 or not (0 <= crf <= 51):
            raise ValueError(f"bad ladder rung {part!r}: height 64..4320, bitrate > 0, crf 0..51")
        rungs.append(Rung(f"{height}p", height, rate, crf))
    if not rungs:
        raise ValueError("empty ladder")
    return tuple(rungs)
