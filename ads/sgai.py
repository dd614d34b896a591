"""SGAI: the same ad breaks as HLS Interstitials, for players that fetch and play the ads themselves.

Each break becomes one EXT-X-DATERANGE with CLASS="com.apple.hls.interstitial" (draft-pantos-hls-rfc8216bis,
Appendix D, "Interstitials"), anchored to EXT-X-PROGRAM-DATE-TIME. The primary playlist is not otherwise
changed: the player pauses the content, plays the assets, and resumes. Pure functions over
``MediaPlaylist``; ``sidecast ads interstitials`` and the decisioning API wrap them.

Rules followed (section numbers of rfc8216bis):
- §4.4.5.1 EXT-X-DATERANGE: ID and START-DATE are required; DURATION and PLANNED-DURATION are
  non-negative decimal-floating-point; a playlist with a DATERANGE MUST contain EXT-X-PROGRAM-DATE-TIME, so
  one is added when the source has none. CUE is an enumerated-string-list of PRE, POST, ONCE; PRE and POST
  are mutually exclusive.
- §6.2.1: a DATERANGE is not removed from a live playlist while the range it describes still overlaps the
  segments of the playlist, and its attributes never change between reloads (the same ID means the same
  interstitial).
- Appendix D.2 (interstitial attributes): exactly one of X-ASSET-URI / X-ASSET-LIST; X-RESUME-OFFSET
  (absent = resume after the interstitial's duration, which is what live replacement wants; 0 = VOD insert,
  content is not skipped); X-PLAYOUT-LIMIT; X-SNAP (OUT, IN); X-RESTRICT (SKIP, JUMP); X-CONTENT-MAY-VARY
  (YES/NO); X-TIMELINE-OCCUPIES (POINT/RANGE); X-TIMELINE-STYLE (HIGHLIGHT/PRIMARY).
- Appendix D (asset list): the X-ASSET-LIST URI answers a JSON object ``{"ASSETS": [{"URI": ..,
  "DURATION": ..}, ...]}`` (see ``asset_list_json``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sidecast.hls import DateRange, MediaPlaylist, PlaylistError, Segment, quote, timebase
from sidecast.hls.breaks import Break

from .models import AdPod

INTERSTITIAL_CLASS = "com.apple.hls.interstitial"
DEFAULT_PDT_START = datetime(2000, 1, 1, tzinfo=UTC)

_SNAP = ("OUT", "IN")
_RESTRICT = ("SKIP", "JUMP")
_CUE = ("PRE", "POST", "ONCE")


def _num(x: float) -> str:
    s = f"{x:.3f}".rstrip("0").rstrip(".")
    return s or "0"


@dataclass(frozen=True)
class Interstitial:
    """One interstitial event (Appendix D.2). ``to_daterange`` validates it against the spec."""

    id: str
    start_date: datetime
    asset_list: str | None = None
    asset_uri: str | None = None
    duration: float | None = None
    planned_duration: float | None = None
    resume_offset: float | None = None
    playout_limit: float | None = None
    snap: tuple[str, ...] = ()
    restrict: tuple[str, ...] = ()
    cue: tuple[str, ...] = ()
    timeline_occupies: str | None = None
    timeline_style: str | None = None
    content_may_vary: bool | None = None

    def to_daterange(self) -> DateRange:
        if (self.asset_list is None) == (self.asset_uri is None):
            raise ValueError(f"interstitial {self.id}: exactly one of X-ASSET-URI and X-ASSET-LIST (App. D.2)")
        for name, vals, allowed in (("X-SNAP", self.snap, _SNAP), ("X-RESTRICT", self.restrict, _RESTRICT),
                                    ("CUE", self.cue, _CUE)):
            bad = [v for v in vals if v not in allowed]
            if bad:
                raise ValueError(f"interstitial {self.id}: {name} values {bad} not in {allowed}")
        if "PRE" in self.cue and "POST" in self.cue:
            raise ValueError(f"interstitial {self.id}: CUE cannot hold both PRE and POST (§4.4.5.1)")
        for name, v in (("DURATION", self.duration), ("PLANNED-DURATION", self.planned_duration),
                        ("X-PLAYOUT-LIMIT", self.playout_limit)):
            if v is not None and v < 0:
                raise ValueError(f"interstitial {self.id}: {name} must not be negative")
        if self.timeline_occupies not in (None, "POINT", "RANGE"):
            raise ValueError(f"interstitial {self.id}: X-TIMELINE-OCCUPIES is POINT or RANGE")
        if self.timeline_style not in (None, "HIGHLIGHT", "PRIMARY"):
            raise ValueError(f"interstitial {self.id}: X-TIMELINE-STYLE is HIGHLIGHT or PRIMARY")
        a: dict[str, str] = {
            "ID": quote(self.id),
            "CLASS": quote(INTERSTITIAL_CLASS),
            "START-DATE": quote(timebase.format_pdt(self.start_date)),
        }
        if self.cue:
            a["CUE"] = quote(",".join(self.cue))
        if self.duration is not None:
            a["DURATION"] = _num(self.duration)
        if self.planned_duration is not None:
            a["PLANNED-DURATION"] = _num(self.planned_duration)
        if self.asset_uri is not None:
            a["X-ASSET-URI"] = quote(self.asset_uri)
        if self.asset_list is not None:
            a["X-ASSET-LIST"] = quote(self.asset_list)
        if self.resume_offset is not None:
            a["X-RESUME-OFFSET"] = _num(self.resume_offset)
        if self.playout_limit is not None:
            a["X-PLAYOUT-LIMIT"] = _num(self.playout_limit)
        if self.snap:
            a["X-SNAP"] = quote(",".join(self.snap))
        if self.restrict:
            a["X-RESTRICT"] = quote(",".join(self.restrict))
        if self.content_may_vary is not None:
            a["X-CONTENT-MAY-VARY"] = quote("YES" if self.content_may_vary else "NO")
        if self.timeline_occupies:
            a["X-TIMELINE-OCCUPIES"] = quote(self.timeline_occupies)
        if self.timeline_style:
            a["X-TIMELINE-STYLE"] = quote(self.timeline_style)
        return DateRange(a)


def ensure_program_date_time(pl: MediaPlaylist, start: datetime = DEFAULT_PDT_START) -> MediaPlaylist:
    """Give every segment a PDT when the playlist has none (§4.4.5.1 requires one with any DATERANGE).

    Existing PDTs are kept; segments without one get the previous segment's clock extrapolated, so
    they stay true where the source was (and a source without any starts at ``start``)."""
    pdts = pl.program_date_times()
    if all(p is not None for p in pdts):
        if all(s.program_date_time is not None for s in pl.segments):
            return pl
    clock = start
    segs: list[Segment] = []
    for seg, p in zip(pl.segments, pdts, strict=True):
        if p is not None:
            clock = p
        segs.append(replace(seg, program_date_time=clock))
        clock = clock + timedelta(seconds=seg.duration)
    return pl.copy(segments=segs)


def interstitial_for_break(brk: Break, start_date: datetime, asset_list: str, *, live: bool,
                           restrict: Sequence[str] = ("SKIP", "JUMP")) -> Interstitial:
    """The interstitial for a break.

    - pre-roll: CUE="PRE,ONCE"-style PRE, X-RESUME-OFFSET=0 (content starts where it was scheduled);
    - post-roll: CUE="POST";
    - live mid-roll: the ads *replace* the break's content: DURATION = the break, no X-RESUME-OFFSET (so
      the player rejoins at the live point after the ad, App. D.2), X-PLAYOUT-LIMIT = the break so a long
      asset list cannot drift behind live, X-SNAP="OUT,IN" to leave and rejoin at segment boundaries,
      X-TIMELINE-OCCUPIES="RANGE";
    - VOD mid-roll with a duration: replacement as well (X-RESUME-OFFSET = DURATION); duration 0: an
      insert (X-RESUME-OFFSET=0, X-TIMELINE-OCCUPIES="POINT").

    A break still open has no interstitial yet (ValueError): an interstitial's attributes never change
    between reloads (§6.2.1), so it is announced once its duration is known.
    """
    duration = brk.duration
    if duration is None:
        raise ValueError(f"break {brk.id} is still open: its interstitial waits for its duration")
    if brk.position == "pre":
        return Interstitial(brk.id, start_date, asset_list=asset_list, cue=("PRE",), resume_offset=0.0,
                            planned_duration=duration or None, restrict=tuple(restrict),
                            timeline_occupies="POINT")
    if brk.position == "post":
        return Interstitial(brk.id, start_date, asset_list=asset_list, cue=("POST",), resume_offset=0.0,
                            planned_duration=duration or None, restrict=tuple(restrict),
                            timeline_occupies="POINT")
    if live:
        return Interstitial(brk.id, start_date, asset_list=asset_list, duration=duration,
                            playout_limit=duration, snap=_SNAP, restrict=tuple(restrict),
                            timeline_occupies="RANGE")
    if duration > 0:
        return Interstitial(brk.id, start_date, asset_list=asset_list, duration=duration,
                            resume_offset=duration, playout_limit=duration,
                            restrict=tuple(restrict), timeline_occupies="RANGE")
    return Interstitial(brk.id, start_date, asset_list=asset_list, duration=0.0, resume_offset=0.0,
                        restrict=tuple(restrict), timeline_occupies="POINT")


def asset_list_url(template: str, brk: Break) -> str:
    """``{break_id}``, ``{duration}`` and ``{position}`` in the URL are filled from the break."""
    duration = "" if brk.duration is None else _num(brk.duration)
    return (template.replace("{break_id}", brk.id).replace("{duration}", duration)
            .replace("{position}", brk.position))


def add_interstitials(pl: MediaPlaylist, breaks: Iterable[Break], asset_list: str | Callable[[Break], str],
                      pdt_start: datetime = DEFAULT_PDT_START) -> MediaPlaylist:
    """The playlist with one interstitial DATERANGE per break (existing tags are kept).

    A break is placed by its ``start_date`` when it has one, else by ``start`` seconds from the first
    segment. In a live playlist a break whose range ended before the first segment is left out; one
    that still overlaps the window stays (§6.2.1).
    """
    if not pl.segments:
        raise PlaylistError("the playlist has no segments to anchor interstitials to")
    pl = ensure_program_date_time(pl, pdt_start)
    pdts = [p for p in pl.program_date_times()]
    times = pl.segment_times()
    first = pdts[0]
    assert first is not None
    last = pdts[-1]
    assert last is not None
    end: datetime = last + timedelta(seconds=pl.segments[-1].duration)
    live = not pl.endlist
    seg_dr: list[list[DateRange]] = [list(s.dateranges) for s in pl.segments]
    trailing = list(pl.trailing_dateranges)
    existing = {d.id for d in pl.dateranges()}
    for brk in breaks:
        if brk.id in existing or brk.duration is None:
            continue  # already announced, or still open (announced once its duration is known)
        if brk.start_date is not None:
            sd = brk.start_date
        else:
            # media seconds → the wall clock of the segment that holds them
            idx = max([i for i, t in enumerate(times) if t <= brk.start + 1e-6] or [0])
            base = pdts[idx]
            assert base is not None
            sd = base + timedelta(seconds=brk.start - times[idx])
        if brk.position == "post" and not live:
            sd = end
        elif brk.position == "pre":
            sd = first
        if live and sd + timedelta(seconds=brk.duration) < first:
            continue
        url = asset_list(brk) if callable(asset_list) else asset_list_url(asset_list, brk)
        dr = interstitial_for_break(brk, sd, url, live=live).to_daterange()
        # Write the tag next to the segment it starts in, so that it reads naturally and survives
        # tools that keep tags with segments; after the last segment it goes to the end (post-roll).
        at = next((i for i, p in enumerate(pdts) if p is not None and p + timedelta(
            seconds=pl.segments[i].duration) > sd), None)
        if at is None:
            trailing.append(dr)
        else:
            seg_dr[at].append(dr)
        existing.add(brk.id)
    segs = [replace(s, dateranges=tuple(d)) if tuple(d) != s.dateranges else s
            for s, d in zip(pl.segments, seg_dr, strict=True)]
    return pl.copy(segments=segs, trailing_dateranges=trailing)


def asset_list_json(pod: AdPod, uri_for: Callable[[int, str], str] | None = None) -> str:
    """The X-ASSET-LIST answer for a pod (Appendix D): ``{"ASSETS": [{"URI", "DURATION"}, ...]}``."""
    assets = []
    for i, ad in enumerate(pod.ads):
        uri = uri_for(i, ad.uri) if uri_for else ad.uri
        assets.append({"URI": uri, "DURATION": round(float(ad.duration), 3)})
    return json.dumps({"ASSETS": assets})
