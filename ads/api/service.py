"""The decisioning service behind the HTTP routes: it joins the pure decision core to the store, upstream
VAST fetching and the tracking-ping outbox. The FastAPI app and the SSAI session router both call it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
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
    progress_offset,
)
from sidecast.ads.vmap import VmapBreak, VmapDocument, VmapError, parse_vmap
from sidecast.ads.vmap import schedule as schedule_from_vmap
from sidecast.hls.breaks import Break

log = logging.getLogger("sidecast.ads")

BEACON_EVENTS = ("impression", "start", "firstQuartile", "midpoint", "thirdQuartile", "complete", "error")
_BREAK_POSITION = {"pre": 1, "mid": 2, "post": 3}
MAX_PING_ATTEMPTS = 5


def _check_range(name: str, flag: str, value: float, lo: float, hi: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and lo <= value <= hi):
        raise ValueError(f"{flag} must be between {lo:g} and {hi:g}, got {value!r}")


@dataclass
class Settings:
    """Everything `create_app` needs; the CLI fills it from flags and environment variables.

    Checked when built (``__post_init__``): a setting that would make every request fail (a token
    lifetime of 0, a timeout of NaN, an empty API key) is refused with one line that names its flag, so
    the service does not start rather than answering 500s."""

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
    max_ads_per_response: int = 32            # <Ad>s read from one VAST document
    max_upload_bytes: int = 200 * 1024 * 1024
    max_body_bytes: int = 64 * 1024           # JSON request bodies (uploads have max_upload_bytes)
    media_dir: str | None = None
    media_store: str | None = None            # s3://bucket/prefix for uploaded creatives; None = media_dir
    s3_endpoint: str | None = None            # S3-compatible endpoint (MinIO, Ceph...); None = AWS
    s3_region: str = "us-east-1"
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_session_token: str = ""
    public_url: str | None = None             # base of URLs we hand out; the request's own base when None
    origin: str | None = None                 # HLS origin for the SSAI session router
    condition_cache: str | None = None        # where conditioned ads are kept (SSAI); default next to --db
    prefetch_lead: float = 0.0                # live SSAI: decide a break this many seconds before it starts
    decision_wait: float = 2.0                # live SSAI: how long a playlist request waits for a decision
    live_preroll: float = 0.0                 # live SSAI: seconds of pre-roll when a session starts (0 = none)
    insert_pod_seconds: float = 60.0          # most seconds of ads in a break that inserts (pre/post-roll)
    media_profile: MediaProfile = field(default_factory=lambda: DEFAULT_PROFILE)

    def __post_init__(self) -> None:
        if not self.token_key:
            self.token_key = secrets.token_urlsafe(32)
        if len(self.token_key.encode()) < 16:
            raise ValueError("the token key (SIDECAST_ADS_TOKEN_KEY) must be at least 16 characters long")
        for k in self.api_keys:
            if not k.strip() or k != k.strip():
                # an empty key would let an empty X-API-Key header in
                raise ValueError("an --api-key (or SIDECAST_ADS_API_KEYS entry) is empty or has surrounding spaces")
        _check_range("token_ttl", "--token-ttl", self.token_ttl, 10, 7 * 86400)
        _check_range("upstream_timeout", "--upstream-timeout", self.upstream_timeout, 0.05, 60)
        _check_range("max_vast_bytes", "--max-vast-bytes", self.max_vast_bytes, 1024, 16 << 20)
        _check_range("max_wrapper_depth", "--max-wrapper-depth", self.max_wrapper_depth, 0, 10)
        _check_range("max_ads_per_response", "--max-ads-per-response", self.max_ads_per_response, 1, 200)
        _check_range("max_upload_bytes", "--max-upload-bytes", self.max_upload_bytes, 1, 64 << 30)
        _check_range("max_body_bytes", "--max-body-bytes", self.max_body_bytes, 1024, 64 << 20)
        _check_range("prefetch_lead", "--prefetch-lead", self.prefetch_lead, 0, 3600)
        _check_range("decision_wait", "--decision-wait", self.decision_wait, 0, 30)
        _check_range("live_preroll", "--live-preroll", self.live_preroll, 0, 600)
        _check_range("insert_pod_seconds", "--insert-pod-seconds", self.insert_pod_seconds, 1, 600)
        if self.public_url is not None and not re.match(r"^https?://[^/\s]+", self.public_url):
            raise ValueError(f"--public-url must be an http(s) URL, got {self.public_url!r}")
        if self.media_store is not None and not re.match(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
                                                         self.media_store):
            raise ValueError(f"--media-store must be s3://BUCKET[/PREFIX] (a valid bucket name), got {self.media_store!r}")
        if self.s3_endpoint is not None and not re.match(r"^https?://[^/\s]+", self.s3_endpoint):
            raise ValueError(f"--s3-endpoint must be an http(s) URL, got {self.s3_endpoint!r}")
        if self.origin is not None and not self.origin.startswith(("http://", "https://")):
            if not os.path.isdir(self.origin):
                raise ValueError(f"--origin {self.origin!r} is neither an http(s) URL nor a folder")


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
        id=s["id"], vast_url=s["vast_url"], format=s.get("format") or "vast", priority=int(s.get("priority", 5)),
        targeting=_tuple_map(s.get("targeting")), positions=tuple(s.get("positions") or ("pre", "mid", "post")),
        frequency_cap=s.get("frequency_cap"), enabled=bool(s.get("enabled", True))) for s in sources)
    return core.prepare(core.Catalog(cr, lines, srcs))


def _ad_record(c: core.Candidate) -> dict[str, Any]:
    rec = {"creative_id": c.creative_id, "line_id": c.line_id, "advertiser": c.advertiser, "uri": c.uri,
           "duration": c.duration, "click_through": c.click_through, "rendition_uris": dict(c.rendition_uris),
           "impressions": list(c.impressions), "tracking": {k: list(v) for k, v in c.tracking.items()},
           "errors": list(c.errors)}
    if c.companions:
        rec["companions"] = [dict(x) for x in c.companions]
    if c.nonlinears:
        rec["nonlinears"] = [dict(x) for x in c.nonlinears]
    return rec


def beacon_urls(ad: Mapping[str, Any], event: str, error_code: int = 405) -> list[str]:
    """The third-party URLs one event of one decided ad must reach, macros expanded (`event` may be a
    progress key, ``progress@<seconds>``)."""
    if event == "impression":
        urls = ad.get("impressions", [])
    elif event == "error":
        urls = ad.get("errors", [])
    else:
        urls = ad.get("tracking", {}).get(event, [])
    return [expand_macros(u, {"ERRORCODE": error_code}) for u in urls]


def _unusable(src: core.Source, exc: BaseException) -> Resolution:
    """What a source that failed in an unforeseen way contributes: nothing, and a line in the log."""
    log.error("ad source %s failed (%s: %s); its ads are left out of this decision", src.id, type(exc).__name__, exc)
    return Resolution((), ())


_VMAP_CACHE_SIZE = 10_000
_VMAP_TTL = 600.0


class AdService:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.policy = FetchPolicy(allow_private=settings.allow_private_upstreams, timeout=settings.upstream_timeout,
                                  max_bytes=settings.max_vast_bytes, max_wrapper_depth=settings.max_wrapper_depth,
                                  max_ads=settings.max_ads_per_response)
        self.fetcher: AsyncFetcher | None = None
        self.sync_fetcher = SyncFetcher(self.policy)  # the SSAI session router decides from worker threads
        self._catalog: tuple[int, core.Catalog] | None = None
        self._catalog_lock = threading.Lock()
        self._wake: asyncio.Event | None = None
        # VMAP documents per (source, session): a VOD session asks its schedule once, then each break
        self._vmaps: OrderedDict[tuple[str, str], tuple[float, VmapDocument | None]] = OrderedDict()
        self._vmap_lock = threading.Lock()
        self._scheduled: tuple[float, list[Break]] = (0.0, [])

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

    def _sized(self, req: core.DecisionRequest) -> core.DecisionRequest:
        """A break that inserts (duration 0: pre/post-rolls, VMAP breaks) is filled up to insert_pod_seconds."""
        if req.duration > 0:
            return req
        return replace(req, duration=self.settings.insert_pod_seconds)

    def _finish(self, req: core.DecisionRequest, local: list[core.Candidate],
                upstream: list[tuple[core.Source, Resolution]]) -> dict[str, Any]:
        candidates = list(local)
        reports: list[ErrorReport] = []
        for src, res in upstream:
            reports.extend(res.errors)
            try:
                ok, unusable = core.upstream_candidates(src, res.ads, self.settings.media_profile)
            except Exception as exc:  # an upstream, however broken, costs only its own ads
                _unusable(src, exc)
                continue
            candidates.extend(ok)
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

    async def _resolve_source(self, src: core.Source, req: core.DecisionRequest) -> Resolution:
        assert self.fetcher is not None, "the service is not started (no fetcher)"
        try:
            if src.format == "vmap":
                brk = await self._vmap_break_async(src, req)
                if brk is None:
                    return Resolution((), ())
                return await self.fetcher.resolve(brk.ad_tag_uri or f"vmap:{src.id}/{brk.id}", first=brk.vast)
            return await self.fetcher.resolve(self._source_url(src, req))
        except Exception as exc:
            return _unusable(src, exc)

    async def decide(self, req: core.DecisionRequest) -> dict[str, Any]:
        req = self._sized(req)
        version, freq, prior = self.store.decision_context(req.session_id, req.break_id)
        if prior is not None:
            return prior  # asked again for the same break (a retry, a seek back): the same answer
        cat = self.catalog(version)
        now = datetime.now(UTC)
        local = core.local_candidates(cat, req, now, freq)
        sources = [s for s in cat.sources if core.eligible(s, req, now, freq)]
        upstream: list[tuple[core.Source, Resolution]] = []
        if sources:
            results = await asyncio.gather(*(self._resolve_source(s, req) for s in sources))
            upstream = list(zip(sources, results, strict=True))
        return self._finish(req, local, upstream)

    def _resolve_source_sync(self, src: core.Source, req: core.DecisionRequest) -> Resolution:
        try:
            if src.format == "vmap":
                brk = self._vmap_break_sync(src, req)
                if brk is None:
                    return Resolution((), ())
                return self.sync_fetcher.resolve(brk.ad_tag_uri or f"vmap:{src.id}/{brk.id}", first=brk.vast)
            return self.sync_fetcher.resolve(self._source_url(src, req))
        except Exception as exc:
            return _unusable(src, exc)

    def decide_sync(self, req: core.DecisionRequest) -> dict[str, Any]:
        """`decide` for callers on worker threads (the SSAI session router): the same rules and records."""
        req = self._sized(req)
        version, freq, prior = self.store.decision_context(req.session_id, req.break_id)
        if prior is not None:
            return prior
        cat = self.catalog(version)
        now = datetime.now(UTC)
        local = core.local_candidates(cat, req, now, freq)
        upstream = [(s, self._resolve_source_sync(s, req)) for s in cat.sources if core.eligible(s, req, now, freq)]
        return self._finish(req, local, upstream)

    def decide_for_break(self, session_id: str, ad_break: Break) -> AdPod:
        """Blocking decision for the SSAI session router: the same rules and records as POST /v1/decisions.
        The router only asks for closed breaks (an open one would get an empty pod)."""
        d = self.decide_sync(core.DecisionRequest(session_id=session_id, duration=ad_break.duration or 0.0,
                                                  position=ad_break.position, break_id=ad_break.id))
        return AdPod(break_id=ad_break.id, session_id=session_id, decision_id=d["decision_id"], ads=tuple(
            PodAd(creative_id=a["creative_id"], duration=a["duration"], uri=a["uri"], advertiser=a["advertiser"],
                  click_through=a["click_through"],
                  tracking={"impression": a["impressions"], "error": a["errors"], **a["tracking"]},
                  rendition_uris=a["rendition_uris"]) for a in d["ads"]))

    # ------------------------------------------------------------ VMAP sources and the break schedule

    def _vmap_cached(self, key: tuple[str, str]) -> tuple[bool, VmapDocument | None]:
        with self._vmap_lock:
            hit = self._vmaps.get(key)
            if hit is not None and hit[0] > time.monotonic():
                self._vmaps.move_to_end(key)
                return True, hit[1]
        return False, None

    def _vmap_store(self, key: tuple[str, str], doc: VmapDocument | None) -> None:
        with self._vmap_lock:
            self._vmaps[key] = (time.monotonic() + _VMAP_TTL, doc)
            while len(self._vmaps) > _VMAP_CACHE_SIZE:
                self._vmaps.popitem(last=False)

    def _vmap_parse(self, src: core.Source, body: bytes) -> VmapDocument | None:
        try:
            return parse_vmap(body, self.settings.max_vast_bytes)
        except VmapError as exc:
            log.warning("VMAP from source %s unusable: %s", src.id, exc)
            return None

    async def _vmap_async(self, src: core.Source, req: core.DecisionRequest) -> VmapDocument | None:
        key = (src.id, req.session_id)
        hit, doc = self._vmap_cached(key)
        if not hit:
            assert self.fetcher is not None
            try:
                body = await self.fetcher.get(self._source_url(src, req))
                doc = await asyncio.to_thread(self._vmap_parse, src, body)
            except FetchFailed as exc:
                log.warning("VMAP source %s: %s", src.id, exc)
                doc = None
            self._vmap_store(key, doc)
        return doc

    def _vmap_sync(self, src: core.Source, req: core.DecisionRequest) -> VmapDocument | None:
        key = (src.id, req.session_id)
        hit, doc = self._vmap_cached(key)
        if not hit:
            try:
                doc = self._vmap_parse(src, self.sync_fetcher.get(self._source_url(src, req)))
            except FetchFailed as exc:
                log.warning("VMAP source %s: %s", src.id, exc)
                doc = None
            self._vmap_store(key, doc)
        return doc

    @staticmethod
    def _match_break(doc: VmapDocument | None, req: core.DecisionRequest) -> VmapBreak | None:
        """The VMAP break a decision is for: by id (repeats are ``<id>-r<k>``), else the pre-roll or
        post-roll of the document for a pre/post decision without one."""
        if doc is None:
            return None
        for b in doc.breaks:
            if req.break_id and (req.break_id == b.id or req.break_id.startswith(b.id + "-r")):
                return b if b.linear and b.has_ads else None
        if req.position in ("pre", "post"):
            kind = "start" if req.position == "pre" else "end"
            return next((b for b in doc.breaks if b.offset_kind == kind and b.linear and b.has_ads), None)
        return None

    async def _vmap_break_async(self, src: core.Source, req: core.DecisionRequest) -> VmapBreak | None:
        return self._match_break(await self._vmap_async(src, req), req)

    def _vmap_break_sync(self, src: core.Source, req: core.DecisionRequest) -> VmapBreak | None:
        return self._match_break(self._vmap_sync(src, req), req)

    def vmap_schedule(self, session_id: str, content_duration: float | None) -> list[Break]:
        """A VOD session's breaks from the VMAP sources that may serve it (blocking: the session router's
        worker threads). Empty when there are none or they fail."""
        version, freq, _ = self.store.decision_context(session_id)
        cat = self.catalog(version)
        out: list[Break] = []
        for src in cat.sources:
            if src.format != "vmap" or not src.enabled:
                continue
            req = core.DecisionRequest(session_id=session_id, duration=0.0, position="pre")
            if src.frequency_cap is not None and freq.get(f"source:{src.id}", 0) >= src.frequency_cap:
                continue
            if not core._targets(src.targeting, req.key_values):
                continue
            try:
                doc = self._vmap_sync(src, req)
            except Exception as exc:
                _unusable(src, exc)
                continue
            if doc is not None:
                out.extend(b for b, _ in schedule_from_vmap(doc, content_duration) if b.position in src.positions)
        return out

    def scheduled_breaks(self) -> list[Break]:
        """The breaks scheduled through /v1/breaks (re-read at most once a second)."""
        at, breaks = self._scheduled
        if time.monotonic() - at < 1.0:
            return breaks
        out = []
        for d in self.store.items("breaks"):
            start_date = _dt(d.get("start_date"))
            if start_date is not None and start_date.tzinfo is None:
                start_date = start_date.replace(tzinfo=UTC)
            out.append(Break(d["id"], float(d.get("offset") or 0.0), float(d["duration"]), d.get("position", "mid"),
                             start_date, "api"))
        self._scheduled = (time.monotonic(), out)
        return out

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
                           event: str, ad_index: int | None = None) -> bool:
        """Beacon entry point for the SSAI session router (server-side beaconing): `event` is one of
        BEACON_EVENTS or a progress key (``progress@<seconds>``); `ad_index` says which ad of the pod (the
        same creative may play twice in one pod), else the first ad with `creative_id`."""
        decision = self.store.get_decision(decision_or_break_id)
        if decision is None or decision["session_id"] != session_id:
            raise KeyError(f"no decision {decision_or_break_id!r} for session {session_id!r}")
        if event not in BEACON_EVENTS and progress_offset(event) is None:
            raise ValueError(f"unknown beacon event {event!r}; expected one of {', '.join(BEACON_EVENTS)} "
                             "or progress@<seconds>")
        ads = decision["ads"]
        if ad_index is not None:
            if not 0 <= ad_index < len(ads) or ads[ad_index]["creative_id"] != creative_id:
                raise KeyError(f"ad {ad_index} of decision {decision_or_break_id!r} is not {creative_id!r}")
            return self.record(decision, ad_index, event)
        for i, ad in enumerate(ads):
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
            if exc.sent:
                # The request went out and then no answer came in time (or the connection broke, or the
                # redirects led nowhere): the tracker may well have counted it. Sending it again would
                # count a slow tracker's impression twice, so it is done, marked sent (it was), unanswered.
                log.warning("tracking ping %s sent but not answered, not sent again: %s", item.url, exc)
                ok, retry = True, False
            else:
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
