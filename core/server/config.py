"""The server's own settings (not a stream's): where it keeps things, where it listens, its limits.

Defaults make ``sidecast server`` work with no arguments: a SQLite registry and local media under
``./sidecast-data``, the control API on 127.0.0.1:8800 (never exposed unless asked), the player port on
0.0.0.0:8080. Every setting is a ``sidecast server`` flag; a TOML file (``--config``, a ``[server]`` table)
can hold them too.
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sidecast.contract.errors import ConfigError


@dataclass
class ServerConfig:
    data_dir: Path = Path("sidecast-data")
    storage: str = "local"             # "local" (DATA_DIR/media), a directory, or s3://bucket/prefix?endpoint=...
    api_host: str = "127.0.0.1"
    api_port: int = 8800
    media_host: str = "0.0.0.0"
    media_port: int = 8080
    public_url: str = ""               # how viewers reach the player port (or a CDN); default http://HOST:PORT/
    publish_host: str = ""             # the host publishers use, in the publish URLs the API shows
    push_host: str = "0.0.0.0"         # where the RTMP and SRT listeners bind
    rtmp_port: int = 1935              # -1: no RTMP listener; 0: any free port (tests)
    srt_port: int = 4200               # -1: no SRT listener; 0: any free port
    min_free_mb: int = 512             # below this much free space, writes stop (streams pause)
    stop_timeout: float = 10.0         # seconds a worker gets to finish its segment before SIGKILL
    warm_workers: int = -1             # pre-started, pre-imported idle workers a new attempt takes (0: none;
                                       # -1: max_streams when set, never more than the room left, else 4)
    watchdog_s: float = 30.0           # a worker silent this long (stuck in a decoder, stopped) is killed
    backoff_base: float = 1.0
    backoff_max: float = 60.0
    on_conflict: Literal["refuse", "replace"] = "refuse"
    sidecar_args: dict[str, list[str]] = field(default_factory=dict)
    sidecar_max_streams: int = 64
    sidecar_addrs: dict[str, str] = field(default_factory=dict)  # NAME -> address of a sidecar run by others
    log_level: str = "info"
    log_format: str = "text"
    admin_key: str = ""                # an API key with every scope (else one is made on first start)
    # the fleet (docs/kubernetes.md): a postgresql:// registry shared by several replicas
    registry: str = ""                 # "" = DATA_DIR/registry.db (SQLite, one server); or postgresql://...
    replica_id: str = ""               # this replica's name in the fleet (default: host name + random)
    max_streams: int = 0               # pull streams this replica runs at most (0: no limit but its fair share)
    lease_seconds: float = 10.0        # a dead replica's streams restart elsewhere about this long after
    peer_url: str = ""                 # how the other replicas reach this one's control API (default: api_base)
    outage_grace: float = 120.0        # streams keep publishing this long past their lease in a registry outage
                                       # that every replica confirms (0: stop at the lease, as a lone replica does)

    @property
    def min_free_bytes(self) -> int:
        return self.min_free_mb << 20

    def media_base(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/") + "/"
        host = "127.0.0.1" if self.media_host in ("0.0.0.0", "", "::") else self.media_host
        return f"http://{host}:{self.media_port}/"

    def api_base(self) -> str:
        host = "127.0.0.1" if self.api_host in ("0.0.0.0", "", "::") else self.api_host
        return f"http://{host}:{self.api_port}/"

    def publish_base(self) -> str:
        return self.publish_host or "SERVER"

    @classmethod
    def add_arguments(cls, p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, metavar="FILE.toml", help="settings from a TOML file ([server] table)")
        p.add_argument("--data-dir", type=Path, help="registry, state, logs and (local) media (default ./sidecast-data)")
        p.add_argument("--storage", help="local (default), a directory, or s3://BUCKET/PREFIX?endpoint=URL")
        p.add_argument("--api-host", help="control API address (default 127.0.0.1: not reachable from outside)")
        p.add_argument("--api-port", type=int, help="control API port (default 8800)")
        p.add_argument("--media-host", help="player port address (default 0.0.0.0)")
        p.add_argument("--media-port", type=int, help="player port (default 8080)")
        p.add_argument("--public-url", help="base URL viewers use (a CDN in front), for the URLs the API shows")
        p.add_argument("--publish-host", help="host name publishers use, for the publish URLs the API shows")
        p.add_argument("--push-host", help="address the RTMP and SRT listeners bind (default 0.0.0.0)")
        p.add_argument("--rtmp-port", type=int, help="RTMP listener port (default 1935; -1: none)")
        p.add_argument("--srt-port", type=int, help="SRT listener port, UDP (default 4200; -1: none)")
        p.add_argument("--min-free-mb", type=int, help="stop writing below this much free space (default 512)")
        p.add_argument("--warm-workers", type=int,
                       help="idle workers kept started with the pipeline imported, so a stream (a failover "
                            "above all) starts without an interpreter start (default: --max-streams when set, "
                            "else 4; never more than the streams this replica has room for; 0: cold starts only)")
        p.add_argument("--on-conflict", choices=("refuse", "replace"),
                       help="a second publisher on a live stream: refuse it (default) or replace the first")
        p.add_argument("--sidecar-arg", action="append", metavar="NAME=ARG", dest="sidecar_arg",
                       help="argument for a shared sidecar process, e.g. stt=--model=tiny.en; repeatable")
        p.add_argument("--sidecar-addr", action="append", metavar="NAME=ADDR", dest="sidecar_addr",
                       help="use the NAME sidecar already listening at ADDR (host:port or unix:///path; e.g. a "
                            "container of the same pod) instead of starting one; repeatable")
        p.add_argument("--admin-key", help="use this API key (all scopes) instead of generating one "
                                           "(or set SIDECAST_ADMIN_KEY)")
        p.add_argument("--registry", help="registry: a SQLite file (default DATA_DIR/registry.db) or a "
                                          "postgresql://USER:PASSWORD@HOST/DB URL shared by several replicas "
                                          "(or set SIDECAST_REGISTRY)")
        p.add_argument("--replica-id", help="this replica's name in a fleet (default: host name + random)")
        p.add_argument("--max-streams", type=int, help="pull streams this replica runs at most (fleet; default: "
                                                      "its fair share)")
        p.add_argument("--lease-seconds", type=float, help="fleet lease length: a dead replica's streams restart "
                                                          "elsewhere about this long after (default 10)")
        p.add_argument("--peer-url", help="fleet: the control API URL the other replicas use to reach this one "
                                          "(default http://API-HOST:API-PORT/; on Kubernetes the pod's IP)")
        p.add_argument("--outage-grace", type=float, help="fleet: while every peer confirms that the registry is "
                                                         "down for it too, running streams keep publishing up to "
                                                         "this many seconds past their lease (default 120; 0: "
                                                         "stop at the lease)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServerConfig:
        values: dict[str, Any] = {}
        if getattr(args, "config", None) is not None:
            try:
                doc = tomllib.loads(Path(args.config).read_text())
            except OSError as exc:
                raise ConfigError(f"cannot read config {args.config}: {exc.strerror}") from exc
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"config {args.config} is not valid TOML: {exc}") from exc
            values.update(doc.get("server", doc))
        for f in dataclasses.fields(cls):
            v = getattr(args, f.name, None)
            if v is not None:
                values[f.name] = v
        for item in getattr(args, "sidecar_arg", None) or []:
            name, sep, arg = item.partition("=")
            if not sep or not name or not arg:
                raise ConfigError(f"bad --sidecar-arg {item!r}: expected NAME=ARG")
            values.setdefault("sidecar_args", {}).setdefault(name, []).append(arg)
        for item in getattr(args, "sidecar_addr", None) or []:
            name, sep, addr = item.partition("=")
            if not sep or not name or not addr:
                raise ConfigError(f"bad --sidecar-addr {item!r}: expected NAME=ADDR")
            values.setdefault("sidecar_addrs", {})[name] = addr
        return cls.from_mapping(values)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> ServerConfig:
        names = {f.name: f for f in dataclasses.fields(cls)}
        clean: dict[str, Any] = {}
        for k, v in values.items():
            key = k.replace("-", "_")
            if key not in names:
                raise ConfigError(f"unknown server setting {k!r}")
            clean[key] = Path(v) if key == "data_dir" else v
        cfg = cls(**clean)
        for port in ("api_port", "media_port"):
            if not 0 <= int(getattr(cfg, port)) <= 65535:
                raise ConfigError(f"{port} must be a port number (0-65535)")
        for port in ("rtmp_port", "srt_port"):
            if not -1 <= int(getattr(cfg, port)) <= 65535:
                raise ConfigError(f"{port} must be a port number (0-65535), or -1 for no listener")
        if cfg.on_conflict not in ("refuse", "replace"):
            raise ConfigError("on_conflict must be refuse or replace")
        if cfg.min_free_mb < 0:
            raise ConfigError("min_free_mb must be ≥ 0")
        if not -1 <= int(cfg.warm_workers) <= 64:
            raise ConfigError("warm_workers must be between 0 and 64 (-1: the default)")
        if cfg.max_streams < 0:
            raise ConfigError("max_streams must be ≥ 0 (0: no limit)")
        if not 2.0 <= float(cfg.lease_seconds) <= 300.0:
            raise ConfigError("lease_seconds must be between 2 and 300")
        if not 0.0 <= float(cfg.outage_grace) <= 86400.0:
            raise ConfigError("outage_grace must be between 0 and 86400 seconds")
        return cfg


__all__ = ["ServerConfig"]
