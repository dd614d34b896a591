"""RTSP sources pulled from a real RTSP server: GStreamer's gst-rtsp-server (``tests/rtsp_server.py``, run with
Debian's python3) serving an H.264 + AAC clip over RTSP/TCP on loopback, and the real ``sidecast`` console
script pulling it, including a server that dies mid-stream and comes back."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import m3u8
import pytest

from sidecast.core.sources import Source, VideoEvent
from tests.conftest import ROOT, SIDECAST, free_port, make_clip, run_sidecast, wait_for

SYSTEM_PYTHON = "/usr/bin/python3"  # PyGObject + GstRtspServer typelibs are Debian packages (dev.sh installs them)
SERVER = str(ROOT / "tests" / "rtsp_server.py")
CLIP_SECONDS = 6.0


@dataclass
class RtspServer:
    """One gst-rtsp-server process serving a clip once; its stdout lines (ready/play/eos) arrive in ``lines``."""

    proc: subprocess.Popen[str]
    url: str
    lines: queue.Queue[str]

    def wait_line(self, want: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"RTSP server did not say {want!r} within {timeout} s")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line == "":
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"RTSP server exited ({self.proc.wait()}) before {want!r}:\n{err[-2000:]}")
            if line == want:
                return

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def start_server(clip: Path, port: int) -> RtspServer:
    proc = subprocess.Popen([SYSTEM_PYTHON, SERVER, "--port", str(port), "--file", str(clip)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("")  # end of output: the process is gone

    threading.Thread(target=pump, daemon=True).start()
    server = RtspServer(proc, f"rtsp://127.0.0.1:{port}/clip", lines)
    try:
        server.wait_line("ready", 20)
    except BaseException:
        server.kill()
        raise
    return server



def codecs_of(path: Path) -> list[str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "json",
                          str(path)], capture_output=True, text=True, timeout=30, check=True)
    return [s["codec_name"] for s in json.loads(out.stdout)["streams"]]


def load(path: Path) -> m3u8.M3U8:
    return m3u8.load(str(path))


@pytest.fixture(scope="module")
def rtsp_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 s of 640x360 30 fps test pattern + 440 Hz tone, H.264 (keyframe every second) + AAC in MP4."""
    return make_clip(tmp_path_factory.mktemp("rtsp") / "clip.mp4", CLIP_SECONDS, "640x360")


@pytest.fixture(scope="module")
def one_session(rtsp_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output of ``sidecast run rtsp://...`` over one uninterrupted session of the whole clip."""
    out = tmp_path_factory.mktemp("rtsp-out") / "out"
    server = start_server(rtsp_clip, free_port())
    try:
        proc = run_sidecast("run", server.url, "-o", str(out), "--ladder", "360p:800k", "--window", "0",
                            "--reconnect-timeout", "3", "--snapshots-fps", "0", "--no-progress", timeout=90)
        assert proc.returncode == 0, proc.stderr
        server.wait_line("eos", 5)  # the server sent the whole clip (sidecast did not end early)
    finally:
        server.kill()
    assert "did not come back" in proc.stderr, "the run ends because the server went away"
    return out


def test_rtsp_stream_becomes_valid_hls_with_program_date_times(one_session: Path) -> None:
    video = load(one_session / "video" / "360p" / "index.m3u8")
    assert video.is_endlist
    assert len(video.segments) >= 3
    total = sum(s.duration for s in video.segments)
    assert CLIP_SECONDS - 0.15 <= total <= CLIP_SECONDS + 0.2, total
    assert not any(s.discontinuity for s in video.segments), "one session: no discontinuity"
    pdts = [s.program_date_time for s in video.segments]
    assert all(p is not None for p in pdts)
    for seg, nxt in zip(video.segments, video.segments[1:], strict=False):
        assert abs((nxt.program_date_time - seg.program_date_time).total_seconds() - seg.duration) < 0.01
    for seg in video.segments:
        assert codecs_of(one_session / "video" / "360p" / seg.uri) == ["h264"]
    master = load(one_session / "master.m3u8")
    assert [p.uri for p in master.playlists] == ["video/360p/index.m3u8"]


def test_rtsp_aac_audio_becomes_the_audio_rendition(one_session: Path) -> None:
    video = load(one_session / "video" / "360p" / "index.m3u8")
    audio = load(one_session / "audio" / "index.m3u8")
    assert audio.is_endlist
    assert len(audio.segments) == len(video.segments)
    for a, v in zip(audio.segments, video.segments, strict=True):
        assert a.program_date_time == v.program_date_time
        assert abs(a.duration - v.duration) < 0.05
        assert codecs_of(one_session / "audio" / a.uri) == ["aac"]
    master = load(one_session / "master.m3u8")
    assert any(m.type == "AUDIO" and m.uri == "audio/index.m3u8" for m in master.media)


def test_rtsp_server_restart_mid_stream_is_one_discontinuity_and_keeps_published_segments(
        rtsp_clip: Path, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "out"
    playlist = out / "video" / "360p" / "index.m3u8"
    first = start_server(rtsp_clip, port)
    second: RtspServer | None = None
    proc = subprocess.Popen(
        [SIDECAST, "run", first.url, "-o", str(out), "--ladder", "360p:800k", "--window", "0",
         "--reconnect-timeout", "5", "--snapshots-fps", "0", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        wait_for(lambda: playlist.exists() and len(load(playlist).segments) >= 1, 30, "a first segment")
        before = load(playlist)
        published = {s.uri: (playlist.parent / s.uri).read_bytes() for s in before.segments}
        assert first.proc.poll() is None, "the drop must happen mid-stream"
        first.kill()  # the server dies: sockets close, the client sees the stream end
        dropped_at = time.monotonic()
        second = start_server(rtsp_clip, port)
        assert time.monotonic() - dropped_at < 5, "the server must be back within the reconnect timeout"
        second.wait_line("play", 10)
        second.wait_line("eos", 30)
        rc = proc.wait(timeout=60)  # ends once the reconnect timeout passes with no server
        stderr = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        first.kill()
        if second is not None:
            second.kill()

    final = load(playlist)
    assert final.is_endlist
    discs = [i for i, s in enumerate(final.segments) if s.discontinuity]
    assert len(discs) == 1, "exactly one EXT-X-DISCONTINUITY, where the server came back"
    assert [s.uri for s in final.segments[: len(before.segments)]] == [s.uri for s in before.segments]
    for uri, data in published.items():  # nothing published before the drop was rewritten
        assert (playlist.parent / uri).read_bytes() == data
    assert discs[0] >= len(before.segments)
    after = final.segments[discs[0]:]
    assert CLIP_SECONDS - 0.15 <= sum(s.duration for s in after) <= CLIP_SECONDS + 0.2, "the whole clip again"
    gap_start = final.segments[discs[0] - 1]
    wall_gap = (after[0].program_date_time - gap_start.program_date_time).total_seconds() - gap_start.duration
    assert wall_gap >= 0, "PROGRAM-DATE-TIME never goes back across the drop"
    assert all(s.program_date_time is not None for s in final.segments)
    audio = load(out / "audio" / "index.m3u8")
    assert [s.discontinuity for s in audio.segments] == [s.discontinuity for s in final.segments]
    for seg in final.segments:
        assert codecs_of(playlist.parent / seg.uri) == ["h264"]


def test_source_end_drains_the_frames_the_decoder_still_holds(rtsp_clip: Path) -> None:
    # A frame-threaded H.264 decoder holds up to thread_count - 1 frames; the end of every input (a file's
    # end, a live source's drop) must drain them, or the stream loses its last frames (0.5 s on 16 cores).
    frames = [e for e in Source(str(rtsp_clip)).events() if isinstance(e, VideoEvent)]
    assert len(frames) == round(CLIP_SECONDS * 30)
    assert frames[-1].t == pytest.approx(CLIP_SECONDS - 1 / 30, abs=1e-3)
