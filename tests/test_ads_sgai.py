"""SGAI: HLS Interstitial DATERANGEs (rfc8216bis Appendix D) and the playlist model that keeps them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import m3u8
import pytest

from sidecast.ads.models import AdPod, PodAd
from sidecast.ads.sgai import Interstitial, add_interstitials, asset_list_json, ensure_program_date_time
from sidecast.hls import DateRange, parse_attributes, parse_media
from sidecast.hls.breaks import Break
from tests.test_ads_ssai import live_window

T0 = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)

WITH_INTERSTITIALS = """#EXTM3U
#EXT-X-VERSION:3
#EXT-X-TARGETDURATION:2
#EXT-X-MEDIA-SEQUENCE:0
#EXT-X-PLAYLIST-TYPE:VOD
#EXT-X-PROGRAM-DATE-TIME:2026-05-01T18:00:00.000Z
#EXT-X-DATERANGE:ID="pre",CLASS="com.apple.hls.interstitial",START-DATE="2026-05-01T18:00:00.000Z",CUE="PRE,ONCE",X-ASSET-LIST="http://127.0.0.1/l.json?a=1,b=2",X-RESUME-OFFSET=0
#EXTINF:2.0,
a.ts
#EXT-X-DATERANGE:ID="mid",CLASS="com.apple.hls.interstitial",START-DATE="2026-05-01T18:00:02.000Z",DURATION=0,X-ASSET-URI="http://127.0.0.1/ad.m3u8",X-RESUME-OFFSET=0
#EXTINF:2.0,
b.ts
#EXT-X-ENDLIST
#EXT-X-DATERANGE:ID="post",CLASS="com.apple.hls.interstitial",START-DATE="2026-05-01T18:00:04.000Z",CUE="POST",X-ASSET-LIST="http://127.0.0.1/l.json"
"""


def test_playlist_model_keeps_what_m3u8_drops_cue_duration_zero_and_trailing_dateranges():
    pl = parse_media(WITH_INTERSTITIALS)
    ids = [d.id for d in pl.dateranges()]
    assert ids == ["pre", "mid", "post"]
    by_id = {d.id: d for d in pl.dateranges()}
    assert by_id["pre"].string("CUE") == "PRE,ONCE"
    assert by_id["mid"].attrs["DURATION"] == "0"
    assert by_id["pre"].string("X-ASSET-LIST") == "http://127.0.0.1/l.json?a=1,b=2"  # comma inside quotes
    again = parse_media(pl.dumps())
    assert [d.attrs for d in again.dateranges()] == [d.attrs for d in pl.dateranges()]
    assert again.dumps() == pl.dumps()
    # and the output is still a playlist the m3u8 package reads
    assert len(m3u8.loads(pl.dumps()).segments) == 2


def test_live_interstitial_replaces_the_break_with_spec_attributes():
    pl = live_window(10, 6)
    brk = Break("brk-1", 0.0, 6.0, start_date=T0 + timedelta(seconds=24))
    out = add_interstitials(pl, [brk], "http://127.0.0.1:9/assets?break={break_id}&d={duration}")
    [dr] = out.dateranges()
    a = dr.attrs
    assert dr.cls == "com.apple.hls.interstitial" and dr.id == "brk-1"
    assert dr.start_date == T0 + timedelta(seconds=24)
    assert a["DURATION"] == "6"
    assert dr.string("X-ASSET-LIST") == "http://127.0.0.1:9/assets?break=brk-1&d=6"
    assert "X-ASSET-URI" not in a
    assert "X-RESUME-OFFSET" not in a          # live: resume at the live point after the ad
    assert a["X-PLAYOUT-LIMIT"] == "6"
    assert dr.string("X-SNAP") == "OUT,IN"
    assert dr.string("X-RESTRICT") == "SKIP,JUMP"
    assert dr.string("X-TIMELINE-OCCUPIES") == "RANGE"
    # written with the segment it starts in (the one at 24 s = segment 12)
    assert out.segments[2].dateranges == (dr,)


def test_daterange_stays_while_it_overlaps_the_window_and_goes_after():
    brk = Break("b", 0.0, 6.0, start_date=T0 + timedelta(seconds=20))
    # window starting at 24 s still overlaps [20, 26): the tag stays (§6.2.1)
    assert [d.id for d in add_interstitials(live_window(12, 5), [brk], "http://x/l").dateranges()] == ["b"]
    # window starting at 28 s: the range ended, it is dropped
    assert add_interstitials(live_window(14, 5), [brk], "http://x/l").dateranges() == []


def test_pre_and_post_rolls_use_cue_and_post_goes_after_the_last_segment():
    pl = live_window(0, 3, end=True)
    out = add_interstitials(pl, [Break("p", 0, 0, "pre"), Break("q", 6.0, 0, "post")], "http://x/l")
    pre, post = out.dateranges()
    assert pre.string("CUE") == "PRE" and pre.attrs["X-RESUME-OFFSET"] == "0"
    assert post.string("CUE") == "POST" and post.start_date == T0 + timedelta(seconds=6)
    assert out.trailing_dateranges == [post]
    assert parse_media(out.dumps()).dateranges() == [pre, post]


def test_vod_insert_has_resume_offset_zero_and_occupies_a_point():
    out = add_interstitials(live_window(0, 5, end=True), [Break("m", 4.0, 0.0)], "http://x/l")
    [dr] = out.dateranges()
    assert (dr.attrs["DURATION"], dr.attrs["X-RESUME-OFFSET"], dr.string("X-TIMELINE-OCCUPIES")) == ("0", "0", "POINT")
    assert dr.start_date == T0 + timedelta(seconds=4)


def test_program_date_time_is_added_when_missing():
    text = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\na.ts\n#EXTINF:2.0,\nb.ts\n#EXT-X-ENDLIST\n"
    start = datetime(2030, 1, 1, tzinfo=UTC)
    pl = ensure_program_date_time(parse_media(text), start)
    assert [s.program_date_time for s in pl.segments] == [start, start + timedelta(seconds=2)]
    out = add_interstitials(parse_media(text), [Break("m", 2.0, 0.0)], "http://x/l", start)
    assert "#EXT-X-PROGRAM-DATE-TIME:2030-01-01T00:00:00.000Z" in out.dumps()
    assert out.dateranges()[0].start_date == start + timedelta(seconds=2)


@pytest.mark.parametrize("kwargs,message", [
    ({}, "exactly one of X-ASSET-URI and X-ASSET-LIST"),
    ({"asset_uri": "http://a", "asset_list": "http://b"}, "exactly one"),
    ({"asset_uri": "http://a", "cue": ("PRE", "POST")}, "both PRE and POST"),
    ({"asset_uri": "http://a", "snap": ("LEFT",)}, "X-SNAP"),
    ({"asset_uri": "http://a", "restrict": ("SEEK",)}, "X-RESTRICT"),
    ({"asset_uri": "http://a", "duration": -1.0}, "must not be negative"),
    ({"asset_uri": "http://a", "timeline_occupies": "ALL"}, "POINT or RANGE"),
])
def test_interstitial_outside_the_spec_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Interstitial("x", T0, **kwargs).to_daterange()


def test_all_optional_attributes_are_written_in_spec_form():
    dr = Interstitial("x", T0, asset_uri="http://a/ad.m3u8", duration=10, planned_duration=12.5,
                      resume_offset=0, playout_limit=10, snap=("OUT",), restrict=("JUMP",), cue=("ONCE",),
                      timeline_occupies="POINT", timeline_style="HIGHLIGHT", content_may_vary=False).to_daterange()
    attrs = parse_attributes(dr.dumps().partition(":")[2])
    assert attrs == {
        "ID": '"x"', "CLASS": '"com.apple.hls.interstitial"', "START-DATE": '"2026-05-01T18:00:00.000Z"',
        "CUE": '"ONCE"', "DURATION": "10", "PLANNED-DURATION": "12.5", "X-ASSET-URI": '"http://a/ad.m3u8"',
        "X-RESUME-OFFSET": "0", "X-PLAYOUT-LIMIT": "10", "X-SNAP": '"OUT"', "X-RESTRICT": '"JUMP"',
        "X-CONTENT-MAY-VARY": '"NO"', "X-TIMELINE-OCCUPIES": '"POINT"', "X-TIMELINE-STYLE": '"HIGHLIGHT"',
    }
    assert DateRange(attrs).dumps() == dr.dumps()


def test_asset_list_json_follows_appendix_d():
    pod = AdPod("b", "s", (PodAd("c1", 4.0, "http://x/1.m3u8"), PodAd("c2", 6.5, "http://x/2.m3u8")))
    assert asset_list_json(pod) == ('{"ASSETS": [{"URI": "http://x/1.m3u8", "DURATION": 4.0}, '
                                    '{"URI": "http://x/2.m3u8", "DURATION": 6.5}]}')
