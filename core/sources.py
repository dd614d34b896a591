"""Sources: open a file or a live URL with PyAV and yield decoded frames on one media clock.

Kinds of SOURCE:
- a media file (mp4, mkv, ts, flv...): read to the end, optionally paced as live (``--realtime``);
- ``rtmp://HOST:PORT/APP/KEY``: an RTMP server (``sidecast.core.push``) that OBS or ffmpeg publishes into;
  the key (from the URL, ``--stream-key``, ``--stream-keys-file``) is checked at the ``publish`` command,
  before any media is accepted, and the accepted publisher's FLV is read by PyAV;
- ``srt://HOST:PORT?mode=listener[&passphrase=...][&streamid=KEY]``: the SRT server of the same package
  (libsrt through ctypes): callers are checked in the SRT handshake, their MPEG-TS is read by PyAV;
- ``rtsp://`` (pulled over TCP) and ``http(s)://`` HLS playlists (pulled by FFmpeg's HLS demuxer);
- ``srt://`` as a caller (the default mode): PyAV's FFmpeg has no SRT, so Debian's ``ffmpeg`` binary
  bridges SRT to MPEG-TS on a pipe;
- ``whip://HOST:PORT/APP/KEY``: a WHIP endpoint (WebRTC ingest, RFC 9725) at ``http://HOST:PORT/APP`` that
  OBS or a browser publishes into with the stream key as Bearer token (``webrtc.whip``).

``Source.taps``: callables that see every event as the source yields it (the WHEP preview takes its frames
there); a tap must return at once and never raises into the stream.

Media time starts at 0 at the first frame. When a live source drops and comes back, media time continues
after the last frame (never goes back) and a ``Discontinuity`` event is yielded; nothing already
published changes. A corrupt packet mid-stream is logged and skipped.
"""

from __future__ import annotations

import logging
import queue
import re
import shutil
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import parse_qs, urlparse

import av

from .clock import SourceClock
from .errors import ConfigError, SourceError
from .push import Limits, PushSession, RtmpServer, SrtServer, StaticAuthority, srt_available
from .push.session import Peer

log = logging.getLogger("sidecast.ingest")

LIVE_SCHEMES = ("rtmp", "rtsp", "srt", "http", "https", "whip")


@dataclass
class VideoEvent:
    """A decoded picture at media time ``t``. ``arrived``: the wall clock (``time.time()``) when its bytes
    reached sidecast, where the transport says so (a pushed RTMP/SRT session); None elsewhere."""

    frame: av.VideoFrame
    t: float
    arrived: float | None = None


@dataclass
class PacketEvent:
    """A compressed video packet, for passthrough (copied into HLS as it is). ``t`` is its presentation
    time, ``dts`` its decode time, both in media time."""

    packet: av.Packet[Any]
    t: float
    dts: float
    keyframe: bool
    duration: float
    arrived: float | None = None   # as VideoEvent.arrived


@dataclass
class AudioPacketEvent:
    """A compressed audio packet, for passthrough of AAC audio, at media time ``t``."""

    packet: av.Packet[Any]
    t: float
    duration: float


@dataclass
class AudioEvent:
    frame: av.AudioFrame
    t: float


@dataclass
class Discontinuity:
    t: float       # media time where the new period starts
    gap: float     # seconds missing: the source was away (wall clock), or its timestamps jumped forward
    wall_clock: bool = True  # the source was away (re-anchor PROGRAM-DATE-TIME at the wall clock)


@dataclass
class SourceChanged:
    """The picture's size changed mid-stream (a new SPS, a publisher that came back at another size)."""

    t: float
    width: int
    height: int


@dataclass
class CueEvent:
    """A SCTE-35 section found in the source (an MPEG-TS data stream).

    ``t`` is the media time of the packet that carried it; a splice time in the section (seconds on the
    source's 33-bit PTS clock) maps to media time as ``pts_seconds + offset`` (modulo the PTS wrap).
    """

    data: bytes
    t: float
    offset: float


@dataclass
class Dropped:
    t: float       # media time where the source stopped; what was read is published now


@dataclass
class Opened:
    width: int              # the displayed picture: after rotation
    height: int
    fps: Fraction
    has_audio: bool
    description: str
    rotation: int = 0       # degrees applied (counterclockwise) from the source's display matrix
    interlaced: bool = False  # frames are deinterlaced
    codec: str = ""         # the source's video codec (passthrough copies it: h264, hevc)
    audio_codec: str = ""


Event = VideoEvent | PacketEvent | AudioPacketEvent | AudioEvent | CueEvent | Discontinuity | Dropped | Opened | SourceChanged


def is_live(source: str) -> bool:
    return urlparse(source).scheme.lower() in LIVE_SCHEMES


# ---------------------------------------------------------------------------- opening


@dataclass
class _Conn:
    container: av.container.InputContainer
    bridge: subprocess.Popen[bytes] | None = None
    session: PushSession | None = None
    response: IO[bytes] | None = None   # an HTTP byte stream a pump thread reads into ``session``

    def interrupt(self) -> None:
        """Unblock a read in progress, from any thread. The container itself is left to the reading
        thread: closing an FFmpeg input while another thread is inside ``av_read_frame`` frees what that
        read is using (the worker died with SIGSEGV when a live pull was stopped). A network read without a
        session or bridge to cut returns with the next packet, or at the read timeout."""
        if self.session is not None:
            self.session.close("the stream stopped reading")
        if self.response is not None:
            try:
                self.response.close()  # unblocks the pump thread's read
            except Exception:
                pass
        if self.bridge is not None and self.bridge.poll() is None:
            self.bridge.kill()  # the pipe the container reads reaches its end

    def close(self) -> None:
        """Close everything; only from the thread that reads the container (or once it stopped reading)."""
        self.interrupt()
        try:
            self.container.close()
        except Exception:
            pass
        if self.bridge is not None and self.bridge.poll() is None:
            self.bridge.kill()
            self.bridge.wait()


_RELAY_PATH = re.compile(r"^/relay/[A-Za-z0-9_-]+\.(flv|ts)$")


def _pumped(stream: IO[bytes], fmt: str, name: str) -> PushSession:
    """A session that a thread of its own fills from ``stream`` (a bridge's pipe, the server's relay): the
    container reads it as it reads a pushed publisher's, with each chunk's arrival time (PDT), and a busy
    reader never backs the stream up into what feeds it."""
    session = PushSession(name, "rtmp" if fmt == "flv" else "srt", Peer(name, 0), "", fmt)
    threading.Thread(target=_pump, args=(stream, session), name=f"{name}-reader", daemon=True).start()
    return session


def _pump(stream: IO[bytes], session: PushSession) -> None:
    """Copy ``stream`` into ``session`` until either side ends."""
    room = threading.Event()
    session._bind(room.set, room.set)  # drained below its low-water mark, or closed by the reader
    try:
        while not session.closed:
            data = stream.read1(1 << 16) if hasattr(stream, "read1") else stream.read(1 << 16)
            if not data:
                break
            room.clear()
            if not session._feed(data):
                room.wait()  # the reader is the session's buffer behind: hold the stream back, lose nothing
    except (OSError, ValueError):  # the stream was closed under the read (the stream stopped)
        pass
    finally:
        session._end("its source ended")


def redact(url: str) -> str:
    """A URL safe for logs: passwords, sensitive query values (SRT passphrases, tokens) and an RTMP URL's
    stream key are masked."""
    u = urlparse(url)
    if not u.scheme:
        return url
    netloc = u.netloc.replace(f":{u.password}@", ":***@") if u.password else u.netloc
    query = re.sub(r"(passphrase|token|key|secret|password|pass|streamid)=[^&]*", r"\1=***", u.query, flags=re.I)
    path = u.path
    if u.scheme.lower() == "rtmp" and len([p for p in path.split("/") if p]) >= 2:
        path = path.rstrip("/").rsplit("/", 1)[0] + "/***"   # the stream key is the last path part
    return u._replace(netloc=netloc, path=path, query=query).geturl()


def _drain_at_end(demux: Iterator[av.Packet[Any]]) -> Iterator[av.Packet[Any]]:
    """Pass on PyAV's closing empty packets (one per stream) only when nothing follows them.

    Decoding an empty packet drains the decoder: with frame threading it holds up to thread_count - 1 frames
    (15 on a 16-core machine), which are lost at every end of input unless drained. An empty packet in the
    middle of a stream would leave the decoder draining for good, so it is dropped instead.
    """
    held: list[av.Packet[Any]] = []
    for packet in demux:
        if packet.size == 0 and packet.pts is None:
            held.append(packet)
            continue
        held.clear()
        yield packet
    yield from held


def _av_error(source: str, exc: Exception) -> SourceError:
    msg = getattr(exc, "strerror", None) or str(exc)
    msg = re.sub(r"^\[Errno -?\d+\] ", "", msg)
    msg = re.sub(r": '.*'$", "", msg)
    return SourceError(f"cannot open {redact(source)!r}: {msg}")


class Source:
    """Opens SOURCE (re-opening live sources after drops) and yields ``Event``s on one media clock."""

    def __init__(self, source: str, *, realtime: bool = False, stream_keys: set[str] | None = None,
                 reconnect_timeout: float = 30.0, open_timeout: float = 10.0, audio: bool = True,
                 deinterlace: str = "auto", passthrough: bool = False,
                 sessions: queue.Queue[PushSession] | None = None) -> None:
        """``sessions``: read pushed publishers from this queue (a multi-stream server's RTMP/SRT servers
        put each accepted ``PushSession`` of this stream there); ``source`` then only names the stream."""
        self.source = source
        self.url = urlparse(source)
        self.scheme = self.url.scheme.lower()
        self.live = is_live(source)
        self.pace = realtime and not self.live
        self.reconnect_timeout = reconnect_timeout
        self.open_timeout = open_timeout
        self.want_audio = audio
        self.stream_keys = set(stream_keys or ())
        self._push: RtmpServer | SrtServer | None = None
        self._pushed = sessions is not None   # media comes as PushSessions (our servers, or a caller's)
        self._sessions: queue.Queue[PushSession] = sessions if sessions is not None else queue.Queue()
        if self._pushed:
            self.live = True
            self.pace = False
        self.deinterlace = deinterlace
        # Passthrough: video packets are yielded as they are (PacketEvent) and decoded only as far as
        # ``decode_video`` says: "all" (a sidecar analyses video), "keyframes" (snapshots), "none".
        self.passthrough = passthrough
        self.decode_video = "all"
        self.stopped = False
        self.corrupt_packets = 0
        self.bytes_in = 0            # payload bytes of every packet demuxed (the input bitrate of a pull)
        self.filled_frames = 0       # repeated frames that filled gaps in the source's video
        self.timestamp_jumps = 0
        self.read_error: str | None = None
        self.promised: tuple[float, float] | None = None  # (seconds, end timestamp) a file says it holds
        self.first_source_t: float | None = None  # the file's own video timestamps: how far it was read
        self.last_source_t: float | None = None
        self.fps = Fraction(30)
        self.size = (0, 0)
        self.connections = 0
        self._eof = False
        self._last_t = 0.0
        self._stop = threading.Event()
        self._conn: _Conn | None = None
        self.taps: list[Callable[[Event], None]] = []
        self.whip: Any = None  # webrtc.whip.WhipIngest for whip:// (imported only then: aiortc is optional)
        if self._pushed:
            pass
        elif self.scheme == "rtmp":
            self._setup_rtmp()
        elif self.scheme == "whip":
            self._setup_whip()
        elif self.scheme == "srt" and _query(self.url.query).get("mode") == "listener":
            self._setup_srt_listener()
        elif self.scheme == "srt" and shutil.which("ffmpeg") is None:
            raise ConfigError("SRT sources need the ffmpeg binary (Debian package ffmpeg); run ./dev.sh install")
        elif not self.live and self.scheme not in ("", "file"):
            raise ConfigError(f"unsupported source scheme {self.scheme!r}: use a file, rtmp://, rtsp://, srt://, "
                              "whip:// or http(s)://")
        elif not self.live:
            path = Path(self.url.path if self.scheme == "file" else source)
            if not path.exists():
                raise SourceError(f"cannot open {source!r}: no such file")
            if path.is_dir():
                raise SourceError(f"cannot open {source!r}: it is a directory")

    def stop(self) -> None:
        """Ask the source to end at the next frame (graceful shutdown)."""
        self.stopped = True  # reading less than the file then is not truncation
        self._stop.set()
        if self._conn is not None and self.live:
            self._conn.interrupt()  # unblocks a blocking read; the reading thread closes the container

    # ------------------------------------------------------------ rtmp

    def _setup_rtmp(self) -> None:
        parts = [p for p in self.url.path.split("/") if p]
        if len(parts) < 1:
            raise ConfigError("RTMP source must look like rtmp://0.0.0.0:1935/APP/STREAMKEY")
        self.rtmp_app = parts[0]
        if len(parts) >= 2:
            self.stream_keys.add(parts[-1])
        if not self.stream_keys:
            raise ConfigError("no RTMP stream key configured: put one in the URL (rtmp://0.0.0.0:1935/live/KEY), "
                              "or pass --stream-key / --stream-keys-file")
        host = self.url.hostname or "0.0.0.0"
        port = self.url.port or 1935
        server = RtmpServer(host, port, StaticAuthority(self.stream_keys), self._on_session, limits=Limits())
        self._push = server.start()
        self._pushed = True
        log.info("listening for RTMP publishers", extra={"address": f"rtmp://{host}:{server.port}/{self.rtmp_app}",
                                                         "keys": len(self.stream_keys)})

    def _setup_srt_listener(self) -> None:
        q = _query(self.url.query)
        if not srt_available():
            raise ConfigError("SRT listening needs libsrt (Debian package libsrt1.5-gnutls, which ffmpeg pulls in): "
                              "run ./dev.sh install")
        passphrase = q.get("passphrase") or None
        if passphrase is not None and not 10 <= len(passphrase) <= 79:
            raise ConfigError("SRT passphrase must be 10 to 79 characters")
        keys = set(self.stream_keys) | ({q["streamid"]} if q.get("streamid") else set())
        latency_ms = None
        if q.get("latency"):
            try:
                latency_ms = max(0, int(q["latency"]) // 1000)  # FFmpeg's SRT URLs give microseconds
            except ValueError:
                raise ConfigError("SRT latency must be an integer (microseconds, as in FFmpeg's SRT URLs)") from None
        host = self.url.hostname or "0.0.0.0"
        port = self.url.port or 4200
        server = SrtServer(host, port, StaticAuthority(keys, passphrase=passphrase, any_key=not keys),
                           self._on_session, limits=Limits(), latency_ms=latency_ms)
        self._push = server.start()
        self._pushed = True
        log.info("listening for SRT callers", extra={"address": f"srt://{host}:{server.port}",
                                                     "encrypted": passphrase is not None, "keys": len(keys)})

    def _on_session(self, session: PushSession) -> None:
        """A publisher got in (server thread): queue it for ``_open``; one that comes after the end is closed."""
        if self._stop.is_set():
            session.close("the stream has ended")
            return
        self._sessions.put(session)

    # ------------------------------------------------------------ whip

    def _setup_whip(self) -> None:
        parts = [p for p in self.url.path.split("/") if p]
        if len(parts) > 2:
            raise ConfigError("WHIP source must look like whip://0.0.0.0:8443/APP/STREAMKEY")
        if len(parts) == 2:
            self.stream_keys.add(parts[1])
        if self.passthrough:
            raise ConfigError("--passthrough does not apply to whip:// sources: WebRTC media arrives as RTP "
                              "and is decoded; drop --passthrough")
        if not self.stream_keys:
            raise ConfigError("no WHIP stream key configured: put one in the URL (whip://0.0.0.0:8443/live/KEY), "
                              "or pass --stream-key / --stream-keys-file")
        from .webrtc.whip import WhipIngest

        self.whip = WhipIngest(self.url.hostname or "0.0.0.0", self.url.port or 8443,
                               parts[0] if parts else "live", self.stream_keys)

    # ------------------------------------------------------------ open

    def _open(self, wait: float | None = None) -> _Conn:
        """Open the source; ``wait`` bounds how long a listener waits for its publisher (None: forever)."""
        timeout_us = str(int(self.open_timeout * 1_000_000))
        # A reconnect attempt may not outlast what is left of --reconnect-timeout (the socket timeout stays,
        # so stall detection of the re-opened session is unchanged).
        open_s = self.open_timeout if wait is None else max(0.5, min(self.open_timeout, wait))
        if self._pushed:
            # Wait in slices of at most 1 s so a SIGTERM (Kubernetes rollout) is honoured while idle:
            # Python runs signal handlers only between these blocking calls.
            try:
                session = self._sessions.get(timeout=1.0 if wait is None else max(0.05, min(1.0, wait)))
            except queue.Empty:
                raise SourceError("timed out waiting for a publisher") from None
            try:
                container = av.open(session, "r", format=session.format, timeout=(self.open_timeout, None))
            except Exception as exc:
                session.close("unreadable media")
                raise SourceError(f"publisher's media is unreadable: {exc}") from exc
            return _Conn(container, session=session)
        if self.scheme == "srt":
            # A reconnect's SRT handshake is bounded by what is left of the window too: libsrt's own caller
            # timeout (3 s) kept a stream whose listener was gone for --reconnect-timeout 0.5 alive ~3.5 s.
            bound = [] if wait is None else ["-connect_timeout", str(int(open_s * 1000))]
            cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", *bound, "-i", self.source,
                   "-map", "0", "-c", "copy", "-f", "mpegts", "pipe:1"]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert proc.stdout is not None
            bridged = _pumped(proc.stdout, "mpegts", "srt-bridge")  # not backed up into its SRT buffer
            try:
                container = av.open(bridged, "r", format="mpegts", timeout=(self.open_timeout, None))
            except Exception as exc:
                bridged.close("unreadable media")
                proc.kill()
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                proc.wait()
                why = err.splitlines()[-1] if err else "no data"
                raise SourceError(f"cannot open {redact(self.source)!r}: {why}") from exc
            return _Conn(container, proc, session=bridged)
        relayed = _RELAY_PATH.match(self.url.path) if self.scheme in ("http", "https") else None
        if relayed is not None:
            # A publisher relayed by `sidecast server` (core/server/push.py): a plain byte stream, read into a
            # session as it comes so that frames carry arrival stamps, as for a publisher pushed here.
            fmt = "mpegts" if relayed.group(1) == "ts" else "flv"
            try:
                response = urllib.request.urlopen(self.source, timeout=open_s)
            except (OSError, ValueError) as exc:
                raise SourceError(f"cannot open {redact(self.source)!r}: {exc}") from exc
            relay = _pumped(response, fmt, "relay")
            try:
                container = av.open(relay, "r", format=fmt, timeout=(self.open_timeout, None))
            except Exception as exc:
                relay.close("unreadable media")
                response.close()
                raise SourceError(f"the relayed publisher's media is unreadable: {exc}") from exc
            return _Conn(container, session=relay, response=response)
        if self.scheme == "rtsp":
            return _Conn(av.open(self.source, options={"rtsp_transport": "tcp", "timeout": timeout_us},
                                 timeout=(open_s, 30.0)))
        if self.scheme in ("http", "https"):
            return _Conn(av.open(self.source, options={"rw_timeout": timeout_us},
                                 timeout=(open_s, 30.0)))
        path = self.url.path if self.scheme == "file" else self.source
        return _Conn(av.open(path, "r"))

    # ------------------------------------------------------------ events

    def events(self) -> Iterator[Event]:
        """All events of the stream, across reconnects, until the source ends; every tap sees each one."""
        inner = self.whip.events(self) if self.whip is not None else self._events()
        for ev in inner:
            for tap in list(self.taps):
                try:
                    tap(ev)
                except Exception:  # a preview must never break the stream
                    log.exception("a source tap failed; removing it")
                    self.taps.remove(tap)
            yield ev

    def _events(self) -> Iterator[Event]:
        base = 0.0          # media time where the current connection starts
        last_t = -1.0       # last media time yielded
        frame_dur = 1 / 30
        first = True
        away_since: float | None = None
        while not self._stop.is_set():
            wait = None if away_since is None else self.reconnect_timeout - (time.monotonic() - away_since)
            if wait is not None and wait <= 0:
                log.warning("source did not come back; ending the stream", extra={"waited_s": self.reconnect_timeout})
                return
            try:
                conn = self._open(wait)
            except (SourceError, av.error.FFmpegError) as exc:
                if self._pushed and (first or away_since is None):
                    # A wait slice ran out, or a publisher whose media could not be opened: keep listening.
                    if "timed out" not in str(exc).lower():
                        log.info("publisher connection failed; listening again",
                                 extra={"error": str(exc)[:200]})
                    continue
                if first or not self.live:
                    raise (exc if isinstance(exc, SourceError) else _av_error(self.source, exc)) from exc
                if away_since is not None and time.monotonic() - away_since > self.reconnect_timeout:
                    log.warning("source did not come back; ending the stream",
                                extra={"waited_s": round(time.monotonic() - away_since, 1)})
                    return
                time.sleep(0.5)
                continue
            self._conn = conn
            self.connections += 1
            try:
                video = next((s for s in conn.container.streams.video), None)
                if video is None:
                    raise SourceError(f"{redact(self.source)!r} has no video stream")
                if video.codec_context is None or video.codec_context.name not in av.codecs_available:
                    name = video.codec_context.name if video.codec_context is not None else "unknown"
                    raise SourceError(f"cannot decode {redact(self.source)!r}: unsupported video codec ({name})")
                audio = next((s for s in conn.container.streams.audio), None) if self.want_audio else None
                if audio is not None and audio.codec_context is None:
                    log.warning("audio codec cannot be decoded; continuing without audio")
                    audio = None
                video.thread_type = "AUTO"
                fps = video.average_rate or video.guessed_rate or Fraction(30)
                if fps <= 0 or fps > 240:
                    fps = Fraction(30)
                if first:
                    self.fps = fps
                    self.promised = _promised_seconds(conn.container, video) if not self.live else None
                else:
                    gap = time.monotonic() - (away_since or time.monotonic())
                    base = last_t + frame_dur
                    log.info("source back; continuing with a discontinuity", extra={"gap_s": round(gap, 2),
                                                                                      "media_time": round(base, 3)})
                    yield Discontinuity(t=base, gap=gap)
                # The media clock runs at the rate the stream started with; a source that comes back at
                # another rate keeps its own timestamps on it.
                frame_dur = float(1 / self.fps)
                was_first, first = first, False
                self._eof = False
                yield from self._read(conn, video, audio, base, frame_dur, was_first)
                last_t = max(last_t, self._last_t)
            finally:
                conn.close()
                self._conn = None
            if not self.live or self._stop.is_set():
                return
            if self._eof and self.scheme in ("http", "https"):
                # FFmpeg's HLS demuxer reloads live playlists itself and reports EOF only at ENDLIST.
                log.info("HLS source ended (ENDLIST)")
                return
            away_since = time.monotonic()
            yield Dropped(t=last_t + frame_dur)
            log.warning("source dropped; waiting for it to come back",
                        extra={"reconnect_timeout_s": self.reconnect_timeout})

    def _read(self, conn: _Conn, video: av.video.stream.VideoStream, audio: av.audio.stream.AudioStream | None,
              base: float, frame_dur: float, first: bool) -> Iterator[Event]:
        """Decode one connection. The first connection yields ``Opened`` once its first frame shows the
        picture's real (displayed) size; every connection yields ``SourceChanged`` when the size changes."""
        clock = SourceClock(base, frame_dur)
        self._last_t = base - frame_dur
        wall0 = time.monotonic()
        data_streams = list(conn.container.streams.data)  # SCTE-35 rides here in MPEG-TS
        streams = [video] + ([audio] if audio is not None else []) + data_streams
        demux = _drain_at_end(conn.container.demux(*streams))
        vfilter = VideoFilter(video, "off" if self.passthrough else self.deinterlace)
        pending_audio: list[av.AudioFrame] = []   # audio decoded before the first video frame fixes the origin
        last_frame: av.VideoFrame | None = None
        opened = not first
        # A pushed session knows when each byte arrived and the demuxer where each packet starts: a frame's
        # arrival is its packet's, however long the frame then waits in the decoder or behind a busy reader.
        session = conn.session
        arrivals: dict[int, float] = {}   # video packet pts -> arrival, until its frame is decoded

        def arrival(packet: av.Packet[Any]) -> float | None:
            if session is None:
                return None
            pos = packet.pos
            at = session.arrival_at(pos) if pos is not None and pos >= 0 else None
            return at if at is not None else session.latest_arrival()  # a bound that is never early

        def emit_video(frame: av.VideoFrame) -> Iterator[Event]:
            nonlocal last_frame, opened
            if frame.time is None:
                return
            if not opened:
                opened = True
                yield self._opened(video, audio, frame, vfilter)
            elif (frame.width, frame.height) != self.size:
                log.warning("the source changed size", extra={"from": "x".join(map(str, self.size)),
                                                              "to": f"{frame.width}x{frame.height}"})
                self.size = (frame.width, frame.height)
                yield SourceChanged(t=clock.last_video + clock.frame_dur if clock.last_video is not None else base,
                                    width=frame.width, height=frame.height)
            started = clock.started
            if self.first_source_t is None:
                self.first_source_t = frame.time
            self.last_source_t = max(self.last_source_t or frame.time, frame.time)
            step = clock.video(frame.time)
            if step.jumped:
                log.warning("source timestamps jumped; media time continues",
                            extra={"forward_s": round(step.jump_s, 3), "media_time": round(step.t, 3)})
                if step.jump_s > 0:
                    yield Discontinuity(t=step.t, gap=step.jump_s, wall_clock=False)
            arrived = arrivals.pop(frame.pts, None) if arrivals and frame.pts is not None else None
            for ft in step.fill:  # repeats that fill a gap, known when this frame came: its arrival bounds theirs
                if last_frame is not None:
                    yield from self._paced(VideoEvent(last_frame, ft, arrived), wall0, base)
            self._last_t = step.t
            last_frame = frame
            yield from self._paced(VideoEvent(frame, step.t, arrived), wall0, base)
            if not started:
                for af in pending_audio:
                    yield from emit_audio(af)
                pending_audio.clear()

        def emit_packet(packet: av.Packet[Any]) -> Iterator[Event]:
            nonlocal opened
            ts = packet.dts if packet.dts is not None else packet.pts
            if ts is None or packet.time_base is None:
                return
            if not opened:
                opened = True
                cc = video.codec_context
                self.size = (cc.width, cc.height)
                yield Opened(width=cc.width, height=cc.height, fps=self.fps, has_audio=audio is not None,
                             description=f"{cc.name} {cc.width}x{cc.height} {float(self.fps):.3f} fps, passthrough"
                                         + (f", audio {audio.codec_context.name} {audio.rate} Hz" if audio else ""),
                             codec=cc.name, audio_codec=audio.codec_context.name if audio else "")
            src = float(ts * packet.time_base)
            if self.first_source_t is None:
                self.first_source_t = src
            self.last_source_t = max(self.last_source_t or src, src)
            started = clock.started
            step = clock.video(src, fill=False)  # on decode times: monotonic even with B-frames
            if step.jumped and step.jump_s > 0:
                yield Discontinuity(t=step.t, gap=step.jump_s, wall_clock=False)
            t = step.t + float(((packet.pts if packet.pts is not None else ts) - ts) * packet.time_base)
            dur = float(packet.duration * packet.time_base) if packet.duration else clock.frame_dur
            self._last_t = max(self._last_t, t)
            yield from self._paced_event(PacketEvent(packet, t, step.t, bool(packet.is_keyframe), dur, arrival(packet)),
                                         t, wall0, base)
            if not started:
                for af in pending_audio:
                    yield from emit_audio(af)
                pending_audio.clear()
                for ap in pending_packets:
                    yield from emit_audio_packet(ap)
                pending_packets.clear()

        pending_packets: list[av.Packet[Any]] = []

        def emit_audio_packet(packet: av.Packet[Any]) -> Iterator[Event]:
            if packet.pts is None or packet.time_base is None:
                return
            dur = float(packet.duration * packet.time_base) if packet.duration else 1024 / max(1, audio.rate if audio else 48000)
            t = clock.audio(float(packet.pts * packet.time_base), dur)
            if t is None:
                pending_packets.append(packet)
                return
            yield AudioPacketEvent(packet, t, dur)

        def emit_decoded(frame: av.VideoFrame) -> Iterator[Event]:
            """Passthrough: a decoded picture for the sidecars and snapshots, on the packets' clock."""
            if frame.time is not None and clock.video_offset is not None:
                yield VideoEvent(frame, frame.time + clock.video_offset)

        def emit_audio(frame: av.AudioFrame) -> Iterator[Event]:
            if frame.time is None or frame.sample_rate <= 0:
                return
            t = clock.audio(frame.time, frame.samples / frame.sample_rate)
            if t is None:
                pending_audio.append(frame)
                if len(pending_audio) > 2000:  # no video for a long while: keep only the latest audio
                    del pending_audio[:1000]
                return
            yield AudioEvent(frame, t)

        while not self._stop.is_set():
            try:
                packet = next(demux)
            except (StopIteration, av.error.EOFError):
                self._eof = True
                break
            except (av.error.FFmpegError, OSError) as exc:
                if self.live:
                    log.warning("source read failed: %s", exc)
                    break
                self.read_error = str(exc)
                log.warning("read error; treating as end of input", extra={"error": str(exc)})
                break
            if packet.size == 0 and packet.pts is None and packet.stream.type not in ("video", "audio"):
                continue
            self.bytes_in += packet.size
            if packet.stream.type == "data":
                payload = bytes(packet)
                if payload[:1] == b"\xfc" and clock.started:  # splice_info_section table_id
                    assert clock.video_offset is not None
                    pkt_t = float(packet.pts * packet.time_base) if packet.pts is not None else None
                    at = clock.last_video if pkt_t is None else pkt_t + clock.video_offset
                    yield CueEvent(data=payload, t=max(base, at or base), offset=clock.video_offset)
                continue
            if self.passthrough and audio is not None and packet.stream is audio and audio.codec_context.name == "aac":
                yield from emit_audio_packet(packet)
                continue
            if self.passthrough and packet.stream is video:
                # Decode first (the output takes the packet over once it is yielded), then hand it on.
                decoded: list[av.VideoFrame] = []
                if self.decode_video != "none":
                    if self.decode_video == "keyframes" and video.codec_context.skip_frame != "NONKEY":
                        video.codec_context.skip_frame = "NONKEY"  # the decoder only parses the other packets
                    try:
                        decoded = [f for f in packet.decode() if isinstance(f, av.VideoFrame)]
                    except av.error.FFmpegError as exc:
                        self.corrupt_packets += 1
                        log.warning("corrupt packet not decoded", extra={"stream": "video", "error": str(exc)[:200]})
                yield from emit_packet(packet)
                for vf in decoded:
                    yield from emit_decoded(vf)
                continue
            if session is not None and packet.stream is video and packet.pts is not None:
                at = arrival(packet)
                if at is not None:
                    arrivals[packet.pts] = at
                    if len(arrivals) > 512:  # frames that never came out (a filter retimed them, corrupt data)
                        del arrivals[next(iter(arrivals))]
            try:
                frames = packet.decode()
            except av.error.FFmpegError as exc:
                self.corrupt_packets += 1
                log.warning("corrupt packet skipped", extra={"stream": packet.stream.type, "error": str(exc)[:200]})
                continue
            for frame in frames:
                if packet.stream is video:
                    for out in vfilter.push(frame):
                        yield from emit_video(out)
                elif isinstance(frame, av.AudioFrame):
                    yield from emit_audio(frame)
        for out in vfilter.flush():
            yield from emit_video(out)
        self.filled_frames += clock.filled_frames
        self.timestamp_jumps += clock.jumps

    def _paced(self, ev: VideoEvent, wall0: float, base: float) -> Iterator[Event]:
        yield from self._paced_event(ev, ev.t, wall0, base)

    def _paced_event(self, ev: Event, t: float, wall0: float, base: float) -> Iterator[Event]:
        if self.pace:
            ahead = (wall0 + (t - base)) - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield ev

    def _opened(self, video: av.video.stream.VideoStream, audio: av.audio.stream.AudioStream | None,
                frame: av.VideoFrame, vfilter: VideoFilter) -> Opened:
        fps = self.fps
        self.size = (frame.width, frame.height)
        extra = "".join(f", {x}" for x in vfilter.applied)
        return Opened(width=frame.width, height=frame.height, fps=fps, has_audio=audio is not None,
                      description=f"{video.codec_context.name} {frame.width}x{frame.height} {float(fps):.3f} fps"
                                  + extra + (f", audio {audio.codec_context.name} {audio.rate} Hz" if audio else ""),
                      rotation=vfilter.rotation, interlaced=vfilter.deinterlacing)

    def close(self) -> None:
        self._stop.set()
        if self._conn is not None:
            self._conn.close()
        if self._push is not None:
            self._push.close()
        while not self._sessions.empty():
            self._sessions.get_nowait().close("the stream has ended")
        if self.whip is not None:
            self.whip.close()


def _promised_seconds(container: av.container.InputContainer,
                      video: av.video.stream.VideoStream) -> tuple[float, float] | None:
    """(duration, end on the file's own timestamps) a file says it holds: its video stream's, else the
    container's (None: it does not say)."""
    if video.duration is not None and video.time_base is not None and video.duration > 0:
        start = float((video.start_time or 0) * video.time_base)
        return float(video.duration * video.time_base), start + float(video.duration * video.time_base)
    if container.duration is not None and container.duration > 0:
        start = (container.start_time or 0) / 1_000_000
        return container.duration / 1_000_000, start + container.duration / 1_000_000
    return None


def truncation(source: Source, read_s: float) -> str | None:
    """A one-line message when a file delivered clearly less than its container promised, else None.

    What was read is measured on the file's own timestamps (so a file whose clock jumps is not mistaken
    for a short one); the message reports the media published."""
    if source.live or source.promised is None or source.stopped or source.last_source_t is None:
        return None
    promised, promised_end = source.promised
    covered_end = source.last_source_t + float(1 / source.fps)
    if covered_end >= promised_end - max(1.0, 0.05 * promised):
        return None
    why = f" ({source.read_error})" if source.read_error else ""
    return (f"{redact(source.source)!r} is truncated: read {read_s:.1f} s of the {promised:.1f} s its container "
            f"promises{why}; what was read is published")


class VideoFilter:
    """Turns decoded frames into upright, progressive pictures: the display matrix's rotation and flips
    (a phone's portrait video), and deinterlacing (bwdif, field order from the stream's own flags).

    ``deinterlace``: "auto" deinterlaces frames flagged interlaced (once the stream shows one), "on" every
    frame, "off" none. The filter graph is built from the first frame, so rotation comes from the frames'
    display-matrix side data, which is where FFmpeg carries it."""

    def __init__(self, stream: av.video.stream.VideoStream, deinterlace: str = "auto") -> None:
        self.stream = stream
        self.mode = deinterlace
        self.graph: av.filter.Graph | None = None
        self.rotation = 0
        self.deinterlacing = False
        self.applied: list[str] = []
        self._built = False

    def _filters(self, frame: av.VideoFrame) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        field_order = getattr(self.stream.codec_context, "field_order", None) or ""
        interlaced = bool(frame.interlaced_frame) or field_order in ("tt", "bb", "tb", "bt")
        if self.mode == "on" or (self.mode == "auto" and interlaced):
            out.append(("bwdif", f"mode=send_frame:parity=auto:deint={'all' if self.mode == 'on' else 'interlaced'}"))
            self.deinterlacing = True
            self.applied.append("deinterlaced (bwdif)")
        m = _display_matrix(frame)
        if m is not None:
            theta = (-round(frame.rotation)) % 360  # FFmpeg's convention: clockwise degrees to display
            if abs(theta - 90) < 1:
                out.append(("transpose", "cclock_flip" if m[3] > 0 else "clock"))
            elif abs(theta - 180) < 1:
                out += [("hflip", "")] if m[0] < 0 else []
                out += [("vflip", "")] if m[4] < 0 else []
            elif abs(theta - 270) < 1:
                out.append(("transpose", "clock_flip" if m[3] < 0 else "cclock"))
            elif abs(theta) < 1 and m[4] < 0:
                out.append(("vflip", ""))
            if any(name in ("transpose", "hflip", "vflip") for name, _ in out):
                self.rotation = round(frame.rotation) % 360
                self.applied.append(f"display matrix applied ({self.rotation}°)")
        return out

    def _build(self, frame: av.VideoFrame) -> None:
        self._built = True
        filters = self._filters(frame)
        if not filters:
            return
        g = av.filter.Graph()
        node = g.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                            time_base=frame.time_base or self.stream.time_base)
        for name, args in filters:
            nxt = g.add(name, args) if args else g.add(name)
            node.link_to(nxt)
            node = nxt
        sink = g.add("buffersink")
        node.link_to(sink)
        g.configure()
        self.graph = g

    def push(self, frame: av.VideoFrame) -> list[av.VideoFrame]:
        if not self._built:
            self._build(frame)
        if self.graph is None:
            return [frame]
        self.graph.push(frame)
        return self._pull()

    def flush(self) -> list[av.VideoFrame]:
        if self.graph is None:
            return []
        try:
            self.graph.push(None)
        except (av.error.FFmpegError, ValueError):
            return []
        return self._pull()

    def _pull(self) -> list[av.VideoFrame]:
        assert self.graph is not None
        out: list[av.VideoFrame] = []
        while True:
            try:
                f = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
            if isinstance(f, av.VideoFrame):
                out.append(f)


def _display_matrix(frame: av.VideoFrame) -> tuple[int, ...] | None:
    for sd in cast(Iterable[Any], frame.side_data):  # the container iterates over its entries
        if str(getattr(sd, "type", "")).endswith("DISPLAYMATRIX"):
            raw = bytes(sd)
            if len(raw) >= 36:
                return struct.unpack("<9i", raw[:36])
    return None


def read_stream_keys(path: Path | None, keys: list[str]) -> set[str]:
    out = {k.strip() for k in keys if k.strip()}
    if path is not None:
        try:
            out |= {ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
        except OSError as exc:
            raise ConfigError(f"cannot read stream keys file {path}: {exc.strerror}") from exc
    return out


def _query(query: str) -> dict[str, str]:
    """A URL query as single values (the last one wins), for the options FFmpeg's SRT URLs carry."""
    return {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}


__all__ = ["Source", "VideoFilter", "read_stream_keys", "is_live", "truncation"]
