"""Helpers for the server tests: a server in this process on free ports, a push session fed by a real
ffmpeg publisher, a live HLS source on loopback, a webhook receiver, an S3 endpoint (moto) on loopback.

Real parts throughout. ``FfmpegSession`` stands in for the protocol listener where a test is about the
stream's life, not the wire (its bytes are a real FLV/MPEG-TS stream that ffmpeg paces in real time);
tests/test_server_push.py publishes through the server's own RTMP and SRT listeners."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from devkit.pushsession import FfmpegSession  # noqa: F401 (re-exported for the tests)
from sidecast.core.serve import run_in_thread, start_server
from sidecast.core.server.app import SidecastServer
from sidecast.core.server.config import ServerConfig
from tests.conftest import free_port, wait_for


class StateLog(logging.Handler):
    """Every state a stream enters, from the supervisor's own log line (``stream X: A -> B``), as it happens.

    A state that lasts seconds (a 3 s reconnect window) is missed by a poll of the status API when one call
    stalls that long on a loaded box; the log line is written at the transition itself."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.entered: list[tuple[str, str, str]] = []  # (stream, state before, state entered), in order
        self._cond = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg == "stream %s: %s -> %s" and isinstance(record.args, tuple) and len(record.args) == 3:
            sid, before, after = (str(a) for a in record.args)
            with self._cond:
                self.entered.append((sid, before, after))
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.entered)

    def wait_through(self, sid: str, states: tuple[str, ...], timeout: float, since: int = 0) -> list[str]:
        """Wait until ``sid`` has entered ``states`` in this order (others may come between) after the
        transition numbered ``since``; the states it entered meanwhile."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                seen = [after for stream, _, after in self.entered[since:] if stream == sid]
                it = iter(seen)
                if all(s in it for s in states):
                    return seen
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"stream {sid} never went through {states}: it entered {seen}")
                self._cond.wait(left)


@dataclass
class Running:
    server: SidecastServer
    api: httpx.Client
    media_url: str
    states: StateLog = field(default_factory=StateLog)

    def status(self, sid: str) -> dict[str, Any]:
        r = self.api.get(f"/v1/streams/{sid}/status")
        r.raise_for_status()
        return dict(r.json())

    def wait_state(self, sid: str, states: str | tuple[str, ...], timeout: float = 60) -> dict[str, Any]:
        want = (states,) if isinstance(states, str) else states
        last: dict[str, Any] = {}

        def check() -> bool:
            nonlocal last
            last = self.status(sid)
            return last["state"] in want

        try:
            wait_for(check, timeout, f"stream {sid} to be {want}", poll=0.2)
        except AssertionError:
            raise AssertionError(f"stream {sid} never reached {want}: {last}") from None
        return last

    def media(self, path: str) -> httpx.Response:
        return httpx.get(self.media_url + path, timeout=10)


@contextlib.contextmanager
def running_server(data_dir: Path, **settings: Any) -> Iterator[Running]:
    cfg = ServerConfig(data_dir=data_dir, api_port=0, media_port=0, media_host="127.0.0.1",
                       **{"push_host": "127.0.0.1", "rtmp_port": 0, "srt_port": 0, "publish_host": "127.0.0.1",
                          "stop_timeout": 10.0, "backoff_base": 0.5, "backoff_max": 4.0, **settings})
    states = StateLog()
    logger = logging.getLogger("sidecast.server")
    level = logger.level
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    logger.addHandler(states)
    try:
        server = SidecastServer(cfg).start()
        assert server.api is not None and server.media is not None and server.admin_key
        client = httpx.Client(base_url=server.api.url, timeout=30,
                              headers={"Authorization": f"Bearer {server.admin_key}"})
        try:
            yield Running(server, client, server.media.url, states)
        finally:
            client.close()
            server.close()
    finally:
        logger.removeHandler(states)
        logger.setLevel(level)


@contextlib.contextmanager
def live_hls(workdir: Path, clip: Path) -> Iterator[str]:
    """A live HLS source on loopback: ffmpeg loops ``clip`` in real time into a sliding-window playlist
    (``-c copy``, so it costs nothing), served by sidecast's own HTTP server. Yields the playlist URL."""
    out = workdir / "hls-source"
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_list_size", "5",
         "-hls_flags", "delete_segments+omit_endlist", str(out / "live.m3u8")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    handle = start_server(out, 0, host="127.0.0.1")
    try:
        wait_for(lambda: (out / "live.m3u8").exists() and len(list(out.glob("*.ts"))) >= 2, 30,
                 "the HLS source's first segments")
        yield handle.url + "live.m3u8"
    finally:
        handle.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class WebhookReceiver:
    """A loopback HTTP endpoint that records POSTs; answers 500 to the first ``fail_first`` of them."""

    fail_first: int = 0
    received: list[Received] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    url: str = ""

    def __enter__(self) -> WebhookReceiver:
        async def hook(request: Request) -> Response:
            body = await request.body()
            status = 500 if len(self.answered) < self.fail_first else 200
            self.answered.append(status)
            if status == 200:
                self.received.append(Received({k.lower(): v for k, v in request.headers.items()}, body))
            return Response(b"ok", status_code=status)

        app = FastAPI()
        app.add_api_route("/hook", hook, methods=["POST"])
        self._handle = run_in_thread(app, 0, "127.0.0.1")
        self.url = self._handle.url + "hook"
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def of_type(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.json["type"] == kind]


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """A real S3 HTTP endpoint on loopback (moto's server); yields its URL."""
    port = free_port()
    exe = shutil.which("moto_server", path=str(Path(sys.executable).parent))
    assert exe, "moto_server is missing: pip install 'moto[server]' (in the dev extra)"
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
        return False

    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_for(up, 30, "moto_server to listen")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def worker_pids(data_dir: Path) -> list[int]:
    """PIDs of worker processes whose command line names this data folder's server (via /proc)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sidecast.core.server.worker" in cmd:
            out.append(int(p.name))
    return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def rings_of(pid: int) -> list[Path]:
    return list(Path("/dev/shm").glob(f"sidecast-{pid}-*"))


def now() -> float:
    return time.monotonic()
