"""Conditioning: a creative transcoded to match every rendition of the content, cached and reused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from sidecast.ads.condition import Conditioner, ConditionError, ladder_from_master
from sidecast.hls import parse_master, parse_media
from tests.ads_media import make_content, make_creative


def probe(path: Path) -> dict:
    r = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout)["streams"][0]


@pytest.fixture(scope="module")
def content(tmp_path_factory) -> Path:
    return make_content(tmp_path_factory.mktemp("cond") / "content", seconds=6, subs=False)


def test_ladder_is_read_from_the_content(content):
    ladder = ladder_from_master(content)
    assert [(v.key, v.width, v.height) for v in ladder.video] == [
        ("video/180p/index.m3u8", 320, 180), ("video/144p/index.m3u8", 256, 144)]
    assert (ladder.fps, ladder.segment_duration, ladder.audio_key) == (25.0, 2.0, "audio/index.m3u8")
    assert (ladder.audio_rate, ladder.audio_channels) == (48000, 2)


def test_creative_is_conditioned_to_every_rendition_and_reused(content, tmp_path):
    # the creative differs on purpose: 426x240 at 30 fps, mono 44.1 kHz audio, 5 s
    creative = make_creative(tmp_path / "c.mp4", seconds=5, size="426x240", rate=30)
    cond = Conditioner(content, tmp_path / "cache")
    done = cond(creative)
    assert not done.reused and done.duration == pytest.approx(5.0, abs=0.1)
    master = parse_master(done.master.read_text())
    assert set(master.media_uris()) == {"video/180p/index.m3u8", "video/144p/index.m3u8",
                                           "audio/index.m3u8"}
    for v in cond.ladder.video:
        pl = parse_media((done.directory / v.key).read_text())
        # the content's segment duration, the last one shorter; TS segments
        assert [s.duration for s in pl.segments] == pytest.approx([2.0, 2.0, 1.0])
        first = done.directory / Path(v.key).parent / pl.segments[0].uri
        assert first.read_bytes()[:1] == b"\x47"
        st = probe(first)
        assert (st["codec_name"], st["width"], st["height"], st["r_frame_rate"]) == ("h264", v.width, v.height,
                                                                                    "25/1")
        assert st["profile"] == "High"
    apl = parse_media((done.directory / "audio" / "index.m3u8").read_text())
    assert len(apl.segments) == 3  # one per video segment (the AAC overhang is trimmed)
    ast = probe(done.directory / "audio" / apl.segments[0].uri)
    assert (ast["codec_name"], int(ast["sample_rate"]), ast["channels"]) == ("aac", 48000, 2)
    # the same creative and ladder: the cached result, not a new encode
    stamp = (done.directory / "video" / "180p" / "seg_000000.ts").stat().st_mtime_ns
    again = cond(creative)
    assert again.reused and again.directory == done.directory
    assert (done.directory / "video" / "180p" / "seg_000000.ts").stat().st_mtime_ns == stamp


def test_creative_without_audio_gets_silence_matching_the_content(content, tmp_path):
    silent = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i",
                    "color=c=blue:size=320x180:rate=25:duration=2", "-c:v", "libx264", "-preset", "ultrafast",
                    str(silent)], check=True, timeout=60)
    done = Conditioner(content, tmp_path / "cache")(silent)
    apl = parse_media((done.directory / "audio" / "index.m3u8").read_text())
    assert len(apl.segments) == 1 and apl.duration == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("data,message", [
    (b"definitely not media", "cannot read"),
    (None, "does not exist"),
])
def test_creative_that_cannot_be_conditioned_is_a_clear_error(content, tmp_path, data, message):
    bad = tmp_path / "bad.mp4"
    if data is not None:
        bad.write_bytes(data)
    with pytest.raises(ConditionError, match=message):
        Conditioner(content, tmp_path / "cache")(bad)
    assert not list((tmp_path / "cache").glob("*/master.m3u8"))  # nothing half-made is left to be reused


def test_audio_only_creative_is_refused(content, tmp_path):
    audio = tmp_path / "a.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i", "sine=duration=1",
                    "-c:a", "aac", str(audio)], check=True, timeout=60)
    with pytest.raises(ConditionError, match="no video stream"):
        Conditioner(content, tmp_path / "cache")(audio)


def test_hls_creative_is_conditioned_too(content, tmp_path):
    first = Conditioner(content, tmp_path / "a")(make_creative(tmp_path / "c.mp4", seconds=4))
    # an HLS creative (here: a master playlist with separate audio) goes through the same path
    again = Conditioner(content, tmp_path / "b")(first.master)
    assert not again.reused and again.duration == pytest.approx(4.0, abs=0.1)
    for key in ("video/180p/index.m3u8", "video/144p/index.m3u8", "audio/index.m3u8"):
        assert len(parse_media((again.directory / key).read_text()).segments) == 2, key
