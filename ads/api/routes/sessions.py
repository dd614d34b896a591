"""The SSAI session router (`/session/{id}/...`, ads/session.py), mounted when the service has an HLS
origin: per-viewer stitched playlists whose breaks are decided by this same service. Player-facing
playlists, not part of the versioned API contract, so kept out of the OpenAPI document.

What `sidecast ads serve --origin` wires in, so the docs' promises hold for the service and not only for
a hand-built router:
- the **conditioner** (a folder origin): media-file creatives are transcoded to the content's ladder
  and container on first use, cached in `--condition-cache`; http(s) creatives are downloaded first
  through the service's fetch policy (ffmpeg never opens an ad server's URL);
- the **break schedule**: breaks added with /v1/breaks, and for a VOD session the breaks of any VMAP
  source that serves it;
- ad playlists read through the fetch policy too (their URLs come from ad servers);
- live: `--prefetch-lead`, `--decision-wait`, `--live-preroll`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from fastapi import APIRouter

from sidecast.ads.api.service import AdService

log = logging.getLogger("sidecast.ads")

MEDIA_DOWNLOAD_TIMEOUT = 120.0


def session_router(svc: AdService) -> APIRouter | None:
    """The router for `svc.settings.origin`, or None (no origin, or the session module unavailable)."""
    settings = svc.settings
    if not settings.origin:
        return None
    try:
        from sidecast.ads.condition import Conditioner
        from sidecast.ads.session import Fetcher, make_router
    except ImportError as exc:
        log.warning("--origin given but the SSAI session router is unavailable (%s); serving decisions only", exc)
        return None

    def beacon_sink(session_id: str, ref: str, creative_id: str, event: str, ad_index: int) -> None:
        svc.beacon_for_session(session_id, ref, creative_id, event, ad_index)

    def download(url: str, target: Path) -> None:
        svc.sync_fetcher.download(url, target, max_bytes=settings.max_upload_bytes, timeout=MEDIA_DOWNLOAD_TIMEOUT)

    conditioner = None
    origin = settings.origin
    if not origin.startswith(("http://", "https://")):
        cache = settings.condition_cache or str(Path(settings.db_path).resolve().parent / "sidecast-ads-conditioned")
        if os.path.isfile(os.path.join(origin, "master.m3u8")):
            conditioner = Conditioner(os.path.join(origin, "master.m3u8"), cache, download=download)
        else:
            log.warning("origin %s has no master.m3u8 (yet): media-file creatives cannot be conditioned", origin)
    else:
        log.info("origin %s is a URL: creatives must come as HLS (rendition_uris, or a master in the "
                 "content's layout); media files are conditioned for folder origins only", origin)
    ad_fetcher = Fetcher(get_url=lambda url: svc.sync_fetcher.get(url).decode("utf-8", "replace"))
    return make_router(origin, svc.decide_for_break, beacon_sink,  # type: ignore[no-any-return]
                       schedule=svc.scheduled_breaks, conditioner=conditioner, ad_fetcher=ad_fetcher,
                       session_schedule=svc.vmap_schedule, prefetch=settings.prefetch_lead,
                       decision_wait=settings.decision_wait, live_preroll=settings.live_preroll)
