"""/v1/sources: upstream VAST ad servers asked for ads at decision time (their tags are fetched under
the one outbound policy of ads/fetch.py)."""

from __future__ import annotations

from sidecast.ads.api import schemas as S
from sidecast.ads.api.routes.catalog import crud_router

router = crud_router("sources", S.SourceIn, S.Source)
