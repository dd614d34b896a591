"""The SRT push server: one UDP port, callers routed by their streamid, each stream with its own
passphrase, through a ctypes binding to the system's libsrt (Debian's ``libsrt1.5-gnutls``, which
Debian's ``ffmpeg`` already depends on; PyAV's FFmpeg has no SRT).

Authentication happens inside the SRT handshake: libsrt calls ``srt_listen_callback`` with the caller's
streamid before it completes the connection; there the authority decides, and on a grant the callback
sets that connection's passphrase. libsrt then refuses a caller whose passphrase differs (or who has
none) before a single media packet is delivered. A refusal carries an SRT reject code (1403 forbidden,
1409 conflict, 1402 overload, 1405 bad mode, 1400 bad request); SRT has no field for text, so the
reason is logged, with the key only as its digest.

The streamid forms read: ``#!::r=KEY,m=publish`` (SRT's access-control syntax; other keys such as
``u=`` are ignored, and a missing ``m`` means publish on this publish-only server) and a plain ``KEY``.

Each accepted caller becomes a ``PushSession`` of format ``mpegts``. One thread waits on libsrt's epoll
for all sockets; a reader that falls ``Limits.buffer_bytes`` behind loses what arrives meanwhile (live
UDP cannot be paused), counted in ``session.dropped_bytes``.

A caller that ends its stream leaves its last packets in libsrt's receive buffer: SRT's live mode hands a
packet over only at its play time, the receiver latency (120 ms by default, more if the caller asks) after
it was sent. libsrt keeps a broken socket's buffer readable, so the server reads it out before it closes
the socket (at most that latency and ``DRAIN_MARGIN`` more); closing at once cut the last ~4 frames of
every stream at 120 ms, the last second at 1000 ms.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, SourceError
from .session import (
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

log = logging.getLogger("sidecast.ingest.srt")

_LIB_NAMES = ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5", "libsrt-gnutls.so", "libsrt.so")

# SRT_SOCKOPT values (srt.h)
SRTO_SNDSYN, SRTO_RCVSYN, SRTO_LATENCY, SRTO_PASSPHRASE, SRTO_PEERIDLETIMEO = 1, 2, 23, 26, 55
SRTO_RCVDATA, SRTO_RCVLATENCY = 20, 43   # packets in the receive buffer; the negotiated receiver latency (ms)
SRT_EPOLL_IN, SRT_EPOLL_ERR = 0x1, 0x8
SRT_EASYNCRCV = 6002
SRTS_BROKEN, SRTS_CLOSED, SRTS_NONEXIST = 6, 8, 9
LOG_CRIT = 2
# Reject reasons a listener may give (SRT_REJX_*, srt's access-control codes)
REJ_BAD_REQUEST, REJ_OVERLOAD, REJ_FORBIDDEN, REJ_BAD_MODE, REJ_CONFLICT, REJ_SERVER_ERROR = \
    1400, 1402, 1403, 1405, 1409, 1500
MAX_PAYLOAD = 1500
PENDING_REPORT = 3.0   # a granted caller not accepted by then was refused by libsrt (passphrase)
PENDING_TTL = 60.0     # its grant is kept this long in case the handshake was only slow
DRAIN_MARGIN = 0.5     # s past a gone caller's receiver latency that its buffered packets are waited for
DEFAULT_LATENCY_MS = 120

_LISTEN_CB = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                              ctypes.c_char_p)


class _EpollEvent(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_int)]


_lib: Any = None
_lib_error: str | None = None
_lib_lock = threading.Lock()


def _load() -> Any:
    """libsrt, loaded once, with the signatures this module uses; ConfigError when it is missing."""
    global _lib, _lib_error
    with _lib_lock:
        if _lib is not None:
            return _lib
        if _lib_error is not None:
            raise ConfigError(_lib_error)
        for name in _LIB_NAMES:
            try:
                lib = ctypes.CDLL(name)
                break
            except OSError:
                continue
        else:
            _lib_error = ("SRT listening needs libsrt (Debian package libsrt1.5-gnutls, which ffmpeg pulls in): "
                          "run ./dev.sh install")
            raise ConfigError(_lib_error)
        c_int, c_void_p = ctypes.c_int, ctypes.c_void_p
        sigs: dict[str, tuple[Any, list[Any]]] = {
            "srt_startup": (c_int, []),
            "srt_cleanup": (c_int, []),
            "srt_getversion": (ctypes.c_uint32, []),
            "srt_setloglevel": (None, [c_int]),
            "srt_create_socket": (c_int, []),
            "srt_bind": (c_int, [c_int, c_void_p, c_int]),
            "srt_listen": (c_int, [c_int, c_int]),
            "srt_listen_callback": (c_int, [c_int, _LISTEN_CB, c_void_p]),
            "srt_accept": (c_int, [c_int, c_void_p, ctypes.POINTER(c_int)]),
            "srt_close": (c_int, [c_int]),
            "srt_setsockflag": (c_int, [c_int, c_int, c_void_p, c_int]),
            "srt_getsockflag": (c_int, [c_int, c_int, c_void_p, ctypes.POINTER(c_int)]),
            "srt_setrejectreason": (c_int, [c_int, c_int]),
            "srt_recvmsg": (c_int, [c_int, c_void_p, c_int]),
            "srt_getlasterror": (c_int, [c_void_p]),
            "srt_getlasterror_str": (ctypes.c_char_p, []),
            "srt_getsockstate": (c_int, [c_int]),
            "srt_getsockname": (c_int, [c_int, c_void_p, ctypes.POINTER(c_int)]),
            "srt_epoll_create": (c_int, []),
            "srt_epoll_add_usock": (c_int, [c_int, c_int, ctypes.POINTER(c_int)]),
            "srt_epoll_remove_usock": (c_int, [c_int, c_int]),
            "srt_epoll_uwait": (c_int, [c_int, ctypes.POINTER(_EpollEvent), c_int, ctypes.c_int64]),
            "srt_epoll_release": (c_int, [c_int]),
        }
        for fn, (restype, argtypes) in sigs.items():
            f = getattr(lib, fn)
            f.restype = restype
            f.argtypes = argtypes
        if lib.srt_startup() < 0:
            _lib_error = "libsrt failed to start"
            raise ConfigError(_lib_error)
        lib.srt_setloglevel(LOG_CRIT)  # refusals are ours to report, once, without libsrt's stderr lines
        _lib = lib
        return lib


def srt_available() -> bool:
    """Whether this machine can run ``SrtServer`` (libsrt loads)."""
    try:
        _load()
    except ConfigError:
        return False
    return True


def parse_streamid(streamid: str) -> tuple[str, str]:
    """(key, mode) from a caller's streamid: ``#!::r=KEY,m=publish`` or a plain key.

    Raises ValueError on a malformed access-control streamid (an item without ``=``, a repeated name)."""
    if len(streamid) > 512:
        raise ValueError("streamid longer than 512 characters")
    if any(ord(c) < 0x20 for c in streamid):
        raise ValueError("control characters in streamid")
    if not streamid.startswith("#!::"):
        return streamid.strip(), "publish"
    items: dict[str, str] = {}
    body = streamid[4:]
    for item in body.split(",") if body else []:
        name, eq, value = item.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"streamid item {item[:40]!r} is not NAME=VALUE")
        if name in items:
            raise ValueError(f"streamid repeats {name!r}")
        items[name] = value.strip()
    return items.get("r", ""), items.get("m", "publish") or "publish"


def _sockaddr(host: str, port: int) -> bytes:
    if ":" in host:
        return struct.pack("=H", socket.AF_INET6) + struct.pack(">HI", port, 0) + socket.inet_pton(
            socket.AF_INET6, host) + b"\x00" * 4
    return struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_aton(host) + b"\x00" * 8


def _peer(addr: int | None) -> Peer:
    if not addr:
        return Peer("?", 0)
    raw = ctypes.string_at(addr, 28)
    family = struct.unpack("=H", raw[:2])[0]
    port = struct.unpack(">H", raw[2:4])[0]
    if family == socket.AF_INET6:
        return Peer(socket.inet_ntop(socket.AF_INET6, raw[8:24]), port)
    return Peer(socket.inet_ntoa(raw[4:8]), port)


@dataclass
class _Pending:
    stream_id: str
    digest: str
    peer: Peer
    since: float
    reported: bool = False


@dataclass
class _Caller:
    sock: int
    session: PushSession
    last_data: float
    warned_drop: bool = False
    draining_until: float | None = None   # gone: what libsrt still holds is read until then (monotonic)


class SrtServer(PublishListener):
    """Listens on UDP ``host:port`` once ``start()``-ed; hands each accepted caller to ``on_session``.

    ``authority.authorize`` runs on libsrt's own thread (inside the handshake) and ``on_session`` on the
    server's thread: both must return quickly. ``latency_ms`` is the receiver latency (SRT's default 120)."""

    def __init__(self, host: str, port: int, authority: PublishAuthority, on_session: SessionCallback, *,
                 limits: Limits | None = None, table: PublisherTable | None = None,
                 latency_ms: int | None = None) -> None:
        super().__init__(host, port, authority, on_session, limits, table, log)
        self.latency_ms = latency_ms
        self._lib: Any = None
        self._sock = -1
        self._eid = -1
        self._cb: Any = None
        self._lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._callers: dict[int, _Caller] = {}
        self._to_close: list[tuple[int, str]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> SrtServer:
        """Bind and serve; a second call does nothing. SourceError when the port cannot be had."""
        if self._thread is not None:
            return self
        lib = self._lib = _load()
        s = lib.srt_create_socket()
        if s < 0:
            raise SourceError(f"cannot create an SRT socket: {self._last_error()}")
        self._sock = s
        try:
            self._opt_int(SRTO_RCVSYN, 0)
            self._opt_int(SRTO_SNDSYN, 0)
            if self.latency_ms is not None:
                self._opt_int(SRTO_LATENCY, self.latency_ms)
            try:
                addr = _sockaddr(self.host, self.port)
            except OSError as exc:
                raise SourceError(f"cannot listen for SRT on {self.host}:{self.port}: bad address") from exc
            buf = ctypes.create_string_buffer(addr, len(addr))
            if lib.srt_bind(s, buf, len(addr)) < 0:
                raise SourceError(f"cannot listen for SRT on {self.host}:{self.port}: {self._last_error()}")
            self._cb = _LISTEN_CB(self._on_listen)
            if lib.srt_listen_callback(s, self._cb, None) < 0 or lib.srt_listen(s, 64) < 0:
                raise SourceError(f"cannot listen for SRT on {self.host}:{self.port}: {self._last_error()}")
            if self.port == 0:
                out = ctypes.create_string_buffer(28)
                n = ctypes.c_int(28)
                if lib.srt_getsockname(s, out, ctypes.byref(n)) == 0:
                    self.port = struct.unpack(">H", out.raw[2:4])[0]
            self._eid = lib.srt_epoll_create()
            ev = ctypes.c_int(SRT_EPOLL_IN | SRT_EPOLL_ERR)
            lib.srt_epoll_add_usock(self._eid, s, ctypes.byref(ev))
        except BaseException:
            lib.srt_close(s)
            self._sock = -1
            raise
        self._thread = threading.Thread(target=self._run, name=f"srt-{self.port}", daemon=True)
        self._thread.start()
        log.info("SRT server listening", extra={"address": f"{self.host}:{self.port}"})
        return self

    def close(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(10)
        self._thread = None

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._callers)

    # ---------------------------------------------------------------- the handshake hook (libsrt's thread)

    def _on_listen(self, opaque: int | None, ns: int, hs_version: int, peeraddr: int | None,
                   streamid: bytes | None) -> int:
        try:
            return self._decide(ns, _peer(peeraddr), (streamid or b"").decode("utf-8", "replace"))
        except Exception:  # never let an exception through C: it would count as an accept
            log.exception("SRT listen callback failed; refusing the caller")
            self._lib.srt_setrejectreason(ns, REJ_SERVER_ERROR)
            return -1

    def _reject(self, ns: int, code: int, msg: str, key: str, **extra: object) -> int:
        self.refused += 1
        self._lib.srt_setrejectreason(ns, code)
        self._ratelog(f"{code}:{extra.get('peer', '')}:{key}", logging.WARNING, f"SRT caller refused: {msg}",
                      key=key, **extra)
        return -1

    def _decide(self, ns: int, peer: Peer, streamid: str) -> int:
        try:
            key, mode = parse_streamid(streamid)
        except ValueError as exc:
            return self._reject(ns, REJ_BAD_REQUEST, f"bad streamid ({exc})", "-", peer=str(peer))
        digest = key_digest(key)
        if mode != "publish":
            return self._reject(ns, REJ_BAD_MODE, f"mode {mode[:20]!r}: this server takes publishers only", digest,
                                peer=str(peer))
        now = time.monotonic()
        with self._lock:
            self._expire_pending(now)
            pending = [p for p in self._pending.values() if not p.reported]
            total = len(self._callers) + len(pending)
            mine = sum(1 for c in self._callers.values() if c.session.peer.host == peer.host) + sum(
                1 for p in pending if p.peer.host == peer.host)
        if total >= self.limits.max_connections:
            return self._reject(ns, REJ_OVERLOAD, f"server full ({self.limits.max_connections} connections)", digest,
                                peer=str(peer))
        if mine >= self.limits.per_address:
            return self._reject(ns, REJ_OVERLOAD,
                                f"too many connections from this address (limit {self.limits.per_address})",
                                digest, peer=str(peer))
        try:
            decision = self.authority.authorize("srt", key, peer)
        except Exception:
            log.exception("publish authority failed; refusing", extra={"peer": str(peer), "key": digest})
            decision = Refusal("authorization failed")
        if isinstance(decision, Refusal):
            return self._reject(ns, REJ_FORBIDDEN, decision.reason, digest, peer=str(peer))
        if self.limits.on_duplicate == "refuse" and self.table.busy(decision.stream_id):
            return self._reject(ns, REJ_CONFLICT, "the stream already has a publisher", digest, peer=str(peer),
                                stream=decision.stream_id)
        if decision.passphrase:
            pw = decision.passphrase.encode()
            if self._lib.srt_setsockflag(ns, SRTO_PASSPHRASE, pw, len(pw)) < 0:
                log.error("SRT passphrase of stream %s not accepted by libsrt (it must be 10 to 79 characters); "
                          "refusing", decision.stream_id, extra={"peer": str(peer)})
                self.refused += 1
                self._lib.srt_setrejectreason(ns, REJ_SERVER_ERROR)
                return -1
        with self._lock:
            self._pending[ns] = _Pending(decision.stream_id, digest, peer, now)
        return 0

    def _expire_pending(self, now: float) -> None:
        """Callers granted in the callback that libsrt never handed to accept: their passphrase was wrong
        or missing (libsrt refuses those after the callback), or they vanished mid-handshake."""
        for ns, p in list(self._pending.items()):
            if now - p.since > PENDING_TTL:
                del self._pending[ns]
            elif not p.reported and now - p.since > PENDING_REPORT:
                p.reported = True
                self.refused += 1
                self._ratelog(f"hs:{p.peer.host}:{p.digest}", logging.WARNING,
                              "SRT caller did not complete the handshake (wrong or missing passphrase?)",
                              stream=p.stream_id, peer=str(p.peer), key=p.digest)

    # ---------------------------------------------------------------- the server thread

    def _run(self) -> None:
        lib = self._lib
        events = (_EpollEvent * 64)()
        buf = ctypes.create_string_buffer(MAX_PAYLOAD)
        next_check = 0.0
        try:
            while not self._stop.is_set():
                with self._lock:
                    draining = [c for c in self._callers.values() if c.draining_until is not None]
                # a gone caller's packets come out of libsrt at their play time, with no epoll event
                n = lib.srt_epoll_uwait(self._eid, events, 64, 10 if draining else 200)
                for i in range(max(n, 0)):
                    fd, ev = events[i].fd, events[i].events
                    if fd == self._sock:
                        self._accept_all()
                    else:
                        self._pump(fd, ev, buf)
                for c in draining:
                    self._drain(c, buf)
                now = time.monotonic()
                if now >= next_check:
                    next_check = now + 0.25
                    self._housekeeping(now)
        finally:
            with self._lock:
                callers = list(self._callers.values())
                self._callers.clear()
            for c in callers:
                self._finish(c, "server closing")
            lib.srt_epoll_release(self._eid)
            lib.srt_close(self._sock)
            self._sock = -1

    def _accept_all(self) -> None:
        lib = self._lib
        while True:
            addr = ctypes.create_string_buffer(28)
            alen = ctypes.c_int(28)
            ns = lib.srt_accept(self._sock, addr, ctypes.byref(alen))
            if ns < 0:
                return
            with self._lock:
                p = self._pending.pop(ns, None)
            if p is None:
                lib.srt_close(ns)
                continue
            session = PushSession(p.stream_id, "srt", p.peer, p.digest, "mpegts", buffer_bytes=self.limits.buffer_bytes)
            claimed, old = self.table.claim(session, self.limits.on_duplicate)
            if not claimed:
                self.refused += 1
                log.warning("SRT caller refused: the stream already has a publisher",
                            extra={"stream": p.stream_id, "peer": str(p.peer), "key": p.digest})
                lib.srt_close(ns)
                continue
            caller = _Caller(ns, session, time.monotonic())
            session._bind(None, on_close=functools.partial(self._close_later, ns, "closed by the reader"))
            ev = ctypes.c_int(SRT_EPOLL_IN | SRT_EPOLL_ERR)
            lib.srt_epoll_add_usock(self._eid, ns, ctypes.byref(ev))
            with self._lock:
                self._callers[ns] = caller
            if old is not None:
                log.warning("SRT publisher replaces the stream's current publisher",
                            extra={"stream": session.stream_id, "peer": str(p.peer), "replaced": str(old.peer)})
                old._kick("replaced by a new publisher")
            try:
                self.on_session(session)
            except Exception:
                log.exception("session handler failed; dropping the caller", extra={"stream": session.stream_id})
                self._finish(caller, "session handler failed")
                continue
            self.accepted += 1
            log.info("SRT publisher accepted", extra={"stream": session.stream_id, "peer": str(p.peer),
                                                      "key": p.digest})

    def _pump(self, ns: int, ev: int, buf: ctypes.Array[ctypes.c_char]) -> None:
        with self._lock:
            c = self._callers.get(ns)
        if c is None or c.draining_until is not None:
            return
        lib = self._lib
        if not self._read(c, buf):
            self._gone(c)
            return
        if ev & SRT_EPOLL_ERR or lib.srt_getsockstate(ns) in (SRTS_BROKEN, SRTS_CLOSED, SRTS_NONEXIST):
            self._gone(c)

    def _read(self, c: _Caller, buf: ctypes.Array[ctypes.c_char]) -> bool:
        """Feed the caller's session all libsrt will hand over now; False once the connection is gone."""
        lib = self._lib
        got = False
        try:
            while True:
                r = lib.srt_recvmsg(c.sock, buf, MAX_PAYLOAD)
                if r > 0:
                    got = True
                    if not c.session._feed(ctypes.string_at(buf, r), drop_when_full=True) and \
                            c.session.dropped_bytes and not c.warned_drop:
                        c.warned_drop = True
                        log.warning("SRT stream's reader is behind; dropping input until it catches up",
                                    extra={"stream": c.session.stream_id})
                    continue
                return r == 0 or bool(lib.srt_getlasterror(None) == SRT_EASYNCRCV)
        finally:
            if got:
                c.last_data = time.monotonic()

    def _gone(self, c: _Caller) -> None:
        """The caller disconnected: read out what libsrt still holds for it (see the module docstring)
        before the session ends. A broken socket would report an error at every epoll wait, so it leaves
        the epoll set and ``_run`` polls it."""
        latency = self._int_opt(c.sock, SRTO_RCVLATENCY)
        wait = (latency if latency is not None and latency >= 0 else DEFAULT_LATENCY_MS) / 1000 + DRAIN_MARGIN
        self._lib.srt_epoll_remove_usock(self._eid, c.sock)
        c.draining_until = time.monotonic() + wait
        self._drain(c, None)

    def _drain(self, c: _Caller, buf: ctypes.Array[ctypes.c_char] | None) -> None:
        """One look at a gone caller: take the packets whose play time has come; end the session once
        libsrt holds none, has closed the socket, or the caller's latency (and margin) is over."""
        if c.sock not in self._callers or c.draining_until is None:
            return   # finished meanwhile (the reader closed it, housekeeping)
        self._read(c, buf if buf is not None else ctypes.create_string_buffer(MAX_PAYLOAD))
        left = self._int_opt(c.sock, SRTO_RCVDATA)
        if not left or self._lib.srt_getsockstate(c.sock) in (SRTS_CLOSED, SRTS_NONEXIST) or \
                time.monotonic() >= c.draining_until:
            self._finish(c, "caller disconnected")

    def _housekeeping(self, now: float) -> None:
        with self._lock:
            self._expire_pending(now)
            to_close, self._to_close = self._to_close, []
            callers = list(self._callers.values())
        for ns, reason in to_close:
            with self._lock:
                c = self._callers.get(ns)
            if c is not None:
                self._finish(c, reason)
        for c in callers:
            if c.sock in self._callers and c.draining_until is None and now - c.last_data > self.limits.idle_timeout:
                log.warning("SRT publisher dropped: no media", extra={"stream": c.session.stream_id,
                                                                      "idle_s": round(now - c.last_data, 1)})
                self._finish(c, f"no media for {self.limits.idle_timeout:g} s")

    def _close_later(self, ns: int, reason: str) -> None:
        with self._lock:
            self._to_close.append((ns, reason))

    def _finish(self, c: _Caller, reason: str) -> None:
        with self._lock:
            self._callers.pop(c.sock, None)
        self._lib.srt_epoll_remove_usock(self._eid, c.sock)
        self._lib.srt_close(c.sock)
        c.session._end(reason)
        self.table.release(c.session)
        log.info("SRT publisher gone", extra={"stream": c.session.stream_id, "peer": str(c.session.peer),
                                              "reason": reason, "bytes": c.session.bytes_in})

    # ---------------------------------------------------------------- helpers

    def _int_opt(self, sock: int, opt: int) -> int | None:
        """An integer option of ``sock``; None when libsrt cannot say (the socket is gone)."""
        v, n = ctypes.c_int(0), ctypes.c_int(ctypes.sizeof(ctypes.c_int))
        if self._lib.srt_getsockflag(sock, opt, ctypes.byref(v), ctypes.byref(n)) < 0:
            return None
        return v.value

    def _opt_int(self, opt: int, value: int) -> None:
        v = ctypes.c_int(value)
        if self._lib.srt_setsockflag(self._sock, opt, ctypes.byref(v), ctypes.sizeof(v)) < 0:
            raise SourceError(f"cannot set SRT option {opt}: {self._last_error()}")

    def _last_error(self) -> str:
        raw = self._lib.srt_getlasterror_str()
        return raw.decode(errors="replace") if raw else "unknown error"


__all__ = ["SrtServer", "parse_streamid", "srt_available"]
