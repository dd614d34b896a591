"""The RTMP publish protocol as a state machine without I/O: bytes in, replies and FLV out.

One ``RtmpConnection`` per TCP connection walks through

    handshake (C0 C1 → S0 S1 S2, C2) → connect → [releaseStream, FCPublish] createStream → publish
    → media … → FCUnpublish / deleteStream (or the socket ends)

Chunk streams (all four header formats, extended timestamps, Set Chunk Size, Abort), acknowledgements,
ping requests and AMF0 commands (AMF3 command messages whose body is AMF0) are handled here. The publish
decision is the caller's (``on_publish``), taken synchronously while the ``publish`` message is being
handled, so no byte after it is parsed before the decision. Until a publish is accepted:

- an audio, video, data or aggregate message is a ``ProtocolError`` (the connection is dropped: FFmpeg's
  own listener used to accept media without any ``publish``);
- the client may send at most ``pre_auth_bytes`` and no message longer than that.

A refused publish is answered ``onStatus`` ``NetStream.Publish.BadName`` with the reason, then the state
is ``REFUSED`` and nothing more is read. After an accepted publish, each audio/video/script message
becomes one FLV tag (header first) passed to ``on_flv``; ``@setDataFrame`` is unwrapped to the
``onMetaData`` tag an FLV file carries.

The handshake is the plain one (S2 echoes C1), which OBS, FFmpeg, GStreamer and librtmp publishers use;
the digest ("complex") variant matters only to Flash players reading from a server.
"""

from __future__ import annotations

import enum
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import amf0, flv

# message types
SET_CHUNK_SIZE, ABORT, ACK, USER_CONTROL, WINDOW_ACK_SIZE, SET_PEER_BANDWIDTH = 1, 2, 3, 4, 5, 6
AUDIO, VIDEO, DATA_AMF3, COMMAND_AMF3, DATA_AMF0, COMMAND_AMF0, AGGREGATE = 8, 9, 15, 17, 18, 20, 22
MEDIA_TYPES = frozenset((AUDIO, VIDEO, DATA_AMF3, DATA_AMF0, AGGREGATE))

HANDSHAKE_SIZE = 1536
MAX_CHUNK_STREAMS = 64
MAX_CHUNK_SIZE = 0xFFFFFF          # a message length is 24 bits: a larger chunk size means nothing more
MAX_STREAMS = 8                    # createStream calls per connection
WINDOW = 5_000_000                 # the acknowledgement window we announce
OUT_CHUNK = 4096
STREAM_BEGIN, PING_REQUEST, PING_RESPONSE = 0, 6, 7

_SET_DATA_FRAME = amf0.encode("@setDataFrame")


class ProtocolError(Exception):
    """The peer broke the protocol or a limit; the message is one line fit for a log."""


class State(enum.Enum):
    HANDSHAKE = "handshake"        # waiting for C0+C1
    HANDSHAKE_C2 = "handshake-c2"
    OPEN = "open"                  # handshake done, waiting for connect
    CONNECTED = "connected"        # connect answered; createStream/publish may come
    PUBLISHING = "publishing"
    REFUSED = "refused"            # publish refused; the reply is queued, nothing more is read
    ENDED = "ended"                # the publisher unpublished


@dataclass(slots=True)
class Message:
    type: int
    stream_id: int
    timestamp: int
    payload: bytes


class _ChunkStream:
    __slots__ = ("timestamp", "delta", "length", "type", "stream_id", "ext", "parts", "remaining")

    def __init__(self) -> None:
        self.timestamp = 0
        self.delta = 0
        self.length = 0
        self.type = 0
        self.stream_id = 0
        self.ext = False
        self.parts: list[bytes] | None = None   # a message in progress
        self.remaining = 0


class ChunkReader:
    """Reassembles messages from chunks. ``messages()`` yields each message as soon as it is complete and
    reads the chunk size again before the next chunk, so a Set Chunk Size applies from the next chunk."""

    def __init__(self, max_message: int) -> None:
        self.chunk_size = 128
        self.max_message = max_message
        self._buf = bytearray()
        self._streams: dict[int, _ChunkStream] = {}

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def abort(self, csid: int) -> None:
        cs = self._streams.get(csid)
        if cs is not None:
            cs.parts = None
            cs.remaining = 0

    def messages(self) -> Iterator[Message]:
        buf = self._buf
        pos = 0
        try:
            while True:
                n = len(buf) - pos
                if n < 1:
                    return
                b0 = buf[pos]
                fmt = b0 >> 6
                csid = b0 & 0x3F
                h = 1
                if csid == 0:
                    if n < 2:
                        return
                    csid, h = 64 + buf[pos + 1], 2
                elif csid == 1:
                    if n < 3:
                        return
                    csid, h = 64 + buf[pos + 1] + (buf[pos + 2] << 8), 3
                cs = self._streams.get(csid)
                if cs is None and fmt != 0:
                    raise ProtocolError(f"chunk stream {csid} starts without a full (type 0) header")
                mh = (11, 7, 3, 0)[fmt]
                if n < h + mh:
                    return
                p = pos + h
                field = int.from_bytes(buf[p:p + 3], "big") if fmt <= 2 else 0
                ext = field == 0xFFFFFF if fmt <= 2 else (cs is not None and cs.ext)
                e = 4 if ext else 0
                if n < h + mh + e:
                    return
                if ext:
                    field = int.from_bytes(buf[p + mh:p + mh + 4], "big")
                in_progress = cs is not None and cs.parts is not None
                if in_progress:
                    assert cs is not None
                    if fmt != 3:
                        raise ProtocolError(f"a new message header on chunk stream {csid} before its message ended")
                    length = cs.length
                    remaining = cs.remaining
                else:
                    length = int.from_bytes(buf[p + 3:p + 6], "big") if fmt <= 1 else (cs.length if cs else 0)
                    if length > self.max_message:
                        raise ProtocolError(f"message of {length} bytes is over the limit of {self.max_message}")
                    remaining = length
                take = min(self.chunk_size, remaining)
                start = p + mh + e
                if n < h + mh + e + take:
                    return
                # the whole chunk is here: commit its header
                if cs is None:
                    if len(self._streams) >= MAX_CHUNK_STREAMS:
                        raise ProtocolError(f"more than {MAX_CHUNK_STREAMS} chunk streams")
                    cs = self._streams[csid] = _ChunkStream()
                if not in_progress:
                    if fmt == 0:
                        cs.timestamp = field
                        cs.delta = field  # RTMP 5.3.1.2.4: a type 3 after a type 0 repeats its timestamp as delta
                        cs.stream_id = int.from_bytes(buf[p + 7:p + 11], "little")
                    elif fmt == 3:
                        if ext:
                            cs.delta = field
                        cs.timestamp = (cs.timestamp + cs.delta) & 0xFFFFFFFF
                    else:
                        cs.delta = field
                        cs.timestamp = (cs.timestamp + field) & 0xFFFFFFFF
                    if fmt <= 1:
                        cs.length = length
                        cs.type = buf[p + 6]
                    if fmt <= 2:
                        cs.ext = ext
                    cs.parts = []
                    cs.remaining = length
                assert cs.parts is not None
                cs.parts.append(bytes(buf[start:start + take]))
                cs.remaining -= take
                pos = start + take
                if cs.remaining == 0:
                    parts, cs.parts = cs.parts, None
                    payload = parts[0] if len(parts) == 1 else b"".join(parts)
                    yield Message(cs.type, cs.stream_id, cs.timestamp, payload)
        finally:
            del buf[:pos]


class ChunkWriter:
    """Encodes the server's few messages: a type 0 header on the first chunk, type 3 on the rest."""

    def __init__(self) -> None:
        self.chunk_size = 128

    def encode(self, csid: int, msg_type: int, stream_id: int, payload: bytes, timestamp: int = 0) -> bytes:
        assert 2 <= csid < 64 and timestamp < 0xFFFFFF
        out = bytearray()
        out.append(csid)
        out += timestamp.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes((msg_type,))
        out += stream_id.to_bytes(4, "little")
        for i in range(0, max(len(payload), 1), self.chunk_size):
            if i:
                out.append(0xC0 | csid)
            out += payload[i:i + self.chunk_size]
        return bytes(out)


PublishDecision = Callable[[str, str], "str | None"]   # (key, app) -> None to accept, else the refusal reason


class RtmpConnection:
    """One publisher's side of RTMP. Feed it what the socket read (``receive``); send what it queued
    (``take_outgoing``); close the socket when ``wants_close``. ``ProtocolError`` means drop the client."""

    def __init__(self, on_publish: PublishDecision, on_flv: Callable[[bytes], None],
                 on_unpublish: Callable[[str], None] | None = None, *, pre_auth_bytes: int = 64 << 10) -> None:
        self.on_publish = on_publish
        self.on_flv = on_flv
        self.on_unpublish = on_unpublish
        self.pre_auth_bytes = pre_auth_bytes
        self.state = State.HANDSHAKE
        self.app = ""
        self.key: str | None = None
        self.bytes_in = 0
        self.media_messages = 0
        self._hs = bytearray()
        self._reader = ChunkReader(max_message=pre_auth_bytes)
        self._writer = ChunkWriter()
        self._out = bytearray()
        self._streams: set[int] = set()
        self._next_stream = 1
        self._publish_stream = 0
        self._ack_window = WINDOW
        self._acked = 0
        self._flv_started = False

    @property
    def wants_close(self) -> bool:
        return self.state in (State.REFUSED, State.ENDED)

    @property
    def publishing(self) -> bool:
        return self.state is State.PUBLISHING

    def take_outgoing(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    # ---------------------------------------------------------------- input

    def receive(self, data: bytes) -> None:
        if self.wants_close or not data:
            return
        self.bytes_in += len(data)
        if self.state in (State.HANDSHAKE, State.HANDSHAKE_C2):
            self._hs += data
            data = self._handshake()
            if not data:
                if self.bytes_in > self.pre_auth_bytes:
                    raise ProtocolError(f"{self.bytes_in} bytes sent without an accepted publish")
                return
        self._reader.feed(data)
        for msg in self._reader.messages():
            self._on_message(msg)
            if self.wants_close:
                break
        if self.state in (State.OPEN, State.CONNECTED) and self.bytes_in > self.pre_auth_bytes:
            raise ProtocolError(f"{self.bytes_in} bytes sent without an accepted publish")
        if self.bytes_in - self._acked >= self._ack_window and not self.wants_close:
            self._acked = self.bytes_in
            self._control(ACK, struct.pack(">I", self.bytes_in & 0xFFFFFFFF))

    def _handshake(self) -> bytes:
        """Consume handshake bytes; returns what follows the handshake (the first chunks)."""
        if self.state is State.HANDSHAKE:
            if len(self._hs) < 1 + HANDSHAKE_SIZE:
                return b""
            version = self._hs[0]
            if version != 3:
                raise ProtocolError(f"RTMP version {version} requested (only 3, plain RTMP, is served)")
            c1 = bytes(self._hs[1:1 + HANDSHAKE_SIZE])
            del self._hs[:1 + HANDSHAKE_SIZE]
            s1 = struct.pack(">II", int(time.monotonic() * 1000) & 0xFFFFFFFF, 0) + os.urandom(HANDSHAKE_SIZE - 8)
            self._out += b"\x03" + s1 + c1
            self.state = State.HANDSHAKE_C2
        if len(self._hs) < HANDSHAKE_SIZE:
            return b""
        rest = bytes(self._hs[HANDSHAKE_SIZE:])
        self._hs = bytearray()
        self.state = State.OPEN
        return rest

    def _on_message(self, msg: Message) -> None:
        t = msg.type
        if t in MEDIA_TYPES:
            if self.state is not State.PUBLISHING:
                kind = {AUDIO: "audio", VIDEO: "video", AGGREGATE: "aggregate"}.get(t, "data")
                raise ProtocolError(f"{kind} message before an accepted publish")
            if msg.stream_id != self._publish_stream:
                raise ProtocolError(f"media on message stream {msg.stream_id}, not the published one")
            self._media(msg)
        elif t == SET_CHUNK_SIZE:
            if len(msg.payload) < 4:
                raise ProtocolError("short Set Chunk Size")
            size = int.from_bytes(msg.payload[:4], "big") & 0x7FFFFFFF
            if not 1 <= size:
                raise ProtocolError("Set Chunk Size of 0")
            self._reader.chunk_size = min(size, MAX_CHUNK_SIZE)
        elif t == ABORT:
            if len(msg.payload) >= 4:
                self._reader.abort(int.from_bytes(msg.payload[:4], "big"))
        elif t == WINDOW_ACK_SIZE:
            if len(msg.payload) >= 4:
                self._ack_window = max(int.from_bytes(msg.payload[:4], "big"), 4096)
        elif t == USER_CONTROL:
            if len(msg.payload) >= 6 and int.from_bytes(msg.payload[:2], "big") == PING_REQUEST:
                self._control(USER_CONTROL, struct.pack(">H", PING_RESPONSE) + msg.payload[2:6])
        elif t in (COMMAND_AMF0, COMMAND_AMF3):
            body = msg.payload[1:] if t == COMMAND_AMF3 and msg.payload[:1] == b"\x00" else msg.payload
            try:
                values = amf0.decode(body)
            except amf0.AmfError as exc:
                raise ProtocolError(f"unreadable command: {exc}") from None
            self._command(msg, values)
        # ACK, SET_PEER_BANDWIDTH, shared objects: nothing to do for a publish server

    # ---------------------------------------------------------------- commands

    def _command(self, msg: Message, values: list[amf0.AmfValue]) -> None:
        if not values or not isinstance(values[0], str):
            raise ProtocolError("command message without a command name")
        name = values[0]
        txn = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        if self.state is State.OPEN:
            if name != "connect":
                raise ProtocolError(f"{name!r} before connect")
            cmd = values[2] if len(values) > 2 and isinstance(values[2], dict) else {}
            app = cmd.get("app")
            self.app = app.strip("/") if isinstance(app, str) else ""
            self._control(WINDOW_ACK_SIZE, struct.pack(">I", WINDOW))
            self._control(SET_PEER_BANDWIDTH, struct.pack(">IB", WINDOW, 2))
            self._control(SET_CHUNK_SIZE, struct.pack(">I", OUT_CHUNK))
            self._writer.chunk_size = OUT_CHUNK
            self._invoke(0, "_result", txn, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                         {"level": "status", "code": "NetConnection.Connect.Success",
                          "description": "Connection succeeded.", "objectEncoding": 0.0})
            self.state = State.CONNECTED
            return
        if name == "connect":
            raise ProtocolError("second connect on one connection")
        if name in ("releaseStream", "FCPublish"):
            if txn:
                self._invoke(0, "_result", txn, None, None)
        elif name == "createStream":
            if len(self._streams) >= MAX_STREAMS:
                raise ProtocolError(f"more than {MAX_STREAMS} createStream calls")
            sid = self._next_stream
            self._next_stream += 1
            self._streams.add(sid)
            self._invoke(0, "_result", txn, None, float(sid))
        elif name == "publish":
            self._publish(msg.stream_id, values)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self.state is State.PUBLISHING:
                self.state = State.ENDED
                if self.on_unpublish is not None:
                    self.on_unpublish(f"publisher sent {name}")
        elif name == "play":
            self._invoke(msg.stream_id, "onStatus", 0.0, None,
                         {"level": "error", "code": "NetStream.Play.Failed",
                          "description": "this server takes publishers only"})
            self.state = State.REFUSED
        # anything else (getStreamLength, _checkbw, ...) needs no answer from a publish server

    def _publish(self, stream_id: int, values: list[amf0.AmfValue]) -> None:
        if self.state is State.PUBLISHING:
            raise ProtocolError("second publish on one connection")
        if stream_id not in self._streams:
            raise ProtocolError(f"publish on message stream {stream_id}, which createStream did not make")
        raw = values[3] if len(values) > 3 else None
        key = raw.split("?", 1)[0].strip() if isinstance(raw, str) else ""
        reason = "no stream key in publish" if not key else self.on_publish(key, self.app)
        if reason is not None:
            self._invoke(stream_id, "onStatus", 0.0, None,
                         {"level": "error", "code": "NetStream.Publish.BadName", "description": reason})
            self.state = State.REFUSED
            return
        self.key = key
        self._publish_stream = stream_id
        self._reader.max_message = MAX_CHUNK_SIZE
        self._control(USER_CONTROL, struct.pack(">HI", STREAM_BEGIN, stream_id))
        self._invoke(stream_id, "onStatus", 0.0, None,
                     {"level": "status", "code": "NetStream.Publish.Start", "description": "Publishing started."})
        self.state = State.PUBLISHING

    # ---------------------------------------------------------------- media

    def _media(self, msg: Message) -> None:
        if msg.type == AGGREGATE:
            try:
                parts = flv.split_aggregate(msg.payload, msg.timestamp)
            except ValueError as exc:
                raise ProtocolError(str(exc)) from None
        else:
            t = msg.type
            payload = msg.payload
            if t in (DATA_AMF0, DATA_AMF3):
                if t == DATA_AMF3 and payload[:1] == b"\x00":
                    payload = payload[1:]
                if payload.startswith(_SET_DATA_FRAME):
                    payload = payload[len(_SET_DATA_FRAME):]
                t = flv.SCRIPT
            parts = [(t, msg.timestamp, payload)]
        for t, ts, payload in parts:
            if not self._flv_started:
                self._flv_started = True
                self.on_flv(flv.header(*_av_flags(t, payload)))
            self.media_messages += 1
            self.on_flv(flv.tag(t, ts, payload))

    # ---------------------------------------------------------------- output

    def _control(self, msg_type: int, payload: bytes) -> None:
        self._out += self._writer.encode(2, msg_type, 0, payload)

    def _invoke(self, stream_id: int, *values: amf0.AmfValue) -> None:
        self._out += self._writer.encode(5 if stream_id else 3, COMMAND_AMF0, stream_id, amf0.encode(*values))


def _av_flags(tag_type: int, payload: bytes) -> tuple[bool, bool]:
    """(has audio, has video) for the FLV header: from onMetaData's codec ids when the stream opens with it
    (a demuxer then stops looking for streams the publisher does not send), else both."""
    if tag_type == flv.SCRIPT:
        try:
            values = amf0.decode(payload)
        except amf0.AmfError:
            return True, True
        if len(values) >= 2 and values[0] == "onMetaData" and isinstance(values[1], dict):
            meta = values[1]
            audio = meta.get("audiocodecid") not in (None, "")
            video = meta.get("videocodecid") not in (None, "")
            if audio or video:
                return audio, video
    return True, True


__all__ = ["RtmpConnection", "ChunkReader", "ChunkWriter", "ProtocolError", "State", "Message"]
