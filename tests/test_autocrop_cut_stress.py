"""The shot-cut detector on held-out real footage through a virtual camera (``devkit/cutcorpus.py``): cuts
right after a whip pan's motion blur must be found, and whips, flashes, zooms and shake inside a shot must
not be cut. Two held-out clips (3.7 min of footage), the detector alone as the sidecar runs it (5 fps,
480 px, with the learned second opinion of ``models/shots``); none of these clips was used to choose the
detector's constants."""

from __future__ import annotations

import pytest

from devkit import cutcorpus, footage

CLIPS = ("stress_held_4", "stress_held_5")


@pytest.fixture(scope="module")
def detected() -> dict[str, tuple[cutcorpus.StressClip, list[float]]]:
    clips = {c.name: c for c in cutcorpus.stress("held_out")}
    return {name: (clips[name], cutcorpus.detect_cuts(clips[name])[0]) for name in CLIPS}


def whip_out_cuts(clip: cutcorpus.StressClip) -> list[float]:
    """Cuts that end a segment whose last 0.6 s is a whip pan (motion-blurred frames up to the cut)."""
    out = []
    for seg, t0 in zip(clip.segments, clip.starts(), strict=True):
        if "whip-out" in seg.tags:
            out += [c for c in clip.cuts if abs(c - (t0 + seg.duration)) < 0.05]
    return out


def test_the_clips_hold_the_hard_cases(detected: dict[str, tuple[cutcorpus.StressClip, list[float]]]) -> None:
    tags = [t for clip, _ in detected.values() for s in clip.segments for t in s.tags]
    assert tags.count("whip") >= 10 and tags.count("flash") >= 6 and tags.count("whip-out") >= 5, tags
    assert sum(len(clip.cuts) for clip, _ in detected.values()) >= 40


def test_cuts_after_a_whip_pan_are_found(detected: dict[str, tuple[cutcorpus.StressClip, list[float]]]) -> None:
    hit = total = 0
    for clip, found in detected.values():
        cuts = whip_out_cuts(clip)
        total += len(cuts)
        hit += footage.match_cuts(cuts, found, 0.2)[0]
    # measured: 6 of 7 (the shift-blind detector this replaced: 3 of 7)
    assert total == 7 and hit >= 6, (hit, total)


def test_cut_recall_and_no_false_cut_on_whips_flashes_and_shake(
        detected: dict[str, tuple[cutcorpus.StressClip, list[float]]]) -> None:
    hit = total = false = 0
    for clip, found in detected.values():
        h, f = footage.match_cuts(clip.cuts, found, 0.2)
        hit, total, false = hit + h, total + len(clip.cuts), false + f
    # measured: 40 of 43 cuts, no false cut in 220 s (without the learned second opinion: 39 of 43; the
    # shift-blind detector before that: 35 of 43, 6 false cuts)
    assert hit >= 40 and false == 0, (hit, total, false)


def test_the_reference_keeps_short_shots_and_merges_only_flashes() -> None:
    """A virtual-camera segment that starts 0.32-0.48 s after its source's own cut leaves an 8-12 frame shot:
    a viewer sees two cuts, so the reference must list both (it merged them at 0.5 s until 2026-12-01). Only a
    1-3 frame flash of a shot before an edit is one cut."""
    clip = next(c for c in cutcorpus.stress("held_out") if c.name == "stress_held_1")
    cuts = clip.cuts
    assert all(b - a >= cutcorpus.FLASH_MERGE for a, b in zip(cuts, cuts[1:], strict=False)), cuts
    assert cutcorpus.FLASH_MERGE <= 4 / 25, "a 4-frame shot is a shot"
    # the three short shots of this clip (source cut, then the edit 8-12 frames later) are all there
    for pair_end in (10.84, 53.24, 81.32):
        assert any(abs(c - pair_end) < 0.02 for c in cuts), (pair_end, cuts)
        assert any(0.3 <= pair_end - c <= 0.5 for c in cuts), (pair_end, cuts)
