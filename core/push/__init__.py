"""Push ingest: publishers connect to shared ports, are authenticated at the protocol level before any of
their media is accepted, and each accepted publisher becomes a ``PushSession`` that a stream reads.

The seam a multi-stream server plugs into is two callables:

- ``PublishAuthority.authorize(protocol, key, peer) -> Grant(stream_id, passphrase=None) | Refusal(reason)``,
  asked once per publish attempt (RTMP: at the ``publish`` command; SRT: in libsrt's listen callback,
  before the handshake completes). The key is the RTMP stream name less any ``?query``, or the SRT
  streamid's resource (``#!::r=KEY,m=publish``) or the plain streamid. A refused RTMP client is told
  the reason (``NetStream.Publish.BadName``); keys are logged only as ``key_digest(key)``.
- ``on_session(session: PushSession)``, called once per accepted publisher. The session has
  ``stream_id``, ``protocol`` ("rtmp" | "srt"), ``peer``, ``format`` ("flv" | "mpegts"), a blocking
  ``read(n)`` (b"" at the end: ``av.open(session, format=session.format)`` reads it), ``close()``,
  ``closed``, ``end_reason`` and ``wait_ended()``.

Both run on a server thread: return quickly. ``Limits`` holds the pre-auth and idle timeouts, the
connection limits (per address, in all), the duplicate-publisher policy ("refuse" or "replace") and the
per-session buffer. A ``PublisherTable`` shared by an RTMP and an SRT server keeps one publisher per
stream across both.

    authority = StaticAuthority({"secret"}, stream_id="live")
    with RtmpServer("0.0.0.0", 1935, authority, sessions.put, limits=Limits(on_duplicate="replace")):
        session = sessions.get()
        container = av.open(session, format=session.format)

``StaticAuthority`` is the fixed-key authority ``sidecast run`` uses for its one stream.
"""

from .rtmp_server import RtmpServer
from .session import (
    DuplicatePolicy,
    Grant,
    Limits,
    Peer,
    PublishAuthority,
    PublisherTable,
    PushProtocol,
    PushSession,
    Refusal,
    SessionCallback,
    StaticAuthority,
    key_digest,
)
from .srt import SrtServer, parse_streamid, srt_available

__all__ = ["DuplicatePolicy", "Grant", "Limits", "Peer", "PublisherTable", "PublishAuthority", "PushProtocol",
           "PushSession", "Refusal", "SessionCallback", "StaticAuthority", "key_digest", "RtmpServer",
           "SrtServer", "parse_streamid", "srt_available"]
