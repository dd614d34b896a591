"""Memory of one autocrop sidecar process serving K streams at once (a server's shared sidecar).

Starts ``sidecast sidecar autocrop`` on a unix socket, opens K concurrent gRPC streams (1280x720 sources at
the sidecar's 5 fps, 480 px analysis frames), waits until each has had crops back, and prints the process's
RSS at each K, beside the same process with no stream open (its models are already loaded: the sidecar
loads and warms them before it listens).

    .venv/bin/python bench/autocrop_memory.py [--streams 1,4,8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sidecast.contract import pb2, pb2_grpc  # noqa: E402
from tests.conftest import wait_for, wait_healthy  # noqa: E402


def rss_mb(pid: int) -> float:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="1,4,8", help="stream counts, increasing (default 1,4,8)")
    args = ap.parse_args()
    counts = [int(x) for x in args.streams.split(",")]
    tmp = tempfile.mkdtemp(prefix="autocrop-mem-")
    addr = f"unix://{tmp}/autocrop.sock"
    exe = ROOT / ".venv" / "bin" / "sidecast"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "sidecast.core.cli"]
    proc = subprocess.Popen([*cmd, "sidecar", "autocrop", "--listen", addr, "--max-streams", str(max(counts) + 2)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    img = np.random.default_rng(1).integers(0, 255, (270, 480, 3), np.uint8).tobytes()
    stop = threading.Event()
    answered: list[int] = []
    lock = threading.Lock()

    def stream(k: int) -> None:
        def requests() -> Iterator[pb2.CoreMessage]:
            yield pb2.CoreMessage(start=pb2.StreamStart(stream_id=f"s{k}", source_width=1280, source_height=720,
                                                        source_fps=25.0, segment_duration=2.0))
            for i in range(15):
                yield pb2.CoreMessage(video=pb2.VideoFrame(seq=i, pts=i / 5, width=480, height=270,
                                                           pixel_format=pb2.PIXEL_FORMAT_BGR24, pixels=img,
                                                           segment=0))
            stop.wait()
            yield pb2.CoreMessage(end=pb2.StreamEnd())

        crops = 0
        with grpc.insecure_channel(addr) as ch:
            for msg in pb2_grpc.SidecarStub(ch).Stream(requests(), timeout=600):
                if msg.WhichOneof("body") == "result":
                    crops += 1
                    if crops == 3:
                        with lock:
                            answered.append(k)

    threads: list[threading.Thread] = []
    try:
        wait_healthy(addr, proc, 60, "the autocrop sidecar")
        print(f"no stream open: {rss_mb(proc.pid):.0f} MB")
        for n in counts:
            while len(threads) < n:
                t = threading.Thread(target=stream, args=(len(threads),), daemon=True)
                t.start()
                threads.append(t)
            wait_for(lambda: len(answered) >= n, 120, f"crops back on {n} streams")  # noqa: B023 (called here)
            time.sleep(1.0)  # let the last streams' first analyses settle their buffers
            print(f"{n} streams open: {rss_mb(proc.pid):.0f} MB", flush=True)
        print(f"load average: {os.getloadavg()[0]:.1f}")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
