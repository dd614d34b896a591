"""Ad decisions as pure functions: which line items may serve this request, and which pod fills the break.

No I/O here: the catalog, the session's frequency counts, the clock and the ads resolved from upstream VAST
all come in as plain data, so every rule (flight dates, targeting, caps, competitive separation, pod
filling) can be tested on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import lru_cache

from sidecast.ads.vast import DEFAULT_PROFILE, Companion, MediaProfile, ResolvedAd, choose_media_file

__all__ = ["Creative", "LineItem", "Source", "Catalog", "DecisionRequest", "Candidate", "eligible",
           "local_candidates", "line_candidates", "prepare", "upstream_candidates", "build_pod", "companion_doc",
           "TOP_PRIORITY", "LOWEST_PRIORITY"]

TOP_PRIORITY = 1
LOWEST_PRIORITY = 10


@dataclass(frozen=True)
class Creative:
    id: str
    media_url: str
    duration: float
    name: str = ""
    advertiser: str = ""
    click_through: str = ""
    tracking: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    rendition_uris: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LineItem:
    """A campaign's line item: which creatives, when, for whom, how often and how important."""

    id: str
    creative_ids: tuple[str, ...]
    advertiser: str = ""
    priority: int = 5
    start: datetime | None = None
    end: datetime | None = None
    targeting: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    positions: tuple[str, ...] = ("pre", "mid", "post")
    frequency_cap: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class Source:
    """An upstream ad server reached through a tag URL template; `format` says whether it answers VAST
    (ads for the break asked about) or VMAP (a VOD asset's whole schedule, each break with its VAST)."""

    id: str
    vast_url: str
    format: str = "vast"
    priority: int = 5
    targeting: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    positions: tuple[str, ...] = ("pre", "mid", "post")
    frequency_cap: int | None = None
    enabled: bool = True


@dataclass(frozen=True)
class DecisionRequest:
    session_id: str
    duration: float
    position: str = "mid"
    key_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    break_id: str = ""
    max_ads: int = 8


@dataclass(frozen=True)
class Candidate:
    """An ad that could go in the pod; `line_id` is what frequency caps count ("source:<id>" for upstream)."""

    creative_id: str
    line_id: str
    advertiser: str
    duration: float
    priority: int
    uri: str
    click_through: str = ""
    impressions: tuple[str, ...] = ()
    tracking: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    sequence: int | None = None
    rendition_uris: Mapping[str, str] = field(default_factory=dict)
    companions: tuple[Mapping[str, object], ...] = ()   # companion_doc() of each, passed to players
    nonlinears: tuple[Mapping[str, object], ...] = ()


@dataclass(frozen=True)
class Catalog:
    creatives: Mapping[str, Creative] = field(default_factory=dict)
    lines: tuple[LineItem, ...] = ()
    sources: tuple[Source, ...] = ()
    prepared: Mapping[str, tuple[Candidate, ...]] = field(default_factory=dict)  # line id -> candidates


def _utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _targets(targeting: Mapping[str, tuple[str, ...]], kv: Mapping[str, tuple[str, ...]]) -> bool:
    """Every targeted key must be present with at least one of the allowed values."""
    return all(set(values) & set(kv.get(key, ())) for key, values in targeting.items())


def eligible(line: LineItem | Source, req: DecisionRequest, now: datetime, frequency: Mapping[str, int]) -> bool:
    if not line.enabled or req.position not in line.positions or not _targets(line.targeting, req.key_values):
        return False
    if isinstance(line, LineItem):
        if line.start and now < _utc(line.start):
            return False
        if line.end and now >= _utc(line.end):
            return False
        key = line.id
    else:
        key = f"source:{line.id}"
    return line.frequency_cap is None or frequency.get(key, 0) < line.frequency_cap


def line_candidates(line: LineItem, creatives: Mapping[str, Creative]) -> tuple[Candidate, ...]:
    """The candidates one line item offers (creatives it names that exist); depends on the catalog only."""
    out: list[Candidate] = []
    for cid in line.creative_ids:
        c = creatives.get(cid)
        if c is None:
            continue
        out.append(Candidate(
            creative_id=c.id, line_id=line.id, advertiser=line.advertiser or c.advertiser,
            duration=c.duration, priority=line.priority, uri=c.media_url, click_through=c.click_through,
            impressions=tuple(c.tracking.get("impression", ())),
            tracking={k: tuple(v) for k, v in c.tracking.items() if k not in ("impression", "error")},
            errors=tuple(c.tracking.get("error", ())), rendition_uris=dict(c.rendition_uris)))
    return tuple(out)


def prepare(catalog: Catalog) -> Catalog:
    """The same catalog with every line's candidates built once, so decisions only filter them."""
    return replace(catalog, prepared={line.id: line_candidates(line, catalog.creatives) for line in catalog.lines})


def local_candidates(catalog: Catalog, req: DecisionRequest, now: datetime,
                     frequency: Mapping[str, int]) -> list[Candidate]:
    out: list[Candidate] = []
    for line in catalog.lines:
        if eligible(line, req, now, frequency):
            cands = catalog.prepared.get(line.id)
            out.extend(cands if cands is not None else line_candidates(line, catalog.creatives))
    return out


def companion_doc(c: Companion) -> dict[str, object]:
    """A companion or non-linear ad as the API and the asset lists show it (JSON, only what is set)."""
    doc: dict[str, object] = {"resource": {"type": c.resource_type, "value": c.resource}}
    if c.creative_type:
        doc["resource"]["creative_type"] = c.creative_type  # type: ignore[index]
    for key, value in (("id", c.id), ("width", c.width), ("height", c.height), ("click_through", c.click_through),
                       ("ad_slot_id", c.ad_slot_id), ("min_suggested_duration", c.min_suggested_duration)):
        if value:
            doc[key] = value
    if c.click_tracking:
        doc["click_tracking"] = list(c.click_tracking)
    if c.tracking:
        doc["tracking"] = {k: list(v) for k, v in c.tracking.items()}
    return doc


def upstream_candidates(source: Source, ads: Iterable[ResolvedAd],
                        profile: MediaProfile = DEFAULT_PROFILE) -> tuple[list[Candidate], list[ResolvedAd]]:
    """Candidates from resolved VAST ads, plus the ads dropped for having no media file that suits us."""
    ok: list[Candidate] = []
    unusable: list[ResolvedAd] = []
    for ad in ads:
        media = choose_media_file(ad.media_files, profile)
        if media is None or ad.duration <= 0:
            unusable.append(ad)
            continue
        ok.append(Candidate(
            creative_id=f"vast:{source.id}:{ad.id or '-'}:{ad.creative_id or '-'}", line_id=f"source:{source.id}",
            advertiser=ad.advertiser, duration=ad.duration, priority=source.priority, uri=media.uri,
            click_through=ad.click_through, impressions=ad.impressions, tracking=dict(ad.tracking),
            errors=ad.errors, sequence=ad.sequence, companions=tuple(companion_doc(c) for c in ad.companions),
            nonlinears=tuple(companion_doc(c) for c in ad.nonlinears)))
    return ok, unusable


_MAX_STATES = 4000


def build_pod(candidates: Sequence[Candidate], duration: float, max_ads: int = 8) -> list[Candidate]:
    """The pod that fills `duration` as closely as possible without running over it.

    Among pods with the same fill, the one with more important ads wins (a priority-1 ad outweighs any
    number of priority-2 ads). No two ads share an advertiser (competitive separation); ads with no
    advertiser are each their own. Play order: priority, then the upstream pod sequence, then input order.
    This is a group knapsack over the durations in milliseconds, kept sparse.

    The pod depends only on each candidate's advertiser, priority, duration and sequence, in order, and on
    the break: the same local campaigns answer most decisions, so the solution is memoised on those.
    """
    cap = int(round(duration * 1000))
    if cap <= 0 or not candidates or max_ads <= 0:
        return []
    shape = tuple((c.advertiser, c.priority, c.duration, c.sequence) for c in candidates)
    return [candidates[i] for i in _solve_pod(shape, cap, max_ads)]


_Shape = tuple[tuple[str, int, float, int | None], ...]


@lru_cache(maxsize=2048)
def _solve_pod(shape: _Shape, cap: int, max_ads: int) -> tuple[int, ...]:
    """build_pod's choice, as indices into `shape` (advertiser, priority, duration, sequence) in play order."""
    groups: dict[str, list[int]] = {}
    for i, (advertiser, _, _, _) in enumerate(shape):
        groups.setdefault(advertiser.strip().lower() or f"\x00{i}", []).append(i)
    weight = [float(4 ** (LOWEST_PRIORITY - min(max(priority, TOP_PRIORITY), LOWEST_PRIORITY)))
              for _, priority, _, _ in shape]
    ms = [max(1, int(round(d * 1000))) for _, _, d, _ in shape]
    # state: filled ms -> (score, chosen indices); a higher score is better at equal fill
    states: dict[int, tuple[float, tuple[int, ...]]] = {0: (0.0, ())}
    for members in groups.values():
        nxt = dict(states)
        for filled, (score, chosen) in states.items():
            if len(chosen) >= max_ads:
                continue
            for i in members:
                f = filled + ms[i]
                if f > cap:
                    continue
                s = score + weight[i]
                cur = nxt.get(f)
                if cur is None or s > cur[0]:
                    nxt[f] = (s, chosen + (i,))
        if len(nxt) > _MAX_STATES:
            nxt = dict(sorted(nxt.items(), reverse=True)[:_MAX_STATES])
        states = nxt
    best_fill = max(states)
    chosen = states[best_fill][1]
    return tuple(sorted(chosen, key=lambda i: (shape[i][1], shape[i][3] is None, shape[i][3] or 0, i)))
