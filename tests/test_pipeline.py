"""The core pipeline end to end through the real ``sidecast`` command: a file in, a valid HLS ladder out."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import m3u8
import pytest

from sidecast.hls import timebase
from tests.conftest import make_clip, run_sidecast


def ffprobe_packets(path: Path) -> list[dict[str, str]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts,dts,flags",
         "-of", "json", str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["packets"]


def ffprobe_stream(path: Path, kind: str = "v") -> dict[str, object]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", f"{kind}:0", "-show_streams", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)["streams"][0]


@pytest.fixture(scope="module")
def vod_run(clip_720: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("vod")
    proc = run_sidecast("run", str(clip_720), "-o", str(out), "--no-progress", check=True)
    assert "sidecast: done:" in proc.stdout
    return out


def test_master_lists_a_ladder_capped_at_the_source(vod_run: Path) -> None:
    master = m3u8.load(str(vod_run / "master.m3u8"))
    assert master.is_variant
    res = [p.stream_info.resolution for p in master.playlists]
    assert res == [(1280, 720), (854, 480), (640, 360)]  # 1080p is never an upscale of a 720p source
    for p in master.playlists:
        si = p.stream_info
        assert si.bandwidth > 0 and si.average_bandwidth > 0
        assert si.average_bandwidth <= si.bandwidth
        assert si.codecs.startswith("avc1.64") and "mp4a.40.2" in si.codecs
        assert abs(si.frame_rate - 30.0) < 0.01
        assert si.audio == "aud"
    audio = [m for m in master.media if m.type == "AUDIO"]
    assert len(audio) == 1 and audio[0].uri == "audio/index.m3u8"


def test_media_playlists_are_vod_with_pdt_and_bounded_durations(vod_run: Path) -> None:
    counts = set()
    for pl_path in sorted(vod_run.glob("video/*/index.m3u8")) + [vod_run / "audio" / "index.m3u8"]:
        pl = m3u8.load(str(pl_path))
        assert pl.is_endlist and pl.playlist_type == "vod"
        assert pl.media_sequence == 0
        assert pl.segments, pl_path
        for seg in pl.segments:
            assert seg.program_date_time is not None, f"{pl_path}: segment without PDT"
            assert round(seg.duration) <= pl.target_duration
            assert (pl_path.parent / seg.uri).stat().st_size > 0
        counts.add(len(pl.segments))
        total = sum(s.duration for s in pl.segments)
        assert abs(total - 6.0) < 0.2, f"{pl_path}: {total}"
        pdts = [s.program_date_time for s in pl.segments]
        assert pdts == sorted(pdts)
    assert counts == {3}, "every rendition and the audio have the same segments"


def test_renditions_are_keyframe_aligned(vod_run: Path) -> None:
    renditions = sorted(vod_run.glob("video/*"))
    assert len(renditions) == 3
    for seg in sorted(renditions[0].glob("seg_*.ts")):
        starts = set()
        for r in renditions:
            packets = ffprobe_packets(r / seg.name)
            assert packets[0]["flags"].startswith("K"), f"{r.name}/{seg.name} does not start with a keyframe"
            assert sum(p["flags"].startswith("K") for p in packets) == 1, "one IDR per segment, at its start"
            starts.add(min(int(p["pts"]) for p in packets))
        assert len(starts) == 1, f"{seg.name}: renditions start at different PTS {starts}"


def test_video_pts_follow_the_documented_mapping(vod_run: Path) -> None:
    first = ffprobe_packets(vod_run / "video" / "720p" / "seg_000000.ts")
    assert min(int(p["pts"]) for p in first) == timebase.media_to_pts(0.0) == 900_000  # media time 0 = PTS 10 s
    second = ffprobe_packets(vod_run / "video" / "720p" / "seg_000001.ts")
    assert min(int(p["pts"]) for p in second) == timebase.media_to_pts(2.0)


def test_bandwidth_is_at_least_the_measured_peak(vod_run: Path) -> None:
    master = m3u8.load(str(vod_run / "master.m3u8"))
    audio = m3u8.load(str(vod_run / "audio" / "index.m3u8"))
    audio_peak = max((vod_run / "audio" / s.uri).stat().st_size * 8 / s.duration for s in audio.segments)
    for p in master.playlists:
        pl = m3u8.load(str(vod_run / p.uri))
        peak = max((vod_run / Path(p.uri).parent / s.uri).stat().st_size * 8 / s.duration for s in pl.segments)
        assert p.stream_info.bandwidth >= peak + audio_peak, (p.uri, p.stream_info.bandwidth, peak)


def test_segments_are_h264_high_profile_at_the_rung_size(vod_run: Path) -> None:
    st = ffprobe_stream(vod_run / "video" / "480p" / "seg_000001.ts")
    assert st["codec_name"] == "h264" and st["profile"] == "High"
    assert (st["width"], st["height"]) == (854, 480)
    a = ffprobe_stream(vod_run / "audio" / "seg_000001.ts", "a")
    assert a["codec_name"] == "aac" and int(a["sample_rate"]) == 48000 and int(a["channels"]) == 2


def test_snapshots_are_written_once_per_second(vod_run: Path) -> None:
    snaps = sorted((vod_run / "snapshots").glob("[0-9]*.jpg"))
    assert len(snaps) == 6
    st = ffprobe_stream(snaps[0])
    assert st["codec_name"] == "mjpeg" and st["width"] == 640 and st["height"] == 360
    index = [json.loads(ln) for ln in (vod_run / "snapshots" / "index.jsonl").read_text().splitlines()]
    assert [round(r["t"]) for r in index] == [0, 1, 2, 3, 4, 5]
    assert (vod_run / "snapshots" / "latest.jpg").stat().st_size > 1000


def test_custom_ladder_and_snapshot_options(clip_720: Path, tmp_path: Path) -> None:
    run_sidecast("run", str(clip_720), "-o", str(tmp_path), "--ladder", "540p:2000k:crf=25,240p:300k",
                 "--snapshots-fps", "0.5", "--snapshots-width", "320", "--segment-duration", "3", check=True)
    master = m3u8.load(str(tmp_path / "master.m3u8"))
    assert [p.stream_info.resolution for p in master.playlists] == [(960, 540), (426, 240)]
    pl = m3u8.load(str(tmp_path / "video" / "540p" / "index.m3u8"))
    assert pl.target_duration == 3 and len(pl.segments) == 2
    assert len(list((tmp_path / "snapshots").glob("[0-9]*.jpg"))) == 3


def test_a_source_smaller_than_the_ladder_gets_one_rendition_at_its_size(media_dir: Path, tmp_path: Path) -> None:
    small = make_clip(media_dir / "tiny.mp4", 2.0, "320x240", audio=False)
    run_sidecast("run", str(small), "-o", str(tmp_path), check=True)
    master = m3u8.load(str(tmp_path / "master.m3u8"))
    assert [p.stream_info.resolution for p in master.playlists] == [(320, 240)]
    assert not master.media, "no audio group for a source without audio"
