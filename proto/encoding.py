"""Encoder settings shared by the core's ladder and the tools that must encode exactly as it does (the
bitrate model's corpus and benches): one definition, so a model is trained on the encodes it advises.
"""

from __future__ import annotations

# x264 for live: veryfast keeps 1080p→ladder above real time on two cores; scene-cut keyframes off so
# the only keyframes are segment starts; two B-frames and a short look-ahead (bounded latency per
# segment). These are the same settings bench/ladder.py gives the ffmpeg CLI.
X264_PRESET = "veryfast"
X264_PROFILE = "high"
X264_BFRAMES = 2
X264_LOOKAHEAD = 10


def vbv_bufsize(max_bitrate: int) -> int:
    """One second of VBV buffer: keeps any 2 s segment under 1.5x the cap."""
    return max_bitrate


def x264_options(crf: float | None, max_bitrate: int, keyint: int, preset: str = X264_PRESET) -> dict[str, str]:
    """Encoder options for PyAV's libx264 (the same meaning as the ffmpeg CLI flags).

    ``crf`` set: capped CRF under a VBV cap of ``max_bitrate``. ``crf=None``: one-pass ABR at ``max_bitrate``
    with the same VBV cap (the ``vbr`` static ladder; ``sidecast.core.ladder`` explains why these settings).
    """
    bufsize = vbv_bufsize(max_bitrate)
    params = (
        f"keyint={keyint}:min-keyint={keyint}:scenecut=0:open-gop=0:bframes={X264_BFRAMES}"
        f":rc-lookahead={X264_LOOKAHEAD}:vbv-maxrate={max_bitrate // 1000}:vbv-bufsize={bufsize // 1000}"
    )
    opts = {"preset": preset, "profile": X264_PROFILE}
    if crf is None:
        params += f":bitrate={max_bitrate // 1000}"
    else:
        opts["crf"] = f"{crf:g}"
    opts["x264-params"] = params
    return opts


__all__ = ["X264_PRESET", "X264_PROFILE", "X264_BFRAMES", "X264_LOOKAHEAD", "vbv_bufsize", "x264_options"]
