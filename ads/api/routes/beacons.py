"""GET /v1/beacons/{decision}/{ad}/{event}: a player reports an ad event; the ad's third-party tracking
URLs are queued once per event however often the beacon is hit (ads/api/service.py forwards them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import HTTPException, Query
from fastapi import Path as PathParam

from sidecast.ads.api import schemas as S
from sidecast.ads.api.deps import Service, claims, resource_router
from sidecast.ads.api.errors import responses

router = resource_router()


@router.get("/v1/beacons/{decision_id}/{ad_index}/{event}", response_model=S.BeaconResult, tags=["beacons"],
            summary="Record an ad event; its tracking URLs are called once, however often this is hit",
            responses=responses(401, 403, 404, 422))
async def beacon(
    decision_id: Annotated[str, PathParam(max_length=64)],
    ad_index: Annotated[int, PathParam(ge=0, le=100)],
    event: S.EventName,
    svc: Service,
    token: Annotated[str | None, Query(max_length=2048)] = None,
    code: Annotated[int, Query(ge=100, le=999, description="VAST error code for event=error")] = 405,
) -> Any:
    c = claims(svc.settings, token)
    if c.get("d") != decision_id:
        raise HTTPException(403, "token is not valid for this decision")
    d = svc.store.get_decision(decision_id)
    if d is None:
        raise HTTPException(404, f"no decision {decision_id!r}")
    if ad_index >= len(d["ads"]):
        raise HTTPException(404, f"decision {decision_id!r} has {len(d['ads'])} ads; no ad {ad_index}")
    first = svc.record(d, ad_index, event, code)
    return {"decision_id": decision_id, "ad_index": ad_index, "event": event, "first": first}
