"""Run an ASGI app under uvicorn, configured like a production server, in a background thread or in the
foreground; `start_server` is the one-call version for an output folder.

Why a background thread and not a process: `sidecast run` keeps its pipeline in the main thread (which
owns SIGINT/SIGTERM: finish the segment, then exit), and the control calls act on that pipeline's objects.
uvicorn installs no signal handlers outside the main thread, so the pipeline's handling stays as it is,
and `close()` stops the server within a few hundred milliseconds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import resource
import socket
import threading
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import APIRouter
from starlette.types import ASGIApp

from .app import create_app
from .control import ApiHandler

log = logging.getLogger("sidecast.serve")


@dataclass(frozen=True)
class ServerOptions:
    """How the HTTP server behaves under load; the defaults suit one stream with a few thousand viewers.

    limit_concurrency: connections plus requests in progress; past it uvicorn answers 503 at once rather
        than letting every viewer slow down.
    keep_alive: seconds an idle connection stays open. Longer than a segment, so a player's next playlist
        poll reuses its connection instead of a new TCP handshake.
    backlog: connections the kernel queues before they are accepted (capped by net.core.somaxconn).
    graceful_shutdown: seconds `close()` lets responses in flight finish.
    http: "httptools" (fast C parser) or "h11" (pure Python); httptools when it is installed.
    """

    limit_concurrency: int = 4096
    keep_alive: int = 30
    backlog: int = 2048
    graceful_shutdown: int = 2
    http: str = "httptools" if importlib.util.find_spec("httptools") else "h11"

    def uvicorn_config(self, app: ASGIApp) -> uvicorn.Config:
        return uvicorn.Config(
            app, http=self.http, loop="auto", lifespan="off", limit_concurrency=self.limit_concurrency,
            timeout_keep_alive=self.keep_alive, backlog=self.backlog,
            timeout_graceful_shutdown=self.graceful_shutdown,
            log_config=None,  # leave the process's logging set-up (text or JSON lines) alone
            log_level="warning", access_log=False, server_header=False, headers=[("server", "sidecast")],
            proxy_headers=False)  # nothing here uses the client address; do not trust X-Forwarded-*


DEFAULT_OPTIONS = ServerOptions()


def _raise_fd_limit(wanted: int) -> None:
    # every connection is a file descriptor; a 1024 soft limit would refuse viewers long before
    # limit_concurrency does (Go's runtime raises it the same way)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        log.debug("raised the open-file limit from %d to %d", soft, target)


def listen(host: str, port: int, backlog: int) -> socket.socket:
    """A listening TCP socket (port 0: any free port); OSError says which address could not be used."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock


class _Uvicorn(uvicorn.Server):
    """uvicorn.Server that says when it is ready (or failed), so starting is deterministic."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.ready.set()


@dataclass
class ServerHandle:
    """A running server: where it listens, its control table (add handlers at any time), how to stop it."""

    host: str
    port: int
    directory: Path | None = None
    api: MutableMapping[str, ApiHandler] = field(default_factory=dict, repr=False)
    _server: _Uvicorn | None = field(default=None, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _sock: socket.socket | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Base URL with a trailing slash; wildcard binds are shown as loopback so the URL works here."""
        host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, let responses in flight finish (ServerOptions.graceful_shutdown), free the port.
        Safe to call twice."""
        server, thread = self._server, self._thread
        if server is not None and thread is not None and thread.is_alive():
            server.should_exit = True
            thread.join(timeout)
            if thread.is_alive():  # a response still streaming past the grace period: cut it
                server.force_exit = True
                thread.join(timeout)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_in_thread(app: ASGIApp, port: int, host: str = "0.0.0.0",
                  options: ServerOptions = DEFAULT_OPTIONS) -> ServerHandle:
    """Serve any ASGI app from a daemon thread; returns once it accepts requests (port 0: a free port)."""
    _raise_fd_limit(options.limit_concurrency + 256)
    sock = listen(host, port, options.backlog)
    server = _Uvicorn(options.uvicorn_config(app))
    bound = int(sock.getsockname()[1])

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException:  # SystemExit from a failed start included: say it, and wake the caller
            log.exception("the HTTP server on port %d stopped with an error", bound)
        finally:
            server.ready.set()

    thread = threading.Thread(target=run, name=f"sidecast-http-{bound}", daemon=True)
    thread.start()
    if not server.ready.wait(30) or not server.started:
        server.should_exit = True
        sock.close()
        raise OSError(f"the HTTP server on {host}:{bound} did not start (see the log)")
    return ServerHandle(host=host, port=bound, _server=server, _thread=thread, _sock=sock)


def start_server(directory: Path, port: int, host: str = "0.0.0.0",
                 api: Mapping[str, ApiHandler] | None = None, *,
                 options: ServerOptions = DEFAULT_OPTIONS, routers: Sequence[APIRouter] = ()) -> ServerHandle:
    """Serve `directory` (files, player, /healthz, POST /api/<name>) from a background thread.

    Port 0 picks a free port (read it back from `.port`). `api` maps names to handlers for
    `POST /api/<name>`; the handle's `.api` is the live table, so handlers may be added later. `routers`
    adds routes before the player and the files (the WHEP preview).
    """
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"cannot serve {root}: it is not a directory")
    table: dict[str, ApiHandler] = dict(api or {})
    handle = run_in_thread(create_app(root.resolve(), table, routers=routers), port, host, options)
    handle.directory, handle.api = root.resolve(), table
    log.info("serving %s at %s", handle.directory, handle.url)
    return handle


def serve_forever(directory: Path, port: int, host: str = "0.0.0.0",
                  options: ServerOptions = DEFAULT_OPTIONS) -> None:
    """Serve in the foreground until Ctrl-C or SIGTERM: `sidecast demo --serve`, `python -m sidecast.core.serve`."""
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"cannot serve {root}: it is not a directory")
    _raise_fd_limit(options.limit_concurrency + 256)
    sock = listen(host, port, options.backlog)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    print(f"serving {root.resolve()} at http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C to stop)", flush=True)
    server = uvicorn.Server(options.uvicorn_config(create_app(root.resolve())))
    with contextlib.suppress(KeyboardInterrupt):  # uvicorn shuts down cleanly, then re-raises the signal
        server.run(sockets=[sock])
    sock.close()
