"""The supervisor: one thread that owns every stream's lifecycle, its worker process and its events.

Everything that changes a stream happens on this thread, in order: API calls and publishers arrive as
closures on its queue (``call``), worker messages and exits as well, and deadlines (reconnect windows,
retry backoff, the SIGKILL after a stop) are checked between them. The rules are the pure lifecycle
(lifecycle.py); this module carries out its actions:

- ``Spawn``: start ``python -m sidecast.core.server.worker`` guarded (dies with the server), in its own
  process group, with the attempt's spec on stdin; a reader thread turns its stdout lines into status,
  replies and, at the end, a ``WorkerExit``. An attempt takes a **warm** worker when one is idle: the
  same guarded process, started earlier with ``--warm`` (it imported the pipeline, then waits for its spec),
  so a failover's burst of starts skips the interpreter start and the imports (about a second of CPU
  each). ``pool_target()`` of them are kept ready (``warm_workers``; by default one for every stream the
  replica has room for under ``max_streams``, else 4), refilled one at a time when no attempt is starting
  (a refill must not compete with the streams it is meant to speed up). Why a pool and not a fork server:
  docs/design.md ("Warm workers").
- ``Kill``: ask the worker to stop (finish its segment), SIGKILL its group after ``stop_timeout``.
- ``OpenEvent``/``CloseEvent``: registry rows; closing writes ENDLIST and the recording (publish.py) and
  sets when its media may go (``purge_after``).
- ``Notify``: webhooks.

Around the streams it runs the disk guard (free space below the threshold: every stream pauses and writes
stop; they resume when space returns) and the retention sweep (ended events whose time is up are deleted).
It spawns children only from its own thread: PR_SET_PDEATHSIG follows the thread that forked.

In a fleet (fleet.py: several replicas on one PostgreSQL registry) every replica knows every stream, but
runs only those it holds a lease on (``Runtime.owned``): the fleet's thread asks this one to ``adopt`` a
claimed stream (its playlist state is read back from the shared storage and its open event continues),
to ``fence`` one whose lease is lost (SIGKILL now, the event left open for the next owner), and to pass
each worker its lease deadline (``extend_leases``).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, TypeVar

from sidecast.contract.shm import sweep_stale

from . import lifecycle as L
from . import procs
from .config import ServerConfig
from .fleet import Fleet
from .publish import (
    MASTERS,
    PublishPlan,
    PublishState,
    clear_stream_playlists,
    finalize_event,
    window_segments,
)
from .push import Relay, RelayedSession
from .registry import NotFound, Registry, RegistryUnavailable, StreamRow
from .sidecars import SidecarPool
from .storage import Storage
from .webhooks import Webhooks

log = logging.getLogger("sidecast.server")

T = TypeVar("T")

DISK_CHECK_S = 2.0
SWEEP_S = 10.0
STARTUP_GRACE_S = 60.0
SPAWNS_PER_SECOND = 4
"""Interpreter starts per second: a server starting with 100 enabled cameras brings them up over 25 s instead
of starting 100 interpreters at once (each import of the pipeline costs about a second of CPU). An attempt
that takes a warm worker is not counted: it starts no interpreter."""
POOL_QUIET_S = 10.0
"""The warm pool refills only when no attempt started within this long is still waiting for its first
segment: a refill's imports must not slow a failover's first segments."""
DEFAULT_WARM = 4
"""Warm workers kept by a server with no ``max_streams`` (a single server), unless ``warm_workers`` says."""
MAX_WARM = 64
WARM_LOG = "warm-pool"
"""The log of idle warm workers (DATA_DIR/logs/warm-pool.log); a worker's log moves to its stream's when it
takes an attempt."""

EXIT_KINDS = {0: "ok", 2: "source", 3: "config", 4: "memory", 5: "storage"}


def new_event_id() -> str:
    """Sortable and never repeated, even for a stream deleted and created again under the same id."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


@dataclass
class Warm:
    """An idle pre-started worker (``worker --warm``): its thread waits for ``target`` (the attempt it will
    run), then reads its lines like any worker's (``Supervisor._read_worker``)."""

    proc: subprocess.Popen[bytes]
    started_at: float
    ready: bool = False
    target: tuple[Runtime, object] | None = None
    assigned: threading.Event = field(default_factory=threading.Event)


@dataclass
class Runtime:
    """The supervisor's view of one stream."""

    row: StreamRow
    life: L.Life
    policy: L.Policy
    shown: L.Life | None = None                 # what the API reads while a transition's actions run
    proc: subprocess.Popen[bytes] | None = None
    stdin: IO[bytes] | None = None
    attempt_dir: Path | None = None
    killing: bool = False
    kill_at: float | None = None
    status: dict[str, Any] = field(default_factory=dict)
    error_doc: dict[str, Any] | None = None
    token: object | None = None                 # the current attempt (see Supervisor._spawn)
    session: RelayedSession | None = None          # the publisher feeding the running worker
    pending_session: RelayedSession | None = None  # the publisher the next attempt will read
    relay_url: str | None = None
    replies: dict[int, Future[dict[str, Any]]] = field(default_factory=dict)
    next_reply: int = 0
    starts: int = 0
    started_at: float = 0.0                     # monotonic time of the current worker's start
    failures_total: int = 0
    deleting: bool = False
    event_record: bool = False
    event_segment_duration: float = 2.0
    input: tuple[float, int] = (0.0, 0)
    heard_at: float = 0.0                       # monotonic time of the worker's last message
    progress: tuple[float, float] = (0.0, 0.0)  # (monotonic time, media time) when media time last advanced
    input_bitrate: float | None = None
    totals: dict[str, float] = field(default_factory=lambda: {"segments": 0, "waits": 0.0, "wait_count": 0,
                                                              "late": 0})
    sidecar_totals: dict[str, dict[str, float]] = field(default_factory=dict)
    prev: dict[str, Any] = field(default_factory=dict)
    owned: bool = True                          # fleet: this replica holds the stream's lease
    epoch: int | None = None                    # fleet: the lease's epoch (fencing token)
    fenced: bool = False                        # fleet: the worker was killed because the lease was lost
    warm: bool = False                          # the current worker came from the warm pool
    spawned_wall: float = 0.0                   # wall-clock time of the current worker's start (its timeline)


class Supervisor:
    def __init__(self, config: ServerConfig, registry: Registry, storage: Storage, webhooks: Webhooks,
                 relay: Relay) -> None:
        self.config = config
        self.registry = registry
        self.storage = storage
        self.webhooks = webhooks
        self.relay = relay
        self.data_dir = config.data_dir.resolve()
        self.work_dir = self.data_dir / "work"
        self.state_dir = self.data_dir / "state"
        self.log_dir = self.data_dir / "logs"
        for d in (self.work_dir, self.state_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        # unix socket paths must stay under ~100 bytes: a short private folder, not one under data_dir
        self.run_dir = Path(tempfile.mkdtemp(prefix="sidecast-srv-"))
        self.sidecars = SidecarPool(self.run_dir, self.log_dir, args=config.sidecar_args,
                                    max_streams=config.sidecar_max_streams, external=config.sidecar_addrs)
        self.runtimes: dict[str, Runtime] = {}
        self.protection: dict[str, bool] = {}  # stream -> playback tokens required (read by the player port)
        self.disk_full = False
        self.disk_free: int | None = None
        self.disk_error: str | None = None
        self.started_at = time.time()
        self.heartbeat = time.monotonic()
        self._q: queue.Queue[Callable[[], None]] = queue.Queue()
        self._stop = threading.Event()
        # set once _boot has loaded the registry's streams: until then the API would answer 404 for a stream
        # that exists, so /readyz says "starting" (a restarted server answered /readyz before its streams were in)
        self.booted = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="supervisor", daemon=True)
        self._next_disk = 0.0
        self._next_sweep = 0.0
        self._check_disk_now = False
        self._spawns: collections.deque[tuple[Runtime, str, int, object]] = collections.deque()
        self._spawn_times: collections.deque[float] = collections.deque()
        self._warm: list[Warm] = []              # the warm pool: starting or ready, none taken yet
        self._closing = False
        self.warm_stats = {"taken": 0, "cold": 0, "lost": 0, "started": 0}
        self.fleet: Fleet | None = None          # set by the server when the registry is shared
        self.lease_valid_until = 0.0              # fleet: monotonic deadline of this replica's leases

    # ================================================================== thread-safe entry points

    def start(self) -> None:
        sweep_stale()
        self._thread.start()
        self.call(self._boot)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the supervisor's thread and return its result (exceptions are re-raised here)."""
        if threading.current_thread() is self._thread:
            return fn()
        fut: Future[T] = Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self._q.put(run)
        return fut.result(timeout)

    def post(self, fn: Callable[[], None]) -> None:
        self._q.put(fn)

    def close(self) -> None:
        """Stop every worker (each finishes its segment), close open events, stop shared sidecars."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self.call(self._shutdown, timeout=self.config.stop_timeout + 30)
        self._stop.set()
        self._q.put(lambda: None)
        self._thread.join(10)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # stream management (the API calls these; all run on the supervisor thread)

    def add(self, row: StreamRow) -> None:
        self.call(lambda: self._add(row))

    def update(self, row: StreamRow, restart: bool) -> None:
        self.call(lambda: self._update(row, restart))

    def remove(self, stream_id: str) -> None:
        self.call(lambda: self._remove(stream_id))

    def set_enabled(self, stream_id: str, enabled: bool) -> None:
        def run() -> None:
            rt = self._rt(stream_id)
            rt.row.enabled = enabled
            if self.fleet is not None and not rt.owned:  # the owner (or the next claim) applies it
                if rt.row.ingest == "push":
                    rt.life = replace(rt.life, enabled=enabled, state="idle" if enabled else "stopped")
                return
            self._apply(rt, L.Start() if enabled else L.Stop())
        self.call(run)

    def publish(self, stream_id: str, session: RelayedSession) -> str | None:
        """A push session for ``stream_id``: None when its worker will read it, else why not."""
        return self.call(lambda: self._publish(stream_id, session))

    def can_publish(self, stream_id: str) -> str | None:
        rt = self.runtimes.get(stream_id)
        if rt is None and self.fleet is not None:
            # created through another replica's API a moment ago (before this replica's next sync)
            with contextlib.suppress(Exception):
                row = self.registry.get_stream(stream_id)
                self.call(lambda: self.sync_row(row))
                rt = self.runtimes.get(stream_id)
        if rt is None:
            return "unknown stream"
        if self.disk_full:
            return "the server's storage is full"
        if (rt.session is not None and self.config.on_conflict == "refuse"
                and rt.life.state in ("starting", "live")):
            return "another publisher is live on this stream"
        return None

    def command(self, stream_id: str, doc: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Send a live control to the stream's worker; its result, or ValueError with the reason."""
        def send() -> Future[dict[str, Any]]:
            rt = self._rt(stream_id)
            if not rt.owned and self.fleet is not None:
                owner = self.fleet.owner_of(stream_id)
                where = self.fleet.replica_urls.get(owner or "", ("", ""))[1]
                raise StreamNotRunning(f"stream {stream_id!r} runs on replica {owner} ({where or 'no API URL'}): "
                                       "send live controls there" if owner else
                                       f"stream {stream_id!r} runs on no replica now")
            if rt.proc is None or rt.stdin is None or rt.killing or rt.life.state not in ("starting", "live"):
                raise StreamNotRunning(f"stream {stream_id!r} is {rt.life.state}: live controls need it live")
            rt.next_reply += 1
            fut: Future[dict[str, Any]] = Future()
            rt.replies[rt.next_reply] = fut
            self._send(rt, {**doc, "id": rt.next_reply})
            return fut

        fut = self.call(send)
        reply = fut.result(timeout)
        if not reply.get("ok"):
            raise ValueError(reply.get("error") or "the stream refused the command")
        result: dict[str, Any] = reply.get("result") or {}
        return result

    # ------------------------------------------------------------------ the fleet's entry points

    def revisions(self) -> dict[str, int]:
        return {sid: rt.row.revision for sid, rt in list(self.runtimes.items()) if not rt.deleting}

    def is_pull(self, stream_id: str) -> bool:
        rt = self.runtimes.get(stream_id)
        return rt is not None and rt.row.ingest == "pull"

    def releasable(self, held: set[str]) -> list[str]:
        """Held streams that need no lease here any more: deleted, stopped, failed, or a push stream whose
        publisher left (no worker, no open event)."""
        out = []
        for sid in held:
            rt = self.runtimes.get(sid)
            if rt is None or rt.deleting:
                out.append(sid)
            elif rt.proc is None and not rt.life.worker and (
                    rt.life.state in ("stopped", "failed") or (rt.row.ingest == "push" and rt.life.event is None)):
                out.append(sid)
        return out

    def disown(self, stream_id: str) -> bool:
        """Give the stream up if it still needs no lease here (runs on this thread, so no publisher can be
        accepted in between); True when the fleet may release the lease."""
        rt = self.runtimes.get(stream_id)
        if rt is not None and not rt.deleting and stream_id not in self.releasable({stream_id}):
            return False
        if rt is not None:
            rt.owned, rt.epoch = False, None
        return True

    def sync_row(self, row: StreamRow) -> None:
        """A stream created or changed through another replica's API."""
        rt = self.runtimes.get(row.id)
        if rt is None:
            self._add(row)
        elif rt.row.revision < row.revision:
            self._update(row, restart=(row.source, row.options, row.settings) != (rt.row.source, rt.row.options,
                                                                                 rt.row.settings))

    def forget(self, stream_id: str) -> None:
        """A stream deleted through another replica's API: stop it here if it runs here."""
        rt = self.runtimes.get(stream_id)
        if rt is None or rt.deleting:
            return
        if rt.owned:
            self._remove(stream_id)
        else:
            self.runtimes.pop(stream_id, None)
            self.protection.pop(stream_id, None)

    def adopt(self, stream_id: str, epoch: int, valid_until: float) -> None:
        """This replica now holds the stream's lease: continue its open event (a replica that died left
        it open) from the playlists in the shared storage, or start it."""
        rt = self.runtimes.get(stream_id)
        if rt is None:
            try:
                row = self.registry.get_stream(stream_id)
            except NotFound:
                return
            self._add(row)
            rt = self.runtimes[stream_id]
        if rt.deleting:
            return
        self.lease_valid_until = max(self.lease_valid_until, valid_until)
        rt.owned, rt.epoch, rt.fenced = True, epoch, False
        life = self._restore_life(rt)
        rt.life = life
        log.info("stream adopted", extra={"stream": stream_id, "epoch": epoch, "event": life.event,
                                          "attempt": life.attempt})
        if rt.row.enabled:
            self._apply(rt, L.Start())

    def _restore_life(self, rt: Runtime) -> L.Life:
        """The stream's state as the last owner left it in the shared storage: its publish state, its
        playlists (to continue), its masters (for a recording's archive)."""
        sid = rt.row.id
        state_dir = self.state_dir / sid
        doc = self.storage.get(f"{sid}/.state/publish.json")
        if doc is not None:
            (state_dir / "live").mkdir(parents=True, exist_ok=True)
            (state_dir / "publish.json").write_bytes(doc)
            state = PublishState.load(state_dir / "publish.json")
            for rel in state.window_events:
                text = self.storage.get(f"{sid}/{rel}")
                if text is not None:
                    path = state_dir / "live" / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(text)
            for name in MASTERS:
                data = self.storage.get(f"{sid}/{name}")
                if data is not None:
                    (state_dir / "masters").mkdir(parents=True, exist_ok=True)
                    (state_dir / "masters" / name).write_bytes(data)
        else:
            state = PublishState.load(state_dir / "publish.json")
        life = L.Life(_ingest(rt.row), since=time.time())
        ev = self.registry.open_event_of(sid)
        if ev is None:
            return life
        rt.event_record = ev.recording
        rt.event_segment_duration = float(rt.row.options.get("segment_duration", 2.0))
        if state.event_id == ev.id and (ev.live_at is not None or state.segments > 0):
            if ev.live_at is None:  # the owner died between its first segment and reporting it
                self.registry.event_live(sid, ev.id)
            return replace(life, event=ev.id, event_live=True, attempt=state.attempt)
        # left open by an owner that never published it (or whose state is gone): over
        self.registry.close_event(sid, ev.id, segments=state.segments if state.event_id == ev.id else 0, size=0,
                                  purge_after=time.time(), recording_ready=False)
        return life

    def fence(self, stream_id: str, why: str) -> None:
        """The lease is lost: kill the worker now (no last segment: another replica may own the stream
        already), leave the event open for the next owner."""
        rt = self.runtimes.get(stream_id)
        if rt is None:
            return
        rt.owned, rt.epoch = False, None
        for item in [item for item in self._spawns if item[0] is rt]:
            self._spawns.remove(item)
        if rt.pending_session is not None:
            rt.pending_session.close(why)
            rt.pending_session = None
        if rt.session is not None:
            rt.session.close(why)
        if rt.proc is not None:
            rt.fenced = True
            procs.kill_group(rt.proc.pid)
            log.error("worker fenced: %s", why, extra={"stream": stream_id, "pid": rt.proc.pid})
        else:
            rt.token = None
        rt.life = replace(L.Life(_ingest(rt.row), since=time.time()), last_error=why)
        if rt.row.ingest == "push" and rt.row.enabled:
            rt.life = replace(rt.life, enabled=True, state="idle")

    def extend_leases(self, valid_until: float) -> None:
        """The leases were renewed: every worker here may publish until ``valid_until`` (monotonic)."""
        self.lease_valid_until = valid_until
        left = valid_until - time.monotonic()
        for rt in list(self.runtimes.values()):
            if rt.owned and rt.proc is not None and not rt.fenced:
                self._send(rt, {"cmd": "lease", "valid_s": round(left, 3)})

    # Reads do not queue behind the supervisor's work (a burst of spawns must not slow every status call):
    # they read the runtime's fields directly. Each field is replaced whole by the supervisor thread (the
    # lifecycle record is immutable), so a read sees a consistent value of each, at worst one step old.

    def status(self, stream_id: str) -> dict[str, Any]:
        return self._status(self._rt(stream_id))

    def statuses(self) -> list[dict[str, Any]]:
        return [self._status(rt) for rt in list(self.runtimes.values())]

    def metrics_snapshot(self) -> dict[str, Any]:
        return self._metrics()

    # ================================================================== the loop

    def _loop(self) -> None:
        fn: Callable[[], None] | None = None
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            timeout = self._timers()
            if fn is None:
                try:
                    fn = self._q.get(timeout=timeout)
                except queue.Empty:
                    continue
            for _ in range(200):  # a burst (100 workers' status lines) between two timer passes, in order
                try:
                    fn()
                except Exception:
                    log.exception("supervisor task failed")
                try:
                    fn = self._q.get_nowait()
                except queue.Empty:
                    fn = None
                    break

    def _timers(self) -> float:
        """Run what is due; return how long the loop may sleep."""
        now = time.monotonic()
        wall = time.time()
        soonest = now + 1.0
        starting = False  # an attempt started lately has not published yet: the pool waits to refill
        for rt in list(self.runtimes.values()):
            if rt.proc is not None and rt.life.state == "starting" and now - rt.started_at < POOL_QUIET_S:
                starting = True
            deadline = L.next_deadline(rt.life)
            if deadline is not None and wall >= deadline:
                self._apply(rt, L.Tick())
            self._watchdog(rt, now)
            if rt.kill_at is not None and now >= rt.kill_at and rt.proc is not None and rt.proc.poll() is None:
                log.warning("worker did not stop in time: killed", extra={"stream": rt.row.id, "pid": rt.proc.pid})
                procs.kill_group(rt.proc.pid)
                rt.kill_at = None
            if rt.kill_at is not None:
                soonest = min(soonest, rt.kill_at)
            deadline = L.next_deadline(rt.life)
            if deadline is not None:
                soonest = min(soonest, now + max(0.0, deadline - wall))
        while self._spawn_times and now - self._spawn_times[0] >= 1.0:
            self._spawn_times.popleft()
        while self._spawns:
            warm = any(w.ready for w in self._warm)
            if not warm and len(self._spawn_times) >= SPAWNS_PER_SECOND:
                soonest = min(soonest, self._spawn_times[0] + 1.0)
                break
            rt, event, attempt, token = self._spawns.popleft()
            if rt.token is token:
                if not warm:  # only interpreter starts are paced: a warm worker costs no start
                    self._spawn_times.append(now)
                self._start_worker(rt, event, attempt, token)
        self._tend_pool(now, starting)
        if now >= self._next_disk or self._check_disk_now:
            self._check_disk_now = False
            self._next_disk = now + DISK_CHECK_S
            self._disk_guard()
            self.sidecars.check()
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_S
            self._sweep()
        return max(0.01, min(soonest, self._next_disk) - time.monotonic())

    # ================================================================== lifecycle application

    def _rt(self, stream_id: str) -> Runtime:
        rt = self.runtimes.get(stream_id)
        if rt is None or rt.deleting:
            raise NotFound(f"no stream {stream_id!r}")
        return rt

    def _policy(self, row: StreamRow) -> L.Policy:
        window = float(row.options.get("reconnect_timeout", 30.0))
        return L.Policy(reconnect_window=window, backoff_base=self.config.backoff_base,
                        backoff_max=self.config.backoff_max)

    def _apply(self, rt: Runtime, ev: L.Event) -> list[L.Action]:
        before = rt.life.state
        # The API keeps reading the state before this transition until its actions are done: a client told
        # "idle" must find the event's ENDLIST and recording written (a loaded run read "idle" first).
        rt.shown = rt.life
        rt.life, actions = L.transition(rt.life, ev, time.time(), rt.policy, new_event_id)
        if not rt.life.enabled and rt.pending_session is not None:
            rt.pending_session.close("this stream is stopped")
            rt.pending_session = None
        if rt.life.state != before:
            log.info("stream %s: %s -> %s", rt.row.id, before, rt.life.state,
                     extra={"stream": rt.row.id, "event": rt.life.event, "error": rt.life.last_error})
        try:
            for action in actions:
                try:
                    self._act(rt, action)
                except Exception:
                    log.exception("stream %s: %s failed", rt.row.id, type(action).__name__)
        finally:
            rt.shown = None
        return actions

    def _act(self, rt: Runtime, a: L.Action) -> None:
        sid = rt.row.id
        if self.fleet is not None and not rt.owned and not isinstance(a, (L.Kill, L.Refuse)):
            # a stream this replica does not hold: its events and playlists are the owner's business
            log.info("%s skipped: the stream's lease is not held here", type(a).__name__, extra={"stream": sid})
            return
        if isinstance(a, L.OpenEvent):
            rt.event_record = bool(rt.row.settings.get("record", False))
            rt.event_segment_duration = float(rt.row.options.get("segment_duration", 2.0))
            self.registry.open_event(sid, a.event, rt.event_record)
        elif isinstance(a, L.Spawn):
            self._spawn(rt, a.event, a.attempt)
        elif isinstance(a, L.Kill):
            self._kill(rt, a.reason)
        elif isinstance(a, L.CloseEvent):
            self._close_event(rt, a.event, a.live)
        elif isinstance(a, L.Notify):
            data: dict[str, Any] = {"event_id": a.event, "state": rt.life.state}
            if a.error:
                data["error"] = a.error
            if a.type == "stream.started":
                data["playback"] = self._urls(sid)["hls"]
                self.registry.event_live(sid, a.event or "")
            self.webhooks.emit(a.type, sid, data)
        elif isinstance(a, L.Refuse):
            pass  # returned to the publisher by _publish

    # ------------------------------------------------------------------ the warm pool

    def pool_target(self) -> int:
        """How many warm workers to keep: ``warm_workers`` (default: ``max_streams`` when set, else
        DEFAULT_WARM), and with ``max_streams`` never more than the attempts this replica has room for (a full
        replica takes nothing, and an idle warm worker holds memory a running stream would need)."""
        cfg = self.config
        n = cfg.warm_workers if cfg.warm_workers >= 0 else min(cfg.max_streams or DEFAULT_WARM, MAX_WARM)
        if cfg.max_streams > 0:
            running = sum(1 for rt in list(self.runtimes.values()) if rt.proc is not None)
            n = min(n, max(0, cfg.max_streams - running))
        return n

    def _tend_pool(self, now: float, starting: bool) -> None:
        """Drop warm workers that died idle (a crash there touches no stream), trim the pool to its target,
        then start one more when it is short, nothing waits to start and no attempt is starting (see the
        module docstring)."""
        for w in list(self._warm):
            rc = w.proc.poll()
            if rc is not None:
                self._warm.remove(w)
                self.warm_stats["lost"] += 1
                log.warning("warm worker ended while idle: replaced", extra={"pid": w.proc.pid, "rc": rc})
                w.assigned.set()  # its thread ends
        target = self.pool_target()
        while len(self._warm) > target:
            w = self._warm.pop()
            procs.kill_group(w.proc.pid)
            w.assigned.set()
        if (len(self._warm) >= target or self._spawns or starting or any(not w.ready for w in self._warm)
                or len(self._spawn_times) >= SPAWNS_PER_SECOND or self._closing):
            return
        try:
            proc = procs.spawn([sys.executable, "-m", "sidecast.core.server.worker", "--warm"],
                               log_path=self.log_dir / f"{WARM_LOG}.log", env={"MALLOC_ARENA_MAX": "2"})
        except OSError as exc:
            log.error("cannot start a warm worker: %s", exc)
            return
        self._spawn_times.append(now)
        w = Warm(proc, now)
        self._warm.append(w)
        self.warm_stats["started"] += 1
        threading.Thread(target=self._warm_thread, args=(w,), name="warm-worker", daemon=True).start()

    def _warm_thread(self, w: Warm) -> None:
        assert w.proc.stdout is not None
        line = w.proc.stdout.readline()
        try:
            ok = json.loads(line).get("type") == "warm"
        except ValueError:
            ok = False
        if ok:
            self.post(functools.partial(self._warm_ready, w))
            w.assigned.wait()
        if w.target is None:  # it died (the timers notice and replace it), or the server is closing
            with contextlib.suppress(Exception):
                procs.kill_group(w.proc.pid)
                w.proc.wait()
            return
        rt, token = w.target
        self._read_worker(rt, w.proc, token)

    def _warm_ready(self, w: Warm) -> None:
        if w in self._warm:
            w.ready = True
            log.debug("warm worker ready", extra={"pid": w.proc.pid,
                                                   "seconds": round(time.monotonic() - w.started_at, 2)})

    def _take_warm(self) -> Warm | None:
        for w in list(self._warm):
            if w.ready and w.proc.poll() is None:
                self._warm.remove(w)
                return w
        return None

    def _close_pool(self) -> None:
        pool, self._warm = self._warm, []
        for w in pool:
            procs.kill_group(w.proc.pid)
            w.assigned.set()

    # ------------------------------------------------------------------ workers

    def _spawn(self, rt: Runtime, event: str, attempt: int) -> None:
        """Queue the worker's start (at most SPAWNS_PER_SECOND of them start each second). The token names
        this attempt: every report about it (its exit above all) carries it, so nothing about an attempt can be
        taken for news of the next one."""
        token = object()
        rt.token = token
        self._spawns.append((rt, event, attempt, token))

    def _start_worker(self, rt: Runtime, event: str, attempt: int, token: object) -> None:
        row = rt.row
        sid = row.id
        opts = dict(row.options)
        sidecar_names = list(opts.pop("sidecars", []) or [])
        addrs = {name: self.sidecars.target(name, sid) for name in sidecar_names}
        source = row.source
        if row.ingest == "push":
            session = rt.pending_session
            rt.pending_session = None
            if session is None:
                self.post(lambda: self._exited(rt, token, None, -1, "no publisher to read"))
                return
            rt.session = session
            rt.relay_url = source = self.relay.register(session)
        seg = float(opts.get("segment_duration", 2.0))
        settings = row.settings
        plan = PublishPlan(stream_id=sid, event_id=event, attempt=attempt, segment_duration=seg,
                           window_segments=window_segments(seg, opts.get("window"),
                                                           float(settings.get("dvr_seconds", 0.0))),
                           record=rt.event_record)
        rt.attempt_dir = self.work_dir / sid / event / f"r{attempt}"
        server_opts = {"source": source, "sidecar_addrs": addrs, "progress": False, "realtime": False,
                       "reconnect_timeout": float(opts.get("reconnect_timeout", 30.0)) if row.ingest == "pull" else 0.0,
                       "window": opts.get("window") or 6}
        memory = int(settings.get("memory_limit_mb", 3072)) << 20
        lease_left = None
        if self.fleet is not None:
            lease_left = self.lease_valid_until - time.monotonic()
            if not rt.owned or lease_left <= 0.5:
                self.post(lambda: self._exited(rt, token, None, -1, "this replica's lease on the stream ran out"))
                return
        log_path = self.log_dir / f"{sid}.log"
        spec = {"stream_id": sid, "options": {**opts, **server_opts}, "workdir": str(rt.attempt_dir),
                "state_dir": str(self.state_dir / sid), "storage": self.config.storage,
                "data_dir": str(self.data_dir), "plan": plan.__dict__, "memory_limit": memory,
                "log_level": self.config.log_level, "log_format": self.config.log_format,
                "lease_valid_s": lease_left, "epoch": rt.epoch, "shared_state": self.fleet is not None}
        warm = self._take_warm()
        if warm is not None:
            proc = warm.proc
            with procs.open_log(log_path):  # rotated like a cold worker's log
                spec["log_path"] = str(log_path)
            self.warm_stats["taken"] += 1
        else:
            try:
                proc = procs.spawn([sys.executable, "-m", "sidecast.core.server.worker"],
                                   log_path=log_path, env={"MALLOC_ARENA_MAX": "2"})
            except OSError as exc:
                why = f"cannot start the worker: {exc}"
                self.post(lambda: self._exited(rt, token, None, -1, why))
                return
            self.warm_stats["cold"] += 1
        assert proc.stdin is not None and proc.stdout is not None
        rt.proc, rt.stdin, rt.killing, rt.kill_at = proc, proc.stdin, False, None
        rt.status, rt.error_doc, rt.prev = {}, None, {}
        # a starting interpreter is given a minute before the watchdog counts its silence (imports on a busy box)
        rt.heard_at = time.monotonic() + max(0.0, STARTUP_GRACE_S - self.config.watchdog_s)
        rt.progress = (time.monotonic(), 0.0)
        rt.starts += 1
        rt.started_at = time.monotonic()
        rt.spawned_wall = time.time()
        rt.warm = warm is not None
        rt.input = (time.monotonic(), self.relay.bytes_in(sid))
        self._send(rt, spec)
        if warm is not None:
            warm.target = (rt, token)
            warm.assigned.set()
        else:
            threading.Thread(target=self._read_worker, args=(rt, proc, token), name=f"worker-{sid}",
                             daemon=True).start()
        log.info("worker started", extra={"stream": sid, "event": event, "attempt": attempt, "pid": proc.pid,
                                          "warm": warm is not None})

    def _watchdog(self, rt: Runtime, now: float) -> None:
        """Kill a worker that is stuck: silent for ``watchdog_s`` (a decoder hung holding the interpreter, a
        stopped process), or live without its media time moving for the reconnect window plus ``watchdog_s``
        (the pipeline waits that long itself for a source to come back). The crash restarts it."""
        proc = rt.proc
        if proc is None or rt.killing or rt.heard_at == 0.0:
            return
        limit = self.config.watchdog_s
        silent = now - rt.heard_at
        stalled = now - rt.progress[0] if rt.life.state == "live" else 0.0
        if silent > limit or stalled > limit + rt.policy.reconnect_window:
            why = (f"worker stuck: no report for {silent:.0f} s" if silent > limit
                   else f"worker stuck: media time has not moved for {stalled:.0f} s")
            log.error("%s; killing it", why, extra={"stream": rt.row.id, "pid": proc.pid})
            rt.error_doc = {"kind": "crash", "message": why}
            procs.kill_group(proc.pid)
            rt.heard_at = 0.0

    def _send(self, rt: Runtime, doc: dict[str, Any]) -> None:
        if rt.stdin is None:
            return
        try:
            rt.stdin.write(json.dumps(doc).encode() + b"\n")
            rt.stdin.flush()
        except (OSError, ValueError):
            pass  # the worker is exiting; its reader thread reports that

    def _read_worker(self, rt: Runtime, proc: subprocess.Popen[bytes], token: object) -> None:
        """One thread per worker: its stdout lines become supervisor tasks; then its exit."""
        assert proc.stdout is not None
        for raw in proc.stdout:
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            self.post(functools.partial(self._message, rt, proc, doc))
        rc = proc.wait()
        self.post(lambda: self._exited(rt, token, proc, rc, None))

    def _message(self, rt: Runtime, proc: subprocess.Popen[bytes], doc: dict[str, Any]) -> None:
        if rt.proc is not proc:
            return
        rt.heard_at = time.monotonic()
        kind = doc.get("type")
        if kind == "status":
            self._take_status(rt, doc)
        elif kind == "live" and not rt.killing:
            marks = doc.get("marks")
            if isinstance(marks, dict):  # the start's timeline (bench/fleet.py reads it from the log)
                log.info("worker timeline", extra={"stream": rt.row.id, "pid": proc.pid, "warm": rt.warm,
                                                   "marks": {"spawned": round(rt.spawned_wall, 3), **marks}})
            self._apply(rt, L.Live())
        elif kind == "reply":
            fut = rt.replies.pop(int(doc.get("id") or 0), None)
            if fut is not None and not fut.done():
                fut.set_result(doc)
        elif kind == "error":
            rt.error_doc = doc
            if doc.get("kind") == "storage":
                self._check_disk_now = True

    def _take_status(self, rt: Runtime, doc: dict[str, Any]) -> None:
        prev = rt.prev
        rt.totals["segments"] += max(0, int(doc.get("segments", 0)) - int(prev.get("segments", 0)))
        waits, pwaits = doc.get("decision_waits") or {}, prev.get("decision_waits") or {}
        rt.totals["waits"] += max(0.0, float(waits.get("sum", 0)) - float(pwaits.get("sum", 0)))
        rt.totals["wait_count"] += max(0, int(waits.get("count", 0)) - int(pwaits.get("count", 0)))
        rt.totals["late"] += max(0, int(waits.get("late", 0)) - int(pwaits.get("late", 0)))
        pside = {s["name"]: s for s in prev.get("sidecars", [])}
        for s in doc.get("sidecars", []):
            tot = rt.sidecar_totals.setdefault(s["name"], {"results": 0, "dropped": 0, "errors": 0})
            p = pside.get(s["name"], {})
            for k in tot:
                tot[k] += max(0, int(s.get(k, 0)) - int(p.get(k, 0)))
        rt.prev = doc
        rt.status = doc
        media = float(doc.get("media_time") or 0.0)
        if media > rt.progress[1]:
            rt.progress = (time.monotonic(), media)
        # push: the bytes the publisher sent (the relay counts them); pull: the payload bytes the worker's
        # demuxer read (packets, without the container's overhead), a count that starts again per attempt
        now = time.monotonic()
        b = self.relay.bytes_in(rt.row.id) if rt.row.ingest == "push" else int(doc.get("input_bytes") or 0)
        t0, b0 = rt.input
        if b < b0:  # a new attempt's worker counts from zero
            rt.input = (now, b)
        elif now - t0 >= 0.5:
            rt.input_bitrate = (b - b0) * 8 / (now - t0)
            rt.input = (now, b)
        if doc.get("storage_full"):
            self._check_disk_now = True

    def _exited(self, rt: Runtime, token: object, proc: subprocess.Popen[bytes] | None, rc: int,
                why: str | None) -> None:
        if rt.token is not token:
            return  # about an attempt that was dealt with already
        rt.token = None
        sid = rt.row.id
        if proc is not None:
            procs.kill_group(proc.pid)  # whatever it started (an SRT bridge) goes with it
            if rt.stdin is not None:
                with contextlib.suppress(OSError):
                    rt.stdin.close()
        sweep_stale()  # frame rings of a worker that could not unlink them (killed)
        killed = rt.killing
        rt.proc, rt.stdin, rt.killing, rt.kill_at = None, None, False, None
        for fut in rt.replies.values():
            if not fut.done():
                fut.set_result({"ok": False, "error": "the stream's worker ended"})
        rt.replies.clear()
        if rt.relay_url is not None:
            self.relay.forget(rt.relay_url, "the stream's worker ended")
            rt.relay_url = None
        rt.session = None
        if rt.attempt_dir is not None:
            shutil.rmtree(rt.attempt_dir, ignore_errors=True)
            with contextlib.suppress(OSError):
                rt.attempt_dir.parent.rmdir()  # the event's scratch folder, once empty
            rt.attempt_dir = None
        kind = EXIT_KINDS.get(rc, "crash")
        error = why
        if error is None and rt.error_doc is not None:
            error = str(rt.error_doc.get("message"))
            kind = str(rt.error_doc.get("kind") or kind)
        if error is None and not killed and rc != 0:
            error = (f"worker killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in signal.valid_signals()
                     else f"worker crashed (exit {rc})")
        if rt.fenced:  # the lease was lost: nothing more happens to the stream here
            rt.fenced = False
            log.warning("fenced worker ended", extra={"stream": sid, "rc": rc})
            return
        ok = (rc == 0 and rt.error_doc is None) or killed
        if not ok:
            rt.failures_total += 1
        log.log(logging.INFO if ok else logging.WARNING, "worker ended",
                extra={"stream": sid, "rc": rc, "kind": kind, "error": error})
        self._apply(rt, L.WorkerExit(ok=ok, error=None if killed else error, config=kind == "config" and not killed))
        if rt.deleting and rt.proc is None:
            self._purge_stream(rt)

    def _kill(self, rt: Runtime, reason: str) -> None:
        queued = [item for item in self._spawns if item[0] is rt]
        if queued:  # not started yet: it ends here, as a worker that was stopped
            for item in queued:
                self._spawns.remove(item)
            rt.killing = True
            if rt.pending_session is not None:
                rt.pending_session.close(reason)
                rt.pending_session = None
            token = rt.token
            self.post(lambda: self._exited(rt, token, None, 0, None))
            return
        if rt.proc is None:
            return
        rt.killing = True
        rt.kill_at = time.monotonic() + self.config.stop_timeout
        self._send(rt, {"cmd": "stop"})
        with contextlib.suppress(ProcessLookupError):
            rt.proc.send_signal(signal.SIGTERM)
        if rt.session is not None:  # a publisher's bytes would keep a worker reading: end the session
            rt.session.close(reason)
        log.info("stopping worker", extra={"stream": rt.row.id, "reason": reason, "pid": rt.proc.pid})

    # ------------------------------------------------------------------ events

    def _close_event(self, rt: Runtime, event: str, live: bool) -> None:
        sid = rt.row.id
        segments = int(rt.status.get("segments", 0)) if rt.status else 0
        size = int(rt.status.get("event_bytes", 0)) if rt.status else 0
        try:
            state = json.loads((self.state_dir / sid / "publish.json").read_text())
            if state.get("event_id") == event:
                segments, size = int(state.get("segments", segments)), int(state.get("event_bytes", size))
        except (OSError, ValueError):
            pass
        now = time.time()
        recording = None
        if live:
            try:
                recording = finalize_event(self.storage, self.state_dir / sid, sid, event, record=rt.event_record,
                                           segment_duration=rt.event_segment_duration)
            except OSError as exc:
                log.error("cannot finish event %s of %s: %s", event, sid, exc)
        retention = float(rt.row.settings.get("recording_retention_hours", 168.0)) * 3600
        grace = rt.event_segment_duration * 12 + 60
        purge_after = now + (retention if recording is not None else grace if live else 0)
        self.registry.close_event(sid, event, segments=segments, size=size, purge_after=purge_after,
                                  recording_ready=recording is not None)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.work_dir / sid / event)
        if recording is not None:
            base = self.config.media_base()
            self.webhooks.emit("recording.ready", sid, {
                "event_id": event, "duration": round(recording.duration, 3), "segments": recording.segments,
                "playback": {k.rsplit("/", 1)[-1]: base + k for k in recording.masters},
                "expires_at": purge_after})
        log.info("event closed", extra={"stream": sid, "event": event, "live": live,
                                        "recording": recording is not None})

    def _sweep(self) -> None:
        """Delete the media of ended events whose time is up."""
        try:
            due = self.registry.due_purges(time.time())
        except RegistryUnavailable as exc:  # an outage: one line, the fleet's thread says the rest
            log.error("retention sweep skipped: %s", exc)
            return
        except Exception:
            log.exception("retention sweep failed")
            return
        for ev in due:
            try:
                self.storage.delete_prefix(f"{ev.stream_id}/e/{ev.id}/")
                shutil.rmtree(self.state_dir / ev.stream_id / "events" / ev.id, ignore_errors=True)
                rt = self.runtimes.get(ev.stream_id)
                latest = self.registry.list_events(ev.stream_id, 1)
                if (rt is not None and rt.life.event is None and not rt.life.worker and latest
                        and latest[0].id == ev.id):
                    clear_stream_playlists(self.storage, self.state_dir / ev.stream_id, ev.stream_id)
                self.registry.event_purged(ev.stream_id, ev.id)
                log.info("event media deleted", extra={"stream": ev.stream_id, "event": ev.id})
            except OSError as exc:
                log.error("cannot delete event %s of %s: %s", ev.id, ev.stream_id, exc)

    # ------------------------------------------------------------------ disk

    def _disk_guard(self) -> None:
        frees = []
        try:
            st = os.statvfs(self.data_dir)
            frees.append(st.f_bavail * st.f_frsize)
            storage_free = self.storage.free_bytes()
            if storage_free is not None:
                frees.append(storage_free)
        except OSError as exc:
            self.disk_error = str(exc)
            return
        free = min(frees)
        self.disk_free = free
        floor = self.config.min_free_bytes
        if not self.disk_full and free < floor:
            self.disk_full = True
            self.disk_error = (f"storage is full: {free >> 20} MiB free, below the {floor >> 20} MiB floor; "
                               "writes are stopped until space returns")
            log.error(self.disk_error)
            for rt in list(self.runtimes.values()):
                self._apply(rt, L.DiskFull())
        elif self.disk_full and free >= floor + max(64 << 20, floor // 2):
            self.disk_full = False
            self.disk_error = None
            log.warning("storage has space again: streams resume", extra={"free_mb": free >> 20})
            for rt in list(self.runtimes.values()):
                self._apply(rt, L.DiskOk())

    # ------------------------------------------------------------------ stream management

    def _boot(self) -> None:
        for ev in ([] if self.fleet is not None else self.registry.open_events()):  # left open by a server that stopped mid-broadcast
            row = None
            with contextlib.suppress(NotFound):
                row = self.registry.get_stream(ev.stream_id)
            rt = Runtime(row, L.Life(_ingest(row)), self._policy(row)) if row is not None else None
            if rt is not None:
                rt.event_record = ev.recording
                rt.event_segment_duration = float(row.options.get("segment_duration", 2.0)) if row else 2.0
                self._close_event(rt, ev.id, True)
            else:
                self.registry.close_event(ev.stream_id, ev.id, segments=0, size=0, purge_after=time.time(),
                                          recording_ready=False)
        offset = 0
        while True:
            rows = self.registry.list_streams(limit=500, offset=offset)
            for row in rows:
                self._add(row)
            if len(rows) < 500:
                break
            offset += 500
        self._disk_guard()
        self.booted.set()

    def _add(self, row: StreamRow) -> None:
        rt = Runtime(row, L.Life(_ingest(row), since=time.time()), self._policy(row))
        self.runtimes[row.id] = rt
        self.protection[row.id] = bool(row.settings.get("playback_protection"))
        if self.fleet is not None:
            # a pull stream runs where its lease is claimed (adopt); a push stream waits for its publisher
            # on every replica and claims its lease when one arrives
            rt.owned = False
            if row.enabled and row.ingest == "push":
                rt.life = replace(rt.life, enabled=True, state="idle")
            return
        if row.enabled:
            self._apply(rt, L.Start())
        if self.disk_full:
            self._apply(rt, L.DiskFull())

    def _update(self, row: StreamRow, restart: bool) -> None:
        rt = self._rt(row.id)
        old = rt.row
        rt.row = row
        rt.policy = self._policy(row)
        self.protection[row.id] = bool(row.settings.get("playback_protection"))
        if not rt.owned:  # it runs elsewhere (or nowhere yet): the owner applies the change
            if row.ingest == "push":
                rt.life = replace(rt.life, enabled=row.enabled, state="idle" if row.enabled else "stopped")
            return
        if row.enabled != old.enabled:
            self._apply(rt, L.Start() if row.enabled else L.Stop())
        elif restart and row.enabled and rt.life.state not in ("stopped",):
            # options or source changed: the running event ends, the next starts with the new settings
            self._apply(rt, L.Stop())
            self._apply(rt, L.Start())

    def _remove(self, stream_id: str) -> None:
        rt = self._rt(stream_id)
        if not rt.owned and self.fleet is not None:
            self.runtimes.pop(stream_id, None)
            self.protection.pop(stream_id, None)
            if self.fleet.owner_of(stream_id) is None:  # nobody runs it: its media go now
                self._purge_stream(rt)
            return  # else its owner stops it and deletes its media when it sees the stream gone
        self.protection.pop(stream_id, None)
        self._apply(rt, L.Stop())
        rt.deleting = True
        if rt.pending_session is not None:
            rt.pending_session.close("the stream was deleted")
            rt.pending_session = None
        if rt.proc is None:
            self._purge_stream(rt)

    def _purge_stream(self, rt: Runtime) -> None:
        sid = rt.row.id
        self.runtimes.pop(sid, None)
        self.sidecars.release(sid)
        try:
            self.storage.delete_prefix(f"{sid}/")
        except OSError as exc:
            log.error("cannot delete the media of %s: %s", sid, exc)
        shutil.rmtree(self.state_dir / sid, ignore_errors=True)
        shutil.rmtree(self.work_dir / sid, ignore_errors=True)
        self.registry.delete_events(sid)
        if self.fleet is not None:
            self.registry.forget_leases(sid)
        log.info("stream deleted", extra={"stream": sid})

    def _publish(self, stream_id: str, session: RelayedSession) -> str | None:
        rt = self.runtimes.get(stream_id)
        if rt is None or rt.deleting:
            return "unknown stream"
        if self.fleet is not None and not rt.owned:
            epoch = self.fleet.claim_push(stream_id)
            if epoch is None:
                return "this stream is live on another replica"
            rt.owned, rt.epoch = True, epoch
            life = self._restore_life(rt)
            rt.life = replace(life, enabled=rt.row.enabled, state="idle" if rt.row.enabled else "stopped")
        if rt.session is not None and rt.life.worker:
            if self.config.on_conflict == "refuse" and not rt.killing:
                log.warning("second publisher refused", extra={"stream": stream_id, "peer": str(session.peer)})
                return "another publisher is live on this stream"
            log.warning("publisher replaced", extra={"stream": stream_id, "peer": str(session.peer)})
            rt.session.close("replaced by a new publisher")
        if rt.pending_session is not None:
            rt.pending_session.close("replaced by a newer publisher")
        rt.pending_session = session
        actions = self._apply(rt, L.Publish())
        refused = [a.reason for a in actions if isinstance(a, L.Refuse)]
        if refused:
            rt.pending_session = None
            return refused[0]
        log.info("publisher accepted", extra={"stream": stream_id, "peer": str(session.peer), "protocol": session.protocol})
        return None

    def _shutdown(self) -> None:
        self._closing = True  # no warm worker starts from here on
        self._close_pool()
        for rt, _, _, _ in self._spawns:
            rt.token = None  # queued starts never happen
            if rt.pending_session is not None:
                rt.pending_session.close("server shutting down")
        self._spawns.clear()
        for rt in self.runtimes.values():
            if self.fleet is not None:
                rt.owned = False  # the next owner continues its events: none is closed here
            if rt.proc is not None:
                self._kill(rt, "server shutting down")
        deadline = time.monotonic() + self.config.stop_timeout
        for rt in list(self.runtimes.values()):
            proc = rt.proc
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                procs.kill_group(proc.pid)
                proc.wait()
            self._exited(rt, rt.token, proc, proc.returncode, None)
        for rt in self.runtimes.values():
            if rt.life.event is not None and self.fleet is None:  # in a fleet the next owner continues it
                self._close_event(rt, rt.life.event, rt.life.event_live)
                rt.life = L.Life(_ingest(rt.row), state="stopped")
        self.sidecars.close()
        sweep_stale()

    # ------------------------------------------------------------------ reading

    def _urls(self, sid: str) -> dict[str, str]:
        base = self.config.media_base()
        return {"hls": f"{base}{sid}/master.m3u8", "vertical": f"{base}{sid}/vertical.m3u8",
                "snapshot": f"{base}{sid}/snapshot.jpg"}

    def _status(self, rt: Runtime) -> dict[str, Any]:
        # life first, then shown: _apply sets shown (the old life) before it replaces life, and clears it
        # after the actions. Read the other way round, a read could find shown still None, then the new life
        # whose actions have not run (a client told "idle" before the ENDLIST is written)
        life = rt.life
        shown = rt.shown
        if shown is not None:
            life = shown
        proc, session = rt.proc, rt.session
        st = rt.status if proc is not None else {}
        now = time.time()
        waits = rt.totals
        state: str = life.state
        replica = None
        if self.fleet is not None:
            replica = self.fleet.owner_of(rt.row.id)
            if not rt.owned:
                state = "remote" if replica else ("unassigned" if rt.row.enabled else "stopped")
        return {
            "id": rt.row.id, "state": state, "since": life.since, "enabled": life.enabled, "replica": replica,
            "event": life.event, "attempt": life.attempt, "pid": proc.pid if proc is not None else None,
            "publisher": str(session.peer) if session is not None else None,
            "input_bitrate": round(rt.input_bitrate, 1) if rt.input_bitrate is not None and proc else None,
            "input_fps": st.get("fps"), "speed": st.get("speed"), "media_time": st.get("media_time"),
            "segments": int(rt.totals["segments"]), "restarts": max(0, rt.starts - 1), "failures": life.failures,
            "storage_bytes": self.registry.stored_bytes(rt.row.id) + int(st.get("event_bytes", 0)),
            "rss_bytes": st.get("rss"),
            "decision_wait_avg": round(waits["waits"] / waits["wait_count"], 3) if waits["wait_count"] else None,
            "late_segments": int(waits["late"]),
            "sidecars": st.get("sidecars", []), "last_error": life.last_error,
            "retry_in": round(life.retry_at - now, 1) if life.retry_at is not None else None,
            "reconnect_window_left": round(life.window_until - now, 1) if life.window_until is not None else None,
        }

    def _metrics(self) -> dict[str, Any]:
        streams = []
        for rt in list(self.runtimes.values()):
            s = self._status(rt)
            s["totals"] = dict(rt.totals)
            s["sidecar_totals"] = {k: dict(v) for k, v in list(rt.sidecar_totals.items())}
            s["failures_total"] = rt.failures_total
            s["starts_total"] = rt.starts
            streams.append(s)
        return {"streams": streams, "disk_free": self.disk_free, "disk_full": self.disk_full,
                "sidecars": self.sidecars.status(), "webhooks": dict(self.webhooks.sent),
                "warm_pool": self.warm_pool()}

    def warm_pool(self) -> dict[str, Any]:
        """The warm pool: its size, the idle workers ready now (their PIDs), and counts since the start
        (``taken``: attempts started warm, ``cold``: started as a new interpreter, ``lost``: warm workers that
        ended while idle, replaced)."""
        pool = list(self._warm)
        return {"size": self.pool_target(), "ready": [w.proc.pid for w in pool if w.ready],
                "starting": [w.proc.pid for w in pool if not w.ready], **self.warm_stats}


def _ingest(row: StreamRow) -> L.Ingest:
    return "pull" if row.ingest == "pull" else "push"


class StreamNotRunning(ValueError):
    """A live control for a stream that has no running worker (answered with 409)."""


__all__ = ["Runtime", "StreamNotRunning", "Supervisor", "new_event_id"]
