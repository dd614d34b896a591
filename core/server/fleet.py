"""The fleet: several ``sidecast server`` replicas sharing one registry (PostgreSQL) place streams across
themselves with leases, and take over the streams of a replica that dies.

Every replica runs this loop on its own thread, every ``lease_seconds / 5``, and also right after the
soonest moment another replica's lease (or heartbeat) expires, by the registry's clock: a dead replica's
streams are claimed within a few tens of milliseconds of its lease's end instead of up to a pass later
(the registry still decides every claim, so an early pass can take nothing early):

1. **Heartbeat**: its row in ``replicas`` (URLs, capacity); replicas seen within one lease count as alive.
2. **Renew** every lease it holds (``expires_at = db now + lease``) while nobody else took it (same owner,
   same epoch), even if it expired meanwhile (after an outage, see below). A lease another replica took is
   lost and **fenced**: its worker is killed at once (SIGKILL of its process group), without closing the
   event (the new owner continues it).
3. **Fence by time**: a renewal sent at (monotonic) ``t`` keeps every lease valid until at least ``t + lease``
   by the database's clock, so the replica's leases are surely its own until ``t + lease - margin``. Each
   worker gets that deadline on its command line and kills itself when it passes without an extension
   (worker.py): a replica that is frozen (SIGSTOP, a stuck event loop) or cut off from the registry stops
   publishing before anyone else may claim its streams. That is the split-brain guarantee; the epoch (the
   claim counter) is the fencing token, recorded with each attempt.
4. **Sync** the streams' rows (created, changed or deleted through any replica's API).
5. **Claim** enabled pull streams whose lease is free for it (below), up to the replica's ``max_streams`` and its
   fair share (streams ÷ live replicas, rounded up), oldest first; each claimed stream is **adopted**:
   its playlist state is read back from the shared storage and the stream's open event continues with a
   new attempt (after an EXT-X-DISCONTINUITY, sequence numbers continuing).
6. **Release** what should not run here any more (a stopped stream, a push stream whose publisher left).
7. **Expire** (once a minute) the rows of replicas not seen for ``REPLICA_RETENTION_S`` (an hour; never less
   than a lease plus the outage grace plus a minute, so a dead holder's peer list outlives the claim rule
   that reads it): ``replicas`` and ``fleet_peers`` would otherwise keep every pod that ever ran.

Push streams run where the load balancer delivers the publisher: the replica claims the stream's lease when
the publisher is accepted (a second replica refuses that stream's publishers while the lease is held).

**Registry outages.** A replica that cannot reach the registry cannot tell an outage of the registry (every
replica is cut off: nobody can claim anything, so running streams may go on) from being cut off alone (the
others will claim its streams when its leases expire: it must stop first). It asks its peers, over their
control API, signed with the shared server secret (``PROBE_PATH``; API keys live in the registry, which is
down). Three rules make the answer safe:

- **"down" is a promise.** A peer answers "down" only while its own last pass failed, and then claims no
  lease that expired for one lease period from that answer (``no_claim_before``), and none until it has
  watched the registry without a break for one whole lease after reconnecting (``settled``).
- **Everyone asked, all confirm.** The asker keeps its streams past its lease only while *every* peer it
  would ask has answered "down", each answer covering one lease minus the margin from when its probe was
  sent (a slow answer covers less, never more; monotonic clocks only). A peer that does not answer may be
  cut off from us only and still reach the registry: no extension. So a replica cut off alone, or whose
  peers still reach the registry, stops at its lease as before; a replica that dies during the outage ends
  its peers' extension one lease after its last answer. Never past ``outage_grace`` after the lease.
- **Only the asked may claim soon.** The peers a replica would ask are written to the registry
  (``fleet_peers``; while a write is in doubt it asks both lists). A lease that expired less than
  ``outage_grace`` ago (by the registry's clock) may be claimed only by a settled replica that is its holder
  or one of the holder's recorded peers, or by any settled replica if the holder recorded none (it never
  extends then). A replica that joined while the others were cut off was never asked: it waits out the
  grace. Released leases and never-claimed streams are free at once, as before.

When the registry returns the holders renew their expired leases within a pass (same owner, same epoch),
one lease before any other replica may claim them: nothing moves. Streams of a replica that died during the
outage move one lease (the hold-off) plus a pass after the registry returns. Why peers and not a longer
lease, and the figures: docs/kubernetes.md ("Registry outages").

Why a worker pool with leases and not an operator: see docs/design.md ("Scaling out").
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket
import sqlite3
import threading
import time
import urllib.request
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any

from . import keys as K
from .registry import Registry, RegistryError

if TYPE_CHECKING:
    from .supervisor import Supervisor

log = logging.getLogger("sidecast.server.fleet")

PROBE_PATH = "/internal/fleet/probe"
REPLICA_RETENTION_S = 3600.0
"""Rows of a replica not seen for this long are deleted (step 7 of the module docstring)."""
EXPIRE_EVERY_S = 60.0
WAKE_AFTER_S = 0.05
"""A pass for an expiry runs this long after it (by the registry's clock, measured at the last pass)."""


def _registry_failure(exc: BaseException) -> bool:
    """An error of the registry's database (unreachable, a statement cut short), not a bug of ours."""
    return isinstance(exc, (RegistryError, sqlite3.Error, OSError)) or type(exc).__module__.startswith("psycopg")


def default_replica_id() -> str:
    """The host name (a pod's name on Kubernetes) and a few random characters: a restarted replica is a new
    one, so leases of its previous life are never mistaken for its own."""
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:4]}"


class Fleet:
    def __init__(self, registry: Registry, supervisor: Supervisor, *, replica_id: str, lease_seconds: float,
                 max_streams: int, media_url: str, api_url: str, outage_grace: float = 120.0) -> None:
        self.registry = registry
        self.supervisor = supervisor
        self.replica = replica_id
        self.ttl = float(lease_seconds)
        self.tick = max(0.2, self.ttl / 5)
        # the margin covers the time a deadline takes to reach a worker and the worker's kill
        self.margin = min(max(1.0, self.ttl / 4), self.ttl / 2)
        self.grace = max(0.0, float(outage_grace))
        self.max_streams = max_streams
        self.media_url = media_url
        self.api_url = api_url
        self.held: dict[str, int] = {}            # stream -> epoch of the lease this replica holds
        self.owners: dict[str, str] = {}          # stream -> the replica holding it (from the last pass)
        self.replica_urls: dict[str, tuple[str, str]] = {}  # replica -> (media URL, API URL)
        self.valid_until = 0.0                    # monotonic: our leases are surely ours until then
        self.renewed_at = 0.0                     # monotonic: when the last renewal that succeeded was sent
        self.registry_error: str | None = None
        self.last_pass = 0.0
        # registry outages (see "Registry outages" in the module docstring)
        self.connected_since: float | None = None  # monotonic: start of the current unbroken run of passes
        self.no_claim_before = 0.0                # monotonic: we told a peer "down": no claim before this
        self.peers_written: frozenset[str] = frozenset()  # our peer list as the registry has it (last write)
        self.peers_ask: frozenset[str] = frozenset()      # every list the registry may hold for us: we ask all
        self.peer_api: dict[str, str] = {}        # peer -> API URL (kept while the peer is in peers_ask)
        self.peer_down: dict[str, float] = {}     # peer -> when we sent the probe it answered "down" to
        self.outage_until = 0.0                   # monotonic: how long the peers let us keep our streams
        self._claims_in_flight = 0                # push claims sent from the supervisor's thread, not answered yet
        self.wake_at: float | None = None         # monotonic: a pass just after another replica's lease expires
        self.next_expire = 0.0                    # monotonic: when dead replicas' rows are next expired
        self.retention = max(REPLICA_RETENTION_S, self.ttl + self.grace + 60.0)
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
            due = started + self.tick
            if self.wake_at is not None:
                due = min(due, self.wake_at)
            self._stop.wait(max(0.05, due - time.monotonic()))

    # ------------------------------------------------------------------ one pass

    def step(self) -> None:
        sent = time.monotonic()
        try:
            self._pass(sent)
        except Exception as exc:  # a registry outage (RegistryUnavailable, a driver error mid-statement), or a bug
            if not _registry_failure(exc):
                log.exception("fleet pass failed")
            self._registry_down(exc)

    def _pass(self, sent: float) -> None:
        self.wake_at = None
        self.registry.heartbeat(self.replica, media_url=self.media_url, api_url=self.api_url,
                                capacity=self.max_streams)
        with self._lock:
            held = dict(self.held)
        renewed = self.registry.renew_leases(self.replica, self.ttl, held)
        with self._lock:
            if self.connected_since is None:
                self.connected_since = time.monotonic()
            # a push stream claimed after the snapshot above is not lost: only what was asked for and refused
            lost = [sid for sid, epoch in held.items() if renewed.get(sid) != epoch and self.held.get(sid) == epoch]
            for sid in lost:
                self.held.pop(sid, None)
        if self.registry_error is not None:
            log.warning("the registry answers again (claims of expired leases wait %.0f s: holders renew first)",
                        self.ttl)
            self.registry_error = None
        self.renewed_at = sent
        self.valid_until = sent + self.ttl - self.margin
        self.peer_down.clear()
        self.outage_until = 0.0
        for sid in lost:
            log.error("lease of %s lost: its worker is stopped here", sid, extra={"stream": sid})
            self.supervisor.post(partial(self.supervisor.fence, sid, "the lease was lost"))
        valid_until = self.valid_until
        self.supervisor.post(partial(self.supervisor.extend_leases, valid_until))
        self._sync_streams()
        self._release_idle()
        self._claim()
        leases = self.registry.leases()
        self.owners = {lease.stream_id: lease.owner for lease in leases}
        live = self.registry.live_replicas(self.ttl)
        db_now, mono = self.registry.db_now(), time.monotonic()
        self.replica_urls = {r.id: (r.media_url, r.api_url) for r in live}
        self._record_peers({r.id: r.api_url for r in live if r.id != self.replica})
        # the next pass comes just after the soonest end of another replica's lease or heartbeat (the fair
        # share grows when a replica leaves the live ones): a dead replica's streams are claimed at once
        ends = [lease.expires_at for lease in leases if lease.owner != self.replica]
        ends += [r.seen_at + self.ttl for r in live if r.id != self.replica]
        if ends:
            self.wake_at = mono + max(0.0, min(ends) - db_now) + WAKE_AFTER_S
        if mono >= self.next_expire:
            self.next_expire = mono + EXPIRE_EVERY_S
            for rid in self.registry.expire_replicas(self.retention):
                log.info("rows of replica %s expired (not seen for %.0f s)", rid, self.retention)
        self.last_pass = time.monotonic()

    def settled(self) -> bool:
        """True when this replica may claim a lease that expired recently: it has watched the registry without
        a break for a whole lease (every holder still alive has renewed by then), and no peer was told
        "the registry is down for me too" within the last lease."""
        with self._lock:
            since = self.connected_since
            now = time.monotonic()
            return since is not None and now - since >= self.ttl and now >= self.no_claim_before

    def _record_peers(self, live: dict[str, str]) -> None:
        """Write the peers this replica would ask during an outage where the others read it: a replica that is
        not on the list may not take our recently expired leases (it would not be asked)."""
        peers = frozenset(live)
        for rid, url in live.items():
            self.peer_api[rid] = url
        if peers != self.peers_written:
            self.peers_ask = self.peers_written | peers  # while the write is in doubt, the registry holds either
            self.registry.write_peers(self.replica, sorted(peers))
            self.peers_written = peers
            self.peers_ask = peers
        for rid in set(self.peer_api) - self.peers_ask:
            del self.peer_api[rid]

    def _registry_down(self, exc: BaseException) -> None:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if self.registry_error is None:
            log.error("the registry is unreachable: %s", text)
        self.registry_error = text
        with self._lock:
            self.connected_since = None
        if self.peers_ask:
            self._probe_peers()
        extension = self._outage_extension()
        now = time.monotonic()
        confirmed = extension > now
        if confirmed and not self.outage_until:
            log.warning("registry outage confirmed: %d peer(s) cannot reach it either: running streams keep "
                        "publishing (for %.0f s at most), and this replica stays ready", len(self.peers_ask),
                        self.renewed_at + self.ttl + self.grace - now)
        elif not confirmed and self.outage_until:
            log.error("registry outage: the peers no longer confirm that it is down for all of them: streams stop "
                      "at their lease")
        self.outage_until = extension if confirmed else 0.0
        if not self.held:
            return
        if now >= max(self.valid_until, extension):
            # nobody can tell whether another replica holds our streams now: stop them (fencing wins)
            with self._lock:
                gone, self.held = list(self.held), {}
            for sid in gone:
                self.supervisor.post(partial(self.supervisor.fence, sid,
                                             "the registry is unreachable and the lease ran out"))
        elif extension > self.valid_until:
            self.supervisor.post(partial(self.supervisor.extend_leases, extension))

    def outage_confirmed(self) -> bool:
        """The registry is unreachable for this replica and every peer confirms it is for them too: this
        replica serves players and keeps its streams (readiness stays green: failing every replica at once
        would leave the Services with no endpoint at all)."""
        return self.registry_error is not None and self.outage_until > time.monotonic()

    def _outage_extension(self) -> float:
        """How long the peers' answers let us keep our streams past our own lease (0: not at all). Every peer
        the registry may list for us must have answered "down" (a silent one may be cut off from us only, and
        reach the registry); each answer covers one lease from when its probe was sent, because a peer that
        said "down" claims nothing expired for a lease after it. Never past ``grace`` after our lease."""
        if self.grace <= 0 or not self.peers_written or not self.peers_ask:
            return 0.0
        if any(p not in self.peer_down for p in self.peers_ask):
            return 0.0
        oldest = min(self.peer_down[p] for p in self.peers_ask)
        return min(oldest + self.ttl - self.margin, self.renewed_at + self.ttl + self.grace - self.margin)

    def _probe_peers(self) -> None:
        """Ask every peer, at once, whether it reaches the registry (signed, over their control API)."""
        timeout = min(2.0, self.tick)
        threads = [threading.Thread(target=self._probe, args=(peer, self.peer_api.get(peer, ""), timeout),
                                    daemon=True) for peer in sorted(self.peers_ask)]
        for t in threads:
            t.start()
        end = time.monotonic() + timeout + 0.5
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))

    def _probe(self, peer: str, api_url: str, timeout: float) -> None:
        if not api_url:
            return
        sent = time.monotonic()
        nonce = uuid.uuid4().hex
        secret = self.registry.secret
        body = json.dumps({"from": self.replica, "to": peer, "nonce": nonce,
                           "sig": K.fleet_signature(secret, "probe", self.replica, peer, nonce)}).encode()
        req = urllib.request.Request(api_url.rstrip("/") + PROBE_PATH, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (a peer's URL from the registry)
                doc = json.loads(resp.read(4096))
        except (OSError, ValueError):
            return
        state = str(doc.get("registry", ""))
        if doc.get("replica") != peer or not K.fleet_signature_ok(secret, str(doc.get("sig", "")), "answer", peer,
                                                                  self.replica, nonce, state):
            return
        if state == "down":
            self.peer_down[peer] = sent

    def answer_probe(self, asker: str, nonce: str) -> dict[str, str]:
        """A peer asks whether we reach the registry (it cannot). "down" is a promise: we claim no lease
        that expired for a whole lease from now, so the asker may keep its streams that long."""
        with self._lock:
            if self.connected_since is None and self._claims_in_flight == 0:
                self.no_claim_before = max(self.no_claim_before, time.monotonic() + self.ttl)
                state = "down"
            else:
                state = "up"
        return {"replica": self.replica, "registry": state,
                "sig": K.fleet_signature(self.registry.secret, "answer", self.replica, asker, nonce, state)}

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
        settled = self.settled()
        live = self.registry.live_replicas(self.ttl)
        total = self.registry.count_pull_streams()
        if total == 0:
            return
        share = math.ceil(total / max(1, len(live)))
        room = min(self.max_streams if self.max_streams > 0 else total, share) - self.pull_held()
        if room <= 0:
            return
        for sid in self.registry.claimable_streams(room * 2 + 2, self.replica, settled=settled, grace=self.grace):
            if room <= 0:
                break
            epoch = self.registry.claim_lease(sid, self.replica, self.ttl, settled=settled, grace=self.grace)
            if epoch is None:
                continue  # another replica was faster
            with self._lock:
                self.held[sid] = epoch
            room -= 1
            log.info("claimed %s (epoch %d)", sid, epoch, extra={"stream": sid, "epoch": epoch, "t": round(time.time(), 3)})
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
        settled = self.settled()
        with self._lock:  # while this claim is on its way, no peer is told "down" (a promise to claim nothing)
            self._claims_in_flight += 1
        try:
            epoch = self.registry.claim_lease(stream_id, self.replica, self.ttl, settled=settled, grace=self.grace)
        finally:
            with self._lock:
                self._claims_in_flight -= 1
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
        now = time.monotonic()
        return {"replica": self.replica, "lease_seconds": self.ttl, "max_streams": self.max_streams,
                "held": sorted(self.held), "registry_error": self.registry_error,
                "outage_grace_seconds": self.grace, "settled": self.settled(), "peers": sorted(self.peers_ask),
                "outage_extension_left": round(self.outage_until - now, 1) if self.outage_until > now else None,
                "replicas": [{"id": rid, "media_url": urls[0], "api_url": urls[1]}
                             for rid, urls in sorted(self.replica_urls.items())]}


__all__ = ["PROBE_PATH", "Fleet", "default_replica_id"]
