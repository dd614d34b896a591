"""``--size-anchor``: each segment also encoded smaller, measured with libvmaf, published small only when as good.

Real x264 encodes and real libvmaf (the imageio-ffmpeg wheel's FFmpeg) on short generated clips; the rule
(``SizeRule``) was chosen on training curves by ``models/bitrate/size_tune.py``.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import m3u8
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sidecast.contract.encoding import X264_PRESET
from sidecast.core.anchor import (
    SizeAnchor,
    SizeRule,
    candidate_sizes,
    measure_in_order,
    measure_quality,
    measure_vmaf,
    pick_size,
    within,
)
from tests.conftest import ffmpeg, run_sidecast
from tests.test_core_bitrate import assert_bandwidth_truthful, picture_size

FPS = Fraction(30)


def rows(out: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in (out / "segments.jsonl").read_text().splitlines()]


def frames_of(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return [f.reformat(format="yuv420p") for f in c.decode(video=0)]


@pytest.fixture(scope="module")
def soft(media_dir: Path) -> Path:
    """8 s of a heavily blurred moving test pattern at 1280x720: nothing a smaller picture loses."""
    path = media_dir / "soft720.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30:duration=8", "-vf", "gblur=sigma=4",
           "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(path))
    return path


@pytest.fixture(scope="module")
def fine(media_dir: Path) -> Path:
    """2 s of a test pattern under fixed fine grain at 640x360: detail that half the size cannot keep."""
    path = media_dir / "fine360.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=2", "-vf",
           "noise=alls=12:allf=u,trim=end_frame=1,loop=loop=-1:size=1,trim=end_frame=60,setpts=N/30/TB",
           "-r", "30", "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(path))
    return path


# ---------------------------------------------------------------------------- the pure decision

@given(st.tuples(st.integers(1, 10**7), st.floats(0, 100), st.floats(10, 60)),
       st.lists(st.tuples(st.integers(1, 10**7), st.one_of(st.none(), st.floats(0, 100)),
                          st.one_of(st.none(), st.floats(10, 60), st.just(math.nan))), max_size=4),
       st.floats(0, 3), st.one_of(st.floats(-2, 3), st.just(math.inf)))
def test_the_pick_has_fewer_bits_is_within_both_margins_and_is_the_smallest_such(
        own: tuple[int, float, float], cands: list[tuple[int, float | None, float | None]], margin: float,
        psnr_margin: float) -> None:
    got = pick_size(own, cands, margin, psnr_margin)
    fits = [i for i, (b, v, p) in enumerate(cands) if v is not None and b < own[0] and v >= own[1] - margin
            and (psnr_margin == math.inf or (p is not None and p >= own[2] - psnr_margin))]
    if got is None:
        assert not fits
    else:
        assert got in fits and cands[got][0] == min(cands[i][0] for i in fits)
    if got is not None and psnr_margin != math.inf:
        assert cands[got][2] is not None and cands[got][2] >= own[2] - psnr_margin, "the PSNR guard holds"
    # the guard only ever takes candidates away: off, the pick has at most as many bits
    loose = pick_size(own, cands, margin)
    assert got is None or (loose is not None and cands[loose][0] <= cands[got][0])


@given(st.integers(1, 10**7), st.lists(st.tuples(st.integers(1, 10**7), st.floats(0, 100), st.floats(10, 60)),
                                       max_size=5),
       st.floats(0, 100), st.one_of(st.floats(10, 60), st.just(-math.inf)))
def test_candidates_are_measured_fewest_bits_first_and_only_until_one_is_eligible(
        own_bits: int, cands: list[tuple[int, float, float]], floor: float, psnr_floor: float) -> None:
    order: list[int] = []

    def measure(k: int) -> tuple[float, float]:
        order.append(k)
        return cands[k][1], cands[k][2]

    def ok(v: float, p: float) -> bool:
        return v >= floor and p >= psnr_floor

    measured = measure_in_order(own_bits, [b for b, _, _ in cands], measure, ok)
    assert [k for k, v in enumerate(measured) if v is not None] == sorted(order)
    assert all(measured[k] == cands[k][1:] for k in order)
    assert [cands[k][0] for k in order] == sorted(cands[k][0] for k in order)
    assert all(cands[k][0] < own_bits for k in order), "a candidate with as many bits is never measured"
    assert not any(ok(*cands[k][1:]) for k in order[:-1]), "measuring stops at the first eligible"
    smaller = sorted(b for b, _, _ in cands if b < own_bits)
    if not order or not ok(*cands[order[-1]][1:]):  # none was eligible: every smaller candidate was measured
        assert len(order) == len(smaller)
    assert sorted(cands[k][0] for k in order) == smaller[:len(order)], "the measured are the fewest bits"


def test_within_needs_a_measured_psnr_only_while_the_guard_is_on() -> None:
    own = (1000.0, 90.0, 40.0)
    assert within(own, 89.5, None, 1.0) and within(own, 89.5, math.nan, 1.0)
    assert not within(own, 89.5, None, 1.0, 1.0) and not within(own, 89.5, math.nan, 1.0, 1.0)
    assert within(own, 89.5, 39.0, 1.0, 1.0) and not within(own, 89.5, 38.99, 1.0, 1.0)
    assert not within(own, 88.9, 45.0, 1.0, 1.0), "PSNR never buys back VMAF"


@given(st.sampled_from([(1920, 1080), (1280, 720), (854, 480), (640, 360), (426, 240)]), st.floats(10, 51))
def test_candidates_are_smaller_even_of_the_rungs_aspect_and_on_the_half_crf_grid(
        rung: tuple[int, int], crf: float) -> None:
    rw, rh = rung
    rule = SizeRule()
    got = candidate_sizes(rw, rh, rw, rh, crf, rule)
    plain = [g for g in got if g[3] == X264_PRESET]
    assert len(plain) == 2 and got[:2] == plain, "the size candidates first, at the ladder's preset"
    for w, h, c, _ in plain:
        assert w < rw and h < rh and w % 2 == 0 and h % 2 == 0
        assert abs((w / h) / (rw / rh) - 1) <= 0.02
        assert c * 2 == int(c * 2) and 10 <= c <= crf
    # a segment a hint already made 0.75 of the rung only tries what is smaller still
    w75, h75, _, _ = got[0]
    assert [g[:2] for g in candidate_sizes(rw, rh, w75, h75, crf, SizeRule(slow=()))] == [g[:2] for g in got[1:2]]


@given(st.sampled_from([(1920, 1080), (1280, 720), (854, 480), (640, 360), (426, 240)]), st.floats(10, 51),
       st.sampled_from([1.0, 0.75]))
def test_the_slower_preset_candidates_come_only_on_the_low_rungs_and_never_repeat_the_own_encode(
        rung: tuple[int, int], crf: float, scale: float) -> None:
    rw, rh = rung
    rule = SizeRule()
    w0, h0 = (rw, rh) if scale == 1.0 else candidate_sizes(rw, rh, rw, rh, crf, rule)[0][:2]
    got = candidate_sizes(rw, rh, w0, h0, crf, rule)
    slow = [g for g in got if g[3] != X264_PRESET]
    if rh > rule.slow_max_height:
        assert not slow, got
        return
    assert slow and all(p == rule.slow_preset for *_, p in slow), got
    assert len(set(got)) == len(got) and (w0, h0, crf, X264_PRESET) not in got
    for w, h, c, _ in slow:
        assert w * h <= w0 * h0 and w % 2 == 0 and h % 2 == 0 and 10 <= c <= 51 and c * 2 == int(c * 2)
    if scale == 1.0 and crf <= 49.0:  # the rung's own size, slower preset, 2 CRF higher
        assert (rw, rh, round((crf + 2) * 2) / 2, rule.slow_preset) in slow, got


@given(st.sampled_from([(1920, 1080), (1280, 720), (854, 480), (640, 360), (426, 240)]), st.floats(10, 51),
       st.sampled_from([1.0, 0.75]))
def test_a_capped_segment_also_tries_its_own_size_or_a_smaller_one_at_a_higher_crf(
        rung: tuple[int, int], crf: float, scale: float) -> None:
    rw, rh = rung
    rule = SizeRule(slow=())
    w0, h0 = (rw, rh) if scale == 1.0 else candidate_sizes(rw, rh, rw, rh, crf, rule)[0][:2]
    plain = candidate_sizes(rw, rh, w0, h0, crf, rule)
    got = candidate_sizes(rw, rh, w0, h0, crf, rule, capped=True)
    assert got[:len(plain)] == plain, "the capped candidates come on top of the plain ones"
    assert len(set(got)) == len(got) and (w0, h0, crf, X264_PRESET) not in got
    for w, h, c, p in got:
        assert 10 <= c <= 51 and c * 2 == int(c * 2) and p == X264_PRESET
        assert w * h < w0 * h0 or ((w, h) == (w0, h0) and c > crf), "never larger, never the own encode again"
    extra = got[len(plain):]
    if crf <= 49.75:  # the rung's size (or the hint's) at a higher CRF is tried, as long as the scale has room
        assert any(c > crf for _, _, c, _ in extra), got
    if scale == 1.0 and crf <= 50.0:
        assert (rw, rh, round((crf + 1) * 2) / 2, X264_PRESET) in extra, got


def test_the_rule_says_a_segment_is_capped_when_its_bits_fill_the_cap() -> None:
    rule = SizeRule()
    assert rule.is_capped(1_800_000, 1_000_000, 2.0) and rule.is_capped(2_100_000, 1_000_000, 2.0)
    assert not rule.is_capped(1_700_000, 1_000_000, 2.0) and not rule.is_capped(890_000, 1_000_000, 1.0)


# ---------------------------------------------------------------------------- the core's encode, real

def test_a_segment_whose_small_encode_loses_quality_keeps_its_size(fine: Path, tmp_path: Path) -> None:
    src = frames_of(fine)
    path = tmp_path / "seg_000000.ts"
    # the size candidates only (the slower-preset ones have their own test)
    stats, crf, size, record = SizeAnchor(SizeRule(slow=())).encode(
        "360p", src, [i / 30 for i in range(len(src))], path, 640, 360, (640, 360), FPS, 23.0, 8_000_000, 2.0)
    assert size == (640, 360) and crf == 23.0 and record["size_chosen"] is None, record
    assert record["size_preset"] == X264_PRESET, record
    assert picture_size(path) == (640, 360) and stats.bytes == path.stat().st_size and stats.path == path
    own = float(record["size_vmaf"])  # type: ignore[arg-type]
    cands = record["size_candidates"]
    assert isinstance(cands, list) and len(cands) == 2
    measured = [c for c in cands if c[4] is not None]
    # it was a quality decision: a candidate with fewer bits was measured and fell short of the margin
    assert measured and all(c[3] < stats.bytes * 8 and c[4] < own - SizeRule().margin for c in measured), record
    assert float(record["size_cpu_s"]) > 0  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg_000000.ts"], "candidate files are removed"


def test_a_segment_that_fills_its_cap_tries_higher_crfs_and_publishes_only_fewer_bits_as_good(
        fine: Path, tmp_path: Path) -> None:
    """Fine grain under a 100 kbit/s cap: the own encode fills the cap, so a lower CRF could only buy quality;
    the capped candidates (the own size at CRF 24 and 28, 0.75 at CRF 24) are encoded and measured too."""
    src = frames_of(fine)
    path = tmp_path / "seg_000000.ts"
    stats, crf, size, record = SizeAnchor(SizeRule(slow=())).encode(
        "360p", src, [i / 30 for i in range(len(src))], path, 640, 360, (640, 360), FPS, 23.0, 100_000, 2.0)
    assert record["size_capped"] is True, record
    cands = record["size_candidates"]
    assert isinstance(cands, list)
    assert [640, 360, 24.0] in [c[:3] for c in cands] and [640, 360, 28.0] in [c[:3] for c in cands], record
    own = float(record["size_vmaf"])  # type: ignore[arg-type]
    assert any(c[4] is not None for c in cands), "a capped candidate has fewer bits and is measured"
    if record["size_chosen"] is not None:
        chosen = next(c for c in cands if c[:3] == [*size, crf])
        assert chosen[3] == stats.bytes * 8 and chosen[4] >= own - SizeRule().margin, record
        assert size == (640, 360) and crf > 23.0 or size[0] * size[1] < 640 * 360, record
    assert picture_size(path) == size and stats.bytes == path.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg_000000.ts"]


def test_a_segment_as_good_at_a_smaller_size_is_published_small(soft: Path, tmp_path: Path) -> None:
    src = frames_of(soft)[:60]
    path = tmp_path / "seg_000000.ts"
    stats, crf, size, record = SizeAnchor().encode("720p", src, [i / 30 for i in range(60)], path, 1280, 720,
                                                  (1280, 720), FPS, 23.0, 3_000_000, 2.0)
    assert record["size_chosen"] == list(size) and size in ((960, 540), (640, 360)), record
    assert record["size_capped"] is False and len(record["size_candidates"]) == 2, "under its cap: no capped ones"  # type: ignore[arg-type]
    chosen = next(c for c in record["size_candidates"] if c[:2] == list(size))  # type: ignore[union-attr]
    own = float(record["size_vmaf"])  # type: ignore[arg-type]
    assert chosen[2] == crf and chosen[3] == stats.bytes * 8 and chosen[4] >= own - SizeRule().margin, record
    assert picture_size(path) == size and stats.bytes == path.stat().st_size and stats.path == path
    # the published file is the measured candidate: its quality at the display size is what was recorded
    again, _ = measure_vmaf(path, src, 1280, 720, FPS, subsample=3)
    assert abs(again - chosen[4]) < 0.01
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg_000000.ts"]


def test_a_low_rung_segment_as_good_at_the_slower_preset_is_published_from_that_encode(
        soft: Path, tmp_path: Path) -> None:
    """At 360p the slower-preset candidate (x264 medium, the rung's size, CRF + 2) is encoded and measured
    beside the own veryfast encode; published, the file is that encode (its x264 options say so)."""
    src = frames_of(soft)[:60]
    path = tmp_path / "seg_000000.ts"
    rule = SizeRule(candidates=(), slow=((1.0, 2.0),))
    stats, crf, size, record = SizeAnchor(rule).encode("360p", src, [i / 30 for i in range(60)], path, 640, 360,
                                                      (640, 360), FPS, 23.0, 800_000, 2.0)
    cands = record["size_candidates"]
    assert isinstance(cands, list) and [c[:3] + c[5:6] for c in cands] == [[640, 360, 25.0, "medium"]], record
    own = float(record["size_vmaf"])  # type: ignore[arg-type]
    assert record["size_chosen"] == [640, 360] and record["size_preset"] == "medium", record
    assert size == (640, 360) and crf == 25.0
    assert cands[0][3] == stats.bytes * 8 and cands[0][4] >= own - rule.margin, record
    data = path.read_bytes()
    assert b"subme=7" in data and b"subme=2" not in data, "the published file is the medium encode"
    again, _ = measure_vmaf(path, src, 640, 360, FPS, subsample=3)
    assert abs(again - cands[0][4]) < 0.01
    # the own encode, for the bits: the candidate was published only with fewer
    own_path = tmp_path / "own.ts"
    own_stats = SizeAnchor(SizeRule(candidates=(), slow=())).encode(
        "360p", src, [i / 30 for i in range(60)], own_path, 640, 360, (640, 360), FPS, 23.0, 800_000, 2.0)[0]
    assert stats.bytes < own_stats.bytes and b"subme=2" in own_path.read_bytes()


def test_a_candidate_within_the_vmaf_margin_but_below_the_psnr_guard_is_not_published(
        soft: Path, tmp_path: Path) -> None:
    """The slower-preset candidate of a 360p segment, measured (VMAF and luma PSNR in one libvmaf pass) beside
    the own encode; with the guard set just above the PSNR it loses (constructed from the rule's thresholds:
    a natural 1 dB case needs content this test cannot make small) the own encode is published although the
    candidate passes the VMAF margin with fewer bits; just below, the candidate is published."""
    src = frames_of(soft)[:60]
    times = [i / 30 for i in range(60)]
    base = SizeRule(candidates=(), slow=((1.0, 2.0),), psnr_margin=math.inf)
    path = tmp_path / "seg_000000.ts"
    stats, crf, _, record = SizeAnchor(base).encode("360p", src, times, path, 640, 360, (640, 360), FPS, 23.0,
                                                     800_000, 2.0)
    own_vmaf, own_psnr = float(record["size_vmaf"]), float(record["size_psnr"])  # type: ignore[arg-type]
    [cand] = record["size_candidates"]  # type: ignore[misc]
    assert record["size_chosen"] == [640, 360] and cand[5] == "medium" and cand[3] == stats.bytes * 8, record
    assert cand[4] >= own_vmaf - base.margin and 20 < cand[6] < 70 and 20 < own_psnr < 70, record
    drop = own_psnr - cand[6]  # what the candidate loses in PSNR (dB), to set the guard around it
    # the recorded figures are the published file's: the PSNR of the own-or-candidate file, re-measured
    again = measure_quality(path, src, 640, 360, FPS, subsample=3)
    assert abs(again.psnr - cand[6]) < 0.01 and abs(again.vmaf - cand[4]) < 0.01

    tight = replace(base, psnr_margin=drop - 0.05)
    path2 = tmp_path / "seg_000001.ts"
    stats2, crf2, size2, rec2 = SizeAnchor(tight).encode("360p", src, times, path2, 640, 360, (640, 360), FPS,
                                                         23.0, 800_000, 2.0)
    [cand2] = rec2["size_candidates"]  # type: ignore[misc]
    assert cand2[:6] == cand[:6] and cand2[6] == cand[6], "the same encodes, measured alike"
    assert cand2[3] < stats2.bytes * 8 and cand2[4] >= float(rec2["size_vmaf"]) - tight.margin, rec2  # type: ignore[arg-type]
    assert cand2[6] < float(rec2["size_psnr"]) - tight.psnr_margin, rec2  # type: ignore[arg-type]
    assert rec2["size_chosen"] is None and rec2["size_preset"] == X264_PRESET, "the guard kept the own encode"
    assert size2 == (640, 360) and crf2 == 23.0 and b"subme=2" in path2.read_bytes()
    own2 = measure_quality(path2, src, 640, 360, FPS, subsample=3)
    assert abs(own2.psnr - float(rec2["size_psnr"])) < 0.01  # type: ignore[arg-type]

    loose = replace(base, psnr_margin=drop + 0.05)
    rec3 = SizeAnchor(loose).encode("360p", src, times, tmp_path / "seg_000002.ts", 640, 360, (640, 360), FPS,
                                    23.0, 800_000, 2.0)[3]
    assert rec3["size_chosen"] == [640, 360] and rec3["size_preset"] == "medium", rec3
    assert crf == 25.0 and sorted(p.name for p in tmp_path.iterdir()) == [
        "seg_000000.ts", "seg_000001.ts", "seg_000002.ts"]


def test_a_failed_measurement_publishes_the_segments_own_encode(soft: Path, tmp_path: Path) -> None:
    src = frames_of(soft)[:60]
    path = tmp_path / "seg_000000.ts"
    stats, crf, size, record = SizeAnchor(measure_timeout=0.0).encode(
        "720p", src, [i / 30 for i in range(60)], path, 1280, 720, (1280, 720), FPS, 23.0, 3_000_000, 2.0)
    assert size == (1280, 720) and crf == 23.0 and record["size_chosen"] is None, record
    assert "libvmaf failed" in str(record["size_error"]), record
    assert picture_size(path) == (1280, 720) and stats.bytes == path.stat().st_size
    with av.open(str(path)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg_000000.ts"]


# ---------------------------------------------------------------------------- through the CLI

def test_the_core_publishes_small_segments_with_a_truthful_playlist_chain(soft: Path, tmp_path: Path) -> None:
    """Without any sidecar: the main ladder keeps each segment's frames, decides each rung's size by
    measurement, lists the segment at the size it chose (segments.jsonl and the picture agree), keeps one
    declared RESOLUTION per rendition (its maximum) and a BANDWIDTH above every segment's rate."""
    res = run_sidecast("run", str(soft), "-o", str(tmp_path), "--ladder", "720p:3000k,360p:800k", "--no-audio",
                       "--size-anchor", "--snapshots-fps", "0", "--no-progress")
    assert res.returncode == 0, res.stderr
    rs = rows(tmp_path)
    assert len(rs) == 8 and all(r["fallback"] is None and not r["hinted"] for r in rs), rs
    small = [r for r in rs if r["size_chosen"] is not None]
    assert small, "blurred content is as good at a smaller size"
    for r in rs:
        ts = tmp_path / "video" / str(r["rendition"]) / f"seg_{int(r['segment']):06d}.ts"  # type: ignore[call-overload]
        assert picture_size(ts) == (r["width"], r["height"]), r
        assert ts.stat().st_size == r["bytes"]
        if r["size_chosen"] is not None:
            assert [r["width"], r["height"]] == r["size_chosen"], r
            # smaller at a lower CRF; a higher CRF only where the own encode filled the cap or at the slower
            # preset (the 360p rung's candidates)
            assert float(r["crf"]) < 23.0 or r["size_capped"] or r["size_preset"] != X264_PRESET, r  # type: ignore[arg-type]
            assert r["size_preset"] == X264_PRESET or r["rendition"] == "360p", r
        else:
            assert float(r["crf"]) == 23.0
    master = m3u8.load(str(tmp_path / "master.m3u8"))
    assert {p.stream_info.resolution for p in master.playlists} == {(1280, 720), (640, 360)}
    assert_bandwidth_truthful(tmp_path)
    assert not list(tmp_path.rglob(".*.ts")), "no candidate file is left behind"


# ---------------------------------------------------------------------------- on by default with the bitrate sidecar

@pytest.mark.parametrize(("extra", "as_it_happens", "hinted", "vmaf", "on", "why"), [
    ({}, False, True, True, True, "a file run with bitrate hints"),
    ({}, False, False, True, False, "no bitrate sidecar"),
    ({}, True, True, True, False, "as it happens"),
    ({"no_size_anchor": True}, False, True, True, False, "--no-size-anchor"),
    ({"size_anchor": True}, True, False, True, True, "--size-anchor"),  # asked for: live or not, hints or not
    ({"target_vmaf": "93"}, False, True, True, False, "--target-vmaf"),
    ({"rate_control": "vbr"}, False, True, True, False, "--rate-control vbr"),
    ({"latency": "low"}, False, True, True, False, "--latency low"),
    ({}, False, True, False, False, "libvmaf not found"),
])
def test_a_file_run_with_bitrate_hints_measures_its_size_decisions_by_default(
        extra: dict[str, object], as_it_happens: bool, hinted: bool, vmaf: bool, on: bool, why: str) -> None:
    """Issue 14: the user who adds --sidecars bitrate to the defaults gets the measured decision (the part that
    saves bits), where it can be afforded: never on media that comes as it happens, unless asked for."""
    from sidecast.core.options import RunOptions

    cfg = RunOptions.from_mapping({"source": "in.mp4", "outdir": "out", **extra})
    asked: list[bool] = []

    def has_vmaf() -> bool:
        asked.append(True)
        return vmaf

    got, reason = cfg.size_anchor_for(as_it_happens, hinted, has_vmaf)
    assert (got, why in reason) == (on, True), (got, reason)
    assert bool(asked) == (not extra and hinted and not as_it_happens), "libvmaf is looked for only when it decides"


def test_size_anchor_and_no_size_anchor_together_are_refused(tmp_path: Path) -> None:
    res = run_sidecast("run", "in.mp4", "-o", str(tmp_path), "--size-anchor", "--no-size-anchor", "--no-progress")
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 2 and len(lines) == 1, res.stderr
    assert "--size-anchor and --no-size-anchor contradict each other" in lines[0]


def test_sidecars_bitrate_on_a_file_publishes_measured_sizes_and_no_size_anchor_keeps_hints_alone(
        soft: Path, tmp_path: Path) -> None:
    """Through the CLI with the real bitrate sidecar over gRPC: by default every hinted segment is measured
    (segments.jsonl carries the measurement) and the blurred pattern is published smaller somewhere;
    ``--no-size-anchor`` publishes the hints as they are, with nothing measured."""
    # the default three-rung ladder: two rungs are scaled and measured at once (a deadlock before the twentieth
    # session, test_the_rungs_of_a_segment_measured_at_once_never_deadlock_in_the_scaler)
    common = ("--sidecars", "bitrate", "--ladder", "720p:3000k,480p:1400k,360p:800k", "--no-audio",
              "--snapshots-fps", "0", "--no-progress")
    run_sidecast("run", str(soft), "-o", str(tmp_path / "auto"), *common, check=True)
    run_sidecast("run", str(soft), "-o", str(tmp_path / "hints"), *common, "--no-size-anchor", check=True)
    auto, hints = rows(tmp_path / "auto"), rows(tmp_path / "hints")
    assert len(auto) == len(hints) == 12
    assert sum(bool(r["hinted"]) for r in auto) >= 9, "hints arrived for the segments"
    measured = [r for r in auto if r.get("size_vmaf") is not None]
    assert len(measured) == len(auto), [r.get("size_error") for r in auto]
    assert any(r["size_chosen"] is not None for r in auto), "blurred content is as good at a smaller size"
    assert not any("size_vmaf" in r for r in hints), "--no-size-anchor measures nothing"
    for r in auto:
        ts = tmp_path / "auto" / "video" / str(r["rendition"]) / f"seg_{int(r['segment']):06d}.ts"  # type: ignore[call-overload]
        assert picture_size(ts) == (r["width"], r["height"]), r
    assert sum(int(r["bytes"]) for r in auto) < sum(int(r["bytes"]) for r in hints)  # type: ignore[call-overload]
    assert_bandwidth_truthful(tmp_path / "auto")


def test_the_rungs_of_a_segment_measured_at_once_never_deadlock_in_the_scaler() -> None:
    """The core measures every rung of a segment at once from the same source frames. ``VideoFrame.reformat``
    keeps one libswscale context on the frame, so the rungs' reference writers scaled through one context from
    several threads and deadlocked (a three-rung file run with the measured size decision hung at its first
    segment). Each writer now scales with its own, and the bytes are those of a writer alone."""
    import io
    import threading

    from sidecast.core.anchor import write_y4m

    rng = np.random.default_rng(7)
    frames = [av.VideoFrame.from_ndarray(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8), format="rgb24")
              .reformat(format="yuv420p") for _ in range(12)]
    sizes = ((854, 480), (640, 360), (426, 240))
    alone = {}
    for w, h in sizes:
        buf = io.BytesIO()
        write_y4m(buf, frames, FPS, w, h)
        alone[(w, h)] = buf.getvalue()
    got: dict[tuple[int, int], list[bytes]] = {s: [] for s in sizes}

    def measure(w: int, h: int) -> None:
        for _ in range(4):
            buf = io.BytesIO()
            write_y4m(buf, frames, FPS, w, h)
            got[(w, h)].append(buf.getvalue())

    threads = [threading.Thread(target=measure, args=s, daemon=True) for s in sizes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a writer is stuck in the scaler"
    for s in sizes:
        assert got[s] == [alone[s]] * 4, s
