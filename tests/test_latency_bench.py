"""bench/latency.py's configurations are runs a user could start: every sidecast configuration's flags pass
the core's option checks, and the stt settings a configuration hands its sidecar (``--sidecar-arg stt=...``)
pass the sidecar's own checks and reach the sidecar it builds. A configuration with a flag the core or the
sidecar refuses would otherwise fail only minutes into a bench run, under the CPU lock."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from sidecast.core.errors import ConfigError
from sidecast.core.options import RunOptions
from sidecast.sidecars.stt import SttSidecar
from sidecast.sidecars.stt.engine import ModelError
from tests.conftest import ROOT, load_script


def bench() -> ModuleType:
    return load_script("bench_latency", ROOT / "bench" / "latency.py")


CONFIGS: dict[str, Any] = bench().CONFIGS
SIDECAST = sorted(k for k, c in CONFIGS.items() if c.kind in ("sidecast", "whip", "whip-aiortc"))
WITH_STT_ARGS = sorted(k for k in SIDECAST
                       if any(f == "--sidecar-arg" and a.startswith("stt=")
                              for f, a in zip(CONFIGS[k].args, CONFIGS[k].args[1:], strict=False)))


def run_options(args: list[str]) -> RunOptions:
    p = argparse.ArgumentParser()
    RunOptions.add_arguments(p)
    ns = p.parse_args(["rtmp://127.0.0.1:1935/live/bench", "-o", "out", *args])
    return RunOptions.from_namespace(ns).validate()


def stt_sidecar(argv: list[str]) -> SttSidecar:
    p = argparse.ArgumentParser()
    SttSidecar.add_arguments(p)
    sidecar = SttSidecar.from_args(p.parse_args(argv))()
    assert isinstance(sidecar, SttSidecar)
    return sidecar


@pytest.mark.parametrize("key", SIDECAST)
def test_every_sidecast_configuration_passes_the_core_option_checks(key: str) -> None:
    opts = run_options(CONFIGS[key].args)
    assert opts.latency in ("low", "normal")
    if CONFIGS[key].hls.get("lowLatencyMode"):
        assert opts.latency == "low", "an LL-HLS player on a plain HLS stream measures nothing of LL-HLS"


def test_the_quicker_caption_configurations_are_there() -> None:
    """(s) and (t), the low-latency stt settings of docs/latency.md ("Captions at low latency"), hand their
    settings to the stt sidecar; (t) adds a hold-back."""
    assert {"s", "t"} <= set(WITH_STT_ARGS)
    assert run_options(CONFIGS["t"].args).part_hold_back == 2.0
    assert run_options(CONFIGS["s"].args).part_hold_back is None


@pytest.mark.parametrize("key", WITH_STT_ARGS)
def test_the_stt_settings_of_a_configuration_reach_the_sidecar(key: str) -> None:
    argv = run_options(CONFIGS[key].args).sidecar_args["stt"]
    sidecar = stt_sidecar(argv)
    given = dict(a.split("=", 1) for a in argv)
    if "--beam-size" in given:
        assert sidecar.beam_size == int(given["--beam-size"])
    if "--keep-context" in given:
        assert sidecar.stream_config.keep_context == float(given["--keep-context"])
    if "--max-open" in given:
        assert sidecar.max_open == float(given["--max-open"])
    assert sidecar.stream_config.pause_commit == (given.get("--pause-commit", "on") == "on")


def test_a_configuration_with_stt_settings_out_of_range_is_refused() -> None:
    with pytest.raises(ModelError, match="--keep-context 0..20"):
        stt_sidecar(["--beam-size=1", "--keep-context=30"])
    with pytest.raises(ConfigError, match="--sidecar-arg"):
        run_options(["--latency", "low", "--sidecars", "autocrop", "--sidecar-arg", "stt=--beam-size=1"])


def test_the_bench_refuses_an_unknown_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    module = bench()
    monkeypatch.setenv("SIDECAST_BROWSER_LOWER", "0")  # main() sets it: restored after the test
    monkeypatch.setattr("sys.argv", ["latency.py", "--configs", "b,zz"])
    with pytest.raises(SystemExit, match="unknown configuration 'zz'"):
        module.main()


def test_a_configuration_run_twice_gets_a_folder_of_its_own(tmp_path: Path) -> None:
    """``--configs b,k,u,k``: the second (k) must not write into the first one's folder, where its WebVTT
    parts would count as due cues of the second run."""
    fresh_tag = bench().fresh_tag
    assert fresh_tag(tmp_path, "k") == "k"
    (tmp_path / "k-out").mkdir()
    assert fresh_tag(tmp_path, "k") == "k2"
    (tmp_path / "k2-out").mkdir()
    assert fresh_tag(tmp_path, "k") == "k3" and fresh_tag(tmp_path, "u") == "u"


def test_a_missed_caption_is_told_apart_by_when_its_part_was_written(tmp_path: Path) -> None:
    """hls.js never loads a subtitle part that lies behind its playhead, so a cue whose part reached the
    playlist after the viewer's playhead passed its end shows as 'never reached the player', just as a part
    lost on the way would. The bench tells them apart by when the first part carrying each cue was written
    (its file time) against the wall time the playhead passed the cue's end: real WebVTT parts, a player
    report 10 s ahead of sidecast's media time."""
    from sidecast.contract.records import Cue
    from sidecast.core.captions import render_vtt_part
    from sidecast.hls import timebase

    b = bench()
    subs = tmp_path / "subs" / "en"
    subs.mkdir(parents=True)
    cues = [Cue(0.1, 0.4, "shown in time", id="a"), Cue(0.6, 0.9, "written after it was over", id="b"),
            Cue(1.1, 1.4, "written just before", id="c"), Cue(1.6, 1.9, "written in time but not shown", id="d")]
    wall = lambda ct: 90.6 + ct  # noqa: E731  the playhead reaches player time ct at this wall time
    written = [wall(10.4) - 1.0, wall(10.9) + 0.1, wall(11.4) - 0.1, wall(11.9) - 1.0]
    # one more cue over two parts: the first out 0.35 s before the cue's end but after the playhead left that
    # part, the second after the cue's end: hls.js, which loads no part behind its playhead, got neither
    cues += [Cue(2.1, 2.9, "its parts came after the playhead left them", id="e")] * 2
    written += [wall(12.5) + 0.05, wall(12.9) + 0.1]
    for n, (cue, at) in enumerate(zip(cues, written, strict=True)):
        path = subs / f"seg_{n // 4:06d}-{n % 4}.vtt"  # 2 s segments of four 0.5 s parts
        path.write_text(render_vtt_part([cue], n * 0.5, n * 0.5 + 0.5, timebase.media_to_pts(n * 0.5)))
        os.utime(path, (at, at))
    samples = [{"ct": 10.0 + i * 0.25, "wall": wall(10.0 + i * 0.25) * 1000} for i in range(14)]
    seen = [{"text": "shown in time", "start": 10.1, "end": 10.4, "seenAt": 10.15}]
    added = [{**seen[0], "addedAt": 10.05}]
    details: list[dict[str, Any]] = []
    visible, due = b.caption_visibility(seen, b.file_cues(subs), (10.0, 13.0), added, details,
                                        b.cue_parts(subs, 2.0, 0.5), b.playhead_wall(samples))
    assert (visible, due) == (1, 5)
    margins = {d["text"]: [d["margin"], d["first_margin"]] for d in details}
    assert margins.pop("its parts came after the playhead left them") == pytest.approx([-0.05, 0.35], abs=1e-3)
    assert {k: v[0] for k, v in margins.items()} == {k: v[1] for k, v in margins.items()} == pytest.approx(
        {"shown in time": 1.0, "written after it was over": -0.1, "written just before": 0.1,
         "written in time but not shown": 1.0}, abs=1e-3)
    causes = b.missed_causes([d for d in details if not d["visible"]])
    assert [[d["text"] for d in causes[k]] for k in ("late", "tight", "lost", "unknown")] == [
        ["written after it was over", "its parts came after the playhead left them"], ["written just before"],
        ["written in time but not shown"], []]
    assert b.playhead_wall(samples)(9.0) is None and b.playhead_wall(samples)(14.0) is None
