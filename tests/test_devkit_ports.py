"""The test servers' ports come from below the kernel's range for outgoing connections, one block per worker."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from devkit.ports import _ephemeral_low, free_port
from tests.conftest import ROOT


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert max(ports) < _ephemeral_low()
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))


def test_a_port_someone_holds_is_never_handed_out() -> None:
    held = []
    try:
        for _ in range(20):
            port = free_port()
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen()
            held.append(s)
        taken = {s.getsockname()[1] for s in held}
        # the counter walks the whole block, so it comes back round: none of the held ports may come again
        again = [free_port() for _ in range(1600)]
        assert not taken & set(again)
    finally:
        for s in held:
            s.close()


def test_two_xdist_workers_draw_from_different_blocks() -> None:
    code = "from devkit.ports import free_port; print(free_port())"
    got = {}
    for worker in ("gw0", "gw1", "gw2"):
        env = {**os.environ, "PYTEST_XDIST_WORKER": worker, "PYTHONPATH": str(ROOT)}
        got[worker] = int(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                         check=True).stdout)
    assert len({(port - 10000) // 1500 for port in got.values()}) == 3, got
