"""`sidecast ads serve`: run the ad decisioning API under uvicorn.

The `sidecast ads` group (ads/cli.py) calls `register(subparsers)`; the handler turns flags and
environment variables into Settings, builds the app and serves it. Secrets may come from the environment
(SIDECAST_ADS_API_KEYS, comma-separated; SIDECAST_ADS_TOKEN_KEY) so they stay out of `ps` listings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import sys
from typing import Any

__all__ = ["register", "serve"]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 1-65535")
    return port


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser("serve", help="run the ad decisioning API (VAST, pods, asset lists, beacons)",
                              description="Run the ad decisioning API. OpenAPI docs at http://HOST:PORT/docs.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    p.add_argument("--db", default="./sidecast-ads.db", help="SQLite file for the embedded store (default ./sidecast-ads.db)")
    p.add_argument("--redis", default=None, metavar="URL", help="use Redis (shared by replicas) instead of SQLite, e.g. redis://localhost:6379/0")
    p.add_argument("--origin", default=None, metavar="DIR_OR_URL", help="HLS origin for SSAI sessions (mounts the session router)")
    p.add_argument("--api-key", action="append", default=[], metavar="KEY", help="management API key (repeatable); env SIDECAST_ADS_API_KEYS")
    p.add_argument("--token-ttl", type=int, default=3600, help="lifetime of player tokens in seconds (default 3600)")
    p.add_argument("--public-url", default=None, help="base URL players reach this service at (default: the request's)")
    p.add_argument("--media-dir", default=None, help="where uploaded creatives are kept (default: next to --db)")
    p.add_argument("--allow-private-upstreams", action="store_true",
                   help="let VAST and tracking fetches reach loopback/private addresses (off: SSRF guard)")
    p.add_argument("--upstream-timeout", type=float, default=2.0, help="seconds per upstream VAST request (default 2)")
    p.add_argument("--max-wrapper-depth", type=int, default=5, help="VAST wrappers followed at most (default 5)")
    p.add_argument("--no-player-tokens", action="store_true", help="serve asset lists without tokens (demos only)")
    p.add_argument("--workers", type=int, default=1,
                   help="server processes (default 1); more than one needs --redis, the state they share")
    p.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    """Start the service; returns the exit status (2 for bad settings, with a one-line reason)."""
    import uvicorn

    from sidecast.contract.errors import MissingExtra

    try:
        from sidecast.ads.api.app import create_app
        from sidecast.ads.api.service import Settings
    except ImportError as exc:
        raise MissingExtra("ads", "sidecast ads serve") from exc

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    keys = list(args.api_key) + [k for k in os.environ.get("SIDECAST_ADS_API_KEYS", "").split(",") if k.strip()]
    if not keys:
        keys = [secrets.token_urlsafe(18)]
        print(f"sidecast ads: no --api-key given; management API key for this run: {keys[0]}", file=sys.stderr)
    # replicas behind one load balancer must share this key, or a token signed by one is refused by another
    token_key = os.environ.get("SIDECAST_ADS_TOKEN_KEY", "")
    try:
        settings = Settings(
            db_path=args.db, redis_url=args.redis, api_keys=tuple(k.strip() for k in keys), token_key=token_key,
            token_ttl=args.token_ttl, require_player_tokens=not args.no_player_tokens,
            allow_private_upstreams=args.allow_private_upstreams, upstream_timeout=args.upstream_timeout,
            max_wrapper_depth=args.max_wrapper_depth, media_dir=args.media_dir, public_url=args.public_url,
            origin=args.origin)
        if args.workers < 1 or args.workers > 64:
            raise ValueError("--workers must be between 1 and 64")
        if args.workers > 1 and not args.redis:
            raise ValueError("--workers > 1 needs --redis: replicas share decisions, caps and beacons there")
        if args.workers == 1:
            app = create_app(settings)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"sidecast ads: {exc}", file=sys.stderr)
        return 2
    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
        return 0
    # Several processes: each builds its app from the same settings (one token key, one API key set),
    # so a token signed by one worker is accepted by every other.
    shared = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "media_profile"}
    os.environ[_SETTINGS_ENV] = json.dumps(shared)
    uvicorn.run("sidecast.ads.api.cli:app_from_env", factory=True, workers=args.workers, host=args.host, port=args.port,
                log_level="warning", access_log=False)
    return 0


_SETTINGS_ENV = "SIDECAST_ADS_SETTINGS_JSON"


def app_from_env() -> Any:
    """The app of one worker process, from the settings its parent put in the environment."""
    from sidecast.ads.api.app import create_app
    from sidecast.ads.api.service import Settings

    doc = json.loads(os.environ[_SETTINGS_ENV])
    doc["api_keys"] = tuple(doc.get("api_keys") or ())
    return create_app(Settings(**doc))


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m ads.api.cli serve ...`) for when the `sidecast ads` group is absent."""
    parser = argparse.ArgumentParser(prog="sidecast-ads")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
