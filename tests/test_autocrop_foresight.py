"""How much foresight stillness needs (issue 20): the receding-horizon camera of ``devkit/autocrop_replay.py
horizon``, on plain data, and its reading of the bench's holds on real footage.

The camera's states are (x cell, speed index); it may change speed by one step a frame, at most
``FRONTIER_VMAX`` px a frame."""

from __future__ import annotations

import numpy as np
import pytest

from devkit import footage
from devkit.autocrop_replay import (
    FRONTIER_GRID,
    FRONTIER_VMAX,
    dp_path,
    hold_spans_index,
    hold_step_weights,
    receding_path,
)

NX = 100  # x cells of 2 px
VMAX_CELLS = FRONTIER_VMAX // FRONTIER_GRID


def jump_scene(n: int = 80, at: int = 40, lo: int = 10, hi: int = 60, room: int = 10) -> np.ndarray:
    """1 where a crop at cell x leaves the subject out: it stands so that cells [lo, lo+room] frame it, then
    at frame ``at`` (someone new takes over, a subject who was hidden) cells [hi, hi+room]."""
    unc = np.ones((n, NX))
    unc[:at, lo:lo + room + 1] = 0.0
    unc[at:, hi:hi + room + 1] = 0.0
    return unc


def cost(path: list[int], unc: np.ndarray, lam: float) -> float:
    return float(sum(abs(b - a) * FRONTIER_GRID for a, b in zip(path, path[1:], strict=False))
                 + lam * sum(unc[i, x] for i, x in enumerate(path)))


def limits_ok(path: list[int]) -> bool:
    v = np.diff(path)
    return bool(np.all(np.abs(v) <= VMAX_CELLS) and np.all(np.abs(np.diff(v)) <= 1) and abs(v[0]) <= 1)


def test_the_plan_keeps_the_camera_limits_and_moves_only_for_the_subject() -> None:
    """Coverage first (a high price per uncovered frame): the camera frames the subject before and after the
    jump, eases in and out (speed and its change bounded) and does not move otherwise; a low price keeps it
    still and lets the subject go."""
    unc = jump_scene()
    path = [x for x, _ in dp_path(unc, np.ones(len(unc)), lam=1000.0)]
    assert limits_ok(path)
    assert unc[0, path[0]] == 0 and unc[-1, path[-1]] == 0
    moving = [i for i in range(1, len(path)) if path[i] != path[i - 1]]
    assert moving and 25 <= moving[0] and moving[-1] <= 55  # one move around the jump, nothing else
    assert all(moving[k + 1] == moving[k] + 1 for k in range(len(moving) - 1))
    still = [x for x, _ in dp_path(unc, np.ones(len(unc)), lam=0.01)]
    assert len(set(still)) == 1


def test_foresight_starts_the_move_before_the_subject_jumps() -> None:
    """A camera that sees the jump coming (the whole shot, or a horizon longer than the move) leaves early,
    so fewer frames lose the subject than for one that sees only the present frame — which still goes
    after the subject once it has jumped, though the move takes longer than it can see ahead (beyond its
    horizon it takes the subject to stay where last seen); with the whole shot in view the receding plan
    costs what the whole-shot plan costs (planning again on what it already knew changes nothing)."""
    unc = jump_scene()
    n = len(unc)
    ids, holds = [0] * n, [True]
    shot = [0] * n
    whole = receding_path(unc, ids, holds, shot, 1000.0, None)
    blind = receding_path(unc, ids, holds, shot, 1000.0, 0)
    ahead = receding_path(unc, ids, holds, shot, 1000.0, 25)
    for p in (whole, blind, ahead):
        assert limits_ok(p)
    lost = {k: int(sum(unc[i, x] for i, x in enumerate(p))) for k, p in
            (("whole", whole), ("blind", blind), ("ahead", ahead))}
    assert lost["whole"] == lost["ahead"] < lost["blind"], lost
    first_move = {k: next(i for i in range(1, n) if p[i] != p[i - 1]) for k, p in
                  (("whole", whole), ("blind", blind), ("ahead", ahead))}
    assert first_move["ahead"] < 40 <= first_move["blind"], first_move
    assert unc[-1, blind[-1]] == 0
    full = receding_path(unc, ids, holds, shot, 1000.0, n, replan=7)
    assert cost(full, unc, 1000.0) == pytest.approx(cost(whole, unc, 1000.0))


def test_a_cut_is_a_free_jump_and_each_shot_is_planned_alone() -> None:
    """At a cut the camera starts afresh wherever the new shot needs it, whatever its speed before."""
    a, b = jump_scene(40, 40, 10, 60), jump_scene(40, 0, 10, 80)
    unc = np.vstack([a, b])
    shot = [0] * 40 + [1] * 40
    for h in (None, 5):
        p = receding_path(unc, [-1] * 80, [], shot, 1000.0, h)
        assert all(unc[i, x] == 0 for i, x in enumerate(p)), h
        assert len(set(p[:40])) == 1 and len(set(p[40:])) == 1 and p[39] != p[40]


def test_the_hold_spans_read_on_plain_data() -> None:
    """The bench's holds, span by span: a subject that stands is a hold once a span lasts 1 s (the first
    0.2 s after a cut belong to the jump); a frame without its box closes the span; a subject that crosses
    80 % of the crop in a fraction of a second makes spans too short to be holds; a shot with no subject is
    a hold whole, however short. A camera that knows the boxes only up to frame e counts the span still
    open there as a hold (it does not know yet that it will be cut short)."""
    fps, cw = 25.0, 202.0
    xs: list[tuple[float, float] | None] = [(300.0, 340.0)] * 75  # shot 0: stands 3 s
    xs[40] = None  # lost for one frame at 1.6 s
    xs += [(100.0 + 16 * i, 140.0 + 16 * i) for i in range(25)]  # shot 1: runs 400 px in 1 s
    xs += [None] * 10  # shot 2: a tree, 0.4 s
    none = [False] * 100 + [True] * 10
    shot = [0] * 75 + [1] * 25 + [2] * 10
    times = [i / fps for i in range(len(xs))]
    ids, holds = hold_spans_index(xs, none, shot, times, cw)
    hold = [bool(x == 1.0) for x in hold_step_weights(ids, holds, 0, len(xs) - 1)]
    expected = [6 <= i <= 39 or 42 <= i <= 74 or 106 <= i <= 109 for i in range(len(xs))]
    assert hold == expected
    partial = hold_step_weights(ids, holds, 80, 90, known=90)  # the runner's span 88-95, open at 90
    assert [i for i, w in enumerate(partial, start=80) if w == 1.0] == [89, 90]


@pytest.mark.parametrize("name", ["mixed_tune", "pedestrians"])
def test_the_hold_spans_are_the_benchs_on_real_footage(name: str) -> None:
    """``hold_spans_index`` is ``footage.holds`` frame step for frame step on the tune clips (a shot with no
    subject, punch-ins, walkers), so the foresight table is scored on the bench's own holds."""
    c = footage.clip(name)
    times = c.frame_times()
    shot = np.searchsorted(np.array([0.0, *c.cuts]), np.array(times) + 1e-9, side="right").tolist()
    boxes = [(r[0][0], r[0][2]) if (r := c.references(t)) else None for t in times]
    none = [c.subject(t) == "none" for t in times]
    ids, holds = hold_spans_index(boxes, none, shot, times, 202)
    spans = footage.holds(c, times, 202)
    mine = [bool(x == 1.0) for x in hold_step_weights(ids, holds, 0, len(times) - 1)][1:]
    assert mine == [footage._in_spans(times, i, spans) for i in range(1, len(times))]
    assert sum(mine) > 100


@pytest.mark.parametrize("args", [["--replan", "0"], ["--horizons", "-1"], ["--outside", "0"], ["--outside", "2"]])
def test_bad_horizon_options_are_one_line_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from devkit.autocrop_replay import main

    with pytest.raises(SystemExit) as e:
        main(["horizon", "--split", "tune", *args])
    assert e.value.code == 2
    assert "must be" in capsys.readouterr().err
