"""--target-anchor: the measured anchor of --target-vmaf. The correction rule (pure), the libvmaf measurement
against the dev tool's, and the core's real encodes: a deliberately biased hint is measured, corrected, and
the correction carries to the next segment, which lands nearer N (real x264, real libvmaf, real sidecar)."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devkit import quality
from sidecast.core import media
from sidecast.core.anchor import Anchor, TargetAnchor, corrected_crf, measure_vmaf, vmaf_ffmpeg
from tests.conftest import run_sidecast
from tests.test_sidecar_contract import Proc, sock_dir  # noqa: F401 (fixture)


def test_the_bitrate_extra_brings_an_ffmpeg_with_libvmaf():
    """The anchor's FFmpeg ships with the bitrate extra: its absence fails here rather than skipping the rest."""
    assert vmaf_ffmpeg() is not None, "pip install 'sidecast[bitrate]' brings imageio-ffmpeg, whose FFmpeg has libvmaf"


def rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in (out / "segments.jsonl").read_text().splitlines()]


# ---------------------------------------------------------------------------- the rule


@given(crf=st.floats(14, 44), measured=st.floats(20, 100), target=st.floats(60, 99))
def test_the_correction_moves_toward_the_target_by_at_most_the_largest_step(crf: float, measured: float,
                                                                         target: float) -> None:
    rule = Anchor()
    crf = round(crf * 2) / 2
    new = corrected_crf(crf, measured, target, rule)
    if abs(measured - target) <= rule.tolerance:
        assert new == crf
        return
    # too good: spend fewer bits (higher CRF); too poor: lower CRF; never further than max_step (+ rounding)
    assert (new >= crf) if measured > target else (new <= crf)
    assert abs(new - crf) <= rule.max_step + 0.25
    assert new * 2 == round(new * 2) and 10 <= new <= 51


def test_a_miss_beyond_the_tolerance_is_corrected_and_a_near_hit_kept() -> None:
    rule = Anchor(space="vmaf", slope=2.0, max_step=3.0, tolerance=1.0)
    assert corrected_crf(30.0, 97.0, 93.0, rule) == 32.0       # 4 points too good: 2 CRFs up
    assert corrected_crf(30.0, 87.0, 93.0, rule) == 27.0       # 6 points short: 3 down
    assert corrected_crf(30.0, 70.0, 93.0, rule) == 27.0       # capped at the largest step
    assert corrected_crf(30.0, 93.8, 93.0, rule) == 30.0       # within the tolerance
    assert corrected_crf(50.0, 99.0, 93.0, rule, hi=51.0) == 51.0


def test_a_full_cap_is_not_re_encoded_and_the_correction_carries_while_the_hint_stays() -> None:
    anchor = TargetAnchor(93.0)
    # 8 points short but the first encode already spent the whole cap: a lower CRF buys nothing
    assert anchor.after_first("720p", 20.0, 20.0, 85.0, bits=3_000_000 * 2.0, cap=3_000_000, duration=2.0) == 20.0
    assert anchor.start_crf("720p", 20.5) == 20.5
    # far too good: corrected up, and the next segment with about the same hint starts from there
    c1 = anchor.after_first("480p", 25.0, 25.0, 99.5, bits=100_000, cap=1_400_000, duration=2.0)
    assert c1 > 25.0
    assert anchor.start_crf("480p", 26.0) == 26.0 + (c1 - 25.0)
    # a hint that moved further than carry_within (new content): the model's CRF again
    assert anchor.start_crf("480p", 25.0 + anchor.rule.carry_within + 1.0) == 25.0 + anchor.rule.carry_within + 1.0
    anchor.reset("480p")
    assert anchor.start_crf("480p", 26.0) == 26.0


# ---------------------------------------------------------------------------- the measurement


def test_the_anchor_measures_what_the_dev_tool_measures(tmp_path: Path) -> None:
    """The core's piped libvmaf against devkit.quality's file-based one, on a real encode (odd row padding,
    a smaller encode scaled up): the same VMAF on every frame; every 3rd frame within a point."""
    fps = Fraction(30)
    src = tmp_path / "src.mp4"
    source = [f.reformat(format="yuv420p") for f in _testsrc(src, fps)]
    enc = tmp_path / "seg.ts"
    media.encode_video_segment(source, [i / 30 for i in range(len(source))], enc, 426, 240, fps, 30.0,
                               800_000, 2.0)
    ref_frames = [f.reformat(width=640, height=360, format="yuv420p", interpolation="BICUBIC") for f in source]
    ref = tmp_path / "ref.y4m"
    quality.write_y4m(ref_frames, fps, ref)
    expected = quality.vmaf(enc, ref, fps, threads=1)
    got, cpu = measure_vmaf(enc, source, 640, 360, fps, subsample=1)
    assert abs(got - expected) < 0.05, (got, expected)
    assert cpu > 0
    sub, _ = measure_vmaf(enc, source, 640, 360, fps, subsample=3)
    assert abs(sub - expected) < 1.0 and 30 < expected < 99, (sub, expected)


def test_a_measurement_that_stalls_is_killed_and_the_first_encode_is_published(tmp_path: Path) -> None:
    """The live stream never waits on its quality measurement: a measurement past its timeout (here 0 s) is
    killed, the segment keeps its first encode (a valid segment at the hint's CRF), the rung's correction is
    forgotten, and the record says why."""
    fps = Fraction(30)
    source = [f.reformat(format="yuv420p") for f in _testsrc(tmp_path / "src.mp4", fps)]
    anchor = TargetAnchor(95.0, measure_timeout=0.0)
    anchor._carry["360p"] = (30.0, -4.0)  # a correction learned before: a failed measurement drops it
    path = tmp_path / "seg.ts"
    stats, crf, size, record = anchor.encode("360p", source, [i / 30 for i in range(len(source))], path, 640,
                                             360, (640, 360), fps, 30.0, 2_000_000, 2.0)
    assert size == (640, 360)  # the target anchor never changes a segment's size
    assert crf == 26.0 and record["passes"] == 1 and record["anchor_vmaf"] is None, record
    assert "libvmaf failed" in str(record["anchor_error"]), record
    assert "360p" not in anchor._carry
    assert stats.bytes == path.stat().st_size > 0
    with av.open(str(path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == len(source)
    with pytest.raises(RuntimeError, match="libvmaf failed"):
        measure_vmaf(path, source, 640, 360, fps, timeout=0.0)


def _testsrc(path: Path, fps: Fraction) -> list[av.VideoFrame]:
    from tests.conftest import ffmpeg

    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=2", "-c:v", "libx264", "-qp", "0",
           "-pix_fmt", "yuv420p", str(path))
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


# ---------------------------------------------------------------------------- the core, real encodes


@pytest.fixture(scope="module")
def still_detail(media_dir: Path) -> Path:
    """8 s of one detailed picture (a test pattern with fixed grain): every segment is the same content, so
    the same CRF gives the same quality in each and a correction learned on one holds for the next."""
    from tests.conftest import ffmpeg

    path = media_dir / "still_detail.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=8", "-vf",
           "noise=alls=10:allf=u,trim=end_frame=1,loop=loop=-1:size=1,trim=end_frame=240,setpts=N/30/TB",
           "-r", "30", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(path))
    return path


def test_a_biased_model_is_corrected_and_the_next_segment_lands_nearer(still_detail: Path, tmp_path: Path) -> None:
    """The core's anchored encode (real x264, real libvmaf) given a hint from a model biased far toward low
    quality (CRF 38 for a target of 95 on content that reaches 95 near CRF 24): each segment is measured,
    re-encoded lower, and the next segment starts from the corrected CRF, so it lands nearer 95 than the one
    before; the re-encoded first segment is itself nearer than its hinted encode."""
    with av.open(str(still_detail)) as c:
        frames = [f.reformat(format="yuv420p") for f in c.decode(video=0)]
    anchor = TargetAnchor(95.0)
    fps = Fraction(30)
    first, final = [], []
    for k in range(3):
        seg = frames[k * 60:(k + 1) * 60]
        path = tmp_path / f"seg{k}.ts"
        stats, crf, size, record = anchor.encode("360p", seg, [i / 30 for i in range(60)], path, 640, 360,
                                                 (640, 360), fps, 38.0, 800_000, 2.0)
        assert size == (640, 360)
        assert record["hint_crf"] == 38.0 and record["passes"] == 2 and crf < float(record["anchor_crf"])  # type: ignore[arg-type]
        assert stats.bytes == path.stat().st_size and record["correction"] == crf - 38.0
        first.append(float(record["anchor_vmaf"]))  # type: ignore[arg-type]
        final.append(measure_vmaf(path, seg, 640, 360, fps, subsample=1)[0])
    assert first[0] < 90, first  # the bias the anchor must remove
    assert abs(first[1] - 95) < abs(first[0] - 95) - 1.0 and abs(first[2] - 95) < abs(first[1] - 95), first
    assert abs(final[0] - 95) < abs(first[0] - 95) - 1.0, (final, first)


def test_the_core_records_each_anchored_segment_in_segments_jsonl(
        clip_small: Path, tmp_path: Path, sock_dir: Path) -> None:  # noqa: F811
    """Through the CLI with a real sidecar process (greedy hints: CRF 12 for every segment, a model biased far
    toward quality): every hinted segment is measured, corrected up the scale, and the correction carries."""
    proc = Proc(sock_dir / "greedy.sock", "--mode", "greedy-hints")
    try:
        res = run_sidecast("run", str(clip_small), "-o", str(tmp_path), "--ladder", "360p:800k", "--no-audio",
                           "--target-vmaf", "85", "--target-anchor", "--sidecar-addr", f"greedy={proc.target}",
                           "--snapshots-fps", "0", "--no-progress")
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr
    rs = [r for r in rows(tmp_path) if r["hinted"]]
    assert len(rs) >= 3, rs
    assert all(r["hint_crf"] == 12.0 and r["target_vmaf"] == 85.0 and r["fallback"] is None for r in rs)
    assert float(rs[0]["anchor_vmaf"]) > 90, "CRF 12 on this clip is far above 85"  # type: ignore[arg-type]
    assert all(float(r["correction"]) > 0 and r["crf"] == 12.0 + float(r["correction"]) for r in rs), rs  # type: ignore[arg-type]
    assert float(rs[1]["anchor_crf"]) == float(rs[0]["crf"]), "the correction carries to the next segment"  # type: ignore[arg-type]
    assert all(r["passes"] in (1, 2) and float(r["vmaf_cpu_s"]) > 0 for r in rs)  # type: ignore[arg-type]


def test_without_target_anchor_a_hint_is_applied_as_given_and_nothing_is_measured(
        clip_small: Path, tmp_path: Path, sock_dir: Path) -> None:  # noqa: F811
    proc = Proc(sock_dir / "greedy.sock", "--mode", "greedy-hints")
    try:
        res = run_sidecast("run", str(clip_small), "-o", str(tmp_path), "--ladder", "360p:800k", "--no-audio",
                           "--target-vmaf", "85", "--sidecar-addr", f"greedy={proc.target}", "--snapshots-fps", "0",
                           "--no-progress")
    finally:
        proc.stop()
    assert res.returncode == 0, res.stderr
    rs = rows(tmp_path)
    assert rs and all(set(r) == {"segment", "rendition", "start", "duration", "bytes", "rate_control", "crf",
                                 "max_bitrate", "hinted", "width", "height", "fallback"} for r in rs), rs[0]
    assert all(r["crf"] == 12.0 for r in rs if r["hinted"])


@pytest.mark.parametrize(("anchor", "extra", "message"), [
    ("--target-anchor", (), "--target-anchor corrects --target-vmaf N: add --target-vmaf"),
    ("--target-anchor", ("--target-vmaf", "93", "--latency", "low"), "--target-anchor re-encodes hinted segments"),
    ("--size-anchor", ("--latency", "low"),
     "--size-anchor re-encodes each segment: not with --latency low or --passthrough"),
    ("--size-anchor", ("--target-vmaf", "93"), "--size-anchor keeps the ladder's quality; --target-vmaf sets another"),
    ("--size-anchor", ("--rate-control", "vbr"), "--size-anchor measures against the capped-CRF ladder"),
])
def test_anchor_option_errors_are_one_line(clip_small: Path, tmp_path: Path, anchor: str, extra: tuple[str, ...],
                                           message: str) -> None:
    # --target-anchor and --size-anchor (tests/test_size_anchor.py) refuse what they cannot measure
    res = run_sidecast("run", str(clip_small), "-o", str(tmp_path), anchor, *extra, "--no-progress")
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], res.stderr
