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
from typing import Any, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from proto import SERVICE, pb2, pb2_grpc

from . import codec
from .sdk import Sidecar
from .shm import ShmReader, StaleFrame
from .types import PixelFormat, SegmentBoundary, VideoFrame

log = logging.getLogger("sidecast.sidecar")

_END = object()


class _StreamSession:
    """One Stream call: runs handlers, collects output."""

    def __init__(self, sidecar: Sidecar, context: grpc.ServicerContext) -> None:
        self.sidecar = sidecar
        self.context = context
        self.out: queue.Queue[Any] = queue.Queue()
        self.reader: ShmReader | None = None
        self.last_video: float | None = None
        self.last_audio: float | None = None
        self.sent_watermark = -1.0
        self._wm_lock = threading.Lock()  # the reader thread and the idle poll both send watermarks
        self.desc = sidecar.describe()
        sidecar._publish = self._publish

    def _publish(self, result: Any) -> None:
        self.out.put(pb2.SidecarMessage(result=codec.result_to_pb(result)))

    def _emit(self, results: Iterable[Any] | None) -> None:
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
                self.out.put(pb2.SidecarMessage(watermark=pb2.Watermark(pts=wm)))

    def _error(self, message: str) -> None:
        log.warning("%s: %s", self.sidecar.name, message)
        self.out.put(pb2.SidecarMessage(error=pb2.SidecarError(message=message, fatal=False)))

    def _video(self, msg: Any) -> None:
        fmt = cast(PixelFormat | None, codec.PIXEL_FROM_PB.get(msg.pixel_format))
        if fmt is None:
            self._error(f"frame {msg.seq}: unknown pixel format {msg.pixel_format}")
            return
        which = msg.WhichOneof("data")
        release: int | None = None
        try:
            if which == "shm":
                if self.reader is None:
                    self._error("frame by shared memory before the stream announced a ring")
                    return
                release = msg.shm.slot
                buf: Any = self.reader.view(msg.shm.slot, msg.shm.generation, msg.shm.size)
            elif which == "pixels":
                buf = msg.pixels
            else:
                self._error(f"frame {msg.seq} carries no pixels")
                return
            image = codec.image_from_buffer(buf, msg.width, msg.height, fmt)
            image.flags.writeable = False
            frame = VideoFrame(
                seq=msg.seq, pts=msg.pts, width=msg.width, height=msg.height, pixel_format=fmt,
                image=image, segment=msg.segment,
            )
            self._emit(self.sidecar.on_video(frame))
            self.last_video = msg.pts
        except StaleFrame as exc:
            self._error(f"frame {msg.seq} skipped: {exc}")
        except codec.ContractError as exc:
            self._error(f"frame {msg.seq}: {exc}")
        finally:
            if release is not None:
                self.out.put(pb2.SidecarMessage(release=pb2.Release(slots=[release])))

    def handle(self, msg: Any) -> None:
        body = msg.WhichOneof("body")
        try:
            if body == "start":
                info = codec.stream_info_from_pb(msg.start)
                if msg.start.shm_ring:
                    if self.reader is not None:
                        self.reader.close()
                    self.reader = ShmReader(msg.start.shm_ring, msg.start.shm_slot_size, msg.start.shm_slots)
                self.sidecar.info = info
                self._emit(self.sidecar.on_start(info))
            elif body == "video":
                self._video(msg.video)
            elif body == "audio":
                chunk = codec.audio_from_pb(msg.audio)
                self._emit(self.sidecar.on_audio(chunk))
                self.last_audio = chunk.end
            elif body == "segment":
                s = msg.segment
                self._emit(self.sidecar.on_segment(SegmentBoundary(segment=s.segment, start=s.start, end=s.end)))
            elif body == "discontinuity":
                self._emit(self.sidecar.on_discontinuity(msg.discontinuity.pts))
            elif body == "end":
                self._emit(self.sidecar.on_end())
                with self._wm_lock:
                    wm = self.sidecar.watermark()
                    final = max(self.sent_watermark, wm if wm is not None else -1.0, self.last_video or -1.0,
                                self.last_audio or -1.0)
                    self.out.put(pb2.SidecarMessage(watermark=pb2.Watermark(pts=final + 1e6)))
                    self.sent_watermark = final + 1e6
                return
            else:
                self._error("message with no body (newer contract or malformed); ignored")
                return
            self._watermark()
        except Exception as exc:  # a handler bug is reported, not fatal to the stream
            log.exception("%s handler failed", self.sidecar.name)
            self._error(f"{type(exc).__name__}: {exc}")

    def pump(self, requests: Iterator[Any]) -> None:
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

    def Describe(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 (gRPC's name)
        if request.contract_version not in (pb2.CONTRACT_VERSION_UNSPECIFIED, pb2.CONTRACT_VERSION_1):
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"this sidecar speaks contract v1; the core asked for v{request.contract_version}",
            )
        return codec.description_to_pb(self.description)

    def Stream(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:  # noqa: N802
        session = _StreamSession(self.factory(), context)
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
            mark: Any = None
            for msg in batch:
                body = msg.WhichOneof("body")
                if body == "release":
                    slots.extend(msg.release.slots)
                elif body == "watermark":
                    mark = msg
                else:
                    yield msg
            if mark is not None:
                mark.watermark.released.extend(slots)  # one message for both
                yield mark
            elif slots:
                yield pb2.SidecarMessage(release=pb2.Release(slots=slots))
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
        options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)],
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


def serve(factory: Callable[[], Sidecar], listen: str) -> None:
    """Run until SIGTERM/SIGINT; finishes in-flight streams for up to 5 s."""
    server, port, name = build_server(factory, listen)
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
