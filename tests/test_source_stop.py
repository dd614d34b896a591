"""Stopping a live pull from another thread, as `sidecast server` stops a stream's worker.

The worker's command thread asks the source to stop while the ingest thread is inside FFmpeg's
``av_read_frame`` waiting for the next HLS segment. Closing the container from the command thread freed
what that read was using: every stopped passthrough pull ended with SIGSEGV (rc -11) instead of 0. The
reader runs in a child process here, so a crash is an exit status to assert on, not a dead test runner.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.server_helpers import live_hls

READER = r"""
import sys, threading
from sidecast.core.sources import PacketEvent, Source, VideoEvent

src = Source(sys.argv[1], passthrough=sys.argv[2] == "1", reconnect_timeout=5.0)
seen = threading.Event()
count = 0

def read() -> None:
    global count
    for ev in src.events():
        if isinstance(ev, (VideoEvent, PacketEvent)):
            count += 1
            if count >= 30:
                seen.set()

t = threading.Thread(target=read)
t.start()
if not seen.wait(60):
    print("no video from the live source", file=sys.stderr)
    sys.exit(3)
src.stop()            # from this thread, while the reader waits inside FFmpeg for the next segment
t.join(30)
if t.is_alive():
    print("the reader did not stop", file=sys.stderr)
    sys.exit(4)
src.close()
print(count)
"""


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x180:rate=25:duration=8", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "25", "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
    return path


@pytest.mark.parametrize("passthrough", [True, False], ids=["passthrough", "decoded"])
def test_stopping_a_live_pull_from_another_thread_ends_cleanly(tmp_path: Path, clip: Path, passthrough: bool) -> None:
    with live_hls(tmp_path, clip) as url:
        r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", READER, url, "1" if passthrough else "0"],
                           capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (r.returncode, r.stderr[-3000:])
    assert int(r.stdout.strip()) >= 30
