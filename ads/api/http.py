"""The HTTP protocol `sidecast ads serve` runs under uvicorn: uvicorn's httptools protocol, with each
response's head and body leaving in one write.

uvicorn writes a response's status line and headers as soon as the app sends ``http.response.start`` and
the body in a second write. On a keep-alive connection with TCP_NODELAY (uvloop's default) that is two
send() calls and two TCP segments per answer, and a client that wakes up twice: for a small JSON answer
(a decision, ``/healthz``) the extra system call and segment cost the server about as much CPU as building
the answer. `CoalescingHttpToolsProtocol` gives uvicorn a transport that holds a small write back until the
next write on the connection, or the end of the event loop's current pass, whichever comes first, and
sends both as one: the bytes on the wire are the same, in the same order, within the same pass of the loop.
Large writes, and everything after one, are not delayed, so streaming (media files) and flow control work as
before.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["CoalescingHttpToolsProtocol", "HOLD_LIMIT", "JOIN_LIMIT"]

HOLD_LIMIT = 16 * 1024
"""Writes up to this size may be held back to join the next one (a response head is a few hundred bytes)."""
JOIN_LIMIT = 256 * 1024
"""A write up to this size is copied behind a held one and sent with it; a larger one follows it alone."""


class _CoalescingTransport:
    """A proxy of a transport whose `write` holds one small write back until the next write or the end of
    the loop's pass. Everything else is the wrapped transport's, after a flush where order matters."""

    __slots__ = ("_transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= JOIN_LIMIT:
                self._transport.write(held + bytes(data))
                return
            self._transport.write(held)
            self._transport.write(data)
        elif len(data) <= HOLD_LIMIT and not self._transport.is_closing():
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def _flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            # the connection may have been lost since the write was held (its end is then unsendable, and
            # uvloop raises on a write to a closed handle); our own close() flushes before closing
            if not self._transport.is_closing():
                self._transport.write(held)

    def writelines(self, list_of_data: Any) -> None:
        self._flush()
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._flush()
        self._transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + len(self._held or b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a transport that sends a response's head and body together
    (`uvicorn.run(app, http=CoalescingHttpToolsProtocol)`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]
