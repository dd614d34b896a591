"""WebRTC for sidecast: WHIP ingest (a publisher sends its camera into the pipeline) and a WHEP preview
(operators watch one rendition with captions at sub-second latency), both plain HTTP + SDP on top of aiortc.

- ``sdp``: what an offer carries and whether sidecast can take it (pure functions, no aiortc);
- ``sync``: RTP timestamps to the sender's clock through RTCP sender reports (pure);
- ``ice``: which local addresses the ICE agent offers (loopback for local servers);
- ``whip``: the WHIP endpoint and the publisher's media as ``sources.Event``s;
- ``whep``: the WHEP endpoint, one shared encode fanned out to every viewer, captions on a data channel.

aiortc is an optional dependency (the ``webrtc`` extra): ``require_aiortc()`` turns its absence into one
line that says what to install.
"""

from __future__ import annotations

import logging

from ..errors import ConfigError

# aioice logs every candidate-pair state change at INFO; keep those for --log-level debug only.
for _name in ("aioice", "aiortc"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)


def require_aiortc() -> None:
    """Raise ConfigError with the install line when aiortc is missing."""
    try:
        import aiortc  # noqa: F401
    except ImportError as exc:
        raise ConfigError("WebRTC (WHIP ingest, WHEP preview) needs aiortc: pip install 'sidecast[webrtc]' "
                          f"({exc})") from None


__all__ = ["require_aiortc"]
