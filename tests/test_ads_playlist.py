"""The playlist model round-trips what the ad code depends on (and m3u8 6.0.0 loses)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.ads.playlist import (
    DateRange,
    MediaPlaylist,
    PlaylistError,
    Segment,
    format_attributes,
    parse_attributes,
    parse_master,
    parse_media,
    quote,
)

T0 = datetime(2026, 7, 1, tzinfo=UTC)
safe_text = st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"'), max_size=30)


@st.composite
def dateranges(draw):
    attrs = {"ID": quote(draw(safe_text.filter(bool))),
             "START-DATE": quote((T0 + timedelta(seconds=draw(st.integers(0, 100)))).isoformat())}
    if draw(st.booleans()):
        attrs["CLASS"] = quote("com.apple.hls.interstitial")
    if draw(st.booleans()):
        attrs["CUE"] = quote(draw(st.sampled_from(["PRE", "POST", "ONCE", "PRE,ONCE", "POST,ONCE"])))
    if draw(st.booleans()):
        attrs["DURATION"] = draw(st.sampled_from(["0", "0.0", "15", "30.5"]))
    if draw(st.booleans()):
        attrs["X-ASSET-LIST"] = quote("http://127.0.0.1/list?a=1,b=" + draw(safe_text))
    if draw(st.booleans()):
        attrs["X-RESUME-OFFSET"] = draw(st.sampled_from(["0", "-1.5", "30"]))
    if draw(st.booleans()):
        attrs["SCTE35-OUT"] = "0x" + draw(st.binary(min_size=1, max_size=20)).hex().upper()
    return DateRange(attrs)


@st.composite
def playlists(draw):
    n = draw(st.integers(1, 8))
    segs = []
    for i in range(n):
        segs.append(Segment(
            f"seg_{i}.ts", draw(st.sampled_from([2.0, 1.5, 2.002, 0.04])), draw(safe_text.filter(lambda t: "," not in t and t == t.strip())),
            draw(st.booleans()), T0 + timedelta(seconds=2 * i) if draw(st.booleans()) else None,
            tuple(draw(st.lists(st.sampled_from(["#EXT-X-CUE-OUT:30", "#EXT-X-CUE-IN", "#EXT-X-CUE-OUT-CONT:2/30",
                                                 '#EXT-X-KEY:METHOD=NONE']), max_size=2))),
            tuple(draw(st.lists(dateranges(), max_size=2)))))
    return MediaPlaylist(target_duration=2, segments=segs, media_sequence=draw(st.integers(0, 10**6)),
                         discontinuity_sequence=draw(st.integers(0, 50)), version=draw(st.sampled_from([None, 3, 6])),
                         endlist=draw(st.booleans()), trailing_dateranges=draw(st.lists(dateranges(), max_size=2)))


@settings(max_examples=150, deadline=None)
@given(playlists())
def test_playlists_round_trip_with_every_daterange_attribute(pl):
    text = pl.dumps()
    again = parse_media(text)
    assert again.dumps() == text
    assert [d.attrs for d in again.dateranges()] == [d.attrs for d in pl.dateranges()]
    assert [(s.uri, s.duration, s.discontinuity, s.program_date_time, s.tags) for s in again.segments] == \
        [(s.uri, s.duration, s.discontinuity, s.program_date_time, s.tags) for s in pl.segments]
    assert again.trailing_dateranges == pl.trailing_dateranges  # even after EXT-X-ENDLIST
    # and the output is a playlist the m3u8 package reads, segment for segment
    parsed = m3u8.loads(text)
    assert len(parsed.segments) == len(pl.segments)
    assert parsed.media_sequence == pl.media_sequence


def test_attribute_lists_keep_commas_inside_quotes():
    attrs = parse_attributes('ID="a,b",X-ASSET-LIST="http://h/l?x=1,y=2",DURATION=0,CUE="PRE,ONCE"')
    assert attrs == {"ID": '"a,b"', "X-ASSET-LIST": '"http://h/l?x=1,y=2"', "DURATION": "0", "CUE": '"PRE,ONCE"'}
    assert format_attributes(attrs) == 'ID="a,b",X-ASSET-LIST="http://h/l?x=1,y=2",DURATION=0,CUE="PRE,ONCE"'


@pytest.mark.parametrize("text,message", [
    ("", "not an HLS playlist"),
    ("\ufeff#EXTM3U\n", "byte order mark"),
    ("#EXTM3U\n#EXTINF:2,\na.ts\n", "no #EXT-X-TARGETDURATION"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n", "has no #EXTINF"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:abc,\na.ts\n", "bad #EXTINF"),
    ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n", "master"),
])
def test_bad_playlists_are_clear_errors(text, message):
    with pytest.raises(PlaylistError, match=message):
        parse_media(text)


def test_quote_refuses_what_hls_cannot_carry():
    with pytest.raises(PlaylistError, match="cannot quote"):
        quote('say "hi"')


def test_master_variants_and_uri_rewrite():
    m = parse_master('#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="a",NAME="x",URI="audio/index.m3u8"\n'
                     '#EXT-X-STREAM-INF:BANDWIDTH=1,RESOLUTION=320x180,AUDIO="a"\nvideo/180p/index.m3u8\n')
    assert [(v.kind, v.uri, v.resolution) for v in m.variants()] == [
        ("AUDIO", "audio/index.m3u8", None), ("video", "video/180p/index.m3u8", (320, 180))]
    moved = m.with_uris(lambda u: "../" + u)
    assert [v.uri for v in moved.variants()] == ["../audio/index.m3u8", "../video/180p/index.m3u8"]
