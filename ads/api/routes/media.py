"""Creative media: POST /v1/creatives/upload registers a creative by uploading its file (management key),
and GET /v1/media/{creative}/{name} serves the stored file to players (public, like any ad CDN).

The upload is parsed as it arrives (multipart/form-data, python-multipart's push parser) and its file
part streamed into the object store (ads/storage: a folder, or S3-compatible storage that every replica
shares), never held whole in memory or spooled to a local temporary file. The key is checked before the
first byte is read (the route's dependency), the size both before (Content-Length, by the body guard in
ads/api/body.py) and while it streams. The file goes to an ``incoming/`` key first and is moved into
place only once the whole form is valid, so a refused or broken upload leaves nothing behind.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from sidecast.ads.api import schemas as S
from sidecast.ads.api.deps import ID_RE, BaseUrl, Service, management, resource_router
from sidecast.ads.api.errors import responses
from sidecast.ads.storage import ObjectStore, StorageError, TooLarge
from sidecast.ads.storage.directory import DirectoryStore

log = logging.getLogger("sidecast.ads")

MEDIA_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".ts": "video/mp2t",
                  ".m3u8": "application/vnd.apple.mpegurl"}
FIELDS = {"duration", "id", "name", "advertiser", "click_through"}
MAX_FIELD_BYTES = 4096

router = resource_router(tags=["creatives"])

_UPLOAD_SCHEMA = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "duration"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "MP4, MOV, TS or M3U8"},
            "duration": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
            "id": {"type": "string", "pattern": ID_RE.pattern},
            "name": {"type": "string", "maxLength": 256},
            "advertiser": {"type": "string", "maxLength": 256},
            "click_through": {"type": "string", "pattern": r"^https?://[!-~]+$", "maxLength": 2048}}}}}}}


def media_store(request: Request) -> ObjectStore:
    return request.app.state.media_store  # type: ignore[no-any-return]


class _Form:
    """The push parser's callbacks: text fields into `fields`, the file's bytes into `pending` (drained by
    the upload loop after each chunk of the body is fed)."""

    def __init__(self) -> None:
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.pending: list[bytes] = []
        self.file_started = False
        self.file_done = False
        self.error: str | None = None
        self._headers: dict[str, str] = {}
        self._hname = b""
        self._hvalue = b""
        self._name: str | None = None
        self._is_file = False
        self._value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hvalue += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._hname.decode("latin-1").lower()] = self._hvalue.decode("latin-1")
        self._hname, self._hvalue = b"", b""

    def on_headers_finished(self) -> None:
        _, opts = parse_options_header(self._headers.get("content-disposition", ""))
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        filename = opts.get(b"filename")
        self._name, self._is_file = name, filename is not None
        if self._is_file:
            if name != "file" or self.file_started:
                self.error = "send exactly one file, in the form field 'file'"
            self.filename = (filename or b"").decode("utf-8", "replace")
            self.file_started = True
        elif name not in FIELDS:
            self.error = f"unknown form field {name[:40]!r}; this route takes file, {', '.join(sorted(FIELDS))}"

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            self.pending.append(bytes(data[start:end]))
        else:
            self._value += data[start:end]
            if len(self._value) > MAX_FIELD_BYTES:
                self.error = f"form field {self._name!r} is over {MAX_FIELD_BYTES} bytes"

    def on_part_end(self) -> None:
        if self._is_file:
            self.file_done = True
        elif self._name:
            self.fields[self._name] = self._value.decode("utf-8", "replace")
        self._headers, self._value, self._is_file, self._name = {}, bytearray(), False, None

    def callbacks(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in (
            "on_header_field", "on_header_value", "on_header_end", "on_headers_finished", "on_part_data",
            "on_part_end")}


def _feed(parser: MultipartParser, chunk: bytes | None = None) -> None:
    """Parse more of the body; a body that is not multipart is the client's error (400), not a crash (500)."""
    try:
        if chunk is None:
            parser.finalize()
        else:
            parser.write(chunk)
    except MultipartParseError as exc:
        raise HTTPException(400, f"malformed multipart body: {exc}") from None


def _suffix(filename: str) -> str:
    suffix = Path(Path(filename).name).suffix.lower()
    if suffix not in MEDIA_SUFFIXES:
        raise HTTPException(415, f"unsupported media file {Path(filename).name[:80]!r}: use one of "
                                 f"{', '.join(MEDIA_SUFFIXES)}")
    return suffix


@router.post("/v1/creatives/upload", status_code=201, response_model=S.Creative,
             summary="Register a creative by uploading its media file", dependencies=[Depends(management)],
             responses=responses(401, 409, 413, 415, 422), openapi_extra=_UPLOAD_SCHEMA)
async def upload_creative(request: Request, svc: Service, base: BaseUrl) -> Any:
    settings, store = svc.settings, svc.store
    objects = media_store(request)
    ctype, opts = parse_options_header(request.headers.get("content-type", ""))
    boundary = opts.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise HTTPException(415, "send the upload as multipart/form-data (a 'file' part and a 'duration' field)")
    form = _Form()
    parser = MultipartParser(boundary, form.callbacks())  # type: ignore[arg-type]  # a TypedDict of the same keys
    body = request.stream()
    incoming: str | None = None
    finished = False

    async def file_chunks() -> AsyncIterator[bytes]:
        """The file's bytes as the body arrives; the fields after it are parsed on the way."""
        nonlocal finished
        while True:
            while form.pending:
                yield form.pending.pop(0)
            if form.error:
                raise HTTPException(422, form.error)
            if form.file_done:
                return
            chunk = await anext(body, None)
            if chunk is None:
                finished = True
                if not form.file_done:
                    raise HTTPException(400, "the upload ended before its file part did")
                continue
            _feed(parser, chunk)

    try:
        # fields that come before the file are parsed first: an id already taken is refused before storing
        while not form.file_started and not form.error:
            chunk = await anext(body, None)
            if chunk is None:
                finished = True
                break
            _feed(parser, chunk)
        if form.error:
            raise HTTPException(422, form.error)
        if not form.file_started:
            raise HTTPException(422, "the form has no 'file' part")
        suffix = _suffix(form.filename or "")
        early_id = form.fields.get("id")
        if early_id and store.get("creatives", early_id) is not None:
            raise HTTPException(409, f"creative {early_id!r} already exists; delete it first or use another id")
        incoming = f"incoming/{secrets.token_hex(12)}{suffix}"
        try:
            info = await objects.put(incoming, file_chunks(), content_type=MEDIA_SUFFIXES[suffix],
                                     max_bytes=settings.max_upload_bytes)
        except TooLarge:
            raise HTTPException(413, f"upload is over the {settings.max_upload_bytes}-byte limit "
                                     "(--max-upload-bytes)") from None
        # the rest of the form (fields after the file)
        if not finished:
            async for chunk in body:
                _feed(parser, chunk)
                if form.error:
                    raise HTTPException(422, form.error)
        _feed(parser)
        if info.size == 0:
            raise HTTPException(422, "uploaded file is empty")
        f = form.fields
        cid = f.get("id") or f"cr-{secrets.token_hex(6)}"
        try:  # a form's fields are text: the duration is read as a number here (the JSON routes take numbers only)
            duration = float(f["duration"]) if f.get("duration") is not None else None
        except ValueError:
            raise HTTPException(422, f"invalid upload: duration: a number of seconds, not {f['duration'][:32]!r}") from None
        try:
            doc = S.Creative(id=cid, name=f.get("name", ""), advertiser=f.get("advertiser", ""),
                             duration=duration, click_through=f.get("click_through") or None,  # type: ignore[arg-type]
                             media_url=f"{base}/v1/media/{cid}/media{suffix}").model_dump(mode="json")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first.get("loc", ())) or "form"
            raise HTTPException(422, f"invalid upload: {where}: {first.get('msg', 'invalid')}") from None
        if store.get("creatives", cid) is not None:
            raise HTTPException(409, f"creative {cid!r} already exists; delete it first or use another id")
        await objects.move(incoming, f"{cid}/media{suffix}")
        incoming = None
        if not store.put("creatives", cid, doc, create=True):
            raise HTTPException(409, f"creative {cid!r} already exists")
        return JSONResponse(doc, status_code=201)
    except StorageError as exc:
        log.error("upload failed: %s", exc)
        raise HTTPException(503, f"media storage unavailable, try again: {exc}") from None
    finally:
        if incoming is not None:
            try:
                await objects.delete(incoming)
            except StorageError as exc:
                log.warning("could not remove the partial upload %s: %s", incoming, exc)


_NAME = re.compile(r"^media\.[a-z0-9]{1,4}$")


@router.get("/v1/media/{creative_id}/{name}", summary="Uploaded ad media (public)",
            responses={200: {"content": {"video/mp4": {}}}, 206: {"description": "a byte range"},
                       **responses(404, 416)})
async def media(request: Request, creative_id: Annotated[str, PathParam(max_length=64)],
                name: Annotated[str, PathParam(max_length=64)]) -> Any:
    suffix = Path(name).suffix.lower()
    if not ID_RE.match(creative_id) or not _NAME.match(name) or suffix not in MEDIA_SUFFIXES:
        raise HTTPException(404, "no such media file")
    objects = media_store(request)
    key = f"{creative_id}/{name}"
    if isinstance(objects, DirectoryStore):   # a local file: sendfile, ranges and conditional requests
        path = objects.path(key)
        if not path.is_file():
            raise HTTPException(404, "no such media file")
        return FileResponse(path, media_type=MEDIA_SUFFIXES[suffix])
    try:
        obj = await objects.get(key, byte_range=request.headers.get("range"))
    except StorageError as exc:
        if "outside" in str(exc):
            raise HTTPException(416, str(exc)) from None
        raise HTTPException(503, f"media storage unavailable, try again: {exc}") from None
    if obj is None:
        raise HTTPException(404, "no such media file")
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(obj.length)}
    if obj.content_range:
        headers["Content-Range"] = obj.content_range
    if request.method == "HEAD":
        if obj.close is not None:
            await obj.close()
        return Response(status_code=obj.status, headers=headers, media_type=MEDIA_SUFFIXES[suffix])
    return StreamingResponse(obj.chunks, status_code=obj.status, headers=headers, media_type=MEDIA_SUFFIXES[suffix])
