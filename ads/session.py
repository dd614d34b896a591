"""The SSAI manifest service: per-session master and media playlists with the session's ads stitched in.

    router = make_router("out/", decide, beacon)     # mounted by the decisioning API's FastAPI app
    GET /session/{sid}/master.m3u8                   the origin's master (relative URIs stay per session)
    GET /session/{sid}/video/720p/index.m3u8         that rendition, stitched for this session
    GET /session/{sid}/audio/index.m3u8, /session/{sid}/subs/en/index.m3u8   stitched in step
    GET /session/{sid}/video/720p/seg_000012.ts      content segments (served from the origin)
    GET /session/{sid}/ad/{break}/{ad}/{seg}/{rendition}.ts   ad segments: server-side beacons fire here

Breaks come from the origin's cue tags (``sidecast.hls.breaks``) in the reference rendition (the master's first
variant) plus any scheduled breaks; each session asks ``decide(session_id, break)`` once per break, and the
pod's conditioned renditions are matched to the content's by their path in the core's layout
(``video/<name>/index.m3u8``, ``audio/index.m3u8``), falling back to the closest resolution. Subtitle
renditions get an empty WebVTT segment for each ad segment. A pod that cannot be used (unreadable
playlist, renditions missing, segments longer than the content's target duration) is logged and the
break plays the content: nothing else breaks.

The work per request is ``render(session, key)``: a cached parse of the origin, the session's cached pods,
and the pure ``ssai.stitch``; ``bench/ssai.py`` measures it.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote as urlquote
from urllib.parse import urljoin

from fastapi import APIRouter

from sidecast.hls import MasterPlaylist, MediaPlaylist, PlaylistError, Segment, parse, timebase
from sidecast.hls.breaks import Break, breaks_from_playlist

from .condition import Conditioned, ConditionError
from .models import AdPod, BeaconEvent
from .ssai import AdMedia, Placement, stitch

log = logging.getLogger("sidecast.ads.session")

Decide = Callable[[str, Break], AdPod]
Beacon = Callable[[str, str, str, BeaconEvent], None]

_SID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
BLANK_VTT = "WEBVTT\n\n"
_QUARTILES: tuple[tuple[float, BeaconEvent], ...] = (
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


class Fetcher:
    """Reads playlists from files or URLs, parsed once per change (files: mtime; URLs: a short TTL)."""

    def __init__(self, ttl: float = 0.5) -> None:
        self.ttl = ttl
        self._cache: dict[str, tuple[object, object]] = {}
        self._lock = threading.Lock()

    def text(self, loc: str) -> tuple[str, object]:
        if _is_url(loc):
            import httpx

            r = httpx.get(loc, timeout=5.0, follow_redirects=True)
            r.raise_for_status()
            return r.text, time.monotonic() // self.ttl
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


@dataclass(frozen=True)
class ResolvedAd:
    """One ad of a pod with its media playlist per content rendition key (None: subtitles → blank)."""

    creative_id: str
    duration: float
    renditions: dict[str, tuple[Segment, ...]]   # content key -> ad segments (absolute locations)


@dataclass
class ResolvedPod:
    pod: AdPod
    ads: tuple[ResolvedAd, ...]
    media: dict[str, tuple[AdMedia, ...]] = field(default_factory=dict)  # per content key, with output URIs
    first_sequence: int | None = None   # live: segments the session saw before the decision stay content


class AdResolver:
    """Finds, for each content rendition, the matching rendition of a conditioned ad (cached by URI)."""

    def __init__(self, fetcher: Fetcher) -> None:
        self.fetcher = fetcher
        self._cache: dict[tuple[str, str], tuple[Segment, ...]] = {}

    def segments(self, loc: str) -> tuple[Segment, ...]:
        pl = self.fetcher.media(loc)
        return tuple(Segment(_resolve(loc, s.uri), s.duration) for s in pl.segments)

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
        except OSError as exc:
            raise PodError(f"cannot read ad playlist {ad_uri}: {exc}") from None
        if not isinstance(ad_playlist, MasterPlaylist):
            if kind == "audio":
                raise PodError(f"ad {ad_uri} is a single media playlist; the content has a separate audio rendition")
            return self.segments(ad_uri)
        master = ad_playlist
        # Same path in the same layout (conditioned ads mirror the content's layout).
        same = _resolve(ad_uri, key)
        if not _is_url(same) and os.path.exists(same):
            return self.segments(same)
        if kind == "audio":
            aud = [r.uri for r in master.renditions if r.type == "AUDIO" and r.uri is not None]
            if not aud:
                raise PodError(f"ad {ad_uri} has no audio rendition to stitch into {key}")
            return self.segments(_resolve(ad_uri, aud[0]))
        vids = master.variants
        if not vids:
            raise PodError(f"ad {ad_uri} has no video variant")
        want = None
        if content_master is not None:
            for v in content_master.variants:
                if v.uri.rstrip("/") == key:
                    want = v.resolution
        best = vids[0]
        if want is not None:
            best = min(vids, key=lambda v: abs((v.resolution or (0, 0))[1] - want[1]))
        return self.segments(_resolve(ad_uri, best.uri))


@dataclass
class SessionState:
    """What one viewer's session remembers: its pods, the beacons already sent, and the seams stitched."""

    pods: dict[str, ResolvedPod | None] = field(default_factory=dict)
    fired: set[tuple[str, int, str]] = field(default_factory=set)
    seams: list[int] = field(default_factory=list)    # media sequence numbers with an added discontinuity
    retired: int = 0                                  # seams pruned from ``seams`` (all before the window)
    retired_below: int = 0
    last_seen: float = 0.0
    max_sequence: int = -1                            # the highest media sequence number served so far
    # hls.js asks for the video and audio playlists at the same moment: one decision per break, not two
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

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


class StitchService:
    """Everything behind the router, without HTTP: origin reading, breaks, pods, sessions, stitching."""

    def __init__(self, origin: str | Path, decide: Decide, beacon: Beacon, *,
                 slate: str | None = None, schedule: Callable[[], Sequence[Break]] | None = None,
                 session_ttl: float = 3600.0, fetcher: Fetcher | None = None,
                 conditioner: Callable[[str], Conditioned] | None = None) -> None:
        o = str(origin)
        self.origin = o if _is_url(o) else os.path.abspath(o)
        self.decide = decide
        self.beacon = beacon
        self.schedule = schedule
        self.session_ttl = session_ttl
        self.fetcher = fetcher or Fetcher()
        self.resolver = AdResolver(self.fetcher)
        self.conditioner = conditioner
        self.sessions: dict[str, SessionState] = {}
        self._lock = threading.RLock()
        self._known_breaks: dict[str, Break] = {}
        self._breaks_cache: tuple[object, list[Break]] | None = None
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

    def breaks(self, content: MediaPlaylist) -> list[Break]:
        """The stream's breaks: cue tags of the reference rendition (remembered while they can still
        matter, so a CUE-OUT sliding out of the window does not end its break) plus scheduled ones."""
        ref = content
        rk = self.reference_key()
        if rk is not None:
            try:
                ref = self.fetcher.media(self.location(rk))
            except (OSError, PlaylistError):
                ref = content
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

    def pod(self, sid: str, st: SessionState, brk: Break) -> ResolvedPod | None:
        if brk.id in st.pods:
            return st.pods[brk.id]
        with st.lock:
            if brk.id in st.pods:
                return st.pods[brk.id]
            return self._decide(sid, st, brk)

    def _decide(self, sid: str, st: SessionState, brk: Break) -> ResolvedPod | None:
        try:
            pod = self.decide(sid, brk)
        except Exception as exc:  # the decisioning service failing must not fail the playlist
            log.warning("no ads for break %s (session %s): decisioning failed: %s", brk.id, sid, exc)
            pod = None
        resolved = None
        if pod is not None and pod.ads:
            try:
                resolved = self._resolve_pod(pod)
            except (PodError, OSError, PlaylistError) as exc:
                log.warning("break %s plays content for session %s: %s", brk.id, sid, exc)
        if resolved is not None and st.max_sequence >= 0:
            resolved.first_sequence = st.max_sequence + 1
        st.pods[brk.id] = resolved
        return resolved

    def _content_keys(self) -> list[str]:
        m = self.master()
        if m is None:
            rk = self.reference_key()
            return [rk] if rk else []
        return [u for u in m.media_uris() if not _is_url(u)]

    def _resolve_pod(self, pod: AdPod) -> ResolvedPod:
        master = self.master()
        keys = self._content_keys()
        target = None
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
                if target is None:
                    try:
                        target = self.fetcher.media(self.location(key)).target_duration
                    except (OSError, PlaylistError):
                        target = None
                if target is not None and any(int(s.duration + 0.5) > target for s in segs):
                    raise PodError(f"ad {ad.creative_id} has segments longer than the content's target "
                                   f"duration ({target} s) in {key}: condition it first (ads/condition.py)")
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

    def ad_media(self, rp: ResolvedPod, brk: Break, key: str) -> tuple[AdMedia, ...]:
        hit = rp.media.get(key)
        if hit is not None:
            return hit
        depth = key.count("/")
        prefix = "../" * depth
        bid = urlquote(brk.id, safe="")
        kind = rendition_kind(key)
        media: list[AdMedia] = []
        # subtitle slots take the video's segment durations (audio's wobble with AAC frame sizes)
        ref_key = next((k for k in (rp.ads[0].renditions if rp.ads else {}) if rendition_kind(k) == "video"), None)
        for ai, ad in enumerate(rp.ads):
            if kind == "subs":
                ref = ad.renditions.get(ref_key or "", ())
                segs = tuple(Segment(f"{prefix}ad/blank.vtt", s.duration) for s in ref)
            else:
                rkey = urlquote(key.rsplit(".", 1)[0], safe="/")
                segs = tuple(Segment(f"{prefix}ad/{bid}/{ai}/{si}/{rkey}.ts", s.duration)
                             for si, s in enumerate(ad.renditions.get(key, ())))
            media.append(AdMedia(ad.creative_id, segs))
        out = tuple(media)
        rp.media[key] = out
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
        placements: list[Placement] = []
        for brk in self.breaks(content):
            rp = self.pod(sid, st, brk)
            if rp is None:
                continue
            placements.append(Placement(brk, self.ad_media(rp, brk, key), self.slate_for(key),
                                        None if content.endlist else rp.first_sequence))
        with self._lock:
            prior = st.prior_seams(content.media_sequence) if not content.endlist else 0
        out = stitch(content, placements, prior_seams=prior)
        if not content.endlist:
            with self._lock:
                st.record(out.seams, content.media_sequence)
        if content.segments:
            st.max_sequence = max(st.max_sequence, content.media_sequence + len(content.segments) - 1)
        return out.playlist.dumps()

    def render_master(self, name: str) -> str:
        m = self.fetcher.master(self.location(name))
        return m.dumps()

    def ad_segment(self, sid: str, break_id: str, ad_index: int, seg_index: int, key: str) -> str:
        """Where ad segment ``seg_index`` lives (a file path or URL); fires that segment's beacons."""
        st = self.session(sid)
        rp = st.pods.get(break_id)
        if rp is None or not 0 <= ad_index < len(rp.ads):
            raise KeyError(f"session {sid} has no ad {ad_index} in break {break_id}")
        ad = rp.ads[ad_index]
        segs = ad.renditions.get(key + ".m3u8") or ad.renditions.get(key)
        if segs is None or not 0 <= seg_index < len(segs):
            raise KeyError(f"no segment {seg_index} of ad {ad_index} for {key}")
        self._fire(sid, st, rp, ad_index, segs, seg_index)
        return segs[seg_index].uri

    def _fire(self, sid: str, st: SessionState, rp: ResolvedPod, ai: int, segs: Sequence[Segment],
              si: int) -> None:
        total = sum(s.duration for s in segs) or 1.0
        end = sum(s.duration for s in segs[: si + 1])
        events: list[BeaconEvent] = ["impression", "start"]
        events += [ev for q, ev in _QUARTILES if end > q * total + 1e-6]
        if si == len(segs) - 1:
            events.append("complete")
        ref = rp.pod.decision_id or rp.pod.break_id
        ad = rp.pod.ads[ai]
        for ev in events:
            k = (rp.pod.break_id, ai, ev)
            with self._lock:
                if k in st.fired:
                    continue
                st.fired.add(k)
            try:
                self.beacon(sid, ref, ad.creative_id, ev)
            except Exception as exc:  # a beacon sink failing must not fail the segment
                log.warning("beacon %s for %s/%s failed: %s", ev, sid, ad.creative_id, exc)

    def slate_location(self) -> str | None:
        return self._slate_seg.uri if self._slate_seg is not None else None


def make_router(origin: str | Path, decide: Decide, beacon: Beacon, *, slate: str | None = None,
                schedule: Callable[[], Sequence[Break]] | None = None,
                conditioner: Callable[[str], Conditioned] | None = None) -> APIRouter:
    """A FastAPI router serving ``/session/{session_id}/...`` for the origin (a folder or a base URL).

    ``slate``: a media playlist whose first segment fills slots a short pod leaves empty (default: the
    content returns). ``schedule``: extra breaks (pre/mid/post-rolls from the API). ``conditioner``: turns
    a media-file creative into conditioned HLS (``ads.condition.Conditioner``)."""
    from fastapi import HTTPException
    from fastapi.responses import FileResponse, RedirectResponse, Response

    svc = StitchService(origin, decide, beacon, slate=slate, schedule=schedule, conditioner=conditioner)
    router = APIRouter()
    router.service = svc  # type: ignore[attr-defined]
    m3u8 = "application/vnd.apple.mpegurl"

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

    @router.get("/session/{session_id}/ad/{break_id}/{ad_index}/{seg_index}/{key:path}")
    def ad_segment(session_id: str, break_id: str, ad_index: int, seg_index: int, key: str) -> Response:
        try:
            loc = svc.ad_segment(session_id, break_id, ad_index, seg_index, key.removesuffix(".ts"))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0])) from None
        return send(loc, "video/mp2t")

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
