"""The player-facing port: GET/HEAD of media only, open to any origin (CORS for GET), nothing that changes state.

    GET /<stream>/master.m3u8                         an open stream
    GET /<stream>/t/<token>/master.m3u8               a protected stream: the token rides in the path, so
                                                      every relative URI in its playlists carries it too
    GET /healthz                                      liveness, for the load balancer in front

A protected stream answers 403 without a valid token, on every playlist and segment request. With local
storage the files are served by ``sidecast.core.serve`` itself (``serve_file``: byte ranges, validators,
immutable caching of segments, no-cache of playlists), and a low-latency stream's playlists honour the
LL-HLS delivery directives (blocking reload ``_HLS_msn``/``_HLS_part`` and delta updates ``_HLS_skip``, as
``sidecast run --serve`` does: ``sidecast.core.serve.blocking``). With S3 storage this port proxies the
bucket (or let a CDN front the bucket directly, for open streams); a proxied playlist ignores the directives
(answered at once, as RFC 8216bis allows a server that does not block), so low-latency players poll.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, FastAPI
from starlette.requests import Request
from starlette.responses import Response

from ..serve import bare_app, blocking
from ..serve.files import cache_control_for, content_type_for, safe_relative_path
from ..serve.media import COMMON_HEADERS, CORS_HEADERS, serve_file, serve_playlist, text_response
from .keys import TokenError, check_playback
from .storage import S3Storage


def _split(raw: str) -> tuple[str, str | None, str] | None:
    """(stream, token or None, rest) of a raw request path, or None when it names no stream file."""
    parts = raw.split("?", 1)[0].split("/")
    if len(parts) < 3 or not parts[1]:
        return None
    stream = parts[1]
    if len(parts) >= 5 and parts[2] == "t":
        return stream, parts[3], "/".join(parts[4:])
    return stream, None, "/".join(parts[2:])


def media_router(server: Any) -> APIRouter:
    storage = server.storage
    secret: bytes = server.registry.secret
    root = os.path.realpath(storage.local_root) if storage.local_root is not None else None
    watcher = blocking.Watcher()  # one poller per watched playlist, however many players wait on it

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}\n', media_type="application/json",
                        headers={**COMMON_HEADERS, "Cache-Control": "no-store"})

    async def media(request: Request) -> Response:
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1") if raw else request.url.path
        parsed = _split(path)
        if parsed is None:
            return text_response(404, "not found: ask for /<stream>/master.m3u8")
        stream, token, rest = parsed
        protected = server.supervisor.protection.get(stream)
        if protected is None:
            return text_response(404, f"no stream {stream!r}")
        if protected:
            if token is None:
                return text_response(403, "this stream needs a playback token: /<stream>/t/<token>/...")
            try:
                check_playback(secret, stream, token)
            except TokenError as exc:
                return text_response(403, str(exc))
        url_path = f"/{stream}/{rest}"
        if root is not None:
            if url_path.endswith(".m3u8") and any(k.startswith("_HLS_") for k in request.query_params):
                return await serve_playlist(root, url_path, request, watcher)
            return serve_file(root, url_path, request)
        return await _proxy(storage, url_path, request)

    async def preflight(request: Request) -> Response:
        return Response(status_code=204, headers={
            **CORS_HEADERS, "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get("access-control-request-headers") or "Range",
            "Access-Control-Max-Age": "86400"})

    router = APIRouter()
    router.add_route("/healthz", healthz, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_route("/{path:path}", media, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_route("/{path:path}", preflight, methods=["OPTIONS"], include_in_schema=False)
    return router


async def _proxy(storage: S3Storage, url_path: str, request: Request) -> Response:
    try:
        key = safe_relative_path(url_path)
    except ValueError:
        return text_response(400, "bad path")
    if not key or any(p.startswith(".") for p in key.split("/")):
        return text_response(404, f"not found: {url_path}")
    try:
        obj = await anyio.to_thread.run_sync(storage.get_object, key)
    except OSError as exc:
        return text_response(502, f"storage error: {exc}", {"Retry-After": "1"})
    if obj is None:
        return text_response(404, f"not found: {url_path}")
    body: bytes = await anyio.to_thread.run_sync(obj["Body"].read)
    etag = obj.get("ETag") or '"' + hashlib.md5(body, usedforsecurity=False).hexdigest() + '"'
    headers = {**COMMON_HEADERS, **CORS_HEADERS, "Cache-Control": cache_control_for(key), "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    if request.method == "HEAD":
        return Response(b"", headers={**headers, "Content-Length": str(len(body))}, media_type=content_type_for(key))
    return Response(body, headers=headers, media_type=content_type_for(key))


def create_media_app(server: Any) -> FastAPI:
    return bare_app(media_router(server))


__all__ = ["create_media_app", "media_router"]
