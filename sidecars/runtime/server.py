"""Serves a ``Sidecar`` over gRPC: Describe, the media Stream, health checking and reflection.

Threading: for each Stream call a reader thread pulls core messages and runs the sidecar's handlers in
order; everything the sidecar produces (returned results, ``publish()`` calls, watermarks, slot
releases) goes into one outbound queue that the gRPC response iterator drains. So a sidecar that answers
later never blocks the core's frames, and a handler exception is reported to the core (non-fatal) rather
than ending the stream.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from pathlib import Path
from typing import cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sidecast.contract import SERVICE, codec, pb2, pb2_grpc
from sidecast.contract.errors import ContractError
from sidecast.contract.records import (
    AudioChunk,
    Discontinuity,
    FrameHeader,
    Outgoing,
    Released,
    SegmentBoundary,
    SidecarReport,
    StreamEnded,
    StreamStarted,
    VideoFrame,
    Watermark,
)
from sidecast.contract.shm import ShmReader, StaleFrame

from .sdk import Sidecar

log = logging.getLogger("sidecast.sidecar")

_END = object()


class _StreamSession:
    """One Stream call: runs handlers, collects output."""

    def __init__(self, sidecar: Sidecar, context: grpc.ServicerContext,
                 missing_feeds: Callable[[tuple[str, ...]], None] | None = None) -> None:
        self.sidecar = sidecar
        self.context = context
        self.missing_feeds = missing_feeds
        # Results and reports go in already encoded (a handler's wrong return type fails in that handler);
        # watermarks and released slots as records, so the response side can merge them; then _END.
        self.out: queue.Queue[pb2.SidecarMessage | Watermark | Released | object] = queue.Queue()
        self.reader: ShmReader | None = None
        self.last_video: float | None = None
        self.last_audio: float | None = None
        self.sent_watermark = -1.0
        self._wm_lock = threading.Lock()  # the reader thread and the idle poll both send watermarks
        self.desc = sidecar.describe()
        self.feeds = {f.name for f in self.desc.extra_video}
        sidecar._publish = self._publish

    def _publish(self, result: Outgoing) -> None:
        self.out.put(codec.encode_sidecar(result))

    def _emit(self, results: Iterable[Outgoing] | None) -> None:
        if results is None:
            return
        for r in results:
            self._publish(r)

    def _watermark(self) -> None:
        with self._wm_lock:
            wm = self.sidecar.watermark()
            if wm is None:
                marks = []
                if self.desc.video is not None:
                    marks.append(self.last_video)
                if self.desc.audio is not None:
                    marks.append(self.last_audio)
                if any(m is None for m in marks) or not marks:
                    return
                wm = min(m for m in marks if m is not None)
            if wm > self.sent_watermark:
                self.sent_watermark = wm
                self.out.put(Watermark(wm))

    def _error(self, message: str) -> None:
        log.warning("%s: %s", self.sidecar.name, message)
        self.out.put(codec.encode_sidecar(SidecarReport(message, fatal=False)))

    def _video(self, f: FrameHeader) -> None:
        release: int | None = None
        try:
            if f.shm is not None:
                if self.reader is None:
                    self._error("frame by shared memory before the stream announced a ring")
                    return
                release = f.shm.slot
                buf: bytes | memoryview = self.reader.view(f.shm.slot, f.shm.generation, f.shm.size)
            else:
                assert f.pixels is not None  # the codec gives a frame either pixels or a slot
                buf = f.pixels
            image = codec.image_from_buffer(buf, f.width, f.height, f.pixel_format)
            image.flags.writeable = False
            frame = VideoFrame(seq=f.seq, pts=f.pts, width=f.width, height=f.height, pixel_format=f.pixel_format,
                               image=image, segment=f.segment, feed=f.feed)
            if f.feed:  # an extra feed: its own handler; the watermark follows the main feed only
                if f.feed not in self.feeds:
                    self._error(f"frame {f.seq} of a feed this sidecar did not declare ({f.feed[:40]!r}); skipped")
                    return
                self._emit(self.sidecar.on_extra_video(frame))
                return
            self._emit(self.sidecar.on_video(frame))
            self.last_video = f.pts
        except StaleFrame as exc:
            self._error(f"frame {f.seq} skipped: {exc}")
        except ContractError as exc:
            self._error(f"frame {f.seq}: {exc}")
        finally:
            if release is not None:
                self.out.put(Released((release,)))

    def handle(self, msg: pb2.CoreMessage) -> None:
        try:
            try:
                event = codec.decode_core(msg)
            except ContractError as exc:
                self._error(str(exc))
                return
            if isinstance(event, StreamStarted):
                if event.ring is not None:
                    if self.reader is not None:
                        self.reader.close()
                    self.reader = ShmReader(event.ring.name, event.ring.slot_size, event.ring.slots)
                again = self.sidecar.info is not None
                self.sidecar.info = event.info
                missing = tuple(sorted(self.feeds - set(event.info.video_feeds)))
                if missing and self.missing_feeds is not None:
                    self.missing_feeds(missing)
                # A second StreamStart in one stream means the source changed (the contract's re-initialise).
                self._emit(self.sidecar.on_source_change(event.info) if again else self.sidecar.on_start(event.info))
            elif isinstance(event, FrameHeader):
                self._video(event)
            elif isinstance(event, AudioChunk):
                self._emit(self.sidecar.on_audio(event))
                self.last_audio = event.end
            elif isinstance(event, SegmentBoundary):
                self._emit(self.sidecar.on_segment(event))
            elif isinstance(event, Discontinuity):
                self._emit(self.sidecar.on_discontinuity(event.pts))
            elif isinstance(event, StreamEnded):
                self._emit(self.sidecar.on_end())
                with self._wm_lock:
                    wm = self.sidecar.watermark()
                    final = max(self.sent_watermark, wm if wm is not None else -1.0, self.last_video or -1.0,
                                self.last_audio or -1.0)
                    self.out.put(Watermark(final + 1e6))
                    self.sent_watermark = final + 1e6
                return
            else:
                self._error(f"{event.what}; ignored")
                return
            self._watermark()
        except Exception as exc:  # a handler bug is reported, not fatal to the stream
            log.exception("%s handler failed", self.sidecar.name)
            self._error(f"{type(exc).__name__}: {exc}")

    def pump(self, requests: Iterator[pb2.CoreMessage]) -> None:
        try:
            for msg in requests:
                self.handle(msg)
        except grpc.RpcError:
            pass  # the core went away; the response side notices too
        except Exception:
            log.exception("%s: stream reader failed", self.sidecar.name)
        finally:
            if self.reader is not None:
                self.reader.close()
            self.out.put(_END)


WATERMARK_POLL_S = 0.1  # how often an idle stream re-reads the sidecar's watermark


class SidecarServicer(pb2_grpc.SidecarServicer):  # type: ignore[name-defined,misc]
    def __init__(self, factory: Callable[[], Sidecar]) -> None:
        self.factory = factory
        self.prototype = factory()
        self.description = self.prototype.describe()
        self._warned_feeds: set[tuple[str, ...]] = set()
        self._warn_lock = threading.Lock()

    def _missing_feeds(self, missing: tuple[str, ...]) -> None:
        """A core that does not deliver some declared extra feeds (one older than them, or one that left
        them out): logged once per process, not once per stream; the sidecar sees ``info.video_feeds``."""
        with self._warn_lock:
            if missing in self._warned_feeds:
                return
            self._warned_feeds.add(missing)
        log.warning("%s: the core does not deliver the extra video feed(s) %s (a core older than extra feeds "
                    "sends only the main feed); continuing with the main feed", self.description.name,
                    ", ".join(missing))

    def Describe(self, request: pb2.DescribeRequest,  # noqa: N802 (gRPC's name)
                 context: grpc.ServicerContext) -> pb2.Description:
        asked = codec.requested_contract(request)
        if asked != 1:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this sidecar speaks contract v1; the core asked for v{asked}",
            )
        return codec.description_to_pb(self.description)

    def Stream(self, request_iterator: Iterator[pb2.CoreMessage],  # noqa: N802
               context: grpc.ServicerContext) -> Iterator[pb2.SidecarMessage]:
        session = _StreamSession(self.factory(), context, self._missing_feeds)
        reader = threading.Thread(target=session.pump, args=(request_iterator,), daemon=True,
                                  name=f"{self.description.name}-reader")
        reader.start()
        while True:
            try:
                item = session.out.get(timeout=WATERMARK_POLL_S)
            except queue.Empty:
                # A sidecar that works on its own thread (stt commits text seconds after the audio) moves
                # its watermark without new input: when the core has nothing more to send until a segment
                # is out, only this poll tells it the segment is covered.
                session._watermark()
                continue
            if item is _END:
                break
            # Coalesce what has piled up: results in order, then one Release and one Watermark. At
            # hundreds of frames/s this halves the messages the core has to receive per frame.
            batch = [item]
            while len(batch) < 256:
                try:
                    batch.append(session.out.get_nowait())
                except queue.Empty:
                    break
            ended = batch[-1] is _END
            if ended:
                batch.pop()
            slots: list[int] = []
            mark: Watermark | None = None
            for event in batch:
                if isinstance(event, Released):
                    slots.extend(event.slots)
                elif isinstance(event, Watermark):
                    slots.extend(event.released)
                    mark = event
                else:
                    yield cast(pb2.SidecarMessage, event)
            if mark is not None:
                yield codec.encode_sidecar(Watermark(mark.pts, tuple(slots)))  # one message for both
            elif slots:
                yield codec.encode_sidecar(Released(tuple(slots)))
            if ended:
                break


def parse_listen(addr: str) -> str:
    """Accept ``unix:///path``, ``unix:path``, ``/path.sock``, ``host:port`` or ``:port``."""
    if addr.startswith("unix:"):
        return addr
    if addr.startswith("/") or addr.endswith(".sock"):
        return f"unix:{addr}"
    if addr.startswith(":"):
        return f"0.0.0.0{addr}"
    return addr


KEEPALIVE_POLICY: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 500),
)
"""The pings a sidecar's server takes. The core pings each link every 10 s to notice a dead sidecar; gRPC's
server default treats a ping that comes while it has sent nothing for 5 minutes as abuse and ends the
connection (GOAWAY too_many_pings) at the third, so a sidecar with nothing to say for ~30 s (a file run slowed
by --size-anchor, a link waiting for its publisher) lost its link. Pings at most twice a second, with or
without a call, are taken; a flood faster than that still gets the GOAWAY. A sidecar written against the proto
with another gRPC server must allow the same (docs/sidecars.md)."""


def build_server(
    factory: Callable[[], Sidecar], listen: str, max_workers: int = 8
) -> tuple[grpc.Server, int, str]:
    """A server (not yet started) with health and reflection; returns it, its bound port, the sidecar name."""
    target = parse_listen(listen)
    if target.startswith("unix:"):
        path = Path(target.removeprefix("unix://").removeprefix("unix:"))
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()  # a stale socket from a crashed run
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20),
                 *KEEPALIVE_POLICY],
    )
    servicer = SidecarServicer(factory)
    pb2_grpc.add_SidecarServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(target)
    if port == 0 and not target.startswith("unix:"):
        raise OSError(f"cannot listen on {listen}")
    return server, port, servicer.description.name


def serve(factory: Callable[[], Sidecar], listen: str, max_streams: int = 32) -> None:
    """Run until SIGTERM/SIGINT; finishes in-flight streams for up to 5 s.

    Each Stream call holds one of the server's threads for its whole life: ``max_streams`` of them, plus a
    few for Describe and health checks that must still be answered when every stream slot is taken."""
    server, port, name = build_server(factory, listen, max_workers=max_streams + 4)
    server.start()
    log.info("sidecar listening", extra={"listen": listen, "port": port, "pid": os.getpid()})
    print(f"sidecast sidecar {name} listening on {parse_listen(listen)}" + (f" (port {port})" if port else ""),
          flush=True)
    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    stop.wait()
    server.stop(grace=5).wait()
