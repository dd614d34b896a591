"""VMAP 1.0: a VOD asset's ad schedule (pre-, mid- and post-roll breaks) as plain records.

An ad server that answers VMAP instead of VAST says *where* the breaks of one asset go and, for each, where
its ads come from: a VAST tag (``<AdTagURI>``) or the VAST document itself (``<VASTAdData>``). The
decisioning service turns the breaks into ``Break``s for the SSAI session of that asset (``schedule``) and
for SGAI interstitials (``sidecast ads interstitials --vmap``), and resolves each break's VAST when the
break is decided, so a VMAP break is filled by the same rules as any other.

What is read (IAB VMAP 1.0.1): ``AdBreak`` with ``timeOffset`` (``start``, ``end``, ``HH:MM:SS(.mmm)``,
``n%``), ``breakType`` (only breaks that allow ``linear`` are scheduled: we stitch or signal video),
``breakId``, ``repeatAfter``; ``AdSource`` with ``allowMultipleAds`` and ``followRedirects``; ``AdTagURI``
and ``VASTAdData``; the break's ``breakStart`` / ``breakEnd`` / ``error`` trackers. What is not:
positional offsets (``#n``: there are no cue points to count in HLS), ``CustomAdData``, ``Extensions``.
Both namespaces met in the wild (``http://www.iab.net/videosuite/vmap`` and ``http://www.iab.net/vmap-1.0``)
are read, since elements are matched by local name. Every time is read with the bounded readers of
``ads.vast``: a hostile value loses its own break (logged), never the document.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from xml.etree import ElementTree as ET
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as DET
from defusedxml import DefusedXmlException

from sidecast.ads.vast import MAX_VAST_BYTES, VastError, parse_offset
from sidecast.hls.breaks import Break

__all__ = ["VmapError", "VmapBreak", "VmapDocument", "parse_vmap", "schedule", "MAX_BREAKS"]

log = logging.getLogger("sidecast.ads.vmap")

MAX_BREAKS = 100            # breaks scheduled from one document, repeats included
MIN_REPEAT_SECONDS = 10.0   # a repeatAfter shorter than this is not a real schedule

OffsetKind = Literal["start", "end", "time", "percent"]
_ID_BAD = re.compile(r"[^A-Za-z0-9._-]")


class VmapError(ValueError):
    """A VMAP document that cannot be used as a whole (not XML, not VMAP, too big); `code` as VAST's."""

    def __init__(self, message: str, code: int = 100) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class VmapBreak:
    """One <AdBreak>: when (offset), which kinds of ads, and where they come from."""

    id: str
    offset_kind: OffsetKind
    offset: float = 0.0                      # seconds ("time") or percent ("percent")
    break_types: tuple[str, ...] = ("linear",)
    ad_tag_uri: str = ""
    vast: bytes | None = None                # VAST inline in the VMAP (VASTAdData), serialised again
    allow_multiple_ads: bool = True
    follow_redirects: bool = True
    repeat_after: float | None = None
    tracking: Mapping[str, tuple[str, ...]] = field(default_factory=dict)   # breakStart, breakEnd, error

    @property
    def linear(self) -> bool:
        return "linear" in self.break_types

    @property
    def has_ads(self) -> bool:
        return bool(self.ad_tag_uri) or self.vast is not None


@dataclass(frozen=True)
class VmapDocument:
    version: str
    breaks: tuple[VmapBreak, ...]
    ignored: tuple[str, ...] = ()            # one line per AdBreak that could not be read, and why


def _local(tag: object) -> str:
    return (tag if isinstance(tag, str) else "").rsplit("}", 1)[-1]


def _child(el: Element | None, name: str) -> Element | None:
    if el is None:
        return None
    return next((c for c in el if _local(c.tag) == name), None)


def _children(el: Element | None, name: str) -> list[Element]:
    return [] if el is None else [c for c in el if _local(c.tag) == name]


def _text(el: Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def _bool(value: str | None, default: bool) -> bool:
    return default if value is None else value.strip().lower() in ("true", "1", "yes")


def _offset(text: str) -> tuple[OffsetKind, float]:
    t = text.strip()
    if t == "start":
        return "start", 0.0
    if t == "end":
        return "end", 0.0
    if t.startswith("#"):
        raise ValueError(f"positional timeOffset {t[:20]!r} is not supported (no cue points to count in HLS)")
    off = parse_offset(t)
    if off is None:
        raise ValueError(f"unreadable timeOffset {t[:40]!r}")
    return ("percent" if off[1] else "time"), off[0]


def _break_id(raw: str, index: int) -> str:
    bid = _ID_BAD.sub("-", raw.strip())[:48].strip("-.")
    return bid if bid and bid[0].isalnum() else f"vmap-{index}"


def _ad_break(el: Element, index: int) -> VmapBreak:
    kind, value = _offset(el.get("timeOffset") or "")
    types = tuple(t.strip().lower() for t in (el.get("breakType") or "linear").split(",") if t.strip())
    repeat = None
    if el.get("repeatAfter") is not None:
        r = parse_offset(el.get("repeatAfter"))
        if r is None or r[1] or r[0] < MIN_REPEAT_SECONDS:
            raise ValueError(f"unusable repeatAfter {(el.get('repeatAfter') or '')[:40]!r} "
                             f"(a time of at least {MIN_REPEAT_SECONDS:g} s)")
        repeat = r[0]
    source = _child(el, "AdSource")
    tag, vast = "", None
    allow_multi, follow = True, True
    if source is not None:
        allow_multi = _bool(source.get("allowMultipleAds"), True)
        follow = _bool(source.get("followRedirects"), True)
        tag = _text(_child(source, "AdTagURI"))
        data = _child(source, "VASTAdData")
        if data is None:
            data = _child(source, "VASTData")   # VMAP 1.0's first draft name, still written by some servers
        if data is not None:
            inner = next((c for c in data if _local(c.tag) == "VAST"), None)
            if inner is not None:
                vast = ET.tostring(inner, encoding="utf-8")
    tracking: dict[str, list[str]] = {}
    for t in _children(_child(el, "TrackingEvents"), "Tracking"):
        url, ev = _text(t), (t.get("event") or "").strip()
        if url and ev:
            tracking.setdefault(ev, []).append(url)
    return VmapBreak(_break_id(el.get("breakId") or "", index), kind, value, types, tag, vast, allow_multi, follow,
                     repeat, {k: tuple(v) for k, v in tracking.items()})


def parse_vmap(data: bytes | str, max_bytes: int = MAX_VAST_BYTES) -> VmapDocument:
    """Parse a VMAP document; raises VmapError only when it is unusable as a whole."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > max_bytes:
        raise VmapError(f"VMAP response is {len(raw)} bytes, over the {max_bytes}-byte limit")
    try:
        root = DET.fromstring(raw, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise VmapError(f"VMAP refused: {type(exc).__name__} (DTDs and entities are not allowed)") from exc
    except Exception as exc:
        raise VmapError(f"VMAP is not well-formed XML: {str(exc)[:200]}") from exc
    if _local(root.tag) != "VMAP":
        raise VmapError(f"root element is <{_local(root.tag)[:40]}>, not <VMAP>", 101)
    version = (root.get("version") or "")[:16]
    breaks: list[VmapBreak] = []
    ignored: list[str] = []
    seen: set[str] = set()
    for i, el in enumerate(_children(root, "AdBreak")[:MAX_BREAKS]):
        try:
            b = _ad_break(el, i)
        except (ValueError, VastError, OverflowError) as exc:
            ignored.append(f"AdBreak {i} ({(el.get('breakId') or '')[:40]!r}): {exc}")
            continue
        if b.id in seen:
            b = VmapBreak(f"{b.id}-{i}", b.offset_kind, b.offset, b.break_types, b.ad_tag_uri, b.vast,
                          b.allow_multiple_ads, b.follow_redirects, b.repeat_after, b.tracking)
        seen.add(b.id)
        breaks.append(b)
    for line in ignored:
        log.warning("VMAP: ignoring %s", line)
    return VmapDocument(version, tuple(breaks), tuple(ignored))


def schedule(doc: VmapDocument, content_duration: float | None) -> list[tuple[Break, VmapBreak]]:
    """The linear breaks of `doc` on a VOD asset of `content_duration` seconds, in time order, as inserts
    (duration 0: VMAP says where, the pod says how long): ``start`` is a pre-roll, ``end`` a post-roll,
    times and percentages mid-rolls (a percentage needs the duration: without one, live, it is skipped),
    ``repeatAfter`` expanded up to the end. At most MAX_BREAKS."""
    out: list[tuple[Break, VmapBreak]] = []
    for b in doc.breaks:
        if not b.linear or not b.has_ads:
            continue
        if b.offset_kind == "start":
            out.append((Break(b.id, 0.0, 0.0, "pre", source="vmap"), b))
            continue
        if b.offset_kind == "end":
            if content_duration is not None:
                out.append((Break(b.id, content_duration, 0.0, "post", source="vmap"), b))
            continue
        if b.offset_kind == "percent":
            if content_duration is None:
                continue
            t = content_duration * b.offset / 100
        else:
            t = b.offset
        if content_duration is not None and t > content_duration:
            continue
        k = 0
        while len(out) < MAX_BREAKS:
            pos: Literal["pre", "mid", "post"] = "pre" if t <= 0 else "post" if content_duration is not None and t >= content_duration else "mid"
            out.append((Break(b.id if k == 0 else f"{b.id}-r{k}", t, 0.0, pos, source="vmap"), b))
            if b.repeat_after is None:
                break
            t += b.repeat_after
            k += 1
            if content_duration is None or t >= content_duration:
                break
    out.sort(key=lambda x: (x[0].start, x[0].position != "pre"))
    return out[:MAX_BREAKS]
