"""The SSAI manifest service: per-session master and media playlists with the session's ads stitched in.

    router = make_router("out/", decide, beacon)     # mounted by the decisioning API's FastAPI app
    GET /session/{sid}/master.m3u8                   the origin's master (relative URIs stay per session)
    GET /session/{sid}/video/720p/index.m3u8         that rendition, stitched for this session
    GET /session/{sid}/audio/index.m3u8, /session/{sid}/subs/en/index.m3u8   stitched in step
    GET /session/{sid}/video/720p/seg_000012.ts      content segments (served from the origin)
    GET /session/{sid}/ad/{break}/{ad}/{seg}/{rendition}.ts   ad segments (.m4s for fMP4): beacons fire here
    GET /session/{sid}/ad/{break}/{ad}/res/{n}/{rendition}    an ad's key or initialization section

Breaks come from the origin's cue tags (``sidecast.hls.breaks``) in the reference rendition (the master's first
variant) plus any scheduled breaks; each session asks ``decide(session_id, break)`` once per break, and the
pod's conditioned renditions are matched to the content's by their path in the core's layout
(``video/<name>/index.m3u8``, ``audio/index.m3u8``), falling back to the closest resolution. Subtitle
renditions get empty WebVTT segments cut to their own segment width (live: a low-latency caption playlist of
1/3 s segments gets six per 2 s ad segment, its own media sequence numbers translated by PDT); when an ad's
master is not in that layout, the variant nearest each content rendition by resolution and bandwidth. An
ad keeps its own EXT-X-KEY and EXT-X-MAP (served under the session's URL space), and the content gets its
own back after the ad (``ads.ssai``). A pod that cannot be used (unreadable playlist, renditions missing,
segments longer than the content's target duration, a container other than the content's) is logged and the
break plays the content: nothing else breaks.

Live sessions decide on worker threads: a playlist request waits at most ``decision_wait`` for a break's
pod and otherwise serves the content for now (the pod starts at the first segment the session has not
seen); with ``prefetch`` a break signalled ahead (a DATERANGE or scheduled break whose START-DATE is still
in the future) is decided that many seconds before it starts, so it starts with its ads ready. A live
session may open with a pre-roll (``live_preroll``); a VOD session may take its breaks from a per-session
schedule (``session_schedule``: VMAP). Server-side beacons (impression, start, quartiles, complete and VAST
``progress`` offsets) fire when the player fetches the ad segment that reaches them, once per session.

The work per request is ``render(session, key)``: a cached parse of the origin, the session's cached pods,
and the pure ``ssai.stitch``; ``bench/ssai.py`` measures it.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote as urlquote
from urllib.parse import urljoin, urlsplit

from fastapi import APIRouter

from sidecast.hls import MasterPlaylist, MediaPlaylist, PlaylistError, Segment, parse, timebase
from sidecast.hls.breaks import Break, breaks_from_playlist

from .condition import Conditioned, ConditionError
from .models import AdPod
from .ssai import AdMedia, Placement, nearest_variant, nominal_duration, pin_byteranges, pin_ivs, stitch
from .vast import progress_offset

log = logging.getLogger("sidecast.ads.session")

Decide = Callable[[str, Break], AdPod]
Beacon = Callable[[str, str, str, str, int], None]
"""beacon(session_id, decision_id, creative_id, event, ad_index): event is a BeaconEvent or a VAST
progress key (``progress@<seconds>``); ad_index is the ad's place in the pod."""
SessionSchedule = Callable[[str, "float | None"], Sequence[Break]]
"""session_schedule(session_id, content_duration): a VOD session's own breaks (VMAP)."""

_SID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
BLANK_VTT = "WEBVTT\n\n"
_QUARTILES: tuple[tuple[float, str], ...] = (
    (0.25, "firstQuartile"), (0.5, "midpoint"), (0.75, "thirdQuartile"))


_MAP_RE = re.compile(r"X-TIMESTAMP-MAP=([^\r\n]*)")
_CUE_TIME_RE = re.compile(r"^\s*((?:\d+:)?\d{2}:\d{2}\.\d{3})\s+-->", re.M)


def _vtt_seconds(t: str) -> float:
    parts = t.split(":")
    return sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))


def _vtt_time(x: float) -> str:
    ms = int(round(x * 1000))
    return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def rebase_timestamp_map(vtt: str) -> str:
    """The same WebVTT with an equivalent X-TIMESTAMP-MAP whose LOCAL is the first cue's start.

    Why: both maps mean the same (RFC 8216bis §3.1.4: LOCAL and MPEGTS move together), but hls.js treats
    a map that equals its own timestamp origin as "no offset" and then shifts the cues by the start of
    their discontinuity, which after a stitched ad break puts every caption one break too late. Moving
    the anchor to the first cue keeps hls.js on the MPEGTS path."""
    m = _MAP_RE.search(vtt)
    first = _CUE_TIME_RE.search(vtt)
    if m is None or first is None:
        return vtt
    fields = dict(part.split(":", 1) for part in m.group(1).split(",") if ":" in part)
    try:
        mpegts = int(fields["MPEGTS"])
        local = _vtt_seconds(fields.get("LOCAL", "00:00:00.000"))
    except (KeyError, ValueError):
        return vtt
    shift = _vtt_seconds(first.group(1)) - local
    if shift <= 0:
        return vtt
    new = f"X-TIMESTAMP-MAP=MPEGTS:{timebase.wrap(mpegts + timebase.ticks(shift))},LOCAL:{_vtt_time(local + shift)}"
    return vtt[: m.start()] + new + vtt[m.end():]


class PodError(ValueError):
    """An ad pod that cannot be stitched (its break falls back to content)."""


def _is_url(s: str) -> bool:
    return s.startswith(("http://", "https://"))


def _resolve(base: str, ref: str) -> str:
    if _is_url(ref) or os.path.isabs(ref):
        return ref
    if _is_url(base):
        return urljoin(base, ref)
    return os.path.normpath(os.path.join(os.path.dirname(base), ref))


def _http_text(url: str) -> str:
    import httpx

    r = httpx.get(url, timeout=5.0, follow_redirects=True)
    r.raise_for_status()
    return r.text


class Fetcher:
    """Reads playlists from files or URLs, parsed once per change (files: mtime; URLs: a short TTL).

    `get_url` fetches a URL's text: the origin's is trusted (the operator's own server); the fetcher for ad
    playlists is given the decisioning service's guarded fetch, since their URLs come from ad servers."""

    def __init__(self, ttl: float = 0.5, get_url: Callable[[str], str] | None = None) -> None:
        self.ttl = ttl
        self.get_url = get_url or _http_text
        self._cache: dict[str, tuple[object, object]] = {}
        self._lock = threading.Lock()

    def text(self, loc: str) -> tuple[str, object]:
        if _is_url(loc):
            return self.get_url(loc), time.monotonic() // self.ttl
        st = os.stat(loc)
        with open(loc, encoding="utf-8") as f:
            return f.read(), (st.st_mtime_ns, st.st_size)

    def parsed(self, loc: str, parse: Callable[[str], object]) -> object:
        key = loc + "|" + getattr(parse, "__name__", "")
        stamp: object
        if _is_url(loc):
            stamp = time.monotonic() // self.ttl
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            text, stamp = self.text(loc)
        else:
            st = os.stat(loc)
            stamp = (st.st_mtime_ns, st.st_size)
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
            text, stamp = self.text(loc)
        value = parse(text)
        with self._lock:
            self._cache[key] = (stamp, value)
        return value

    def playlist(self, loc: str) -> MediaPlaylist | MasterPlaylist:
        v = self.parsed(loc, parse)
        assert isinstance(v, MediaPlaylist | MasterPlaylist)
        return v

    def media(self, loc: str) -> MediaPlaylist:
        v = self.playlist(loc)
        if not isinstance(v, MediaPlaylist):
            raise PlaylistError(f"{loc} is a master playlist; a media playlist was expected")
        return v

    def master(self, loc: str) -> MasterPlaylist:
        v = self.playlist(loc)
        if not isinstance(v, MasterPlaylist):
            raise PlaylistError(f"{loc} is a media playlist; a master playlist was expected")
        return v


def rendition_kind(key: str) -> str:
    """'video', 'audio' or 'subs' from a path in the core's layout."""
    first = key.split("/", 1)[0]
    if first in ("audio", "subs"):
        return first
    return "video"


def _container(segs: Sequence[Segment]) -> str:
    return "fMP4" if any(s.init_section is not None for s in segs) else "MPEG-TS"


@dataclass(frozen=True)
class ResolvedAd:
    """One ad of a pod with its media playlist per content rendition key (None: subtitles → blank).
    Segments carry absolute locations (files or URLs), their keys and initialization sections included."""

    creative_id: str
    duration: float
    renditions: dict[str, tuple[Segment, ...]]   # content key -> ad segments (absolute locations)


@dataclass
class ResolvedPod:
    pod: AdPod
    ads: tuple[ResolvedAd, ...]
    media: dict[str, tuple[AdMedia, ...]] = field(default_factory=dict)  # per content key, with output URIs
    resources: dict[tuple[int, str], tuple[str, ...]] = field(default_factory=dict)  # (ad, key) -> key/map files
    first_sequence: int | None = None   # live: segments the session saw before the decision stay content


class AdResolver:
    """Finds, for each content rendition, the matching rendition of a conditioned ad (cached by URI)."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self._cache: dict[tuple[str, str], tuple[Segment, ...]] = {}

    def segments(self, loc: str) -> tuple[Segment, ...]:
        """The ad's segments with absolute locations; implicit IVs and byte-range offsets written out, so
        they stay right wherever the segments land in a stitched playlist."""
        pl = pin_byteranges(pin_ivs(self.fetcher.media(loc)))
        pl = pl.with_uris(lambda u: _resolve(loc, u))
        return tuple(Segment(s.uri, s.duration, keys=s.keys, init_section=s.init_section,
                             tags=tuple(t for t in s.tags if t.startswith("#EXT-X-BYTERANGE")))
                     for s in pl.segments)

    def for_key(self, ad_uri: str, rendition_uris: dict[str, str], key: str,
                content_master: MasterPlaylist | None) -> tuple[Segment, ...]:
        ck = (ad_uri + "|" + ",".join(f"{k}={v}" for k, v in sorted(rendition_uris.items())), key)
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        segs = self._find(ad_uri, rendition_uris, key, content_master)
        self._cache[ck] = segs
        return segs

    def _find(self, ad_uri: str, rendition_uris: dict[str, str], key: str,
              content_master: MasterPlaylist | None) -> tuple[Segment, ...]:
        kind = rendition_kind(key)
        parts = key.split("/")
        name = parts[1] if len(parts) > 2 else parts[0]
        for k in (name, kind, key):
            if k in rendition_uris:
                return self.segments(rendition_uris[k])
        try:
            ad_playlist = self.fetcher.playlist(ad_uri)
        except Exception as exc:  # unreadable, refused by the fetch policy, not HLS: this ad only
            raise PodError(f"cannot read ad playlist {ad_uri}: {exc}") from None
        if not isinstance(ad_playlist, MasterPlaylist):
            if kind == "audio":
                raise PodError(f"ad {ad_uri} is a single media playlist; the content has a separate audio rendition")
            return self.segments(ad_uri)
        master = ad_playlist
        # Same path in the same layout (conditioned ads mirror the content's layout).
        if any(v.uri.rstrip("/") == key for v in master.variants) or any(
                r.uri == key for r in master.renditions if r.uri is not None):
            return self.segments(_resolve(ad_uri, key))
        same = _resolve(ad_uri, key)
        if not _is_url(same) and os.path.exists(same):
            return self.segments(same)
        if kind == "audio":
            aud = [r for r in master.renditions if r.type == "AUDIO" and r.uri is not None]
            if not aud:
                raise PodError(f"ad {ad_uri} has no audio rendition to stitch into {key}")
            best_audio = next((r for r in aud if r.attrs.get("DEFAULT") == "YES"), aud[0])
            assert best_audio.uri is not None
            return self.segments(_resolve(ad_uri, best_audio.uri))
        vids = master.variants
        if not vids:
            raise PodError(f"ad {ad_uri} has no video variant")
        want = None
        if content_master is not None:
            want = next((v for v in content_master.variants if v.uri.rstrip("/") == key), None)
        return self.segments(_resolve(ad_uri, nearest_variant(vids, want).uri))


@dataclass
class SeamBook:
    """The seams stitched into one numbering of media sequence numbers (the reference rendition's, or a
    playlist's own): DISCONTINUITY-SEQUENCE must count those that slid out of that playlist's window."""

    seams: list[int] = field(default_factory=list)    # media sequence numbers with an added discontinuity
    retired: int = 0                                  # seams pruned from ``seams`` (all before the window)
    retired_below: int = 0

    def prior_seams(self, first_msn: int) -> int:
        """Added discontinuities before the window: they slid out, so DISCONTINUITY-SEQUENCE counts them."""
        return self.retired + bisect.bisect_left(self.seams, first_msn)

    def record(self, seams: Sequence[int], first_msn: int, keep: int = 200) -> None:
        for m in seams:
            if m < self.retired_below:
                continue
            i = bisect.bisect_left(self.seams, m)
            if i == len(self.seams) or self.seams[i] != m:
                self.seams.insert(i, m)
        cut = first_msn - keep  # renditions lag each other by a segment or two, not by ``keep``
        if cut > self.retired_below:
            n = bisect.bisect_left(self.seams, cut)
            self.retired += n
            del self.seams[:n]
            self.retired_below = cut


@dataclass
class SessionState(SeamBook):
    """What one viewer's session remembers: its pods, the beacons already sent, and the seams stitched
    (its own, in the reference rendition's numbering; ``own_seams``: a playlist numbered on its own)."""

    pods: dict[str, ResolvedPod | None] = field(default_factory=dict)
    pending: dict[str, concurrent.futures.Future[ResolvedPod | None]] = field(default_factory=dict)
    fired: set[tuple[str, int, str]] = field(default_factory=set)
    own_seams: dict[str, SeamBook] = field(default_factory=dict)   # low-latency caption playlists, by key
    last_seen: float = 0.0
    max_sequence: int = -1                            # the highest media sequence number served so far
    own_breaks: list[Break] | None = None             # this session's own: live pre-roll, VMAP schedule
    # hls.js asks for the video and audio playlists at the same moment: one decision per break, not two
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)


def _window_end(content: MediaPlaylist) -> datetime | None:
    pdts = content.program_date_times()
    if not pdts or pdts[-1] is None:
        return None
    return pdts[-1] + timedelta(seconds=content.segments[-1].duration)


def _first_in(content: MediaPlaylist, ref: MediaPlaylist, first: int) -> int | None:
    """``first`` (a media sequence number of the reference rendition: where a late pod starts) as one of
    ``content``, a playlist with its own numbering (a low-latency caption playlist: six segments per video
    segment): its segment that starts at that reference segment's PDT (counted back in slots when the
    window has slid past it, forward when it is not listed yet). None (the whole pod) when either playlist
    lacks the PDTs to tell."""
    rpdts = ref.program_date_times()
    i = first - ref.media_sequence
    if not rpdts or rpdts[0] is None or rpdts[-1] is None:
        return None
    if 0 <= i < len(rpdts):
        at = rpdts[i]
    elif i >= len(rpdts):
        at = rpdts[-1] + timedelta(seconds=ref.segments[-1].duration
                                   + (i - len(rpdts)) * nominal_duration(ref))
    else:
        at = rpdts[0] - timedelta(seconds=-i * nominal_duration(ref))
    if at is None:
        return None
    slot = nominal_duration(content)
    pdts = content.program_date_times()
    if pdts and pdts[0] is not None and (pdts[0] - at).total_seconds() > slot / 2:
        # the window has slid past it: count back in this playlist's slots
        return content.media_sequence - round((pdts[0] - at).total_seconds() / slot)
    for j, p in enumerate(pdts):
        if p is not None and (p - at).total_seconds() >= -slot / 2:
            return content.media_sequence + j
    end = _window_end(content)
    if end is None:
        return None
    return content.media_sequence + len(pdts) + max(0, round((at - end).total_seconds() / slot))


def _split(duration: float, slot: float | None) -> tuple[float, ...]:
    """``duration`` as ``round(duration / slot)`` (at least one) equal pieces that add up to it exactly."""
    n = 1 if slot is None else max(1, round(duration / slot))
    if n == 1:
        return (duration,)
    piece = duration / n
    return (*([piece] * (n - 1)), duration - piece * (n - 1))


def _ext(uri: str) -> str:
    """The extension a player and a CDN expect for a segment like `uri` (.ts, .m4s, .mp4, .aac...)."""
    path = urlsplit(uri).path if _is_url(uri) else uri
    ext = os.path.splitext(path)[1].lower()
    return ext if re.fullmatch(r"\.[a-z0-9]{1,5}", ext) else ".ts"


class StitchService:
    """Everything behind the router, without HTTP: origin reading, breaks, pods, sessions, stitching."""

    def __init__(self, origin: str | Path, decide: Decide, beacon: Beacon, *,
                 slate: str | None = None, schedule: Callable[[], Sequence[Break]] | None = None,
                 session_ttl: float = 3600.0, fetcher: Fetcher | None = None,
                 conditioner: Callable[[str], Conditioned] | None = None, ad_fetcher: Fetcher | None = None,
                 session_schedule: SessionSchedule | None = None, prefetch: float = 0.0,
                 decision_wait: float | None = None, live_preroll: float = 0.0, decision_threads: int = 8) -> None:
        o = str(origin)
        self.origin = o if _is_url(o) else os.path.abspath(o)
        self.decide = decide
        self.beacon = beacon
        self.schedule = schedule
        self.session_schedule = session_schedule
        self.session_ttl = session_ttl
        self.fetcher = fetcher or Fetcher()
        self.resolver = AdResolver(ad_fetcher or self.fetcher)
        self.conditioner = conditioner
        self.prefetch = prefetch
        self.decision_wait = decision_wait
        self.live_preroll = live_preroll
        self.sessions: dict[str, SessionState] = {}
        self._lock = threading.RLock()
        self._known_breaks: dict[str, Break] = {}
        self._breaks_cache: tuple[object, list[Break]] | None = None
        self._decisions = concurrent.futures.ThreadPoolExecutor(max_workers=decision_threads,
                                                                thread_name_prefix="ssai-decide")
        self.slate = slate
        self._slate_seg: Segment | None = None
        if slate:
            segs = self.resolver.segments(slate)
            if not segs:
                raise PlaylistError(f"slate playlist {slate} has no segments")
            self._slate_seg = segs[0]

    # -- origin -----------------------------------------------------------------------------------
    def location(self, key: str) -> str:
        if _is_url(self.origin):
            return urljoin(self.origin.rstrip("/") + "/", key)
        path = os.path.normpath(os.path.join(self.origin, key))
        if not (path == self.origin or path.startswith(self.origin + os.sep)):
            raise FileNotFoundError(key)
        return path

    def master(self, name: str = "master.m3u8") -> MasterPlaylist | None:
        try:
            return self.fetcher.master(self.location(name))
        except (OSError, PlaylistError):
            return None

    def reference_key(self) -> str | None:
        m = self.master()
        if m is None:
            return None
        vids = [v for v in m.variants if not _is_url(v.uri)]
        return vids[0].uri if vids else None

    def _reference(self, content: MediaPlaylist) -> MediaPlaylist:
        rk = self.reference_key()
        if rk is not None:
            try:
                return self.fetcher.media(self.location(rk))
            except (OSError, PlaylistError):
                pass
        return content

    def breaks(self, content: MediaPlaylist) -> list[Break]:
        """The stream's breaks: cue tags of the reference rendition (remembered while they can still
        matter, so a CUE-OUT sliding out of the window does not end its break) plus scheduled ones."""
        ref = self._reference(content)
        cached = self._breaks_cache
        if cached is None or cached[0] is not ref:
            found = breaks_from_playlist(ref)
            first = next((p for p in ref.program_date_times() if p is not None), None)
            with self._lock:
                for b in found:
                    if b.start_date is not None:
                        self._known_breaks.setdefault(b.id, b)
                if first is not None:
                    for bid, b in list(self._known_breaks.items()):
                        assert b.start_date is not None
                        if b.start_date + timedelta(seconds=(b.duration or 0.0) + 600) < first:
                            del self._known_breaks[bid]
                # a break keeps the definition it was first seen with (cue tags of later windows may
                # describe it differently), so its segments never change between reloads
                ids = {b.id for b in found}
                merged = [self._known_breaks.get(b.id, b) for b in found]
                merged += [b for b in self._known_breaks.values() if b.id not in ids]
            self._breaks_cache = (ref, merged)
            cached = self._breaks_cache
        out = list(cached[1])
        if self.schedule is not None:
            out.extend(self.schedule())
        return out

    # -- sessions ---------------------------------------------------------------------------------
    def session(self, sid: str) -> SessionState:
        if not _SID_RE.match(sid):
            raise ValueError("session id must be 1-128 characters of A-Z a-z 0-9 _ . -")
        now = time.monotonic()
        with self._lock:
            st = self.sessions.get(sid)
            if st is None:
                st = self.sessions[sid] = SessionState(last_seen=now)
                if len(self.sessions) % 1024 == 0:
                    self._evict(now)
            st.last_seen = now
            return st

    def _evict(self, now: float) -> None:
        for sid, st in list(self.sessions.items()):
            if now - st.last_seen > self.session_ttl:
                del self.sessions[sid]

    def _own_breaks(self, sid: str, st: SessionState, content: MediaPlaylist) -> list[Break]:
        """The session's own breaks, fixed at its first playlist: a live pre-roll from where a player
        starts (three target durations from the live edge, RFC 8216bis §6.3.3), or a VOD schedule."""
        if st.own_breaks is not None:
            return st.own_breaks
        own: list[Break] = []
        if not content.endlist and self.live_preroll > 0 and content.segments:
            ref = self._reference(content)
            pdts, times = ref.program_date_times(), ref.segment_times()
            start_at = max(0.0, ref.duration - 3 * ref.target_duration)
            i = max((k for k, t in enumerate(times) if t <= start_at + 1e-6), default=0)
            if pdts[i] is not None:
                own.append(Break("preroll", times[i], self.live_preroll, "pre", pdts[i], "preroll"))
            else:
                log.warning("no live pre-roll for session %s: the playlist has no EXT-X-PROGRAM-DATE-TIME", sid)
        if content.endlist and self.session_schedule is not None:
            try:
                own.extend(self.session_schedule(sid, self._reference(content).duration))
            except Exception as exc:  # the schedule source failing leaves the origin's own breaks
                log.warning("no session schedule for %s: %s", sid, exc)
        with st.lock:
            if st.own_breaks is None:
                st.own_breaks = own
            return st.own_breaks

    def pod(self, sid: str, st: SessionState, brk: Break, wait: float | None = None) -> ResolvedPod | None:
        """The session's pod for `brk`, deciding it if needed. `wait`: seconds to wait for a decision in
        flight (None: as long as it takes); a decision not ready by then answers None for now and is
        picked up by a later request."""
        if brk.id in st.pods:
            return st.pods[brk.id]
        with st.lock:
            if brk.id in st.pods:
                return st.pods[brk.id]
            fut = st.pending.get(brk.id)
            if fut is None:
                fut = st.pending[brk.id] = self._decisions.submit(self._decide, sid, brk)
        try:
            rp = fut.result(timeout=wait)
        except concurrent.futures.TimeoutError:
            return None
        with st.lock:
            if brk.id not in st.pods:
                if rp is not None and st.max_sequence >= 0:
                    # segments this session was already served stay what they were
                    rp.first_sequence = st.max_sequence + 1
                st.pods[brk.id] = rp
                st.pending.pop(brk.id, None)
            return st.pods[brk.id]

    def prefetch_pod(self, sid: str, st: SessionState, brk: Break) -> None:
        """Start deciding `brk` now, without waiting (a break announced ahead of its start)."""
        self.pod(sid, st, brk, wait=0)

    def _decide(self, sid: str, brk: Break) -> ResolvedPod | None:
        try:
            pod = self.decide(sid, brk)
        except Exception as exc:  # the decisioning service failing must not fail the playlist
            log.warning("no ads for break %s (session %s): decisioning failed: %s", brk.id, sid, exc)
            return None
        if pod is None or not pod.ads:
            return None
        try:
            return self._resolve_pod(pod)
        except (PodError, OSError, PlaylistError) as exc:
            log.warning("break %s plays content for session %s: %s", brk.id, sid, exc)
            return None

    def _content_keys(self) -> list[str]:
        m = self.master()
        if m is None:
            rk = self.reference_key()
            return [rk] if rk else []
        return [u for u in m.media_uris() if not _is_url(u)]

    def _resolve_pod(self, pod: AdPod) -> ResolvedPod:
        master = self.master()
        keys = self._content_keys()
        content_info: dict[str, tuple[int | None, str]] = {}
        for key in keys:
            try:
                c = self.fetcher.media(self.location(key))
                content_info[key] = (c.target_duration, _container(c.segments[:1]))
            except (OSError, PlaylistError):
                content_info[key] = (None, "")
        ads: list[ResolvedAd] = []
        for ad in pod.ads:
            uri = ad.uri
            if not ad.rendition_uris and not uri.split("?", 1)[0].endswith((".m3u8", ".m3u")):
                # A media file: it must be conditioned to the content's ladder before it can be stitched.
                if self.conditioner is None:
                    raise PodError(f"ad {ad.creative_id} is a media file ({uri}) and no conditioner is set")
                try:
                    uri = str(self.conditioner(uri).master)
                except ConditionError as exc:
                    raise PodError(f"ad {ad.creative_id} could not be conditioned: {exc}") from None
            rend: dict[str, tuple[Segment, ...]] = {}
            for key in keys:
                if rendition_kind(key) == "subs":
                    continue
                segs = self.resolver.for_key(uri, dict(ad.rendition_uris), key, master)
                if not segs:
                    raise PodError(f"ad {ad.creative_id} has no segments for {key}")
                target, container = content_info.get(key, (None, ""))
                if target is not None and any(int(s.duration + 0.5) > target for s in segs):
                    raise PodError(f"ad {ad.creative_id} has segments longer than the content's target "
                                   f"duration ({target} s) in {key}: condition it first (ads/condition.py)")
                if container and _container(segs) != container:
                    raise PodError(f"ad {ad.creative_id} is {_container(segs)} but {key} is {container}: a player "
                                   "cannot switch containers at a splice; condition the ad to the content's")
                rend[key] = segs
            # Renditions must have the same number of segments (one per slot), else they would
            # leave the ad at different slots: drop runt tails, then cut to the shortest.
            if rend:
                rend = {k: v if len(v) < 2 or v[-1].duration >= 0.25 else v[:-1] for k, v in rend.items()}
                n = min(len(v) for v in rend.values())
                if any(len(v) != n for v in rend.values()):
                    log.warning("ad %s renditions have different segment counts; cutting all to %d",
                                ad.creative_id, n)
                    rend = {k: v[:n] for k, v in rend.items()}
            ads.append(ResolvedAd(ad.creative_id, float(ad.duration), rend))
        return ResolvedPod(pod, tuple(ads))

    def ad_media(self, rp: ResolvedPod, brk: Break, key: str, slot: float | None = None) -> tuple[AdMedia, ...]:
        """The pod's segments for content rendition ``key``, with the URIs this session serves them at.

        Subtitles get blank WebVTT segments: each of the ad's video segments becomes ``round(d / slot)``
        blanks of equal length (one when ``slot`` is None), ``slot`` being the width of one segment of the
        content's subtitle playlist (``ssai.nominal_duration``). The live stitcher puts ad segment k in
        the break's slot k, so a caption playlist of 1/3 s segments (low latency, one WebVTT part per
        segment) needs six blanks per 2 s ad segment to cover the break that the video's ads cover."""
        ck = key if slot is None or rendition_kind(key) != "subs" else f"{key}|{slot!r}"
        hit = rp.media.get(ck)
        if hit is not None:
            return hit
        depth = key.count("/")
        prefix = "../" * depth
        bid = urlquote(brk.id, safe="")
        kind = rendition_kind(key)
        rkey = urlquote(key.rsplit(".", 1)[0], safe="/")
        media: list[AdMedia] = []
        # subtitle slots take the video's segment durations (audio's wobble with AAC frame sizes)
        ref_key = next((k for k in (rp.ads[0].renditions if rp.ads else {}) if rendition_kind(k) == "video"), None)
        for ai, ad in enumerate(rp.ads):
            if kind == "subs":
                ref = ad.renditions.get(ref_key or "", ())
                segs = tuple(Segment(f"{prefix}ad/blank.vtt", d) for s in ref for d in _split(s.duration, slot))
            else:
                files: list[str] = []   # this ad's keys and initialization sections that live in files

                def served(loc: str, ai: int = ai, files: list[str] = files) -> str:
                    """A key or map URI the player can reach: a URL as it is, a file through this session."""
                    if _is_url(loc):
                        return loc
                    if loc not in files:
                        files.append(loc)
                    return f"{prefix}ad/{bid}/{ai}/res/{files.index(loc)}/{rkey}{_ext(loc)}"

                segs = tuple(
                    Segment(f"{prefix}ad/{bid}/{ai}/{si}/{rkey}{_ext(s.uri)}", s.duration, tags=s.tags,
                            keys=tuple(k.with_uri(served) for k in s.keys),
                            init_section=s.init_section.with_uri(served) if s.init_section else None)
                    for si, s in enumerate(ad.renditions.get(key, ())))
                rp.resources[(ai, key)] = tuple(files)
            media.append(AdMedia(ad.creative_id, segs))
        out = tuple(media)
        rp.media[ck] = out
        return out

    def slate_for(self, key: str) -> Segment | None:
        if self._slate_seg is None or rendition_kind(key) == "subs":
            return None
        depth = key.count("/")
        return Segment("../" * depth + "ad/slate.ts", self._slate_seg.duration)

    # -- requests ---------------------------------------------------------------------------------
    def render(self, sid: str, key: str) -> str:
        """The stitched media playlist ``key`` (a path under the origin) for session ``sid``."""
        st = self.session(sid)
        content = self.fetcher.media(self.location(key))
        live = not content.endlist
        window_start = next((p for p in content.program_date_times() if p is not None), None)
        window_end = _window_end(content) if live else None
        placements: list[Placement] = []
        # A caption playlist's blanks are cut to its own slots (low latency: one 1/3 s part per segment);
        # when its segments are not the reference's, its media sequence numbers are its own too.
        slot: float | None = None
        ref: MediaPlaylist | None = None
        if live and rendition_kind(key) == "subs":
            slot = nominal_duration(content)
            ref = self._reference(content)
            if ref is content or abs(slot - nominal_duration(ref)) < 0.05:
                ref = None
        for brk in self.breaks(content) + self._own_breaks(sid, st, content):
            wait: float | None = None
            if live and brk.start_date is not None and window_end is not None:
                ahead = (brk.start_date - window_end).total_seconds()
                if ahead >= 0:
                    # not in the window yet: nothing to place; decide early when prefetching
                    if self.prefetch > 0 and ahead <= self.prefetch and brk.duration is not None:
                        self.prefetch_pod(sid, st, brk)
                    continue
                if (window_start is not None and brk.duration is not None
                        and brk.start_date + timedelta(seconds=brk.duration) <= window_start
                        and brk.id not in st.pods):
                    continue  # over before this session's window: never decided, never counted
                wait = self.decision_wait
            elif live:
                wait = self.decision_wait
            if brk.duration is None:
                continue  # still open: the ads act on closed breaks
            rp = self.pod(sid, st, brk, wait)
            if rp is None:
                continue
            first = None if content.endlist else rp.first_sequence
            if first is not None and ref is not None:
                first = _first_in(content, ref, first)
            placements.append(Placement(brk, self.ad_media(rp, brk, key, slot), self.slate_for(key), first))
        with self._lock:
            book: SeamBook = st if ref is None else st.own_seams.setdefault(key, SeamBook())
            prior = book.prior_seams(content.media_sequence) if live else 0
        out = stitch(content, placements, prior_seams=prior)
        if live:
            with self._lock:
                book.record(out.seams, content.media_sequence)
        if content.segments and ref is None:   # the reference's sequence numbers only
            st.max_sequence = max(st.max_sequence, content.media_sequence + len(content.segments) - 1)
        return out.playlist.dumps()

    def render_master(self, name: str) -> str:
        m = self.fetcher.master(self.location(name))
        return m.dumps()

    def _ad(self, sid: str, break_id: str, ad_index: int) -> tuple[SessionState, ResolvedPod]:
        st = self.session(sid)
        rp = st.pods.get(break_id)
        if rp is None or not 0 <= ad_index < len(rp.ads):
            raise KeyError(f"session {sid} has no ad {ad_index} in break {break_id}")
        return st, rp

    def ad_segment(self, sid: str, break_id: str, ad_index: int, seg_index: int, key: str) -> str:
        """Where ad segment ``seg_index`` lives (a file path or URL); fires that segment's beacons."""
        st, rp = self._ad(sid, break_id, ad_index)
        ad = rp.ads[ad_index]
        segs = ad.renditions.get(key + ".m3u8") or ad.renditions.get(key)
        if segs is None or not 0 <= seg_index < len(segs):
            raise KeyError(f"no segment {seg_index} of ad {ad_index} for {key}")
        self._fire(sid, st, rp, ad_index, segs, seg_index)
        return segs[seg_index].uri

    def ad_resource(self, sid: str, break_id: str, ad_index: int, n: int, key: str) -> str:
        """Where an ad's key or initialization section ``n`` lives (a file path)."""
        _, rp = self._ad(sid, break_id, ad_index)
        files = rp.resources.get((ad_index, key + ".m3u8")) or rp.resources.get((ad_index, key)) or ()
        if not 0 <= n < len(files):
            raise KeyError(f"no resource {n} of ad {ad_index} for {key}")
        return files[n]

    def _fire(self, sid: str, st: SessionState, rp: ResolvedPod, ai: int, segs: Sequence[Segment],
              si: int) -> None:
        total = sum(s.duration for s in segs) or 1.0
        end = sum(s.duration for s in segs[: si + 1])
        ad = rp.pod.ads[ai]
        events: list[str] = ["impression", "start"]
        events += [ev for q, ev in _QUARTILES if end > q * total + 1e-6]
        # VAST progress offsets: fired with the segment that reaches them (scaled to what is stitched)
        scale = total / ad.duration if ad.duration > 0 else 1.0
        events += [ev for ev in ad.tracking if (off := progress_offset(ev)) is not None
                   and off * scale <= end + 1e-6]
        if si == len(segs) - 1:
            events.append("complete")
        ref = rp.pod.decision_id or rp.pod.break_id
        for ev in events:
            k = (rp.pod.break_id, ai, ev)
            with self._lock:
                if k in st.fired:
                    continue
                st.fired.add(k)
            try:
                self.beacon(sid, ref, ad.creative_id, ev, ai)
            except Exception as exc:  # a beacon sink failing must not fail the segment
                log.warning("beacon %s for %s/%s failed: %s", ev, sid, ad.creative_id, exc)

    def slate_location(self) -> str | None:
        return self._slate_seg.uri if self._slate_seg is not None else None

    def close(self) -> None:
        self._decisions.shutdown(wait=False, cancel_futures=True)


def make_router(origin: str | Path, decide: Decide, beacon: Beacon, *, slate: str | None = None,
                schedule: Callable[[], Sequence[Break]] | None = None,
                conditioner: Callable[[str], Conditioned] | None = None, ad_fetcher: Fetcher | None = None,
                session_schedule: SessionSchedule | None = None, prefetch: float = 0.0,
                decision_wait: float | None = None, live_preroll: float = 0.0) -> APIRouter:
    """A FastAPI router serving ``/session/{session_id}/...`` for the origin (a folder or a base URL).

    ``slate``: a media playlist whose first segment fills slots a short pod leaves empty (default: the
    content returns). ``schedule``: extra breaks (pre/mid/post-rolls from the API). ``conditioner``: turns
    a media-file creative into conditioned HLS (``ads.condition.Conditioner``). ``ad_fetcher``: reads ad
    playlists (give it a guarded fetch: their URLs come from ad servers). ``session_schedule``: a VOD
    session's own breaks (VMAP). ``prefetch``, ``decision_wait``, ``live_preroll``: see StitchService."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse, RedirectResponse, Response

    svc = StitchService(origin, decide, beacon, slate=slate, schedule=schedule, conditioner=conditioner,
                        ad_fetcher=ad_fetcher, session_schedule=session_schedule, prefetch=prefetch,
                        decision_wait=decision_wait, live_preroll=live_preroll)
    router = APIRouter()
    router.service = svc  # type: ignore[attr-defined]
    m3u8 = "application/vnd.apple.mpegurl"
    media_types = {".ts": "video/mp2t", ".m4s": "video/iso.segment", ".mp4": "video/mp4", ".aac": "audio/aac",
                   ".key": "application/octet-stream"}

    def send(loc: str, media_type: str | None = None) -> Response:
        if _is_url(loc):
            return RedirectResponse(loc, status_code=302)
        if not os.path.isfile(loc):
            raise HTTPException(404, f"not found: {os.path.basename(loc)}")
        return FileResponse(loc, media_type=media_type)

    @router.get("/session/{session_id}/ad/blank.vtt")
    def blank_vtt(session_id: str) -> Response:
        return Response(BLANK_VTT, media_type="text/vtt")

    @router.get("/session/{session_id}/ad/slate.ts")
    def slate_ts(session_id: str) -> Response:
        loc = svc.slate_location()
        if loc is None:
            raise HTTPException(404, "no slate configured")
        return send(loc, "video/mp2t")

    @router.get("/session/{session_id}/ad/{break_id}/{ad_index}/res/{n}/{key:path}")
    def ad_resource(session_id: str, break_id: str, ad_index: int, n: int, key: str) -> Response:
        try:
            loc = svc.ad_resource(session_id, break_id, ad_index, n, key.rsplit(".", 1)[0])
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        return send(loc, media_types.get(_ext(loc), "application/octet-stream"))

    @router.get("/session/{session_id}/ad/{break_id}/{ad_index}/{seg_index}/{key:path}")
    def ad_segment(session_id: str, break_id: str, ad_index: int, seg_index: int, key: str) -> Response:
        try:
            loc = svc.ad_segment(session_id, break_id, ad_index, seg_index, key.rsplit(".", 1)[0])
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        return send(loc, media_types.get(_ext(key), "video/mp2t"))

    @router.get("/session/{session_id}/{path:path}")
    def session_file(session_id: str, path: str) -> Response:
        try:
            svc.session(session_id)
            loc = svc.location(path)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except FileNotFoundError:
            raise HTTPException(404, f"not found: {path}") from None
        if path.endswith(".vtt") and not _is_url(loc):
            try:
                with open(loc, encoding="utf-8") as f:
                    return Response(rebase_timestamp_map(f.read()), media_type="text/vtt")
            except FileNotFoundError:
                raise HTTPException(404, f"not found: {path}") from None
        if not path.endswith(".m3u8"):
            return send(loc)
        try:
            pl = svc.fetcher.playlist(loc)
            body = pl.dumps() if isinstance(pl, MasterPlaylist) else svc.render(session_id, path)
        except FileNotFoundError:
            raise HTTPException(404, f"no playlist {path} at the origin") from None
        except PlaylistError as exc:
            raise HTTPException(502, f"origin playlist {path} is not valid HLS: {exc}") from None
        except OSError as exc:
            raise HTTPException(502, f"origin playlist {path} unreadable: {exc}") from None
        return Response(body, media_type=m3u8, headers={"Cache-Control": "no-cache"})

    return router
