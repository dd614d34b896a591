"""`sidecast ads serve`: run the ad decisioning API under uvicorn.

The `sidecast ads` group (ads/cli.py) calls `register(subparsers)`; the handler turns flags and
environment variables into Settings, builds the app and serves it. Secrets may come from the environment
(SIDECAST_ADS_API_KEYS, comma-separated; SIDECAST_ADS_TOKEN_KEY; AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY for
--media-store) so they stay out of `ps` listings. Settings that would make every request fail are refused
before serving, in one line (exit status 2).
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
    p.add_argument("--max-ads-per-response", type=int, default=32,
                   help="<Ad>s read from one VAST response; the rest are ignored (default 32)")
    p.add_argument("--max-vast-bytes", type=int, default=512 * 1024, help="largest VAST/VMAP response read (default 512 KiB)")
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024,
                   help="largest JSON request body; larger ones get 413 before they are read (default 64 KiB)")
    p.add_argument("--max-upload-bytes", type=int, default=200 * 1024 * 1024,
                   help="largest creative upload (default 200 MiB)")
    p.add_argument("--media-store", default=None, metavar="s3://BUCKET[/PREFIX]",
                   help="keep uploaded creatives in S3-compatible object storage, shared by every replica "
                        "(credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); default: --media-dir")
    p.add_argument("--s3-endpoint", default=None, metavar="URL",
                   help="S3-compatible endpoint for --media-store (MinIO, Ceph, ...; default AWS); env SIDECAST_ADS_S3_ENDPOINT")
    p.add_argument("--s3-region", default=None, help="region for --media-store (default us-east-1); env AWS_REGION")
    p.add_argument("--condition-cache", default=None, metavar="DIR",
                   help="where --origin sessions keep conditioned ads (default: next to --db)")
    p.add_argument("--prefetch-lead", type=float, default=0.0, metavar="SECONDS",
                   help="live SSAI: decide a break this long before it starts, when it is signalled ahead (default 0: off)")
    p.add_argument("--decision-wait", type=float, default=2.0, metavar="SECONDS",
                   help="live SSAI: how long a playlist request waits for a break's decision before the content plays (default 2)")
    p.add_argument("--live-preroll", type=float, default=0.0, metavar="SECONDS",
                   help="live SSAI: a pre-roll of up to this long when a session starts (default 0: none)")
    p.add_argument("--insert-pod-seconds", type=float, default=60.0, metavar="SECONDS",
                   help="most seconds of ads in a break that inserts rather than replaces (pre/post-rolls, VMAP; default 60)")
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
    generated = not keys
    if generated:
        keys = [secrets.token_urlsafe(18)]
    # replicas behind one load balancer must share this key, or a token signed by one is refused by another
    token_key = os.environ.get("SIDECAST_ADS_TOKEN_KEY", "")
    try:
        settings = Settings(
            db_path=args.db, redis_url=args.redis, api_keys=tuple(k.strip() for k in keys), token_key=token_key,
            token_ttl=args.token_ttl, require_player_tokens=not args.no_player_tokens,
            allow_private_upstreams=args.allow_private_upstreams, upstream_timeout=args.upstream_timeout,
            max_wrapper_depth=args.max_wrapper_depth, media_dir=args.media_dir, public_url=args.public_url,
            origin=args.origin, max_ads_per_response=args.max_ads_per_response, max_vast_bytes=args.max_vast_bytes,
            max_body_bytes=args.max_body_bytes, max_upload_bytes=args.max_upload_bytes, media_store=args.media_store,
            s3_endpoint=args.s3_endpoint or os.environ.get("SIDECAST_ADS_S3_ENDPOINT") or None,
            s3_region=args.s3_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            s3_access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""), s3_secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
            s3_session_token=os.environ.get("AWS_SESSION_TOKEN", ""), condition_cache=args.condition_cache,
            prefetch_lead=args.prefetch_lead, decision_wait=args.decision_wait, live_preroll=args.live_preroll,
            insert_pod_seconds=args.insert_pod_seconds)
        if args.workers < 1 or args.workers > 64:
            raise ValueError("--workers must be between 1 and 64")
        if args.workers > 1 and not args.redis:
            raise ValueError("--workers > 1 needs --redis: replicas share decisions, caps and beacons there")
        if args.workers == 1:
            app = create_app(settings)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"sidecast ads: {exc}", file=sys.stderr)
        return 2
    if generated:   # only once the settings are good: a refused start prints its reason alone
        print(f"sidecast ads: no --api-key given; management API key for this run: {keys[0]}", file=sys.stderr)
    from sidecast.ads.api.http import CoalescingHttpToolsProtocol

    if args.workers == 1:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False,
                    http=CoalescingHttpToolsProtocol)
        return 0
    # Several processes: each builds its app from the same settings (one token key, one API key set),
    # so a token signed by one worker is accepted by every other.
    shared = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name != "media_profile"}
    os.environ[_SETTINGS_ENV] = json.dumps(shared)
    uvicorn.run("sidecast.ads.api.cli:app_from_env", factory=True, workers=args.workers, host=args.host, port=args.port,
                log_level="warning", access_log=False, http=CoalescingHttpToolsProtocol)
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
