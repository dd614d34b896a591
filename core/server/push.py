"""The server side of push ingest: who may publish (``RegistryAuthority``) and where an accepted session's media
goes (``PushHandler`` and the loopback ``Relay``).

The protocol listeners (RTMP on 1935, SRT on 4200: ``core/push/``) speak the wire protocols. They call this
module at two points, and nowhere else:

1. ``authority.authorize(protocol, key, peer)`` before any media is accepted: a ``Grant(stream_id,
   passphrase)`` or a ``Refusal(reason)`` the listener tells the client where its protocol can
   (RTMP ``NetStream.Publish.BadName``). SRT listeners set the grant's passphrase on the socket.
2. ``handler.accept(session)`` once the publisher is authenticated: the session is a readable FLV (RTMP)
   or MPEG-TS (SRT) byte stream; from then on the server owns it and closes it when the stream's worker
   is done with it (``session.close(reason)``).

How a session reaches its worker: the relay serves its bytes once, on loopback, at an unguessable URL; the
stream's worker pulls that URL like any HTTP source. So the worker process needs nothing from the listener
(no inherited sockets) and the pipeline needs no new kind of source; a publisher that goes away is an end
of input, and the stream's reconnect window takes it from there.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from sidecast.core.push.session import Grant, Peer, PushProtocol, Refusal

from . import keys as K
from .registry import Registry

log = logging.getLogger("sidecast.server.push")

@runtime_checkable
class RelayedSession(Protocol):
    """What the relay needs of an accepted publisher: ``sidecast.core.push.PushSession`` (what the RTMP and
    SRT listeners hand over) is one; so is ``devkit.pushsession.FfmpegSession`` for tests without a socket."""

    @property
    def protocol(self) -> str: ...   # "rtmp" | "srt"

    @property
    def stream_id(self) -> str: ...  # from the Grant

    @property
    def format(self) -> str: ...     # "flv" (RTMP) | "mpegts" (SRT)

    @property
    def peer(self) -> object: ...    # the publisher's address (str() for logs and status)

    def read(self, n: int = 65536) -> bytes:
        """Blocking; up to ``n`` bytes of media; b"" once the publisher has gone."""
        ...

    def close(self, reason: str = "") -> None:
        """End the session (the server is done with it: replaced, stopped, deleted)."""
        ...


MAX_KEY_LENGTH = 256


def key_fingerprint(key: str) -> str:
    """What logs say about a refused key: a short hash, never the key itself."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:12]


def parse_srt_streamid(streamid: str) -> str:
    """The key in an SRT streamid: ``#!::r=KEY,m=publish`` (the access-control syntax) or a plain key."""
    if streamid.startswith("#!::"):
        fields = dict(part.partition("=")[::2] for part in streamid[4:].split(","))
        return fields.get("r", "")
    return streamid


class RegistryAuthority:
    """Authorizes publishers against the registry's hashed stream keys.

    ``can_publish(stream_id)`` (the supervisor's view: enabled, storage not full) is asked after the key
    matched, so a refusal says why without revealing whether some other key exists."""

    def __init__(self, registry: Registry, can_publish: Callable[[str], str | None] | None = None) -> None:
        self.registry = registry
        self.can_publish = can_publish

    def authorize(self, protocol: PushProtocol, key: str, peer: Peer) -> Grant | Refusal:
        key = key.split("?", 1)[0].strip()
        if protocol == "srt":
            key = parse_srt_streamid(key)
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            log.warning("publish refused: malformed stream key", extra={"protocol": protocol, "peer": str(peer)})
            return Refusal("malformed stream key")
        row = self.registry.stream_for_key(key)
        if row is None:
            log.warning("publish refused: unknown stream key",
                        extra={"protocol": protocol, "peer": str(peer), "key": key_fingerprint(key)})
            return Refusal("unknown stream key")
        if row.ingest != "push":
            return Refusal("this stream pulls its source; it takes no publisher")
        if not row.enabled:
            return Refusal("this stream is stopped")
        if self.can_publish is not None:
            why = self.can_publish(row.id)
            if why:
                return Refusal(why)
        passphrase = K.srt_passphrase(self.registry.secret, key) if protocol == "srt" else None
        log.info("publisher authorized", extra={"protocol": protocol, "peer": str(peer), "stream": row.id})
        return Grant(row.id, passphrase)


# ------------------------------------------------------------------------------ the relay

@dataclass
class _Relayed:
    session: RelayedSession
    stream_id: str
    created: float = field(default_factory=time.monotonic)
    taken: bool = False
    bytes: int = 0
    done: threading.Event = field(default_factory=threading.Event)


class Relay:
    """Serves each accepted session's bytes once, on loopback, at ``/relay/<token>.<flv|ts>``.

    ``bytes_in(stream_id)`` counts what publishers sent (the stream's input bitrate)."""

    CHUNK = 64 * 1024

    def __init__(self) -> None:
        self._items: dict[str, _Relayed] = {}
        self._lock = threading.Lock()
        self.base_url = ""  # set once the relay's server listens
        self.counters: dict[str, int] = {}

    def register(self, session: RelayedSession) -> str:
        token = secrets.token_urlsafe(24)
        ext = "ts" if session.format == "mpegts" else "flv"
        with self._lock:
            self._items[token] = _Relayed(session, session.stream_id)
        return f"{self.base_url}relay/{token}.{ext}"

    def bytes_in(self, stream_id: str) -> int:
        with self._lock:
            return self.counters.get(stream_id, 0)

    def forget(self, url: str, reason: str = "") -> None:
        """The worker that should have read ``url`` is gone: close the session if nobody took it."""
        token = url.rsplit("/", 1)[-1].split(".", 1)[0]
        with self._lock:
            item = self._items.pop(token, None)
        if item is not None and not item.taken:
            item.session.close(reason)

    def router(self) -> APIRouter:
        async def relay(request: Request, name: str) -> Response:
            token = name.split(".", 1)[0]
            with self._lock:
                item = self._items.get(token)
                if item is None or item.taken:
                    return Response("unknown or used relay token\n", status_code=404, media_type="text/plain")
                item.taken = True
            media = "video/mp2t" if item.session.format == "mpegts" else "video/x-flv"
            return StreamingResponse(self._pump(token, item), media_type=media,
                                     headers={"Cache-Control": "no-store"})

        router = APIRouter()
        router.add_api_route("/relay/{name}", relay, methods=["GET"], include_in_schema=False)
        return router

    async def _pump(self, token: str, item: _Relayed) -> AsyncIterator[bytes]:
        reason = "the stream's worker ended"
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(item.session.read, self.CHUNK)
                if not chunk:
                    reason = "publisher ended"
                    return
                item.bytes += len(chunk)
                with self._lock:
                    self.counters[item.stream_id] = self.counters.get(item.stream_id, 0) + len(chunk)
                yield chunk
        finally:
            with self._lock:
                self._items.pop(token, None)
            item.session.close(reason)
            item.done.set()

    def app(self) -> FastAPI:
        return FastAPI(openapi_url=None, docs_url=None, redoc_url=None, routes=list(self.router().routes))


class PushHandler:
    """Hands an authenticated session to its stream's worker (through the supervisor and the relay).

    A second publisher on a stream that is already live gets the server's ``on_conflict`` choice: refused
    (the live one stays) or it replaces the first (for a stuck publisher that never hung up)."""

    def __init__(self, publish: Callable[[str, RelayedSession], str | None]) -> None:
        self.publish = publish

    def accept(self, session: RelayedSession) -> Refusal | None:
        """Take over ``session``; a Refusal (the session is closed already) when the stream cannot take it."""
        why = self.publish(session.stream_id, session)
        if why is not None:
            session.close(why)
            return Refusal(why)
        return None


__all__ = ["MAX_KEY_LENGTH", "PushHandler", "RegistryAuthority", "RelayedSession", "Relay", "key_fingerprint",
           "parse_srt_streamid"]
