"""Compose the routers into one ASGI application: health, control, player, media (in that order: the
media router catches every other path).

`sidecast run` serves all of them on one port. A multi-stream server builds its apps from the same
routers, for example media and player on the viewers' port and control (with API keys) on another.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from pathlib import Path

from fastapi import APIRouter, FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from .control import ApiHandler, _error, control_router, json_response
from .media import media_router, player_router, text_response


def health_router() -> APIRouter:
    """`GET /healthz` → `{"status": "ok"}` for Kubernetes probes and load balancers."""

    async def healthz(request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    router = APIRouter()
    router.add_route("/healthz", healthz, methods=["GET", "HEAD"], include_in_schema=False)
    return router


async def _http_error(request: Request, exc: Exception) -> Response:
    # JSON {"error": ...} under /api/ (programs call it), one line of text elsewhere (people read it)
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if request.url.path.startswith("/api/"):
        response = _error(exc.status_code, str(exc.detail))
        response.headers.update(headers)
        return response
    return text_response(exc.status_code, str(exc.detail), headers)


def bare_app(*routers: APIRouter) -> FastAPI:
    """An app of these routers, in matching order, with sidecast's error style and no OpenAPI pages
    (nothing on a viewers' port but what it serves).

    It takes the routers' routes rather than `include_router`: FastAPI 0.16x keeps an included router as
    a nested object that every request walks, which cost a third of a playlist GET's CPU here.
    """
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None,
                  routes=[route for router in routers for route in router.routes])
    app.add_exception_handler(StarletteHTTPException, _http_error)
    return app


def create_app(directory: Path, api: MutableMapping[str, ApiHandler] | None = None, *,
               api_keys: Sequence[str] = (), routers: Sequence[APIRouter] = ()) -> FastAPI:
    """Everything `sidecast run --serve` offers on one port: /healthz, POST /api/<name>, the player, the files.

    `routers` (the WHEP preview) come before the player and the files, which catch every other path."""
    return bare_app(health_router(), control_router(api if api is not None else {}, api_keys=api_keys),
                    *routers, player_router(), media_router(directory))
