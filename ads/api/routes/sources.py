"""/v1/sources: upstream ad servers asked for ads at decision time, VAST (ads for one break) or VMAP (a VOD
asset's schedule, each break with its own VAST). Their tags are fetched under the one outbound policy of
ads/fetch.py, and refused at registration (422) when they could never be fetched safely."""

from __future__ import annotations

from typing import Any

from sidecast.ads.api import schemas as S
from sidecast.ads.api.routes.catalog import crud_router
from sidecast.ads.api.routes.urls import refuse_unsafe
from sidecast.ads.api.service import AdService


async def check_source(doc: dict[str, Any], svc: AdService) -> None:
    await refuse_unsafe(svc, [("vast_url", doc["vast_url"])])


router = crud_router("sources", S.SourceIn, S.Source, check=check_source)
