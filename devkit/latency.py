"""Glass-to-glass latency helpers: a clock-stamped live source and the arithmetic of its figures.

``StampedSource`` is the camera: Python draws every 1280x720 frame (the frame-number barcode of
``devkit.barcode`` across the top quarter, a scrolling texture below it so the encoders have real motion to
work on), hands it to an ``ffmpeg`` process that encodes it as a live encoder would (x264 veryfast,
zero-latency tuning, a keyframe every second) and publishes it (RTMP/FLV) in real time. The moment each
frame is written to ffmpeg is logged (``sent[n]``, wall clock): that is when the camera "saw" it, so the
publisher's own encode and the network hop are part of every figure, as they are for a real viewer.

A player reads the number off the picture it presents (tests/browser/barcode.mjs) and notes when it was
shown; ``latencies`` pairs the two.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from devkit.barcode import barcode_band


def texture(w: int, h: int, seed: int = 7) -> np.ndarray:
    """A smooth deterministic luma texture (low-passed noise plus a grid), twice as wide as the picture so
    it can scroll: detail an encoder must code, not noise it cannot."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, size=(h // 16 + 2, (2 * w) // 16 + 2)).astype(np.float32)
    big = np.kron(coarse, np.ones((16, 16), np.float32))[:h, :2 * w]
    k = np.ones(9, np.float32) / 9  # soften the blocks a little (separable box blur)
    big = np.apply_along_axis(lambda r: np.convolve(r, k, mode="same"), 1, big)
    big = np.apply_along_axis(lambda c: np.convolve(c, k, mode="same"), 0, big)
    big[::48, :] = 235
    big[:, ::48] = 235
    return np.clip(big, 16, 235).astype(np.uint8)


class StampedSource:
    """A real-time publisher of barcode-stamped frames: ``start()``, then ``sent`` fills as frames go out.

    ``target`` is what ffmpeg writes (an ``rtmp://`` URL, or a file path for tests), ``fmt`` its format.
    ``speech``: a WAV file looped under the picture as AAC (for caption sidecars); None = video only.
    ``frames``: stop after that many (None = until ``stop()``).
    """

    def __init__(self, target: str, *, size: tuple[int, int] = (1280, 720), fps: int = 30, fmt: str = "flv",
                 speech: Path | None = None, frames: int | None = None, bitrate_k: int = 4000,
                 log: Path | None = None) -> None:
        self.target, self.size, self.fps, self.fmt = target, size, fps, fmt
        self.speech, self.frames, self.bitrate_k, self.log = speech, frames, bitrate_k, log
        self.sent: dict[int, float] = {}
        self.late_frames = 0  # frames written more than a frame interval after they were due (pipe full)
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        w, h = size
        self._band_h = h // 4
        self._texture = texture(w, h - self._band_h)

    def command(self) -> list[str]:
        w, h = self.size
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
               "-s", f"{w}x{h}", "-framerate", str(self.fps), "-i", "-"]
        if self.speech is not None:
            cmd += ["-re", "-stream_loop", "-1", "-i", str(self.speech)]
        cmd += ["-map", "0:v", "-vf", "format=yuv420p", "-c:v", "libx264", "-preset", "veryfast", "-tune",
                "zerolatency", "-g", str(self.fps), "-keyint_min", str(self.fps), "-sc_threshold", "0",
                "-b:v", f"{self.bitrate_k}k", "-maxrate", f"{self.bitrate_k}k", "-bufsize", f"{self.bitrate_k}k"]
        if self.speech is not None:
            cmd += ["-map", "1:a", "-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]
        return [*cmd, "-f", self.fmt, self.target]

    def frame(self, n: int) -> np.ndarray:
        """Frame ``n``'s luma: the barcode band over the texture, scrolled 4 px a frame."""
        w, h = self.size
        img = np.empty((h, w), np.uint8)
        img[:self._band_h] = barcode_band(n, w, self._band_h)
        off = (4 * n) % w
        img[self._band_h:] = self._texture[:, off:off + w]
        return img

    def start(self) -> StampedSource:
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=self.log.open("wb") if self.log else subprocess.DEVNULL)
        self._thread = threading.Thread(target=self._run, name="stamped-source", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        start = time.time()
        n = 0
        interval = 1 / self.fps
        try:
            while not self._stop.is_set() and (self.frames is None or n < self.frames):
                img = self.frame(n)
                wait = start + n * interval - time.time() if n else 0.0
                if wait > 0:
                    time.sleep(wait)
                elif wait < -interval:
                    self.late_frames += 1
                self.sent[n & 0xFFFF] = time.time()
                self.proc.stdin.write(img.tobytes())
                if n == 0:  # the clock starts once ffmpeg has started reading: no burst of frames due meanwhile
                    start = time.time()
                n += 1
        except (BrokenPipeError, ValueError):
            pass  # ffmpeg went away (its log says why); stop() reports its exit status
        finally:
            try:
                self.proc.stdin.close()
            except OSError:
                pass

    def wait(self, timeout: float) -> int:
        """Wait for a bounded source (``frames``) to finish; ffmpeg's exit status."""
        assert self._thread is not None and self.proc is not None
        self._thread.join(timeout)
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.proc is None:
            return None
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            return self.proc.wait(10)


# Chromium's renderer thread that clocks a muted <video>: with the element muted, Chromium plays its audio
# into a null sink driven by a timer on this thread, and the media clock is the audio clock.
MEDIA_CLOCK_THREADS = frozenset({"Media"})
BROWSER_PROCESSES = frozenset({"chromium", "chrome", "headless_shell"})


def _proc_children(root: int) -> set[int]:
    """``root`` and every process below it (by parent pid, read from /proc once)."""
    parent: dict[int, int] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        parent[int(name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        frontier += kids
    return found


def _comm(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


class PlayerClock:
    """Keeps the measuring browser's media clock on the wall clock: the real-time scheduling a viewer's
    device gives its audio clock, given here to the one thread of the player that keeps it.

    Why: a muted ``<video>`` with an audio track is clocked by Chromium's null audio sink, a timer on the
    renderer's ``Media`` thread that *skips* the ticks it was late for. On a machine whose cores the
    pipeline fills (the bench's 2 cores: publisher, sidecast, sidecars and the browser), that thread is
    late often, every skipped tick is media time lost, and the player plays slower than real time with no
    stall: 60 s in 69-72 s (2026-12-01, (k)), its distance to the live edge growing by ~1.5 s a minute
    however fast the parts come. A viewer's own device is not running the pipeline; its audio clock does
    not lose time. Nothing else changes: the browser still fetches, decodes and shows every frame at the
    same priority as the pipeline, and a thread at real-time priority runs *before* the pipeline, so this
    can only take CPU from sidecast, never give it any.

    In Debian's Chromium 156 here that is the playing renderer's two ``Media`` threads (the media pipeline's; one
    used ~5 % of a core while playing (k), 2026-12-01), not its decoder or compositor threads.

    A thread polls the processes below ``root`` (the bench: node, then Chromium) every ``every`` seconds
    and puts each thread named in ``threads`` of a process named in ``processes`` at SCHED_RR
    ``priority``, once. Best effort: without the right (CAP_SYS_NICE) ``failed`` counts the refusals and
    the clock stays as it was.
    """

    def __init__(self, root: int | None = None, *, threads: Iterable[str] = MEDIA_CLOCK_THREADS,
                 processes: Iterable[str] = BROWSER_PROCESSES, priority: int = 1, every: float = 0.25) -> None:
        self.root = os.getpid() if root is None else root
        self.threads, self.processes = frozenset(threads), frozenset(processes)
        self.priority, self.every = priority, every
        self.raised: set[int] = set()
        self.failed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def raise_once(self) -> int:
        """One pass: the matching threads not raised yet are raised now; returns how many."""
        done = 0
        for pid in _proc_children(self.root):
            if pid == self.root or _comm(f"/proc/{pid}/comm") not in self.processes:
                continue
            try:
                tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
            except OSError:
                continue
            for tid in tids:
                if tid in self.raised or _comm(f"/proc/{pid}/task/{tid}/comm") not in self.threads:
                    continue
                try:
                    os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(self.priority))
                except ProcessLookupError:
                    continue
                except OSError:
                    self.failed += 1
                    self.raised.add(tid)  # do not ask again every pass
                    continue
                self.raised.add(tid)
                done += 1
        return done

    def start(self) -> PlayerClock:
        self._thread = threading.Thread(target=self._run, name="player-clock", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.raise_once()

    def stop(self) -> int:
        """Stop polling; the number of threads raised."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        return len(self.raised) - self.failed


def clock_rate(samples: list[tuple[float, float]]) -> float | None:
    """How fast a player's media time ran against the wall clock: ``(wall seconds, currentTime)`` pairs
    in order, as a least-squares slope (1.0 = real time). None with fewer than two distinct times."""
    try:
        return statistics.linear_regression([t for t, _ in samples], [c for _, c in samples]).slope
    except statistics.StatisticsError:  # fewer than two samples, or one wall time only
        return None


def latencies(frames: list[dict[str, Any]], sent: dict[int, float]) -> list[float]:
    """Seconds from send to display for every frame a player read (``{n, shownAt}``, shownAt in ms)."""
    return [f["shownAt"] / 1000 - sent[f["n"]] for f in frames if f["n"] in sent]


def percentile(values: list[float], q: float) -> float:
    """The value below which a fraction ``q`` of ``values`` lies (nearest rank; no interpolation)."""
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


@dataclass
class Figures:
    """One configuration's glass-to-glass distribution."""

    samples: int
    median: float
    p95: float
    max: float
    min: float

    @classmethod
    def of(cls, values: list[float]) -> Figures | None:
        if not values:
            return None
        return cls(len(values), statistics.median(values), percentile(values, 0.95), max(values), min(values))


__all__ = ["BROWSER_PROCESSES", "MEDIA_CLOCK_THREADS", "Figures", "PlayerClock", "StampedSource", "clock_rate",
           "latencies", "percentile", "texture"]
