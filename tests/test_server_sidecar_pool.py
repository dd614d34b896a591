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
