"""The RTMP push server: one TCP port, any number of publishers, each routed by its stream key.

An asyncio loop on its own thread runs one ``RtmpConnection`` (the protocol state machine in ``rtmp``)
per client. The server adds what the state machine cannot know: the authority's decision at
``publish``, one publisher per stream (``PublisherTable`` and the duplicate policy), the pre-auth
deadline, the idle timeout, connection limits per address and in all, and back-pressure: a session
whose reader is ``Limits.buffer_bytes`` behind stops the socket being read until it catches up, so a
slow stream slows its own publisher and nobody else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import cast

from ..errors import SourceError
from .rtmp import ProtocolError, RtmpConnection
from .session import (
    Grant,
    Limits,
    Peer,
    PublishAuthority,
    PublisherTable,
    PublishListener,
    PushSession,
    Refusal,
    SessionCallback,
    key_digest,
)

log = logging.getLogger("sidecast.ingest.rtmp")


class RtmpServer(PublishListener):
    """Listens on ``host:port`` once ``start()``-ed; hands each accepted publisher to ``on_session``.

    ``on_session`` and ``authority.authorize`` run on the server's loop thread: return quickly (hand the
    session to a thread or a queue). ``close()`` drops every connection and ends every session."""

    def __init__(self, host: str, port: int, authority: PublishAuthority, on_session: SessionCallback, *,
                 limits: Limits | None = None, table: PublisherTable | None = None) -> None:
        super().__init__(host, port, authority, on_session, limits, table, log)
        self.dropped = 0           # connections dropped: protocol errors, limits, timeouts
        self._clients: set[_Client] = set()
        self._per_address: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> RtmpServer:
        """Bind and serve; a second call does nothing. SourceError when the port cannot be had."""
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(512)
        except OSError as exc:
            sock.close()
            raise SourceError(f"cannot listen for RTMP on {self.host}:{self.port}: {exc.strerror}") from exc
        sock.setblocking(False)
        self.port = int(sock.getsockname()[1])
        loop = self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        failed: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._server = loop.run_until_complete(loop.create_server(lambda: _Client(self), sock=sock))
            except BaseException as exc:  # surfaced to start()'s caller
                failed.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(asyncio.sleep(0))  # let aborted transports call connection_lost
            loop.close()

        self._thread = threading.Thread(target=run, name=f"rtmp-{self.port}", daemon=True)
        self._thread.start()
        ready.wait()
        if failed:
            raise SourceError(f"cannot serve RTMP on {self.host}:{self.port}: {failed[0]}")
        log.info("RTMP server listening", extra={"address": f"{self.host}:{self.port}"})
        return self

    def close(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        self._loop = None

        def stop() -> None:
            if self._server is not None:
                self._server.close()
            for c in list(self._clients):
                c.drop("server closing", abort=True)
            loop.call_soon(loop.stop)

        try:
            loop.call_soon_threadsafe(stop)
        except RuntimeError:  # loop already closed
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(10)

    @property
    def connections(self) -> int:
        return len(self._clients)

    # ---------------------------------------------------------------- bookkeeping (loop thread)

    def _admit(self, client: _Client) -> str | None:
        host = client.peer.host
        if len(self._clients) >= self.limits.max_connections:
            return f"server full ({self.limits.max_connections} connections)"
        if self._per_address.get(host, 0) >= self.limits.per_address:
            return f"too many connections from this address (limit {self.limits.per_address})"
        self._clients.add(client)
        self._per_address[host] = self._per_address.get(host, 0) + 1
        return None

    def _forget(self, client: _Client) -> None:
        if client in self._clients:
            self._clients.discard(client)
            host = client.peer.host
            left = self._per_address.get(host, 1) - 1
            if left <= 0:
                self._per_address.pop(host, None)
            else:
                self._per_address[host] = left


class _Client(asyncio.Protocol):
    """One TCP connection: the protocol state machine plus timers, limits and the session it feeds."""

    def __init__(self, server: RtmpServer) -> None:
        self.srv = server
        self.transport: asyncio.Transport | None = None
        self.peer = Peer("?", 0)
        self.conn: RtmpConnection | None = None
        self.session: PushSession | None = None
        self.closed = False
        self.paused = False
        self.end_reason: str | None = None
        self.opened = time.monotonic()
        self.last_media = self.opened
        self._timer: asyncio.TimerHandle | None = None
        self._tags: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    # ---------------------------------------------------------------- asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        addr = transport.get_extra_info("peername") or ("?", 0)
        self.peer = Peer(str(addr[0]), int(addr[1]))
        why = self.srv._admit(self)
        if why is not None:
            self.closed = True
            self.srv.dropped += 1
            self.srv._ratelog(f"limit:{self.peer.host}", logging.WARNING, f"RTMP connection refused: {why}",
                              peer=self.peer.host)
            self.transport.abort()
            return
        limits = self.srv.limits
        self.conn = RtmpConnection(self._decide, self._flv, self._unpublished, pre_auth_bytes=limits.pre_auth_bytes)
        self._timer = self._loop.call_later(limits.pre_auth_timeout, self._pre_auth_expired)

    def data_received(self, data: bytes) -> None:
        if self.closed or self.conn is None:
            return
        conn = self.conn
        before = conn.media_messages
        try:
            conn.receive(data)
        except ProtocolError as exc:
            self._flush_flv()
            self.srv.dropped += 1
            extra: dict[str, object] = {"peer": str(self.peer)}
            if self.session is not None:
                extra["stream"] = self.session.stream_id
            # one line per address and kind of fault every 10 s, however many connections repeat it
            bucket = f"proto:{self.peer.host}:{re.sub(r'[0-9]+', '#', str(exc))}"
            self.srv._ratelog(bucket, logging.WARNING, f"RTMP connection dropped: {exc}", **extra)
            self._write(conn.take_outgoing())
            self.drop(str(exc), abort=True)
            return
        self._write(conn.take_outgoing())
        if conn.media_messages != before:
            self.last_media = time.monotonic()
            self._flush_flv()
        if conn.wants_close:
            self.drop("publisher unpublished" if self.session is not None else "publish refused")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self.srv._forget(self)
        s = self.session
        if s is not None:
            reason = self.end_reason or (f"connection lost: {exc}" if exc else "publisher disconnected")
            s._end(reason)
            self.srv.table.release(s)
            log.info("RTMP publisher gone", extra={"stream": s.stream_id, "peer": str(self.peer), "reason": reason,
                                                   "bytes": s.bytes_in})

    def pause_writing(self) -> None:   # a client that does not read our few replies: nothing to hold back
        pass

    def resume_writing(self) -> None:
        pass

    # ---------------------------------------------------------------- decisions

    def _decide(self, key: str, app: str) -> str | None:
        srv = self.srv
        digest = key_digest(key)
        try:
            decision: Grant | Refusal = srv.authority.authorize("rtmp", key, self.peer)
        except Exception:
            log.exception("publish authority failed; refusing", extra={"peer": str(self.peer), "key": digest})
            decision = Refusal("authorization failed")
        if isinstance(decision, Refusal):
            srv.refused += 1
            srv._ratelog(f"refused:{self.peer.host}:{digest}", logging.WARNING,
                         f"RTMP publish refused: {decision.reason}", peer=str(self.peer), key=digest)
            return decision.reason
        limits = srv.limits
        session = PushSession(decision.stream_id, "rtmp", self.peer, digest, "flv", buffer_bytes=limits.buffer_bytes)
        claimed, old = srv.table.claim(session, limits.on_duplicate)
        if not claimed:
            srv.refused += 1
            srv._ratelog(f"dup:{decision.stream_id}", logging.WARNING,
                         "RTMP publish refused: the stream already has a publisher",
                         stream=decision.stream_id, peer=str(self.peer), key=digest)
            return "this stream is already being published"
        loop = self._loop
        session._bind(on_drain=lambda: _call_threadsafe(loop, self._resume),
                      on_close=lambda: _call_threadsafe(loop, self._reader_closed))
        self.session = session
        if old is not None:
            log.warning("RTMP publisher replaces the stream's current publisher",
                        extra={"stream": session.stream_id, "peer": str(self.peer), "replaced": str(old.peer)})
            old._kick("replaced by a new publisher")
        if self._timer is not None:
            self._timer.cancel()
        self.last_media = time.monotonic()
        self._timer = loop.call_later(self._idle_interval(), self._idle_check)
        try:
            srv.on_session(session)
        except Exception:
            log.exception("session handler failed; refusing the publisher", extra={"stream": session.stream_id})
            self.session = None
            session._end("session handler failed")
            srv.table.release(session)
            return "server error"
        srv.accepted += 1
        log.info("RTMP publisher accepted", extra={"stream": session.stream_id, "peer": str(self.peer),
                                                   "key": digest, "app": app})
        return None

    def _flv(self, data: bytes) -> None:
        self._tags.append(data)

    def _flush_flv(self) -> None:
        """Hand the tags of one socket read to the session at once: one wake-up of its reader per read,
        not one per tag."""
        if not self._tags:
            return
        data = self._tags[0] if len(self._tags) == 1 else b"".join(self._tags)
        self._tags.clear()
        s = self.session
        if s is not None and not s._feed(data) and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def _unpublished(self, why: str) -> None:
        self.end_reason = why

    # ---------------------------------------------------------------- timers and closing (loop thread)

    def _idle_interval(self) -> float:
        return min(1.0, self.srv.limits.idle_timeout / 4)

    def _pre_auth_expired(self) -> None:
        if self.closed or self.session is not None:
            return
        self.srv.dropped += 1
        self.srv._ratelog(f"preauth:{self.peer.host}", logging.WARNING,
                          f"RTMP connection dropped: no accepted publish within {self.srv.limits.pre_auth_timeout:g} s",
                          peer=str(self.peer))
        self.drop("pre-auth timeout", abort=True)

    def _idle_check(self) -> None:
        if self.closed:
            return
        idle = time.monotonic() - self.last_media
        if not self.paused and idle > self.srv.limits.idle_timeout:
            log.warning("RTMP publisher dropped: no media", extra={"stream": self.session.stream_id if self.session
                                                                   else None, "idle_s": round(idle, 1)})
            self.srv.dropped += 1
            self.drop(f"no media for {self.srv.limits.idle_timeout:g} s", abort=True)
            return
        self._timer = self._loop.call_later(self._idle_interval(), self._idle_check)

    def _resume(self) -> None:
        if self.paused and not self.closed and self.transport is not None:
            self.paused = False
            self.last_media = time.monotonic()
            self.transport.resume_reading()

    def _reader_closed(self) -> None:
        if not self.closed:
            self.drop(self.session.end_reason or "closed by the reader" if self.session else "closed", abort=True)

    def _write(self, data: bytes) -> None:
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def drop(self, reason: str, abort: bool = False) -> None:
        if self.closed and self.transport is not None and self.transport.is_closing():
            return
        self.closed = True
        if self.end_reason is None:
            self.end_reason = reason
        if self.transport is not None:
            if abort:
                self.transport.abort()
            else:
                self.transport.close()


def _call_threadsafe(loop: asyncio.AbstractEventLoop, fn: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(fn)
    except RuntimeError:  # the loop is closed: the connection is gone already
        pass


__all__ = ["RtmpServer"]
