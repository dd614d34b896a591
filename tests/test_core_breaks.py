"""Ad breaks in the core: SCTE-35 in the source, --break-at and the HTTP API force keyframe-aligned
segment boundaries and are signalled in every playlist."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import av
import m3u8
import numpy as np

from sidecast.hls import parse_media, timebase
from tests.conftest import SIDECAST, free_port, run_sidecast
from tests.test_hls_breaks import splice_insert


def ts_with_scte35(path: Path, cues: list[tuple[int, bytes]], seconds: float = 8.0) -> Path:
    """A 320x180 H.264 MPEG-TS whose video PTS starts at 2.0 s, with SCTE-35 sections muxed at frames."""
    out = av.open(str(path), "w", format="mpegts", options={"mpegts_copyts": "1"})
    vs = out.add_stream("libx264", rate=30, options={"preset": "ultrafast", "x264-params": "keyint=30"})
    vs.width, vs.height, vs.pix_fmt = 320, 180, "yuv420p"
    ds = out.add_data_stream("scte_35")
    at = dict(cues)
    for i in range(int(seconds * 30)):
        img = np.full((180, 320, 3), (i * 3) % 255, np.uint8)
        img[:, (i * 4) % 320] = 255
        f = av.VideoFrame.from_ndarray(img, format="rgb24")
        f.pts, f.time_base = timebase.ticks(2.0 + i / 30), timebase.TIME_BASE
        for p in vs.encode(f):
            out.mux(p)
        if i in at:
            pkt = av.Packet(at[i])
            pkt.stream, pkt.pts, pkt.dts, pkt.time_base = ds, f.pts, f.pts, timebase.TIME_BASE
            out.mux(pkt)
    for p in vs.encode(None):
        out.mux(p)
    out.close()
    return path


def segments(out: Path, rendition: str = "180p") -> m3u8.M3U8:
    return m3u8.load(str(out / "video" / rendition / "index.m3u8"))


def test_break_at_forces_boundaries_and_signals_the_break_everywhere(clip_small: Path, tmp_path: Path) -> None:
    run_sidecast("run", str(clip_small), "-o", str(tmp_path), "--ladder", "360p:800k", "--break-at", "3:2.5",
                 check=True)
    for pl_path in [tmp_path / "video" / "360p" / "index.m3u8", tmp_path / "audio" / "index.m3u8"]:
        text = pl_path.read_text()
        pl = m3u8.load(str(pl_path))
        starts, t = [], 0.0
        for s in pl.segments:
            starts.append(round(t, 3))
            t += s.duration
        assert 3.0 in starts and 5.5 in starts, starts  # boundaries at the break's start and end
        assert text.count("#EXT-X-CUE-OUT:DURATION=2.500") == 1 and text.count("#EXT-X-CUE-IN") == 1
        assert 'ID="break-1"' in text and "PLANNED-DURATION=2.500" in text
        model = parse_media(text)  # the ads module reads the same signalling
        assert model.segments
    first_in_break = next(s for s in segments(tmp_path, "360p").segments if s.cue_out_start)
    probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=flags",
                            "-of", "csv=p=0", str(tmp_path / "video" / "360p" / first_in_break.uri)],
                           capture_output=True, text=True, check=True).stdout.split()
    assert probe[0].startswith("K"), "the break starts on an IDR"
    rows = [json.loads(ln) for ln in (tmp_path / "breaks.jsonl").read_text().splitlines()]
    assert rows == [{"id": "break-1", "start": 3.0, "duration": 2.5, "source": "cli", "scte35": None}]


def test_scte35_splice_insert_in_the_source_becomes_a_break(tmp_path: Path) -> None:
    cue = splice_insert(42, True, pts=2.0 + 3.0, duration=2.0)  # source PTS starts at 2.0 s: media time 3.0
    src = ts_with_scte35(tmp_path / "src.ts", [(30, cue)])
    res = run_sidecast("run", str(src), "-o", str(tmp_path / "out"), check=True)
    text = (tmp_path / "out" / "video" / "180p" / "index.m3u8").read_text()
    assert 'ID="scte35-42"' in text
    assert f"SCTE35-OUT=0x{cue.hex().upper()}" in text
    assert "#EXT-X-CUE-OUT:DURATION=2.000" in text and "#EXT-X-CUE-IN" in text
    pl = segments(tmp_path / "out")
    t, starts = 0.0, []
    for s in pl.segments:
        starts.append(round(t, 3))
        t += s.duration
    assert 3.0 in starts and 5.0 in starts, starts
    assert "Traceback" not in res.stderr


def test_malformed_scte35_is_logged_and_the_content_plays_on(tmp_path: Path) -> None:
    bad = bytearray(splice_insert(7, True, pts=4.0, duration=2.0))
    bad[-1] ^= 0xFF  # break the CRC
    src = ts_with_scte35(tmp_path / "src.ts", [(20, bytes(bad)), (40, b"\xfc\x30\x01")])
    res = run_sidecast("run", str(src), "-o", str(tmp_path / "out"))
    assert res.returncode == 0, res.stderr
    assert "CRC-32 mismatch" in res.stderr and "too short" in res.stderr
    text = (tmp_path / "out" / "video" / "180p" / "index.m3u8").read_text()
    assert "CUE-OUT" not in text and "DATERANGE" not in text
    assert abs(sum(s.duration for s in segments(tmp_path / "out").segments) - 8.0) < 0.1


def test_breaks_can_be_scheduled_through_the_http_api(clip_small: Path, tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([SIDECAST, "run", str(clip_small), "-o", str(tmp_path), "--realtime", "--ladder",
                             "360p:800k", "--serve", str(port), "--serve-host", "127.0.0.1", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        answer = None
        while answer is None and time.monotonic() < deadline:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/api/breaks", method="POST",
                                             data=json.dumps({"in": 2.0, "duration": 2.0}).encode(),
                                             headers={"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=5) as r:
                    answer = json.loads(r.read())
            except OSError:
                time.sleep(0.2)
        assert answer and answer["ok"] and answer["duration"] == 2.0
        # Behind the live edge the first answer was scheduled from (its start - 2 s): in the past even when
        # the server answered before the first frame (media time still 0.0, where "at": 0.0 is not past).
        past = answer["start"] - 2.0 - 0.01
        bad = urllib.request.Request(f"http://127.0.0.1:{port}/api/breaks", method="POST",
                                     data=json.dumps({"at": past, "duration": 2.0}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(bad, timeout=5)
            raise AssertionError("a break in the past must be refused")
        except urllib.error.HTTPError as err:
            assert err.code == 400 and "in the past" in err.read().decode()
        # Until the break has ended in the live playlist (its CUE-IN, at ~4 s of media), not until the whole
        # clip has played out in real time: what is asserted below is there from then on.
        playlist = tmp_path / "video" / "360p" / "index.m3u8"

        def break_listed() -> bool:
            text = playlist.read_text() if playlist.exists() else ""
            return "ENDLIST" in text or (f'ID="{answer["id"]}"' in text and "#EXT-X-CUE-IN" in text)

        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not break_listed():
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text = playlist.read_text()
    assert f'ID="{answer["id"]}"' in text and "#EXT-X-CUE-IN" in text


def test_a_scheduled_break_is_announced_before_it_reaches_the_live_edge(clip_small: Path, tmp_path: Path) -> None:
    """The DATERANGE of a break appears in the live playlist before the break's first segment is listed, with
    the attributes that segment then carries (same ID, same START-DATE: a DATERANGE never changes)."""
    import re
    import subprocess

    from tests.conftest import SIDECAST

    out = tmp_path / "out"
    proc = subprocess.Popen([SIDECAST, "run", str(clip_small), "-o", str(out), "--realtime", "--break-at", "6:2",
                             "--ladder", "360p:800k", "--window", "10", "--snapshots-fps", "0", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    playlist = out / "video" / "360p" / "index.m3u8"
    first_seen: str | None = None
    while proc.poll() is None or first_seen is None:
        text = playlist.read_text() if playlist.exists() else ""
        if first_seen is None and 'ID="break-1"' in text:
            first_seen = text
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    assert first_seen is not None, "the break was never announced"
    listed = re.findall(r"#EXTINF:([\d.]+)", first_seen)
    assert sum(map(float, listed)) <= 6.0 + 1e-3, "announced while the segments before it were still coming"
    announced = re.search(r"#EXT-X-DATERANGE:.*ID=\"break-1\".*", first_seen).group(0)  # type: ignore[union-attr]
    final = playlist.read_text()
    assert final.count('ID="break-1"') == 1 and announced in final, "the segment carries the same tag"
