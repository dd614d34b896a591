"""How many IP cameras one box holds in `sidecast server`: 720p25 H.264 pulls packaged in passthrough (no
re-encode) with 1 fps snapshots, added in steps until a stream falls behind real time.

Each camera is a pull of a live HLS source on loopback (ffmpeg loops a 720p25 H.264 clip with a keyframe a
second, ``-c copy``: the source costs nearly nothing). Every stream is its own worker process, as in
production; per step the bench measures, over ``--window`` seconds:

- whether every stream keeps up (each new segment appears the same delay after its end; ``growth`` < 1 s);
- the server's CPU (its whole process tree: supervisor, workers) in cores, per stream, and RSS;
- the baseline, in the same run: what a user without passthrough runs, 2 pulls of the same cameras
  transcoded to one 360p rung (bench/server.py's ``capacity`` setting), CPU per stream.

Target (issue 16): >= 50 cameras on 2 cores. On a shared machine the CPU per stream is the figure that travels
(the script prints the load beside each step); ``projected`` = 1.6 cores (80 % of 2) / CPU per stream.

    flock /tmp/sidecast-cpu.lock .venv/bin/python bench/cameras.py [--steps 10,20,30,40,50] [--window 24]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import server as S  # noqa: E402  (bench/server.py: the server process, sources and measurements)

CAMERA_OPTS = {"passthrough": True, "snapshots_fps": 1, "window": 6}


def camera_clip(work: Path) -> Path:
    out = work / "camera-720p25.mp4"
    S.ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=30", "-c:v", "libx264", "-preset",
             "veryfast", "-g", "25", "-b:v", "2500k", "-pix_fmt", "yuv420p", "-an", str(out))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", default="10,20,30,40,50", help="camera counts to measure, ascending")
    ap.add_argument("--window", type=float, default=24.0, help="seconds each step is measured over")
    args = ap.parse_args()
    steps = [int(x) for x in args.steps.split(",")]
    print(f"cameras: 720p25 H.264 pulls, passthrough + 1 fps snapshots; load {S.load_avg()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="sidecast-cameras-") as tmp:
        work = Path(tmp)
        clip = camera_clip(work)
        with S.live_hls(work, clip) as src:
            srv = S.ServerProc(work / "data")
            try:
                ids: list[str] = []
                for n in steps:
                    while len(ids) < n:
                        sid = f"cam{len(ids) + 1}"
                        srv.create({"id": sid, "ingest": "pull", "source": src, "options": CAMERA_OPTS})
                        ids.append(sid)
                    S.wait(lambda: all(srv.status(s)["state"] == "live" for s in ids), 180, f"{n} cameras live")
                    time.sleep(6)
                    cpu0 = S.tree([srv.proc.pid])[0]
                    t0 = time.monotonic()
                    readers = {sid: S._server_reader(srv, sid, "video/source/index.m3u8") for sid in ids}
                    delays = S._publish_delays(readers, args.window)
                    cpu1, rss, procs = S.tree([srv.proc.pid])
                    cores = (cpu1 - cpu0) / (time.monotonic() - t0)
                    behind = [sid for sid, d in delays.items() if not S._keeps_up(d)]
                    snaps = sum(1 for sid in ids
                                if S.httpx.get(f"{srv.media}{sid}/snapshot.jpg", timeout=5).status_code == 200)
                    row = {"cameras": n, "real_time": not behind, "behind": len(behind),
                           "cpu_cores": round(cores, 2), "cpu_per_camera": round(cores / n, 4),
                           "rss_mb_per_camera": round(rss / n / 2**20, 1), "processes": procs,
                           "with_snapshot": snaps,
                           "publish_delay_median_s": round(statistics.median(
                               d["delay_median_s"] for d in delays.values()), 2),
                           "load": S.load_avg()}
                    rows.append(row)
                    print(f"  {row}", flush=True)
                    if behind:
                        break
            finally:
                srv.close()
            base = S.ServerProc(work / "base")
            try:
                tids = ["t1", "t2"]
                for sid in tids:
                    base.create({"id": sid, "ingest": "pull", "source": src, "options": S.PULL_OPTS})
                S.wait(lambda: all(base.status(s)["state"] == "live" for s in tids), 120, "transcoded pulls live")
                time.sleep(6)
                cpu0 = S.tree([base.proc.pid])[0]
                t0 = time.monotonic()
                S._publish_delays({sid: S._server_reader(base, sid) for sid in tids}, args.window)
                transcoded = (S.tree([base.proc.pid])[0] - cpu0) / (time.monotonic() - t0) / len(tids)
                print(f"  baseline: transcoded 360p pulls, CPU per stream {transcoded:.3f} cores "
                      f"(load {S.load_avg()})", flush=True)
            finally:
                base.close()
    held = max((r["cameras"] for r in rows if r["real_time"]), default=0)
    per = statistics.median(r["cpu_per_camera"] for r in rows)
    print(f"\nheld in real time: {held} cameras (largest step measured: {rows[-1]['cameras']}); "
          f"CPU per camera {per:.4f} cores (median over steps); projected on 2 cores at 80 %: {1.6 / per:.0f}; "
          f"target >= 50: {'PASS' if held >= 50 else 'FAIL'}; a transcoded 360p pull costs {transcoded:.3f} cores "
          f"({transcoded / per:.0f}x a camera in passthrough)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
