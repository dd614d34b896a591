"""`sidecast server` as users run it (the console script, a child process): it stops cleanly on SIGTERM (the
event gets its ENDLIST), picks its streams up again on the next start, and after a kill -9 leaves nothing
behind: no stream worker, no shared sidecar, no shared-memory frame ring."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from sidecast.hls import parse_media
from tests.conftest import SIDECAST, free_port, wait_for
from tests.server_helpers import live_hls, pid_alive, rings_of
from tests.test_server_streams import LADDER

ADMIN = "sk_test_process_admin_key_0123456789"


def start(data: Path, api: int, media: int, *extra: str) -> subprocess.Popen[bytes]:
    with open(data.parent / "server.log", "ab") as log:
        proc = subprocess.Popen([SIDECAST, "server", "--data-dir", str(data), "--api-port", str(api),
                                 "--media-port", str(media), "--media-host", "127.0.0.1", "--admin-key", ADMIN,
                                 "--rtmp-port", "0", "--srt-port", "0", *extra],
                                stdout=subprocess.DEVNULL, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{api}", timeout=10)

    def up() -> bool:
        try:
            return client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return proc.poll() is not None  # fail fast below if it died

    wait_for(up, 60, "the server to be ready")
    assert proc.poll() is None, (data.parent / "server.log").read_text()[-3000:]
    return proc


def api(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30, headers={"X-API-Key": ADMIN})


def live_status(client: httpx.Client) -> dict:
    box: dict = {}

    def live() -> bool:
        r = client.get("/v1/streams/cam/status")
        assert r.status_code == 200, (r.status_code, r.text[:500])
        box.update(r.json())
        return box["state"] == "live" and any(s["live"] for s in box["sidecars"])

    wait_for(live, 120, "the stream live with its shared sidecar")
    return box


def test_sigterm_stops_cleanly_and_kill_9_leaves_no_orphans_or_rings(tmp_path: Path, clip240: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    api_port, media_port = free_port(), free_port()
    with live_hls(tmp_path, clip240) as source:
        server = start(data, api_port, media_port)
        try:
            client = api(api_port)
            r = client.post("/v1/streams", json={"id": "cam", "ingest": "pull", "source": source,
                                                 "options": {"ladder": LADDER, "sidecars": ["scenecut"],
                                                             "transport": "shm"}})
            assert r.status_code == 201, r.text
            st = live_status(client)
            worker = st["pid"]
            sidecar = next(s["pid"] for s in client.get("/v1/server").json()["sidecars"] if s["name"] == "scenecut")
            wait_for(lambda: rings_of(worker), 30, "the worker's shared-memory ring")
            # SIGTERM: the worker finishes its segment, the event ends with ENDLIST, everything stops
            server.send_signal(signal.SIGTERM)
            assert server.wait(60) == 0
            for pid in (worker, sidecar):
                assert not pid_alive(pid), f"{pid} outlived a clean stop"
            assert not rings_of(worker)
            pl = parse_media((data / "media/cam/video/240p/index.m3u8").read_text())
            assert pl.endlist, "a clean stop must end the event"
            # the next start picks the stream up again, as a new event
            server = start(data, api_port, media_port)
            client = api(api_port)
            st = live_status(client)
            assert st["event"] != pl.segments[0].uri.split("/e/")[1].split("/")[0]
            worker = st["pid"]
            sidecar = next(s["pid"] for s in client.get("/v1/server").json()["sidecars"] if s["name"] == "scenecut")
            wait_for(lambda: rings_of(worker), 30, "the worker's shared-memory ring")
            # kill -9: the kernel takes the children down (PR_SET_PDEATHSIG), the janitor their rings
            os.kill(server.pid, signal.SIGKILL)
            server.wait(10)
            wait_for(lambda: not pid_alive(worker) and not pid_alive(sidecar), 20, "the children to die")
            wait_for(lambda: not rings_of(worker), 20, "the killed worker's rings to be removed")
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()


def _thread_taking(pid: int, sig: int) -> int:
    """A thread of ``pid`` other than the main one that does not block ``sig`` (from /proc)."""
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        if tid == pid:
            continue
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        blocked = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("SigBlk:")), 16)
        if not blocked & (1 << (sig - 1)):
            return tid
    raise AssertionError(f"no thread of {pid} takes signal {sig}")


def test_sigterm_handed_to_any_thread_stops_the_server(tmp_path: Path) -> None:
    """The kernel may give a signal sent to the process to any of its threads (it passes over a main thread
    that has a signal pending already), and Python runs handlers in the main thread only: a server whose main
    thread slept in Event.wait() never woke, and a CI run's server ignored its SIGTERM. kill(2) on a thread's
    own id offers the process-wide signal to that thread first: the case made every time."""
    data = tmp_path / "data"
    data.mkdir()
    server = start(data, free_port(), free_port())
    try:
        os.kill(_thread_taking(server.pid, signal.SIGTERM), signal.SIGTERM)
        assert server.wait(30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    log = (tmp_path / "server.log").read_text()
    assert "shutting down" in log and "SIGTERM" in log and "sidecast server: stopped" in log, log[-2000:]


@pytest.mark.parametrize("bad", [["--api-port", "70000"], ["--storage", "ftp://x/y"], ["--on-conflict", "fight"]])
def test_bad_server_settings_get_one_line(tmp_path: Path, bad: list[str]) -> None:
    r = subprocess.run([SIDECAST, "server", "--data-dir", str(tmp_path), *bad], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("sidecast") and "error:" in last and "Traceback" not in r.stderr, r.stderr
