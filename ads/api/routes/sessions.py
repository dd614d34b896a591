"""The SSAI session router (`/session/{id}/...`, ads/session.py), mounted when the service has an HLS
origin: per-viewer stitched playlists whose breaks are decided by this same service. Player-facing
playlists, not part of the versioned API contract, so kept out of the OpenAPI document."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from sidecast.ads.api.service import AdService
from sidecast.ads.models import BeaconEvent

log = logging.getLogger("sidecast.ads")


def session_router(svc: AdService) -> APIRouter | None:
    """The router for `svc.settings.origin`, or None (no origin, or the session module unavailable)."""
    if not svc.settings.origin:
        return None
    try:
        from sidecast.ads.session import make_router  # type: ignore[attr-defined]
    except ImportError as exc:
        log.warning("--origin given but the SSAI session router is unavailable (%s); serving decisions only", exc)
        return None

    def beacon_sink(session_id: str, ref: str, creative_id: str, event: BeaconEvent) -> None:
        svc.beacon_for_session(session_id, ref, creative_id, event)

    return make_router(svc.settings.origin, svc.decide_for_break, beacon_sink)  # type: ignore[no-any-return]
