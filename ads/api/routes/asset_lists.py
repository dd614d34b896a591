"""GET /v1/asset-list: the HLS Interstitials asset list (X-ASSET-LIST) a player fetches for a break,
for an earlier decision or deciding now, with each ad's VAST companions and non-linear ads passed through. Players add their own query parameters (hls.js: `_HLS_*`), so
this route alone ignores unknown ones."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from fastapi import HTTPException, Query, Request
from fastapi.responses import JSONResponse

from sidecast.ads.api import schemas as S
from sidecast.ads.api.decide import DecisionRequest
from sidecast.ads.api.deps import ID_RE, Service, claims, has_key, resource_router
from sidecast.ads.api.errors import responses

router = resource_router()


@router.get("/v1/asset-list", response_model=S.AssetList, tags=["decisions"],
            summary="HLS Interstitials asset list (X-ASSET-LIST) for a break",
            description="Either `decision` (an earlier decision) or `duration` (decide now). The session is "
                        "`session`, else hls.js' `_HLS_primary_id`. Unknown query parameters are ignored.",
            responses=responses(401, 403, 404, 422))
async def asset_list(
    request: Request,
    svc: Service,
    token: Annotated[str | None, Query(max_length=2048)] = None,
    decision: Annotated[str | None, Query(max_length=64)] = None,
    session: Annotated[str | None, Query(pattern=ID_RE.pattern)] = None,
    hls_primary_id: Annotated[str | None, Query(alias="_HLS_primary_id", max_length=128)] = None,
    duration: Annotated[float | None, Query(ge=0, le=600, description="seconds the break lasts; 0: it "
                                            "inserts (pre/post-roll), filled up to --insert-pod-seconds")] = None,
    position: Literal["pre", "mid", "post"] = "mid",
    break_id: Annotated[str | None, Query(alias="break", pattern=ID_RE.pattern)] = None,
    kv: Annotated[list[str] | None, Query(max_length=32, description="key:value targeting pairs")] = None,
) -> Any:
    settings, store = svc.settings, svc.store
    trusted = has_key(settings, request.headers.get("x-api-key")) or not settings.require_player_tokens
    c: dict[str, Any] = {} if trusted and token is None else claims(settings, token)
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
    return JSONResponse({"ASSETS": [asset(a) for a in d["ads"]]})


def asset(ad: dict[str, Any]) -> dict[str, Any]:
    """One entry of ASSETS: URI and DURATION (Appendix D), plus the ad's companions and non-linear ads
    under keys of our own, which players that do not know them ignore."""
    out: dict[str, Any] = {"URI": ad["uri"], "DURATION": ad["duration"]}
    if ad.get("companions"):
        out["X-COM-SIDECAST-COMPANIONS"] = ad["companions"]
    if ad.get("nonlinears"):
        out["X-COM-SIDECAST-NONLINEAR"] = ad["nonlinears"]
    return out
