"""The RTMP push server with real and hostile clients: the ffmpeg CLI publishing (two at once on two
keys, two on one key under both policies, a wrong key), a raw client sending media without publish,
garbage, idle and trickling connections; and the protocol state machine fed hostile bytes."""

from __future__ import annotations

import logging
import os
import queue
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecast.core.push import Grant, Limits, Peer, PushSession, Refusal, RtmpServer, StaticAuthority, amf0
from sidecast.core.push.rtmp import ProtocolError, RtmpConnection, State
from tests.conftest import make_clip, wait_for
from tests.rtmp_client import RawRtmp, video_payload


class Keys:
    """Two keys, two streams; every decision recorded (the test asserts what the authority saw)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def authorize(self, protocol: str, key: str, peer: Peer) -> Grant | Refusal:
        self.seen.append((protocol, key))
        streams = {"key-a": "cam-a", "key-b": "cam-b"}
        return Grant(streams[key]) if key in streams else Refusal("unknown stream key")


@pytest.fixture(scope="module")
def heavy_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s of noisy 640x360 at a high bitrate (a few MB), more than any socket buffers hold."""
    d = tmp_path_factory.mktemp("push-heavy")
    return make_clip(d / "heavy.mp4", 3.0, "640x360", audio=False,
                     extra=("-vf", "noise=alls=60:allf=t", "-qp", "12"))


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("push")
    a = make_clip(d / "a.mp4", 6.0, "320x180")
    b = make_clip(d / "b.mp4", 3.0, "256x144", rate=25)
    return a, b


def publish(clip: Path, url: str, seconds: float = 3.0, wait: bool = True) -> subprocess.Popen[str]:
    p = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", str(clip),
                          "-t", str(seconds), "-c", "copy", "-f", "flv", url],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if wait:
        p.wait(timeout=60)
    return p


def read_all(session: PushSession) -> dict[str, object]:
    """Demux a session to its end: stream sizes, packet timestamps (seconds) per kind."""
    c = av.open(session, format=session.format)
    try:
        video = c.streams.video[0]
        out: dict[str, object] = {"size": (video.codec_context.width, video.codec_context.height),
                                  "audio_streams": len(c.streams.audio)}
        pts: dict[str, list[float]] = {"video": [], "audio": []}
        for pkt in c.demux():
            if pkt.size and pkt.pts is not None:
                pts[pkt.stream.type].append(float(pkt.pts * pkt.time_base))
        out.update(pts)
        return out
    finally:
        c.close()


def flv_file_packets(clip: Path, seconds: float, tmp: Path) -> list[tuple[int, bytes]]:
    """(pts ms, bytes) of the video packets the same ffmpeg command writes into an FLV file: what a
    publisher sends is its FLV muxer's output, so this is the reference for what the server must relay."""
    out = tmp / "reference.flv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(clip), "-t",
                    str(seconds), "-c", "copy", "-f", "flv", str(out)], check=True, timeout=60)
    with av.open(str(out)) as c:
        return [(round(float(pkt.pts * pkt.time_base) * 1000), bytes(pkt)) for pkt in c.demux(c.streams.video[0])
                if pkt.size and pkt.pts is not None]


class Harness:
    """A started server, the sessions it handed over, and what its authority was asked."""

    def __init__(self, limits: Limits) -> None:
        self.sessions: queue.Queue[PushSession] = queue.Queue()
        self.auth = Keys()
        self.srv = RtmpServer("127.0.0.1", 0, self.auth, self.sessions.put, limits=limits).start()
        self.port = self.srv.port

    def url(self, key: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def next(self, timeout: float = 20) -> PushSession:
        return self.sessions.get(timeout=timeout)


@pytest.fixture
def server() -> Iterator[Harness]:
    h = Harness(Limits(pre_auth_timeout=2.0, idle_timeout=3.0))
    yield h
    h.srv.close()


# ------------------------------------------------------------------------------------- real publishers


def test_two_publishers_on_two_keys_are_both_published_and_not_mixed(server: Harness,
                                                                    clips: tuple[Path, Path]) -> None:
    a, b = clips
    pa = publish(a, server.url("key-a"), wait=False)
    pb = publish(b, server.url("key-b?token=xyz"), wait=False)  # a ?query is not part of the key
    got: dict[str, dict[str, object]] = {}

    def consume() -> None:
        s = server.next()
        got[s.stream_id] = read_all(s)

    readers = [threading.Thread(target=consume) for _ in range(2)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(60)
    assert pa.wait(30) == 0 and pb.wait(30) == 0, (pa.stderr.read() if pa.stderr else "",
                                                   pb.stderr.read() if pb.stderr else "")
    assert set(got) == {"cam-a", "cam-b"}
    assert got["cam-a"]["size"] == (320, 180) and got["cam-b"]["size"] == (256, 144), "each key gets its own media"
    for sid, fps in (("cam-a", 30), ("cam-b", 25)):
        video = got[sid]["video"]
        assert isinstance(video, list)
        assert len(video) == pytest.approx(3 * fps, abs=2), sid
        steps = {round(b - a, 3) for a, b in zip(video, video[1:], strict=False)}
        assert steps <= {round(1 / fps, 3), round(1 / fps, 3) + 0.001, round(1 / fps, 3) - 0.001}, (sid, steps)
        assert got[sid]["audio_streams"] == 1 and len(got[sid]["audio"]) > 50  # type: ignore[arg-type]
    assert ("rtmp", "key-b") in server.auth.seen
    assert server.srv.accepted == 2 and server.srv.connections == 0


def test_flv_out_carries_the_publishers_packets_and_timestamps_unchanged(server: Harness, clips: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    a, _ = clips
    p = publish(a, server.url("key-a"), seconds=2.0, wait=False)
    s: PushSession = server.next()
    with av.open(s, format="flv") as c:
        got = [(round(float(pkt.pts * pkt.time_base) * 1000), bytes(pkt)) for pkt in c.demux(c.streams.video[0])
               if pkt.size]
    assert p.wait(30) == 0
    want = flv_file_packets(a, 2.0, tmp_path)
    assert len(got) == len(want) == 60
    assert got == want, "every H.264 packet arrives byte for byte with the publisher's timestamp (ms)"


def test_wrong_key_is_told_why_and_never_logged_in_clear(server: Harness, clips: tuple[Path, Path],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    p = publish(clips[0], server.url("hunter2-very-secret"), seconds=1.0)
    assert p.returncode != 0
    assert "Server error: unknown stream key" in (p.stderr.read() if p.stderr else "")
    logs = " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    assert "unknown stream key" in logs
    assert "hunter2" not in logs, "a rejected key must never be logged in clear"
    assert server.sessions.empty()
    assert server.srv.refused == 1


def test_second_publisher_on_one_key_is_refused_while_the_first_goes_on(server: Harness,
                                                                        clips: tuple[Path, Path]) -> None:
    a, b = clips
    first = publish(a, server.url("key-a"), seconds=6.0, wait=False)   # long enough for a loaded machine
    s: PushSession = server.next()
    result: dict[str, object] = {}
    reader = threading.Thread(target=lambda: result.update(read_all(s)))
    reader.start()
    second = publish(b, server.url("key-a"), seconds=1.0)
    assert second.returncode != 0
    assert "already being published" in (second.stderr.read() if second.stderr else "")
    reader.join(30)
    assert first.wait(30) == 0
    assert result["size"] == (320, 180)
    assert len(result["video"]) == pytest.approx(180, abs=2), "the first publisher lost nothing"  # type: ignore[arg-type]
    assert server.sessions.empty()


def test_replace_policy_hands_a_stuck_stream_to_the_new_publisher(clips: tuple[Path, Path]) -> None:
    h = Harness(Limits(on_duplicate="replace"))
    sessions, srv = h.sessions, h.srv
    with srv:
        stuck = RawRtmp(srv.port)
        stuck.handshake()
        stuck.connect()
        sid = stuck.create_stream()
        assert stuck.publish("key-a", sid)["code"] == "NetStream.Publish.Start"
        old = sessions.get(timeout=5)
        # the stuck encoder sends nothing more; a new one with the same key takes over at once
        p = publish(clips[0], h.url("key-a"), seconds=1.5, wait=False)
        new = sessions.get(timeout=20)
        assert old.wait_ended(5) and old.end_reason == "replaced by a new publisher"
        assert stuck.closed_by_server(5)
        result = read_all(new)
        assert p.wait(30) == 0
        assert new.stream_id == old.stream_id == "cam-a"
        assert len(result["video"]) == pytest.approx(45, abs=2)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- hostile clients


def test_media_without_publish_is_refused_and_nothing_is_published(server: Harness,
                                                                   clips: tuple[Path, Path]) -> None:
    # a real publisher is live on another key the whole time: it must lose nothing
    live = publish(clips[1], server.url("key-b"), seconds=3.0, wait=False)
    live_session = server.next()
    result: dict[str, object] = {}
    reader = threading.Thread(target=lambda: result.update(read_all(live_session)))
    reader.start()
    # the attack of the report: connect, createStream, then media with no publish at all
    c = RawRtmp(server.port)
    c.handshake()
    c.connect()
    sid = c.create_stream()
    try:
        for i in range(30):
            c.send(9, video_payload(i == 0), msid=sid, csid=6, ts=i * 33)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert c.closed_by_server(5)
    # media right after the handshake, before connect
    c2 = RawRtmp(server.port)
    c2.handshake()
    c2.send(8, b"\xaf\x01" + os.urandom(100), msid=1, csid=4)
    assert c2.closed_by_server(5)
    # and 2 KB of garbage
    with socket.create_connection(("127.0.0.1", server.port)) as g:
        g.sendall(b"\x03" + bytes(1536) + bytes(1536) + os.urandom(2048))
    reader.join(30)
    assert live.wait(30) == 0
    assert len(result["video"]) == pytest.approx(75, abs=2), "the live stream beside them lost nothing"  # type: ignore[arg-type]
    assert server.sessions.empty() and server.srv.accepted == 1
    wait_for(lambda: server.srv.dropped == 3, 30, "the garbage connection dropped")
    p = publish(clips[0], server.url("key-a"), seconds=1.0)  # and the server still takes publishers
    assert p.returncode == 0 and server.srv.accepted == 2


def test_refused_publisher_cannot_send_media_after_badname(server: Harness) -> None:
    c = RawRtmp(server.port)
    c.handshake()
    c.connect()
    sid = c.create_stream()
    info = c.publish("no-such-key", sid)
    assert info["code"] == "NetStream.Publish.BadName" and info["description"] == "unknown stream key"
    try:
        c.send(9, video_payload(), msid=sid, csid=6)
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert c.closed_by_server(5)
    assert server.sessions.empty()


@pytest.mark.parametrize("garbage", [os.urandom(2048), b"\x03" + os.urandom(2047), b"\x06" + bytes(2047),
                                     b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 80])
def test_garbage_is_refused_and_the_server_stays_up(server: Harness, clips: tuple[Path, Path],
                                                    garbage: bytes) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(garbage)
        if garbage[0] == 3:   # a valid C0: the server answers the handshake, then meets garbage chunks
            s.sendall(os.urandom(2048))
        s.settimeout(5)
        closed = False
        try:
            while s.recv(65536):
                pass
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass
    assert closed or server.srv.connections == 0
    p = publish(clips[0], server.url("key-a"), seconds=1.0)
    assert p.returncode == 0, p.stderr.read() if p.stderr else ""
    s2: PushSession = server.next(5)
    assert s2.stream_id == "cam-a"


def test_idle_and_trickling_connections_time_out_and_never_block_the_publisher(clips: tuple[Path, Path]) -> None:
    h = Harness(Limits(pre_auth_timeout=6.0))
    idle = [socket.create_connection(("127.0.0.1", h.port)) for _ in range(3)]
    half = RawRtmp(h.port)
    half.handshake()   # handshake done, then nothing
    trickler = socket.create_connection(("127.0.0.1", h.port))
    stop = threading.Event()

    def trickle() -> None:   # one byte every 0.2 s: always "active", never authenticated
        try:
            trickler.sendall(b"\x03")
            while not stop.wait(0.2):
                trickler.sendall(b"\x00")
        except OSError:
            pass

    t = threading.Thread(target=trickle)
    t.start()
    started = time.monotonic()
    try:
        p = publish(clips[0], h.url("key-a"), seconds=1.0, wait=False)
        s = h.next()
        got_in = time.monotonic()
        assert s.stream_id == "cam-a"
        assert p.wait(30) == 0
        for sock in idle + [half.sock, trickler]:
            sock.settimeout(15)
            try:
                while sock.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        dropped = time.monotonic()
        assert got_in < dropped, "the publisher got in while the idle connections were still there"
        assert 5.8 <= dropped - started < 15, f"pre-auth connections dropped at {dropped - started:.1f} s (timeout 6 s)"
        wait_for(lambda: h.srv.connections == 0, 30, "all connections closed")
        assert h.srv.dropped == 5
    finally:
        stop.set()
        t.join()
        for sock in idle + [trickler]:
            sock.close()
        half.close()
        h.srv.close()


def test_publisher_that_goes_silent_is_dropped_after_the_idle_timeout(server: Harness) -> None:
    c = RawRtmp(server.port)
    c.handshake()
    c.connect()
    sid = c.create_stream()
    assert c.publish("key-b", sid)["code"] == "NetStream.Publish.Start"
    c.send(9, video_payload(), msid=sid, csid=6)
    t0 = time.monotonic()  # the last media: the server's idle clock starts when it arrives, not when we look
    s: PushSession = server.next(5)
    assert s.wait_ended(10)
    assert s.end_reason == "no media for 3 s" and 2.5 < time.monotonic() - t0 < 6
    assert c.closed_by_server(5)
    assert s.read(1 << 20).startswith(b"FLV"), "what arrived before the timeout is still readable"


def test_connections_per_address_are_limited() -> None:
    h = Harness(Limits(per_address=3))
    with h.srv as srv:
        held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(3)]
        wait_for(lambda: srv.connections == 3, 30, "three connections admitted")
        extra = socket.create_connection(("127.0.0.1", srv.port))
        extra.settimeout(5)
        try:
            assert extra.recv(1) == b""
        except ConnectionResetError:
            pass
        assert srv.connections == 3 and srv.dropped == 1
        held[0].close()
        wait_for(lambda: srv.connections == 2, 30, "a slot freed")
        c = RawRtmp(srv.port)
        c.handshake()   # a new connection is admitted again
        c.close()
        for s in held:
            s.close()


def test_slow_reader_holds_back_its_own_publisher_only(clips: tuple[Path, Path], heavy_clip: Path) -> None:
    """A session whose reader stalls stops its socket being read (TCP pushes back on that publisher);
    the other stream flows, and the stalled one loses nothing once read."""
    h = Harness(Limits(buffer_bytes=64 << 10, idle_timeout=20))
    try:
        # 12 s (the clip four times): it is still publishing in real time well after its reader catches up.
        # A publisher that closes while held back may lose its unsent tail: ffmpeg closes without reading
        # the server's acknowledgements, and a close with unread data is a TCP reset. With 6 s a loaded CI
        # box stalled the reader past the clip's end, ffmpeg burst its backlog and closed at once, and the
        # reset cost the last frame (179 of 180).
        slow_pub = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop",
                                     "3", "-i", str(heavy_clip), "-t", "12", "-c", "copy", "-f", "flv",
                                     h.url("key-a")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        slow = h.next()
        fast_pub = publish(clips[1], h.url("key-b"), seconds=3.0, wait=False)
        fast = h.next()
        assert (slow.stream_id, fast.stream_id) == ("cam-a", "cam-b")
        result = read_all(fast)  # the other stream is read at once, to its end
        assert fast_pub.wait(30) == 0
        assert len(result["video"]) == pytest.approx(75, abs=2)  # type: ignore[arg-type]
        assert heavy_clip.stat().st_size > 1_500_000
        held = slow.bytes_in
        # one socket read (asyncio reads up to 256 KiB) may land past the 64 KiB mark before reading stops
        assert held < (64 << 10) + (256 << 10) + 65536, f"the stalled stream was read on to {held} bytes"
        assert slow_pub.poll() is None, "the held-back publisher is still sending"
        rest = read_all(slow)     # reading resumes the socket: nothing was lost
        assert slow_pub.wait(30) == 0
        assert len(rest["video"]) == 360, slow.end_reason  # type: ignore[arg-type]
    finally:
        h.srv.close()


# ------------------------------------------------------------------------------------- the state machine


def _client_bytes(name: str = "key-a", media: int = 3, chunk: int = 128) -> bytes:
    """A publisher's whole byte stream (handshake, commands, media), as one unfragmented bytes."""
    out = bytearray(b"\x03" + bytes(1536) + bytes(1536))

    def msg(t: int, payload: bytes, msid: int = 0, csid: int = 3, ts: int = 0) -> None:
        ext = ts.to_bytes(4, "big") if ts >= 0xFFFFFF else b""  # extended timestamp, repeated on each chunk
        out.extend(bytes([csid]) + min(ts, 0xFFFFFF).to_bytes(3, "big") + len(payload).to_bytes(3, "big")
                   + bytes([t]) + msid.to_bytes(4, "little") + ext)
        for i in range(0, max(len(payload), 1), chunk):
            if i:
                out.append(0xC0 | csid)
                out.extend(ext)
            out.extend(payload[i:i + chunk])

    msg(20, amf0.encode("connect", 1.0, {"app": "live"}))
    msg(20, amf0.encode("createStream", 2.0, None))
    msg(20, amf0.encode("publish", 3.0, None, name, "live"), msid=1)
    msg(18, amf0.encode("@setDataFrame", "onMetaData", {"videocodecid": 7.0}), msid=1, csid=4)
    for i in range(media):
        msg(9, bytes([0x17, 1, 0, 0, 0]) + bytes(range(256)) * 2, msid=1, csid=6, ts=i * 40 + (0xFFFFFF if i == 2
                                                                                               else 0))
    return bytes(out)


def _machine(accept: bool = True) -> tuple[RtmpConnection, list[bytes], list[str]]:
    flv: list[bytes] = []
    keys: list[str] = []

    def decide(key: str, app: str) -> str | None:
        keys.append(key)
        return None if accept else "unknown stream key"

    return RtmpConnection(decide, flv.append), flv, keys


def test_state_machine_reassembles_the_same_flv_however_the_bytes_are_split() -> None:
    data = _client_bytes()
    whole, flv_whole, keys = _machine()
    whole.receive(data)
    assert whole.state is State.PUBLISHING and keys == ["key-a"]
    assert flv_whole[0].startswith(b"FLV") and len(flv_whole) == 1 + 1 + 3
    assert b"@setDataFrame" not in b"".join(flv_whole) and b"onMetaData" in flv_whole[1]
    tag = flv_whole[-1]   # the third frame's timestamp is past 24 bits: the extended timestamp is kept
    assert int.from_bytes(tag[4:7], "big") | tag[7] << 24 == 80 + 0xFFFFFF
    for step in (1, 7, 128, 1537):
        m, flv, _ = _machine()
        for i in range(0, len(data), step):
            m.receive(data[i:i + step])
        assert flv == flv_whole, step


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=3000), st.integers(min_value=1, max_value=700))
def test_hostile_bytes_after_the_handshake_never_publish_media(junk: bytes, step: int) -> None:
    m, flv, keys = _machine(accept=True)
    data = b"\x03" + bytes(3072) + junk
    try:
        for i in range(0, len(data), step):
            m.receive(data[i:i + step])
    except ProtocolError:
        pass
    assert flv == [] or keys, "media reached the output without an accepted publish"


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=2000))
def test_hostile_commands_are_a_protocol_error_or_ignored(body: bytes) -> None:
    m, flv, keys = _machine(accept=False)
    m.receive(b"\x03" + bytes(3072))
    payload = amf0.encode("connect", 1.0, {"app": "live"})
    m.receive(bytes([3]) + (0).to_bytes(3, "big") + len(payload).to_bytes(3, "big") + b"\x14" + bytes(4) + payload)
    chunk = body[:128]
    try:
        m.receive(bytes([3]) + (0).to_bytes(3, "big") + len(chunk).to_bytes(3, "big") + b"\x14" + bytes(4) + chunk)
    except ProtocolError:
        return
    assert flv == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_amf0_decoder_raises_only_amf_errors(data: bytes) -> None:
    try:
        amf0.decode(data)
    except amf0.AmfError:
        pass


amf_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(min_size=1, max_size=10), inner, max_size=5),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(amf_values, max_size=5))
def test_amf0_round_trips(values: list[amf0.AmfValue]) -> None:
    assert amf0.decode(amf0.encode(*values)) == values


def test_static_authority_accepts_only_its_keys() -> None:
    auth = StaticAuthority({"k1", "k2"}, stream_id="live")
    peer = Peer("127.0.0.1", 1)
    assert auth.authorize("rtmp", "k2", peer) == Grant("live")
    assert auth.authorize("rtmp", "k3", peer) == Refusal("unknown stream key")
    assert auth.authorize("rtmp", "", peer) == Refusal("unknown stream key")
    assert StaticAuthority((), any_key=True, passphrase="0123456789").authorize("srt", "x", peer) == \
        Grant("live", "0123456789")


def test_a_source_reads_one_streams_sessions_from_a_shared_server(clips: tuple[Path, Path]) -> None:
    """The multi-stream seam end to end: one server, sessions routed per stream into queues, a
    ``Source(sessions=...)`` per stream decoding its own publisher across a reconnect."""
    from sidecast.core.sources import Discontinuity, Dropped, Opened, Source, VideoEvent

    queues: dict[str, queue.Queue[PushSession]] = {"cam-a": queue.Queue(), "cam-b": queue.Queue()}
    with RtmpServer("127.0.0.1", 0, Keys(), lambda s: queues[s.stream_id].put(s)) as srv:
        source = Source("push://cam-a", sessions=queues["cam-a"], reconnect_timeout=30.0)
        events: list[object] = []
        reader = threading.Thread(target=lambda: events.extend(source.events()))
        reader.start()
        assert publish(clips[0], f"rtmp://127.0.0.1:{srv.port}/live/key-a", seconds=1.0).returncode == 0
        assert publish(clips[1], f"rtmp://127.0.0.1:{srv.port}/live/key-b", seconds=1.0).returncode == 0
        assert publish(clips[0], f"rtmp://127.0.0.1:{srv.port}/live/key-a", seconds=1.0).returncode == 0
        wait_for(lambda: sum(isinstance(e, Dropped) for e in events) == 2, 20, "the second publisher read")
        source.stop()
        reader.join(30)
        source.close()
    opened = [e for e in events if isinstance(e, Opened)]
    assert len(opened) == 1 and (opened[0].width, opened[0].height) == (320, 180)
    assert sum(isinstance(e, Discontinuity) for e in events) == 1, "the second publish is a new period"
    sizes = {(e.frame.width, e.frame.height) for e in events if isinstance(e, VideoEvent)}
    assert sizes == {(320, 180)}, "cam-b's publisher never reaches cam-a"
    assert sum(isinstance(e, VideoEvent) for e in events) == pytest.approx(60, abs=3)
    assert queues["cam-b"].qsize() == 1


def _chunk(csid: int, msg_type: int, payload: bytes, msid: int = 0) -> bytes:
    return bytes([csid]) + bytes(3) + len(payload).to_bytes(3, "big") + bytes([msg_type]) + msid.to_bytes(4, "little") \
        + payload


def _connected() -> RtmpConnection:
    m, _, _ = _machine()
    m.receive(b"\x03" + bytes(3072))
    m.receive(_chunk(3, 20, amf0.encode("connect", 1.0, {"app": "live"})))
    assert m.state is State.CONNECTED
    return m


@pytest.mark.parametrize(("attack", "error"), [
    (lambda: b"".join(bytes([0x40 | 2]) + bytes(3) for _ in range(1)), "starts without a full"),   # fmt1 first
    (lambda: b"".join(_chunk(c, 4, b"") for c in range(2, 64)) + b"".join(
        bytes([0, c]) + bytes(3) + bytes(3) + b"\x04" + bytes(4) for c in range(0, 10)), "chunk streams"),
    (lambda: b"".join(_chunk(3, 20, amf0.encode("createStream", float(i), None)) for i in range(9)), "createStream"),
    (lambda: bytes([3]) + bytes(3) + (70_000).to_bytes(3, "big") + b"\x14" + bytes(4), "over the limit"),
    (lambda: _chunk(3, 20, amf0.encode("connect", 1.0, {})), "second connect"),
    (lambda: _chunk(3, 20, amf0.encode("publish", 5.0, None, "key-a", "live"), msid=7), "createStream did not make"),
    (lambda: _chunk(2, 1, bytes(4)), "Set Chunk Size of 0"),
    (lambda: _chunk(3, 20, b"\x07\x00\x01"), "unreadable command"),
    (lambda: _chunk(4, 18, bytes(120)), "data message before"),
    (lambda: _chunk(4, 22, bytes(120)), "aggregate message before"),
])
def test_state_machine_limits_are_protocol_errors(attack: object, error: str) -> None:
    m = _connected()
    with pytest.raises(ProtocolError, match=error):
        m.receive(attack())  # type: ignore[operator]


def test_pre_auth_bytes_are_bounded() -> None:
    m = _connected()
    ping = _chunk(2, 4, (6).to_bytes(2, "big") + bytes(4))   # pings are answered but do not authenticate
    with pytest.raises(ProtocolError, match="without an accepted publish"):
        for _ in range(10_000):
            m.receive(ping)
    assert m.bytes_in <= (64 << 10) + len(ping)
