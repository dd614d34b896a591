"""What the autocrop sidecar's extra ``shots`` feed (every source frame as a 48x27 RGB thumbnail) costs in the
live pipeline: CPU time of the core and of the sidecar, with and without it, on the same source.

Each run is a real ``sidecast run --realtime`` of a 1080p30 clip of real footage (vtest.avi, Debian
opencv-doc, looped and scaled) with one light rendition (so x264 does not drown the difference), connected
to an autocrop sidecar process this bench starts itself, so each process's CPU time is read exactly from
``wait4`` (the sidecar's includes loading its models, the same in both configurations). ``--no-full-rate-shots``
is the sidecar before the feed (its learned opinion reads the 5 fps frames). Configurations alternate, so a
change of machine load hits both. Run under the bench lock::

    flock /tmp/sidecast-cpu.lock .venv/bin/python bench/feed_cost.py [--seconds 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.vertical_lag import make_source, sidecast_cmd  # noqa: E402


def wait_cpu(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for ``proc`` and return its user + system CPU seconds (its waited children included)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"{proc.args!r} did not finish in {timeout:.0f} s")
        time.sleep(0.05)


def one_run(src: Path, work: Path, full_rate: bool, seconds: float) -> dict[str, float]:
    sock = work / f"autocrop-{os.getpid()}-{int(full_rate)}.sock"
    args = [*sidecast_cmd(), "sidecar", "autocrop", "--listen", f"unix://{sock}"]
    if not full_rate:
        args.append("--no-full-rate-shots")
    side = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert side.stdout is not None
    line = side.stdout.readline().decode()  # "sidecast sidecar autocrop listening on ..."
    assert "listening" in line, line
    out = work / f"out-{int(full_rate)}"
    t0 = time.monotonic()
    logf = open(work / f"core-{int(full_rate)}.log", "wb")  # noqa: SIM115 (closed below)
    core = subprocess.Popen([*sidecast_cmd(), "run", str(src), "-o", str(out), "--realtime", "--ladder", "360p:800k",
                             "--sidecar-addr", f"autocrop=unix://{sock}", "--no-progress", "--snapshots-fps", "0", "--vertical", "off"],
                            stdout=logf, stderr=subprocess.STDOUT)
    core_cpu = wait_cpu(core, seconds * 4 + 120)
    wall = time.monotonic() - t0
    side.terminate()
    side_cpu = wait_cpu(side, 30)
    logf.close()
    log = (work / f"core-{int(full_rate)}.log").read_text(errors="replace")
    assert core.returncode == 0, log[-3000:]
    found = re.search(r"autocrop: (\d+) results", log)  # the run's summary line: crops received by the core
    crops = int(found.group(1)) if found else 0
    return {"core": core_cpu, "sidecar": side_cpu, "wall": wall, "crops": crops}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="feedcost-") as tmp:
        work = Path(tmp)
        src = work / "src.mp4"
        make_source(src, args.seconds)
        print(f"source: vtest.avi looped to {args.seconds:.0f} s, 1920x1080 30 fps; --realtime; ladder 360p:800k")
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.repeats):
            for full_rate in (False, True):
                r = one_run(src, work, full_rate, args.seconds)
                runs[full_rate].append(r)
                name = "with the shots feed   " if full_rate else "without (5 fps opinion)"
                print(f"{name}: core {r['core']:6.2f} s CPU, sidecar {r['sidecar']:6.2f} s CPU, "
                      f"wall {r['wall']:5.1f} s, {r['crops']:.0f} crops", flush=True)
        for full_rate in (False, True):
            rs = runs[full_rate]
            name = "with the shots feed   " if full_rate else "without (5 fps opinion)"
            core = sum(r["core"] for r in rs) / len(rs)
            side = sum(r["sidecar"] for r in rs) / len(rs)
            print(f"mean {name}: core {core:6.2f} s, sidecar {side:6.2f} s of CPU for {args.seconds:.0f} s of media")
        frames = args.seconds * 30
        for key in ("core", "sidecar"):
            d = (sum(r[key] for r in runs[True]) - sum(r[key] for r in runs[False])) / args.repeats
            print(f"extra {key} CPU with the feed: {d:+.2f} s per {args.seconds:.0f} s of media = "
                  f"{1000 * d / frames:+.2f} ms per source frame ({100 * d / args.seconds:+.1f} % of a core)")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
