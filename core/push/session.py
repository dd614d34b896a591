"""The seam between the push servers and whatever runs streams: who may publish (``PublishAuthority``),
what an accepted publisher becomes (``PushSession``), the limits every server enforces (``Limits``), and
the table that keeps one publisher per stream across protocols (``PublisherTable``).

Nothing here touches a socket: the servers in ``rtmp_server`` and ``srt`` feed sessions, a consumer
reads them.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol, Self

log = logging.getLogger("sidecast.ingest.push")

PushProtocol = Literal["rtmp", "srt"]

# Arrival stamps a session keeps: at least the chunks of the last STAMPS_BEHIND bytes read (a demuxer reports
# packets a little behind what it has read: its read-ahead buffer, an MPEG-TS PES being reassembled), trimmed
# once more than STAMPS_KEPT chunks are held.
STAMPS_BEHIND = 4 << 20
STAMPS_KEPT = 4096
DuplicatePolicy = Literal["refuse", "replace"]


class Peer(NamedTuple):
    """The publisher's address as the server saw it."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Grant:
    """A publish attempt is accepted, for ``stream_id``.

    ``passphrase`` (SRT only): the passphrase the caller must have encrypted with; None accepts an
    unencrypted caller only (libsrt refuses a mismatch either way, before any media is accepted)."""

    stream_id: str
    passphrase: str | None = None


@dataclass(frozen=True)
class Refusal:
    """A publish attempt is refused; ``reason`` is told to the publisher where the protocol can carry
    text (RTMP's ``NetStream.Publish.BadName`` description) and logged. Never put the key in it."""

    reason: str


class PublishAuthority(Protocol):
    """Decides who may publish. Called once per publish attempt, on the server's I/O thread, before any
    media of that publisher is accepted: keep it quick (a dict or an indexed database lookup).

    ``key`` is the RTMP stream name less any ``?query`` a publisher's tooling appended, or the SRT
    resource name (``#!::r=KEY,m=publish``) or the plain streamid. An exception counts as a refusal."""

    def authorize(self, protocol: PushProtocol, key: str, peer: Peer) -> Grant | Refusal: ...


def key_digest(key: str) -> str:
    """A short stand-in for a stream key in logs: the first 10 hex digits of its SHA-256.

    Operators can match it against a key they hold (``sidecast`` logs never show a key in clear)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]


class StaticAuthority:
    """A fixed set of keys for one stream: what ``sidecast run rtmp://... / srt://...`` uses.

    ``keys`` empty with ``any_key=True`` accepts every key (an SRT listener whose callers send no
    streamid; the passphrase is then the only secret)."""

    def __init__(self, keys: Iterable[str], *, stream_id: str = "live", passphrase: str | None = None,
                 any_key: bool = False) -> None:
        self._keys = [k.encode() for k in keys]
        self.stream_id = stream_id
        self.passphrase = passphrase
        self.any_key = any_key

    def authorize(self, protocol: PushProtocol, key: str, peer: Peer) -> Grant | Refusal:
        if not self.any_key:
            given = key.encode("utf-8", "surrogatepass")
            # compare against every key (constant time per key) so timing says nothing about which matched
            hit = False
            for k in self._keys:
                hit |= hmac.compare_digest(given, k)
            if not hit:
                return Refusal("unknown stream key")
        return Grant(self.stream_id, passphrase=self.passphrase if protocol == "srt" else None)


@dataclass(frozen=True)
class Limits:
    """What every push server enforces, per connection and per address.

    - ``pre_auth_timeout``: seconds from TCP accept to an accepted ``publish`` (RTMP). A silent or
      trickling client is dropped at this deadline whatever it sends.
    - ``idle_timeout``: seconds without media from a publishing client before its session ends.
    - ``per_address``: concurrent connections (pending and publishing) from one IP address.
    - ``max_connections``: concurrent connections in all.
    - ``on_duplicate``: a second publisher for a stream that already has one is refused ("refuse",
      the default; it is told why) or replaces the first ("replace": the operator's choice when a stuck
      encoder must not hold a stream hostage until its idle timeout).
    - ``buffer_bytes``: what a session holds for a slow reader; past it RTMP stops reading the socket
      (TCP pushes back on the publisher) and SRT drops what arrives (live UDP cannot wait).
    - ``pre_auth_bytes``: what an RTMP client may send before its publish is accepted (commands are a
      few hundred bytes; the handshake is 3,073)."""

    pre_auth_timeout: float = 10.0
    idle_timeout: float = 30.0
    per_address: int = 16
    max_connections: int = 1024
    on_duplicate: DuplicatePolicy = "refuse"
    buffer_bytes: int = 16 << 20
    pre_auth_bytes: int = 64 << 10

    def __post_init__(self) -> None:
        if not (0 < self.pre_auth_timeout <= 3600 and 0 < self.idle_timeout <= 86_400):
            raise ValueError("timeouts must be positive (pre-auth at most 1 h, idle at most 1 day)")
        if self.per_address < 1 or self.max_connections < 1:
            raise ValueError("connection limits must be at least 1")
        if self.on_duplicate not in ("refuse", "replace"):
            raise ValueError("on_duplicate must be 'refuse' or 'replace'")
        if self.buffer_bytes < 64 << 10:
            raise ValueError("buffer_bytes must be at least 64 KiB")


class PushSession:
    """One accepted publisher: its stream id, how it came, and its media as a readable byte stream.

    ``format`` names the bytes for a demuxer: ``"flv"`` (RTMP: FLV header and tags as received,
    timestamps preserved) or ``"mpegts"`` (SRT: the caller's TS). ``read()`` blocks until bytes come
    and returns b"" at the end, so ``av.open(session, format=session.format)`` reads it directly.
    ``close()`` ends it from the reader's side (the server drops the connection); the end of the
    publisher ends it from the other side, after what it sent has been read.
    """

    def __init__(self, stream_id: str, protocol: PushProtocol, peer: Peer, key_digest: str, fmt: str,
                 *, buffer_bytes: int = 16 << 20) -> None:
        self.stream_id = stream_id
        self.protocol: PushProtocol = protocol
        self.peer = peer
        self.key_digest = key_digest
        self.format = fmt
        self.started = time.time()
        self.bytes_in = 0
        self.dropped_bytes = 0          # SRT: arrived while the reader was buffer_bytes behind
        self.end_reason: str | None = None
        self._high = buffer_bytes
        self._low = buffer_bytes // 2
        self._chunks: deque[bytes | memoryview] = deque()
        self._size = 0
        self._cond = threading.Condition()
        self._ended = False             # no more bytes will come (the buffer may still hold some)
        self._reader_closed = False
        self._above_high = False
        self._on_drain: Callable[[], None] | None = None
        self._on_close: Callable[[], None] | None = None
        self._done = threading.Event()
        # When each fed chunk arrived: its end as a byte offset of the stream, and the wall clock then.
        # A demuxer reports each packet's byte offset, so the reader can tell when a packet *arrived*
        # however far behind it reads (``arrival_at``; PDT depends on it). Trimmed as the reader moves on.
        self._stamp_ends: list[int] = []
        self._stamp_at: list[float] = []
        self._stamp_from = 0             # where the first kept chunk starts (earlier stamps are trimmed)
        self._bytes_read = 0

    def __repr__(self) -> str:
        state = f"ended ({self.end_reason})" if self._ended else "live"
        return f"<PushSession {self.protocol} stream={self.stream_id} peer={self.peer} {state}>"

    # ---------------------------------------------------------------- reader side

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all that is buffered for n < 0), blocking until some come; b"" at the end."""
        with self._cond:
            while not self._chunks and not self._ended and not self._reader_closed:
                self._cond.wait()
            if self._reader_closed or not self._chunks:
                return b""
            out: list[bytes | memoryview] = []
            want = n if n >= 0 else self._size
            got = 0
            while self._chunks and got < want:
                c = self._chunks[0]
                take = min(len(c), want - got)
                if take == len(c):
                    out.append(self._chunks.popleft())
                else:
                    mv = memoryview(c)
                    out.append(mv[:take])
                    self._chunks[0] = mv[take:]
                got += take
            self._size -= got
            self._bytes_read += got
            if len(self._stamp_ends) > STAMPS_KEPT:
                # keep the chunks a demuxer may still report packets from (it reads ahead of them)
                cut = bisect.bisect_left(self._stamp_ends, self._bytes_read - STAMPS_BEHIND)
                if cut:
                    self._stamp_from = self._stamp_ends[cut - 1]
                    del self._stamp_ends[:cut], self._stamp_at[:cut]
            drain = self._above_high and self._size <= self._low
            if drain:
                self._above_high = False
            cb = self._on_drain if drain else None
        if cb is not None:
            cb()
        return b"".join(out)

    def readable(self) -> bool:
        return True

    def arrival_at(self, pos: int) -> float | None:
        """The wall clock (``time.time()``) when the byte at offset ``pos`` of the stream was received, or
        None when it is unknown (negative, not received, or too far behind the reader to be kept)."""
        with self._cond:
            if pos < self._stamp_from:
                return None
            i = bisect.bisect_right(self._stamp_ends, pos)
            return self._stamp_at[i] if i < len(self._stamp_ends) else None

    def latest_arrival(self) -> float | None:
        """When the newest byte fed so far arrived: a bound (never early) for a packet whose position a
        demuxer does not report (one flushed at the end of the input)."""
        with self._cond:
            return self._stamp_at[-1] if self._stamp_at else None

    def close(self, reason: str = "closed by the reader") -> None:
        """Stop reading: buffered bytes are discarded and the publisher's connection is dropped."""
        with self._cond:
            if self._reader_closed:
                return
            self._reader_closed = True
            self._chunks.clear()
            self._size = 0
            if self.end_reason is None:
                self.end_reason = reason
            self._cond.notify_all()
            cb = self._on_close
        if cb is not None:
            cb()

    @property
    def closed(self) -> bool:
        """True once no more bytes will come from the publisher, or the reader closed the session."""
        return self._ended or self._reader_closed

    def wait_ended(self, timeout: float | None = None) -> bool:
        """Wait until the publisher's side is over (disconnected, timed out, replaced, closed)."""
        return self._done.wait(timeout)

    # ---------------------------------------------------------------- server side

    def _bind(self, on_drain: Callable[[], None] | None, on_close: Callable[[], None]) -> None:
        self._on_drain = on_drain
        self._on_close = on_close

    def _feed(self, data: bytes, *, drop_when_full: bool = False) -> bool:
        """Queue bytes for the reader. Returns False when the buffer is past its high-water mark (the
        server should stop reading until ``on_drain``); with ``drop_when_full`` such bytes are dropped."""
        with self._cond:
            if self._reader_closed or self._ended:
                return True
            if drop_when_full and self._size >= self._high:
                self.dropped_bytes += len(data)
                return False
            self._chunks.append(data)
            self._size += len(data)
            self.bytes_in += len(data)
            self._stamp_ends.append(self.bytes_in)
            self._stamp_at.append(time.time())
            self._cond.notify_all()
            if self._size >= self._high:
                self._above_high = True
                return False
            return True

    def _kick(self, reason: str) -> None:
        """End the session from the server's side and drop its connection (a replacing publisher)."""
        self._end(reason)
        cb = self._on_close
        if cb is not None:
            cb()

    def _end(self, reason: str) -> None:
        """The publisher's side is over; the reader gets what is buffered, then b""."""
        with self._cond:
            if not self._ended:
                self._ended = True
                if self.end_reason is None:
                    self.end_reason = reason
            self._cond.notify_all()
        self._done.set()


SessionCallback = Callable[[PushSession], None]


class PublisherTable:
    """One publisher per stream id, shared by the RTMP and SRT servers of one process.

    ``claim`` applies the duplicate policy: with "refuse" a stream that has a live session stays with it;
    with "replace" the old session is returned so the caller can end it after installing the new one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, PushSession] = {}

    def busy(self, stream_id: str) -> bool:
        with self._lock:
            s = self._live.get(stream_id)
            return s is not None and not s.closed

    def claim(self, session: PushSession, policy: DuplicatePolicy) -> tuple[bool, PushSession | None]:
        """(claimed, replaced session). Not claimed: the stream has a live publisher and policy is refuse."""
        with self._lock:
            old = self._live.get(session.stream_id)
            if old is not None and old.closed:
                old = None
            if old is not None and policy == "refuse":
                return False, None
            self._live[session.stream_id] = session
            return True, old

    def release(self, session: PushSession) -> None:
        with self._lock:
            if self._live.get(session.stream_id) is session:
                del self._live[session.stream_id]

    def sessions(self) -> list[PushSession]:
        with self._lock:
            return list(self._live.values())


@dataclass
class RateLimitedLog:
    """Logs one line per bucket at most every ``every`` seconds (a flood of refused connections must not
    become a flood of log lines), with the count of lines it held back."""

    logger: logging.Logger = log
    every: float = 10.0
    _last: dict[str, tuple[float, int]] = field(default_factory=dict)

    def __call__(self, bucket: str, level: int, msg: str, **extra: object) -> None:
        now = time.monotonic()
        last, held = self._last.get(bucket, (-1e9, 0))
        if now - last < self.every:
            self._last[bucket] = (last, held + 1)
            return
        if len(self._last) > 4096:
            self._last.clear()
        self._last[bucket] = (now, 0)
        if held:
            extra["suppressed"] = held
        self.logger.log(level, msg, extra=extra)


class PublishListener:
    """What the RTMP and SRT servers share: who authorizes a publisher, where accepted sessions go, the
    connection limits and the one-publisher-per-stream table, counters, and ``with`` = start ... close.
    Subclasses bind their protocol in ``start()`` (a second call does nothing) and end it in ``close()``."""

    def __init__(self, host: str, port: int, authority: PublishAuthority, on_session: SessionCallback,
                 limits: Limits | None, table: PublisherTable | None, logger: logging.Logger) -> None:
        self.host = host
        self.port = port
        self.authority = authority
        self.on_session = on_session
        self.limits = limits or Limits()
        self.table = table or PublisherTable()
        self.accepted = 0          # publishes accepted
        self.refused = 0           # publishes refused (key, duplicate)
        self._ratelog = RateLimitedLog(logger)

    def start(self) -> Self:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Peer", "Grant", "Refusal", "PublishAuthority", "StaticAuthority", "Limits", "PushSession",
           "PublisherTable", "SessionCallback", "key_digest", "PushProtocol", "DuplicatePolicy", "PublishListener"]
