"""Stream parameters: the ``StreamStart.params`` keys the core sends and sidecars read, with their rules.

The core and a sidecar must agree on what ``"vertical.aspect" = "4:5"`` means and which values are
allowed, so both sides parse with these functions: the core refuses a bad option before the stream
starts, and a sidecar that gets one from another core reports it with the same message.
"""

from __future__ import annotations

import math

VERTICAL_ASPECT = "vertical.aspect"            # "9:16", "4:5", "1:1"
VERTICAL_SAFE_MARGIN = "vertical.safe_margin"  # fraction of the crop kept clear around the subject
VERTICAL_MAX_PAN_SPEED = "vertical.max_pan_speed"  # fraction of the source width per second
VERTICAL_LOOKAHEAD = "vertical.lookahead"      # seconds the crop path may look ahead
CAPTIONS_LANGUAGE = "captions.language"        # the source language ("en"), or "auto"
CAPTIONS_TRANSLATE = "captions.translate"      # "es,pt": one translated cue track per language
BITRATE_TARGET_VMAF = "bitrate.target_vmaf"    # "93": bitrate hints aim each segment at this VMAF
STREAM_LIVE = "stream.live"                    # "true": media arrives as it happens (a push, a pull, --realtime);
                                               # "false": a file read as fast as the pipeline goes (nothing dropped)

SAFE_MARGIN_RANGE = (0.0, 0.4)
MAX_PAN_SPEED_RANGE = (0.01, 10.0)
LOOKAHEAD_RANGE = (0.0, 5.0)
TARGET_VMAF_RANGE = (20.0, 100.0)


def parse_aspect(text: str) -> tuple[int, int]:
    """``"9:16"`` (or ``"9/16"``) -> (9, 16); raises ValueError with a message a user can act on."""
    try:
        a, b = (int(p) for p in str(text).strip().replace("/", ":").split(":"))
    except ValueError:
        raise ValueError(f"aspect must look like 9:16, 4:5 or 1:1, got {text!r}") from None
    if a <= 0 or b <= 0 or max(a, b) > 100:
        raise ValueError(f"aspect must be two positive whole numbers like 9:16, got {text!r}")
    return a, b


def parse_number(name: str, text: str, low: float, high: float) -> float:
    """A finite number in [low, high]; ValueError naming the parameter otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text!r}") from None
    if not math.isfinite(value) or not (low <= value <= high):
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {text}")
    return value


def parse_flag(name: str, text: str) -> bool:
    """``"true"`` / ``"false"`` (any case, surrounding space allowed) -> bool; ValueError naming the parameter
    otherwise. Strict on purpose: a sidecar that guesses at ``"0"`` or ``"yes"`` from another core would act on
    a stream's nature it was never told."""
    value = str(text).strip().lower()
    if value not in ("true", "false"):
        raise ValueError(f"{name} must be true or false, got {text!r}")
    return value == "true"


def parse_languages(text: str) -> list[str]:
    """``"es, pt"`` -> ["es", "pt"] (``captions.translate``)."""
    return [s.strip() for s in str(text).split(",") if s.strip()]


__all__ = [
    "VERTICAL_ASPECT", "VERTICAL_SAFE_MARGIN", "VERTICAL_MAX_PAN_SPEED", "VERTICAL_LOOKAHEAD",
    "CAPTIONS_LANGUAGE", "CAPTIONS_TRANSLATE", "SAFE_MARGIN_RANGE", "MAX_PAN_SPEED_RANGE", "LOOKAHEAD_RANGE",
    "BITRATE_TARGET_VMAF", "TARGET_VMAF_RANGE", "STREAM_LIVE",
    "parse_aspect", "parse_number", "parse_flag", "parse_languages",
]
