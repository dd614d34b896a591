"""Frame transport to sidecars: gRPC bytes vs shared memory, against an in-process memcpy floor.

Measured in one run, on this machine:
- core CPU ms per 1080p yuv420p frame and frames/s delivered to one sidecar process (it asks for every frame
  at source size) over the bytes path and the shared-memory path;
- a plain memcpy of the same frame (the physical floor of any transport);
- the fan-out of one frame to 3 sidecars that ask for the same 320 px gray frame: conversions per frame.

Run: .venv/bin/python bench/transport.py [--frames 300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sidecast.contract.records import StreamInfo  # noqa: E402
from sidecast.core.fanout import FanOut  # noqa: E402
from sidecast.core.links import SidecarLink  # noqa: E402
from sidecast.core.timeline import Timeline  # noqa: E402

SINK = r'''
import sys
sys.path.insert(0, {root!r})
from sidecast.sidecars.runtime import Description, Sidecar, VideoWants
from sidecast.sidecars.runtime.server import build_server

class Sink(Sidecar):
    name = "sink"
    def describe(self):
        return Description(name="sink", video=VideoWants(fps=0, width={width}, pixel_format="{fmt}"))
    def on_video(self, frame):
        frame.image[::4096].sum()  # touch the pixels, as a model would read them

server, _, _ = build_server(Sink, sys.argv[1])
server.start()
server.wait_for_termination()
'''


def start_sink(sock: Path, width: int, fmt: str) -> subprocess.Popen[bytes]:
    code = SINK.format(root=str(ROOT), width=width, fmt=fmt)
    return subprocess.Popen([sys.executable, "-c", code, f"unix://{sock}"])


def make_frames(n: int, w: int = 1920, h: int = 1080) -> list[av.VideoFrame]:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 255, size=(h * 3 // 2, w), dtype=np.uint8)
    frames = []
    for i in range(min(n, 8)):
        f = av.VideoFrame.from_ndarray(np.roll(base, i * 7, axis=1), format="yuv420p")
        frames.append(f)
    return [frames[i % len(frames)] for i in range(n)]


def run_transport(mode: str, frames: list[av.VideoFrame], tmp: Path, sidecars: int = 1, width: int = 0,
                  fmt: str = "yuv420p") -> dict[str, float]:
    procs, links = [], []
    timeline = Timeline()
    for i in range(sidecars):
        sock = tmp / f"{mode}-{i}.sock"
        procs.append(start_sink(sock, width, fmt))
        link = SidecarLink(f"sink{i}", f"unix://{sock}", timeline, lossless=True, allow_shm=(mode == "shm"),
                           stall_timeout=30)
        link.start()
        links.append(link)
    try:
        for link in links:
            assert link.wait_described(30), "sink did not start"
        h, w = frames[0].height, frames[0].width
        fan = FanOut(links, mode)
        info = StreamInfo("bench", w, h, 30.0, 2.0)
        fan.negotiate(info)
        for link in links:
            link.connected.wait(10)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for i, f in enumerate(frames):
            fan.video(f, i / 30.0, 0)
        last = (len(frames) - 1) / 30.0
        if not timeline.wait_covered(last, time.monotonic() + 120):
            raise RuntimeError("sink did not catch up")
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        conversions = sum(g.conversions for g in fan.video_groups)
        transports = {lk.transport for lk in links}
        fan.close()
        return {"fps": len(frames) / wall, "cpu_ms": cpu * 1000 / len(frames), "conversions": conversions,
                "groups": len(fan.video_groups), "transport": ",".join(sorted(transports))}  # type: ignore[dict-item]
    finally:
        for link in links:
            link.close()
        for p in procs:
            p.terminate()
            p.wait()


def memcpy_floor(frames: list[av.VideoFrame], repeat: int = 200) -> float:
    src = np.ascontiguousarray(frames[0].to_ndarray())
    dst = np.empty_like(src)
    t0 = time.process_time()
    for _ in range(repeat):
        np.copyto(dst, src)
    return (time.process_time() - t0) * 1000 / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=300)
    args = ap.parse_args()
    frames = make_frames(args.frames)
    print(f"transport bench: {args.frames} frames of 1920x1080 yuv420p ({frames[0].width * frames[0].height * 3 // 2 / 1e6:.1f} MB each), "
          f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    floor = memcpy_floor(frames)
    with tempfile.TemporaryDirectory(prefix="sc-bench-") as tmp_s:
        tmp = Path(tmp_s)
        res_bytes = run_transport("bytes", frames, tmp)
        res_shm = run_transport("shm", frames, tmp)
        fan = run_transport("shm", frames[:120], tmp, sidecars=3, width=320, fmt="gray8")
    print(f"{'path':28s} {'frames/s':>10s} {'x real time@30':>15s} {'core CPU ms/frame':>18s}")
    print(f"{'memcpy (floor)':28s} {'':>10s} {'':>15s} {floor:18.3f}")
    for name, r in (("gRPC bytes", res_bytes), ("shared memory", res_shm)):
        print(f"{name + ' (' + str(r['transport']) + ')':28s} {r['fps']:10.1f} {r['fps'] / 30:15.1f} {r['cpu_ms']:18.3f}")
    print(f"shm vs bytes: {res_bytes['cpu_ms'] / res_shm['cpu_ms']:.1f}x less core CPU, "
          f"{res_shm['fps'] / res_bytes['fps']:.1f}x the frame rate")
    print(f"targets: shm ≤ 0.5 ms core CPU/frame -> {'MET' if res_shm['cpu_ms'] <= 0.5 else 'NOT MET'}; "
          f"≥ 10x real time -> {'MET' if res_shm['fps'] >= 300 else 'NOT MET'}")
    per_frame = fan["conversions"] / 120
    print(f"fan-out to 3 sidecars asking 320 px gray: {fan['groups']:.0f} conversion group, "
          f"{per_frame:.2f} conversions per source frame (target 1.00) -> {'MET' if per_frame == 1 else 'NOT MET'}")


if __name__ == "__main__":
    main()
