"""How the ads API says no: every refusal is JSON `{"detail": "<one line that says what to change>"}`,
the OpenAPI document lists the refusals each route can give, and unknown query parameters are refused
rather than silently ignored."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from sidecast.ads.api import schemas as S
from sidecast.ads.api.body import BodyTooLarge

__all__ = ["responses", "strict_query", "install"]

log = logging.getLogger("sidecast.ads")

# a store that is down (Redis unreachable, SQLite disk full) is the service's problem, not the caller's: 503
StoreUnavailable: tuple[type[Exception], ...] = (sqlite3.Error, redis.RedisError, OSError)

ERR = {400: {"model": S.Problem, "description": "malformed request (e.g. a body that is not UTF-8 JSON)"},
       401: {"model": S.Problem, "description": "missing or wrong API key / token"},
       403: {"model": S.Problem, "description": "token not valid for this resource"},
       404: {"model": S.Problem, "description": "not found"},
       409: {"model": S.Problem, "description": "conflict"},
       413: {"model": S.Problem, "description": "too large"},
       416: {"model": S.Problem, "description": "range not satisfiable"},
       415: {"model": S.Problem, "description": "unsupported media type"},
       422: {"model": S.Problem, "description": "invalid request"}}


def responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: 400 and 422 (any route can get them) plus `codes`."""
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


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 204:
        return Response(status_code=204)
    cause: BaseException | None = exc.__cause__
    while cause is not None:
        if isinstance(cause, BodyTooLarge):   # the body guard cut a body while FastAPI was reading it
            return JSONResponse({"detail": str(cause)}, status_code=413, headers={"Connection": "close"})
        cause = cause.__cause__ or cause.__context__
    detail = str(exc.detail)
    if exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = "cannot parse the request body: send UTF-8 JSON (or multipart form data for uploads)"
    return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)


async def _store_down(request: Request, exc: Exception) -> Response:
    log.error("store error on %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": f"the ads store is unavailable, try again: {exc}"}, status_code=503,
                        headers={"Retry-After": "1"})


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _validation_message(exc)}, status_code=422)


def install(app: FastAPI) -> None:
    """Register the error handlers on an app."""
    app.add_exception_handler(StarletteHTTPException, _http_error)
    for exc_type in StoreUnavailable:
        app.add_exception_handler(exc_type, _store_down)
    app.add_exception_handler(RequestValidationError, _invalid)
