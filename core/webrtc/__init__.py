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

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from ..errors import ConfigError

log = logging.getLogger("sidecast.webrtc")
S = TypeVar("S")

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


def end_sessions_at_close(loop: asyncio.AbstractEventLoop | None, sessions: Callable[[], Iterable[S]],
                          end: Callable[[S, str], Awaitable[None]], what: str, timeout: float = 5.0) -> None:
    """End every session of a WHIP or WHEP endpoint from the thread that shuts sidecast down: on the event
    loop that owns their peer connections (aiortc objects belong to their loop), listing them there too,
    waiting at most ``timeout``. A failure is logged, never raised: shutting down goes on."""
    if loop is None or not loop.is_running():
        return  # no session was ever started (the loop is learnt from the first offer)

    async def end_all() -> None:
        for session in list(sessions()):
            await end(session, "sidecast is shutting down")

    try:
        asyncio.run_coroutine_threadsafe(end_all(), loop).result(timeout)
    except Exception as exc:  # a hung or half-closed connection must not stop the shutdown
        log.debug("ending %s at close: %s", what, exc)


__all__ = ["end_sessions_at_close", "require_aiortc"]
