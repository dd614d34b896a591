"""Ladder transcoding speed: sidecast vs the ffmpeg CLI doing the same ladder with the same x264 settings,
measured in the same run, plus end-to-end live latency (RTMP publish → segment listed).

Figures printed:
- 1080p30 source → default ladder (1080/720/480/360 + AAC, 2 s TS segments): wall time, × real time and
  CPU seconds for sidecast and for `ffmpeg` (Debian's CLI, libx264 with identical options); the CPU ratio
  (target: sidecast ≤ 1.15× ffmpeg's CPU);
- 720p30 source → its ladder (720/480/360): sidecast × real time (target ≥ 1.0 on 2 cores);
- live: a 720p30 clip published over RTMP with `ffmpeg -re`; for every segment, the time from the
  publisher sending its last frame to the segment being listed in the media playlist (median and max);
- memory: peak resident memory of every run, and a 2160p60 source into the default ladder (target: peak
  RSS ≤ 1.5 GB, growing with the ladder, not with the input's length or frame rate).

Run: .venv/bin/python bench/ladder.py [--seconds 10] [--skip-live]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.ports import free_port  # noqa: E402
from sidecast.contract.encoding import x264_options  # noqa: E402
from sidecast.core.ladder import DEFAULT_LADDER, build_ladder  # noqa: E402

SIDECAST = str(Path(sys.executable).parent / "sidecast")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


PEAK_RSS: dict[str, float] = {}


def timed(cmd: list[str], label: str = "") -> tuple[float, float]:
    """Wall and CPU seconds of a child process (CPU from the kernel's accounting of its whole tree); its
    peak resident memory (GNU time's %M, MB) is kept in PEAK_RSS under ``label``."""
    cpu0, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
    PEAK_RSS[label or cmd[0]] = int(proc.stderr.strip().splitlines()[-1]) / 1024
    return wall, cpu


def make_source(path: Path, size: str, seconds: float, rate: int = 30) -> None:
    # A moving test pattern with film-grain-like noise: closer to camera content than a flat pattern.
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=size={size}:rate={rate}:duration={seconds}", "-f", "lavfi", "-i",
                    f"sine=frequency=300:sample_rate=48000:duration={seconds}",
                    "-vf", "noise=alls=12:allf=t", "-c:v", "libx264", "-preset", "veryfast", "-crf", "16",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", str(path)], check=True)


def ffmpeg_ladder_cmd(src: Path, out: Path, width: int, height: int, seg: float = 2.0) -> list[str]:
    rungs = build_ladder(width, height, DEFAULT_LADDER)
    n = len(rungs)
    split = f"[0:v]split={n}" + "".join(f"[s{i}]" for i in range(n))
    scales = ";".join(f"[s{i}]scale={r.width}:{r.height}:flags=bicubic[o{i}]" for i, r in enumerate(rungs))
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(src), "-filter_complex",
           f"{split};{scales}"]
    keyint = int(seg * 30)
    for i, r in enumerate(rungs):
        opts = x264_options(r.crf, r.max_bitrate, keyint)
        d = out / r.name
        d.mkdir(parents=True)
        cmd += ["-map", f"[o{i}]", "-c:v", "libx264", "-preset", opts["preset"], "-profile:v", opts["profile"],
                "-crf", opts["crf"], "-x264-params", opts["x264-params"].replace(f"keyint={keyint}:min-keyint={keyint}",
                                                                                 f"keyint={keyint}:min-keyint={keyint}"),
                "-pix_fmt", "yuv420p", "-an", "-f", "hls", "-hls_time", str(seg), "-hls_playlist_type", "vod",
                "-hls_segment_filename", str(d / "seg_%06d.ts"), str(d / "index.m3u8")]
    a = out / "audio"
    a.mkdir()
    cmd += ["-map", "0:a", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2", "-vn", "-f", "hls",
            "-hls_time", str(seg), "-hls_playlist_type", "vod", "-hls_segment_filename", str(a / "seg_%06d.ts"),
            str(a / "index.m3u8")]
    return cmd




def live_latency(src: Path, tmp: Path) -> list[float]:
    port = free_port()
    out = tmp / "live"
    proc = subprocess.Popen([SIDECAST, "run", f"rtmp://127.0.0.1:{port}/live/bench", "-o", str(out),
                             "--reconnect-timeout", "1", "--window", "0", "--snapshots-fps", "0", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.05)
    t_pub = time.time()
    pub = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(src), "-c", "copy",
                            "-f", "flv", f"rtmp://127.0.0.1:{port}/live/bench"])
    playlist = out / "video" / "360p" / "index.m3u8"
    appeared: dict[int, float] = {}
    ends: dict[int, float] = {}
    while proc.poll() is None:
        if playlist.exists():
            media_t = 0.0
            for line in playlist.read_text().splitlines():
                if line.startswith("#EXTINF:"):
                    media_t += float(line[8:].rstrip(","))
                elif line.startswith("seg_"):
                    idx = int(line[4:10])
                    appeared.setdefault(idx, time.time())
                    ends[idx] = media_t
        time.sleep(0.02)
    pub.wait()
    # The publisher (-re) sends media time t at about t_pub + t; the last segment closes at the end of
    # input, not by time, so it is left out.
    return [appeared[i] - (t_pub + ends[i]) for i in sorted(appeared)[:-1]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the test clips")
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--skip-uhd", action="store_true", help="skip the 4K60 memory run")
    ap.add_argument("--uhd-seconds", type=float, default=8.0, help="length of the 4K60 clip")
    args = ap.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("needs the ffmpeg CLI (./dev.sh install)")
    print(f"ladder bench: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, clips of {args.seconds:g} s")
    with tempfile.TemporaryDirectory(prefix="sc-ladder-") as tmp_s:
        tmp = Path(tmp_s)
        src1080, src720 = tmp / "src1080.mp4", tmp / "src720.mp4"
        make_source(src1080, "1920x1080", args.seconds)
        make_source(src720, "1280x720", args.seconds)

        ff_wall, ff_cpu = timed(ffmpeg_ladder_cmd(src1080, tmp / "ff1080", 1920, 1080), "ffmpeg 1080p")
        sc_wall, sc_cpu = timed([SIDECAST, "run", str(src1080), "-o", str(tmp / "sc1080"), "--snapshots-fps", "0",
                                 "--no-progress"], "sidecast 1080p")
        sv_wall, sv_cpu = timed([SIDECAST, "run", str(src1080), "-o", str(tmp / "sc1080v"), "--snapshots-fps", "0",
                                 "--vertical", "on", "--no-progress"], "sidecast 1080p + vertical")
        sc7_wall, sc7_cpu = timed([SIDECAST, "run", str(src720), "-o", str(tmp / "sc720"), "--snapshots-fps", "0",
                                   "--no-progress"], "sidecast 720p")
        ff7_wall, ff7_cpu = timed(ffmpeg_ladder_cmd(src720, tmp / "ff720", 1280, 720), "ffmpeg 720p")
        size = lambda d: sum(p.stat().st_size for p in d.rglob("*.ts"))  # noqa: E731

        print(f"\n{'1080p30 → 1080/720/480/360 + AAC':38s} {'wall s':>8s} {'x real time':>12s} {'CPU s':>8s} {'MB out':>8s}")
        print(f"{'ffmpeg CLI (baseline)':38s} {ff_wall:8.2f} {args.seconds / ff_wall:12.2f} {ff_cpu:8.2f} "
              f"{size(tmp / 'ff1080') / 1e6:8.2f}")
        print(f"{'sidecast':38s} {sc_wall:8.2f} {args.seconds / sc_wall:12.2f} {sc_cpu:8.2f} "
              f"{size(tmp / 'sc1080') / 1e6:8.2f}")
        ratio = sc_cpu / ff_cpu
        print(f"sidecast / ffmpeg CPU: {ratio:.3f} (target ≤ 1.15 -> {'MET' if ratio <= 1.15 else 'NOT MET'}); "
              f"wall ratio {sc_wall / ff_wall:.3f}")
        extra = sv_cpu / sc_cpu - 1
        print(f"{'sidecast + vertical 9:16 ladder':38s} {sv_wall:8.2f} {args.seconds / sv_wall:12.2f} {sv_cpu:8.2f} "
              f"{size(tmp / 'sc1080v') / 1e6:8.2f}")
        print(f"vertical rendition adds {extra * 100:.1f}% CPU to the ladder (target ≤ 20% -> "
              f"{'MET' if extra <= 0.20 else 'NOT MET'})")
        print(f"\n{'720p30 → 720/480/360 + AAC':38s} {'wall s':>8s} {'x real time':>12s} {'CPU s':>8s}")
        print(f"{'ffmpeg CLI (baseline)':38s} {ff7_wall:8.2f} {args.seconds / ff7_wall:12.2f} {ff7_cpu:8.2f}")
        print(f"{'sidecast':38s} {sc7_wall:8.2f} {args.seconds / sc7_wall:12.2f} {sc7_cpu:8.2f}")
        rt = args.seconds / sc7_wall
        print(f"720p30 real time or better on this machine: {'MET' if rt >= 1.0 else 'NOT MET'} ({rt:.2f}x)")
        if not args.skip_uhd:
            # Memory: a 4K60 source into the default ladder. Peak RSS must follow the ladder, not the input.
            uhd = tmp / "uhd60.mp4"
            make_source(uhd, "3840x2160", args.uhd_seconds, rate=60)
            uw, uc = timed([SIDECAST, "run", str(uhd), "-o", str(tmp / "scuhd"), "--snapshots-fps", "0",
                            "--no-progress"], "sidecast 4K60")
            timed(ffmpeg_ladder_cmd(uhd, tmp / "ffuhd", 3840, 2160), "ffmpeg 4K60")
            print(f"\n{'2160p60 → 1080/720/480/360 + AAC':38s} {'wall s':>8s} {'x real time':>12s} {'CPU s':>8s}")
            print(f"{'sidecast':38s} {uw:8.2f} {args.uhd_seconds / uw:12.2f} {uc:8.2f}")
        print(f"\n{'peak resident memory (MB)':38s}")
        for label, mb in PEAK_RSS.items():
            print(f"  {label:36s} {mb:8.0f}")
        if "sidecast 4K60" in PEAK_RSS:
            mb = PEAK_RSS["sidecast 4K60"]
            print(f"4K60 default ladder peak RSS {mb:.0f} MB (target ≤ 1536 MB -> {'MET' if mb <= 1536 else 'NOT MET'})")
        if not args.skip_live:
            lat = live_latency(src720, tmp)
            if lat:
                print(f"\nlive RTMP publish → segment listed (2 s segments, 720p30 ladder, {len(lat)} segments): "
                      f"median {statistics.median(lat):.2f} s, max {max(lat):.2f} s")
                print("  measured from the publisher sending the segment's last frame; includes RTMP buffering and probing")


if __name__ == "__main__":
    main()
