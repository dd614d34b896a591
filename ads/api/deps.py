"""FastAPI dependencies the routers share: the running service and its settings and store (from
`app.state`), the management key check, player-token claims and the base URL of links we hand out.
(Who may send a body at all, and how large, is decided earlier, by the body guard: ads/api/body.py.)

Kept as dependencies rather than closures inside one big factory, so each router module stands alone and
a test or another app can mount it with its own service.
"""

from __future__ import annotations

import hmac
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import APIKeyHeader

from sidecast.ads.api import tokens
from sidecast.ads.api.errors import strict_query
from sidecast.ads.api.service import AdService, Settings
from sidecast.ads.store import Store

__all__ = ["resource_router", "API_KEY", "ID_RE", "Service", "SettingsDep", "StoreDep", "BaseUrl", "management",
           "has_key", "claims", "base_url"]

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="management API key")
ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def resource_router(*, dependencies: list[Any] | None = None, tags: list[str | Any] | None = None) -> APIRouter:
    """The APIRouter of one resource. Every route refuses unknown query parameters (errors.strict_query);
    the dependency sits on each router, not on the app, because app.py takes the routes themselves."""
    return APIRouter(dependencies=[Depends(strict_query), *(dependencies or [])], tags=tags)


# Each dependency reads app.state in one step (no dependency on another dependency): FastAPI resolves
# every level per request, and on the decision path each level costs CPU.

async def _service(request: Request) -> AdService:
    return request.app.state.service  # type: ignore[no-any-return]


Service = Annotated[AdService, Depends(_service)]


async def _settings(request: Request) -> Settings:
    return request.app.state.service.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(_settings)]


async def _store(request: Request) -> Store:
    return request.app.state.service.store  # type: ignore[no-any-return]


StoreDep = Annotated[Store, Depends(_store)]


def has_key(settings: Settings, key: str | None) -> bool:
    """Whether `key` is one of the configured management keys (constant-time comparison)."""
    return key is not None and any(hmac.compare_digest(key.encode(), k.encode()) for k in settings.api_keys)


async def management(key: Annotated[str | None, Depends(API_KEY)], settings: SettingsDep) -> None:
    """Routes that change or reveal the catalog and decisions want a management key (X-API-Key)."""
    if not settings.api_keys:
        raise HTTPException(401, "this server has no API keys configured: start it with --api-key KEY")
    if key is None:
        raise HTTPException(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    if not has_key(settings, key):
        raise HTTPException(401, "wrong API key", headers={"WWW-Authenticate": "ApiKey"})


def claims(settings: Settings, token: str | None) -> dict[str, Any]:
    """The claims of a player token, or 401 saying how to get a valid one."""
    if not token:
        raise HTTPException(401, "missing token query parameter (get one from a decision or POST /v1/tokens)")
    try:
        return tokens.verify(token, settings.token_key)
    except tokens.TokenError as exc:
        raise HTTPException(401, f"token refused: {exc}") from exc


async def base_url(request: Request) -> str:
    public = request.app.state.service.settings.public_url
    if public:
        return public.rstrip("/")  # type: ignore[no-any-return]
    host = request.headers.get("host") or "{}:{}".format(*request.scope.get("server") or ("localhost", 80))
    return f"{request.scope.get('scheme', 'http')}://{host}{request.scope.get('root_path', '')}"


BaseUrl = Annotated[str, Depends(base_url)]
"""Base of the URLs we hand out (beacons, asset lists, media): --public-url, else the request's own."""
