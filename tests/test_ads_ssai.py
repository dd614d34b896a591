"""SSAI stitching as a pure function: golden playlists and properties over sliding live windows."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import m3u8
from hypothesis import HealthCheck, example, given, note, settings
from hypothesis import strategies as st

from sidecast.ads.session import SessionState
from sidecast.ads.ssai import AdMedia, Placement, stitch
from sidecast.hls import MediaPlaylist, Segment, parse_media
from sidecast.hls.breaks import Break
from sidecast.hls.timebase import format_pdt

T0 = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)


def live_window(first: int, n: int, durs: list[float] | None = None, discs: set[int] = frozenset(),
                end: bool = False) -> MediaPlaylist:
    """Segments [first, first+n) of an endless stream of 2 s segments (or ``durs``) with true PDTs."""
    durs = durs or [2.0] * (first + n)
    t = T0 + timedelta(seconds=sum(durs[:first]))
    segs = []
    for k in range(first, first + n):
        segs.append(Segment(f"seg_{k:06d}.ts", durs[k], "", k in discs, t))
        t += timedelta(seconds=durs[k])
    dsn = sum(1 for k in discs if k < first)
    return MediaPlaylist(target_duration=2, segments=segs, media_sequence=first, discontinuity_sequence=dsn,
                         version=3, endlist=end)


def ad(name: str, durs: list[float]) -> AdMedia:
    return AdMedia(name, tuple(Segment(f"{name}_{i}.ts", d) for i, d in enumerate(durs)))


def brk_at(seg_index: int, duration: float, bid: str = "b1") -> Break:
    return Break(bid, 0.0, duration, start_date=T0 + timedelta(seconds=2 * seg_index))


def test_golden_live_window_with_a_break_in_the_middle():
    pl = live_window(10, 8)
    out = stitch(pl, [Placement(brk_at(12, 6.0), (ad("a", [2, 2]), ad("b", [2])))])
    assert out.playlist.dumps() == (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:10\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:20.000Z\n#EXTINF:2.0,\nseg_000010.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:22.000Z\n#EXTINF:2.0,\nseg_000011.ts\n"
        "#EXT-X-DISCONTINUITY\n#EXT-X-CUE-OUT:DURATION=6\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:24.000Z\n#EXTINF:2.0,\na_0.ts\n"
        "#EXT-X-CUE-OUT-CONT:ElapsedTime=2,Duration=6\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:26.000Z\n#EXTINF:2.0,\na_1.ts\n"
        "#EXT-X-DISCONTINUITY\n#EXT-X-CUE-OUT-CONT:ElapsedTime=4,Duration=6\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:28.000Z\n#EXTINF:2.0,\nb_0.ts\n"
        "#EXT-X-DISCONTINUITY\n#EXT-X-CUE-IN\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:30.000Z\n#EXTINF:2.0,\nseg_000015.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:32.000Z\n#EXTINF:2.0,\nseg_000016.ts\n"
        "#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:34.000Z\n#EXTINF:2.0,\nseg_000017.ts\n"
    )
    assert out.seams == (12, 14, 15)
    parsed = m3u8.loads(out.playlist.dumps())
    assert [s.discontinuity for s in parsed.segments] == [False, False, True, False, True, True, False, False]


def test_short_pod_returns_to_content_at_the_next_slot():
    out = stitch(live_window(0, 10), [Placement(brk_at(2, 8.0), (ad("a", [2, 1]),))]).playlist
    uris = [s.uri for s in out.segments]
    assert uris == ["seg_000000.ts", "seg_000001.ts", "a_0.ts", "a_1.ts", "seg_000004.ts", "seg_000005.ts",
                    "seg_000006.ts", "seg_000007.ts", "seg_000008.ts", "seg_000009.ts"]
    assert [s.discontinuity for s in out.segments][2:7] == [True, False, True, False, False]
    # the content segment after the short ad keeps its own (true) wall clock
    assert out.segments[4].program_date_time == T0 + timedelta(seconds=8)


def test_short_pod_with_slate_fills_the_break_then_content_resumes():
    slate = Segment("slate.ts", 2.0)
    out = stitch(live_window(0, 9), [Placement(brk_at(2, 8.0), (ad("a", [2]),), slate)]).playlist
    assert [s.uri for s in out.segments] == ["seg_000000.ts", "seg_000001.ts", "a_0.ts", "slate.ts", "slate.ts",
                                             "slate.ts", "seg_000006.ts", "seg_000007.ts", "seg_000008.ts"]
    assert [s.discontinuity for s in out.segments] == [False, False, True, True, True, True, True, False, False]


def test_long_pod_is_trimmed_at_a_segment_boundary():
    out = stitch(live_window(0, 8), [Placement(brk_at(1, 4.0), (ad("a", [2, 2, 2, 2]),))]).playlist
    assert [s.uri for s in out.segments][:4] == ["seg_000000.ts", "a_0.ts", "a_1.ts", "seg_000003.ts"]
    assert out.segments[3].discontinuity


def test_ad_segment_longer_than_target_duration_ends_the_pod_in_live():
    out = stitch(live_window(0, 6), [Placement(brk_at(1, 4.0), (ad("a", [2, 3.9]),))]).playlist
    assert out.target_duration == 2
    assert [s.uri for s in out.segments][:3] == ["seg_000000.ts", "a_0.ts", "seg_000002.ts"]


def test_empty_pod_plays_the_content_untouched():
    pl = live_window(0, 6)
    out = stitch(pl, [Placement(brk_at(1, 4.0), ())])
    assert out.playlist.dumps() == pl.dumps() and out.seams == ()


def test_vod_cue_break_replaced_by_whole_pod_and_content_resumes():
    pl = live_window(0, 6, end=True)
    out = stitch(pl, [Placement(Break("b", 4.0, 4.0), (ad("a", [3, 3]),))]).playlist
    # 4 s break, a pod of two 3 s segments: trimmed to one (3 s); content resumes with the first segment
    # that starts after the ad (segment 3 started at 6 s, inside the ad: it is skipped)
    assert [s.uri for s in out.segments] == ["seg_000000.ts", "seg_000001.ts", "a_0.ts", "seg_000004.ts",
                                             "seg_000005.ts"]
    assert out.target_duration == 3 and out.endlist
    assert m3u8.loads(out.dumps()).is_endlist


def test_vod_pre_mid_and_post_rolls_insert_without_replacing_content():
    pl = live_window(0, 4, end=True)
    pod = (ad("x", [2, 1.5]),)
    out = stitch(pl, [Placement(Break("pre", 0.0, 0.0, "pre"), pod), Placement(Break("mid", 4.0, 0.0), pod),
                      Placement(Break("post", 8.0, 0.0, "post"), pod)]).playlist
    assert [s.uri for s in out.segments] == ["x_0.ts", "x_1.ts", "seg_000000.ts", "seg_000001.ts", "x_0.ts",
                                             "x_1.ts", "seg_000002.ts", "seg_000003.ts", "x_0.ts", "x_1.ts"]
    assert out.duration == 8.0 + 3 * 3.5
    assert [s.discontinuity for s in out.segments] == [True, False, True, False, True, False, True, False, True,
                                                       False]


def test_origin_cue_tags_give_way_to_cues_around_the_stitched_ads():
    text = live_window(0, 4).dumps().replace("#EXTINF:2.0,\nseg_000001.ts",
                                            "#EXT-X-CUE-OUT:4\n#EXTINF:2.0,\nseg_000001.ts")
    out = stitch(parse_media(text), [Placement(brk_at(1, 4.0), (ad("a", [2, 2]),))]).playlist
    # the origin's cue is gone (acted on); the ads carry ours, so downstream tools still see the break
    assert [s.tags for s in out.segments] == [(), ("#EXT-X-CUE-OUT:DURATION=4",),
                                              ("#EXT-X-CUE-OUT-CONT:ElapsedTime=2,Duration=4",), ("#EXT-X-CUE-IN",)]
    assert "#EXT-X-CUE-OUT:4" not in out.dumps()
    # and the sidecast.hls reader finds exactly that break again
    from sidecast.hls.breaks import breaks_from_playlist
    (b,) = breaks_from_playlist(parse_media(out.dumps()))
    assert (b.duration, b.start_date) == (4.0, T0 + timedelta(seconds=2))


def test_vod_inserts_are_marked_with_cue_tags_and_a_post_roll_closes_at_the_end():
    pl = live_window(0, 3, end=True)
    pod = (ad("x", [2, 1.5]),)
    out = stitch(pl, [Placement(Break("pre", 0.0, 0.0, "pre"), pod),
                      Placement(Break("post", 6.0, 0.0, "post"), pod)]).playlist
    assert [s.tags for s in out.segments] == [
        ("#EXT-X-CUE-OUT:DURATION=3.5",), ("#EXT-X-CUE-OUT-CONT:ElapsedTime=2,Duration=3.5",), ("#EXT-X-CUE-IN",),
        (), (), ("#EXT-X-CUE-OUT:DURATION=3.5",), ("#EXT-X-CUE-OUT-CONT:ElapsedTime=2,Duration=3.5",)]
    assert out.dumps().endswith("x_1.ts\n#EXT-X-CUE-IN\n#EXT-X-ENDLIST\n")


# ---- properties over sliding live windows ------------------------------------------------------

@st.composite
def live_streams(draw):
    total = draw(st.integers(30, 70))
    durs = [draw(st.sampled_from([2.0, 2.0, 2.0, 1.96, 2.04])) for _ in range(total)]
    discs = set(draw(st.lists(st.integers(1, total - 1), max_size=3)))
    breaks = []
    k = draw(st.integers(0, 6))
    bi = 0
    while k < total - 2:
        n = draw(st.integers(1, 6))
        dur = sum(durs[k:k + n]) - draw(st.sampled_from([0.0, 0.0, 0.5, 1.0]))
        start = T0 + timedelta(seconds=sum(durs[:k]))
        n_ads = draw(st.integers(0, 3))
        ads = tuple(ad(f"b{bi}a{j}", [2.0] * draw(st.integers(1, 4)) + draw(st.sampled_from([[], [1.0]])))
                    for j in range(n_ads))
        slate = draw(st.sampled_from([None, Segment("slate.ts", 2.0)]))
        breaks.append(Placement(Break(f"b{bi}", 0.0, dur, start_date=start), ads, slate))
        bi += 1
        k += n + draw(st.integers(1, 12))
    window = draw(st.integers(3, 8))
    steps = draw(st.lists(st.integers(0, 3), min_size=5, max_size=40))
    return durs, discs, breaks, window, steps


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(live_streams())
def test_stitched_live_windows_stay_valid_and_consistent_across_reloads(stream):
    durs, discs, placements, window, steps = stream
    note(f"durs={durs} discs={discs} window={window} steps={steps}")
    note("placements=" + repr([(p.brk.start_date, p.brk.duration, [len(a.segments) for a in p.ads],
                                [a.segments[-1].duration for a in p.ads], p.slate is not None) for p in placements]))
    total = len(durs)
    state = SessionState()
    first = 0
    seen_uri: dict[int, tuple[str, tuple[str, ...]]] = {}
    seen_disc_number: dict[int, int] = {}
    last_ms = -1
    for step in steps:
        first = min(first + step, total - window)
        content = live_window(first, window, durs, discs)
        out = stitch(content, placements, prior_seams=state.prior_seams(first))
        state.record(out.seams, first)
        text = out.playlist.dumps()
        parsed = m3u8.loads(text)
        pl = parse_media(text)
        # valid, one output segment per content segment, media sequence never negative or going back
        assert len(parsed.segments) == len(pl.segments) == window
        assert parsed.media_sequence == pl.media_sequence == first >= 0
        assert first >= last_ms
        last_ms = first
        assert parsed.target_duration == 2
        number = pl.discontinuity_sequence
        pdts = pl.program_date_times()
        for i, seg in enumerate(pl.segments):
            msn = first + i
            # every segment keeps its URI, its tags (the cues we write) and its discontinuity number
            assert seen_uri.setdefault(msn, (seg.uri, seg.tags)) == (seg.uri, seg.tags)
            number += seg.discontinuity
            assert seen_disc_number.setdefault(msn, number) == number, f"discontinuity number of {msn} changed"
            assert math.floor(seg.duration + 0.5) <= 2
            assert seg.program_date_time is not None
            # durations add up: without a discontinuity the wall clock follows the durations exactly,
            # and it never runs backwards at a seam
            if i:
                gap = (pdts[i] - pdts[i - 1]).total_seconds() - pl.segments[i - 1].duration
                if not seg.discontinuity:
                    assert abs(gap) < 1e-3
                else:
                    assert gap > -0.5  # ads run on their own clock: a pod may overhang its slots a little
            # content segments are untouched: same wall clock as the origin
            if seg.uri.startswith("seg_"):
                assert seg.uri == f"seg_{msn:06d}.ts"
                assert seg.program_date_time == content.segments[i].program_date_time
                if msn in discs:
                    assert seg.discontinuity
    # every seam the session recorded is a real discontinuity of the stitched output
    assert all(b >= 0 for b in state.seams)


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 6), st.integers(0, 8), st.integers(0, 3))
def test_vod_stitch_durations_add_up(n_break, n_ad, before):
    total = before + n_break + 4
    pl = live_window(0, total, end=True)
    brk = Break("b", 2.0 * before, 2.0 * n_break)
    pod = (ad("a", [2.0] * n_ad),)
    out = stitch(pl, [Placement(brk, pod)]).playlist
    used = min(n_ad, n_break)
    assert out.duration == 2.0 * total - 2.0 * used + 2.0 * used
    assert sum(1 for s in out.segments if s.uri.startswith("a_")) == used
    assert len(m3u8.loads(out.dumps()).segments) == total
    assert format_pdt(out.segments[-1].program_date_time) == format_pdt(T0 + timedelta(seconds=2 * (total - 1)))


# ---- the service: cue tags on the reference rendition, every rendition in step ----------------------

class _Origin:
    """An origin in memory for StitchService: windows of a video rendition (with cue tags) and audio."""

    def __init__(self, windows: dict[str, MediaPlaylist], ads: dict[str, MediaPlaylist]) -> None:
        self.windows = windows
        self.ads = ads

    def media(self, loc: str) -> MediaPlaylist:
        return self.ads.get(loc) or self.windows[loc.rsplit("/origin/", 1)[1]]

    def master(self, loc: str):  # noqa: ANN201
        from sidecast.hls import parse_master

        return parse_master('#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="a",URI="audio/index.m3u8"\n'
                            '#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=640x360,AUDIO="a"\nvideo/360p/index.m3u8\n')

    def text(self, loc: str) -> tuple[str, object]:
        return self.media(loc).dumps(), 0

    def playlist(self, loc: str):  # noqa: ANN201
        return self.master(loc) if loc.endswith("master.m3u8") else self.media(loc)


def _cued(first: int, n: int, cue_at: set[int], brk_len: int, audio: bool) -> MediaPlaylist:
    segs = []
    for k in range(first, first + n):
        tags: list[str] = []
        if not audio:
            for c in cue_at:
                if k == c:
                    tags.append(f"#EXT-X-CUE-OUT:{2 * brk_len}")
                elif c < k < c + brk_len:
                    tags.append(f"#EXT-X-CUE-OUT-CONT:{2 * (k - c)}/{2 * brk_len}")
                elif k == c + brk_len:
                    tags.append("#EXT-X-CUE-IN")
        d = 2.0 if not audio else (2.005 if k % 2 else 1.995)  # AAC frames: audio segments wobble
        segs.append(Segment(f"seg_{k:06d}.ts", d, "", False, T0 + timedelta(seconds=2 * k), tuple(tags)))
    return MediaPlaylist(target_duration=2, segments=segs, media_sequence=first, version=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(2, 40), min_size=1, max_size=3, unique=True), st.integers(1, 5), st.integers(3, 8),
       st.lists(st.integers(0, 2), min_size=10, max_size=30), st.integers(0, 6))
# overlapping cue tags (a CUE-OUT inside an open break; a CUE-IN and a CUE-OUT on one segment) read
# differently as the window slides: a served content segment must keep its discontinuity number
@example(cues=[5, 8, 9], brk_len=4, window=4, steps=[0, 0, 0, 0, 0, 1, 2, 2, 2, 2], ad_segs=4)
# a break whose slot before the window's head was played by an earlier break (that break's content slot)
@example(cues=[2, 3], brk_len=2, window=3, steps=[0, 0, 0, 0, 0, 0, 0, 0, 2, 2], ad_segs=1)
def test_service_stitches_video_and_audio_in_step_from_cue_tags(cues, brk_len, window, steps, ad_segs):
    from sidecast.ads.models import AdPod, PodAd
    from sidecast.ads.session import StitchService

    note(f"cues={cues} brk_len={brk_len} window={window} steps={steps} ad_segs={ad_segs}")

    ad_lists = {"/ads/video.m3u8": MediaPlaylist(2, [Segment(f"v{i}.ts", 2.0) for i in range(ad_segs)], endlist=True),
                "/ads/audio.m3u8": MediaPlaylist(2, [Segment(f"a{i}.ts", 2.005) for i in range(ad_segs)],
                                                 endlist=True)}
    origin = _Origin({}, ad_lists)
    pod = (PodAd("c", 2.0 * ad_segs, "/ads/master.m3u8",
                 rendition_uris={"360p": "/ads/video.m3u8", "audio": "/ads/audio.m3u8"}),)
    svc = StitchService("/origin", lambda sid, b: AdPod(b.id, sid, pod), lambda *a: None, fetcher=origin)  # type: ignore[arg-type]
    numbers: dict[tuple[str, int], tuple[bool, int]] = {}
    first = 0
    for step in steps:
        first += step
        for key, audio in (("video/360p/index.m3u8", False), ("audio/index.m3u8", True)):
            origin.windows[key] = _cued(first, window, set(cues), brk_len, audio)
        for key in ("video/360p/index.m3u8", "audio/index.m3u8"):
            pl = parse_media(svc.render("s", key))
            assert pl.media_sequence == first and len(pl.segments) == window
            n = pl.discontinuity_sequence
            for i, seg in enumerate(pl.segments):
                n += seg.discontinuity
                is_ad = not seg.uri.startswith("seg_")
                assert numbers.setdefault((key, first + i), (is_ad, n)) == (is_ad, n), (key, first, pl.dumps())
    # video and audio agree, segment by segment, on ad-or-content and on the discontinuity number
    for (key, msn), v in numbers.items():
        other = ("audio/index.m3u8" if key.startswith("video") else "video/360p/index.m3u8", msn)
        if other in numbers:
            assert numbers[other] == v, (msn, v, numbers[other])
    # and the ads really are there: the first break's first slot is an ad in both renditions
    c = min(cues)
    if ad_segs and ("video/360p/index.m3u8", c) in numbers:
        assert numbers[("video/360p/index.m3u8", c)][0] and numbers[("audio/index.m3u8", c)][0]


def ll_window(first: int, n: int) -> MediaPlaylist:
    """A low-latency live window as `sidecast run --latency low` writes it: 2 s segments of four parts,
    the parts of the last two complete segments, the segment being built (two parts so far) and a hint."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-TARGETDURATION:2",
             "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.5,CAN-SKIP-UNTIL=12",
             "#EXT-X-PART-INF:PART-TARGET=0.5", f"#EXT-X-MEDIA-SEQUENCE:{first}", '#EXT-X-MAP:URI="init.mp4"']
    for k in range(first, first + n):
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{format_pdt(T0 + timedelta(seconds=2 * k))}")
        if k >= first + n - 2:
            lines += [f'#EXT-X-PART:DURATION=0.5,URI="seg_{k:06d}-{j}.m4s"' + (",INDEPENDENT=YES" if j == 0 else "")
                      for j in range(4)]
        lines += ["#EXTINF:2.0,", f"seg_{k:06d}.m4s"]
    k = first + n
    lines += [f'#EXT-X-PART:DURATION=0.5,URI="seg_{k:06d}-0.m4s",INDEPENDENT=YES',
              f'#EXT-X-PART:DURATION=0.5,URI="seg_{k:06d}-1.m4s"',
              f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="seg_{k:06d}-2.m4s"']
    return parse_media("\n".join(lines) + "\n")


def fmp4_ad(name: str, durs: list[float]) -> AdMedia:
    return AdMedia(name, tuple(Segment(f"{name}_{i}.m4s", d) for i, d in enumerate(durs)))


def test_ll_hls_parts_of_content_under_an_ad_are_not_left_at_the_live_edge():
    pl = ll_window(10, 6)  # segments 10..15 listed, 16 being built
    assert pl.trailing_parts and pl.preload_hints
    # a break from segment 15 for 6 s covers the edge: the parts of segment 16 are content under the ad
    out = stitch(pl, [Placement(brk_at(15, 6.0), (fmp4_ad("a", [2, 2, 2]),))]).playlist
    text = out.dumps()
    assert "seg_000016" not in text, "content parts under the ad stay out of the playlist"
    assert "EXT-X-PRELOAD-HINT" not in text
    assert "a_0.m4s" in text and 'seg_000014-0.m4s' in text, "parts of content before the break are kept"
    assert out.segments[-1].uri == "a_0.m4s" and not out.segments[-1].parts
    again = parse_media(text)
    assert again.trailing_parts == [] and [s.uri for s in again.segments] == [s.uri for s in out.segments]
    # a break that ended before the edge leaves the live edge's parts and hint alone
    done = stitch(pl, [Placement(brk_at(11, 4.0), (fmp4_ad("b", [2, 2]),))]).playlist
    assert [p.uri for p in done.trailing_parts] == ["seg_000016-0.m4s", "seg_000016-1.m4s"]
    assert len(done.preload_hints) == 1 and "b_0.m4s" in done.dumps()


def test_sgai_on_an_ll_hls_window_keeps_parts_hint_and_server_control():
    from sidecast.ads.sgai import add_interstitials

    pl = ll_window(10, 6)
    out = add_interstitials(pl, [brk_at(17, 4.0)], "http://127.0.0.1:9/assets?break={break_id}")
    text = out.dumps()
    again = parse_media(text)
    assert [d.id for d in again.dateranges()] == ["b1"], "a break ahead of the edge is announced"
    assert [p.uri for p in again.trailing_parts] == ["seg_000016-0.m4s", "seg_000016-1.m4s"]
    assert len(again.preload_hints) == 1 and "CAN-BLOCK-RELOAD=YES" in text and "PART-INF" in text
    assert [len(s.parts) for s in again.segments] == [0, 0, 0, 0, 4, 4]
