"""Passthrough (--passthrough): a camera's H.264 copied into HLS without re-encoding, cut on its own
keyframes, with snapshots from keyframes only and the audio copied when it is AAC."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import av
import pytest

from devkit.avcheck import check
from devkit.nasty import write_clip
from tests.conftest import ffmpeg, run_sidecast


def video_payloads(path: Path) -> list[str]:
    with av.open(str(path)) as c:
        return [hashlib.sha1(bytes(p)).hexdigest() for p in c.demux(video=0) if p.size]


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 s of 720p H.264 with a 2 s GOP and B-frames, AAC audio, in MPEG-TS as an IP camera sends it."""
    path = tmp_path_factory.mktemp("cam") / "camera.ts"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=10", "-f", "lavfi", "-i",
           "sine=frequency=500:sample_rate=48000:duration=10", "-c:v", "libx264", "-preset", "veryfast", "-g", "50",
           "-bf", "2", "-pix_fmt", "yuv420p", "-c:a", "aac", str(path))
    return path


def test_the_camera_stream_is_copied_bit_for_bit_and_cut_on_its_keyframes(camera: Path, tmp_path: Path) -> None:
    r = run_sidecast("run", str(camera), "-o", str(tmp_path), "--passthrough", "--no-progress")
    assert r.returncode == 0, r.stderr
    seg_dir = tmp_path / "video" / "source"
    segs = sorted(seg_dir.glob("seg_*.ts"))
    assert len(segs) == 5
    copied = [h for s in segs for h in video_payloads(s)]
    assert copied == video_payloads(camera), "every video packet is the camera's own, in order"
    for s in segs:
        with av.open(str(s)) as c:
            first = next(p for p in c.demux(video=0) if p.size)
            assert first.is_keyframe, f"{s.name} starts with a keyframe"
    playlist = (seg_dir / "index.m3u8").read_text()
    assert "#EXT-X-TARGETDURATION:2" in playlist
    master = (tmp_path / "master.m3u8").read_text()
    assert "RESOLUTION=1280x720" in master and 'CODECS="avc1.' in master
    modes = {json.loads(ln)["rate_control"] for ln in (tmp_path / "segments.jsonl").read_text().splitlines()}
    assert modes == {"copy"}
    rep = check(tmp_path, 25.0)
    assert rep.worst_extinf_error <= 1 / 25 and abs(rep.end_offset) <= 1 / 25, rep.line()
    assert abs(rep.video_seconds - 10.0) <= 1 / 25, rep.line()


def test_sync_markers_stay_together_through_passthrough(tmp_path: Path) -> None:
    src = write_clip(tmp_path / "markers.mp4", seconds=6.0)
    r = run_sidecast("run", str(src), "-o", str(tmp_path / "out"), "--passthrough", "--no-progress")
    assert r.returncode == 0, r.stderr
    rep = check(tmp_path / "out", 30.0)
    assert len(rep.marker_offsets) >= 5 and rep.worst_marker_offset <= 1 / 30, rep.line()


def test_snapshots_come_from_keyframes_only(camera: Path, tmp_path: Path) -> None:
    r = run_sidecast("run", str(camera), "-o", str(tmp_path), "--passthrough", "--no-progress")
    assert r.returncode == 0
    index = [json.loads(ln) for ln in (tmp_path / "snapshots" / "index.jsonl").read_text().splitlines()]
    assert [round(s["t"]) for s in index] == [0, 2, 4, 6, 8], "one per keyframe: nothing else was decoded"


def test_passthrough_of_a_codec_it_cannot_copy_is_one_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "vp9.webm"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=2", "-c:v", "libvpx-vp9", "-deadline",
           "realtime", str(src))
    r = run_sidecast("run", str(src), "-o", str(tmp_path / "out"), "--passthrough", "--no-progress")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "sidecast: error: --passthrough copies H.264 or H.265 into HLS; this source is vp9")


def test_passthrough_costs_a_fraction_of_transcoding(camera: Path, tmp_path: Path) -> None:
    """Not a timing test: CPU seconds from the kernel's accounting, and a generous ratio (measured ~40x)."""
    def cpu(*args: str) -> float:
        r = subprocess.run(["/usr/bin/time", "-f", "%U %S", *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        u, s = r.stderr.strip().splitlines()[-1].split()
        return float(u) + float(s)

    from tests.conftest import SIDECAST

    copy = cpu(SIDECAST, "run", str(camera), "-o", str(tmp_path / "c"), "--passthrough", "--no-progress")
    enc = cpu(SIDECAST, "run", str(camera), "-o", str(tmp_path / "e"), "--ladder", "720p:3000k", "--no-progress")
    assert copy < enc / 4, (copy, enc)
