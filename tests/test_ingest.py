"""Live ingest with real peers: ffmpeg publishing RTMP into the listener (stream keys, reconnects), SRT
pulled through the ffmpeg bridge, HLS pulled over HTTP, and the errors users see on bad input."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from pathlib import Path

import m3u8
import pytest

from sidecast.core.serve import start_server
from tests.conftest import SIDECAST, ffmpeg, free_port, run_sidecast, wait_for
from tests.rtmp_client import RawRtmp, video_payload


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")



def publish(clip: Path, url: str, seconds: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", str(clip),
                           "-t", str(seconds), "-c", "copy", "-f", "flv", url],
                          capture_output=True, text=True, timeout=60)


def test_rtmp_listener_rejects_unknown_keys_and_survives_a_publisher_reconnect(
        clip_small: Path, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "live"
    proc = subprocess.Popen(
        [SIDECAST, "run", f"rtmp://127.0.0.1:{port}/live/secret", "-o", str(out), "--ladder", "360p:800k",
         "--window", "20", "--reconnect-timeout", "5", "--snapshots-fps", "0", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port)
        bad = publish(clip_small, f"rtmp://127.0.0.1:{port}/live/wrong", 2)
        assert bad.returncode != 0, "a publisher with an unknown key must be refused"
        assert not (out / "video").exists() or not list(out.glob("video/*/seg_*.ts"))

        first = publish(clip_small, f"rtmp://127.0.0.1:{port}/live/secret", 4)
        assert first.returncode == 0, first.stderr
        playlist = out / "video" / "360p" / "index.m3u8"
        wait_for(lambda: playlist.exists() and len(m3u8.load(str(playlist)).segments) >= 2, 30, "first segments")
        before = m3u8.load(str(playlist))
        published = {s.uri: (out / "video" / "360p" / s.uri).read_bytes() for s in before.segments}

        second = publish(clip_small, f"rtmp://127.0.0.1:{port}/live/secret", 4)
        assert second.returncode == 0, second.stderr
        rc = proc.wait(timeout=60)  # ends after the reconnect timeout with no publisher
        stderr = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "unknown stream key" in stderr
    final = m3u8.load(str(out / "video" / "360p" / "index.m3u8"))
    assert final.is_endlist
    discs = [i for i, s in enumerate(final.segments) if s.discontinuity]
    assert len(discs) == 1, "one EXT-X-DISCONTINUITY where the publisher came back"
    assert 2 <= len(final.segments) - discs[0] <= 3
    for uri, data in published.items():  # nothing already published was rewritten
        assert (out / "video" / "360p" / uri).read_bytes() == data
    assert [s.uri for s in final.segments[: len(before.segments)]] == [s.uri for s in before.segments]
    audio = m3u8.load(str(out / "audio" / "index.m3u8"))
    assert [s.discontinuity for s in audio.segments] == [s.discontinuity for s in final.segments]
    total = sum(s.duration for s in final.segments)
    assert 7.0 <= total <= 8.6, total


def test_srt_source_is_pulled_through_the_ffmpeg_bridge(clip_small: Path, tmp_path: Path) -> None:
    port = free_port()
    sender = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", str(clip_small), "-t", "4",
         "-c", "copy", "-f", "mpegts", f"srt://127.0.0.1:{port}?mode=listener"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.5) if sender.poll() is None else None
        proc = run_sidecast("run", f"srt://127.0.0.1:{port}?mode=caller", "-o", str(tmp_path), "--ladder",
                            "360p:800k", "--reconnect-timeout", "2", "--window", "0", "--no-progress", timeout=90)
    finally:
        sender.kill()
        sender.wait()
    assert proc.returncode == 0, proc.stderr
    pl = m3u8.load(str(tmp_path / "video" / "360p" / "index.m3u8"))
    assert pl.is_endlist
    assert 3.0 <= sum(s.duration for s in pl.segments) <= 4.5


def test_hostile_rtmp_clients_neither_publish_nor_block_the_real_publisher(clip_small: Path, tmp_path: Path) -> None:
    """What the report saw: a keyless client's media published, 2 KB of garbage killing the ingest, one idle
    connection locking the publisher out. Now none of them publishes anything or stops the real one."""
    port = free_port()
    out = tmp_path / "live"
    proc = subprocess.Popen(
        [SIDECAST, "run", f"rtmp://127.0.0.1:{port}/live/studio-7f3a9c", "-o", str(out), "--ladder", "360p:800k",
         "--window", "0", "--reconnect-timeout", "3", "--snapshots-fps", "0", "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    idle = None
    try:
        wait_port(port)
        idle = socket.create_connection(("127.0.0.1", port))       # held open for the whole publish
        with socket.create_connection(("127.0.0.1", port)) as g:   # 2 KB of garbage
            g.sendall(bytes(range(256)) * 8)
        keyless = RawRtmp(port)                                     # media without any publish
        keyless.handshake()
        keyless.connect()
        sid = keyless.create_stream()
        try:
            for i in range(60):
                keyless.send(9, video_payload(i == 0), msid=sid, csid=6, ts=i * 33)
        except OSError:
            pass
        assert keyless.closed_by_server(5)
        keyless.close()
        first = publish(clip_small, f"rtmp://127.0.0.1:{port}/live/studio-7f3a9c", 3)
        assert first.returncode == 0, first.stderr
        rc = proc.wait(timeout=60)
        stderr = proc.stderr.read() if proc.stderr else ""
        assert rc == 0, stderr
    finally:
        if idle is not None:
            idle.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in stderr
    assert "video message before an accepted publish" in stderr
    assert "studio-7f3a9c" not in stderr, "the stream key is never logged"
    final = m3u8.load(str(out / "video" / "360p" / "index.m3u8"))
    assert final.is_endlist and not any(s.discontinuity for s in final.segments), "one publisher, one period"
    assert 2.5 <= sum(s.duration for s in final.segments) <= 3.6, "only the real publisher's 3 s are published"


def test_srt_listener_takes_only_the_caller_with_the_passphrase(clip_small: Path, tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "live"
    proc = subprocess.Popen(
        [SIDECAST, "run", f"srt://127.0.0.1:{port}?mode=listener&passphrase=correct-horse-battery", "-o", str(out),
         "--ladder", "360p:800k", "--window", "0", "--reconnect-timeout", "3", "--snapshots-fps", "0",
         "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def caller(passphrase: str, seconds: float) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i",
                               str(clip_small), "-t", str(seconds), "-c", "copy", "-f", "mpegts",
                               f"srt://127.0.0.1:{port}?mode=caller&passphrase={passphrase}"],
                              capture_output=True, text=True, timeout=60)

    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("listening for SRT callers" in ln for ln in lines), 30, "the SRT listener")
        bad = caller("wrong-horse-battery", 1)
        assert bad.returncode != 0, "a caller with the wrong passphrase is refused"
        assert not list(out.glob("video/*/seg_*.ts"))
        good = caller("correct-horse-battery", 3)
        assert good.returncode == 0, good.stderr
        rc = proc.wait(timeout=60)
        reader.join(10)
        stderr = "".join(lines)
        assert rc == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "correct-horse" not in stderr and "wrong-horse" not in stderr
    pl = m3u8.load(str(out / "video" / "360p" / "index.m3u8"))
    assert pl.is_endlist and 2.5 <= sum(s.duration for s in pl.segments) <= 3.6


def test_hls_playlist_is_pulled_over_http(clip_small: Path, tmp_path: Path) -> None:
    src = tmp_path / "origin"
    src.mkdir()
    ffmpeg("-i", str(clip_small), "-t", "4", "-c", "copy", "-f", "hls", "-hls_time", "2",
           "-hls_playlist_type", "vod", str(src / "index.m3u8"))
    with start_server(src, 0, host="127.0.0.1") as server:
        proc = run_sidecast("run", f"http://127.0.0.1:{server.port}/index.m3u8", "-o", str(tmp_path / "out"),
                            "--ladder", "360p:800k", "--no-progress", timeout=90)
    assert proc.returncode == 0, proc.stderr
    pl = m3u8.load(str(tmp_path / "out" / "video" / "360p" / "index.m3u8"))
    assert pl.is_endlist and 3.5 <= sum(s.duration for s in pl.segments) <= 4.5


# ------------------------------------------------------------------ bad input


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("sidecast: error:")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_truncated_file_is_one_clear_error(clip_720: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(clip_720.read_bytes()[:20000])  # the moov atom is at the end: unreadable
    line = one_error_line(run_sidecast("run", str(bad), "-o", str(tmp_path / "o")))
    assert "cannot open" in line and "truncated.mp4" in line


def test_garbage_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "garbage.ts"
    bad.write_bytes(bytes(range(256)) * 100)
    line = one_error_line(run_sidecast("run", str(bad), "-o", str(tmp_path / "o")))
    assert "garbage.ts" in line


def test_missing_file_and_refused_url_are_one_clear_error(tmp_path: Path) -> None:
    line = one_error_line(run_sidecast("run", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o")))
    assert "no such file" in line
    port = free_port()
    line = one_error_line(run_sidecast("run", f"rtsp://127.0.0.1:{port}/cam", "-o", str(tmp_path / "o"), timeout=60))
    assert "refused" in line.lower()


def test_audio_only_source_is_refused_clearly(tmp_path: Path) -> None:
    a = tmp_path / "tone.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(a))
    line = one_error_line(run_sidecast("run", str(a), "-o", str(tmp_path / "o")))
    assert "no video stream" in line


def test_undecodable_codec_is_refused_clearly(tmp_path: Path) -> None:
    # A Matroska track whose codec no FFmpeg knows: the demuxer opens it, nothing can decode it.
    src = tmp_path / "v.mkv"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=64x64:duration=1", "-c:v", "libx264", str(src))
    data = bytearray(src.read_bytes())
    i = data.find(b"V_MPEG4/ISO/AVC")
    assert i > 0
    data[i : i + 15] = b"V_MPEG4/ISO/ZZZ"
    bad = tmp_path / "unknown-codec.mkv"
    bad.write_bytes(bytes(data))
    line = one_error_line(run_sidecast("run", str(bad), "-o", str(tmp_path / "o")))
    assert "codec" in line or "cannot open" in line


def test_corrupt_packets_mid_stream_are_skipped_and_the_stream_continues(clip_small: Path, tmp_path: Path) -> None:
    ts = tmp_path / "clip.ts"
    ffmpeg("-i", str(clip_small), "-c", "copy", "-f", "mpegts", str(ts))
    data = bytearray(ts.read_bytes())
    for k in range(8):  # smash payload bytes of a run of packets in the middle (keep sync bytes)
        off = len(data) // 2 + k * 188 * 7
        off -= off % 188
        data[off + 4 : off + 188] = bytes([0xA5]) * 184
    bad = tmp_path / "corrupt.ts"
    bad.write_bytes(bytes(data))
    proc = run_sidecast("run", str(bad), "-o", str(tmp_path / "o"), "--ladder", "360p:800k")
    assert proc.returncode == 0, proc.stderr
    pl = m3u8.load(str(tmp_path / "o" / "video" / "360p" / "index.m3u8"))
    assert sum(s.duration for s in pl.segments) >= 7.5, "the stream continued past the damage"


def test_bad_options_are_one_clear_error(clip_small: Path, tmp_path: Path) -> None:
    for args, needle in [
        (["--ladder", "720p:fast"], "bad ladder rung"),
        (["--segment-duration", "0.1"], "--segment-duration"),
        (["--sidecars", "nosuch"], "no sidecar named 'nosuch'"),
        (["--sidecar-addr", "x"], "--sidecar-addr"),
        (["--aspect", "9x16"], "bad --aspect"),
        (["--break-at", "nan"], "--break-at"),
        (["--window", "-1"], "--window"),
        (["--captions-translate", "en"], "--captions-translate en"),
    ]:
        line = one_error_line(run_sidecast("run", str(clip_small), "-o", str(tmp_path / "o"), *args))
        assert needle in line, (args, line)


@pytest.mark.parametrize("url", ["rtmp://127.0.0.1:1935/live", "ftp://example/x"])
def test_unusable_source_urls_are_explained(url: str, tmp_path: Path) -> None:
    line = one_error_line(run_sidecast("run", url, "-o", str(tmp_path / "o")))
    assert "stream key" in line or "unsupported source scheme" in line
