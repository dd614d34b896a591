"""When each segment is published: the main ladder with and without the autocrop sidecar, and the vertical
ladder, in a live-paced ``sidecast run`` (``--realtime``) of a 1080p30 source with the default ladder.

What the issue asks to show: the main ladder never waits for crop results (its segments appear as early
with autocrop as without), the vertical rendition is published at most one segment after the main one,
and the whole run keeps real time on this machine (the analysis included).

Each playlist is polled every 50 ms; a segment counts as published when its playlist lists it. Lateness is
the wall time at which a segment was listed minus the wall time at which its last frame was due (run start
+ media end of the segment). Run: ``flock /tmp/sidecast-cpu.lock .venv/bin/python bench/vertical_lag.py``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devkit import footage  # noqa: E402


def sidecast_cmd() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "sidecast"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-c", "import sys; from sidecast.core.cli import main; sys.exit(main())"]


def make_source(path: Path, seconds: float) -> None:
    """vtest.avi (real pedestrians, Debian opencv-doc) looped and scaled to 1920x1080 at 30 fps."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "needs Debian's ffmpeg"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-stream_loop", "-1", "-i", str(footage.source_path("vtest")),
                    "-t", f"{seconds}", "-vf", "fps=30,scale=1920:1080", "-c:v", "libx264", "-preset", "veryfast",
                    "-g", "60", "-pix_fmt", "yuv420p", str(path)], check=True)


def variants(master: Path) -> list[str]:
    return [ln.strip() for ln in master.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def listed_parts(playlist: Path) -> list[tuple[str, float]]:
    """(part URI, media end) of the EXT-X-PART lines the playlist lists now (low latency)."""
    out, acc, inside = [], 0.0, 0.0
    try:
        text = playlist.read_text()
    except OSError:
        return []
    for ln in text.splitlines():
        if ln.startswith("#EXT-X-PART:"):
            d = re.search(r"DURATION=([0-9.]+)", ln)
            u = re.search(r'URI="([^"]+)"', ln)
            if d and u:
                inside += float(d.group(1))
                out.append((u.group(1), acc + inside))
        elif (m := re.match(r"#EXTINF:([0-9.]+)", ln)):
            acc += float(m.group(1))
            inside = 0.0
    return out


def listed(playlist: Path) -> list[tuple[str, float]]:
    """(segment URI, duration) as the playlist lists them now."""
    out, dur = [], 0.0
    try:
        text = playlist.read_text()
    except OSError:
        return []
    for ln in text.splitlines():
        m = re.match(r"#EXTINF:([0-9.]+)", ln)
        if m:
            dur = float(m.group(1))
        elif ln.strip() and not ln.startswith("#"):
            out.append((ln.strip(), dur))
    return out


def run(src: Path, out: Path, sidecars: str, media: float, extra: list[str] | None = None
        ) -> dict[str, list[tuple[float, float]]]:
    """Start a live-paced run; returns per media playlist [(media end of segment, wall time listed)],
    wall times relative to the moment the process started."""
    cmd = [*sidecast_cmd(), "run", str(src), "-o", str(out), "--realtime", "--no-progress", "--window", "0"]
    if sidecars:
        cmd += ["--sidecars", sidecars]
    cmd += extra or []
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: dict[str, dict[str, float]] = {}
    ends: dict[str, dict[str, float]] = {}
    low = "--latency" in (extra or []) and "low" in (extra or [])
    while True:
        done = proc.poll() is not None
        now = time.perf_counter() - t0
        for pl in out.rglob("*.m3u8"):
            name = str(pl.relative_to(out))
            if name in ("master.m3u8", "vertical.m3u8"):
                continue
            acc = 0.0
            s, e = seen.setdefault(name, {}), ends.setdefault(name, {})
            for uri, dur in listed(pl):
                acc += dur
                if uri not in s:
                    s[uri], e[uri] = now, acc  # media end (valid while the window has not slid)
            if low:  # parts, under the playlist's name + ":parts"
                sp, ep = seen.setdefault(name + ":parts", {}), ends.setdefault(name + ":parts", {})
                for uri, end in listed_parts(pl):
                    if uri not in sp:
                        sp[uri], ep[uri] = now, end
        if done:
            break
        time.sleep(0.05)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"sidecast run failed ({proc.returncode}): {err[-2000:]}")
    return {n: sorted((ends[n][u], s[u]) for u in s) for n, s in seen.items()}


def summarise(label: str, rows: list[tuple[float, float]], start: float) -> np.ndarray:
    late = np.array([w - (start + end) for end, w in rows])
    print(f"  {label:34s} {len(rows):3d} segments; listed after due: median {np.median(late):5.2f} s, "
          f"p95 {np.percentile(late, 95):5.2f} s, max {late.max():5.2f} s")
    return late


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=40.0)
    ap.add_argument("--latency", choices=("normal", "low"), default="normal",
                    help="low: LL-HLS, and the parts' lateness is printed too (main and vertical)")
    ap.add_argument("--configs", default="plain,local,external",
                    help="which runs: plain (no sidecars), local (--sidecars autocrop), external (the sidecar "
                         "started on its own with --lookahead 0.5)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vertical-lag-"))
    src = tmp / "vtest1080.mp4"
    make_source(src, args.seconds)
    print(f"source: vtest.avi looped to {args.seconds:g} s, 1920x1080 30 fps; --realtime; default ladder")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    results = {}
    sock = tmp / "autocrop.sock"
    every = {"plain": ("without sidecars", "", None), "local": ("with --sidecars autocrop", "autocrop", None),
             "external": ("autocrop sidecar --lookahead 0.5", "", "0.5")}
    configs = [every[c] for c in args.configs.split(",")]
    for label, sidecars, lookahead in configs:
        out = tmp / (label.replace(" ", "_").replace("-", ""))
        side = None
        extra: list[str] = ["--latency", "low"] if args.latency == "low" else []
        if lookahead:  # the sidecar on its own, with a shorter look-ahead, the core pointed at it
            side = subprocess.Popen([*sidecast_cmd(), "sidecar", "autocrop", "--listen", f"unix://{sock}",
                                     "--lookahead", lookahead], cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + 60
            while not sock.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            extra += ["--sidecar-addr", f"autocrop=unix://{sock}"]
        t = time.perf_counter()
        try:
            results[label] = run(src, out, sidecars, args.seconds, extra)
        finally:
            if side is not None:
                side.terminate()
                side.wait()
        wall = time.perf_counter() - t
        master = variants(out / "master.m3u8")
        vert = variants(out / "vertical.m3u8") if (out / "vertical.m3u8").exists() else []
        results[label + ":names"] = (master, vert)  # type: ignore[assignment]
        print(f"{label}: {wall:.1f} s wall for {args.seconds:g} s of media (process start included); "
              f"main {master}, vertical {vert}")
    # the process start (Python, model loads) is not part of the stream: align on the first main segment
    first_main = lambda res, names: min(res[n][0][1] - res[n][0][0] for n in names if n in res)  # noqa: E731
    print("\nlateness of each segment (wall time listed - due time of its last frame; due times start at the "
          "first main segment's, so the process start and model loads do not count)")
    for label, _s, _l in configs:
        res = results[label]
        mains, verts = results[label + ":names"]  # type: ignore[misc]
        start = first_main(res, mains)
        print(f"{label}:")
        for n in mains:
            summarise(f"main {n}", res[n], start)
        print(f"  main {mains[0]} per segment (s): " + " ".join(f"{w - (start + e):.2f}" for e, w in res[mains[0]]))
        for n in verts:
            summarise(f"vertical {n}", res[n], start)
        if not verts:
            continue
        top, vtop = mains[0], verts[0]  # per segment: vertical vs the main top rung, same media end
        main_at = {round(e, 2): w for e, w in res[top]}
        seg = float(np.median(np.diff([0.0] + [e for e, _ in res[top]])))
        lags = [w - main_at[round(e, 2)] for e, w in res[vtop] if round(e, 2) in main_at]
        lag = np.array(lags)
        print(f"  vertical {vtop} vs main {top}, per segment ({len(lag)} pairs, segment {seg:.2f} s): lag median "
              f"{np.median(lag):.2f} s, max {lag.max():.2f} s = {lag.max() / seg:.2f} segments; "
              f"<= 1 segment: {bool(lag.max() <= seg + 1e-6)}")
        print("  per segment lag (s): " + " ".join(f"{x:.2f}" for x in lags))
        if args.latency == "low":  # parts: when each was listed after its last frame was due
            for n in (top, vtop):
                if n + ":parts" in res and res[n + ":parts"]:
                    summarise(f"parts of {n}", res[n + ":parts"], start)
            p_main = {round(e, 2): w for e, w in res.get(top + ":parts", [])}
            plag = [w - p_main[round(e, 2)] for e, w in res.get(vtop + ":parts", []) if round(e, 2) in p_main]
            if plag:
                print(f"  vertical parts vs main parts ({len(plag)} pairs): lag median {np.median(plag):.2f} s, "
                      f"p95 {np.percentile(plag, 95):.2f} s, max {max(plag):.2f} s")
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
