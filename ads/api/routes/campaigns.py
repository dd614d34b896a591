"""/v1/campaigns: line items (flight, priority, targeting, frequency cap) over registered creatives."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from sidecast.ads.api import schemas as S
from sidecast.ads.api.routes.catalog import crud_router
from sidecast.ads.api.service import AdService


def check_campaign(doc: dict[str, Any], svc: AdService) -> None:
    missing = [c for c in doc["creative_ids"] if svc.store.get("creatives", c) is None]
    if missing:
        raise HTTPException(422, f"unknown creative ids: {', '.join(missing)}; register the creatives first")


router = crud_router("campaigns", S.CampaignIn, S.Campaign, check=check_campaign)
