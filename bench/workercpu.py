"""One caption stream's worker CPU: CPU seconds per media second of one pushed stream's worker process.

The stream is bench/server.py's caption stream (320x180 testsrc2 with LibriVox speech, ladder 180p:200k,
sidecars stt, no vertical, no snapshots) pushed into an in-process `sidecast server`; the worker's utime+stime
(from /proc) over ``--window`` seconds, divided by the media seconds it published in them. ``--profile FILE``
also records the worker with py-spy (not a project dependency: ``pip install py-spy``) for 30 s, raw format.

    flock /tmp/sidecast-cpu.lock .venv/bin/python bench/workercpu.py [--window 40] [--profile prof.txt]

Figures depend on what else runs on the machine: the script prints the 1-min load beside them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import server as bench  # noqa: E402


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker_pid(pid: int) -> int:
    """The worker itself: the supervisor's process may be guard.py, which runs the worker as its child."""
    if b"guard.py" not in Path(f"/proc/{pid}/cmdline").read_bytes():
        return pid
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(kids[0]) if kids else pid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--window", type=float, default=40.0, help="seconds measured after the stream is live + 10 s")
    ap.add_argument("--profile", type=Path, default=None, help="py-spy raw profile of the worker (30 s)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="workercpu-"))
    work.mkdir(parents=True, exist_ok=True)
    clip = bench._speech_clip(work)
    srv = bench.InProcess(work / "data", sidecar_args={"stt": ["--batch", "on", "--workers", "1"]})
    opts = {"ladder": "180p:200k", "snapshots_fps": 0, "sidecars": ["stt"], "vertical": "off"}
    srv.push("t1", clip, opts)
    bench.wait(lambda: srv.status("t1")["state"] == "live", 240, "the stream live")
    time.sleep(10)
    rt = srv.server.supervisor.runtimes["t1"]
    assert rt.proc is not None
    pid = _worker_pid(rt.proc.pid)
    st0, c0, w0 = srv.status("t1"), _cpu_s(pid), time.monotonic()
    spy = None
    if args.profile is not None:
        spy = subprocess.Popen(["py-spy", "record", "--native", "-r", "50", "-d", "30", "-p", str(pid),
                                "-o", str(args.profile), "-f", "raw"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(args.window)
    st1, c1, w1 = srv.status("t1"), _cpu_s(pid), time.monotonic()
    if spy is not None:
        spy.wait()
    media = (st1["media_time"] or 0.0) - (st0["media_time"] or 0.0)
    cpu = c1 - c0
    print(f"worker {pid}: {cpu:.2f} CPU s over {w1 - w0:.1f} s wall ({cpu / (w1 - w0):.3f} cores), "
          f"{media:.1f} media s -> {cpu / max(media, 1e-9):.4f} CPU s per media s; "
          f"segments {st1['segments'] - st0['segments']}; load {os.getloadavg()[0]:.2f} at "
          f"{time.strftime('%H:%M', time.gmtime())} UTC")
    os._exit(0)  # the server's threads and children go with the process (as bench/server.py's parts do)


if __name__ == "__main__":
    main()
