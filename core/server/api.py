"""The control API (FastAPI, OpenAPI at ``/openapi.json``, everything under ``/v1``) and the server's own pages.

It listens on its own port, bound to 127.0.0.1 unless configured, and every ``/v1`` call wants an API key
(``Authorization: Bearer KEY`` or ``X-API-Key: KEY``) whose scopes allow it (keys.SCOPES). Probes
(``/healthz``, ``/readyz``, ``/healthz/streams/{id}``) and ``/metrics`` are open, as probes and scrapers
expect; the port is private by default.

Bodies are checked before any route runs (``StrictBody``): JSON only (415 otherwise, so a form post from a web
page never executes), at most 64 KiB whether sent with Content-Length or chunked (413), and only JSON that
means one thing (NaN, Infinity, integers past 2**53 and floats that overflow are refused with 422, by the
core's own parser). Models are strict: wrong types, unknown fields and out-of-range numbers are 422 with a
one-line ``detail`` that says what to change. No CORS header is ever sent here.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..serve.control import MAX_API_BODY, BadCommand, is_json_type, parse_command
from ..serve.files import content_type_for
from ..serve.media import STATIC_DIR
from . import keys as K
from . import schema as S
from .fleet import PROBE_PATH
from .registry import ApiKeyRow, Conflict, NotFound, RegistryUnavailable, StreamRow
from .supervisor import StreamNotRunning

log = logging.getLogger("sidecast.server.api")

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboard"
DASHBOARD_FILES = frozenset({"index.html", "dashboard.js"})
PAGE_HEADERS = {
    "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # its own scripts only; media and playlists come from the player port (another origin)
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "connect-src *; media-src * blob:; img-src * data:; frame-ancestors 'none'",
}


def _page(path: Path) -> Response:
    """A dashboard file: small, read whole; no CORS (nothing here is for other origins)."""
    return Response(path.read_bytes(), media_type=content_type_for(path.name), headers=PAGE_HEADERS)
NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


# ------------------------------------------------------------------------------ body rules

class StrictBody:
    """ASGI middleware: the body rules of the module docstring, enforced before routing."""

    def __init__(self, app: ASGIApp, max_body: int = MAX_API_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        length = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _send_problem(send, 413, f"body over {self.max_body} bytes", close=True)
            return
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                await _send_problem(send, 413, f"body over {self.max_body} bytes", close=True)
                return
        if body.strip() or chunked:
            if not is_json_type(headers.get("content-type")):
                await _send_problem(send, 415, "the control API takes JSON: send Content-Type: application/json")
                return
            try:
                parse_command(body) if body.strip().startswith(b"{") else _parse_any(body)
            except BadCommand as exc:
                await _send_problem(send, exc.status, str(exc))
                return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def _parse_any(body: bytes) -> None:
    """A body that is not an object: once it is valid JSON, the route's model says what it wants instead."""
    import json

    try:
        json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise BadCommand(400, f"body is not valid JSON: {exc}") from None


async def _send_problem(send: Send, status: int, detail: str, *, close: bool = False) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store")]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ------------------------------------------------------------------------------ errors

ERR = {c: {"model": S.Problem, "description": d} for c, d in {
    400: "the body is not valid JSON", 401: "missing or unknown API key", 403: "the key's scopes do not allow this", 404: "not found",
    409: "conflict with the stream's state", 413: "body too large", 415: "not JSON",
    422: "invalid request (the detail says what to change)", 504: "the stream's worker did not answer"}.items()}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {c: ERR[c] for c in sorted({400, 401, 403, 413, 415, 422, *codes})}


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:4]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid request: " + "; ".join(parts)


def install_errors(app: FastAPI) -> None:
    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers={**NO_STORE, **(exc.headers or {})})

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422, headers=NO_STORE)

    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=404, headers=NO_STORE)

    async def conflict(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=409, headers=NO_STORE)

    async def registry_down(request: Request, exc: Exception) -> Response:
        log.error("registry error on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"the registry is unavailable (is the disk full?): {exc}"}, status_code=503,
                            headers={**NO_STORE, "Retry-After": "5"})

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(NotFound, not_found)
    app.add_exception_handler(Conflict, conflict)
    app.add_exception_handler(StreamNotRunning, conflict)
    app.add_exception_handler(sqlite3.Error, registry_down)

    async def registry_unreachable(request: Request, exc: Exception) -> Response:
        log.error("registry unreachable on %s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"{exc}: nothing can be changed now; running streams keep publishing; "
                                       "retry in a few seconds"}, status_code=503,
                            headers={**NO_STORE, "Retry-After": "5"})

    app.add_exception_handler(RegistryUnavailable, registry_unreachable)


# ------------------------------------------------------------------------------ auth

def require(scope: str) -> Any:
    """A dependency: an API key that allows ``scope``."""

    async def check(request: Request, authorization: Annotated[str | None, Header()] = None,
              x_api_key: Annotated[str | None, Header()] = None) -> ApiKeyRow:
        token = x_api_key
        if token is None and authorization and authorization[:7].lower() == "bearer ":
            token = authorization[7:].strip()
        if not token:
            raise HTTPException(401, "missing API key: send Authorization: Bearer KEY",
                                headers={"WWW-Authenticate": "Bearer"})
        key: ApiKeyRow | None = request.app.state.server.registry.authenticate(token)
        if key is None:
            raise HTTPException(401, "unknown API key", headers={"WWW-Authenticate": "Bearer"})
        if not key.allows(scope):
            raise HTTPException(403, f"this API key lacks the {scope!r} scope (it has: {', '.join(key.scopes)})")
        return key

    return Depends(check)


CanRead = Annotated[ApiKeyRow, require("streams:read")]
CanWrite = Annotated[ApiKeyRow, require("streams:write")]
CanKeys = Annotated[ApiKeyRow, require("streams:keys")]
CanControl = Annotated[ApiKeyRow, require("streams:control")]
CanWebhooks = Annotated[ApiKeyRow, require("webhooks")]
IsAdmin = Annotated[ApiKeyRow, require("admin")]


async def _server(request: Request) -> Any:
    return request.app.state.server


Server = Annotated[Any, Depends(_server)]


# ------------------------------------------------------------------------------ helpers

def stream_view(server: Any, row: StreamRow) -> dict[str, Any]:
    """A stream as the API shows it (a plain dict: the route's response model validates it once)."""
    cfg = server.config
    base = cfg.media_base()
    urls = {"hls": f"{base}{row.id}/master.m3u8", "vertical": f"{base}{row.id}/vertical.m3u8",
            "snapshot": f"{base}{row.id}/snapshot.jpg"}
    if row.settings.get("playback_protection"):
        urls = {k: v.replace(f"/{row.id}/", f"/{row.id}/t/TOKEN/") for k, v in urls.items()}
    if row.ingest == "push":
        host = cfg.publish_base()
        urls["rtmp"] = f"rtmp://{host}:{cfg.rtmp_port}/live/STREAM_KEY"
        urls["srt"] = f"srt://{host}:{cfg.srt_port}?streamid=#!::r=STREAM_KEY,m=publish&passphrase=SRT_PASSPHRASE"
    return {"id": row.id, "name": row.name, "ingest": row.ingest, "source": row.source, "enabled": row.enabled,
            "options": row.options, "settings": {**SETTINGS_DEFAULTS, **row.settings},
            "key": {"prefix": row.key_prefix, "created_at": row.key_created_at}, "revision": row.revision,
            "created_at": row.created_at, "updated_at": row.updated_at, "urls": urls}


SETTINGS_DEFAULTS = S.StreamSettings.model_validate({}).model_dump()


def key_issued(server: Any, stream_id: str, key: str) -> S.KeyIssued:
    cfg = server.config
    passphrase = K.srt_passphrase(server.registry.secret, key)
    host = cfg.publish_base()
    return S.KeyIssued(stream_id=stream_id, key=key, srt_passphrase=passphrase, publish={
        "rtmp": f"rtmp://{host}:{cfg.rtmp_port}/live/{key}",
        "srt": f"srt://{host}:{cfg.srt_port}?streamid=#!::r={key},m=publish&passphrase={passphrase}"})


def _new_id(server: Any) -> str:
    import secrets

    return "s-" + secrets.token_hex(4)


# ------------------------------------------------------------------------------ routes

def v1_router() -> APIRouter:
    r = APIRouter(prefix="/v1")

    @r.get("/server", responses=responses(), tags=["server"], summary="Server information")
    async def server_info(server: Server, _: CanRead) -> dict[str, Any]:
        sup = server.supervisor
        return {"version": __version__, "storage": server.storage.describe(), "streams": len(sup.runtimes),
                "disk_free_bytes": sup.disk_free, "disk_full": sup.disk_full, "disk_error": sup.disk_error,
                "sidecars": sup.sidecars.status(), "media_base": server.config.media_base(),
                "uptime": round(time.time() - sup.started_at, 1), "warm_pool": sup.warm_pool(),
                "fleet": server.fleet.describe() if getattr(server, "fleet", None) is not None else None}

    # ---------------------------------------------------------------- streams

    @r.get("/streams", response_model=S.StreamList, responses=responses(), tags=["streams"], summary="List streams")
    async def list_streams(server: Server, _: CanRead,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                           offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0) -> dict[str, Any]:
        rows = server.registry.list_streams(limit, offset)
        return {"streams": [stream_view(server, row) for row in rows], "total": server.registry.count_streams()}

    @r.post("/streams", status_code=201, responses=responses(409), tags=["streams"],
            summary="Create a stream (push streams: the answer holds the stream key, shown once)")
    def create_stream(body: S.StreamCreate, server: Server, _: CanWrite) -> dict[str, Any]:
        stream_id = body.id or _new_id(server)
        options = body.options.model_dump(exclude_none=True)
        row = server.registry.create_stream(stream_id, ingest=body.ingest, name=body.name, source=body.source,
                                            enabled=body.enabled, options=options,
                                            settings=body.settings.model_dump())
        out: dict[str, Any] = {}
        if row.ingest == "push":
            key = server.registry.rotate_stream_key(row.id)
            row = server.registry.get_stream(row.id)
            out["key"] = key_issued(server, row.id, key).model_dump()
        server.supervisor.add(row)
        out["stream"] = stream_view(server, row)
        return out

    @r.get("/streams/{stream_id}", response_model=S.Stream, responses=responses(404), tags=["streams"],
           summary="Get a stream")
    async def get_stream(stream_id: str, server: Server, _: CanRead) -> dict[str, Any]:
        return stream_view(server, server.registry.get_stream(stream_id))

    @r.patch("/streams/{stream_id}", response_model=S.Stream, responses=responses(404), tags=["streams"],
             summary="Change a stream (a change of source, options or settings restarts it as a new event)")
    def update_stream(stream_id: str, body: S.StreamUpdate, server: Server,
                      _: CanWrite) -> dict[str, Any]:
        row = server.registry.get_stream(stream_id)
        changes: dict[str, Any] = {}
        if body.name is not None:
            changes["name"] = body.name
        if body.enabled is not None:
            changes["enabled"] = body.enabled
        if "source" in body.model_fields_set:
            try:
                S.check_source(row.ingest, body.source)
            except ValueError as exc:
                raise HTTPException(422, f"invalid request: source: {exc}") from None
            changes["source"] = body.source
        if body.options is not None:
            changes["options"] = body.options.model_dump(exclude_none=True)
        if body.settings is not None:
            changes["settings"] = body.settings.model_dump()
        restart = any(k in changes and changes[k] != getattr(row, k) for k in ("source", "options", "settings"))
        new = server.registry.update_stream(stream_id, **changes)
        server.supervisor.update(new, restart)
        return stream_view(server, new)

    @r.delete("/streams/{stream_id}", status_code=204, responses=responses(404), tags=["streams"],
              summary="Delete a stream: it stops, its key stops working, its media and recordings are deleted")
    def delete_stream(stream_id: str, server: Server, _: CanWrite) -> Response:
        server.registry.delete_stream(stream_id)
        try:
            server.supervisor.remove(stream_id)
        except NotFound:
            pass
        return Response(status_code=204)

    @r.post("/streams/{stream_id}/key", response_model=S.KeyIssued, responses=responses(404, 409), tags=["keys"],
            summary="Generate a new stream key (the old one stops working now; shown once)")
    def rotate_key(stream_id: str, server: Server, _: CanKeys) -> S.KeyIssued:
        row = server.registry.get_stream(stream_id)
        if row.ingest != "push":
            raise HTTPException(409, "pull streams have no stream key")
        return key_issued(server, stream_id, server.registry.rotate_stream_key(stream_id))

    @r.post("/streams/{stream_id}/start", response_model=S.StreamStatus, responses=responses(404), tags=["control"],
            summary="Enable the stream (pull streams connect; push streams wait for a publisher)")
    def start(stream_id: str, server: Server, _: CanControl) -> dict[str, Any]:
        server.registry.update_stream(stream_id, enabled=True)
        server.supervisor.set_enabled(stream_id, True)
        return dict(server.supervisor.status(stream_id))

    @r.post("/streams/{stream_id}/stop", response_model=S.StreamStatus, responses=responses(404), tags=["control"],
            summary="Disable the stream: the event ends (ENDLIST, recording) and publishers are refused")
    def stop(stream_id: str, server: Server, _: CanControl) -> dict[str, Any]:
        server.registry.update_stream(stream_id, enabled=False)
        server.supervisor.set_enabled(stream_id, False)
        return dict(server.supervisor.status(stream_id))

    @r.get("/streams/{stream_id}/status", response_model=S.StreamStatus, responses=responses(404), tags=["streams"],
           summary="The stream's state, input, speed, sidecars, storage and last error")
    async def status(stream_id: str, server: Server, _: CanRead) -> dict[str, Any]:
        return dict(server.supervisor.status(stream_id))

    @r.get("/streams/{stream_id}/events", response_model=list[S.EventInfo], responses=responses(404),
           tags=["streams"], summary="The stream's events (broadcasts) and recordings, newest first")
    async def events(stream_id: str, server: Server, _: CanRead,
               limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[S.EventInfo]:
        server.registry.get_stream(stream_id)
        base = server.config.media_base()
        out = []
        for ev in server.registry.list_events(stream_id, limit):
            urls = {}
            if ev.recording_ready_at is not None and ev.purged_at is None:
                urls["recording"] = f"{base}{stream_id}/e/{ev.id}/master.m3u8"
            out.append(S.EventInfo(id=ev.id, started_at=ev.started_at, live_at=ev.live_at, ended_at=ev.ended_at,
                                   segments=ev.segments, recording=ev.recording,
                                   recording_ready_at=ev.recording_ready_at, purge_after=ev.purge_after,
                                   purged_at=ev.purged_at, urls=urls))
        return out

    def _control(server: Any, stream_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        server.registry.get_stream(stream_id)
        try:
            result: dict[str, Any] = server.supervisor.command(stream_id, doc)
            return result
        except FutureTimeout:
            raise HTTPException(504, "the stream's worker did not answer in time") from None
        except StreamNotRunning:
            raise
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None

    @r.post("/streams/{stream_id}/breaks", response_model=S.BreakScheduled, responses=responses(404, 409, 504),
            tags=["control"], summary="Force an ad break (at a media time, or N seconds after the live edge)")
    def breaks(stream_id: str, body: S.BreakRequest, server: Server,
               _: CanControl) -> dict[str, Any]:
        return _control(server, stream_id, {"cmd": "break", "at": body.at, "in": body.in_,
                                            "duration": body.duration})

    @r.post("/streams/{stream_id}/vertical/keep-centered", responses=responses(404, 409, 504), tags=["control"],
            summary="Hold the vertical crop centred (on) or follow the crop path again (off)")
    def keep_centered(stream_id: str, body: S.KeepCentered, server: Server,
                      _: CanControl) -> dict[str, Any]:
        return _control(server, stream_id, {"cmd": "keep_centered", "on": body.on})

    @r.post("/streams/{stream_id}/playback-token", response_model=S.TokenIssued, responses=responses(404),
            tags=["control"], summary="A signed, expiring playback token and the URLs that carry it")
    async def playback_token(stream_id: str, body: S.TokenRequest, server: Server,
                       _: CanControl) -> S.TokenIssued:
        server.registry.get_stream(stream_id)
        tok = K.sign_playback(server.registry.secret, stream_id, body.ttl)
        base = f"{server.config.media_base()}{stream_id}/t/{tok.token}/"
        return S.TokenIssued(token=tok.token, expires_at=tok.expires_at, urls={
            "hls": base + "master.m3u8", "vertical": base + "vertical.m3u8", "snapshot": base + "snapshot.jpg"})

    # ---------------------------------------------------------------- API keys

    @r.get("/api-keys", response_model=list[S.ApiKeyInfo], responses=responses(), tags=["api keys"],
           summary="List API keys (never the keys themselves)")
    async def list_keys(server: Server, _: IsAdmin) -> list[S.ApiKeyInfo]:
        return [S.ApiKeyInfo(**k.__dict__) for k in server.registry.list_api_keys()]

    @r.post("/api-keys", status_code=201, response_model=S.ApiKeyIssued, responses=responses(), tags=["api keys"],
            summary="Create an API key with scopes (shown once)")
    def create_key(body: S.ApiKeyCreate, server: Server, _: IsAdmin) -> S.ApiKeyIssued:
        token, row = server.registry.create_api_key(body.name, list(body.scopes))
        return S.ApiKeyIssued(key=token, **row.__dict__)

    @r.delete("/api-keys/{key_id}", status_code=204, responses=responses(404, 409), tags=["api keys"],
              summary="Revoke an API key")
    def delete_key(key_id: str, server: Server, me: IsAdmin) -> Response:
        if key_id == me.id:
            raise HTTPException(409, "an API key cannot revoke itself (use another admin key)")
        server.registry.delete_api_key(key_id)
        return Response(status_code=204)

    # ---------------------------------------------------------------- webhooks

    @r.get("/webhooks", response_model=list[S.Webhook], responses=responses(), tags=["webhooks"],
           summary="List webhook endpoints")
    async def list_hooks(server: Server, _: CanWebhooks) -> list[S.Webhook]:
        return [S.Webhook(id=h.id, url=h.url, events=h.events, enabled=h.enabled, created_at=h.created_at)
                for h in server.registry.list_webhooks()]

    @r.post("/webhooks", status_code=201, response_model=S.WebhookIssued, responses=responses(), tags=["webhooks"],
            summary="Add a webhook endpoint (its signing secret is shown once)")
    def create_hook(body: S.WebhookCreate, server: Server, _: CanWebhooks) -> S.WebhookIssued:
        h = server.registry.create_webhook(body.url, list(body.events))
        return S.WebhookIssued(id=h.id, url=h.url, events=h.events, enabled=h.enabled, created_at=h.created_at,
                               secret=h.secret)

    @r.delete("/webhooks/{hook_id}", status_code=204, responses=responses(404), tags=["webhooks"],
              summary="Remove a webhook endpoint")
    def delete_hook(hook_id: str, server: Server, _: CanWebhooks) -> Response:
        server.registry.delete_webhook(hook_id)
        return Response(status_code=204)

    @r.get("/webhooks/deliveries", response_model=list[S.Delivery], responses=responses(), tags=["webhooks"],
           summary="The delivery log, newest first")
    async def deliveries(server: Server, _: CanWebhooks,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[S.Delivery]:
        return [S.Delivery(**{k: v for k, v in d.__dict__.items() if k != "payload"})
                for d in server.registry.list_deliveries(limit)]

    return r


def probes_router() -> APIRouter:
    r = APIRouter()

    @r.get("/healthz", include_in_schema=False)
    async def healthz(server: Server) -> Response:
        """Liveness: the supervisor's loop turns (a wedged server is restarted by its orchestrator)."""
        age = time.monotonic() - server.supervisor.heartbeat
        ok = age < 15
        return JSONResponse({"status": "ok" if ok else "stuck", "loop_age_s": round(age, 2)},
                            status_code=200 if ok else 503, headers=NO_STORE)

    @r.get("/readyz", include_in_schema=False)
    def readyz(server: Server) -> Response:
        """Readiness: the streams are loaded, the registry answers, the storage takes writes, there is space.
        In a fleet, a registry outage that every peer confirms leaves the replica ready ("degraded"): it still serves players and
        keeps its streams, and failing every replica at once would leave the Services with no endpoint. A
        replica that alone loses the registry is not ready (its peers take the traffic)."""
        problems, degraded = [], []
        if not server.supervisor.booted.is_set():
            problems.append("starting: the registry's streams are not loaded yet")
        try:
            server.registry.ping()
        except Exception as exc:
            fleet = getattr(server, "fleet", None)
            if fleet is not None and fleet.outage_confirmed():
                degraded.append(f"registry: {exc} (down for every replica: streams keep publishing, nothing can "
                                "be changed)")
            else:
                problems.append(f"registry: {exc}")
        try:
            server.storage.check()
        except OSError as exc:
            problems.append(f"storage: {exc}")
        if server.supervisor.disk_full:
            problems.append(server.supervisor.disk_error or "storage is full")
        status = "not ready" if problems else "degraded" if degraded else "ready"
        return JSONResponse({"status": status, "problems": problems + degraded},
                            status_code=503 if problems else 200, headers=NO_STORE)

    @r.get("/healthz/streams/{stream_id}", include_in_schema=False)
    async def stream_health(stream_id: str, server: Server) -> Response:
        """200 only while the stream is on the air (live); 503 with its state otherwise; 404 unknown."""
        st = server.supervisor.status(stream_id)
        live = st["state"] == "live"
        return JSONResponse({"stream": stream_id, "state": st["state"], "last_error": st["last_error"]},
                            status_code=200 if live else 503, headers=NO_STORE)

    @r.post(PROBE_PATH, include_in_schema=False)
    async def fleet_probe(request: Request, server: Server) -> Response:
        """A peer replica that cannot reach the registry asks whether we reach it (fleet.py, "Registry
        outages"). Signed with the shared server secret both ways: no API key, since API keys live in the
        registry, which is what is down."""
        fleet = getattr(server, "fleet", None)
        if fleet is None:
            raise HTTPException(404, "this server is not part of a fleet")
        try:
            doc = await request.json()
            asker, to, nonce, sig = (str(doc[k]) for k in ("from", "to", "nonce", "sig"))
        except (ValueError, KeyError, TypeError):
            raise HTTPException(400, "a probe is a JSON object with from, to, nonce and sig") from None
        if to != fleet.replica:
            raise HTTPException(409, f"this is replica {fleet.replica}, not {to}")
        if not K.fleet_signature_ok(server.registry.secret, sig, "probe", asker, to, nonce):
            raise HTTPException(403, "bad probe signature (not a replica of this fleet)")
        return JSONResponse(fleet.answer_probe(asker, nonce), headers=NO_STORE)

    @r.get("/metrics", include_in_schema=False)
    def metrics(server: Server) -> Response:
        # A plain def: FastAPI runs it in its thread pool, so a scrape that waits on the registry's lock (a
        # retention pass, a slow disk) does not stall the event loop every other API request runs on.
        from .metrics import render

        data, content_type = render(server)
        return Response(data, media_type=content_type, headers={"Cache-Control": "no-store"})

    @r.get("/", include_in_schema=False)
    async def dashboard() -> Response:
        return _page(DASHBOARD_DIR / "index.html")

    @r.get("/dashboard/{name}", include_in_schema=False)
    async def dashboard_file(name: str) -> Response:
        if name == "hls.min.js":
            return _page(STATIC_DIR / name)
        if name not in DASHBOARD_FILES:
            raise HTTPException(404, f"no dashboard file {name!r}")
        return _page(DASHBOARD_DIR / name)

    return r


def create_app(server: Any) -> FastAPI:
    """The control app for a running server (``server``: registry, storage, supervisor, config)."""
    app = FastAPI(title="sidecast server control API", version="1.0.0",
                  description="Streams, keys, live controls, webhooks. See docs/server.md.",
                  routes=[*probes_router().routes, *v1_router().routes])
    app.state.server = server
    install_errors(app)
    app.add_middleware(StrictBody)
    return app


__all__ = ["StrictBody", "create_app", "require", "stream_view"]
