"""What viewers see: the ladder plays in hls.js in headless Chromium, live windows slide correctly, and
the HTTP server the CLI starts serves the player page."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import m3u8
import pytest

from tests.browser.harness import keep_evidence, play_hls, serve
from tests.conftest import SIDECAST, free_port, make_clip, run_sidecast


@pytest.mark.browser
def test_master_playlist_plays_in_hls_js(clip_720: Path, tmp_path: Path) -> None:
    run_sidecast("run", str(clip_720), "-o", str(tmp_path), "--no-progress", check=True)
    with serve(tmp_path) as base:
        report = play_hls(base + "master.m3u8", seconds=4, network=r"\.m3u8$")
    report.raise_for_fatal()
    assert report.advanced_by() >= 3.0, report.summary()
    assert report.video_size in {(1280, 720), (854, 480), (640, 360)}
    assert len(report.levels) == 3
    assert report.audio_tracks, "the separate audio rendition is offered"
    # the requests the browser made, as a server's access log would list them (kept by failing browser tests)
    asked = {n["url"].removeprefix(base): n for n in report.raw["network"]}
    assert "master.m3u8" in asked and any(u.startswith("audio/") for u in asked), sorted(asked)
    assert all(n.get("status") == 200 and report.raw["wall0"] - 60_000 < n["start"] <= n["end"] for n in asked.values())
    assert not any(u.endswith((".ts", ".m4s")) for u in asked), "only what matched the expression"


def test_kept_evidence_goes_where_it_is_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDECAST_TEST_EVIDENCE", raising=False)
    here = keep_evidence(tmp_path / "fallback", "ll", {"report": {"cues": [1]}, "log": "text"})
    assert here == tmp_path / "fallback"
    assert (here / "report.json").read_text().count('"cues"') == 1 and (here / "log.txt").read_text() == "text"
    monkeypatch.setenv("SIDECAST_TEST_EVIDENCE", str(tmp_path / "kept"))
    there = keep_evidence(tmp_path / "fallback", "ll", {"report": {}})
    assert there.parent == tmp_path / "kept" and there.name.startswith("ll-") and (there / "report.json").exists()


def test_live_window_slides_with_consistent_sequence_numbers(tmp_path: Path) -> None:
    """--realtime paces a file as live: the window holds 2 segments, media sequence counts what slid out.
    Four 1 s segments of a 4 s clip: the same slide as four 2 s ones in half the wall time."""
    clip = make_clip(tmp_path / "clip4s.mp4", 4.0, "640x360")
    proc = subprocess.Popen([SIDECAST, "run", str(clip), "-o", str(tmp_path / "out"), "--realtime", "--window",
                             "2", "--segment-duration", "1", "--ladder", "360p:800k", "--snapshots-fps", "0",
                             "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: list[tuple[int, list[str]]] = []
    pl_path = tmp_path / "out" / "video" / "360p" / "index.m3u8"
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if pl_path.exists():
            pl = m3u8.load(str(pl_path))
            snap = (pl.media_sequence, [s.uri for s in pl.segments])
            if not seen or seen[-1] != snap:
                seen.append(snap)
        time.sleep(0.1)
    assert proc.wait(timeout=30) == 0
    final = m3u8.load(str(pl_path))
    assert final.is_endlist and len(final.segments) == 2
    assert final.media_sequence == 2 and [s.uri for s in final.segments] == ["seg_000002.ts", "seg_000003.ts"]
    seen.append((final.media_sequence, [s.uri for s in final.segments]))
    for seq, uris in seen:
        assert len(uris) <= 2
        assert uris[0] == f"seg_{seq:06d}.ts", "media sequence names the first listed segment"
    seqs = [s for s, _ in seen]
    assert seqs == sorted(seqs), "media sequence never goes back"
    vod = m3u8.load(str(tmp_path / "out" / "video" / "360p" / "vod.m3u8"))
    assert vod.is_endlist and vod.media_sequence == 0 and len(vod.segments) == 4
    master_vod = m3u8.load(str(tmp_path / "out" / "master-vod.m3u8"))
    assert master_vod.playlists[0].uri == "video/360p/vod.m3u8"


def test_serve_flag_serves_playlists_and_the_player(clip_small: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([SIDECAST, "run", str(clip_small), "-o", str(tmp_path), "--serve", str(port),
                             "--serve-host", "127.0.0.1", "--ladder", "360p:800k", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(base + "master.m3u8", timeout=2) as r:
                    assert r.headers["Content-Type"] == "application/vnd.apple.mpegurl"
                    assert r.headers["Access-Control-Allow-Origin"] == "*"
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise AssertionError("master.m3u8 never served")
        with urllib.request.urlopen(base, timeout=5) as r:
            page = r.read().decode()
        assert "hls.min.js" in page and "https://" not in page
        with urllib.request.urlopen(base + "healthz", timeout=5) as r:
            assert r.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_serving_after_the_stream_ended_stops_on_a_sigterm_any_thread_takes(clip_small: Path, tmp_path: Path) -> None:
    """`sidecast run FILE --serve` keeps serving once the file is done, until SIGTERM. The kernel may hand that
    signal to any thread of the process; its main thread slept in Event.wait(), which only a signal to itself
    wakes (the server had the same hang: core/signals.py). kill(2) on a thread's own id makes the case."""
    from tests.test_server_process import _thread_taking

    proc = subprocess.Popen([SIDECAST, "run", str(clip_small), "-o", str(tmp_path), "--serve", str(free_port()),
                             "--serve-host", "127.0.0.1", "--ladder", "360p:800k", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # ends at EOF if sidecast exits early: then the assertion says why
            lines.append(line)
            if "still serving" in line:
                break
        assert "still serving" in "".join(lines), "".join(lines)[-2000:]
        os.kill(_thread_taking(proc.pid, signal.SIGTERM), signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
