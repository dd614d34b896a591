"""bench/stt.py ``--record``: the cue-builder calls of a real-time run, saved for devkit/sttcues.py to replay
other cue settings on the same commits. The record must follow the sidecar's own ``_publish_step`` (a change of
its signature broke every recorded run once, unnoticed until a held-out measurement), and replaying it through
the sidecar's cue settings must give back the cues the run published. Real tiny.en on a tuning clip."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

from devkit import realspeech as rs
from sidecast.sidecars.stt import engine
from sidecast.sidecars.stt.shaping import CueBuilder
from tests.conftest import ROOT, load_script


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench_stt", ROOT / "bench" / "stt.py")


def test_a_recorded_run_replays_to_the_cues_it_published(bench: ModuleType, tmp_path: Path) -> None:
    prog = rs.tuning_programme(["asterisk-en/vm-nobodyavail", "librivox/0870"], [1.0, 0.5])  # tuning clips only
    spec = engine.resolve_spec(None, "cpu", "int8", 2)
    run = bench.stream(prog.audio, spec, speed=4.0)
    published = [c for _, c in run.published if c.final and not c.track]
    assert len(published) >= 3 and run.calls, (published, len(run.calls))
    assert run.calls[-1].final  # the stream's end is recorded too
    path = tmp_path / "calls.json"
    bench.save_calls(path, run.t0, run.calls, speed=4.0)
    t0, speed, calls = bench.load_calls(path)
    assert (t0, speed) == (run.t0, 4.0) and calls == run.calls
    replayed = [c for _, c in bench.recut(calls, CueBuilder())]
    assert [(c.text, c.start, c.end) for c in replayed] == [(c.text, c.start, c.end) for c in published]
