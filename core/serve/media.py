"""The media router (GET/HEAD of the output folder's files) and the player router (the player page and
its vendored hls.js).

Read-only and open to any origin (`Access-Control-Allow-Origin: *` on every answer), so a player on a
CDN page or a staging site can use the stream; nothing here changes state, which is what lets the
media port face viewers while the control router (control.py) lives behind its own port and keys.
Every rule comes from files.py; this module only turns it into responses.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path

import anyio.to_thread
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from . import blocking, files

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

    def __init__(self, fd: int, first: int, length: int, status: int, headers: Mapping[str, str],
                 media_type: str) -> None:
        self.fd, self.first, self.length = fd, first, length
        super().__init__(None, status_code=status, headers={**headers, "Content-Length": str(length)},
                         media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if scope["method"] == "HEAD" or self.length == 0:
                await send({"type": "http.response.body", "body": b""})
                return
            offset, end = self.first, self.first + self.length
            while offset < end:
                chunk = await anyio.to_thread.run_sync(os.pread, self.fd, min(end - offset, CHUNK_BYTES), offset)
                if not chunk:  # truncated under us: the connection must not wait for bytes that never come
                    raise OSError(f"file shrank while being sent ({end - offset} bytes missing)")
                offset += len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": offset < end})
        finally:
            os.close(self.fd)


def file_response(fd: int, st: os.stat_result, name: str, request: Request) -> Response:
    """The answer to GET/HEAD of one open regular file (its fd is taken over and closed): 200, 206, 304 or
    416, with validators and the cache policy of its name."""
    keep_open = False
    try:
        etag = files.entity_tag(st)
        headers = {**COMMON_HEADERS, **CORS_HEADERS, "Cache-Control": files.cache_control_for(name),
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
        media_type = files.content_type_for(name)
        if request.method == "HEAD":  # the Content-Length a GET would send, with no body
            return Response(b"", status_code=status, headers={**headers, "Content-Length": str(length)},
                            media_type=media_type)
        if length <= INLINE_BYTES:
            body = os.pread(fd, length, first)
            if len(body) != length:  # truncated in place since fstat (renamed files never are)
                return text_response(503, "file changed while being read; try again", {"Retry-After": "1"})
            return Response(body, status_code=status, headers=headers, media_type=media_type)
        keep_open = True
        return FileSlice(fd, first, length, status, headers, media_type)
    finally:
        if not keep_open:
            os.close(fd)


def _raw_path(request: Request) -> str:
    # the path exactly as sent: files.safe_relative_path decodes it once (the ASGI `path` is decoded already)
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def serve_file(root: str, url_path: str, request: Request) -> Response:
    """GET/HEAD of the public file `url_path` names under `root` (a real path): the file, 400 or 404."""
    try:
        rel = files.safe_relative_path(url_path)
    except files.UnsafePath:
        return text_response(400, "bad path: it must stay inside the served folder")
    opened = files.open_beneath(root, rel) if files.is_public(rel) else None
    if opened is None:
        return text_response(404, f"not found: {files.request_path(url_path)}")
    return file_response(*opened, rel, request)


async def _preflight(request: Request) -> Response:
    """CORS preflight for media: any origin may GET (with Range) and HEAD; nothing else is offered."""
    requested = request.headers.get("access-control-request-headers")
    return Response(status_code=204, headers={
        **CORS_HEADERS, "Access-Control-Allow-Methods": "GET, HEAD, OPTIONS",
        "Access-Control-Allow-Headers": requested or "Range", "Access-Control-Max-Age": "86400"})


async def serve_playlist(root: str, url_path: str, request: Request, watcher: blocking.Watcher) -> Response:
    """A media playlist with LL-HLS delivery directives: held until it lists what the player asked for
    (``_HLS_msn``/``_HLS_part``), and/or answered as a delta update (``_HLS_skip``)."""
    try:
        d = blocking.parse_directives(request.query_params)
        rel = files.safe_relative_path(url_path)
    except blocking.DirectiveError as exc:
        return text_response(400, str(exc))
    except files.UnsafePath:
        return text_response(400, "bad path: it must stay inside the served folder")
    resolved = files.resolve_file(Path(root), "/" + rel) if files.is_public(rel) else None
    if resolved is None:
        return text_response(404, f"not found: {files.request_path(url_path)}")
    path = str(resolved)
    loop = asyncio.get_running_loop()
    deadline = None
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            return text_response(404, f"not found: {files.request_path(url_path)}")
        edge = blocking.playlist_edge(text)
        if not edge.can_block or not d.blocking:
            break
        assert d.msn is not None
        if d.msn > max(edge.msn, edge.complete) + 2 and not edge.ended:
            return text_response(400, f"_HLS_msn={d.msn} is more than two segments past the last one "
                                      f"({max(edge.msn, edge.complete)})")
        if blocking.satisfied(edge, d):
            break
        now = loop.time()
        deadline = deadline if deadline is not None else now + 3 * edge.target
        if now >= deadline:
            return text_response(503, "the requested part did not appear within three target durations",
                                 {"Retry-After": "1"})
        await watcher.changed(path, deadline - now)
    if d.skip and edge.can_block:
        text = blocking.delta(text, edge)
    headers = {**COMMON_HEADERS, **CORS_HEADERS, "Cache-Control": files.NO_CACHE}
    return Response(text.encode(), media_type=files.content_type_for(rel), headers=headers)


def media_router(directory: Path) -> APIRouter:
    """GET/HEAD of any public file under `directory` (see files.is_public); OPTIONS answers preflights.

    Catches every path, so include it after the other routers of an app.
    """
    root = os.path.realpath(directory)
    watcher = blocking.Watcher()

    async def media_file(request: Request) -> Response:
        raw = _raw_path(request)
        if raw.endswith(".m3u8") and any(k.startswith("_HLS_") for k in request.query_params):
            return await serve_playlist(root, raw, request, watcher)
        return serve_file(root, raw, request)

    router = APIRouter()
    router.add_route("/{path:path}", media_file, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_route("/{path:path}", _preflight, methods=["OPTIONS"], include_in_schema=False)
    return router


def player_router() -> APIRouter:
    """The player page at `/` and `/index.html`, and its own files (hls.js) under `/_player/`."""

    static_root = os.path.realpath(STATIC_DIR)

    async def page(request: Request) -> Response:
        return serve_file(static_root, "/" + PLAYER_PAGE, request)

    async def static(request: Request) -> Response:
        raw = _raw_path(request)
        if not raw.startswith(STATIC_PREFIX):  # a percent-encoded prefix (/%5Fplayer/): not ours to guess
            return text_response(404, f"not found: {files.request_path(raw)}")
        return serve_file(static_root, "/" + raw[len(STATIC_PREFIX):], request)

    router = APIRouter()
    for path in ("/", "/index.html"):
        router.add_route(path, page, methods=["GET", "HEAD"], include_in_schema=False)
    router.add_route(STATIC_PREFIX + "{path:path}", static, methods=["GET", "HEAD"], include_in_schema=False)
    return router
