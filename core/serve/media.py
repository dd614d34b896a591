"""The media router (GET/HEAD of the output folder's files) and the player router (the player page and
its vendored hls.js).

Read-only and open to any origin (`Access-Control-Allow-Origin: *` on every answer), so a player on a
CDN page or a staging site can use the stream; nothing here changes state, which is what lets the
media port face viewers while the control router (control.py) lives behind its own port and keys.
Every rule comes from files.py; this module only turns it into responses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import files

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
"""The player page and the vendored hls.js; served under STATIC_PREFIX, never from a CDN."""
STATIC_PREFIX = "/_player/"
PLAYER_PAGE = "player.html"

CORS_HEADERS: dict[str, str] = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}
COMMON_HEADERS: dict[str, str] = {"X-Content-Type-Options": "nosniff"}

INLINE_BYTES = 64 * 1024
"""Files up to this size (playlists, WebVTT segments) are read in one call on the event loop: from the
page cache that takes microseconds, less than handing the read to a worker thread. Larger bodies are
streamed in CHUNK_BYTES reads on worker threads, so one slow disk read never stalls other viewers."""
CHUNK_BYTES = 256 * 1024


def text_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """A one-line text/plain answer (errors a person reads in a browser or with curl)."""
    return Response((message + "\n").encode(), status_code=status, media_type="text/plain; charset=utf-8",
                    headers={**COMMON_HEADERS, **CORS_HEADERS, "Cache-Control": files.NO_CACHE, **(headers or {})})


class FileSlice(Response):
    """Streams `length` bytes from `first` of an already open file, then closes it.

    The file was opened (and its size read) once before the headers were built, so a playlist replaced by
    rename while it is being sent still arrives whole and matches its Content-Length.
    """

    def __init__(self, f: BinaryIO, first: int, length: int, status: int, headers: Mapping[str, str],
                 media_type: str) -> None:
        self.f, self.first, self.length = f, first, length
        super().__init__(None, status_code=status, headers={**headers, "Content-Length": str(length)},
                         media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if scope["method"] == "HEAD" or self.length == 0:
                await send({"type": "http.response.body", "body": b""})
                return
            self.f.seek(self.first)
            remaining = self.length
            while remaining > 0:
                chunk = await anyio.to_thread.run_sync(self.f.read, min(remaining, CHUNK_BYTES))
                if not chunk:  # truncated under us: the connection must not wait for bytes that never come
                    raise OSError(f"file shrank while being sent ({remaining} bytes missing)")
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        finally:
            self.f.close()


def file_response(file: Path, request: Request, *, cors: bool = True) -> Response:
    """The answer to GET/HEAD of one regular file: 200, 206, 304 or 416, with validators and cache policy."""
    try:
        f = file.open("rb")
    except OSError:
        return text_response(404, f"not found: {file.name}")
    keep_open = False
    try:
        st = os.fstat(f.fileno())
        if not files.is_regular(st):
            return text_response(404, f"not found: {file.name}")
        etag = files.entity_tag(st)
        headers = {**COMMON_HEADERS, **(CORS_HEADERS if cors else {}), "Cache-Control": files.cache_control_for(file),
                   "Accept-Ranges": "bytes", "ETag": etag}
        modified = files.last_modified(st)
        if modified is not None:
            headers["Last-Modified"] = modified
        if files.not_modified(request.headers, etag, st):
            return Response(status_code=304, headers=headers)
        size = st.st_size
        byte_range = None
        if files.range_applies(request.headers, etag):
            try:
                byte_range = files.parse_range(request.headers.get("range"), size)
            except files.RangeNotSatisfiable:
                return Response(status_code=416, media_type="text/plain",
                                headers={**headers, "Content-Range": f"bytes */{size}"})
        if byte_range is None:
            status, first, length = 200, 0, size
        else:
            first, last = byte_range
            status, length = 206, last - first + 1
            headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        media_type = files.content_type_for(file)
        if length <= INLINE_BYTES or request.method == "HEAD":
            body = b""
            if request.method != "HEAD":
                f.seek(first)
                body = f.read(length)
            # HEAD: the Content-Length a GET would send, with no body
            return Response(body, status_code=status, headers={**headers, "Content-Length": str(length)},
                            media_type=media_type)
        keep_open = True
        return FileSlice(f, first, length, status, headers, media_type)
    finally:
        if not keep_open:
            f.close()


def _raw_path(request: Request) -> str:
    # the path exactly as sent: files.safe_relative_path decodes it once (the ASGI `path` is decoded already)
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def _serve_under(root: Path, url_path: str, request: Request, *, public_only: bool) -> Response:
    try:
        file = files.resolve_file(root, url_path, public_only=public_only)
    except files.UnsafePath:
        return text_response(400, "bad path: it must stay inside the served folder")
    if file is None:
        return text_response(404, f"not found: {files.request_path(url_path)}")
    return file_response(file, request)


async def _preflight(request: Request) -> Response:
    """CORS preflight for media: any origin may GET (with Range) and HEAD; nothing else is offered."""
    requested = request.headers.get("access-control-request-headers")
    return Response(status_code=204, headers={
        **CORS_HEADERS, "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": requested or "Range", "Access-Control-Max-Age": "86400"})


def media_router(directory: Path) -> APIRouter:
    """GET/HEAD of any public file under `directory` (see files.is_public); OPTIONS answers preflights.

    Catches every path, so include it after the other routers of an app.
    """
    root = Path(directory).resolve()

    async def media_file(request: Request) -> Response:
        return _serve_under(root, _raw_path(request), request, public_only=True)

    router = APIRouter()
    router.add_route("/{path:path}", media_file, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_route("/{path:path}", _preflight, methods=["OPTIONS"], include_in_schema=False)
    return router


def player_router() -> APIRouter:
    """The player page at `/` and `/index.html`, and its own files (hls.js) under `/_player/`."""

    async def page(request: Request) -> Response:
        return file_response(STATIC_DIR / PLAYER_PAGE, request)

    async def static(request: Request) -> Response:
        raw = _raw_path(request)
        if not raw.startswith(STATIC_PREFIX):  # a percent-encoded prefix (/%5Fplayer/): not ours to guess
            return text_response(404, f"not found: {files.request_path(raw)}")
        return _serve_under(STATIC_DIR, "/" + raw[len(STATIC_PREFIX):], request, public_only=True)

    router = APIRouter()
    for path in ("/", "/index.html"):
        router.add_route(path, page, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_route(STATIC_PREFIX + "{path:path}", static, methods=["GET", "HEAD"], include_in_schema=False)
    return router
