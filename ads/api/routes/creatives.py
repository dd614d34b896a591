"""/v1/creatives: the ads we can play (a media URL and a duration), registered by URL; uploads and the
files they store are in media.py. A creative still named by a campaign cannot be deleted."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException

from sidecast.ads.api import schemas as S
from sidecast.ads.api.routes.catalog import crud_router
from sidecast.ads.store import Store


def refuse_if_used(doc: dict[str, Any], store: Store) -> None:
    users = [c["id"] for c in store.items("campaigns") if doc["id"] in c.get("creative_ids", [])]
    if users:
        raise HTTPException(409, f"creative {doc['id']!r} is used by campaigns {', '.join(users)}; delete them first")


router = crud_router("creatives", S.CreativeIn, S.Creative, before_delete=refuse_if_used)
