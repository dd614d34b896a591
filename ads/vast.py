"""VAST 2/3/4 for the decisioning API: parse untrusted XML into plain records, follow wrapper chains
without doing I/O, pick the media file that suits the content, and expand URL macros.

The wrapper resolver is a generator ("sans-IO"): it yields the URLs it needs and is sent back their bodies,
so the same logic runs under a blocking HTTP client, an async one, or a test that feeds strings. Parsing
goes through defusedxml (no DTDs, no entities) after a size check, and names are matched by local name so
VAST 4's default namespace and namespace-less VAST 2/3 parse the same way.

An upstream, however broken, only costs its own ads. Every number and time in a document is read by one of
the bounded readers below (``read_count``, ``parse_duration``, ``parse_offset``): ``inf``, ``1e999``, ``NaN``
or a thousand digits are refused as values, never raised as ``OverflowError`` from deep inside. A field
the ad cannot play without (its ``<Duration>``) sets that ad aside with VAST error 101, reported to that
ad's own ``<Error>`` URLs; an optional one (a media file's size or bitrate, a pod ``sequence``, a progress
offset, a companion's size) is read as absent. Its neighbours in the document are untouched.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

__all__ = [
    "MAX_VAST_BYTES", "MAX_ADS_PER_DOCUMENT", "MAX_AD_SECONDS", "VastError", "MediaFile", "LinearCreative",
    "Companion", "NonLinear", "VastAd", "VastDocument", "ResolvedAd", "ErrorReport", "Resolution", "FetchFailed",
    "parse_vast", "parse_duration", "parse_offset", "read_count", "progress_key", "progress_offset", "resolve",
    "resolve_with", "choose_media_file", "MediaProfile", "DEFAULT_PROFILE", "expand_macros", "TRACKED_EVENTS",
]

log = logging.getLogger("sidecast.ads.vast")

MAX_VAST_BYTES = 512 * 1024
MAX_ADS_PER_DOCUMENT = 32     # <Ad>s read from one response; the rest are not parsed (a pod is a few ads)
MAX_AD_SECONDS = 86_400.0     # a duration or offset beyond a day is not a real ad: refused as a value
MAX_COUNT = 1_000_000_000     # widths, heights, bitrates, sequence numbers: above this they are junk
TRACKED_EVENTS = ("start", "firstQuartile", "midpoint", "thirdQuartile", "complete")

# VAST error codes we report (IAB VAST 4.x, section "Error Codes")
XML_PARSE_ERROR = 100
VAST_SCHEMA_ERROR = 101
VERSION_UNSUPPORTED = 102
WRAPPER_TIMEOUT = 301
WRAPPER_LIMIT = 302
NO_ADS_AFTER_WRAPPER = 303
NO_SUPPORTED_MEDIA = 403


class VastError(ValueError):
    """VAST that cannot be used; `code` is the IAB error code to report to the ad server."""

    def __init__(self, message: str, code: int = XML_PARSE_ERROR) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class MediaFile:
    uri: str
    mime_type: str = ""
    delivery: str = "progressive"
    width: int = 0
    height: int = 0
    bitrate: int = 0            # kbit/s, 0 when not given
    api_framework: str = ""


@dataclass(frozen=True)
class LinearCreative:
    """A <Linear> creative. ``tracking`` maps an event to its URLs; progress events are keyed
    ``progress@<offset>`` with the offset as written normalised (``5`` seconds or ``25%``), and become
    ``progress@<seconds>`` once the ad's duration is known (``ResolvedAd``)."""

    id: str = ""
    duration: float = 0.0
    media_files: tuple[MediaFile, ...] = ()
    tracking: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    click_through: str = ""
    click_tracking: tuple[str, ...] = ()
    skip_offset: float | None = None   # seconds; None = not skippable (or not readable)


@dataclass(frozen=True)
class Companion:
    """A companion (display ad shown beside the video) or a non-linear overlay: one resource to show, where
    a click goes, and its trackers. Passed through to players (SGAI asset lists), never rendered by us."""

    id: str = ""
    width: int = 0
    height: int = 0
    resource_type: str = "static"       # static (an image or script URL), iframe (a URL), html (markup)
    resource: str = ""
    creative_type: str = ""             # MIME type of a static resource
    click_through: str = ""
    click_tracking: tuple[str, ...] = ()
    tracking: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # creativeView, ...
    ad_slot_id: str = ""
    min_suggested_duration: float | None = None   # non-linear: seconds to show it at least


NonLinear = Companion
"""A non-linear ad (overlay) carries the same fields as a companion; ``VastAd.nonlinears`` holds them."""


@dataclass(frozen=True)
class VastAd:
    """One <Ad>: inline (playable) or a wrapper pointing further up the chain."""

    id: str
    sequence: int | None
    is_wrapper: bool
    ad_system: str = ""
    title: str = ""
    advertiser: str = ""
    impressions: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    creatives: tuple[LinearCreative, ...] = ()
    ad_tag_uri: str = ""
    follow_additional_wrappers: bool = True
    allow_multiple_ads: bool = False
    problem: tuple[int, str] | None = None   # an ad that parsed as a whole but is unusable: (code, why)
    companions: tuple[Companion, ...] = ()
    nonlinears: tuple[Companion, ...] = ()


@dataclass(frozen=True)
class VastDocument:
    version: str
    ads: tuple[VastAd, ...]
    errors: tuple[str, ...] = ()   # root <Error>: where to report "no ad"
    dropped: int = 0               # <Ad>s past the per-document cap, not read


@dataclass(frozen=True)
class ResolvedAd:
    """A playable ad with every wrapper's impressions, trackers and error URLs folded in."""

    id: str
    sequence: int | None
    ad_system: str
    title: str
    advertiser: str
    duration: float
    media_files: tuple[MediaFile, ...]
    impressions: tuple[str, ...]
    tracking: Mapping[str, tuple[str, ...]]
    errors: tuple[str, ...]
    click_through: str = ""
    click_tracking: tuple[str, ...] = ()
    creative_id: str = ""
    companions: tuple[Companion, ...] = ()
    nonlinears: tuple[Companion, ...] = ()


@dataclass(frozen=True)
class ErrorReport:
    urls: tuple[str, ...]
    code: int
    reason: str


@dataclass(frozen=True)
class Resolution:
    ads: tuple[ResolvedAd, ...]
    errors: tuple[ErrorReport, ...]


class FetchFailed(Exception):
    """Sent into the resolver instead of a body when a fetch fails: VAST error 301 (URI unavailable or timed
    out), or 303 (no ads) when the ad server answered "no ad" without a document (`no_ad`, HTTP 204).

    `sent`: a request had started to go out before the fetch failed (it timed out or broke while waiting
    for the answer), so the server may have acted on it. A VAST fetch may be tried again regardless; a
    tracking ping must not be, or a tracker that counted it and answered late counts it twice."""

    def __init__(self, message: str, timeout: bool = False, no_ad: bool = False, sent: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.no_ad = no_ad
        self.sent = sent


# ---------------------------------------------------------------- bounded readers of numbers and times

_COUNT = re.compile(r"^\s*\+?0*(\d{1,10})(?:\.0*)?\s*$")


def read_count(value: str | None, limit: int = MAX_COUNT) -> int | None:
    """A non-negative integer attribute (width, height, bitrate, sequence): None when absent or not a plain
    number of at most `limit` ("640", "640.0" and " 640 " are read; "inf", "1e3", "-1", 11+ digits are not)."""
    if value is None:
        return None
    m = _COUNT.match(value)
    if m is None:
        return None
    n = int(m.group(1))
    return n if n <= limit else None


_DURATION = re.compile(r"^(\d{1,6}):([0-5]?\d):([0-5]?\d)(?:\.(\d+))?$")


def parse_duration(text: str) -> float:
    """VAST's HH:MM:SS(.mmm) to seconds, at most a day; raises VastError (101) on anything else."""
    m = _DURATION.match(text.strip())
    if not m:
        raise VastError(f"bad VAST duration {text[:40]!r} (expected HH:MM:SS or HH:MM:SS.mmm)", VAST_SCHEMA_ERROR)
    frac = float("0." + m.group(4)[:9]) if m.group(4) else 0.0
    seconds = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + int(m.group(3)) + frac
    if seconds > MAX_AD_SECONDS:
        raise VastError(f"VAST duration {text[:40]!r} is over a day", VAST_SCHEMA_ERROR)
    return seconds


_PERCENT = re.compile(r"^(\d{1,3})(?:\.(\d+))?%$")


def parse_offset(text: str | None) -> tuple[float, bool] | None:
    """An offset (skipoffset, progress, VMAP timeOffset in time form): (seconds, False) for HH:MM:SS(.mmm),
    (percent, True) for n%, None when absent or unreadable (never raises)."""
    if text is None:
        return None
    t = text.strip()
    m = _PERCENT.match(t)
    if m:
        pct = int(m.group(1)) + (float("0." + m.group(2)[:9]) if m.group(2) else 0.0)
        return (pct, True) if pct <= 100 else None
    try:
        return parse_duration(t), False
    except VastError:
        return None


def progress_key(seconds: float) -> str:
    """The tracking key of a progress event at `seconds` into the ad (what ResolvedAd.tracking uses)."""
    return f"progress@{seconds:.3f}".rstrip("0").rstrip(".")


def progress_offset(key: str) -> float | None:
    """Seconds into the ad of a resolved progress key; None for any other event."""
    if not key.startswith("progress@") or key.endswith("%"):
        return None
    try:
        v = float(key[9:])
    except ValueError:
        return None
    return v if math.isfinite(v) and 0 <= v <= MAX_AD_SECONDS else None


# ---------------------------------------------------------------- parsing

def _local(tag: object) -> str:
    t = tag if isinstance(tag, str) else ""
    return t.rsplit("}", 1)[-1]


def _children(el: Element | None, name: str) -> list[Element]:
    if el is None:
        return []
    return [c for c in el if _local(c.tag) == name]


def _child(el: Element | None, name: str) -> Element | None:
    if el is None:
        return None
    for c in el:
        if _local(c.tag) == name:
            return c
    return None


def _text(el: Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _texts(el: Element | None, name: str) -> tuple[str, ...]:
    if el is None:
        return ()
    return tuple(t for t in (_text(c) for c in _children(el, name)) if t)


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("true", "1", "yes")


def _tracking(parent: Element | None) -> dict[str, tuple[str, ...]]:
    """<TrackingEvents> of a creative: event → URLs; progress events keyed by their offset, dropped when
    the offset cannot be read (we could not know when to fire them)."""
    out: dict[str, list[str]] = {}
    for t in _children(_child(parent, "TrackingEvents"), "Tracking"):
        url = _text(t)
        event = (t.get("event") or "").strip()
        if not url or not event:
            continue
        if event == "progress":
            off = parse_offset(t.get("offset"))
            if off is None:
                log.info("progress tracker %s dropped: unreadable offset %r", url[:80], (t.get("offset") or "")[:40])
                continue
            event = f"progress@{off[0]:g}%" if off[1] else progress_key(off[0])
        out.setdefault(event, []).append(url)
    return {k: tuple(v) for k, v in out.items()}


def _linear(creative: Element, linear: Element, wrapper: bool) -> LinearCreative:
    clicks = _child(linear, "VideoClicks")
    media: list[MediaFile] = []
    for m in _children(_child(linear, "MediaFiles"), "MediaFile"):
        uri = _text(m)
        if uri:
            media.append(MediaFile(
                uri=uri, mime_type=m.get("type", "").strip(), delivery=m.get("delivery", "progressive").strip(),
                width=read_count(m.get("width")) or 0, height=read_count(m.get("height")) or 0,
                bitrate=read_count(m.get("bitrate") or m.get("maxBitrate")) or 0,
                api_framework=m.get("apiFramework", "").strip()))
    duration_el = _child(linear, "Duration")
    if wrapper:
        duration = 0.0
    elif duration_el is None:
        raise VastError("inline <Linear> has no <Duration>", VAST_SCHEMA_ERROR)
    else:
        duration = parse_duration(_text(duration_el))
    skip = parse_offset(linear.get("skipoffset"))
    skip_s = None if skip is None else (skip[0] * duration / 100 if skip[1] else skip[0])
    return LinearCreative(
        id=creative.get("id") or creative.get("adId") or "", duration=duration, media_files=tuple(media),
        tracking=_tracking(linear), click_through=_text(_child(clicks, "ClickThrough")),
        click_tracking=_texts(clicks, "ClickTracking"), skip_offset=skip_s)


def _resource(el: Element) -> tuple[str, str, str]:
    """(type, resource, creative type) of a companion or non-linear: the first resource it offers."""
    for name, kind in (("StaticResource", "static"), ("IFrameResource", "iframe"), ("HTMLResource", "html")):
        r = _child(el, name)
        if r is not None and _text(r):
            return kind, _text(r), (r.get("creativeType") or "").strip()
    return "", "", ""


def _companion(el: Element, click_name: str, tracking: Mapping[str, tuple[str, ...]] | None = None) -> Companion | None:
    kind, resource, ctype = _resource(el)
    if not resource:
        return None
    mind = parse_offset(el.get("minSuggestedDuration"))
    return Companion(
        id=(el.get("id") or "").strip(), width=read_count(el.get("width"), 100_000) or 0,
        height=read_count(el.get("height"), 100_000) or 0, resource_type=kind, resource=resource,
        creative_type=ctype, click_through=_text(_child(el, f"{click_name}ClickThrough")),
        click_tracking=_texts(el, f"{click_name}ClickTracking"),
        tracking=dict(tracking) if tracking is not None else _tracking(el),
        ad_slot_id=(el.get("adSlotID") or el.get("adSlotId") or "").strip(),
        min_suggested_duration=None if mind is None or mind[1] else mind[0])


def _ad(el: Element) -> VastAd | None:
    body = _child(el, "InLine")
    wrapper = body is None
    if body is None:
        body = _child(el, "Wrapper")
    if body is None:
        return None
    ad_id = (el.get("id") or "")[:128]
    errors = _texts(body, "Error")   # read first: wherever the rest fails, this ad's server hears why
    try:
        creatives: list[LinearCreative] = []
        companions: list[Companion] = []
        nonlinears: list[Companion] = []
        problem: tuple[int, str] | None = None
        for c in _children(_child(body, "Creatives"), "Creative"):
            lin = _child(c, "Linear")
            if lin is not None:
                try:
                    creatives.append(_linear(c, lin, wrapper))
                except VastError as exc:   # one bad ad must not sink its neighbours in a pod
                    problem = (exc.code, f"ad {ad_id!r}: {exc}")
            for comp in _children(_child(c, "CompanionAds"), "Companion"):
                cc = _companion(comp, "Companion")
                if cc is not None:
                    companions.append(cc)
            nla = _child(c, "NonLinearAds")
            if nla is not None:
                shared = _tracking(nla)
                for nl in _children(nla, "NonLinear"):
                    n = _companion(nl, "NonLinear", shared)
                    if n is not None:
                        nonlinears.append(n)
        seq = el.get("sequence")
        sequence = read_count(seq) if seq is not None else None
        return VastAd(
            id=ad_id, sequence=sequence, is_wrapper=wrapper,
            ad_system=_text(_child(body, "AdSystem")), title=_text(_child(body, "AdTitle")),
            advertiser=_text(_child(body, "Advertiser")), impressions=_texts(body, "Impression"), errors=errors,
            creatives=tuple(creatives), ad_tag_uri=_text(_child(body, "VASTAdTagURI")),
            follow_additional_wrappers=_bool(body.get("followAdditionalWrappers"), True),
            allow_multiple_ads=_bool(body.get("allowMultipleAds"), False), problem=problem,
            companions=tuple(companions), nonlinears=tuple(nonlinears))
    except (ValueError, OverflowError, TypeError, RecursionError) as exc:
        # a reader above let something through: still only this ad is lost, and its server is told
        log.warning("VAST ad %r set aside: %s", ad_id, exc)
        return VastAd(id=ad_id, sequence=None, is_wrapper=wrapper, errors=errors,
                      problem=(VAST_SCHEMA_ERROR, f"ad {ad_id!r}: unreadable field ({type(exc).__name__})"))


def parse_vast(data: bytes | str, max_bytes: int = MAX_VAST_BYTES,
               max_ads: int = MAX_ADS_PER_DOCUMENT) -> VastDocument:
    """Parse one VAST response; raises VastError (with its IAB code) only when the document as a whole is
    unusable. At most `max_ads` <Ad> elements are read (a response with thousands costs no more)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise VastError(f"VAST response is {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        root = DET.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise VastError(f"VAST refused: {type(exc).__name__} (DTDs and entities are not allowed)") from exc
    except Exception as exc:  # ParseError and friends from expat
        raise VastError(f"VAST is not well-formed XML: {str(exc)[:200]}") from exc
    if _local(root.tag) != "VAST":
        raise VastError(f"root element is <{_local(root.tag)[:40]}>, not <VAST>", VAST_SCHEMA_ERROR)
    version = (root.get("version") or "")[:32]
    if version and not version.strip().startswith(("2", "3", "4")):
        raise VastError(f"VAST version {version!r} is not supported (2.x, 3.x, 4.x are)", VERSION_UNSUPPORTED)
    elements = _children(root, "Ad")
    ads = tuple(a for a in (_ad(e) for e in elements[:max(0, max_ads)]) if a is not None)
    return VastDocument(version=version, ads=ads, errors=_texts(root, "Error"),
                        dropped=max(0, len(elements) - max(0, max_ads)))


# ---------------------------------------------------------------- wrapper chains (sans-IO)

@dataclass(frozen=True)
class _Inherited:
    impressions: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    tracking: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    click_tracking: tuple[str, ...] = ()

    def plus(self, ad: VastAd) -> _Inherited:
        tracking = {k: tuple(v) for k, v in self.tracking.items()}
        clicks = list(self.click_tracking)
        for c in ad.creatives:
            for ev, urls in c.tracking.items():
                tracking[ev] = tracking.get(ev, ()) + tuple(urls)
            clicks.extend(c.click_tracking)
        return _Inherited(self.impressions + ad.impressions, self.errors + ad.errors, tracking, tuple(clicks))


def _normalised_tracking(tracking: Mapping[str, tuple[str, ...]], duration: float) -> dict[str, tuple[str, ...]]:
    """Progress events in percent become seconds of this ad; offsets past its end are dropped."""
    out: dict[str, tuple[str, ...]] = {}
    for ev, urls in tracking.items():
        key = ev
        if ev.startswith("progress@"):
            spec = ev[9:]
            try:
                sec = float(spec[:-1]) * duration / 100 if spec.endswith("%") else float(spec)
            except ValueError:
                continue
            if not (math.isfinite(sec) and 0 <= sec <= duration + 1e-6):
                continue
            key = progress_key(sec)
        out[key] = out.get(key, ()) + tuple(urls)
    return out


def _inline_to_resolved(ad: VastAd, inh: _Inherited) -> ResolvedAd | ErrorReport:
    linear = next((c for c in ad.creatives if c.media_files), None)
    errors = inh.errors + ad.errors
    if linear is None:
        return ErrorReport(errors, NO_SUPPORTED_MEDIA, f"ad {ad.id!r} has no linear creative with media files")
    tracking = {k: tuple(v) for k, v in inh.tracking.items()}
    for ev, urls in linear.tracking.items():
        tracking[ev] = tracking.get(ev, ()) + tuple(urls)
    return ResolvedAd(
        id=ad.id, sequence=ad.sequence, ad_system=ad.ad_system, title=ad.title, advertiser=ad.advertiser,
        duration=linear.duration, media_files=linear.media_files, impressions=inh.impressions + ad.impressions,
        tracking=_normalised_tracking(tracking, linear.duration), errors=errors,
        click_through=linear.click_through, click_tracking=inh.click_tracking + linear.click_tracking,
        creative_id=linear.id, companions=ad.companions, nonlinears=ad.nonlinears)


def resolve(url: str, max_depth: int = 5, max_fetches: int = 10, max_bytes: int = MAX_VAST_BYTES,
            max_ads: int = MAX_ADS_PER_DOCUMENT, first: bytes | None = None,
            ) -> Generator[str, bytes | FetchFailed, Resolution]:
    """Follow a VAST tag to playable ads. Yields each URL to fetch; send back its body or a FetchFailed.

    `max_depth` counts wrappers: a chain of more than `max_depth` wrappers is cut with error 302; at most
    `max_fetches` documents are fetched and `max_ads` ads read from each (the fan-out of a wrapper that
    allows several ads is bounded by both). `first`, when given, is the tag's document itself (VAST inline
    in a VMAP break): it is not fetched.
    """
    ads: list[ResolvedAd] = []
    errors: list[ErrorReport] = []
    fetches = 0

    def walk(tag: str, depth: int, inh: _Inherited, may_wrap: bool, multi: bool,
             ) -> Generator[str, bytes | FetchFailed, list[ResolvedAd]]:
        nonlocal fetches
        fetches += 1
        body: bytes | FetchFailed
        if depth == 0 and first is not None:
            body = first
        else:
            body = yield tag
        if isinstance(body, FetchFailed):
            # 301 covers both "unavailable" and "timed out" for a VAST URI (IAB VAST 4.x error table);
            # an answer of "no ad" is the same as an empty VAST document: 303
            code = NO_ADS_AFTER_WRAPPER if body.no_ad else WRAPPER_TIMEOUT
            errors.append(ErrorReport(inh.errors, code, f"fetching {tag}: {body}"))
            return []
        try:
            doc = parse_vast(body, max_bytes, max_ads)
        except VastError as exc:
            errors.append(ErrorReport(inh.errors, exc.code, str(exc)))
            return []
        except Exception as exc:  # a parser bug must still cost only this document
            log.exception("VAST from %s could not be read", tag)
            errors.append(ErrorReport(inh.errors, XML_PARSE_ERROR, f"unreadable VAST from {tag}: {type(exc).__name__}"))
            return []
        if not doc.ads:
            errors.append(ErrorReport(inh.errors + doc.errors, NO_ADS_AFTER_WRAPPER, f"no ads in response from {tag}"))
            return []
        chosen = sorted(doc.ads, key=lambda a: (a.sequence is None, a.sequence or 0))
        if not multi:
            # a wrapper that does not allow pods takes one ad: the first standalone one, else the first
            chosen = [next((a for a in doc.ads if a.sequence is None), chosen[0])]
        found: list[ResolvedAd] = []
        for ad in chosen:
            if ad.problem is not None:
                errors.append(ErrorReport(inh.errors + ad.errors, *ad.problem))
                continue
            if not ad.is_wrapper:
                r = _inline_to_resolved(ad, inh)
                if isinstance(r, ErrorReport):
                    errors.append(r)
                else:
                    found.append(replace(r, sequence=ad.sequence if multi else r.sequence))
                continue
            if not ad.ad_tag_uri:
                errors.append(ErrorReport(inh.errors + ad.errors, VAST_SCHEMA_ERROR, f"wrapper {ad.id!r} has no VASTAdTagURI"))
            elif not may_wrap or depth + 1 > max_depth or fetches >= max_fetches:
                errors.append(ErrorReport(inh.errors + ad.errors, WRAPPER_LIMIT,
                                          f"wrapper limit reached at depth {depth + 1} (limit {max_depth})"))
            else:
                before = len(errors)
                sub = yield from walk(ad.ad_tag_uri, depth + 1, inh.plus(ad), ad.follow_additional_wrappers,
                                      ad.allow_multiple_ads)
                if not sub:
                    # the chain below ended in nothing playable: this wrapper's ad servers hear about it
                    if len(errors) == before:
                        errors.append(ErrorReport(inh.errors + ad.errors, NO_ADS_AFTER_WRAPPER,
                                                  f"wrapper {ad.id!r} led to no playable ad"))
                found.extend(replace(s, sequence=ad.sequence) if ad.sequence is not None and not ad.allow_multiple_ads
                             else s for s in sub)
        return found

    ads = yield from walk(url, 0, _Inherited(), True, True)
    return Resolution(tuple(ads), tuple(e for e in errors if e.urls) + tuple(e for e in errors if not e.urls))


def resolve_with(url: str, fetch: Callable[[str], bytes], **limits: int) -> Resolution:
    """Drive `resolve` with a blocking fetch function that raises FetchFailed (tests, CLI tools)."""
    gen = resolve(url, **limits)  # type: ignore[arg-type]
    try:
        target = next(gen)
        while True:
            try:
                body: bytes | FetchFailed = fetch(target)
            except FetchFailed as exc:
                body = exc
            target = gen.send(body)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


# ---------------------------------------------------------------- media file choice

HLS_TYPES = ("application/x-mpegurl", "application/vnd.apple.mpegurl")


@dataclass(frozen=True)
class MediaProfile:
    """What the content looks like, so the ad that plays in it looks alike (size, bitrate, container)."""

    mime_types: tuple[str, ...] = HLS_TYPES + ("video/mp4",)
    height: int = 720
    max_bitrate: int = 0       # kbit/s; 0 = no ceiling


DEFAULT_PROFILE = MediaProfile()


def choose_media_file(files: Iterable[MediaFile], profile: MediaProfile = DEFAULT_PROFILE) -> MediaFile | None:
    """The media file closest to the content: a preferred container, then nearest height, then bitrate.

    VPAID and other interactive API frameworks are skipped: a stitched or interstitial ad must be plain video.
    """
    wanted = [t.lower() for t in profile.mime_types]
    best: tuple[tuple[float, ...], MediaFile] | None = None
    for f in files:
        mime = f.mime_type.lower()
        if f.api_framework or mime not in wanted:
            continue
        if not f.uri.lower().startswith(("http://", "https://")):
            continue
        over = profile.max_bitrate and f.bitrate > profile.max_bitrate
        height_gap = abs(f.height - profile.height) if f.height else 10_000
        key = (float(wanted.index(mime)), 1.0 if over else 0.0, float(height_gap), -float(f.bitrate))
        if best is None or key < best[0]:
            best = (key, f)
    return best[1] if best else None


# ---------------------------------------------------------------- macros

_MACRO = re.compile(r"\[([A-Z_][A-Z0-9_]*)\]")


def expand_macros(template: str, values: Mapping[str, object], *, now: float | None = None) -> str:
    """Replace [MACRO]s with URL-encoded values; [CACHEBUSTING] and [TIMESTAMP] are always available.

    Unknown macros are left as they are, as VAST asks, so a downstream server can still expand them.
    """
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name == "CACHEBUSTING":
            return f"{random.randrange(10_000_000, 100_000_000)}"
        if name == "TIMESTAMP":
            t = time.gmtime(time.time() if now is None else now)
            return urllib.parse.quote(time.strftime("%Y-%m-%dT%H:%M:%SZ", t), safe="")
        if name in values:
            return urllib.parse.quote(str(values[name]), safe="")
        return m.group(0)

    return _MACRO.sub(sub, template)
