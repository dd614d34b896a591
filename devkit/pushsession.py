"""A push session for tests and benches of `sidecast server`: the bytes a protocol listener (core/push/) would
hand over, produced by a real ffmpeg publisher paced in real time (``-re``), as FLV (what RTMP carries) or
MPEG-TS (what SRT carries). It implements ``sidecast.core.server.push.RelayedSession`` (as ``sidecast.core.push.PushSession`` does)."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path


class FfmpegSession:
    """A ``RelayedSession`` whose bytes come from a real ffmpeg publisher (-re: paced as live)."""

    def __init__(self, stream_id: str, clip: Path, *, container: str = "flv", loop: bool = False,
                 peer: str = "127.0.0.1:40000") -> None:
        self.protocol = "rtmp" if container == "flv" else "srt"
        self.format = "flv" if container == "flv" else "mpegts"
        self.stream_id = stream_id
        self.peer = peer
        loop_args = ["-stream_loop", "-1"] if loop else []
        self.proc = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", *loop_args, "-i", str(clip),
             "-c", "copy", "-f", "flv" if container == "flv" else "mpegts", "pipe:1"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.closed = threading.Event()
        self.close_reason: str | None = None
        self.sent = 0

    def read(self, n: int = 65536) -> bytes:
        if self.closed.is_set() or self.proc.stdout is None:
            return b""
        try:
            data = self.proc.stdout.read1(n)
        except (OSError, ValueError):
            return b""
        self.sent += len(data)
        return data

    def close(self, reason: str = "") -> None:
        if not self.closed.is_set():
            self.close_reason = reason
            self.closed.set()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def finish(self) -> None:
        """The publisher ends its stream cleanly, as when its clip runs out (SIGTERM: ffmpeg writes out what it
        has and exits); with ``loop`` this is how a test ends the stream when it is ready, not when a clip
        that began before the worker was up happens to run out."""
        if self.proc.poll() is None:
            self.proc.terminate()

    def hang_up(self) -> None:
        """The publisher goes away (end of its stream)."""
        if self.proc.poll() is None:
            self.proc.kill()


__all__ = ["FfmpegSession"]
