"""Failover of a `sidecast server` fleet: three replicas (real processes) on one real PostgreSQL registry and
one shared media folder, N pull streams of a live HLS source on loopback; one replica is killed with
SIGKILL and the time until each of its streams publishes a new segment from another replica is measured
(kill to the first segment of the new attempt appearing in the stream's playlist in the shared storage).

Baseline in the same run: the lease itself (``--lease-seconds``): a takeover cannot start before the dead
replica's lease expires, so ``failover - lease`` is what the fleet adds (detecting the expiry, starting
the worker, the first segment).

Then the registry outages (``--outage``, default 30 s, with the server's default lease unless ``--lease``):

1. the PostgreSQL server stops for that long: how many streams kept publishing all along (their newest
   media sequence grew with no pause longer than three segments, the same attempt, no restart), what an
   API write answered, and how long after the registry returned the holders had renewed every lease
   (same owner, same epoch) and the API took writes again;
2. the same outage, and one replica is killed with SIGKILL 10 s into it (``--no-kill-in-outage`` skips
   this): when its peers' confirmations run out, and how long after the registry returned every stream
   published again (the dead replica's streams wait for the hold-off: one lease).

    flock /tmp/sidecast-cpu.lock .venv/bin/python bench/fleet.py [--streams 30] [--lease 10] [--rounds 1]
        [--passthrough] [--outage 30] [--no-kill-in-outage] [--json] [--warm-workers N] [--code DIR]

Each round prints the **timeline** of every moved stream (seconds after the kill, from the replicas' JSON
logs): ``claim`` (the lease taken), ``adopt`` (its state read back), ``spawn`` (its worker started: ``w``
a warm one, ``c`` a cold interpreter), ``imp`` (imports done), ``built`` (the pipeline built), ``frame``
(the first source frame), ``seg`` (the first segment published) and ``seen`` (in the shared playlist).
``--warm-workers 0`` turns the warm pool off; ``--code DIR`` runs the replicas from another checkout's
sources (a folder of links ``DIR/sidecast/core -> .../core``... put first on their PYTHONPATH): the
baseline of main's code in the same session.

Streams are transcoded to one 240p rung unless ``--passthrough`` (H.264 copied, much cheaper). Record the
load average beside the figures (the script prints it).
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit.fleet import Replica, WorkerSampler  # noqa: E402
from devkit.postgres import PostgresServer  # noqa: E402
from sidecast.core.serve import start_server  # noqa: E402
from sidecast.core.server.registry import Registry, RegistryError  # noqa: E402
from sidecast.hls import parse_media  # noqa: E402

PLAYLIST = "video/240p/index.m3u8"
_ATTEMPT = re.compile(r"/(e/[^/]+/r\d+)/")


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if cond():
                return
        except RegistryError:  # our own connection to the registry, broken by an outage: reconnects next call
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def _attempts(storage: Path, sid: str, playlist: str) -> set[str]:
    """The attempt prefixes (e/<event>/r<n>) of the segments in a stream's playlist."""
    try:
        pl = parse_media((storage / sid / playlist).read_text())
    except (OSError, ValueError):
        return set()
    return {m.group(1) for s in pl.segments if (m := _ATTEMPT.search("/" + s.uri))}


def _newest(storage: Path, sid: str, playlist: str) -> int:
    """The media sequence number of the newest segment in a stream's playlist (-1: none yet)."""
    try:
        pl = parse_media((storage / sid / playlist).read_text())
    except (OSError, ValueError):
        return -1
    return pl.media_sequence + len(pl.segments) - 1 if pl.segments else -1


class Progress:
    """Every 0.2 s, every stream's newest media sequence and attempts (when each grew), in a thread."""

    def __init__(self, storage: Path, sids: list[str], playlist: str) -> None:
        self.storage, self.sids, self.playlist = storage, sids, playlist
        self.points: dict[str, list[tuple[float, int]]] = {s: [] for s in sids}
        self.attempts: dict[str, list[tuple[float, str]]] = {s: [] for s in sids}
        self._stop = threading.Event()
        self.polled = threading.Event()  # one full pass done: what ran before is known
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._poll()
            self.polled.set()

    def _poll(self) -> None:
        for s in self.sids:
            now = time.monotonic()
            seq = _newest(self.storage, s, self.playlist)
            if seq >= 0 and (not self.points[s] or seq > self.points[s][-1][1]):
                self.points[s].append((now, seq))
            known = {a for _, a in self.attempts[s]}
            for a in sorted(_attempts(self.storage, s, self.playlist) - known):
                self.attempts[s].append((now, a))

    def longest_pause(self, sid: str, t0: float, t1: float) -> float:
        stamps = [t0] + [t for t, _ in self.points[sid] if t0 <= t <= t1] + [t1]
        return max(b - a for a, b in zip(stamps, stamps[1:], strict=False))

    def new_attempts(self, sid: str, since: float) -> list[tuple[float, str]]:
        return [(t, a) for t, a in self.attempts[sid] if t >= since]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=30)
    ap.add_argument("--lease", type=float, default=10.0, help="--lease-seconds (default: the server's, 10)")
    ap.add_argument("--rounds", type=int, default=1, help="kill -9 this many times (a new replica replaces each)")
    ap.add_argument("--outage", type=float, default=30.0, help="stop the registry this long (0: no outage)")
    ap.add_argument("--no-kill-in-outage", action="store_true", help="skip the outage with a replica killed in it")
    ap.add_argument("--passthrough", action="store_true")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--warm-workers", type=int, default=None, help="the replicas' --warm-workers (default: theirs)")
    ap.add_argument("--code", type=Path, default=None,
                    help="run the replicas from this tree (DIR/sidecast/<part> links to another checkout)")
    args = ap.parse_args()
    extra: tuple[str, ...] = ()
    if args.warm_workers is not None:
        extra += ("--warm-workers", str(args.warm_workers))
    if args.code is not None:
        os.environ["PYTHONPATH"] = str(args.code.resolve())  # the replicas and their workers import from there

    tmp = Path(tempfile.mkdtemp(prefix="sidecast-fleet-bench-"))
    clip = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=426x240:rate=25:duration=12", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=44100:duration=12", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "25", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", str(clip)], check=True)
    src = tmp / "src"
    src.mkdir()
    feeder = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
                               "-i", str(clip), "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_list_size", "5",
                               "-hls_flags", "delete_segments+omit_endlist", str(src / "live.m3u8")],
                              start_new_session=True)
    http = start_server(src, 0, host="127.0.0.1")
    pg = PostgresServer().start()
    storage = tmp / "media"
    storage.mkdir()
    capacity = -(-args.streams // 2)  # two survivors hold everything
    replicas = [Replica(f"r{i}", tmp / f"r{i}") for i in range(3)]
    reg = Registry(pg.url)
    results: list[dict[str, object]] = []
    try:
        _wait(lambda: (src / "live.m3u8").exists(), 30, "the HLS source")
        for r in replicas:
            r.start(pg.url, storage, capacity, args.lease, extra, log_format="json")
        _wait(lambda: all(r.ready() for r in replicas), 90, "the replicas")
        opts: dict[str, object] = {"window": 6, "reconnect_timeout": 60}
        opts.update({"passthrough": True} if args.passthrough else {"ladder": "240p:300k"})
        with replicas[0].client() as api:
            for i in range(args.streams):
                r = api.post("/v1/streams", json={"id": f"cam{i}", "ingest": "pull", "source": http.url + "live.m3u8",
                                                  "options": opts})
                assert r.status_code == 201, r.text
        sids = [f"cam{i}" for i in range(args.streams)]
        playlist = PLAYLIST
        if args.passthrough:
            _wait(lambda: (storage / "cam0" / "master.m3u8").exists(), 120, "the first master playlist")
            uri = next(line for line in (storage / "cam0" / "master.m3u8").read_text().splitlines()
                       if line and not line.startswith("#"))
            playlist = uri
        _wait(lambda: all(_attempts(storage, s, playlist) for s in sids), 300, "every stream to publish")
        with WorkerSampler({r.name: r.data for r in replicas}) as sampler:
            for rnd in range(args.rounds):
                alive = [r for r in replicas if r.proc is not None and r.proc.poll() is None]
                # steady state: every replica's warm pool is full (a replica that joined seconds ago may still
                # be filling it: its streams would start cold)
                _wait(lambda alive=alive: all(_pool_full(r) for r in alive), 180, "every warm pool to be full")
                pools = {r.name: _pool(r) for r in alive}
                owners = {lease.stream_id: lease.owner for lease in reg.leases()}
                victim = max(alive, key=lambda r: sum(1 for o in owners.values() if o == r.name))
                moved = [s for s, o in owners.items() if o == victim.name]
                before = {s: _attempts(storage, s, playlist) for s in moved}
                load = os.getloadavg()
                assert victim.proc is not None
                t0, kill_wall = time.monotonic(), time.time()
                os.kill(victim.proc.pid, signal.SIGKILL)
                victim.proc.wait()
                back: dict[str, float] = {}

                def republished(moved=moved, before=before, back=back, t0=t0) -> bool:  # type: ignore[no-untyped-def]
                    for s in moved:
                        if s not in back and _attempts(storage, s, playlist) - before[s]:
                            back[s] = time.monotonic() - t0
                    return len(back) == len(moved)

                _wait(republished, 120, f"round {rnd}: {victim.name}'s streams to publish again")
                times = sorted(back.values())
                # when the lease was taken (the registry's clock; same host): the fleet's part, before the
                # new worker's start and first segment (CPU-bound on a loaded machine)
                claims = sorted(reg.lease_log(s)[-1].acquired_at - kill_wall for s in moved)
                print(f"round {rnd}: failover of {len(moved)} streams: {[round(t, 2) for t in times]}", file=sys.stderr)
                results.append({"round": rnd, "killed": victim.name, "streams_moved": len(moved),
                                "failover_min_s": round(times[0], 2), "failover_median_s": round(statistics.median(times), 2),
                                "failover_max_s": round(times[-1], 2), "lease_s": args.lease,
                                "added_by_fleet_max_s": round(times[-1] - args.lease, 2),
                                "claimed_median_s": round(statistics.median(claims), 2),
                                "claimed_max_s": round(claims[-1], 2),
                                "loadavg_1m_at_kill": round(load[0], 2),
                                "warm_pools_at_kill": {k: v for k, v in pools.items() if v is not None}})
                # a fresh replica takes the dead one's place (as a Deployment would)
                fresh = Replica(f"{victim.name}b{rnd}", tmp / f"{victim.name}b{rnd}")
                replicas[replicas.index(victim)] = fresh
                sampler.roots[fresh.name] = fresh.data
                timeline = _timeline(replicas, moved, kill_wall, back)
                results[-1]["timeline"] = timeline
                _print_timeline(timeline)
                fresh.start(pg.url, storage, capacity, args.lease, extra, log_format="json")
                _wait(fresh.ready, 90, "the replacement replica")
                # The next kill waits until every replica lists the newcomer among the peers it asks: a
                # holder killed before its next pass (lease/3) never recorded it, so the newcomer may not
                # take that holder's leases until outage_grace (docs/kubernetes.md), and with the others at
                # capacity its streams would wait that long (seen in a quiet run: round 1 timed out).
                alive_now = [r for r in replicas if r.proc is not None and r.proc.poll() is None]
                _wait(lambda alive_now=alive_now: all(set(reg.peers_of(r.name)) == {o.name for o in alive_now}
                                                      - {r.name} for r in alive_now), 60,
                      "every replica to list the replacement as a peer")
            outages: list[dict[str, object]] = []
            if args.outage > 0:
                progress = Progress(storage, sids, playlist)
                try:
                    outages.append(_outage(args, pg, reg, replicas, storage, sids, playlist, progress, sampler,
                                           kill_after=None))
                    print(f"outage: {outages[-1]}", file=sys.stderr)
                    if not args.no_kill_in_outage:
                        outages.append(_outage(args, pg, reg, replicas, storage, sids, playlist, progress, sampler,
                                               kill_after=10.0))
                finally:
                    progress.close()
            overlaps = list(sampler.overlaps)
        summary = {"streams": args.streams, "transcode": "passthrough" if args.passthrough else "240p:300k",
                   "lease_s": args.lease, "rounds": results, "outages": outages, "split_brain_samples": len(overlaps),
                   "sampler_samples": sampler.samples, "loadavg": [round(x, 2) for x in os.getloadavg()]}
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"fleet failover: 3 replicas, {args.streams} pull streams ({summary['transcode']}), "
                  f"lease {args.lease:g} s, PostgreSQL {pg.bin.parent.name}")
            for r in results:
                print(f"  round {r['round']}: kill -9 {r['killed']} ({r['streams_moved']} streams): republished after "
                      f"min {r['failover_min_s']} s / median {r['failover_median_s']} s / max {r['failover_max_s']} s "
                      f"(lease {r['lease_s']} s; the fleet adds at most {r['added_by_fleet_max_s']} s; claimed after median "
                      f"{r['claimed_median_s']} s / max {r['claimed_max_s']} s); "
                      f"load {r['loadavg_1m_at_kill']}; warm pools {r['warm_pools_at_kill'] or 'none'}")
            for o in outages:
                print(f"  registry stopped {o['outage_s']} s{' + kill -9 of ' + str(o['killed']) + ' 10 s in' if o['killed'] else ''}: "
                      f"{o['kept_publishing']} of {args.streams} streams kept publishing all along "
                      f"(longest pause of any stream {o['longest_pause_s']} s); API write -> {o['api_status']} "
                      f"{o['api_detail']!r}")
                if o["killed"]:
                    print(f"    after the registry returned: the killed replica's {o['streams_of_killed']} streams "
                          f"published again after max {o['killed_back_max_s']} s, every stream after "
                          f"{o['all_back_s']} s; {o['others_stopped']} streams of the survivors stopped (the last "
                          f"{o['others_stopped_s']} s into the outage)")
                else:
                    print(f"    after the registry returned: every lease renewed by its holder (same owner, same "
                          f"epoch) after {o['renewed_s']} s, API writes after {o['writes_s']} s; streams restarted: "
                          f"{o['restarted']}")
            print(f"  two live workers for one stream: {len(overlaps)} of {sampler.samples} samples (every 50 ms)")
            print(f"  load average now: {summary['loadavg']}")
        return 0 if not overlaps else 1
    finally:
        for r in replicas:
            r.stop()
        reg.close()
        pg.close()
        http.close()
        os.killpg(feeder.pid, signal.SIGKILL)
        feeder.wait()
        if not os.environ.get("SIDECAST_BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"kept {tmp}")


def _pool(r: Replica) -> dict[str, object] | None:
    """A replica's warm pool (``GET /v1/server``), None for code without one (the baseline)."""
    with r.client() as api:
        doc = api.get("/v1/server").json().get("warm_pool")
    return {"ready": len(doc["ready"]), "size": doc["size"]} if doc else None


def _pool_full(r: Replica) -> bool:
    pool = _pool(r)
    return pool is None or int(pool["ready"]) >= int(pool["size"])  # type: ignore[call-overload]


PHASES = ("claim", "adopt", "spawn", "imp", "built", "frame", "seg", "seen")


def _timeline(replicas: list[Replica], moved: list[str], kill_wall: float,
              back: dict[str, float]) -> dict[str, dict[str, object]]:
    """Per moved stream, when each phase of its takeover happened (seconds after the kill), from the JSON
    logs of the replicas still running (what a phase means: the module docstring)."""
    out: dict[str, dict[str, object]] = {s: {"seen": round(back[s], 2)} for s in moved if s in back}

    def ts(doc: dict[str, object]) -> float:
        t = doc.get("t")
        if isinstance(t, (int, float)):
            return float(t)
        stamp = str(doc.get("ts", ""))
        return calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + stamp[19:-1])

    for r in replicas:
        if r.proc is None or r.proc.poll() is not None:
            continue
        try:
            lines = (r.data / "server.log").read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            if not line.startswith("{"):
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            sid = doc.get("stream")
            if sid not in out:
                continue
            try:
                at = ts(doc) - kill_wall
            except ValueError:
                continue
            if at < 0:
                continue
            row = out[sid]
            msg = str(doc.get("msg", ""))
            if msg.startswith("claimed ") and "claim" not in row:
                row["claim"], row["replica"] = round(at, 2), r.name
            elif msg == "stream adopted" and "adopt" not in row:
                row["adopt"] = round(at, 2)
            elif msg == "worker started" and "spawn" not in row:
                row["spawn"], row["warm"] = round(at, 2), bool(doc.get("warm"))
            elif msg == "worker timeline" and "seg" not in row:
                marks = doc.get("marks") or {}
                assert isinstance(marks, dict)
                for key, phase in (("imported", "imp"), ("built", "built"), ("first_frame", "frame"),
                                   ("first_segment", "seg")):
                    if key in marks:  # a warm worker imported before the kill: its start counts
                        row[phase] = round(max(float(marks[key]) - kill_wall, float(row.get("spawn", 0.0))), 2)
    return out


def _print_timeline(timeline: dict[str, dict[str, object]]) -> None:
    print("    stream  replica  " + "  ".join(f"{p:>6s}" for p in PHASES), file=sys.stderr)
    for sid, row in sorted(timeline.items(), key=lambda kv: float(kv[1].get("seen", 0.0))):  # type: ignore[arg-type]
        kind = "w" if row.get("warm") else "c" if "warm" in row else "?"
        print(f"    {sid:6s}  {str(row.get('replica', '?')):7s}  " + "  ".join(
            f"{row[p]:6.2f}" if p in row else "     -" for p in PHASES) + f"  {kind}", file=sys.stderr)
    for p in PHASES:
        vals = sorted(float(r[p]) for r in timeline.values() if p in r)  # type: ignore[arg-type]
        if vals:
            print(f"    {p:>6s}: median {statistics.median(vals):6.2f} s, max {vals[-1]:6.2f} s", file=sys.stderr)


def _outage(args: argparse.Namespace, pg: PostgresServer, reg: Registry, replicas: list[Replica], storage: Path,
            sids: list[str], playlist: str, progress: Progress, sampler: WorkerSampler,
            kill_after: float | None) -> dict[str, object]:
    """Stop the registry for ``args.outage`` seconds (kill -9 the busiest replica ``kill_after`` s in)."""
    import httpx

    _wait(lambda: len(reg.leases()) == len(sids), 120, "every stream to hold a lease")
    _wait(progress.polled.is_set, 30, "the first look at every playlist")
    # steady state: every replica has recorded the others as the peers it asks (a replica that joined less
    # than a pass before an outage is on nobody's list yet: it waits out the grace for their streams)
    alive = [r for r in replicas if r.proc is not None and r.proc.poll() is None]
    _wait(lambda: all(set(reg.peers_of(r.name)) == {o.name for o in alive} - {r.name} for r in alive), 60,
          "every replica to list the others as its peers")
    held = {lease.stream_id: (lease.owner, lease.epoch) for lease in reg.leases()}
    alive = [r for r in replicas if r.proc is not None and r.proc.poll() is None]
    api_rep = alive[0]
    load = os.getloadavg()
    t_down = time.monotonic()
    pg.stop()
    with api_rep.client() as api:
        try:
            r = api.post("/v1/streams", json={"id": f"late{int(t_down)}", "ingest": "push"})
            api_status, api_detail = r.status_code, r.json().get("detail", "")
        except httpx.HTTPError as exc:
            api_status, api_detail = 0, str(exc)
    victim = None
    if kill_after is not None:
        victim = max((r for r in alive if r is not api_rep),
                     key=lambda r: sum(1 for o, _ in held.values() if o == r.name))
        _wait(lambda: time.monotonic() - t_down >= kill_after, kill_after + 5, "the moment to kill")
        assert victim.proc is not None
        os.kill(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
    _wait(lambda: time.monotonic() - t_down >= args.outage, args.outage + 5, "the end of the outage")
    t_up = time.monotonic()
    pg.start()
    victims = {s for s, (o, _) in held.items() if victim is not None and o == victim.name}
    kept = [s for s in sids if s not in victims and progress.longest_pause(s, t_down, t_up) < 6.0
            and not progress.new_attempts(s, t_down)]
    out: dict[str, object] = {"outage_s": round(t_up - t_down, 1), "killed": victim.name if victim else None,
                              "kept_publishing": len(kept),
                              "longest_pause_s": round(max(progress.longest_pause(s, t_down, t_up) for s in sids
                                                           if s not in victims), 1),
                              "api_status": api_status, "api_detail": api_detail[:160],
                              "loadavg_1m_at_start": round(load[0], 2)}

    def writes() -> bool:
        with api_rep.client() as api:
            try:
                return api.get("/v1/streams?limit=1").status_code == 200
            except httpx.HTTPError:
                return False

    if victim is None:
        _wait(lambda: {lease.stream_id: (lease.owner, lease.epoch) for lease in reg.leases()} == held, 60,
              "the holders to renew every lease")
        out["renewed_s"] = round(time.monotonic() - t_up, 1)
        _wait(writes, 60, "the API to answer again")
        out["writes_s"] = round(time.monotonic() - t_up, 1)
        out["restarted"] = sum(1 for s in sids if progress.new_attempts(s, t_down))
        return out
    back: dict[str, float] = {}
    stopped: dict[str, float] = {}  # streams of the survivors that stopped: their last segment, s into the outage
    for s in sids:
        if s not in victims and progress.longest_pause(s, t_down, t_up) >= 6.0:
            stopped[s] = max((t for t, _ in progress.points[s] if t <= t_up), default=t_down) - t_down

    def all_back() -> bool:
        for s in sids:
            if s in back:
                continue
            if s not in victims and s not in stopped:
                back[s] = 0.0  # it never stopped
            elif new := progress.new_attempts(s, t_up):
                back[s] = new[0][0] - t_up
        return len(back) == len(sids)

    _wait(all_back, 120, "every stream to publish again after the outage")
    out.update({"streams_of_killed": len(victims), "killed_back_max_s": round(max(back[s] for s in victims), 1),
                "all_back_s": round(max(back.values()), 1),
                "others_stopped_s": round(max(stopped.values()), 1) if stopped else None,
                "others_stopped": len(stopped)})
    # a fresh replica takes the dead one's place
    fresh = Replica(f"{victim.name}o", victim.data.parent / f"{victim.name}o")
    replicas[replicas.index(victim)] = fresh
    sampler.roots[fresh.name] = fresh.data
    fresh.start(pg.url, storage, -(-args.streams // 2), args.lease, log_format="json")
    _wait(fresh.ready, 90, "the replacement replica")
    return out


if __name__ == "__main__":
    sys.exit(main())
