"""SSAI: replace the content segments of ad breaks with a pod's ad segments in one media playlist.

A pure function from (content playlist, placements) to a stitched playlist, used by the per-session
manifest service (``ads/session.py``), by ``sidecast ads stitch`` and by the benchmark. It is called once
per rendition (video, audio, subtitles) with the same breaks, so all renditions are stitched in step.

The rules it keeps (RFC 8216bis):
- EXT-X-DISCONTINUITY where the timeline changes source: at the first segment of every ad (so also
  between two ads of a pod), on every slate segment, and on the first content segment after ads (§4.4.4.3).
- Live (no EXT-X-ENDLIST): **one output segment per content segment**. The break's content segments are
  *slots*; ad segment k goes into slot k. So EXT-X-MEDIA-SEQUENCE is the origin's own and never jumps or
  repeats, and a discontinuity sliding out of the window is counted in EXT-X-DISCONTINUITY-SEQUENCE by the
  caller (``prior_seams``, §6.2.2). This needs ads conditioned to the content's segment duration
  (``ads/condition.py``), which is what the service uses.
- VOD: the break's run of content segments is replaced by the whole pod (trimmed to the break).
- A pod shorter than the break: the remaining slots play slate when given, else the content (return to
  content at the next segment boundary). A longer pod is trimmed at a segment boundary.
- EXT-X-TARGETDURATION never changes in live (§6.2.1 / §4.4.3.1): an ad segment that would exceed it
  ends the pod there. EXT-X-PROGRAM-DATE-TIME stays true: content keeps its wall clock, ad segments get
  their slot's wall clock, and every segment carries one (§4.4.4.6, needed after a discontinuity).
- A duration-0 break (VOD only) inserts the pod between segments without replacing content.
- EXT-X-KEY and EXT-X-MAP are per-segment state in the model (``Segment.keys`` / ``init_section``) and
  re-written wherever they change, so every splice re-declares what the following segments need: the
  content's key and initialization section after an ad, ``METHOD=NONE`` before a clear ad in encrypted
  content (§4.4.4.4, §4.4.4.5). A key without an IV decrypts with the segment's media sequence number as
  IV (§5.2), which stitching changes: such IVs are written out (``pin_ivs``) before segments move.
- EXT-X-VERSION is raised to what the output uses (``required_version``, §7).
- The origin's cue tags are dropped (the breaks are acted on) and the stitched ads are marked with our own
  ``EXT-X-CUE-OUT:DURATION=…`` / ``EXT-X-CUE-OUT-CONT:ElapsedTime=…,Duration=…`` / ``EXT-X-CUE-IN``, the
  same on every reload, so downstream tools (CDNs, analytics, a second stitcher) still see each break.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sidecast.hls import Key, MediaPlaylist, Segment, Variant, target_duration_for
from sidecast.hls import tags as T
from sidecast.hls.breaks import Break

log = logging.getLogger("sidecast.ads.ssai")

_EPS = 0.1  # seconds: segment times are compared with this tolerance (EXTINF rounding, audio vs video)


@dataclass(frozen=True, slots=True)
class AdMedia:
    """One ad of a pod for one rendition: its segments with the URIs the output should carry."""

    creative_id: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class Placement:
    """A break and what fills it for one rendition. ``ads`` empty = the content plays (a fallback)."""

    brk: Break
    ads: tuple[AdMedia, ...] = ()
    slate: Segment | None = None
    first_sequence: int | None = None   # live: the first media sequence number the pod may take


@dataclass(frozen=True, slots=True)
class Stitched:
    playlist: MediaPlaylist
    seams: tuple[int, ...]   # media sequence numbers where stitching added a discontinuity


@dataclass(frozen=True, slots=True)
class _Entry:
    seg: Segment
    ad: int      # index of the ad in the pod
    first: bool  # first segment of its ad


def _pod_entries(p: Placement, limit: float, target: int | None, max_count: int | None) -> list[_Entry]:
    """The pod's segments in play order, trimmed at a segment boundary to fit ``limit`` seconds."""
    out: list[_Entry] = []
    total = 0.0
    for ai, ad in enumerate(p.ads):
        for si, seg in enumerate(ad.segments):
            if limit > 0 and total + seg.duration > limit + _EPS:
                return out
            if target is not None and math.floor(seg.duration + 0.5) > target:
                log.warning("ad %s segment %s is %.3f s, longer than the target duration %d s: pod ends there",
                            ad.creative_id, seg.uri, seg.duration, target)
                return out
            if max_count is not None and len(out) >= max_count:
                return out
            out.append(_Entry(seg, ai, si == 0))
            total += seg.duration
    return out


def _offsets(content: MediaPlaylist, brk: Break) -> list[float | None]:
    """Each segment's start relative to the break start (wall clock when both sides have it)."""
    times = content.segment_times()
    pdts = content.program_date_times() if brk.start_date is not None else [None] * len(times)
    out: list[float | None] = []
    for t, pdt in zip(times, pdts, strict=True):
        if brk.start_date is not None and pdt is not None:
            out.append((pdt - brk.start_date).total_seconds())
        elif brk.start_date is not None and not content.endlist:
            out.append(None)  # a live break placed by wall clock cannot be placed on a segment without one
        else:
            out.append(t - brk.start)
    return out


def nominal_duration(content: MediaPlaylist) -> float:
    """The content's usual segment duration (median): the width of one slot.

    To 0.1 s for segments of a second or more (audio's EXTINFs wobble by AAC frames around the video's);
    below a second to 10 µs, since rounding there would misplace slots: a low-latency caption playlist
    lists one WebVTT part of 1/3 s per segment, and a slot of 0.3 s puts a window that opens 12 s into a
    break 4 slots off."""
    ds = sorted(s.duration for s in content.segments)
    if not ds:
        return float(content.target_duration or 1)
    median = ds[len(ds) // 2]
    if median < 1.0:
        return max(round(median, 5), 0.001)
    return max(round(median, 1), 0.1)


def nearest_variant(variants: Sequence[Variant], want: Variant | None) -> Variant:
    """The variant closest to `want` (a content rendition): by resolution and bandwidth together, each as a
    ratio (a 720p ad at 2.5 Mbit/s for 720p content at 3 Mbit/s beats a 1080p one at 3 Mbit/s); the first
    variant when there is nothing to compare."""
    if want is None:
        return variants[0]
    wr, wb = want.resolution, want.bandwidth

    def gap(v: Variant) -> float:
        score = 0.0
        if wr is not None:
            vr = v.resolution
            score += abs(math.log(max(vr[1], 1) / max(wr[1], 1))) if vr else 4.0
        if wb:
            score += abs(math.log(max(v.bandwidth or 1, 1) / wb)) if v.bandwidth else 4.0
        return score

    return min(variants, key=gap)


def _needs_iv(k: Key) -> bool:
    return k.method in ("AES-128", "SAMPLE-AES") and "IV" not in k.attrs and k.keyformat == "identity"


def pin_ivs(pl: MediaPlaylist) -> MediaPlaylist:
    """The same playlist with the implicit IV of every encrypted segment written out: a key without an IV
    attribute decrypts with the segment's media sequence number (RFC 8216bis §5.2), and a stitched
    playlist gives segments other numbers than the playlist they came from."""
    if not any(_needs_iv(k) for s in pl.segments for k in s.keys):
        return pl
    segs = []
    for i, seg in enumerate(pl.segments):
        if any(_needs_iv(k) for k in seg.keys):
            iv = f"0x{(pl.media_sequence + i) & (2 ** 128 - 1):032X}"
            seg = replace(seg, keys=tuple(replace(k, attrs={**k.attrs, "IV": iv}) if _needs_iv(k) else k
                                          for k in seg.keys))
        segs.append(seg)
    return pl.copy(segments=segs)


def pin_byteranges(pl: MediaPlaylist) -> MediaPlaylist:
    """The same playlist with every EXT-X-BYTERANGE offset written out: ``n`` without ``@o`` continues
    the previous segment's range (§4.4.4.2), and after a splice the previous segment is another file."""
    if not any(t.startswith(T.EXT_X_BYTERANGE) for s in pl.segments for t in s.tags):
        return pl
    next_offset: dict[str, int] = {}
    segs = []
    for seg in pl.segments:
        tags = list(seg.tags)
        for k, t in enumerate(tags):
            if not t.startswith(T.EXT_X_BYTERANGE + ":"):
                continue
            n, at, o = t.split(":", 1)[1].partition("@")
            if not n.strip().isdigit() or (at and not o.strip().isdigit()):
                continue
            offset = int(o) if at else next_offset.get(seg.uri, 0)
            tags[k] = f"{T.EXT_X_BYTERANGE}:{int(n)}@{offset}"
            next_offset[seg.uri] = offset + int(n)
        segs.append(replace(seg, tags=tuple(tags)) if tuple(tags) != seg.tags else seg)
    return pl.copy(segments=segs)


def required_version(pl: MediaPlaylist) -> int:
    """The lowest EXT-X-VERSION a media playlist's features need (RFC 8216bis §7): decimal EXTINF 3 (our
    writer always writes decimals), IV 2, BYTERANGE and I-FRAMES-ONLY 4, KEYFORMAT(VERSIONS) 5, EXT-X-MAP
    in a playlist that is not I-frames-only 6, EXT-X-DEFINE 8, EXT-X-SKIP 9."""
    v = 3 if pl.segments else 1
    iframes = any(t.startswith(T.EXT_X_I_FRAMES_ONLY) for t in pl.header_tags)
    if iframes:
        v = max(v, 4)
    if any(t.startswith(T.EXT_X_DEFINE) for t in pl.header_tags):
        v = max(v, 8)
    if any(t.startswith(T.EXT_X_SKIP) for t in pl.header_tags):
        v = max(v, 9)
    for seg in pl.segments:
        for k in seg.keys:
            if "IV" in k.attrs:
                v = max(v, 2)
            if "KEYFORMAT" in k.attrs or "KEYFORMATVERSIONS" in k.attrs:
                v = max(v, 5)
        if seg.init_section is not None:
            v = max(v, 5 if iframes else 6)
        if any(t.startswith(T.EXT_X_BYTERANGE) for t in seg.tags):
            v = max(v, 4)
    return v


def _num(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".") or "0"


# Cue times to 0.1 s: audio segments run a few ms off video ones (AAC frames), and the renditions of one
# stitched break should announce the same break.
def _cue_out(span: float) -> str:
    return f"{T.EXT_X_CUE_OUT}:DURATION={_num(round(span, 1))}"


def _cue_cont(elapsed: float, span: float) -> str:
    return f"{T.EXT_X_CUE_OUT_CONT}:ElapsedTime={_num(round(elapsed, 1))},Duration={_num(round(span, 1))}"


def _with_tag(seg: Segment, tag: str) -> Segment:
    return replace(seg, tags=(*seg.tags, tag))


def _versioned(content: MediaPlaylist, out: MediaPlaylist) -> MediaPlaylist:
    need = required_version(out)
    have = content.version or 1
    if need > have or content.version is not None:
        out.version = max(need, have)
    return out


def _strip_cues(content: MediaPlaylist) -> MediaPlaylist:
    """Drop the origin's cue tags: the breaks they signal are stitched, no one downstream should act again."""
    if not any(s.tags for s in content.segments):
        return content

    def kept(tags: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(t for t in tags if t.partition(":")[0] not in T.AD_SIGNALLING)

    return content.copy(segments=[s if not s.tags else replace(s, tags=kept(s.tags)) for s in content.segments])


def stitch(content: MediaPlaylist, placements: Sequence[Placement], prior_seams: int = 0,
           slot: float | None = None) -> Stitched:
    """Stitch ``placements`` into ``content``; live or VOD by the playlist's EXT-X-ENDLIST.

    A break still open (its end not known yet) is left to the content: the ads act on closed breaks."""
    content = pin_byteranges(pin_ivs(_strip_cues(content)))
    placements = [p for p in placements if p.brk.duration is not None]
    if content.endlist:
        out = _stitch_vod(content, placements)
    else:
        out = _stitch_live(content, placements, prior_seams, slot or nominal_duration(content))
    _versioned(content, out.playlist)
    return out


def _ad_segment(entry: _Entry, pdt: datetime | None, disc: bool) -> Segment:
    """The ad's segment in its slot: the slot's clock, its own keys and initialization section."""
    return replace(entry.seg, discontinuity=disc, program_date_time=pdt, dateranges=())


def _slate_segment(slate: Segment, duration: float, pdt: datetime | None) -> Segment:
    return replace(slate, duration=duration, discontinuity=True, program_date_time=pdt, dateranges=())


def _duration(brk: Break) -> float:
    assert brk.duration is not None, "stitch() drops open breaks"
    return brk.duration


def _stitch_live(content: MediaPlaylist, placements: Sequence[Placement], prior_seams: int,
                 slot: float) -> Stitched:
    n = len(content.segments)
    # Per segment: (placement index, slot index) when it plays a slot of a break's pod. Slots before a
    # late pod's first slot were served as content and stay content.
    where: list[tuple[int, int] | None] = [None] * n
    # The same for the segment just before the window: what it played decides whether the first listed
    # segment opens with a discontinuity, exactly as it did when that segment was listed after it.
    head: tuple[int, int] | None = None
    # Where breaks overlap, the one that starts first owns the segments, whatever order they come in.
    placements = sorted(placements, key=lambda p: (p.brk.start_date is None, p.brk.start_date or p.brk.start,
                                                   p.brk.start, p.brk.id))
    entries: list[list[_Entry]] = []
    remaining: list[float] = []   # seconds of each break from the pod's first slot on
    edge_in_pod = False           # the segment being built after the last listed one is inside a pod
    for pi, p in enumerate(placements):
        brk, dur = p.brk, _duration(p.brk)
        remaining.append(0.0)
        if dur <= 0:
            log.warning("ignoring break %s in a live playlist: a live break must replace content (duration > 0)",
                        brk.id)
            entries.append([])
            continue
        offs = _offsets(content, brk)
        # Slots are counted in media sequence numbers (one segment, one slot), anchored on the first
        # segment of the window that is in the break or right after it.
        start_msn = None
        for i, o in enumerate(offs):
            if o is not None and -_EPS <= o < dur - _EPS + slot - _EPS:
                start_msn = content.media_sequence + i - int(round(o / slot))
                break
        if start_msn is None:
            entries.append([])
            continue
        # A pod decided after the session already saw some of the break's segments starts at the first
        # segment it has not seen: a listed segment never changes (RFC 8216bis §6.2.2).
        first = max(start_msn, p.first_sequence if p.first_sequence is not None else start_msn)
        nslots = max(1, int(math.ceil((dur - _EPS) / slot)))
        late = first - start_msn
        remaining[pi] = dur - late * slot
        entries.append(_pod_entries(p, dur - late * slot, content.target_duration, nslots - late))
        if entries[-1] and offs[-1] is not None:
            edge_in_pod |= -_EPS <= offs[-1] + content.segments[-1].duration < dur - _EPS
        for i, o in enumerate(offs):
            msn = content.media_sequence + i
            if o is not None and -_EPS <= o < dur - _EPS and msn >= first and where[i] is None:
                where[i] = (pi, msn - first)
        if offs[0] is not None and head is None:
            o, msn = offs[0] - slot, content.media_sequence - 1
            if -_EPS <= o < dur - _EPS and msn >= first:
                head = (pi, msn - first)

    def source(pi: int, j: int) -> tuple[str, int]:
        """What plays in slot j of placement pi: ('ad', k), ('slate', j) or ('content', 0)."""
        if j < 0:
            return ("content", 0)
        es = entries[pi]
        if j < len(es):
            return ("ad", es[j].ad)
        if placements[pi].slate is not None and es:
            return ("slate", j)
        return ("content", 0)

    pdts = content.program_date_times()
    times = content.segment_times()
    # Ad segments run on the pod's own clock from the break's start (continuous within the pod, the same
    # on every reload); content keeps the origin's clock.
    starts: list[list[float]] = []
    spans: list[float] = []     # what each placement's ads (and slate) cover, for the cue tags
    for pi, es in enumerate(entries):
        acc, t = [], 0.0
        for e in es:
            acc.append(t)
            t += e.seg.duration
        starts.append(acc)
        # with a slate the cue covers the rest of the break, else just the ads
        spans.append(max(t, remaining[pi]) if placements[pi].slate is not None and es else t)

    def elapsed(pi: int, j: int) -> float:
        es = entries[pi]
        if j < len(es):
            return starts[pi][j]
        return (starts[pi][-1] + es[-1].seg.duration if es else 0.0) + (j - len(es)) * slot
    def played(w: tuple[int, int] | None) -> tuple[int, tuple[str, int]] | None:
        """Which placement's ad or slate a slot plays (None: the content)."""
        src = source(*w) if w is not None else ("content", 0)
        return None if w is None or src[0] == "content" else (w[0], src)

    out: list[Segment] = []
    seams: list[int] = []
    before = played(head)   # what played in the segment before this one
    for i, seg in enumerate(content.segments):
        msn = content.media_sequence + i
        w = where[i]
        now = played(w)
        if now is None:
            # the content: outside a break, or a slot the pod leaves to it; after ads or slate it is a seam
            disc = seg.discontinuity or before is not None
            new = seg if disc == seg.discontinuity else replace(seg, discontinuity=disc)
            if pdts[i] is not None and new.program_date_time is None:
                new = replace(new, program_date_time=pdts[i])
            if before is not None:
                new = _with_tag(new, T.EXT_X_CUE_IN)
        else:
            assert w is not None
            pi, j = w
            src = now[1]
            if src[0] == "ad":
                e = entries[pi][j]
                disc = seg.discontinuity or e.first or before != now
                pdt: datetime | None = None
                here = pdts[i]
                if here is not None:
                    brk = placements[pi].brk
                    pod_start = brk.start_date if brk.start_date is not None else here - timedelta(
                        seconds=times[i] - brk.start)
                    pdt = pod_start + timedelta(seconds=starts[pi][j])
                new = _ad_segment(e, pdt, disc)
            else:
                sl = placements[pi].slate
                assert sl is not None
                # Slate plays the slot's length at most: the next slot starts on the content's clock.
                new = _slate_segment(sl, min(sl.duration, seg.duration), pdts[i])
            new = _with_tag(new, _cue_out(spans[pi]) if j == 0 else _cue_cont(elapsed(pi, j), spans[pi]))
            # DATERANGEs of the origin stay with their slot (they describe the content timeline).
            if seg.dateranges and new.dateranges != seg.dateranges:
                new = replace(new, dateranges=seg.dateranges)
        if new.discontinuity and not seg.discontinuity:
            seams.append(msn)
        out.append(new)
        before = now
    pl = content.copy(segments=out, discontinuity_sequence=content.discontinuity_sequence + prior_seams)
    if (pl.trailing_parts or pl.preload_hints) and edge_in_pod:
        # LL-HLS: the parts of the segment being built (and the hint for the next) are content that the
        # pod replaces; an LL player plays parts at the live edge, so they go until the pod has ended.
        pl = pl.copy(trailing_parts=[], preload_hints=[])
    return Stitched(pl, tuple(seams))


def _stitch_vod(content: MediaPlaylist, placements: Sequence[Placement]) -> Stitched:
    pdts = content.program_date_times()
    offs = [_offsets(content, p.brk) for p in placements]
    durs = [_duration(p.brk) for p in placements]
    pods = [_pod_entries(p, durs[pi], None, None) for pi, p in enumerate(placements)]
    pod_end: dict[int, float] = {}       # placement -> where its pod ended, relative to the break start
    inserted = [False] * len(placements)
    out: list[Segment] = []
    prev_src: tuple[str, int] = ("content", 0)

    pod_len = [sum(e.seg.duration for e in es) for es in pods]
    cue_elapsed: dict[int, float] = {}   # placement -> seconds of its break written so far

    def cue(pi: int, length: float) -> str:
        """The cue tag of the next segment of placement pi's break (CUE-OUT on its first)."""
        span = pod_len[pi] if placements[pi].slate is None else max(pod_len[pi], durs[pi])
        done = cue_elapsed.get(pi)
        cue_elapsed[pi] = (done or 0.0) + length
        return _cue_out(span) if done is None else _cue_cont(done, span)

    def emit_pod(pi: int, pdt0: datetime | None) -> float:
        nonlocal prev_src
        t = 0.0
        for e in pods[pi]:
            src = ("ad", pi * 10_000 + e.ad)
            pdt = pdt0 + timedelta(seconds=t) if pdt0 is not None else None
            out.append(_with_tag(_ad_segment(e, pdt, e.first or src != prev_src), cue(pi, e.seg.duration)))
            prev_src = src
            t += e.seg.duration
        return t

    def content_seg(i: int, seg: Segment) -> None:
        nonlocal prev_src
        disc = seg.discontinuity or prev_src[0] != "content"
        new = replace(seg, discontinuity=disc, program_date_time=pdts[i])
        out.append(_with_tag(new, T.EXT_X_CUE_IN) if prev_src[0] != "content" else new)
        prev_src = ("content", 0)

    for i, seg in enumerate(content.segments):
        # Insertions (duration-0 breaks) go before the first segment at or after their time.
        for pi in range(len(placements)):
            o = offs[pi][i]
            if durs[pi] <= 0 and not inserted[pi] and o is not None and o >= -_EPS:
                inserted[pi] = True
                emit_pod(pi, pdts[i])
        hit = None
        for pi in range(len(placements)):
            o = offs[pi][i]
            if durs[pi] > 0 and o is not None and -_EPS <= o < durs[pi] - _EPS:
                hit = (pi, o)
                break
        if hit is None:
            content_seg(i, seg)
            continue
        pi, o = hit
        p = placements[pi]
        if pi not in pod_end:
            pod_end[pi] = o + emit_pod(pi, pdts[i])
        if o < pod_end[pi] - _EPS:
            continue  # covered by the pod; content returns at the next segment boundary after it
        if p.slate is not None and pods[pi]:
            length = min(p.slate.duration, seg.duration)
            out.append(_with_tag(_slate_segment(p.slate, length, pdts[i]), cue(pi, length)))
            prev_src = ("slate", i)
            continue
        content_seg(i, seg)
    # Insertions at or after the end (post-rolls).
    if content.segments:
        last = pdts[-1]
        pdt_end = last + timedelta(seconds=content.segments[-1].duration) if last is not None else None
        for pi in range(len(placements)):
            if durs[pi] <= 0 and not inserted[pi]:
                emit_pod(pi, pdt_end)
                inserted[pi] = True
    trailing = list(content.trailing_tags)
    if prev_src[0] != "content":
        trailing.insert(0, T.EXT_X_CUE_IN)   # a post-roll: its break ends with the playlist
    seams = tuple(content.media_sequence + i for i, s in enumerate(out) if s.discontinuity)
    target = max(content.target_duration, target_duration_for(s.duration for s in out))
    return Stitched(content.copy(segments=out, target_duration=target, trailing_tags=trailing), seams)
