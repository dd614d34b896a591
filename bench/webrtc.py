"""WebRTC figures, measured in one run on this machine: the WHEP preview's glass-to-glass latency in the
real browser, WHIP publisher-connect to first HLS segment beside RTMP (the project's default ingest), and
how many WHEP viewers one core serves.

1. Glass-to-glass: aiortc publishes 1280x720 30 fps frames that carry their number as a barcode to
   ``sidecast run whip://... --whep`` (the default 720/480/360 ladder running); the preview page plays
   /whep in headless Chromium, and every frame it presents is read back (requestVideoFrameCallback, drawn
   to a canvas) and matched with the moment the publisher handed that frame to its encoder. Video only and
   with audio (the browser's lip sync may hold video for audio).
2. Connect to first segment: from the WHIP POST (or the RTMP connect of ``ffmpeg -re``, same picture
   size, same segment length) to the first segment listed in the 360p playlist.
3. Viewers: N aiortc viewers (which do not decode) on one preview; sidecast's own CPU (from /proc) per
   second of stream for each N, so the cost of the shared encode and of each viewer can be told apart.

Run under the CPU lock: flock /tmp/sidecast-cpu.lock .venv/bin/python bench/webrtc.py [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devkit.webrtc import ThreadedPublisher  # noqa: E402
from tests.webrtc_support import LiveRun, port_open, run_pages  # noqa: E402

KEY = "bench"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its threads (children not included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def glass_to_glass(seconds: float, work: Path) -> list[dict[str, object]]:
    rows = []
    with LiveRun(work / "g2g", KEY, "--whep", serve=True) as run:
        pub = ThreadedPublisher(run.endpoint, KEY)
        try:
            time.sleep(3)  # the ladder settles
            for label, query in (("video only", "audio=0"), ("video + audio", "audio=1")):
                report = run_pages([{"role": "preview", "url": f"{run.base}/preview?{query}"}], seconds=seconds)
                page = report["pages"][0]
                frames = page["frames"]
                lat = [f["shownAt"] / 1000 - pub.video.sent[f["n"]] for f in frames if f["n"] in pub.video.sent]
                shown_span = (frames[-1]["n"] - frames[0]["n"] + 1) if frames else 0
                rows.append({"case": label, "frames_read": len(lat), "frames_sent_in_span": shown_span,
                             "median_s": statistics.median(lat) if lat else None,
                             "p95_s": pct(lat, 0.95) if lat else None, "max_s": max(lat) if lat else None,
                             "unread": page.get("unread"), "rtc": page.get("rtc"),
                             "size": (page["stats"]["width"], page["stats"]["height"])})
        finally:
            pub.close()
    return rows


def first_segment_after(playlist: Path, t0: float, timeout: float = 60) -> float | None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if playlist.exists() and ".ts" in playlist.read_text():
            return time.time() - t0
        time.sleep(0.02)
    return None


def connect_to_first_segment(work: Path, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"whip": [], "rtmp": []}
    clip = work / "clip720.flv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=1280x720:rate=30:duration=20", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=48000:duration=20", "-c:v", "libx264", "-preset", "veryfast",
                    "-tune", "zerolatency", "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip)], check=True)
    for i in range(runs):
        with LiveRun(work / f"whip{i}", KEY) as run:
            t0 = time.time()
            pub = ThreadedPublisher(run.endpoint, KEY)
            took = first_segment_after(run.outdir / "video" / "360p" / "index.m3u8", t0)
            pub.close()
            if took is not None:
                out["whip"].append(took)
        outdir = work / f"rtmp{i}"
        from tests.conftest import SIDECAST, free_port

        port = free_port()
        proc = subprocess.Popen([SIDECAST, "run", f"rtmp://127.0.0.1:{port}/live/{KEY}", "-o", str(outdir)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not port_open(port):
                time.sleep(0.05)
            t0 = time.time()
            ff = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy",
                                   "-f", "flv", f"rtmp://127.0.0.1:{port}/live/{KEY}"])
            took = first_segment_after(outdir / "video" / "360p" / "index.m3u8", t0)
            ff.terminate()
            ff.wait()
            if took is not None:
                out["rtmp"].append(took)
        finally:
            proc.terminate()
            proc.wait(60)
    return out


async def _viewer(base: str) -> object:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from devkit.webrtc import post_offer

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    t = pc.addTransceiver("video", direction="recvonly")
    pc.createDataChannel("captions")
    await pc.setLocalDescription(await pc.createOffer())
    r = await post_offer(base + "/whep", pc.localDescription.sdp, None)
    assert r.status_code == 201, r.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
    t.receiver._enabled = False  # a bench viewer: receive and report, but do not decode (its CPU is not ours)
    return pc


def preview_stats(base: str) -> dict[str, object]:
    import httpx

    return httpx.post(base + "/api/preview", json={}, timeout=10).json()


def viewers_per_core(work: Path, counts: list[int], window: float) -> list[dict[str, float]]:
    """sidecast's CPU with N viewers: the whole process, and the preview's part (the shared encoder thread
    plus the serving loop, where each viewer's packets are packetized, encrypted and sent)."""
    rows = []
    with LiveRun(work / "viewers", KEY, "--whep", "--whep-viewers", str(max(counts)), serve=True) as run:
        pub = ThreadedPublisher(run.endpoint, KEY)
        loop = asyncio.new_event_loop()
        pcs: list[object] = []
        try:
            time.sleep(3)
            for n in counts:
                while len(pcs) < n:
                    pcs.append(loop.run_until_complete(_viewer(run.base)))
                loop.run_until_complete(asyncio.sleep(3))  # connected, keyframe sent
                s0, c0, t0 = preview_stats(run.base), cpu_seconds(run.proc.pid), time.time()
                loop.run_until_complete(asyncio.sleep(window))
                s1, c1, t1 = preview_stats(run.base), cpu_seconds(run.proc.pid), time.time()
                dt = t1 - t0
                enc = (float(s1["encoder_cpu_s"]) - float(s0["encoder_cpu_s"])) / dt  # type: ignore[arg-type]
                # the serving loop is known once a viewer has connected (0 viewers: nothing is served)
                srv = ((float(s1["loop_cpu_s"]) - float(s0["loop_cpu_s"])) / dt  # type: ignore[arg-type]
                       if s0["loop_cpu_s"] is not None and s1["loop_cpu_s"] is not None else 0.0)
                frames = sum(s1["frames_encoded"].values()) - sum(s0["frames_encoded"].values())  # type: ignore[union-attr]
                rows.append({"viewers": n, "process_cores": (c1 - c0) / dt, "encoder_cores": enc, "serving_cores": srv,
                             "connected": s1["viewers"], "encoded_fps": frames / dt})
        finally:
            for pc in pcs:
                loop.run_until_complete(pc.close())  # type: ignore[attr-defined]
            pub.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=30, help="preview watched per case")
    ap.add_argument("--runs", type=int, default=3, help="connect-to-first-segment runs per ingest")
    ap.add_argument("--viewers", default="0,1,4,8,16")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-webrtc-") as tmp:
        work = Path(tmp)
        g2g = glass_to_glass(args.seconds, work)
        print("\n1. WHEP preview glass-to-glass (WHIP 1280x720 in, 360p H.264 preview, Chromium):")
        for r in g2g:
            print(f"   {r['case']:14s} median {r['median_s']:.3f} s  p95 {r['p95_s']:.3f} s  max {r['max_s']:.3f} s  "
                  f"frames read {r['frames_read']}/{r['frames_sent_in_span']} sent  unread {r['unread']}  "
                  f"size {r['size']}  rtc {r['rtc']}", flush=True)
        first = connect_to_first_segment(work, args.runs)
        print("\n2. publisher connect -> first 360p segment listed (2 s segments, 720/480/360 ladder):")
        for k, v in first.items():
            shown = ", ".join(f"{x:.2f}" for x in v)
            print(f"   {k:5s} median {statistics.median(v):.2f} s  ({shown})" if v else f"   {k}: no segment", flush=True)
        counts = [int(x) for x in args.viewers.split(",")]
        rows = viewers_per_core(work, counts, window=10)
        print("\n3. WHEP viewers: CPU of the whole process / the shared preview encoder / the serving loop:")
        for r in rows:
            print(f"   {r['viewers']:3d} viewers ({r['connected']} connected): process {r['process_cores']:.2f} cores, "
                  f"encoder {r['encoder_cores']:.3f} ({r['encoded_fps']:.1f} fps), serving {r['serving_cores']:.3f}",
                  flush=True)
        def slope(key: str) -> float:
            pts = [(r["viewers"], r[key]) for r in rows if r["viewers"] >= 1]
            mx, my = statistics.mean(p[0] for p in pts), statistics.mean(p[1] for p in pts)
            return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)

        if len([r for r in rows if r["viewers"] >= 1]) >= 2:
            enc = statistics.mean(r["encoder_cores"] for r in rows if r["viewers"] >= 1)
            for key, what in (("serving_cores", "serving loop"), ("process_cores", "whole process (conservative)")):
                per = slope(key)
                print(f"   each viewer costs {per:.4f} cores by the {what} (least squares); with the shared encode "
                      f"({enc:.3f} cores, whatever the count) one core serves about "
                      f"{int((1 - enc) / per) if per > 0 else 'n/a'} viewers", flush=True)
            print(f"   a per-viewer encode would add {enc:.3f} cores for every viewer instead", flush=True)
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"g2g": g2g, "first_segment": first, "viewers": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
