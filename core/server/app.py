"""``SidecastServer``: the parts of ``sidecast server`` put together and started in order, and the command.

    registry (SQLite) ─┬─ supervisor ── workers (one process per stream) ── storage (dir | S3)
    storage ───────────┤      │
    webhooks ──────────┤      └─ shared sidecars (one process per type)
    relay (loopback) ──┘
    control API  :8800 (127.0.0.1)      player port  :8080      push listeners (core/push): authority + handler

The push listeners (RTMP on ``rtmp_port``, SRT on ``srt_port`` when libsrt is present) are started with the
server: they ask ``server.authority`` (the registry's hashed keys) at the protocol's publish step, before
any media is accepted, share one publisher table (one publisher per stream across both protocols, the
``on_conflict`` choice) and hand each accepted session to ``server.push_handler``. ``attach_listener``
starts any other listener with the same two and stops it with the server.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, Protocol

from sidecast.contract.errors import ConfigError, SourceError

from ..push import Limits, PublisherTable, PushSession, RtmpServer, SrtServer, srt_available
from ..serve import ServerHandle, ServerOptions, run_in_thread
from ..signals import StopSignals
from . import procs
from .api import create_app
from .config import ServerConfig
from .fleet import Fleet, default_replica_id
from .media import create_media_app
from .push import PushHandler, RegistryAuthority, Relay
from .registry import Conflict, Registry, RegistryUnavailable
from .storage import Storage, open_storage
from .supervisor import Supervisor
from .webhooks import Webhooks

log = logging.getLogger("sidecast.server")

ADMIN_KEY_FILE = "admin-key"


class Listener(Protocol):
    def close(self) -> None: ...


class SidecastServer:
    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir.resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        location = config.registry or os.environ.get("SIDECAST_REGISTRY", "") or self.data_dir / "registry.db"
        try:
            self.registry = Registry(location)
        except RegistryUnavailable as exc:
            raise ConfigError(f"cannot open the registry: {exc}") from exc
        try:
            self.storage: Storage = open_storage(config.storage, self.data_dir)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.webhooks = Webhooks(self.registry)
        self.relay = Relay()
        self.supervisor = Supervisor(config, self.registry, self.storage, self.webhooks, self.relay)
        self.fleet: Fleet | None = None
        if self.registry.shared:
            if self.storage.local_root is not None and not config.storage.startswith("/"):
                log.warning("a fleet with --storage local: each replica keeps its own media, so a stream cannot "
                            "continue on another replica; give every replica the same bucket or shared folder")
        self.authority = RegistryAuthority(self.registry, self.supervisor.can_publish)
        self.push_handler = PushHandler(self.supervisor.publish)
        self.admin_key: str | None = None
        self.api: ServerHandle | None = None
        self.media: ServerHandle | None = None
        self.relay_http: ServerHandle | None = None
        self.listeners: list[Listener] = []
        self._janitor: Any = None

    # ------------------------------------------------------------------ start / stop

    def start(self) -> SidecastServer:
        self._ensure_admin_key()
        self._janitor = procs.start_janitor()
        self.webhooks.start()
        self.relay_http = run_in_thread(self.relay.app(), 0, "127.0.0.1")
        self.relay.base_url = self.relay_http.url
        try:
            self.api = run_in_thread(create_app(self), self.config.api_port, self.config.api_host,
                                     ServerOptions(limit_concurrency=1024))
            self.media = run_in_thread(create_media_app(self), self.config.media_port, self.config.media_host)
        except OSError as exc:
            self.close()
            raise ConfigError(str(exc)) from exc
        if self.config.api_port == 0:
            self.config.api_port = self.api.port
        if self.config.media_port == 0:
            self.config.media_port = self.media.port
        if self.registry.shared:
            self.fleet = Fleet(self.registry, self.supervisor, replica_id=self.config.replica_id or default_replica_id(),
                               lease_seconds=self.config.lease_seconds, max_streams=self.config.max_streams,
                               outage_grace=self.config.outage_grace,
                               media_url=self.config.media_base(), api_url=self.config.peer_url or self.config.api_base())
            self.supervisor.fleet = self.fleet
        self.supervisor.start()
        if self.fleet is not None:
            self.fleet.start()
        try:
            self._start_push_listeners()
        except (OSError, SourceError) as exc:
            self.close()
            raise ConfigError(f"cannot listen for publishers: {exc}") from exc
        log.info("sidecast server ready", extra={"api": self.api.url, "media": self.media.url,
                                                 "storage": self.storage.describe()})
        return self

    def _start_push_listeners(self) -> None:
        cfg = self.config
        limits = Limits(on_duplicate=cfg.on_conflict)
        table = PublisherTable()

        def on_session(session: PushSession) -> None:
            self.push_handler.accept(session)  # a refusal closes the session and is logged there

        if cfg.rtmp_port >= 0:
            rtmp = RtmpServer(cfg.push_host, cfg.rtmp_port, self.authority, on_session, limits=limits, table=table)
            self.listeners.append(rtmp.start())
            cfg.rtmp_port = rtmp.port
        if cfg.srt_port >= 0:
            if not srt_available():
                log.warning("no SRT listener: libsrt is missing (Debian package libsrt1.5-gnutls; ./dev.sh install)")
                return
            srt = SrtServer(cfg.push_host, cfg.srt_port, self.authority, on_session, limits=limits, table=table)
            self.listeners.append(srt.start())
            cfg.srt_port = srt.port

    def attach_listener(self, factory: Callable[[RegistryAuthority, PushHandler], Listener]) -> Listener:
        """Start a push listener (RTMP, SRT...) wired to this server's authority and handler."""
        listener = factory(self.authority, self.push_handler)
        self.listeners.append(listener)
        return listener

    def close(self) -> None:
        for listener in self.listeners:
            try:
                listener.close()
            except Exception:
                log.exception("closing a listener failed")
        for handle in (self.api, self.media):
            if handle is not None:
                handle.close()
        if self.fleet is not None:
            self.fleet.close()  # no new claims; the leases are released once the workers have stopped
        self.supervisor.close()
        if self.fleet is not None:
            self.fleet.release_all()
        if self.relay_http is not None:
            self.relay_http.close()
        self.webhooks.close()
        self.registry.close()
        if self._janitor is not None and self._janitor.stdin is not None:
            self._janitor.stdin.close()  # the janitor sweeps once more, then exits

    def __enter__(self) -> SidecastServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ keys

    def _ensure_admin_key(self) -> None:
        """``--admin-key``/SIDECAST_ADMIN_KEY is registered (once); else, on an empty registry, a key is made,
        printed once and left in DATA_DIR/admin-key (mode 0600) for scripts."""
        given = self.config.admin_key or os.environ.get("SIDECAST_ADMIN_KEY", "")
        if given:
            try:
                self.registry.create_api_key("admin (configured)", ["admin"], token=given)
            except Conflict:
                pass
            self.admin_key = given
            return
        if self.registry.count_api_keys() == 0:
            key, _ = self.registry.create_api_key("admin (first start)", ["admin"])
            path = self.data_dir / ADMIN_KEY_FILE
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
            self.admin_key = key
            print(f"sidecast server: created an admin API key (all scopes), shown once: {key}\n"
                  f"sidecast server: also saved in {path} (mode 0600); make narrower keys with POST /v1/api-keys",
                  flush=True)


# ------------------------------------------------------------------------------ the command

def configure(parser: argparse.ArgumentParser) -> None:
    ServerConfig.add_arguments(parser)
    parser.set_defaults(func=run_server)


def run_server(args: argparse.Namespace) -> int:
    config = ServerConfig.from_args(args)
    config.log_level = getattr(args, "log_level", config.log_level)
    config.log_format = getattr(args, "log_format", config.log_format)
    stop = StopSignals()
    try:
        server = SidecastServer(config).start()
        assert server.api is not None and server.media is not None
        print(f"sidecast server: control API {server.api.url}v1 (docs {server.api.url}docs, dashboard {server.api.url})",
              flush=True)
        print(f"sidecast server: players {server.media.url}<stream>/master.m3u8 · storage {server.storage.describe()}",
              flush=True)
        faulthandler.register(signal.SIGUSR2, all_threads=True)  # `kill -USR2 PID`: every thread's stack to the log
        signum = stop.wait()
        log.warning("shutting down", extra={"signal": signal.Signals(signum).name})
        server.close()
    finally:
        stop.close()
    print("sidecast server: stopped", file=sys.stderr, flush=True)
    return 0


__all__ = ["ADMIN_KEY_FILE", "SidecastServer", "StopSignals", "configure", "run_server"]

