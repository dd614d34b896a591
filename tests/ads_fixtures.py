"""Real servers for the ads API tests: a redis-server on a free loopback port, a loopback HTTP server that
plays upstream ad servers and tracking endpoints (and counts every hit), and the ads API itself under
uvicorn. No fakes of our own code; the only stand-ins are the third-party ad servers, as real HTTP.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from devkit.ports import free_port
from sidecast.ads.api.app import create_app
from sidecast.ads.api.service import Settings

VAST_DIR = Path(__file__).parent / "vast"
API_KEY = "test-management-key"




def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


# ------------------------------------------------------------------ redis

@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    exe = shutil.which("redis-server")
    assert exe, "redis-server is not installed (./dev.sh install puts it there)"
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--protected-mode", "yes", "--loglevel", "warning"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)

        def up() -> bool:
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                assert proc.poll() is None, f"redis-server exited: {proc.stderr.read() if proc.stderr else ''}"
                return False

        wait_until(up, 10, "redis-server to answer PING")
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


# ------------------------------------------------------------------ loopback "ad server" + tracking endpoints

@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/xml"
    delay: float = 0.0                     # before the status line
    headers: dict[str, str] = field(default_factory=dict)
    length: bool = True                    # False: no Content-Length, the body ends when the connection closes
    trickle: float = 0.0                   # seconds between 100-byte pieces of the body


@dataclass
class AdServer:
    """A real HTTP server on 127.0.0.1: serves the VAST corpus under /vast/, records hits under /t/."""

    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)   # the Host header of every hit
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits_of(self, prefix: str) -> list[str]:
        with self.lock:
            return [h for h in self.hits if h.startswith(prefix)]

    def vast(self, name: str) -> str:
        return f"{self.base}/vast/{name}"


@contextlib.contextmanager
def ad_server() -> Iterator[AdServer]:
    srv = AdServer(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path
            with srv.lock:
                srv.hits.append(path)
                srv.hosts.append(self.headers.get("Host", ""))
            route = srv.routes.get(path.split("?", 1)[0])
            if route is None and path.startswith("/vast/"):
                f = VAST_DIR / Path(path.split("?", 1)[0]).name
                if f.is_file():
                    route = Route(body=f.read_text().replace("{BASE}", srv.base).encode())
            if route is None and path.startswith("/t/"):
                route = Route(status=204)
            if route is None:
                route = Route(status=404, body=b"not found", content_type="text/plain")
            if route.delay:
                time.sleep(route.delay)
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            for k, v in route.headers.items():
                self.send_header(k, v)
            if route.length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.close_connection = True
            self.end_headers()
            if not route.trickle:
                self.wfile.write(route.body)
                return
            try:
                for i in range(0, len(route.body), 100):
                    self.wfile.write(route.body[i:i + 100])
                    self.wfile.flush()
                    time.sleep(route.trickle)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    srv.port = httpd.server_address[1]
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        httpd.shutdown()
        httpd.server_close()


# ------------------------------------------------------------------ the API under uvicorn

@dataclass
class Api:
    base: str
    server: uvicorn.Server
    thread: threading.Thread
    client: httpx.Client

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "uvicorn did not stop"


def start_api(settings: Settings) -> Api:
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), 20, "uvicorn to start")
    assert thread.is_alive(), "uvicorn failed to start"
    base = f"http://127.0.0.1:{port}"
    return Api(base, server, thread, httpx.Client(base_url=base, headers={"X-API-Key": API_KEY}, timeout=10))


@contextlib.contextmanager
def running_api(**kw: Any) -> Iterator[Api]:
    kw.setdefault("api_keys", (API_KEY,))
    kw.setdefault("token_key", "test-token-key-0123456789")
    api = start_api(Settings(**kw))
    try:
        yield api
    finally:
        api.stop()


@contextlib.contextmanager
def cli_api(db: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`sidecast ads serve` as its own process (the production protocol and settings parsing), on a free
    loopback port, with ``API_KEY``; yields (base URL, process) once /healthz answers."""
    import sys

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--port", str(port),
                             "--db", str(db), "--api-key", API_KEY, *args],
                            cwd=Path(__file__).resolve().parents[1], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else "server exited"
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 30, "the API to answer /healthz")
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(15)
