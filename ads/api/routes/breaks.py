"""/v1/breaks: ad breaks scheduled through the API, for the SSAI sessions of `--origin` (the stitcher adds
them to the breaks it finds in the origin's own signalling). A live break is placed by its wall clock
(`start_date`), a VOD one by its `offset` in seconds from the start of the asset."""

from __future__ import annotations

from sidecast.ads.api import schemas as S
from sidecast.ads.api.routes.catalog import crud_router

router = crud_router("breaks", S.BreakIn, S.ScheduledBreak)
