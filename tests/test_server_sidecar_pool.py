"""The server's shared sidecar pool at shutdown: a sidecar the pool itself stopped is not an exit.

Live server benches logged "shared sidecar exited" once per run at their end: the supervisor's periodic
``check()`` saw the process that ``close()`` had just terminated, reported it as a crash and, with streams
still registered, started it again during shutdown."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sidecast.core.server.sidecars import SidecarPool
from tests.conftest import wait_for


def test_close_stops_the_shared_sidecars_without_reporting_or_restarting_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pool = SidecarPool(tmp_path / "run", tmp_path / "logs")
    pool.log_dir.mkdir(parents=True)
    pool.target("scenecut", "cam-1")          # a real `sidecast sidecar scenecut` process
    sc = pool.sidecars["scenecut"]
    assert sc.proc is not None
    wait_for(lambda: sc.socket.exists() or sc.proc.poll() is not None, 60, "the sidecar to listen")  # type: ignore[union-attr]
    assert sc.proc.poll() is None, sc.log_path.read_text()[-2000:]
    first = sc.proc
    with caplog.at_level(logging.INFO, logger="sidecast"):
        pool.close()
        assert first.poll() is not None      # stopped by close()
        pool.check()                         # the supervisor's next tick, with the stream still registered
        pool.target("scenecut", "cam-2")     # a stream asking for it while the server shuts down
    assert not [r for r in caplog.records if "shared sidecar exited" in r.getMessage()]
    assert sc.proc is first, "nothing was started again after close()"


def _stt_options(argv: list[str]) -> dict[str, object]:
    """What a `sidecast sidecar stt` process started with ``argv`` runs with (its own argument parser)."""
    import argparse

    from sidecast.sidecars.stt.sidecar import SttSidecar

    ap = argparse.ArgumentParser()
    SttSidecar.add_arguments(ap)
    return dict(SttSidecar.from_args(ap.parse_args(argv)).keywords)  # type: ignore[attr-defined]


def test_the_shared_stt_sidecar_decodes_in_chunks_under_load_unless_the_operator_says_off(tmp_path: Path) -> None:
    # The server's default for its one stt process (many streams, one model): chunk passes while behind,
    # greedy, 1.5 s cap (docs/server.md, "Eight caption streams, again").
    pool = SidecarPool(tmp_path / "run", tmp_path / "logs")
    opts = _stt_options(pool.arguments("stt"))
    assert (opts["load_policy"], opts["chunk_cap"], opts["chunk_beam"]) == ("chunk", 1.5, 1)
    # The operator's --sidecar-arg comes after the defaults, so it wins: off restores the plain sidecar.
    off = SidecarPool(tmp_path / "run", tmp_path / "logs", args={"stt": ["--load-policy=off", "--beam-size=2"]})
    assert off.arguments("stt")[-2:] == ["--load-policy=off", "--beam-size=2"]
    opts = _stt_options(off.arguments("stt"))
    assert (opts["load_policy"], opts["beam_size"]) == ("off", 2)
    # Other shared sidecars get only what the operator gives them; a stand-alone stt sidecar stays off.
    assert SidecarPool(tmp_path / "run", tmp_path / "logs", args={"scenecut": ["--x=1"]}).arguments("scenecut") == ["--x=1"]
    assert _stt_options([])["load_policy"] == "off"
