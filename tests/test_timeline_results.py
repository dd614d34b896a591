"""results.jsonl keeps every generic result, also those a sidecar sends before the output folder exists."""

from __future__ import annotations

import json
from pathlib import Path

from sidecast.contract.records import Generic
from sidecast.core.timeline import Timeline


def test_generic_results_before_the_file_opens_are_written_first_and_in_order(tmp_path: Path) -> None:
    # A sidecar may answer from on_start, before the source is open and the core opens results.jsonl:
    # those results used to be dropped (seen by a test of extra video feeds).
    tl = Timeline()
    tl.add("probe", Generic(start=0.0, end=0.0, kind="hello", data={"n": 1}))
    tl.add("probe", Generic(start=0.5, end=0.5, kind="hello", data={"n": 2}))
    path = tmp_path / "results.jsonl"
    tl.open_results(path)
    tl.add("probe", Generic(start=1.0, end=1.0, kind="tick", data={"n": 3}))
    tl.close()
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["sidecar"], r["kind"], r["data"]["n"]) for r in rows] == [("probe", "hello", 1), ("probe", "hello", 2),
                                                                          ("probe", "tick", 3)]


def test_early_results_are_bounded_and_the_overflow_is_counted(tmp_path: Path) -> None:
    tl = Timeline()
    tl.EARLY_MAX = 3
    for n in range(5):
        tl.add("probe", Generic(start=float(n), end=float(n), kind="k", data={"n": n}))
    tl.open_results(tmp_path / "r.jsonl")
    tl.close()
    rows = [json.loads(line)["data"]["n"] for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert rows == [0, 1, 2] and tl.early_dropped == 2
