"""Failover of a `sidecast server` fleet: three replicas (real processes) on one real PostgreSQL registry and
one shared media folder, N pull streams of a live HLS source on loopback; one replica is killed with
SIGKILL and the time until each of its streams publishes a new segment from another replica is measured
(kill to the first segment of the new attempt appearing in the stream's playlist in the shared storage).

Baseline in the same run: the lease itself (``--lease-seconds``): a takeover cannot start before the dead
replica's lease expires, so ``failover - lease`` is what the fleet adds (detecting the expiry, starting
the worker, the first segment).

    flock /tmp/sidecast-cpu.lock .venv/bin/python bench/fleet.py [--streams 12] [--lease 5] [--rounds 2]
        [--passthrough] [--json]

Streams are transcoded to one 240p rung unless ``--passthrough`` (H.264 copied, much cheaper). Record the
load average beside the figures (the script prints it).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit.fleet import Replica, WorkerSampler  # noqa: E402
from devkit.postgres import PostgresServer  # noqa: E402
from sidecast.core.serve import start_server  # noqa: E402
from sidecast.core.server.registry import Registry  # noqa: E402
from sidecast.hls import parse_media  # noqa: E402

PLAYLIST = "video/240p/index.m3u8"
_ATTEMPT = re.compile(r"/(e/[^/]+/r\d+)/")


def _wait(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def _attempts(storage: Path, sid: str, playlist: str) -> set[str]:
    """The attempt prefixes (e/<event>/r<n>) of the segments in a stream's playlist."""
    try:
        pl = parse_media((storage / sid / playlist).read_text())
    except (OSError, ValueError):
        return set()
    return {m.group(1) for s in pl.segments if (m := _ATTEMPT.search("/" + s.uri))}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, default=12)
    ap.add_argument("--lease", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=2, help="kill -9 this many times (a new replica replaces each)")
    ap.add_argument("--passthrough", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

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
            r.start(pg.url, storage, capacity, args.lease)
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
                owners = {lease.stream_id: lease.owner for lease in reg.leases()}
                alive = [r for r in replicas if r.proc is not None and r.proc.poll() is None]
                victim = max(alive, key=lambda r: sum(1 for o in owners.values() if o == r.name))
                moved = [s for s, o in owners.items() if o == victim.name]
                before = {s: _attempts(storage, s, playlist) for s in moved}
                load = os.getloadavg()
                assert victim.proc is not None
                t0 = time.monotonic()
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
                results.append({"round": rnd, "killed": victim.name, "streams_moved": len(moved),
                                "failover_min_s": round(times[0], 2), "failover_median_s": round(statistics.median(times), 2),
                                "failover_max_s": round(times[-1], 2), "lease_s": args.lease,
                                "added_by_fleet_max_s": round(times[-1] - args.lease, 2),
                                "loadavg_1m_at_kill": round(load[0], 2)})
                # a fresh replica takes the dead one's place (as a Deployment would)
                fresh = Replica(f"{victim.name}b{rnd}", tmp / f"{victim.name}b{rnd}")
                replicas[replicas.index(victim)] = fresh
                sampler.roots[fresh.name] = fresh.data
                fresh.start(pg.url, storage, capacity, args.lease)
                _wait(fresh.ready, 90, "the replacement replica")
            overlaps = list(sampler.overlaps)
        summary = {"streams": args.streams, "transcode": "passthrough" if args.passthrough else "240p:300k",
                   "lease_s": args.lease, "rounds": results, "split_brain_samples": len(overlaps),
                   "sampler_samples": sampler.samples, "loadavg": [round(x, 2) for x in os.getloadavg()]}
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"fleet failover: 3 replicas, {args.streams} pull streams ({summary['transcode']}), "
                  f"lease {args.lease:g} s, PostgreSQL {pg.bin.parent.name}")
            for r in results:
                print(f"  round {r['round']}: kill -9 {r['killed']} ({r['streams_moved']} streams): republished after "
                      f"min {r['failover_min_s']} s / median {r['failover_median_s']} s / max {r['failover_max_s']} s "
                      f"(lease {r['lease_s']} s; the fleet adds at most {r['added_by_fleet_max_s']} s); "
                      f"load {r['loadavg_1m_at_kill']}")
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


if __name__ == "__main__":
    sys.exit(main())
