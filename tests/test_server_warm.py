"""The warm pool (supervisor.py): `sidecast server` keeps pre-started workers that imported the pipeline and
wait for an attempt. Run as users run it (the console script, a child process, a live HLS source on
loopback): a stream's attempt really runs in a warm worker (the stream's PID was an idle warm worker's; its
playlist grows; its log and memory cap are the stream's), the pool refills, a warm worker that crashes
while idle is replaced and touches no stream, a crash of a stream's worker touches neither the pool nor
other streams, and a kill -9 of the server takes idle warm workers down with the stream workers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from sidecast.hls import parse_media
from tests.conftest import free_port, wait_for
from tests.server_helpers import live_hls, pid_alive
from tests.test_server_process import api, start

POOL = 2


def _pool(client: httpx.Client) -> dict:
    return dict(client.get("/v1/server").json()["warm_pool"])


def _full(client: httpx.Client, without: set[int] = frozenset()) -> list[int]:
    box: list[int] = []

    def full() -> bool:
        box[:] = [p for p in _pool(client)["ready"] if p not in without]
        return len(box) == POOL

    wait_for(full, 90, f"{POOL} warm workers ready")
    return box


def _segments(data: Path, sid: str) -> int:
    try:
        pl = parse_media((data / "media" / sid / "video/240p/index.m3u8").read_text())
    except (OSError, ValueError):
        return -1
    return pl.media_sequence + len(pl.segments)


def _limit_as(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max address space"):
            return int(line.split()[3])
    raise AssertionError("no address-space limit line")


def test_a_warm_worker_runs_the_stream_the_pool_refills_and_crashes_stay_where_they_happen(
        tmp_path: Path, clip240: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    api_port, media_port = free_port(), free_port()
    with live_hls(tmp_path, clip240) as source:
        server = start(data, api_port, media_port, "--warm-workers", str(POOL))
        try:
            client = api(api_port)
            idle = _full(client)
            for pid in idle:  # each its own process group (kill_group takes whatever it starts), a server child
                assert os.getpgid(pid) == pid
                assert int(Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[1]) == server.pid
                assert os.readlink(f"/proc/{pid}/fd/2") == str(data / "logs" / "warm-pool.log")
            r = client.post("/v1/streams", json={"id": "cam", "ingest": "pull", "source": source,
                                                 "options": {"ladder": "240p:300k"},
                                                 "settings": {"memory_limit_mb": 2048}})
            assert r.status_code == 201, r.text
            wait_for(lambda: client.get("/v1/streams/cam/status").json()["state"] == "live", 90, "cam live")
            st = client.get("/v1/streams/cam/status").json()
            worker = st["pid"]
            assert worker in idle, f"cam's worker {worker} was not one of the warm workers {idle}"
            pool = _pool(client)
            assert pool["taken"] >= 1 and pool["cold"] == 0, pool
            # it really runs the stream: segments keep coming, its log and memory cap are the stream's
            first = _segments(data, "cam")
            wait_for(lambda: _segments(data, "cam") >= first + 2, 60, "cam's playlist to grow")
            assert os.readlink(f"/proc/{worker}/fd/2") == str(data / "logs" / "cam.log")
            assert _limit_as(worker) == 2048 << 20
            # the pool refills (the stream is live: nothing is starting)
            spare = _full(client, without={worker})
            # a warm worker that crashes while idle is replaced; the stream does not notice
            os.kill(spare[0], signal.SIGKILL)
            wait_for(lambda: _pool(client)["lost"] >= 1, 30, "the crashed warm worker to be noticed")
            refilled = _full(client, without={worker, spare[0]})
            assert spare[0] not in refilled and spare[1] in refilled
            st = client.get("/v1/streams/cam/status").json()
            assert st["pid"] == worker and st["state"] == "live" and st["restarts"] == 0, st
            # a crash of the stream's worker: the stream restarts (in a warm worker), the other idle one lives on
            before = _segments(data, "cam")
            os.kill(worker, signal.SIGKILL)

            def restarted() -> bool:
                s = client.get("/v1/streams/cam/status").json()
                return s["state"] == "live" and s["pid"] not in (None, worker) and s["restarts"] >= 1

            wait_for(restarted, 90, "cam to restart after its worker's crash")
            again = client.get("/v1/streams/cam/status").json()["pid"]
            assert again in refilled, f"the restart did not take a warm worker ({again} not in {refilled})"
            survivors = [p for p in refilled if p != again]
            assert survivors and all(pid_alive(p) for p in survivors), "a stream's crash reached the pool"
            wait_for(lambda: _segments(data, "cam") > before + 1, 60, "cam to publish again")
            # kill -9 of the server: stream and idle warm workers die with it (PR_SET_PDEATHSIG)
            idle_now = _full(client, without={again})
            os.kill(server.pid, signal.SIGKILL)
            server.wait(10)
            wait_for(lambda: not any(pid_alive(p) for p in [again, *idle_now]), 20, "every worker to die")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def test_by_default_the_pool_holds_a_warm_worker_for_each_stream_the_server_has_room_for(
        tmp_path: Path, clip240: Path) -> None:
    """``--warm-workers`` defaults to ``--max-streams`` (when set), and the pool never holds more than the room
    left: an idle warm worker holds memory a running stream would need."""
    data = tmp_path / "data"
    data.mkdir()
    api_port, media_port = free_port(), free_port()
    with live_hls(tmp_path, clip240) as source:
        server = start(data, api_port, media_port, "--max-streams", "2")
        try:
            client = api(api_port)
            wait_for(lambda: _pool(client)["size"] == 2 and len(_pool(client)["ready"]) == 2, 90,
                     "two warm workers (room for two streams)")
            r = client.post("/v1/streams", json={"id": "cam", "ingest": "pull", "source": source,
                                                 "options": {"passthrough": True}})
            assert r.status_code == 201, r.text
            wait_for(lambda: client.get("/v1/streams/cam/status").json()["state"] == "live", 90, "cam live")
            wait_for(lambda: _pool(client)["size"] == 1, 10, "the pool's target to shrink to the room left")
            pool = _pool(client)
            assert len(pool["ready"]) + len(pool["starting"]) <= 1, pool
            assert pool["taken"] == 1 and pool["cold"] == 0, pool
            workers = [*pool["ready"], *pool["starting"], client.get("/v1/streams/cam/status").json()["pid"]]
            server.send_signal(signal.SIGTERM)  # a clean stop takes idle warm workers down too
            assert server.wait(60) == 0
            assert not [p for p in workers if pid_alive(p)], "a worker outlived the server's clean stop"
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
