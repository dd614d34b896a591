"""/v1/creatives: the ads we can play (a media URL and a duration), registered by URL; uploads and the
files they store are in media.py. A creative still named by a campaign cannot be deleted; one whose URLs
point inside the network is refused (422), like any URL the service would fetch."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from sidecast.ads.api import schemas as S
from sidecast.ads.api.routes.catalog import crud_router
from sidecast.ads.api.routes.urls import refuse_unsafe
from sidecast.ads.api.service import AdService


def refuse_if_used(doc: dict[str, Any], svc: AdService) -> None:
    users = [c["id"] for c in svc.store.items("campaigns") if doc["id"] in c.get("creative_ids", [])]
    if users:
        raise HTTPException(409, f"creative {doc['id']!r} is used by campaigns {', '.join(users)}; delete them first")


async def check_creative(doc: dict[str, Any], svc: AdService) -> None:
    """The URLs we fetch ourselves: the media (conditioning, SSAI), its renditions and the trackers we ping.
    (The click-through is the player's to open, not ours to fetch.)"""
    named = [("media_url", doc["media_url"])]
    named += [(f"rendition_uris.{k}", u) for k, u in (doc.get("rendition_uris") or {}).items()]
    named += [(f"tracking.{ev}", u) for ev, urls in (doc.get("tracking") or {}).items() for u in urls]
    await refuse_unsafe(svc, named)


router = crud_router("creatives", S.CreativeIn, S.Creative, check=check_creative, before_delete=refuse_if_used)
