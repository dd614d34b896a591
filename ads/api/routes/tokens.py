"""POST /v1/tokens: a server mints a player token for the asset-list URLs it writes into playlists
(signing and checking live in ads/api/tokens.py, which the core may import without FastAPI)."""

from __future__ import annotations

from typing import Any

from fastapi import Depends

from sidecast.ads.api import schemas as S
from sidecast.ads.api import tokens
from sidecast.ads.api.deps import SettingsDep, management, resource_router
from sidecast.ads.api.errors import responses

router = resource_router()


@router.post("/v1/tokens", response_model=S.TokenOut, tags=["auth"], dependencies=[Depends(management)],
             summary="Mint a player token (for asset-list URLs written into playlists)",
             responses=responses(401, 413, 422))
async def mint(body: S.TokenIn, settings: SettingsDep) -> Any:
    claims_ = {"sid": body.session_id} if body.session_id else {"scope": "player"}
    tok = tokens.sign(claims_, settings.token_key, body.ttl)
    return {"token": tok, "expires": tokens.verify(tok, settings.token_key)["exp"]}
