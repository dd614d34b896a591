"""The decisioning service behind the HTTP routes: it joins the pure decision core to the store, upstream
VAST fetching and the tracking-ping outbox. The FastAPI app and the SSAI session router both call it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sidecast.ads.api import decide as core
from sidecast.ads.fetch import AsyncFetcher, FetchPolicy, SyncFetcher, UnsafeURL
from sidecast.ads.models import AdPod, PodAd
from sidecast.ads.store import OutboxItem, Store
from sidecast.ads.vast import (
    DEFAULT_PROFILE,
    NO_SUPPORTED_MEDIA,
    ErrorReport,
    FetchFailed,
    MediaProfile,
    Resolution,
    expand_macros,
)
from sidecast.hls.breaks import Break

log = logging.getLogger("sidecast.ads")

BEACON_EVENTS = ("impression", "start", "firstQuartile", "midpoint", "thirdQuartile", "complete", "error")
_BREAK_POSITION = {"pre": 1, "mid": 2, "post": 3}
MAX_PING_ATTEMPTS = 5


@dataclass
class Settings:
    """Everything `create_app` needs; the CLI fills it from flags and environment variables."""

    db_path: str = "sidecast-ads.db"
    redis_url: str | None = None
    api_keys: tuple[str, ...] = ()
    token_key: str = ""                       # HMAC key for player tokens; random per process when empty
    token_ttl: int = 3600
    require_player_tokens: bool = True
    allow_private_upstreams: bool = False     # let VAST/tracking fetches reach loopback and private networks
    upstream_timeout: float = 2.0
    max_vast_bytes: int = 512 * 1024
    max_wrapper_depth: int = 5
    max_upload_bytes: int = 200 * 1024 * 1024
    media_dir: str | None = None
    public_url: str | None = None             # base of URLs we hand out; the request's own base when None
    origin: str | None = None                 # HLS origin for the SSAI session router
    media_profile: MediaProfile = field(default_factory=lambda: DEFAULT_PROFILE)

    def __post_init__(self) -> None:
        if not self.token_key:
            self.token_key = secrets.token_urlsafe(32)
        if len(self.token_key.encode()) < 16:
            raise ValueError("the token key must be at least 16 characters long")


def _tuple_map(d: Mapping[str, Any] | None) -> dict[str, tuple[str, ...]]:
    return {k: tuple(v) if isinstance(v, list | tuple) else (str(v),) for k, v in (d or {}).items()}


def _dt(s: str | None) -> datetime | None:
    return datetime.fromisoformat(s) if s else None


def catalog_from_docs(creatives: list[dict[str, Any]], campaigns: list[dict[str, Any]],
                      sources: list[dict[str, Any]]) -> core.Catalog:
    cr = {c["id"]: core.Creative(
        id=c["id"], media_url=c["media_url"], duration=float(c["duration"]), name=c.get("name", ""),
        advertiser=c.get("advertiser", ""), click_through=c.get("click_through") or "",
        tracking=_tuple_map(c.get("tracking")), rendition_uris=dict(c.get("rendition_uris") or {}))
        for c in creatives}
    lines = tuple(core.LineItem(
        id=c["id"], creative_ids=tuple(c["creative_ids"]), advertiser=c.get("advertiser", ""),
        priority=int(c.get("priority", 5)), start=_dt(c.get("start")), end=_dt(c.get("end")),
        targeting=_tuple_map(c.get("targeting")), positions=tuple(c.get("positions") or ("pre", "mid", "post")),
        frequency_cap=c.get("frequency_cap"), enabled=bool(c.get("enabled", True))) for c in campaigns)
    srcs = tuple(core.Source(
        id=s["id"], vast_url=s["vast_url"], priority=int(s.get("priority", 5)),
        targeting=_tuple_map(s.get("targeting")), positions=tuple(s.get("positions") or ("pre", "mid", "post")),
        frequency_cap=s.get("frequency_cap"), enabled=bool(s.get("enabled", True))) for s in sources)
    return core.prepare(core.Catalog(cr, lines, srcs))


def _ad_record(c: core.Candidate) -> dict[str, Any]:
    return {"creative_id": c.creative_id, "line_id": c.line_id, "advertiser": c.advertiser, "uri": c.uri,
            "duration": c.duration, "click_through": c.click_through, "rendition_uris": dict(c.rendition_uris),
            "impressions": list(c.impressions), "tracking": {k: list(v) for k, v in c.tracking.items()},
            "errors": list(c.errors)}


def beacon_urls(ad: Mapping[str, Any], event: str, error_code: int = 405) -> list[str]:
    """The third-party URLs one event of one decided ad must reach, macros expanded."""
    if event == "impression":
        urls = ad.get("impressions", [])
    elif event == "error":
        urls = ad.get("errors", [])
    else:
        urls = ad.get("tracking", {}).get(event, [])
    return [expand_macros(u, {"ERRORCODE": error_code}) for u in urls]


class AdService:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.policy = FetchPolicy(allow_private=settings.allow_private_upstreams, timeout=settings.upstream_timeout,
                                  max_bytes=settings.max_vast_bytes, max_wrapper_depth=settings.max_wrapper_depth)
        self.fetcher: AsyncFetcher | None = None
        self.sync_fetcher = SyncFetcher(self.policy)  # the SSAI session router decides from worker threads
        self._catalog: tuple[int, core.Catalog] | None = None
        self._catalog_lock = threading.Lock()
        self._wake: asyncio.Event | None = None

    # ------------------------------------------------------------ catalog

    def catalog(self, version: int) -> core.Catalog:
        cached = self._catalog
        if cached is not None and cached[0] == version:
            return cached[1]
        with self._catalog_lock:
            cat = catalog_from_docs(self.store.items("creatives"), self.store.items("campaigns"),
                                    self.store.items("sources"))
            self._catalog = (version, cat)
            return cat

    # ------------------------------------------------------------ decisions

    def _source_url(self, src: core.Source, req: core.DecisionRequest) -> str:
        return expand_macros(src.vast_url, {
            "SESSION_ID": req.session_id, "BREAKMAXDURATION": f"{req.duration:g}", "BREAK_ID": req.break_id,
            "BREAKPOSITION": _BREAK_POSITION.get(req.position, 2)})

    def _finish(self, req: core.DecisionRequest, local: list[core.Candidate],
                upstream: list[tuple[core.Source, Resolution]]) -> dict[str, Any]:
        candidates = list(local)
        reports: list[ErrorReport] = []
        for src, res in upstream:
            ok, unusable = core.upstream_candidates(src, res.ads, self.settings.media_profile)
            candidates.extend(ok)
            reports.extend(res.errors)
            reports.extend(ErrorReport(a.errors, NO_SUPPORTED_MEDIA, f"ad {a.id!r}: no media file suits the content")
                           for a in unusable)
        pod = core.build_pod(candidates, req.duration, req.max_ads)
        decision = {"decision_id": secrets.token_hex(12), "session_id": req.session_id,
                    "break_id": req.break_id, "position": req.position, "duration": round(sum(c.duration for c in pod), 3),
                    "ads": [_ad_record(c) for c in pod]}
        standing = self.store.save_decision(decision, [c.line_id for c in pod])
        if standing["decision_id"] != decision["decision_id"]:
            return standing  # another request decided this break first: one decision per session and break
        for r in reports:
            log.info("VAST error %d: %s", r.code, r.reason)
            if r.urls:
                self.store.record_beacon(f"vast-error:{secrets.token_hex(8)}", 0, "error",
                                         [expand_macros(u, {"ERRORCODE": r.code}) for u in r.urls])
        if reports:
            self.wake()
        return decision

    async def decide(self, req: core.DecisionRequest) -> dict[str, Any]:
        version, freq, prior = self.store.decision_context(req.session_id, req.break_id)
        if prior is not None:
            return prior  # asked again for the same break (a retry, a seek back): the same answer
        cat = self.catalog(version)
        now = datetime.now(UTC)
        local = core.local_candidates(cat, req, now, freq)
        sources = [s for s in cat.sources if core.eligible(s, req, now, freq)]
        upstream: list[tuple[core.Source, Resolution]] = []
        if sources:
            assert self.fetcher is not None, "the service is not started (no fetcher)"
            results = await asyncio.gather(*(self.fetcher.resolve(self._source_url(s, req)) for s in sources))
            upstream = list(zip(sources, results, strict=True))
        return self._finish(req, local, upstream)

    def decide_for_break(self, session_id: str, ad_break: Break) -> AdPod:
        """Blocking decision for the SSAI session router: the same rules and records as POST /v1/decisions.
        The router only asks for closed breaks (an open one would get an empty pod)."""
        req = core.DecisionRequest(session_id=session_id, duration=ad_break.duration or 0.0, position=ad_break.position,
                                   break_id=ad_break.id)
        version, freq, prior = self.store.decision_context(session_id, ad_break.id)
        if prior is None:
            cat = self.catalog(version)
            now = datetime.now(UTC)
            local = core.local_candidates(cat, req, now, freq)
            upstream = [(s, self.sync_fetcher.resolve(self._source_url(s, req)))
                        for s in cat.sources if core.eligible(s, req, now, freq)]
            d = self._finish(req, local, upstream)
        else:
            d = prior
        return AdPod(break_id=ad_break.id, session_id=session_id, decision_id=d["decision_id"], ads=tuple(
            PodAd(creative_id=a["creative_id"], duration=a["duration"], uri=a["uri"], advertiser=a["advertiser"],
                  click_through=a["click_through"],
                  tracking={"impression": a["impressions"], "error": a["errors"], **a["tracking"]},
                  rendition_uris=a["rendition_uris"]) for a in d["ads"]))

    # ------------------------------------------------------------ beacons

    def record(self, decision: Mapping[str, Any], ad_index: int, event: str, error_code: int = 405) -> bool:
        """Record one event of one ad of a decision; True only the first time (its pings are then queued)."""
        ad = decision["ads"][ad_index]
        first = self.store.record_beacon(decision["decision_id"], ad_index, event,
                                         beacon_urls(ad, event, error_code))
        if first:
            self.wake()
        return first

    def beacon_for_session(self, session_id: str, decision_or_break_id: str, creative_id: str,
                           event: str) -> bool:
        """Beacon entry point for the SSAI session router (server-side beaconing)."""
        decision = self.store.get_decision(decision_or_break_id)
        if decision is None or decision["session_id"] != session_id:
            raise KeyError(f"no decision {decision_or_break_id!r} for session {session_id!r}")
        if event not in BEACON_EVENTS:
            raise ValueError(f"unknown beacon event {event!r}; expected one of {', '.join(BEACON_EVENTS)}")
        for i, ad in enumerate(decision["ads"]):
            if ad["creative_id"] == creative_id:
                return self.record(decision, i, event)
        raise KeyError(f"creative {creative_id!r} is not in decision {decision_or_break_id!r}")

    # ------------------------------------------------------------ forwarding tracking pings

    def wake(self) -> None:
        ev = self._wake
        if ev is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None and loop is self._loop:
            ev.set()
        else:
            self._loop.call_soon_threadsafe(ev.set)

    async def _send(self, item: OutboxItem) -> None:
        assert self.fetcher is not None
        try:
            status = await self.fetcher.ping(item.url)
            ok, retry = status < 400, status >= 500
            if not ok:
                log.warning("tracking ping %s answered HTTP %d", item.url, status)
        except UnsafeURL as exc:
            log.warning("tracking ping refused: %s", exc)
            ok, retry = False, False
        except FetchFailed as exc:
            log.warning("tracking ping failed (attempt %d): %s", item.attempts + 1, exc)
            ok, retry = False, True
        self.store.finish_outbox(item, ok, give_up=not ok and (not retry or item.attempts + 1 >= MAX_PING_ATTEMPTS))

    async def forward_loop(self) -> None:
        """Drain the outbox for as long as the app runs: wake on new beacons, poll for retries and for pings
        queued by other replicas."""
        assert self._wake is not None
        while True:
            try:
                items = self.store.take_outbox(64)
            except Exception as exc:  # the store is down: keep the loop alive, try again soon
                log.error("outbox unavailable: %s", exc)
                items = []
            if items:
                await asyncio.gather(*(self._send(i) for i in items))
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=0.5)
            except TimeoutError:
                pass

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.fetcher = AsyncFetcher(self.policy)

    async def stop(self) -> None:
        if self.fetcher is not None:
            await self.fetcher.aclose()
        self.sync_fetcher.close()
