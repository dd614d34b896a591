"""The core's side of one sidecar: connect, describe, stream media, collect results, reconnect.

Each ``SidecarLink`` owns a thread and a bounded outbound queue. Drop policy (documented in
docs/sidecars.md):
- live sources: ``offer()`` never blocks; when the queue is full the oldest queued *video* frame is dropped
  (a slow sidecar skips frames), then the oldest audio chunk; dropped shared-memory frames release their
  slot at once. Each extra video feed (``Description.extra_video``) has its own bound (``feed_limits``, sized
  by the fan-out to hold as much media time as the main feed's ``max_video``), so a full-rate thumbnail feed
  drops its own oldest frames and never pushes out main frames, nor the other way round;
- file sources processed faster than real time (``lossless``): ``offer()`` waits for room, so the
  sidecar paces decoding and sees every frame — for at most ``stall_timeout`` seconds, after which the
  link is marked stalled and falls back to the live policy until it catches up.
A sidecar that dies is reconnected with exponential backoff (0.2 s doubling to 5 s); the stream never
stops. Local sidecars (``--sidecars``) are child processes that a supervisor restarts when they exit.
"""

from __future__ import annotations

import collections
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from sidecast.contract import codec, pb2, pb2_grpc
from sidecast.contract.errors import ContractError
from sidecast.contract.records import (
    Description,
    Released,
    ShmRingInfo,
    SidecarReport,
    StreamEnded,
    StreamInfo,
    StreamStarted,
    Unknown,
    Watermark,
)
from sidecast.core import __version__

from .sched import share_standing
from .timeline import Timeline

log = logging.getLogger("sidecast.links")

_STOP = object()


@dataclass
class Outgoing:
    msg: pb2.CoreMessage           # built by the codec
    kind: str                      # "video", "audio", "control", "feed:NAME" (an extra video feed)
    release: Callable[[], None] | None = None
    slot: int | None = None        # the shm slot a frame holds until the sidecar releases it


@dataclass
class LinkStats:
    sent: int = 0
    dropped: int = 0
    results: int = 0
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)


class SidecarLink:
    def __init__(self, name: str, target: str, timeline: Timeline, *, lossless: bool = False,
                 max_video: int = 8, max_audio: int = 600, stall_timeout: float = 5.0,
                 allow_shm: bool = True, max_inflight: int = 4) -> None:
        self.name = name
        self.target = target
        self.timeline = timeline
        self.lossless = lossless
        self.max_video = max_video
        self.max_audio = max_audio
        self.max_inflight = max_inflight
        self.stall_timeout = stall_timeout
        self.allow_shm = allow_shm
        self.description: Description | None = None
        self.transport = "bytes"
        self.stats = LinkStats()
        self.failed: str | None = None          # permanent: wrong contract, impossible requirements
        self.connected = threading.Event()      # a Stream is open and accepting media
        self.described = threading.Event()
        self._q: collections.deque[Outgoing] = collections.deque()
        self._counts: dict[str, int] = {"video": 0, "audio": 0, "control": 0}
        self.feed_limits: dict[str, int] = {}  # "feed:NAME" -> most frames of that extra feed queued
        self._cond = threading.Condition()
        self._closing = False
        self._stalled = False
        self._start_msg: Any = None
        self._thread = threading.Thread(target=self._run, name=f"link-{name}", daemon=True)
        self._outstanding: dict[int, Outgoing] = {}  # shm slot -> the frame holding it, until released
        self._channel: grpc.Channel | None = None
        self._ended = threading.Event()
        self.on_ready: Callable[[SidecarLink], None] | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread.start()

    def wait_described(self, timeout: float) -> bool:
        return self.described.wait(timeout)

    def set_start(self, info: StreamInfo, ring: ShmRingInfo | None) -> None:
        """The StreamStart to (re)send at the beginning of every Stream call."""
        self._start_msg = codec.encode_core(StreamStarted(info, ring if self.transport == "shm" else None))

    def close(self, drain_timeout: float = 0.0) -> None:
        """Send StreamEnd, wait up to ``drain_timeout`` for the sidecar to finish, then hang up."""
        if self.connected.is_set() and drain_timeout > 0:
            self.offer(Outgoing(codec.encode_core(StreamEnded()), "control"))
            self._ended.wait(drain_timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._channel is not None:
            self._channel.close()
        self._thread.join(timeout=5)
        self._release_all()

    # ------------------------------------------------------------ media in

    @property
    def live(self) -> bool:
        return self.connected.is_set() and self.failed is None

    def offer(self, item: Outgoing) -> bool:
        """Queue a message for the sidecar; returns False when it was dropped."""
        if not self.live:
            if item.release:
                item.release()
            return False
        with self._cond:
            if self.lossless and not self._stalled and item.kind != "control":
                deadline = time.monotonic() + self.stall_timeout
                while self._full(item.kind) and self.live and not self._closing:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self._stalled = True
                        log.warning("sidecar stalled; skipping its frames until it catches up",
                                    extra={"sidecar": self.name, "stall_timeout_s": self.stall_timeout})
                        self.timeline.set_live(self.name, False)
                        break
                    self._cond.wait(min(left, 0.1))
            while self._full(item.kind):
                if not self._drop_oldest(item.kind):
                    break
            self._q.append(item)
            self._counts[item.kind] = self._counts.get(item.kind, 0) + 1
            self._cond.notify_all()
        return True

    def _full(self, kind: str) -> bool:
        if kind == "video":
            return self._counts["video"] >= self.max_video
        if kind == "audio":
            return self._counts["audio"] >= self.max_audio
        if kind in self.feed_limits:
            return self._counts.get(kind, 0) >= self.feed_limits[kind]
        return False

    def _drop_oldest(self, kind: str) -> bool:
        for i, o in enumerate(self._q):
            if o.kind == kind:
                del self._q[i]
                self._counts[kind] -= 1
                self.stats.dropped += 1
                if o.release:
                    o.release()
                return True
        return False

    def _blocked(self) -> bool:
        """Credit-based flow control for shared memory: at most ``max_inflight`` frames may be out at the
        sidecar unreleased, so a slow reader backs frames up in the (droppable) queue, not in the ring."""
        if not self._q:
            return True
        head = self._q[0]
        return (head.kind == "video" and head.release is not None
                and len(self._outstanding) >= self.max_inflight)

    def _requests(self) -> Iterator[Any]:
        yield self._start_msg
        while True:
            with self._cond:
                while self._blocked() and not self._closing and self.connected.is_set():
                    self._cond.wait(0.5)
                if self._closing or not self.connected.is_set():
                    return
                item = self._q.popleft()
                self._counts[item.kind] -= 1
                self._cond.notify_all()
                if item.release is not None and item.slot is not None:
                    self._outstanding[item.slot] = item
            self.stats.sent += 1
            yield item.msg

    def _release_all(self) -> None:
        with self._cond:
            items = list(self._outstanding.values()) + [o for o in self._q if o.release]
            self._outstanding.clear()
            self._q.clear()
            self._counts = {"video": 0, "audio": 0, "control": 0}
            self._cond.notify_all()
        for o in items:
            if o.release:
                o.release()

    # ------------------------------------------------------------ the link thread

    def _describe(self, stub: Any) -> bool:
        req = codec.describe_request(__version__, ("shm", "bytes") if self.allow_shm else ("bytes",))
        try:
            desc = codec.description_from_pb(stub.Describe(req, timeout=5.0))
        except ContractError as exc:
            self.fail(str(exc))
            return False
        if desc.name != self.name:
            log.info("sidecar describes itself under another name", extra={"sidecar": self.name, "as": desc.name})
        self.description = desc
        self.transport = "shm" if (self.allow_shm and "shm" in desc.transports) else "bytes"
        self.described.set()
        return True

    def fail(self, why: str) -> None:
        self.failed = why
        self.stats.errors.append(why)
        log.error("sidecar disabled: %s", why, extra={"sidecar": self.name})
        self.timeline.set_live(self.name, False)
        self.described.set()

    def _run(self) -> None:
        backoff = 0.2
        while not self._closing and self.failed is None:
            opened = False
            try:
                self._channel = grpc.insecure_channel(
                    self.target,
                    options=[("grpc.max_send_message_length", 64 << 20),
                             ("grpc.max_receive_message_length", 64 << 20),
                             ("grpc.keepalive_time_ms", 10_000), ("grpc.keepalive_timeout_ms", 5_000)],
                )
                ready = grpc.channel_ready_future(self._channel)
                try:
                    ready.result(timeout=min(5.0, max(backoff * 5, 1.0)))
                except grpc.FutureTimeoutError:
                    ready.cancel()
                    raise
                stub = pb2_grpc.SidecarStub(self._channel)
                if self.description is None and not self._describe(stub):
                    break
                while self._start_msg is None and not self._closing:
                    time.sleep(0.02)
                if self._closing:
                    break
                self.connected.set()
                opened = True
                self._stalled = False
                self.timeline.set_live(self.name, True)
                if self.on_ready:
                    self.on_ready(self)
                log.info("sidecar connected", extra={"sidecar": self.name, "target": self.target,
                                                       "transport": self.transport})
                backoff = 0.2
                for msg in stub.Stream(self._requests()):
                    self._on_message(msg)
                self._ended.set()
                if not self._closing:
                    log.warning("sidecar closed its stream", extra={"sidecar": self.name})
            except grpc.FutureTimeoutError:
                pass
            except grpc.RpcError as exc:
                if not self._closing:
                    code = exc.code() if hasattr(exc, "code") else None
                    if code == grpc.StatusCode.FAILED_PRECONDITION:
                        self.fail(f"refused the contract: {exc.details()}")
                        break
                    log.warning("sidecar link lost: %s", code, extra={"sidecar": self.name})
            except Exception as exc:  # never let one sidecar take the core down
                log.exception("sidecar link failed", extra={"sidecar": self.name})
                self.stats.errors.append(repr(exc))
            finally:
                self.connected.clear()
                self.timeline.set_live(self.name, False)
                self._release_all()
                if self._channel is not None:
                    self._channel.close()
                    self._channel = None
            if self._closing or self.failed:
                break
            if opened:
                self.stats.reconnects += 1
            with self._cond:
                self._cond.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _release_slots(self, slots: tuple[int, ...]) -> None:
        with self._cond:
            items = [self._outstanding.pop(slot, None) for slot in slots]
            self._cond.notify_all()
        for item in items:
            if item is not None and item.release:
                item.release()

    def _on_message(self, msg: pb2.SidecarMessage) -> None:
        try:
            event = codec.decode_sidecar(msg)
        except ContractError as exc:
            self.stats.errors.append(str(exc))
            log.warning("malformed result ignored: %s", exc, extra={"sidecar": self.name})
            return
        if isinstance(event, Watermark):
            if event.released:
                self._release_slots(event.released)
            if self._stalled:
                self._stalled = False
                self.timeline.set_live(self.name, True)
            self.timeline.watermark(self.name, event.pts)
        elif isinstance(event, Released):
            self._release_slots(event.slots)
        elif isinstance(event, SidecarReport):
            text = event.message[:500]
            self.stats.errors.append(text)
            log.warning("sidecar reported: %s", text, extra={"sidecar": self.name})
            if event.fatal:
                self.fail(text)
        elif isinstance(event, Unknown):
            log.debug("unknown message from sidecar ignored", extra={"sidecar": self.name})
        else:
            self.stats.results += 1
            self.timeline.add(self.name, event)


class LocalSidecar:
    """A sidecar child process on a unix socket, restarted (with backoff) whenever it exits."""

    def __init__(self, name: str, socket_dir: Path, extra_args: list[str] | None = None,
                 log_dir: Path | None = None, nice: int = 0) -> None:
        self.name = name
        self.nice = nice  # steps of CPU priority below this process (--sidecar-nice)
        self.socket = socket_dir / f"{name}.sock"
        self.target = f"unix://{self.socket}"
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.exits = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name=f"proc-{name}", daemon=True)
        self.log_path = (log_dir or socket_dir) / f"sidecar-{name}.log"

    def last_error(self) -> str:
        """The last line the process wrote (its one-line error when it refused to start)."""
        try:
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return ""
        return lines[-1].removeprefix("sidecast: error: ") if lines else ""

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        cmd = [sys.executable, "-m", "sidecast.core.cli", "sidecar", self.name, "--listen", self.target, *self.extra_args]
        logf = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        logf.close()
        share_standing(self.proc.pid, self.nice)  # its own session is its own scheduling group: ours, + nice

    def _supervise(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            assert self.proc is not None
            started = time.monotonic()
            while self.proc.poll() is None and not self._stop.is_set():
                self._stop.wait(0.2)
            if self._stop.is_set():
                return
            rc = self.proc.returncode
            self.exits += 1
            log.warning("local sidecar exited; restarting", extra={"sidecar": self.name, "rc": rc,
                                                                     "log": str(self.log_path)})
            if time.monotonic() - started > 30:
                backoff = 0.5
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10.0)
            if not self._stop.is_set():
                self.restarts += 1
                self._spawn()

    def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
