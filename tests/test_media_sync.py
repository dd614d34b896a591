"""A/V sync and segment truth on nasty inputs (devkit/nasty.py), read back by an independent checker
(devkit/avcheck.py: ffprobe packet timestamps, flash/beep sync markers decoded by FFmpeg's CLI).

Targets, per case: |A/V offset| at the end ≤ 1 video frame; every flash/beep pair ≤ 1 frame apart; every
segment's EXTINF within 1 frame of its media; the output's length what the source holds (gaps filled,
never squeezed); portrait sources published portrait; interlaced sources deinterlaced; a truncated file
exits non-zero with one line and still publishes what was read.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from devkit.avcheck import Report, check, comb_score
from devkit.nasty import CASES, Case
from tests.browser.harness import play_hls, serve
from tests.conftest import SIDECAST

RUNS: dict[str, tuple[Case, subprocess.CompletedProcess[str], Path]] = {}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("nasty")


def run_case(name: str, root: Path, *extra: str) -> tuple[Case, subprocess.CompletedProcess[str], Path]:
    key = name + "".join(extra)
    if key not in RUNS:
        case = CASES[name]
        src = case.build(root / name)
        out = root / f"out-{key}"
        proc = subprocess.run([SIDECAST, "run", str(src), "-o", str(out), "--ladder", "240p:400k", "--no-progress",
                               "--snapshots-fps", "0", *case.extra_args, *extra],
                              capture_output=True, text=True, timeout=300)
        RUNS[key] = (case, proc, src)
    return RUNS[key]


@pytest.mark.parametrize("name", list(CASES))
def test_sync_and_segment_truth_hold_on_nasty_input(name: str, corpus: Path) -> None:
    case, proc, _ = run_case(name, corpus)
    out = corpus / f"out-{name}"
    if case.expect_error:
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and case.expect_error in lines[-1], proc.stderr[-2000:]
        assert sum("sidecast: error" in ln for ln in lines) == 1
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert (out / "video").exists() and "#EXT-X-ENDLIST" in next((out / "video").iterdir()).joinpath(
        "index.m3u8").read_text(), "what was read is published, and the playlist is closed"
    frame = 1 / case.fps
    rep: Report = check(out, case.fps)
    print(f"\n{name:16s} {rep.line()}")
    assert abs(rep.end_offset) <= frame, rep.line()
    assert rep.worst_extinf_error <= frame, rep.line()
    assert abs(rep.video_seconds - case.duration) <= frame, f"{rep.video_seconds:.3f} s of video, expected {case.duration}"
    if case.interlaced or name == "odd_size":
        return  # no sync markers in these sources (FFmpeg test patterns)
    assert len(rep.marker_offsets) >= int(case.duration) - 3, f"only {len(rep.marker_offsets)} flash/beep pairs"
    assert rep.worst_marker_offset <= frame, [round(x * 1000, 1) for x in rep.marker_offsets]


def test_a_portrait_phone_video_is_published_portrait(corpus: Path) -> None:
    run_case("portrait", corpus)
    rep = check(corpus / "out-portrait", 30.0)
    assert rep.height > rep.width, (rep.width, rep.height)


def test_interlaced_sources_are_deinterlaced_by_default_and_not_when_asked(corpus: Path) -> None:
    _, _, src = run_case("interlaced_576i", corpus)
    run_case("interlaced_576i", corpus, "--deinterlace", "off")
    source = comb_score(src)
    auto = comb_score(corpus / "out-interlaced_576i" / "video" / "576p" / "index.m3u8")
    off = comb_score(corpus / "out-interlaced_576i--deinterlaceoff" / "video" / "576p" / "index.m3u8")
    assert auto < 0.5 * source, (source, auto)
    assert off > 0.8 * source, (source, off)


@pytest.mark.parametrize(("name", "portrait"), [("portrait", True), ("interlaced_576i", False)])
def test_portrait_and_deinterlaced_outputs_play_in_hls_js(name: str, portrait: bool, corpus: Path) -> None:
    """The published ladder of a phone's portrait clip and of a 576i broadcast clip plays in a real browser,
    at the orientation and size the master playlist declares."""
    run_case(name, corpus)
    with serve(corpus / f"out-{name}") as base:
        report = play_hls(base + "master.m3u8", seconds=2.5, timeout=60)
    report.raise_for_fatal()
    assert report.advanced_by() >= 2.0, report.summary()
    w, h = report.video_size
    assert w > 0 and h > 0, report.summary()
    assert (h > w) == portrait, report.summary()
    declared = {(lv["width"], lv["height"]) for lv in report.levels}
    assert (w, h) in declared, (report.video_size, declared)
