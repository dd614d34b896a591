"""Decisions: POST /v1/decisions chooses the ads that fill one break for one session (players with a
token, or servers with a key); GET /v1/decisions/{id} shows a recorded decision and its beacons."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, HTTPException, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from sidecast.ads.api import schemas as S
from sidecast.ads.api import tokens
from sidecast.ads.api.decide import DecisionRequest
from sidecast.ads.api.deps import (
    API_KEY,
    BaseUrl,
    Service,
    StoreDep,
    claims,
    has_key,
    management,
    resource_router,
)
from sidecast.ads.api.errors import responses
from sidecast.ads.api.service import BEACON_EVENTS, Settings

router = resource_router()


def decision_out(d: dict[str, Any], base: str, settings: Settings) -> dict[str, Any]:
    """A stored decision as the API shows it: with a player token in its beacon and asset-list URLs."""
    tok = tokens.sign({"d": d["decision_id"]}, settings.token_key, settings.token_ttl)
    did = d["decision_id"]
    return {
        "decision_id": did, "session_id": d["session_id"], "break_id": d["break_id"], "duration": d["duration"],
        "ads": [{"creative_id": a["creative_id"], "advertiser": a["advertiser"], "uri": a["uri"],
                 "duration": a["duration"], "click_through": a["click_through"],
                 "rendition_uris": a["rendition_uris"],
                 "beacons": {ev: f"{base}/v1/beacons/{did}/{i}/{ev}?token={tok}" for ev in BEACON_EVENTS},
                 "companions": a.get("companions", []), "nonlinears": a.get("nonlinears", [])}
                for i, a in enumerate(d["ads"])],
        "asset_list_url": f"{base}/v1/asset-list?" + urlencode({"decision": did, "token": tok}),
    }


def kv_map(kv: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) if isinstance(v, list) else (v,) for k, v in kv.items()}


@router.post("/v1/decisions", response_model=S.Decision, tags=["decisions"],
             summary="Choose the ads that fill one break for one session",
             responses=responses(401, 403, 422))
async def decisions(body: S.DecisionIn, svc: Service, base: BaseUrl,
                    key: Annotated[str | None, Depends(API_KEY)] = None,
                    token: Annotated[str | None, Query(max_length=2048)] = None) -> Any:
    settings = svc.settings
    # a token, when given, must be valid even for key holders: a bad token is never silently ignored
    if token is not None or not (has_key(settings, key) or not settings.require_player_tokens):
        c = claims(settings, token)
        if c.get("sid") != body.session_id and c.get("scope") != "player":
            raise HTTPException(403, "token is not valid for this session")
    req = DecisionRequest(session_id=body.session_id, duration=body.duration, position=body.position,
                          key_values=kv_map(body.key_values), break_id=body.break_id or "",
                          max_ads=body.max_ads)
    d = await svc.decide(req)
    return JSONResponse(decision_out(d, base, settings))


@router.get("/v1/decisions/{decision_id}", response_model=S.DecisionRecord, tags=["decisions"],
            summary="A recorded decision and the beacons received for it", dependencies=[Depends(management)],
            responses=responses(401, 404, 422))
async def get_decision(decision_id: Annotated[str, PathParam(max_length=64)], store: StoreDep) -> Any:
    d = store.get_decision(decision_id)
    if d is None:
        raise HTTPException(404, f"no decision {decision_id!r}")
    return {"decision": d, "beacons": store.beacons(decision_id)}

