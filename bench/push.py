"""Push ingest figures: how fast a publisher gets on air, and what relaying costs.

Figures printed:
- publisher connect → first decoded video frame, sidecast's RTMP server (``av.open`` on the session)
  against FFmpeg's own RTMP listener (PyAV ``listen=1``, what ``sidecast run rtmp://`` used before), same
  clip, same run; and the same for sidecast's SRT server;
- publisher connect → first segment listed, ``sidecast run rtmp://...`` and ``srt://...?mode=listener``
  (single stream, 360p rung, 2 s segments): the time a user waits for the first segment;
- relay: N concurrent RTMP publishers (one ffmpeg process, N outputs, a CBR clip) into one server process
  whose readers drain every session; the server process's CPU per publisher and per Mb/s, and the
  publishers one core holds at that rate. Baseline in the same run: one FFmpeg RTMP listener per
  publisher (``ffmpeg -listen 1 -i rtmp://... -c copy -f null``), the per-stream cost of the old design.

Run under the shared lock and note the load:
    flock /tmp/sidecast-cpu.lock .venv/bin/python bench/push.py [--publishers 1,8,32] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.ports import free_port  # noqa: E402
from sidecast.core.push import (  # noqa: E402
    Grant,
    Limits,
    Peer,
    PushSession,
    Refusal,
    RtmpServer,
    SrtServer,
    StaticAuthority,
)

SIDECAST = str(Path(sys.executable).parent / "sidecast")
FF = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]




def make_clip(path: Path, seconds: float, size: str, kbps: int) -> None:
    """A CBR H.264 + AAC clip (filler keeps the rate constant, so Mb/s figures mean what they say)."""
    subprocess.run([*FF, "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=30:duration={seconds}", "-f", "lavfi",
                    "-i", f"sine=frequency=300:sample_rate=48000:duration={seconds}", "-vf", "noise=alls=8:allf=t",
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-b:v", f"{kbps}k", "-minrate", f"{kbps}k",
                    "-maxrate", f"{kbps}k", "-bufsize", f"{kbps // 2}k", "-x264-params", "nal-hrd=cbr:force-cfr=1",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k", str(path)], check=True)


def first_frame(container: av.container.InputContainer) -> None:
    for frame in container.decode(video=0):
        if frame is not None:
            return


# ------------------------------------------------------------------ connect → first frame


def connect_to_frame_ours(clip: Path, proto: str) -> float:
    sessions: queue.Queue[PushSession] = queue.Queue()
    port = free_port()
    if proto == "rtmp":
        server: RtmpServer | SrtServer = RtmpServer("127.0.0.1", port, StaticAuthority({"k"}), sessions.put)
        url = f"rtmp://127.0.0.1:{port}/live/k"
        fmt = "flv"
    else:
        server = SrtServer("127.0.0.1", port, StaticAuthority({"k"}), sessions.put)
        url = f"srt://127.0.0.1:{port}?mode=caller&streamid=k"
        fmt = "mpegts"
    with server:
        t0 = time.perf_counter()
        pub = subprocess.Popen([*FF, "-re", "-i", str(clip), "-t", "4", "-c", "copy", "-f", fmt, url])
        try:
            s = sessions.get(timeout=20)
            with av.open(s, format=s.format) as c:
                first_frame(c)
                took = time.perf_counter() - t0
        finally:
            pub.kill()
            pub.wait()
    return took


def connect_to_frame_ffmpeg_listener(clip: Path) -> float:
    port = free_port()
    got: list[float] = []
    t0 = [0.0]

    def listen() -> None:
        with av.open(f"rtmp://127.0.0.1:{port}/live/k", options={"listen": "1", "timeout": "20"}) as c:
            first_frame(c)
            got.append(time.perf_counter() - t0[0])

    t = threading.Thread(target=listen)
    t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:   # wait for the listener without connecting to it
        out = subprocess.run(["ss", "-ltn", f"sport = :{port}"], capture_output=True, text=True).stdout
        if str(port) in out:
            break
        time.sleep(0.02)
    t0[0] = time.perf_counter()
    pub = subprocess.Popen([*FF, "-re", "-i", str(clip), "-t", "4", "-c", "copy", "-f", "flv",
                            f"rtmp://127.0.0.1:{port}/live/k"])
    t.join(30)
    pub.kill()
    pub.wait()
    return got[0]


# ------------------------------------------------------------------ connect → first segment


def connect_to_segment(clip: Path, proto: str, tmp: Path) -> float:
    port = free_port()
    out = tmp / f"seg-{proto}-{port}"
    if proto == "rtmp":
        src, pub_url, fmt = f"rtmp://127.0.0.1:{port}/live/k", f"rtmp://127.0.0.1:{port}/live/k", "flv"
    else:
        src = f"srt://127.0.0.1:{port}?mode=listener&passphrase=bench-passphrase"
        pub_url, fmt = f"srt://127.0.0.1:{port}?mode=caller&passphrase=bench-passphrase", "mpegts"
    proc = subprocess.Popen([SIDECAST, "run", src, "-o", str(out), "--ladder", "360p:800k", "--window", "0",
                             "--reconnect-timeout", "1", "--snapshots-fps", "0", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:   # wait until it listens
        if "listening for" in line:
            break
    playlist = out / "video" / "360p" / "index.m3u8"
    t0 = time.perf_counter()
    pub = subprocess.Popen([*FF, "-re", "-i", str(clip), "-t", "6", "-c", "copy", "-f", fmt, pub_url])
    try:
        while time.perf_counter() - t0 < 30:
            if playlist.exists() and "#EXTINF" in playlist.read_text():
                return time.perf_counter() - t0
            time.sleep(0.01)
        raise SystemExit(f"no segment from {proto}")
    finally:
        pub.kill()
        pub.wait()
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ relay cost


def serve(port: int) -> None:
    """Child mode: an RTMP server whose readers drain every session; 'stats' on stdin prints its counters."""
    relayed = [0]
    lock = threading.Lock()

    class Any:
        def authorize(self, protocol: str, key: str, peer: Peer) -> Grant | Refusal:
            return Grant(key)

    def drain(s: PushSession) -> None:
        while True:
            b = s.read(1 << 16)
            if not b:
                return
            with lock:
                relayed[0] += len(b)

    srv = RtmpServer("127.0.0.1", port, Any(), lambda s: threading.Thread(target=drain, args=(s,), daemon=True).start(),
                     limits=Limits(per_address=1024))
    srv.start()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "stats":
            r = resource.getrusage(resource.RUSAGE_SELF)
            print(json.dumps({"cpu": r.ru_utime + r.ru_stime, "relayed": relayed[0], "accepted": srv.accepted,
                              "connections": srv.connections, "t": time.perf_counter()}), flush=True)
    srv.close()


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def relay(clip: Path, n: int, seconds: float, kbps: int) -> dict[str, float]:
    port = free_port()
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline().strip() == "ready"

    def stats() -> dict[str, float]:
        child.stdin.write("stats\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        return dict(json.loads(child.stdout.readline()))  # type: ignore[union-attr]

    pubs = []
    for first in range(0, n, 8):   # one publishing ffmpeg per 8 streams: the publishers must not be the limit
        outs: list[str] = []
        for i in range(first, min(n, first + 8)):
            outs += ["-map", "0", "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{port}/live/stream-{i}"]
        pubs.append(subprocess.Popen([*FF, "-re", "-stream_loop", "-1", "-i", str(clip), "-t", str(seconds + 4),
                                      *outs]))
    try:
        time.sleep(2.0)   # all connected and streaming (warm-up is outside the window)
        a = stats()
        time.sleep(seconds)
        b = stats()
    finally:
        for pub in pubs:
            pub.kill()
            pub.wait()
        child.stdin.close()
        child.wait(10)
    wall = b["t"] - a["t"]
    mbps = (b["relayed"] - a["relayed"]) * 8 / wall / 1e6
    cpu = (b["cpu"] - a["cpu"]) / wall
    return {"n": n, "accepted": b["accepted"], "mbps": mbps, "cpu": cpu}


def relay_ffmpeg_listeners(clip: Path, n: int, seconds: float) -> dict[str, float]:
    ports = [free_port() for _ in range(n)]
    listeners = [subprocess.Popen([*FF, "-listen", "1", "-i", f"rtmp://127.0.0.1:{p}/live/k", "-map", "0",
                                   "-c", "copy", "-f", "null", "-"], stderr=subprocess.DEVNULL) for p in ports]
    for p in ports:
        deadline = time.monotonic() + 10
        while str(p) not in subprocess.run(["ss", "-ltn", f"sport = :{p}"], capture_output=True, text=True).stdout:
            if time.monotonic() > deadline:
                raise SystemExit("ffmpeg listener did not start")
            time.sleep(0.02)
    outs: list[str] = []
    for p in ports:
        outs += ["-map", "0", "-c", "copy", "-f", "flv", f"rtmp://127.0.0.1:{p}/live/k"]
    pub = subprocess.Popen([*FF, "-re", "-stream_loop", "-1", "-i", str(clip), "-t", str(seconds + 4), *outs])
    try:
        time.sleep(2.0)
        c0, t0 = sum(proc_cpu(x.pid) for x in listeners), time.perf_counter()
        time.sleep(seconds)
        c1, t1 = sum(proc_cpu(x.pid) for x in listeners), time.perf_counter()
    finally:
        pub.kill()
        pub.wait()
        for x in listeners:
            x.kill()
            x.wait()
    return {"n": n, "cpu": (c1 - c0) / (t1 - t0)}


def relay_figures(cbr: Path, args: argparse.Namespace) -> None:
    total_kbps = args.kbps + 128
    print(f"\nrelay: N publishers × {total_kbps / 1000:.2f} Mb/s (720p CBR + AAC), {args.seconds:g} s window")
    print("  (per Mb/s: CPU over what arrived; publishers/core: at that cost, each at the nominal rate)")
    print("  server              N  accepted  Mb/s in  CPU (core %)  per Mb/s  publishers/core")
    nominal = total_kbps / 1000
    for n in [int(x) for x in args.publishers.split(",")]:
        r = relay(cbr, n, args.seconds, args.kbps)
        per_mbps = r["cpu"] * 100 / max(r["mbps"], 1e-9)
        print(f"  sidecast RTMP   {n:5d}  {int(r['accepted']):8d}  {r['mbps']:7.1f}  {r['cpu'] * 100:12.1f}"
              f"  {per_mbps:7.3f} %  {100 / (per_mbps * nominal):12.0f}")
    for n in [int(x) for x in args.publishers.split(",") if int(x) <= 8]:
        r = relay_ffmpeg_listeners(cbr, n, args.seconds)
        mbps = n * nominal
        per_mbps = r["cpu"] * 100 / mbps
        print(f"  FFmpeg listeners{n:5d}  {n:8d}  {mbps:7.1f}  {r['cpu'] * 100:12.1f}"
              f"  {per_mbps:7.3f} %  {100 / (per_mbps * nominal):12.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--serve", type=int)
    ap.add_argument("--publishers", default="1,8,32")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--kbps", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--parts", default="frame,segment,relay", help="which figures: frame, segment, relay")
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    print(f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
          f"({os.cpu_count()} cores)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        small = tmp / "small.mp4"
        make_clip(small, 8, "640x360", 800)
        cbr = tmp / "cbr.mp4"
        make_clip(cbr, 10, "1280x720", args.kbps)
        parts = set(args.parts.split(","))
        if "frame" in parts:
            print("\nconnect → first decoded frame (640x360 at 800 kb/s, a keyframe every 2 s), "
                  f"median of {args.repeat}:")
            for name, fn in [("sidecast RTMP server", lambda: connect_to_frame_ours(small, "rtmp")),
                             ("FFmpeg RTMP listener (before)", lambda: connect_to_frame_ffmpeg_listener(small)),
                             ("sidecast SRT server", lambda: connect_to_frame_ours(small, "srt"))]:
                runs = [fn() for _ in range(args.repeat)]
                print(f"  {name:32s} {statistics.median(runs) * 1000:7.0f} ms  (runs: "
                      + ", ".join(f"{r * 1000:.0f}" for r in runs) + ")")
        if "segment" in parts:
            print(f"\nconnect → first segment listed (sidecast run, 360p rung, 2 s segments), median of {args.repeat}:")
            for proto in ("rtmp", "srt"):
                runs = [connect_to_segment(small, proto, tmp) for _ in range(args.repeat)]
                print(f"  {proto:5s} {statistics.median(runs):6.2f} s  (runs: "
                      + ", ".join(f"{r:.2f}" for r in runs) + ")")
        if "relay" in parts:
            relay_figures(cbr, args)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
