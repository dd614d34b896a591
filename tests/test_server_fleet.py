"""The fleet: several ``sidecast server`` replicas (separate processes, their own ports and data folders) on
one real PostgreSQL registry, with one shared media folder (what a bucket is on Kubernetes).

- leases on the real database: one owner at a time, epochs that grow, renewals that never revive a lease
  another replica took, the claim rules that make an outage safe, times by the database's clock;
- three replicas pulling live HLS sources (an ffmpeg loop on loopback, 240p ladder): each stream is claimed
  once, within each replica's ``--max-streams``; one replica is killed with SIGKILL and its streams publish
  again from the others within 15 s, their playlists continuing after an EXT-X-DISCONTINUITY with no
  media-sequence gap; then another replica is frozen (SIGSTOP: it can neither renew nor stop anything) and
  its workers stop themselves before its leases expire. A sampler watching every worker process asserts
  that no stream ever had two live workers at once;
- a player asking a replica that does not run the stream gets it from the shared storage;
- a 30 s registry outage with the default lease: the API answers 503 with a clear message, every stream keeps
  publishing (the peers confirm the outage to each other), and the holders renew their leases when it
  returns; one replica that alone loses the registry (a loopback proxy cut) stops its streams before the
  others take them over.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from devkit.fleet import ADMIN, CuttableProxy, Replica, WorkerSampler
from devkit.postgres import PostgresServer
from sidecast.core.server.registry import Registry, RegistryUnavailable
from sidecast.hls import MediaPlaylist, parse_media
from tests.conftest import free_port, wait_for
from tests.server_helpers import live_hls

LEASE_S = 5.0
DEFAULT_LEASE_S = 10.0  # the server's default (--lease-seconds)
OUTAGE_S = 30.0
PLAYLIST = "video/240p/index.m3u8"
_ATTEMPT = re.compile(r"/e/([^/]+)/r(\d+)/")


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    yield server
    server.close()


def _fresh_db(pg: PostgresServer, name: str) -> str:
    import psycopg

    with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return pg.url.rsplit("/", 1)[0] + "/" + name


# ----------------------------------------------------------------------------- leases on the real database


def test_a_replica_starting_before_its_registry_answers_waits_for_it_and_an_impatient_one_says_why(
        pg: PostgresServer) -> None:
    # A full test run at load 15-20 saw a new PostgreSQL backend take longer than the 3 s connection timeout,
    # and the registry gave up at once (RegistryUnavailable in Registry(url)); a replica started beside its
    # database in a rollout meets the same. The first connection is tried again for start_patience seconds.
    url = _fresh_db(pg, "patience")
    proxy = CuttableProxy("127.0.0.1", pg.port)
    proxy.cut()  # every connection is closed at once: the database "does not answer"
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        Registry(proxy.url_for(url), start_patience=0)
    retries: list[str] = []

    class Retries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            retries.append(record.getMessage())

    handler = Retries(level=logging.WARNING)
    logging.getLogger("sidecast.server.registry").addHandler(handler)
    opened: list[Registry | BaseException] = []

    def open_registry() -> None:
        try:
            opened.append(Registry(proxy.url_for(url), start_patience=120))
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            opened.append(exc)

    try:
        t = threading.Thread(target=open_registry, daemon=True)
        t.start()
        wait_for(lambda: len(retries) >= 1, 60, "the registry to try again")
        assert not opened  # still waiting, not failed
        proxy.restore()
        t.join(timeout=60)
    finally:
        logging.getLogger("sidecast.server.registry").removeHandler(handler)
        proxy.restore()
    assert len(opened) == 1 and isinstance(opened[0], Registry), opened
    reg = opened[0]
    assert reg.shared and reg.leases() == []
    assert "trying again" in retries[0] and "unreachable" in retries[0], retries
    reg.close()
    proxy.close()


def test_a_lease_has_one_owner_its_epoch_grows_and_only_its_holders_peers_take_it_soon_after_it_expires(
        pg: PostgresServer) -> None:
    """The claim rules that make a registry outage safe (fleet.py, "Registry outages"), on the real database
    and its clock: a holder renews its lease while nobody took it, even after it expired; within the outage
    grace an expired lease goes only to a *settled* claimer that the holder would have asked (its recorded
    peers), or to anyone settled when the holder recorded none; after the grace, or once released, to anyone."""
    url = _fresh_db(pg, "leases")
    a, b = Registry(url), Registry(url)
    try:
        assert a.secret == b.secret, "replicas must share the server secret (tokens, SRT passphrases, probes)"
        a.create_stream("cam1", ingest="pull", source="http://127.0.0.1:1/x.m3u8")
        assert b.claimable_streams(10) == ["cam1"]
        assert a.claim_lease("cam1", "r1", 2.0, settled=False) == 1, "a never-claimed stream is free at once"
        assert b.claim_lease("cam1", "r2", 2.0) is None, "a live lease was taken by a second replica"
        assert b.claimable_streams(10, "r2") == []
        assert a.renew_leases("r1", 2.0, {"cam1": 1}) == {"cam1": 1}
        assert b.renew_leases("r2", 2.0, {"cam1": 1}) == {}, "a replica renewed a lease it does not hold"
        wait_for(lambda: a.lease_of("cam1") is None, 10, "the lease to expire (database clock)")
        # expired, nobody took it: its holder renews it (after an outage, holders renew before others claim)
        assert a.renew_leases("r1", 2.0, {"cam1": 1}) == {"cam1": 1}
        a.write_peers("r1", ["r3"])
        assert a.peers_of("r1") == ["r3"]
        wait_for(lambda: a.lease_of("cam1") is None, 10, "the lease to expire again")
        grace = 60.0
        assert b.claim_lease("cam1", "r2", 2.0, settled=True, grace=grace) is None, \
            "a replica the holder does not ask took its lease within the outage grace"
        assert b.claim_lease("cam1", "r3", 2.0, settled=False, grace=grace) is None, \
            "a replica that has not watched the registry for a whole lease took an expired lease"
        assert b.claimable_streams(10, "r3", settled=False, grace=grace) == []
        assert b.claimable_streams(10, "r3", settled=True, grace=grace) == ["cam1"]
        assert b.claim_lease("cam1", "r3", 2.0, settled=True, grace=grace) == 2, "the epoch grows with every claim"
        assert a.renew_leases("r1", 2.0, {"cam1": 1}) == {}, "a lease another replica took was renewed"
        b.release_lease("cam1", "r3", 2)
        assert a.renew_leases("r3", 2.0, {"cam1": 2}) == {}, "a released lease was renewed"
        assert a.claim_lease("cam1", "r1", 2.0, settled=False, grace=grace) == 3, "a released lease is free at once"
        wait_for(lambda: a.lease_of("cam1") is None, 10, "r1's lease to expire")
        assert b.claim_lease("cam1", "r2", 2.0, settled=False, grace=1.0) is None
        wait_for(lambda: b.claim_lease("cam1", "r2", 2.0, settled=False, grace=1.0) is not None, 10,
                 "the lease to be free for anyone once the outage grace has passed (database clock)")
        wait_for(lambda: a.lease_of("cam1") is None, 10, "r2's lease to expire")
        # r2 recorded no peers: it never keeps a stream past its lease, so any settled replica may take it
        assert a.claim_lease("cam1", "r1", 2.0, settled=False, grace=grace) is None
        assert a.claim_lease("cam1", "r1", 2.0, settled=True, grace=grace) == 5
        log = [(lease.owner, lease.epoch) for lease in a.lease_log("cam1")]
        assert log == [("r1", 1), ("r3", 2), ("r1", 3), ("r2", 4), ("r1", 5)]
        a.forget_replica("r1")
        assert a.peers_of("r1") == []
    finally:
        a.close()
        b.close()


def test_rows_of_replicas_not_seen_for_an_hour_expire_and_a_dead_holders_peers_outlive_the_grace(
        pg: PostgresServer, tmp_path: Path) -> None:
    """``replicas`` and ``fleet_peers`` kept a row for every pod that ever ran. A running replica deletes the
    rows of replicas not seen for ``REPLICA_RETENTION_S`` (an hour; never less than a lease plus the outage
    grace plus a minute, so a dead holder's peer list outlives the claim rule that reads it)."""
    from sidecast.core.server.fleet import REPLICA_RETENTION_S, Fleet

    url = _fresh_db(pg, "expiry")
    reg = Registry(url)
    rep = Replica("live", tmp_path / "live")
    try:
        for rid, age in (("gone", REPLICA_RETENTION_S + 60), ("recent", 600.0)):
            reg.heartbeat(rid, media_url="http://127.0.0.1:1/", api_url="http://127.0.0.1:2/", capacity=1)
            reg.write_peers(rid, ["live", "other"])
            reg._db.execute("UPDATE replicas SET seen_at = seen_at - ? WHERE id = ?", (age, rid))  # noqa: SLF001
        assert reg.all_replicas() == ["gone", "recent"]
        rep.start(url, tmp_path / "media", 1, DEFAULT_LEASE_S, ("--warm-workers", "0"))
        wait_for(lambda: "live" in reg.all_replicas() and "gone" not in reg.all_replicas(), 120,
                 "the replica's first pass to expire the row not seen for an hour")
        assert reg.all_replicas() == ["live", "recent"], "a replica seen 10 minutes ago lost its row"
        assert reg.peers_of("gone") == [] and reg.peers_of("recent") == ["live", "other"]
        # the floor: with a long outage grace, a dead holder's peer list stays until its leases are past it
        assert reg.expire_replicas(REPLICA_RETENTION_S) == []
        long = Fleet(reg, None, replica_id="x", lease_seconds=10, max_streams=1,  # type: ignore[arg-type]
                     media_url="", api_url="", outage_grace=7200)
        assert long.retention == 7200 + 10 + 60
        short = Fleet(reg, None, replica_id="y", lease_seconds=10, max_streams=1,  # type: ignore[arg-type]
                      media_url="", api_url="")
        assert short.retention == REPLICA_RETENTION_S
    finally:
        rep.stop()
        reg.close()


# ----------------------------------------------------------------------------- replicas as real processes


def _playlist(storage: Path, sid: str, playlist: str = PLAYLIST) -> MediaPlaylist | None:
    try:
        return parse_media((storage / sid / playlist).read_text())
    except (OSError, ValueError):
        return None


def _attempts(pl: MediaPlaylist) -> list[int]:
    return [int(m.group(2)) if (m := _ATTEMPT.search("/" + s.uri)) else -1 for s in pl.segments]


@dataclass
class Tracker:
    """Every version of a stream's playlist seen in the shared storage: (media sequence, uri, discontinuity)
    of each segment, to check that sequence numbers never change meaning and never skip."""

    storage: Path
    sid: str
    playlist: str = PLAYLIST
    by_seq: dict[int, str] = field(default_factory=dict)
    disc_before: dict[int, bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    last_seq: int = -1
    lock: Any = field(default_factory=threading.RLock)

    def poll(self) -> MediaPlaylist | None:
        with self.lock:
            return self._poll()

    def _poll(self) -> MediaPlaylist | None:
        pl = _playlist(self.storage, self.sid, self.playlist)
        if pl is None:
            return None
        if pl.media_sequence < self.last_seq - 100:
            self.problems.append(f"media sequence went back to {pl.media_sequence}")
        for i, seg in enumerate(pl.segments):
            seq = pl.media_sequence + i
            known = self.by_seq.setdefault(seq, seg.uri)
            if known != seg.uri:
                self.problems.append(f"sequence {seq} named {known} then {seg.uri}")
            self.disc_before[seq] = bool(seg.discontinuity)
        if pl.segments:
            self.last_seq = max(self.last_seq, pl.media_sequence + len(pl.segments) - 1)
        return pl


def _owners(reg: Registry) -> dict[str, str]:
    return {lease.stream_id: lease.owner for lease in reg.leases()}


def test_three_replicas_share_streams_and_fail_over_within_15_s_without_split_brain(
        pg: PostgresServer, clip240: Path, tmp_path: Path) -> None:
    url = _fresh_db(pg, "fleet")
    storage = tmp_path / "shared-media"
    storage.mkdir()
    replicas = [Replica(f"r{i}", tmp_path / f"replica{i}") for i in range(3)]
    n_streams, capacity = 4, 3
    reg = Registry(url)
    try:
        with live_hls(tmp_path, clip240) as source, WorkerSampler({r.name: r.data for r in replicas}) as sampler:
            for r in replicas:
                r.start(url, storage, capacity, LEASE_S)
            wait_for(lambda: all(r.ready() for r in replicas), 90, "three replicas to answer")
            api = httpx.Client(base_url=replicas[0].api, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)
            sids = [f"cam{i}" for i in range(n_streams)]
            for sid in sids:
                r = api.post("/v1/streams", json={"id": sid, "ingest": "pull", "source": source,
                                                  "options": {"ladder": "240p:300k", "window": 6,
                                                              "reconnect_timeout": 30}})
                assert r.status_code == 201, r.text
            # every replica sees every stream (created through replica 0's API)
            for rep in replicas[1:]:
                wait_for(lambda rep=rep: len(httpx.get(rep.api + "/v1/streams", timeout=30, headers={
                    "Authorization": f"Bearer {ADMIN}"}).json()["streams"]) == n_streams, 30,
                    f"{rep.name} to see the streams")
            trackers = {sid: Tracker(storage, sid) for sid in sids}
            stop_polling = threading.Event()

            def poll_all() -> None:  # every version of every playlist, for the whole test
                while not stop_polling.wait(0.1):
                    for t in trackers.values():
                        t.poll()

            poller = threading.Thread(target=poll_all, daemon=True)
            poller.start()

            def all_publishing() -> bool:
                return all((pl := trackers[sid].poll()) is not None and len(pl.segments) >= 2 for sid in sids)

            wait_for(all_publishing, 120, "every stream to publish")
            owners = _owners(reg)
            assert set(owners) == set(sids), f"every stream is claimed once: {owners}"
            per_replica = {r.name: sum(1 for o in owners.values() if o == r.name) for r in replicas}
            assert max(per_replica.values()) <= capacity, f"--max-streams exceeded: {per_replica}"

            # a player asking a replica that does not run the stream is served from the shared storage
            sid0 = sids[0]
            other = next(r for r in replicas if r.name != owners[sid0])
            got = httpx.get(other.media + f"{sid0}/{PLAYLIST}", timeout=30)
            assert got.status_code == 200 and got.text.startswith("#EXTM3U"), got.text[:200]
            status = httpx.get(other.api + f"/v1/streams/{sid0}/status", timeout=30,
                               headers={"Authorization": f"Bearer {ADMIN}"}).json()
            assert status["state"] == "remote" and status["replica"] == owners[sid0], status

            # ---- kill -9 the busiest replica
            victim = max(replicas, key=lambda r: per_replica[r.name])
            moved = sorted(sid for sid, o in owners.items() if o == victim.name)
            before = {sid: max(_attempts(trackers[sid].poll() or MediaPlaylist(target_duration=2))) for sid in moved}
            assert victim.proc is not None
            killed_at = time.monotonic()
            os.kill(victim.proc.pid, signal.SIGKILL)
            victim.proc.wait()
            back: dict[str, float] = {}

            def republished() -> bool:
                for sid in moved:
                    pl = trackers[sid].poll()
                    if sid not in back and pl is not None and max(_attempts(pl)) > before[sid]:
                        back[sid] = time.monotonic() - killed_at
                for sid in sids:
                    trackers[sid].poll()
                return len(back) == len(moved)

            wait_for(republished, 40, f"the streams of {victim.name} ({moved}) to publish again", poll=0.1)
            print(f"\nfailover after kill -9 of {victim.name}: " + ", ".join(f"{s} {t:.1f} s" for s, t in back.items()))
            assert max(back.values()) <= 15.0, f"time to republish after kill -9: {back}"
            new_owners = _owners(reg)
            assert all(new_owners.get(sid) not in (None, victim.name) for sid in moved), new_owners

            # ---- freeze another replica that runs streams (SIGSTOP: it can neither renew nor stop anything):
            # its workers must stop by themselves before its leases expire; the last replica takes over up
            # to its --max-streams, and the stream that does not fit waits for room
            survivors = [r for r in replicas if r is not victim]
            frozen = max(survivors, key=lambda r: sum(1 for o in new_owners.values() if o == r.name))
            last = next(r for r in survivors if r is not frozen)
            frozen_sids = sorted(sid for sid, o in new_owners.items() if o == frozen.name)
            had = sum(1 for o in new_owners.values() if o == last.name)
            assert frozen_sids, new_owners
            assert frozen.proc is not None
            before2 = {sid: max(_attempts(trackers[sid].poll() or MediaPlaylist(target_duration=2)))
                       for sid in sids}
            os.kill(frozen.proc.pid, signal.SIGSTOP)
            frozen_at = time.monotonic()
            back2: dict[str, float] = {}
            expect = min(capacity - had, len(frozen_sids))

            def taken_over() -> bool:
                for sid in frozen_sids:
                    pl = trackers[sid].poll()
                    if sid not in back2 and pl is not None and max(_attempts(pl)) > before2[sid]:
                        back2[sid] = time.monotonic() - frozen_at
                return len(back2) >= expect

            wait_for(taken_over, 40, f"the streams of the frozen {frozen.name} to publish elsewhere", poll=0.1)
            print(f"takeover from the frozen {frozen.name}: " + ", ".join(f"{s} {t:.1f} s" for s, t in back2.items()))
            frozen_workers = [w for ws in sampler.snapshot().values() for w in ws if w.startswith(frozen.name + ":")]
            assert not frozen_workers, f"workers of the frozen replica still run: {frozen_workers}"
            held = _owners(reg)
            assert sum(1 for o in held.values() if o == last.name) == capacity, f"--max-streams not used: {held}"
            assert len(held) == capacity, f"a stream beyond the live replicas' capacity was claimed: {held}"
            # the frozen replica wakes up: its leases are gone (it stops nothing twice), and it takes the
            # stream that waited for room
            os.kill(frozen.proc.pid, signal.SIGCONT)
            wait_for(lambda: len(_owners(reg)) == n_streams, 30, "every stream to be claimed again")
            wait_for(lambda: all(max(_attempts(trackers[sid].poll() or MediaPlaylist(target_duration=2)))
                                 > before2[sid] for sid in frozen_sids), 40, "every frozen stream to publish again")

            # ---- no split brain, and playlists that continue
            stop_polling.set()
            poller.join(5)
            assert sampler.samples > 100
            assert not sampler.overlaps, f"a stream had two live workers at once: {sampler.overlaps[:5]}"
            for sid in sorted(set(moved + frozen_sids)):
                t = trackers[sid]
                t.poll()
                assert not t.problems, (sid, t.problems)
                seqs = sorted(t.by_seq)
                assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"{sid}: a media-sequence gap: {seqs}"
                attempts = {seq: int(m.group(2)) for seq, uri in t.by_seq.items()
                            if (m := _ATTEMPT.search("/" + uri))}
                changes = [seq for seq in seqs[1:] if attempts.get(seq) != attempts.get(seq - 1)]
                assert changes, f"{sid}: no new attempt seen"
                for seq in changes:
                    assert t.disc_before.get(seq), f"{sid}: no EXT-X-DISCONTINUITY before sequence {seq}"
                events = {m.group(1) for uri in t.by_seq.values() if (m := _ATTEMPT.search("/" + uri))}
                assert len(events) == 1, f"{sid}: a failover must continue the event, not start another: {events}"
            for sid in moved:
                assert sampler.seen[sid] >= {victim.name}, sampler.seen
                assert len(sampler.seen[sid]) >= 2, f"{sid} ran on one replica only: {sampler.seen[sid]}"
            api.close()
    finally:
        for r in replicas:
            r.stop()
        reg.close()


def _variant(storage: Path, sid: str) -> str | None:
    """The first variant playlist a stream's master lists (passthrough streams name theirs after the source)."""
    try:
        text = (storage / sid / "master.m3u8").read_text()
    except OSError:
        return None
    return next((line for line in text.splitlines() if line and not line.startswith("#")), None)


@dataclass
class Progress:
    """When each stream's newest media sequence grew (the poller's view of the shared storage)."""

    points: dict[str, list[tuple[float, int]]] = field(default_factory=dict)

    def note(self, sid: str, last_seq: int) -> None:
        pts = self.points.setdefault(sid, [])
        if not pts or last_seq > pts[-1][1]:
            pts.append((time.monotonic(), last_seq))

    def between(self, sid: str, t0: float, t1: float) -> list[tuple[float, int]]:
        return [p for p in self.points.get(sid, []) if t0 <= p[0] <= t1]


def _probe(rep: Replica, asker: str, secret: bytes) -> str | int:
    """Ask ``rep`` whether it reaches the registry, as a peer would: its signed answer, or the HTTP status.
    (The suite's 30 s HTTP timeout here and in ``_ready``: they check answers, not speed, and a replica's API
    on a box at load 30 can take more than httpx's 5 s; the outage's timing is asserted on the streams.)"""
    from sidecast.core.server.fleet import PROBE_PATH
    from sidecast.core.server.keys import fleet_signature, fleet_signature_ok

    nonce = os.urandom(8).hex()
    r = httpx.post(rep.api + PROBE_PATH, timeout=30, json={
        "from": asker, "to": rep.name, "nonce": nonce,
        "sig": fleet_signature(secret, "probe", asker, rep.name, nonce)})
    if r.status_code != 200:
        return r.status_code
    doc = r.json()
    assert doc["replica"] == rep.name
    assert fleet_signature_ok(secret, doc["sig"], "answer", rep.name, asker, nonce, doc["registry"]), doc
    return str(doc["registry"])


def _ready(rep: Replica) -> tuple[int, str]:
    r = httpx.get(rep.api + "/readyz", timeout=30)
    return r.status_code, str(r.json().get("status"))


def test_a_30_s_registry_outage_keeps_every_stream_publishing_and_a_replica_cut_off_alone_hands_its_streams_over(
        clip240: Path, tmp_path: Path) -> None:
    """Three replicas with the default lease (10 s), each reaching the registry through its own loopback proxy.

    1. The registry server stops for 30 s: API writes answer 503 with a clear message; every replica asks its
       peers, all confirm the registry is down for them too, so every stream keeps publishing (its playlist
       grows all along, the same attempt, no discontinuity); when the registry returns the holders renew the
       leases they had (same owner, same epoch: nothing moved) and writes work again.
    2. One replica alone loses the registry (its proxy is cut): its peers answer that they reach it, so it
       stops its streams before its leases expire and the others take them over within 15 s.

    A sampler watching every worker process asserts that no stream ever had two live workers at once, and
    every version of every playlist is checked: sequence numbers never skip or change meaning."""
    storage = tmp_path / "shared-media"
    storage.mkdir()
    sids = ["cam0", "cam1", "cam2"]
    with PostgresServer() as pgo, live_hls(tmp_path, clip240) as source:
        proxies = [CuttableProxy("127.0.0.1", pgo.port) for _ in range(3)]
        replicas = [Replica(f"o{i}", tmp_path / f"o{i}") for i in range(3)]
        trackers: dict[str, Tracker] = {}
        progress = Progress()
        stop_polling = threading.Event()
        try:
            for rep, proxy in zip(replicas, proxies, strict=True):
                rep.start(proxy.url_for(pgo.url), storage, 2, DEFAULT_LEASE_S)
            wait_for(lambda: all(r.ready() for r in replicas), 90, "three replicas to answer")
            api = replicas[0].client()
            for sid in sids:
                r = api.post("/v1/streams", json={"id": sid, "ingest": "pull", "source": source, "options": {
                    "passthrough": True, "window": 6, "reconnect_timeout": 60}})
                assert r.status_code == 201, r.text
            wait_for(lambda: all(_variant(storage, sid) for sid in sids), 90, "every stream's master playlist")
            trackers = {sid: Tracker(storage, sid, playlist=str(_variant(storage, sid))) for sid in sids}

            def poll_all() -> None:  # every version of every playlist, for the whole test
                while not stop_polling.wait(0.1):
                    for sid, t in trackers.items():
                        if t.poll() is not None and t.last_seq >= 0:
                            progress.note(sid, t.last_seq)

            poller = threading.Thread(target=poll_all, daemon=True)
            poller.start()
            wait_for(lambda: all(len(progress.points.get(sid, [])) >= 2 for sid in sids), 90, "every stream to publish")
            reg = Registry(pgo.url)
            held = {lease.stream_id: (lease.owner, lease.epoch) for lease in reg.leases()}
            secret = reg.secret
            reg.close()
            assert set(held) == set(sids), held
            assert _probe(replicas[1], "o0", secret) == "up"
            assert _probe(replicas[1], "o0", b"not the fleet's secret" * 2) == 403, "a forged probe was answered"

            with WorkerSampler({r.name: r.data for r in replicas}) as sampler:
                # ---- 1. the registry server stops for 30 s
                attempts_before = {sid: set(_attempts(trackers[sid].poll() or MediaPlaylist(target_duration=2)))
                                   for sid in sids}
                seq_before = {sid: trackers[sid].last_seq for sid in sids}
                pgo.stop()
                down_at = time.monotonic()
                r = api.post("/v1/streams", json={"id": "late", "ingest": "push", "options": {"passthrough": True}})
                assert r.status_code == 503, r.text
                detail = r.json()["detail"]
                assert "registry" in detail and "unreachable" in detail and "retry" in detail, detail
                assert r.headers.get("retry-after")
                wait_for(lambda: _probe(replicas[1], "o0", secret) == "down", 10, "o1 to answer that it is cut off")
                # the outage is confirmed by every peer: the replicas stay ready (degraded), so the Services
                # keep their endpoints and players keep playing
                wait_for(lambda: _ready(replicas[2]) == (200, "degraded"), 10, "o2 to report a confirmed outage")
                wait_for(lambda: time.monotonic() - down_at >= OUTAGE_S, OUTAGE_S + 5, "the 30 s outage to pass")
                up_at = time.monotonic()
                running = sampler.snapshot()
                pgo.start()
                for sid in sids:
                    assert running.get(sid), f"{sid} stopped during the outage: {running}"
                    pts = progress.between(sid, down_at, up_at)
                    assert pts and pts[-1][1] - seq_before[sid] >= OUTAGE_S / 2 - 4, \
                        f"{sid} did not keep publishing through the outage: {seq_before[sid]} -> {pts}"
                    stamps = [down_at] + [t for t, _ in pts] + [up_at]
                    longest = max(b - a for a, b in itertools.pairwise(stamps))
                    assert longest < 8, f"{sid}: no new segment for {longest:.1f} s during the outage"
                wait_for(lambda: api.post("/v1/streams", json={"id": "late", "ingest": "push",
                                                               "options": {"passthrough": True}}).status_code == 201,
                         30, "the API to take writes again")
                reg = Registry(pgo.url)

                def renewed() -> bool:
                    return {lease.stream_id: (lease.owner, lease.epoch) for lease in reg.leases()} == held

                wait_for(renewed, 20, f"the holders to renew their leases (same owner, same epoch: {held})")
                print(f"\nregistry outage of {up_at - down_at:.1f} s: every stream kept publishing "
                      + ", ".join(f"{sid} +{trackers[sid].last_seq - seq_before[sid]} segments" for sid in sids))
                for sid in sids:
                    now_attempts = set(_attempts(trackers[sid].poll() or MediaPlaylist(target_duration=2)))
                    assert now_attempts <= attempts_before[sid], f"{sid} restarted: {attempts_before[sid]} -> {now_attempts}"

                # ---- 2. one replica alone loses the registry
                owners = {lease.stream_id: lease.owner for lease in reg.leases()}
                victim = max(replicas, key=lambda rep: sum(1 for o in owners.values() if o == rep.name))
                moved = sorted(sid for sid, o in owners.items() if o == victim.name)
                before = {sid: max(_attempts(trackers[sid].poll() or MediaPlaylist(target_duration=2))) for sid in moved}
                proxies[replicas.index(victim)].cut()
                cut_at, cut_wall = time.monotonic(), time.time()
                back: dict[str, float] = {}

                def taken_over() -> bool:
                    for sid in moved:
                        pl = trackers[sid].poll()
                        if sid not in back and pl is not None and max(_attempts(pl)) > before[sid]:
                            back[sid] = time.monotonic() - cut_at
                    return len(back) == len(moved)

                # cut off alone: not ready (its peers reach the registry and take the traffic)
                wait_for(lambda: _ready(victim)[0] == 503, 10, f"{victim.name} to report that it is not ready")
                wait_for(taken_over, 60, f"the streams of {victim.name}, cut off alone, to publish elsewhere", poll=0.1)
                # claimed as soon as the lease expired (the peers were settled, and listed by the victim), by the
                # registry's clock (same host here); publishing again also takes a worker start
                claimed = {sid: reg.lease_log(sid)[-1].acquired_at - cut_wall for sid in moved}
                print(f"{victim.name} cut off from the registry alone: its streams were claimed after "
                      + ", ".join(f"{s} {t:.1f} s" for s, t in claimed.items()) + " and published again after "
                      + ", ".join(f"{s} {t:.1f} s" for s, t in back.items()))
                assert max(claimed.values()) <= DEFAULT_LEASE_S + 5, claimed
                left = [w for ws in sampler.snapshot().values() for w in ws if w.startswith(victim.name + ":")]
                assert not left, f"workers of the cut-off replica still run: {left}"
                new_owners = {lease.stream_id: lease.owner for lease in reg.leases()}
                assert all(new_owners.get(sid) not in (None, victim.name) for sid in moved), new_owners
                log_owners = {sid: [lease.owner for lease in reg.lease_log(sid)] for sid in moved}
                reg.close()
            stop_polling.set()
            poller.join(5)
            assert sampler.samples > 100
            assert not sampler.overlaps, f"a stream had two live workers at once: {sampler.overlaps[:5]}"
            for sid in sids:
                t = trackers[sid]
                t.poll()
                assert not t.problems, (sid, t.problems)
                seqs = sorted(t.by_seq)
                assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"{sid}: a media-sequence gap: {seqs}"
                attempts = {seq: int(m.group(2)) for seq, uri in t.by_seq.items() if (m := _ATTEMPT.search("/" + uri))}
                for seq in seqs[1:]:
                    if attempts.get(seq) != attempts.get(seq - 1):
                        assert t.disc_before.get(seq), f"{sid}: no EXT-X-DISCONTINUITY before sequence {seq}"
            for sid in moved:
                assert log_owners[sid][-1] != victim.name and victim.name in log_owners[sid], log_owners
            api.close()
        finally:
            stop_polling.set()
            for rep in replicas:
                rep.stop()
            for proxy in proxies:
                proxy.close()


def test_a_push_stream_runs_where_its_publisher_lands_and_other_replicas_refuse_a_second_one(
        pg: PostgresServer, clip240: Path, tmp_path: Path) -> None:
    url = _fresh_db(pg, "push")
    storage = tmp_path / "shared-media"
    storage.mkdir()
    a = Replica("pa", tmp_path / "pa", rtmp_port=free_port())
    b = Replica("pb", tmp_path / "pb", rtmp_port=free_port())
    publishers: list[subprocess.Popen[bytes]] = []
    try:
        for r in (a, b):
            r.start(url, storage, 2, LEASE_S)
        wait_for(lambda: a.ready() and b.ready(), 60, "two replicas")
        with a.client() as api_a, b.client() as api_b:
            r = api_a.post("/v1/streams", json={"id": "studio", "ingest": "push",
                                                "options": {"ladder": "240p:300k", "reconnect_timeout": 3}})
            assert r.status_code == 201, r.text
            key = r.json()["key"]["key"]
            wait_for(lambda: api_b.get("/v1/streams/studio").status_code == 200, 20, "replica b to see the stream")

            def publish(rep: Replica) -> subprocess.Popen[bytes]:
                proc = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
                                         "-stream_loop", "-1", "-i", str(clip240), "-c", "copy", "-f", "flv",
                                         f"rtmp://127.0.0.1:{rep.rtmp_port}/live/{key}"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                publishers.append(proc)
                return proc

            publish(b)  # the load balancer sent this publisher to replica b
            wait_for(lambda: _playlist(storage, "studio") is not None and len(_playlist(storage, "studio").segments) >= 1,
                     60, "the push stream to publish")
            assert _owners(reg := Registry(url)) == {"studio": "pb"}
            wait_for(lambda: api_b.get("/v1/streams/studio/status").json()["state"] == "live", 10, "live on b")
            st = api_a.get("/v1/streams/studio/status").json()
            assert st["state"] == "remote" and st["replica"] == "pb", st
            # a second publisher reaching the other replica is refused at the protocol step
            second = publish(a)
            assert second.wait(30) != 0, "a second publisher was accepted on another replica"
            assert _owners(reg) == {"studio": "pb"}
            # live controls go to the owner: the other replica names it
            ctl = api_a.post("/v1/streams/studio/breaks", json={"in": 4, "duration": 10})
            assert ctl.status_code == 409 and "pb" in ctl.json()["detail"], ctl.text
            reg.close()
    finally:
        for p in publishers:
            if p.poll() is None:
                p.kill()
                p.wait()
        for r in (a, b):
            r.stop()


def test_the_outage_settings_are_checked_with_a_clear_error() -> None:
    from sidecast.contract.errors import ConfigError
    from sidecast.core.server.config import ServerConfig

    cfg = ServerConfig.from_mapping({})
    assert (cfg.outage_grace, cfg.peer_url) == (120.0, "")
    assert ServerConfig.from_mapping({"outage-grace": 0, "peer-url": "http://10.0.0.7:8800/"}).outage_grace == 0
    for bad in (-1, 86401, float("nan")):
        with pytest.raises(ConfigError, match="outage_grace must be between 0 and 86400"):
            ServerConfig.from_mapping({"outage_grace": bad})
