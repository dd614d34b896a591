"""The ad decisioning HTTP API (FastAPI): catalog management, decisions, HLS asset lists and beacons.

`create_app(settings)` builds the whole service; `sidecast ads serve` runs it under uvicorn. Management
routes want an API key (`X-API-Key`); player-facing routes (asset lists, beacons) want a short-lived signed
token in the URL, which decisions and POST /v1/tokens hand out. Every refusal is a 4xx with a one-line
`detail` that says what to change.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import redis
from fastapi import Depends, FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException as StarletteHTTPException

from sidecast.ads.api import schemas as S
from sidecast.ads.api import tokens
from sidecast.ads.api.decide import DecisionRequest
from sidecast.ads.api.service import BEACON_EVENTS, AdService, Settings
from sidecast.ads.models import BeaconEvent
from sidecast.ads.store import Kind, open_store

__all__ = ["create_app", "Settings"]

log = logging.getLogger("sidecast.ads")

# a store that is down (Redis unreachable, SQLite disk full) is the service's problem, not the caller's: 503
StoreUnavailable: tuple[type[Exception], ...] = (sqlite3.Error, redis.RedisError, OSError)

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="management API key")
MEDIA_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".ts": "video/mp2t",
                  ".m3u8": "application/vnd.apple.mpegurl"}
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

ERR = {400: {"model": S.Problem, "description": "malformed request (e.g. a body that is not UTF-8 JSON)"},
       401: {"model": S.Problem, "description": "missing or wrong API key / token"},
       403: {"model": S.Problem, "description": "token not valid for this resource"},
       404: {"model": S.Problem, "description": "not found"},
       409: {"model": S.Problem, "description": "conflict"},
       413: {"model": S.Problem, "description": "too large"},
       415: {"model": S.Problem, "description": "unsupported media type"},
       422: {"model": S.Problem, "description": "invalid request"}}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: ERR[c] for c in sorted({400, 422, *codes})}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def _query_names(dependant: Any) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


_ALLOWED: dict[int, set[str]] = {}
_LENIENT_QUERY = {"/v1/asset-list"}  # players append their own parameters (hls.js: _HLS_*); ignore unknowns


async def strict_query(request: Request) -> None:
    """Refuse query parameters a route does not know, so a typo ("sesion=") is a 422, not silently ignored."""
    route = request.scope.get("route")
    if route is None or getattr(route, "path", "") in _LENIENT_QUERY or not hasattr(route, "dependant"):
        return
    allowed = _ALLOWED.get(id(route))
    if allowed is None:
        allowed = _ALLOWED[id(route)] = _query_names(route.dependant)
    unknown = sorted({k for k in request.query_params.keys() if k not in allowed})
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise HTTPException(422, f"unknown query parameter(s) {', '.join(repr(u) for u in unknown[:5])}; "
                                 f"this route takes: {known}")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the service. Opens the store now, so a bad --db or --redis fails before serving anything."""
    settings = settings or Settings()
    store = open_store(settings.db_path, settings.redis_url)
    svc = AdService(settings, store)
    media_dir = Path(settings.media_dir or (Path(settings.db_path).resolve().parent / "sidecast-ads-media"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await svc.start()
        task = asyncio.create_task(svc.forward_loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await svc.stop()
            store.close()

    app = FastAPI(
        title="sidecast ad decisioning API", version="1.0.0", lifespan=lifespan,
        dependencies=[Depends(strict_query)],
        description="VAST in; ad pods, HLS Interstitials asset lists and beacons out. See docs/ads-api.md.")
    app.state.service = svc

    # ---------------------------------------------------------------- errors: always a JSON one-liner

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 204:
            return Response(status_code=204)
        detail = str(exc.detail)
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = "cannot parse the request body: send UTF-8 JSON (or multipart form data for uploads)"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    async def _store_down(request: Request, exc: Exception) -> Response:
        log.error("store error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"the ads store is unavailable, try again: {exc}"}, status_code=503,
                            headers={"Retry-After": "1"})

    for exc_type in StoreUnavailable:
        app.add_exception_handler(exc_type, _store_down)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"detail": _validation_message(exc)}, status_code=422)

    # ---------------------------------------------------------------- auth

    def management(key: Annotated[str | None, Depends(API_KEY)]) -> None:
        if not settings.api_keys:
            raise HTTPException(401, "this server has no API keys configured: start it with --api-key KEY")
        if key is None:
            raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
        if not any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys):
            raise HTTPException(401, "wrong API key", headers={"WWW-Authenticate": "ApiKey"})

    def has_key(key: str | None) -> bool:
        return key is not None and any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys)

    def claims(token: str | None) -> dict[str, Any]:
        if not token:
            raise HTTPException(401, "missing token query parameter (get one from a decision or POST /v1/tokens)")
        try:
            return tokens.verify(token, settings.token_key)
        except tokens.TokenError as exc:
            raise HTTPException(401, f"token refused: {exc}") from exc

    public = settings.public_url.rstrip("/") if settings.public_url else None

    def base_url(request: Request) -> str:
        if public:
            return public
        host = request.headers.get("host") or "{}:{}".format(*request.scope.get("server") or ("localhost", 80))
        return f"{request.scope.get('scheme', 'http')}://{host}{request.scope.get('root_path', '')}"

    # ---------------------------------------------------------------- health

    @app.get("/healthz", response_model=S.Health, tags=["ops"], responses={503: {"model": S.Problem}})
    async def healthz() -> Any:
        try:
            store.ping()
        except Exception as exc:
            return JSONResponse({"detail": f"store unavailable: {exc}"}, status_code=503)
        return {"status": "ok", "store": store.name}

    # ---------------------------------------------------------------- decisions

    def decision_out(d: dict[str, Any], base: str) -> dict[str, Any]:
        tok = tokens.sign({"d": d["decision_id"]}, settings.token_key, settings.token_ttl)
        did = d["decision_id"]
        return {
            "decision_id": did, "session_id": d["session_id"], "break_id": d["break_id"], "duration": d["duration"],
            "ads": [{"creative_id": a["creative_id"], "advertiser": a["advertiser"], "uri": a["uri"],
                     "duration": a["duration"], "click_through": a["click_through"],
                     "rendition_uris": a["rendition_uris"],
                     "beacons": {ev: f"{base}/v1/beacons/{did}/{i}/{ev}?token={tok}" for ev in BEACON_EVENTS}}
                    for i, a in enumerate(d["ads"])],
            "asset_list_url": f"{base}/v1/asset-list?" + urlencode({"decision": did, "token": tok}),
        }

    def kv_map(kv: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in kv.items()}

    @app.post("/v1/decisions", response_model=S.Decision, tags=["decisions"],
              summary="Choose the ads that fill one break for one session",
              responses=_errors(401, 403, 422))
    async def decisions(body: S.DecisionIn, request: Request,
                        key: Annotated[str | None, Depends(API_KEY)] = None,
                        token: Annotated[str | None, Query(max_length=2048)] = None) -> Any:
        # a token, when given, must be valid even for key holders: a bad token is never silently ignored
        if token is not None or not (has_key(key) or not settings.require_player_tokens):
            c = claims(token)
            if c.get("sid") != body.session_id and c.get("scope") != "player":
                raise HTTPException(403, "token is not valid for this session")
        req = DecisionRequest(session_id=body.session_id, duration=body.duration, position=body.position,
                              key_values=kv_map(body.key_values), break_id=body.break_id or "",
                              max_ads=body.max_ads)
        d = await svc.decide(req)
        return JSONResponse(decision_out(d, base_url(request)))

    @app.get("/v1/decisions/{decision_id}", response_model=S.DecisionRecord, tags=["decisions"],
             summary="A recorded decision and the beacons received for it", dependencies=[Depends(management)],
             responses=_errors(401, 404, 422))
    async def get_decision(decision_id: Annotated[str, PathParam(max_length=64)]) -> Any:
        d = store.get_decision(decision_id)
        if d is None:
            raise HTTPException(404, f"no decision {decision_id!r}")
        return {"decision": d, "beacons": store.beacons(decision_id)}

    @app.get("/v1/asset-list", response_model=S.AssetList, tags=["decisions"],
             summary="HLS Interstitials asset list (X-ASSET-LIST) for a break",
             description="Either `decision` (an earlier decision) or `duration` (decide now). The session is "
                         "`session`, else hls.js' `_HLS_primary_id`. Unknown query parameters are ignored.",
             responses=_errors(401, 403, 404, 422))
    async def asset_list(
        request: Request,
        token: Annotated[str | None, Query(max_length=2048)] = None,
        decision: Annotated[str | None, Query(max_length=64)] = None,
        session: Annotated[str | None, Query(pattern=ID_RE.pattern)] = None,
        hls_primary_id: Annotated[str | None, Query(alias="_HLS_primary_id", max_length=128)] = None,
        duration: Annotated[float | None, Query(gt=0, le=600)] = None,
        position: Literal["pre", "mid", "post"] = "mid",
        break_id: Annotated[str | None, Query(alias="break", pattern=ID_RE.pattern)] = None,
        kv: Annotated[list[str] | None, Query(max_length=32, description="key:value targeting pairs")] = None,
    ) -> Any:
        key = request.headers.get("x-api-key")
        trusted = has_key(key) or not settings.require_player_tokens
        c: dict[str, Any] = {} if trusted and token is None else claims(token)
        if decision is not None:
            if c and c.get("d") != decision and c.get("scope") != "player":
                raise HTTPException(403, "token is not valid for this decision")
            d = store.get_decision(decision)
            if d is None:
                raise HTTPException(404, f"no decision {decision!r}")
        else:
            sid = session or (re.sub(r"[^A-Za-z0-9._-]", "-", hls_primary_id)[:64] if hls_primary_id else None)
            if not sid or not ID_RE.match(sid):
                raise HTTPException(422, "asset list needs `decision`, or `duration` with `session` (or _HLS_primary_id)")
            if duration is None:
                raise HTTPException(422, "asset list needs `duration` (seconds) when no `decision` is given")
            if c and c.get("sid") != sid and c.get("scope") != "player":
                raise HTTPException(403, "token is not valid for this session")
            pairs: dict[str, list[str]] = {}
            for item in kv or []:
                k, sep, v = item.partition(":")
                if not sep or not k or not v:
                    raise HTTPException(422, f"bad kv {item!r}: expected key:value")
                pairs.setdefault(k, []).append(v)
            d = await svc.decide(DecisionRequest(
                session_id=sid, duration=duration, position=position, break_id=break_id or "",
                key_values={k: tuple(v) for k, v in pairs.items()}))
        return JSONResponse({"ASSETS": [{"URI": a["uri"], "DURATION": a["duration"]} for a in d["ads"]]})

    # ---------------------------------------------------------------- beacons

    @app.get("/v1/beacons/{decision_id}/{ad_index}/{event}", response_model=S.BeaconResult, tags=["beacons"],
             summary="Record an ad event; its tracking URLs are called once, however often this is hit",
             responses=_errors(401, 403, 404, 422))
    async def beacon(
        decision_id: Annotated[str, PathParam(max_length=64)],
        ad_index: Annotated[int, PathParam(ge=0, le=100)],
        event: S.EventName,
        token: Annotated[str | None, Query(max_length=2048)] = None,
        code: Annotated[int, Query(ge=100, le=999, description="VAST error code for event=error")] = 405,
    ) -> Any:
        c = claims(token)
        if c.get("d") != decision_id:
            raise HTTPException(403, "token is not valid for this decision")
        d = store.get_decision(decision_id)
        if d is None:
            raise HTTPException(404, f"no decision {decision_id!r}")
        if ad_index >= len(d["ads"]):
            raise HTTPException(404, f"decision {decision_id!r} has {len(d['ads'])} ads; no ad {ad_index}")
        first = svc.record(d, ad_index, event, code)
        return {"decision_id": decision_id, "ad_index": ad_index, "event": event, "first": first}

    # ---------------------------------------------------------------- tokens

    @app.post("/v1/tokens", response_model=S.TokenOut, tags=["auth"], dependencies=[Depends(management)],
              summary="Mint a player token (for asset-list URLs written into playlists)",
              responses=_errors(401, 422))
    async def mint(body: S.TokenIn) -> Any:
        claims_ = {"sid": body.session_id} if body.session_id else {"scope": "player"}
        tok = tokens.sign(claims_, settings.token_key, body.ttl)
        return {"token": tok, "expires": tokens.verify(tok, settings.token_key)["exp"]}

    # ---------------------------------------------------------------- catalog (management); after the hot
    # player-facing routes, which are matched first

    def crud(kind: Kind, model_in: type[S._Strict], model_out: type[S._Strict], check: Any = None) -> None:
        path = f"/v1/{kind}"
        singular = kind[:-1]

        async def create(body: Any) -> Any:
            doc = body.model_dump(mode="json")
            doc["id"] = doc.get("id") or f"{singular[:2]}-{secrets.token_hex(6)}"
            if check:
                check(doc)
            if not store.put(kind, doc["id"], doc, create=True):
                raise HTTPException(409, f"{singular} {doc['id']!r} already exists; delete it first or use another id")
            return JSONResponse(doc, status_code=201)

        create.__annotations__["body"] = model_in
        app.post(path, status_code=201, response_model=model_out, tags=[kind], summary=f"Register a {singular}",
                 dependencies=[Depends(management)], responses=_errors(401, 409, 422),
                 operation_id=f"create_{singular}")(create)

        async def list_all() -> Any:
            return store.items(kind)

        app.get(path, response_model=list[model_out], tags=[kind], summary=f"List {kind}",  # type: ignore[valid-type]
                dependencies=[Depends(management)], responses=_errors(401), operation_id=f"list_{kind}")(list_all)

        async def get_one(id: Annotated[str, PathParam(max_length=64)]) -> Any:
            doc = store.get(kind, id)
            if doc is None:
                raise HTTPException(404, f"no {singular} with id {id!r}")
            return doc

        app.get(path + "/{id}", response_model=model_out, tags=[kind], summary=f"Get a {singular}",
                dependencies=[Depends(management)], responses=_errors(401, 404, 422),
                operation_id=f"get_{singular}")(get_one)

        async def replace_one(id: Annotated[str, PathParam(max_length=64)], body: Any) -> Any:
            doc = body.model_dump(mode="json")
            if doc.get("id") not in (None, id):
                raise HTTPException(422, f"id in the body ({doc['id']!r}) differs from the URL's ({id!r})")
            doc["id"] = id
            if store.get(kind, id) is None:
                raise HTTPException(404, f"no {singular} with id {id!r} (create it with POST {path})")
            if check:
                check(doc)
            store.put(kind, id, doc, create=False)
            return doc

        replace_one.__annotations__["body"] = model_in
        app.put(path + "/{id}", response_model=model_out, tags=[kind], summary=f"Replace a {singular}",
                dependencies=[Depends(management)], responses=_errors(401, 404, 422),
                operation_id=f"replace_{singular}")(replace_one)

        async def delete_one(id: Annotated[str, PathParam(max_length=64)]) -> Response:
            if kind == "creatives":
                users = [c["id"] for c in store.items("campaigns") if id in c.get("creative_ids", [])]
                if users:
                    raise HTTPException(409, f"creative {id!r} is used by campaigns {', '.join(users)}; delete them first")
            if not store.delete(kind, id):
                raise HTTPException(404, f"no {singular} with id {id!r}")
            return Response(status_code=204)

        app.delete(path + "/{id}", status_code=204, tags=[kind], summary=f"Delete a {singular}",
                   dependencies=[Depends(management)], responses=_errors(401, 404, 409, 422),
                   operation_id=f"delete_{singular}")(delete_one)

    def check_campaign(doc: dict[str, Any]) -> None:
        missing = [c for c in doc["creative_ids"] if store.get("creatives", c) is None]
        if missing:
            raise HTTPException(422, f"unknown creative ids: {', '.join(missing)}; register the creatives first")

    crud("creatives", S.CreativeIn, S.Creative)
    crud("campaigns", S.CampaignIn, S.Campaign, check_campaign)
    crud("sources", S.SourceIn, S.Source)

    @app.post("/v1/creatives/upload", status_code=201, response_model=S.Creative, tags=["creatives"],
              summary="Register a creative by uploading its media file", dependencies=[Depends(management)],
              responses=_errors(401, 409, 413, 415, 422))
    async def upload_creative(
        request: Request,
        file: Annotated[UploadFile, File(description="MP4, MOV, TS or M3U8")],
        duration: Annotated[float, Form(gt=0, le=600)],
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
                         media_url=f"{base_url(request)}/v1/media/{cid}/media{suffix}").model_dump(mode="json")
        if not store.put("creatives", cid, doc, create=True):
            raise HTTPException(409, f"creative {cid!r} already exists")
        return JSONResponse(doc, status_code=201)

    @app.get("/v1/media/{creative_id}/{name}", tags=["creatives"], summary="Uploaded ad media (public)",
             responses={200: {"content": {"video/mp4": {}}}, **_errors(404)})
    async def media(creative_id: Annotated[str, PathParam(max_length=64)],
                    name: Annotated[str, PathParam(max_length=64)]) -> Any:
        suffix = Path(name).suffix.lower()
        if not ID_RE.match(creative_id) or name != f"media{suffix}" or suffix not in MEDIA_SUFFIXES:
            raise HTTPException(404, "no such media file")
        path = media_dir / creative_id / name
        if not path.is_file():
            raise HTTPException(404, "no such media file")
        return FileResponse(path, media_type=MEDIA_SUFFIXES[suffix])

    # ---------------------------------------------------------------- SSAI session router (optional)

    if settings.origin:
        try:
            from sidecast.ads.session import make_router  # type: ignore[attr-defined]
        except ImportError as exc:
            log.warning("--origin given but the SSAI session router is unavailable (%s); serving decisions only", exc)
        else:
            # player-facing playlists, not part of the versioned API contract (and kept out of its schema)
            def beacon_sink(session_id: str, ref: str, creative_id: str, event: BeaconEvent) -> None:
                svc.beacon_for_session(session_id, ref, creative_id, event)

            app.include_router(make_router(settings.origin, svc.decide_for_break, beacon_sink),
                               include_in_schema=False)

    if os.environ.get("SIDECAST_ADS_DEBUG_ROUTES"):
        log.info("routes: %s", [getattr(r, "path", "") for r in app.routes])
    return app
