"""The fleet: several ``sidecast server`` replicas sharing one registry (PostgreSQL) place streams across
themselves with leases, and take over the streams of a replica that dies.

Every replica runs this loop on its own thread, every ``lease_seconds / 5``:

1. **Heartbeat**: its row in ``replicas`` (URLs, capacity); replicas seen within one lease count as alive.
2. **Renew** every lease it holds, in one statement (``expires_at = db now + lease``). A lease that had
   expired is not renewed: another replica may hold it. Each lost lease is **fenced**: its worker is
   killed at once (SIGKILL of its process group), without closing the event (the new owner continues it).
3. **Fence by time**: a renewal sent at (monotonic) ``t`` keeps every lease valid until at least ``t + lease``
   by the database's clock, so the replica's leases are surely its own until ``t + lease - margin``. Each
   worker gets that deadline on its command line and kills itself when it passes without an extension
   (worker.py): a replica that is frozen (SIGSTOP, a stuck event loop) or cut off from the registry stops
   publishing before anyone else may claim its streams. That is the split-brain guarantee; the epoch (the
   claim counter) is the fencing token, recorded with each attempt.
4. **Sync** the streams' rows (created, changed or deleted through any replica's API).
5. **Claim** enabled pull streams that no live lease covers, up to the replica's ``max_streams`` and its
   fair share (streams ÷ live replicas, rounded up), oldest first; each claimed stream is **adopted**:
   its playlist state is read back from the shared storage and the stream's open event continues with a
   new attempt (after an EXT-X-DISCONTINUITY, sequence numbers continuing).
6. **Release** what should not run here any more (a stopped stream, a push stream whose publisher left).

Push streams run where the load balancer delivers the publisher: the replica claims the stream's lease when
the publisher is accepted (a second replica refuses that stream's publishers while the lease is held).

Why a worker pool with leases and not an operator: see docs/design.md ("Scaling out").
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket
import threading
import time
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from .registry import Registry, RegistryError

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("sidecast.server.fleet")


def default_replica_id() -> str:
    """The host name (a pod's name on Kubernetes) and a few random characters: a restarted replica is a new
    one, so leases of its previous life are never mistaken for its own."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:4]}"


class Fleet:
    def __init__(self, registry: Registry, supervisor: Supervisor, *, replica_id: str, lease_seconds: float,
                 max_streams: int, media_url: str, api_url: str) -> None:
        self.registry = registry
        self.supervisor = supervisor
        self.replica = replica_id
        self.ttl = float(lease_seconds)
        self.tick = max(0.2, self.ttl / 5)
        # the margin covers the time a deadline takes to reach a worker and the worker's kill
        self.margin = min(max(1.0, self.ttl / 4), self.ttl / 2)
        self.max_streams = max_streams
        self.media_url = media_url
        self.api_url = api_url
        self.held: dict[str, int] = {}            # stream -> epoch of the lease this replica holds
        self.owners: dict[str, str] = {}          # stream -> the replica holding it (from the last pass)
        self.replica_urls: dict[str, tuple[str, str]] = {}  # replica -> (media URL, API URL)
        self.valid_until = 0.0                    # monotonic: our leases are surely ours until then
        self.registry_error: str | None = None
        self.last_pass = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fleet", daemon=True)

    # ------------------------------------------------------------------ thread

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.step()
            except Exception:
                log.exception("fleet pass failed")
            self._stop.wait(max(0.05, self.tick - (time.monotonic() - started)))

    # ------------------------------------------------------------------ one pass

    def step(self) -> None:
        sent = time.monotonic()
        try:
            self.registry.heartbeat(self.replica, media_url=self.media_url, api_url=self.api_url,
                                    capacity=self.max_streams)
            renewed = self.registry.renew_leases(self.replica, self.ttl)
        except Exception as exc:  # a registry outage (RegistryUnavailable, or a driver error mid-statement)
            self._registry_down(exc)
            return
        if self.registry_error is not None:
            log.warning("the registry answers again")
            self.registry_error = None
        with self._lock:
            lost = [sid for sid, epoch in self.held.items() if renewed.get(sid) != epoch]
            for sid in lost:
                self.held.pop(sid, None)
        self.valid_until = sent + self.ttl - self.margin
        for sid in lost:
            log.error("lease of %s lost: its worker is stopped here", sid, extra={"stream": sid})
            self.supervisor.post(partial(self.supervisor.fence, sid, "the lease was lost"))
        valid_until = self.valid_until
        self.supervisor.post(partial(self.supervisor.extend_leases, valid_until))
        self._sync_streams()
        self._release_idle()
        self._claim()
        with contextlib.suppress(Exception):
            leases = self.registry.leases()
            self.owners = {lease.stream_id: lease.owner for lease in leases}
            self.replica_urls = {r.id: (r.media_url, r.api_url) for r in self.registry.live_replicas(self.ttl)}
        self.last_pass = time.monotonic()

    def _registry_down(self, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.registry_error is None:
            log.error("the registry is unreachable: %s", text)
        self.registry_error = text
        if self.held and time.monotonic() >= self.valid_until:
            # nobody can tell whether another replica holds our streams now: stop them (fencing wins)
            with self._lock:
                gone, self.held = list(self.held), {}
            for sid in gone:
                self.supervisor.post(partial(self.supervisor.fence, sid,
                                             "the registry is unreachable and the lease ran out"))

    def _sync_streams(self) -> None:
        revisions = self.registry.stream_revisions()
        local = self.supervisor.revisions()
        for sid, rev in revisions.items():
            if local.get(sid) != rev:
                try:
                    row = self.registry.get_stream(sid)
                except RegistryError:
                    continue
                self.supervisor.post(partial(self.supervisor.sync_row, row))
        for sid in set(local) - set(revisions):
            self.supervisor.post(partial(self.supervisor.forget, sid))

    def _release_idle(self) -> None:
        for sid in self.supervisor.releasable(set(self.held)):
            try:  # decided on the supervisor's thread: no publisher is accepted between check and release
                if not self.supervisor.call(partial(self.supervisor.disown, sid), timeout=2.0):
                    continue
            except Exception:
                continue
            with self._lock:
                epoch = self.held.pop(sid, None)
            if epoch is not None:
                with contextlib.suppress(Exception):
                    self.registry.release_lease(sid, self.replica, epoch)
                log.info("lease of %s released", sid, extra={"stream": sid})

    def pull_held(self) -> int:
        return sum(1 for sid in list(self.held) if self.supervisor.is_pull(sid))

    def _claim(self) -> None:
        live = self.registry.live_replicas(self.ttl)
        total = self.registry.count_pull_streams()
        if total == 0:
            return
        share = math.ceil(total / max(1, len(live)))
        room = min(self.max_streams if self.max_streams > 0 else total, share) - self.pull_held()
        if room <= 0:
            return
        for sid in self.registry.claimable_streams(room * 2 + 2):
            if room <= 0:
                break
            epoch = self.registry.claim_lease(sid, self.replica, self.ttl)
            if epoch is None:
                continue  # another replica was faster
            with self._lock:
                self.held[sid] = epoch
            room -= 1
            log.info("claimed %s (epoch %d)", sid, epoch, extra={"stream": sid, "epoch": epoch})
            valid_until = self.valid_until
            self.supervisor.post(partial(self.supervisor.adopt, sid, epoch, valid_until))

    # ------------------------------------------------------------------ called by the supervisor

    def claim_push(self, stream_id: str) -> int | None:
        """A publisher arrived here for ``stream_id``: take its lease (None: another replica runs it)."""
        with self._lock:
            if stream_id in self.held:
                return self.held[stream_id]
        if time.monotonic() >= self.valid_until:
            return None  # our own leases are not renewed: take nothing new
        epoch = self.registry.claim_lease(stream_id, self.replica, self.ttl)
        if epoch is not None:
            with self._lock:
                self.held[stream_id] = epoch
        return epoch

    def release_all(self) -> None:
        """On shutdown, after the workers stopped: the others may take the streams at once."""
        with self._lock:
            held, self.held = dict(self.held), {}
        for sid, epoch in held.items():
            with contextlib.suppress(Exception):
                self.registry.release_lease(sid, self.replica, epoch)
        with contextlib.suppress(Exception):
            self.registry.forget_replica(self.replica)

    def owner_of(self, stream_id: str) -> str | None:
        return self.replica if stream_id in self.held else self.owners.get(stream_id)

    def describe(self) -> dict[str, Any]:
        return {"replica": self.replica, "lease_seconds": self.ttl, "max_streams": self.max_streams,
                "held": sorted(self.held), "registry_error": self.registry_error,
                "replicas": [{"id": rid, "media_url": urls[0], "api_url": urls[1]}
                             for rid, urls in sorted(self.replica_urls.items())]}


__all__ = ["Fleet", "default_replica_id"]
