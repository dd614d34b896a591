"""Creative media: POST /v1/creatives/upload registers a creative by uploading its file (management key),
and GET /v1/media/{creative}/{name} serves the stored file to players (public, like any ad CDN)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, File, Form, HTTPException, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse

from sidecast.ads.api import schemas as S
from sidecast.ads.api.deps import ID_RE, BaseUrl, MediaDir, SettingsDep, StoreDep, management, resource_router
from sidecast.ads.api.errors import responses

MEDIA_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".ts": "video/mp2t",
                  ".m3u8": "application/vnd.apple.mpegurl"}

router = resource_router(tags=["creatives"])


@router.post("/v1/creatives/upload", status_code=201, response_model=S.Creative,
             summary="Register a creative by uploading its media file", dependencies=[Depends(management)],
             responses=responses(401, 409, 413, 415, 422))
async def upload_creative(
    file: Annotated[UploadFile, File(description="MP4, MOV, TS or M3U8")],
    duration: Annotated[float, Form(gt=0, le=600)],
    settings: SettingsDep,
    store: StoreDep,
    media_dir: MediaDir,
    base: BaseUrl,
    id: Annotated[str | None, Form(pattern=ID_RE.pattern)] = None,
    name: Annotated[str, Form(max_length=256)] = "",
    advertiser: Annotated[str, Form(max_length=256)] = "",
    click_through: Annotated[str | None, Form(pattern=r"^https?://[!-~]+$", max_length=2048)] = None,
) -> Any:
    filename = Path(file.filename or "").name
    suffix = Path(filename).suffix.lower()
    if suffix not in MEDIA_SUFFIXES:
        raise HTTPException(415, f"unsupported media file {filename!r}: use one of {', '.join(MEDIA_SUFFIXES)}")
    cid = id or f"cr-{secrets.token_hex(6)}"
    if store.get("creatives", cid) is not None:
        raise HTTPException(409, f"creative {cid!r} already exists; delete it first or use another id")
    target_dir = media_dir / cid
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / f"media{suffix}"
    size = 0
    with open(target, "wb") as out:
        while chunk := await file.read(1 << 20):
            size += len(chunk)
            if size > settings.max_upload_bytes:
                out.close()
                target.unlink(missing_ok=True)
                raise HTTPException(413, f"upload is over the {settings.max_upload_bytes}-byte limit")
            out.write(chunk)
    if size == 0:
        target.unlink(missing_ok=True)
        raise HTTPException(422, "uploaded file is empty")
    doc = S.Creative(id=cid, name=name, advertiser=advertiser, duration=duration, click_through=click_through,
                     media_url=f"{base}/v1/media/{cid}/media{suffix}").model_dump(mode="json")
    if not store.put("creatives", cid, doc, create=True):
        raise HTTPException(409, f"creative {cid!r} already exists")
    return JSONResponse(doc, status_code=201)


@router.get("/v1/media/{creative_id}/{name}", summary="Uploaded ad media (public)",
            responses={200: {"content": {"video/mp4": {}}}, **responses(404)})
async def media(creative_id: Annotated[str, PathParam(max_length=64)],
                name: Annotated[str, PathParam(max_length=64)], media_dir: MediaDir) -> Any:
    suffix = Path(name).suffix.lower()
    if not ID_RE.match(creative_id) or name != f"media{suffix}" or suffix not in MEDIA_SUFFIXES:
        raise HTTPException(404, "no such media file")
    path = media_dir / creative_id / name
    if not path.is_file():
        raise HTTPException(404, "no such media file")
    return FileResponse(path, media_type=MEDIA_SUFFIXES[suffix])
