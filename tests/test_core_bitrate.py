"""Bitrate hints in the core's encoder: applied per segment when on time, the static ladder otherwise, and
BANDWIDTH truthful either way (real x264 encodes, real sidecar processes)."""

from __future__ import annotations

import json
from pathlib import Path

import m3u8
import pytest

from tests.conftest import ffmpeg, run_sidecast
from tests.test_sidecar_contract import Proc, sock_dir  # noqa: F401 (fixture)


def rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in (out / "segments.jsonl").read_text().splitlines()]


def assert_bandwidth_truthful(out: Path) -> None:
    master = m3u8.load(str(out / "master.m3u8"))
    audio = m3u8.load(str(out / "audio" / "index.m3u8")) if (out / "audio").exists() else None
    audio_peak = max(((out / "audio" / s.uri).stat().st_size * 8 / s.duration for s in audio.segments),
                     default=0.0) if audio else 0.0
    for p in master.playlists:
        pl = m3u8.load(str(out / p.uri))
        peak = max((out / Path(p.uri).parent / s.uri).stat().st_size * 8 / s.duration for s in pl.segments)
        assert p.stream_info.bandwidth >= peak + audio_peak, (p.uri, p.stream_info.bandwidth, peak)


@pytest.fixture(scope="module")
def motion_and_still(media_dir: Path) -> tuple[Path, Path]:
    busy = media_dir / "busy.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=6", "-vf", "noise=alls=30:allf=t+u",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p", str(busy))
    still = media_dir / "still.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=0x336699:size=640x360:rate=30:duration=6", "-vf",
           "drawbox=x=200:y=100:w=200:h=120:color=white@0.8:t=fill", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(still))
    return busy, still


def test_bitrate_sidecar_hints_are_applied_and_motion_gets_more_bits(
        motion_and_still: tuple[Path, Path], tmp_path: Path) -> None:
    busy, still = motion_and_still
    outs = {}
    for clip in (busy, still):
        out = tmp_path / clip.stem
        run_sidecast("run", str(clip), "-o", str(out), "--sidecars", "bitrate", "--ladder", "360p:800k",
                     "--snapshots-fps", "0", "--no-progress", check=True)
        outs[clip.stem] = rows(out)
        assert_bandwidth_truthful(out)
        assert all(r["max_bitrate"] <= 800_000 for r in outs[clip.stem]), "a hint never raises the cap"
    for name, rs in outs.items():
        assert sum(bool(r["hinted"]) for r in rs) >= len(rs) - 1, f"{name}: hints arrived for the segments"
    rate = {name: sum(int(r["bytes"]) for r in rs) * 8 / sum(float(r["duration"]) for r in rs)
            for name, rs in outs.items()}
    assert rate["busy"] > 3 * rate["still"], rate


def test_late_hints_leave_the_static_ladder_in_place(clip_small: Path, tmp_path: Path, sock_dir: Path) -> None:  # noqa: F811
    proc = Proc(sock_dir / "late.sock", "--mode", "late-hints")
    try:
        res = run_sidecast("run", str(clip_small), "-o", str(tmp_path), "--realtime", "--decision-window", "0.5",
                           "--ladder", "360p:800k", "--sidecar-addr", f"late={proc.target}", "--no-progress")
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr
    rs = rows(tmp_path)
    assert len(rs) == 4
    assert not any(r["hinted"] for r in rs[:-1]), "hints that come after the window are not applied"
    assert all(r["crf"] == 23.0 and r["max_bitrate"] == 800_000 for r in rs[:-1])
    pl = m3u8.load(str(tmp_path / "video" / "360p" / "index.m3u8"))
    assert pl.is_endlist and [s.uri for s in pl.segments] == [f"seg_{i:06d}.ts" for i in range(4)]
    assert_bandwidth_truthful(tmp_path)


@pytest.mark.parametrize("rate_control", ["crf", "vbr"])
def test_greedy_hints_are_capped_and_bandwidth_stays_truthful(clip_small: Path, tmp_path: Path,
                                                              sock_dir: Path, rate_control: str) -> None:  # noqa: F811
    proc = Proc(sock_dir / "greedy.sock", "--mode", "greedy-hints")
    try:
        res = run_sidecast("run", str(clip_small), "-o", str(tmp_path), "--ladder", "360p:800k",
                           "--rate-control", rate_control, "--sidecar-addr", f"greedy={proc.target}", "--no-progress")
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr
    rs = rows(tmp_path)
    hinted = [r for r in rs if r["hinted"]]
    # The hint asks for 20x the cap: in either static mode it gets its CRF under the rung's cap, no more.
    assert hinted and all(r["crf"] == 12.0 and r["max_bitrate"] == 800_000 and r["rate_control"] == "crf"
                          for r in hinted)
    assert_bandwidth_truthful(tmp_path)


def seg_rates(rs: list[dict[str, object]], min_duration: float = 1.9) -> list[float]:
    """bits/s of each full-length segment (the last one may be cut short)."""
    return [int(r["bytes"]) * 8 / float(r["duration"]) for r in rs if float(r["duration"]) >= min_duration]


def test_vbr_static_ladder_encodes_busy_content_at_the_rungs_rate(
        motion_and_still: tuple[Path, Path], tmp_path: Path) -> None:
    busy, _ = motion_and_still
    run_sidecast("run", str(busy), "-o", str(tmp_path), "--rate-control", "vbr", "--ladder", "360p:800k,240p:400k",
                 "--no-audio", "--snapshots-fps", "0", "--no-progress", check=True)
    rs = rows(tmp_path)
    assert rs and all(r["rate_control"] == "vbr" and r["crf"] is None and not r["hinted"] for r in rs)
    for name, rate in (("360p", 800_000), ("240p", 400_000)):
        got = seg_rates([r for r in rs if r["rendition"] == name])
        assert len(got) >= 2
        # ABR lands near the rate (the MPEG-TS overhead and the VBV buffer's initial fill on top)
        assert all(0.85 * rate <= g <= 1.35 * rate for g in got), (name, got)
    assert_bandwidth_truthful(tmp_path)
    # and the capped-CRF ladder spends very differently on the same content: it is a different mode
    crf_out = tmp_path / "crf"
    run_sidecast("run", str(busy), "-o", str(crf_out), "--ladder", "360p:800k,240p:400k", "--no-audio",
                 "--snapshots-fps", "0", "--no-progress", check=True)
    assert all(r["rate_control"] == "crf" and r["crf"] == 23.0 for r in rows(crf_out))


@pytest.fixture(scope="module")
def still_photo(media_dir: Path) -> Path:
    """6 s of a real photograph standing still: detail a fixed-bitrate encoder spends its whole rate on."""
    import cv2
    from skimage import data

    png = media_dir / "astronaut.png"
    cv2.imwrite(str(png), cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    out = media_dir / "still_photo.mp4"
    ffmpeg("-loop", "1", "-framerate", "30", "-i", str(png), "-t", "6", "-vf", "scale=640:360,setsar=1",
           "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-pix_fmt", "yuv420p", str(out))
    return out


def test_in_vbr_mode_a_hint_for_a_static_clip_spends_far_fewer_bits(still_photo: Path, tmp_path: Path) -> None:
    still = still_photo
    common = ("--rate-control", "vbr", "--ladder", "360p:800k", "--no-audio", "--snapshots-fps", "0", "--no-progress")
    run_sidecast("run", str(still), "-o", str(tmp_path / "static"), *common, check=True)
    run_sidecast("run", str(still), "-o", str(tmp_path / "hinted"), "--sidecars", "bitrate", *common, check=True)
    static, hinted = rows(tmp_path / "static"), rows(tmp_path / "hinted")
    assert sum(bool(r["hinted"]) for r in hinted) >= len(hinted) - 1, "hints arrived for the segments"
    assert all(r["rate_control"] == "crf" and r["max_bitrate"] <= 800_000 for r in hinted if r["hinted"])
    static_bits = sum(int(r["bytes"]) for r in static)
    hinted_bits = sum(int(r["bytes"]) for r in hinted)
    assert static_bits * 8 / sum(float(r["duration"]) for r in static) > 0.7 * 800_000, "the static ladder spends"
    assert hinted_bits < 0.5 * static_bits, (hinted_bits, static_bits)
    assert_bandwidth_truthful(tmp_path / "hinted")


def test_a_bad_rate_control_is_a_one_line_error(clip_small: Path, tmp_path: Path) -> None:
    res = run_sidecast("run", str(clip_small), "-o", str(tmp_path), "--rate-control", "cbr", "--no-progress")
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("sidecast: error: bad --rate-control 'cbr'"), res.stderr
    assert "crf" in lines[0] and "vbr" in lines[0]
    assert not (tmp_path / "segments.jsonl").exists()
