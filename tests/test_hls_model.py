"""The HLS model and parser: round trips (generated and third-party-shaped playlists), what must survive
them (what m3u8 6.0.0 loses), and hostile input that must end in a clear PlaylistError, never another
exception."""

from __future__ import annotations

import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import m3u8
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecast.hls import (
    DateRange,
    Key,
    Map,
    MasterPlaylist,
    MediaPlaylist,
    Part,
    PlaylistError,
    PreloadHint,
    Rendition,
    RenditionReport,
    Segment,
    Variant,
    format_attributes,
    parse,
    parse_attributes,
    parse_master,
    parse_media,
    quote,
    tags,
)

FIXTURES = Path(__file__).parent / "hls_playlists"
T0 = datetime(2026, 7, 1, tzinfo=UTC)

# ----------------------------------------------------------------------------------- strategies

# What a quoted string may hold (§4.2): anything but '"', CR and LF; here also no other control characters.
# (Line and paragraph separators are left out only because the m3u8 package, used as a cross-check, splits
# lines on them; the hostile-input test below feeds them to our parser.)
quoted_text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters='"'),
                      max_size=40)
# An unquoted value: no quote, comma or blank.
unquoted_text = st.text(st.characters(whitelist_categories=("Lu", "Ll", "Nd", "Pd", "Po", "Sm"),
                                      blacklist_characters='",;'), min_size=1, max_size=20)
names = st.from_regex(r"[A-Z][A-Z0-9-]{0,15}", fullmatch=True)
huge_numbers = st.one_of(st.integers(0, 2**64 - 1).map(str), st.sampled_from(["0", "0.0", "1e308", "15", "30.5"]))


@st.composite
def attribute_lists(draw, required: dict[str, str] | None = None) -> dict[str, str]:
    attrs = dict(required or {})
    for name in draw(st.lists(names, max_size=5, unique=True)):
        if name in attrs:
            continue
        attrs[name] = draw(st.one_of(quoted_text.map(quote), unquoted_text, huge_numbers))
    return attrs


@st.composite
def dateranges(draw) -> DateRange:
    attrs = {"ID": quote(draw(quoted_text.filter(bool))),
             "START-DATE": quote((T0 + timedelta(milliseconds=draw(st.integers(0, 10**9)))).isoformat())}
    if draw(st.booleans()):
        attrs["CLASS"] = quote("com.apple.hls.interstitial")
    if draw(st.booleans()):
        attrs["CUE"] = quote(draw(st.sampled_from(["PRE", "POST", "ONCE", "PRE,ONCE", "POST,ONCE"])))
    if draw(st.booleans()):
        attrs["DURATION"] = draw(st.sampled_from(["0", "0.0", "15", "30.5"]))
    if draw(st.booleans()):
        attrs["X-ASSET-LIST"] = quote("http://127.0.0.1/list?a=1,b=" + draw(quoted_text))
    if draw(st.booleans()):
        attrs["SCTE35-OUT"] = "0x" + draw(st.binary(min_size=1, max_size=20)).hex().upper()
    return DateRange(draw(attribute_lists(attrs)))


uris = st.from_regex(r"[a-z0-9_/.?=&%:,-]{1,30}", fullmatch=True).filter(lambda u: not u.startswith("#"))
verbatim_tags = st.one_of(
    st.sampled_from([f"{tags.EXT_X_CUE_OUT}:30", f"{tags.EXT_X_CUE_OUT}:DURATION=30.000", tags.EXT_X_CUE_IN,
                     f"{tags.EXT_X_CUE_OUT_CONT}:2/30", f"{tags.EXT_X_CUE_OUT_CONT}:ElapsedTime=2.0,Duration=30",
                     f"{tags.EXT_X_BYTERANGE}:1000@0", tags.EXT_X_GAP, f"{tags.EXT_X_BITRATE}:4200"]),
    # vendor tags with any text at all after the colon
    st.tuples(st.from_regex(r"#EXT-X-VND-[A-Z]{1,8}", fullmatch=True), quoted_text)
    .map(lambda t: f"{t[0]}:{t[1]}".rstrip(" \t")),  # a line's trailing blanks are not kept
)
durations = st.one_of(st.sampled_from([2.0, 1.5, 2.002, 0.04, 0.0, 4.00008]),
                      st.floats(0, 1e9, allow_nan=False, allow_infinity=False))
parts = st.builds(Part.of, uris, st.floats(0, 10, allow_nan=False), independent=st.booleans())
keys = st.sampled_from([
    (),
    (Key({"METHOD": "AES-128", "URI": quote("k1.bin"), "IV": "0x10ef8f758ca555115584bb5b3c687f52"}),),
    (Key({"METHOD": "SAMPLE-AES", "URI": quote("skd://a"), "KEYFORMAT": quote("com.apple.streamingkeydelivery")}),
     Key({"METHOD": "SAMPLE-AES", "URI": quote("data:x"), "KEYFORMAT": quote("urn:uuid:edef8ba9")})),
])
maps = st.sampled_from([None, Map({"URI": quote("init.mp4")}), Map({"URI": quote("i2.mp4"), "BYTERANGE": '"812@0"'})])


@st.composite
def segments(draw) -> Segment:
    return Segment(
        draw(uris), draw(durations),
        draw(st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs")), max_size=12)),
        draw(st.booleans()), T0 + timedelta(milliseconds=draw(st.integers(0, 10**10))) if draw(st.booleans()) else None,
        tuple(draw(st.lists(verbatim_tags, max_size=3))), tuple(draw(st.lists(dateranges(), max_size=2))),
        tuple(draw(st.lists(parts, max_size=3))), draw(keys), draw(maps))


@st.composite
def media_playlists(draw) -> MediaPlaylist:
    header = draw(st.lists(st.sampled_from([
        tags.EXT_X_INDEPENDENT_SEGMENTS, f"{tags.EXT_X_START}:TIME-OFFSET=-6.0,PRECISE=YES",
        f"{tags.EXT_X_SERVER_CONTROL}:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.0", f"{tags.EXT_X_PART_INF}:PART-TARGET=0.5",
        "# a comment"]), unique=True))
    segs: list[Segment] = []
    for seg in draw(st.lists(segments(), max_size=6)):
        if seg.init_section is None and segs and segs[-1].init_section is not None:
            seg = replace(seg, init_section=segs[-1].init_section)  # a map applies until the next one
        segs.append(seg)
    return MediaPlaylist(
        target_duration=draw(st.integers(0, 2**64 - 1)), segments=segs,
        media_sequence=draw(st.integers(0, 2**64 - 1)), discontinuity_sequence=draw(st.integers(0, 2**64 - 1)),
        version=draw(st.sampled_from([None, 3, 7, 10])), playlist_type=draw(st.sampled_from([None, "VOD", "EVENT"])),
        endlist=draw(st.booleans()), header_tags=header,
        trailing_tags=draw(st.lists(verbatim_tags, max_size=2)),
        trailing_dateranges=draw(st.lists(dateranges(), max_size=2)),
        trailing_parts=draw(st.lists(parts, max_size=3)),
        preload_hints=[PreloadHint({"TYPE": "PART", "URI": quote(u)}) for u in draw(st.lists(uris, max_size=1))],
        rendition_reports=[RenditionReport({"URI": quote(u), "LAST-MSN": "12"}) for u in draw(st.lists(uris, max_size=2))],
    )


# ---------------------------------------------------------------------------------- round trips


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(media_playlists())
def test_media_playlists_round_trip_exactly(pl: MediaPlaylist) -> None:
    text = pl.dumps()
    again = parse_media(text)
    assert again == pl  # every field: segments, key/map state, parts, dateranges, trailing tags, hints, reports
    assert again.dumps() == text
    # a second parser agrees on the segments (it lists the parts of an unfinished one as a segment too)
    assert len([s for s in m3u8.loads(text).segments if s.uri]) == len(pl.segments)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(uris, attribute_lists({"BANDWIDTH": "1"})), max_size=4),
       st.lists(attribute_lists({"TYPE": "AUDIO", "GROUP-ID": '"a"', "NAME": '"n"'}), max_size=3))
def test_master_playlists_round_trip_exactly(variants: list[tuple[str, dict[str, str]]],
                                            renditions: list[dict[str, str]]) -> None:
    pl = MasterPlaylist([Variant(u, a) for u, a in variants], [Rendition(a) for a in renditions],
                        tags=[tags.EXT_X_INDEPENDENT_SEGMENTS], version=6)
    if not pl.variants and not pl.renditions:
        pl.variants.append(Variant("v.m3u8", {"BANDWIDTH": "1"}))
    text = pl.dumps()
    assert parse_master(text) == pl and parse(text) == pl
    assert parse_master(text).dumps() == text


@settings(max_examples=200, deadline=None)
@given(attribute_lists())
def test_attribute_lists_read_back_as_written(attrs: dict[str, str]) -> None:
    assert parse_attributes(format_attributes(attrs)) == attrs


def test_attribute_lists_keep_commas_inside_quotes_and_tolerate_blanks() -> None:
    attrs = parse_attributes('ID="a,b",X-ASSET-LIST="http://h/l?x=1,y=2",DURATION=0,CUE="PRE,ONCE"')
    assert attrs == {"ID": '"a,b"', "X-ASSET-LIST": '"http://h/l?x=1,y=2"', "DURATION": "0", "CUE": '"PRE,ONCE"'}
    assert format_attributes(attrs) == 'ID="a,b",X-ASSET-LIST="http://h/l?x=1,y=2",DURATION=0,CUE="PRE,ONCE"'
    assert parse_attributes('PROGRAM-ID=1, BANDWIDTH=1280000 ,IV=0X10ef') == {
        "PROGRAM-ID": "1", "BANDWIDTH": "1280000", "IV": "0X10ef"}


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("*.m3u8")), ids=lambda p: p.name)
def test_third_party_shaped_playlists_round_trip(path: Path) -> None:
    text = path.read_text()
    pl = parse(text)
    dumped = pl.dumps()
    assert parse(dumped) == pl and parse(dumped).dumps() == dumped
    # nothing the source said is lost: every tag line of the source is in the dump (same name, same
    # attributes), except the ones the model normalises (numbers, PDT, repeated state)
    normalised = (tags.EXTINF, tags.EXT_X_PROGRAM_DATE_TIME, tags.EXT_X_KEY, tags.EXT_X_STREAM_INF)
    kept = {ln.strip() for ln in dumped.splitlines()}
    for ln in (ln.strip() for ln in text.splitlines()):
        if ln and not ln.startswith(normalised):
            assert ln.replace(", ", ",").replace(" ,", ",") in kept, ln
    parsed = m3u8.loads(dumped)
    if isinstance(pl, MediaPlaylist):
        assert len([s for s in parsed.segments if s.uri]) == len(pl.segments)
    else:
        assert len(parsed.playlists) == len(pl.variants)


def test_what_m3u8_drops_survives_interstitials_and_dateranges_after_endlist() -> None:
    text = (FIXTURES / "interstitials_vod.m3u8").read_text()
    pl = parse_media(text)
    by_id = {d.id: d for d in pl.dateranges()}
    assert list(by_id) == ["preroll", "mid-1", "mid-2", "postroll"]
    assert by_id["preroll"].string("CUE") == "PRE" and by_id["postroll"].string("CUE") == "POST,ONCE"
    assert by_id["mid-1"].attrs["DURATION"] == "0"
    assert by_id["mid-1"].string("X-ASSET-LIST") == "https://ads.example.com/list.json?break=mid-1&pos=mid,slot=1"
    assert pl.trailing_dateranges == [by_id["postroll"]] and pl.endlist
    # the same text through the m3u8 package (6.0.0) loses all three (why sidecast has its own model)
    theirs = m3u8.loads(text).dumps()
    mid_1 = next(ln for ln in theirs.splitlines() if 'ID="mid-1"' in ln)
    assert 'ID="postroll"' not in theirs and "CUE=" not in theirs and "DURATION" not in mid_1
    ours = pl.dumps()
    assert 'ID="postroll"' in ours and 'CUE="PRE"' in ours and 'CUE="POST,ONCE"' in ours and ",DURATION=0," in ours


def test_low_latency_tags_are_read_into_the_model() -> None:
    pl = parse_media((FIXTURES / "ll_hls_delta.m3u8").read_text())
    assert pl.header_tags[1].startswith(tags.EXT_X_SERVER_CONTROL)
    assert any(t.startswith(tags.EXT_X_SKIP) and "promo-11\tpromo-12" in t for t in pl.header_tags)
    assert [len(s.parts) for s in pl.segments] == [0, 0, 8]
    assert [p.independent for p in pl.segments[2].parts][:5] == [True, False, False, False, True]
    assert [p.uri for p in pl.trailing_parts] == ["part1403.0.m4s", "part1403.1.m4s", "part1403.2.m4s"]
    assert pl.trailing_parts[0].duration == 0.5
    assert [h.uri for h in pl.preload_hints] == ["part1403.3.m4s"]
    assert [(r.uri, r.attrs["LAST-MSN"]) for r in pl.rendition_reports] == [
        ("../480p/live.m3u8", "1403"), ("../1080p/live.m3u8", "1403")]
    assert [d.id for d in pl.trailing_dateranges] == ["promo-13"]
    assert all(s.init_section == Map({"URI": '"init-720p.mp4"'}) for s in pl.segments)
    moved = pl.with_uris(lambda u: "https://cdn/" + u)
    assert moved.preload_hints[0].uri == "https://cdn/part1403.3.m4s"
    assert moved.rendition_reports[0].uri == "https://cdn/../480p/live.m3u8"
    assert moved.segments[0].init_section is not None and moved.segments[0].init_section.uri == "https://cdn/init-720p.mp4"
    assert pl.segments[0].uri == "seg1400.m4s"  # the original is untouched


def test_keys_and_maps_are_state_and_are_written_again_where_a_window_starts() -> None:
    pl = parse_media((FIXTURES / "fmp4_keys.m3u8").read_text())
    formats = [[k.keyformat for k in s.keys] for s in pl.segments]
    assert formats[0] == ["com.apple.streamingkeydelivery", "urn:uuid:edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"]
    assert [k.uri for k in pl.segments[2].keys] == [  # rotation replaced the FairPlay key only
        "data:text/plain;base64,AAAAW3Bzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAADsIARIQ", "skd://key-2"]
    assert pl.segments[4].keys == () and pl.segments[4].init_section == Map({"URI": '"bumper-init.mp4"'})
    assert pl.segments[3].tags == (tags.EXT_X_GAP,)
    # A window that starts at the third segment still says which keys and map it plays under.
    window = pl.copy(segments=pl.segments[2:], media_sequence=3)
    text = window.dumps()
    assert text.count(tags.EXT_X_KEY + ":METHOD=SAMPLE-AES") == 2 and 'URI="main.mp4",BYTERANGE="812@0"' in text
    assert parse_media(text).segments == window.segments


def test_master_playlists_keep_groups_captions_and_session_tags() -> None:
    m = parse_master((FIXTURES / "master_everything.m3u8").read_text())
    assert [(r.type, r.group_id, r.language, r.uri) for r in m.renditions] == [
        ("AUDIO", "aac", "en", "audio/en/index.m3u8"), ("AUDIO", "aac", "es", "audio/es/index.m3u8"),
        ("SUBTITLES", "subs", "fr", "subs/fr/index.m3u8"), ("CLOSED-CAPTIONS", "cc", "en", None)]
    assert [(v.uri, v.resolution, v.bandwidth) for v in m.variants] == [
        ("video/1080p/index.m3u8?token=a%2Cb", (1920, 1080), 5400000), ("video/720p/index.m3u8", (1280, 720), 2900000)]
    assert m.media_uris()[-1] == "video/720p/index.m3u8"
    moved = m.with_uris(lambda u: "s/" + u)
    text = moved.dumps()
    assert 'URI="s/video/1080p/iframes.m3u8"' in text and 'URI="s/chapters.json"' in text
    assert 'URI="s/thumbs/index.m3u8"' in text and 'URI="s/skd://session-key"' in text
    assert 'CHARACTERISTICS="public.accessibility.transcribes-spoken-dialog,' in text


def test_ffmpeg_fmp4_and_encrypted_output_round_trips(tmp_path: Path) -> None:
    """Real third-party playlists made here by FFmpeg's HLS muxer: fMP4 with EXT-X-MAP and PDT, and
    AES-128 TS with EXT-X-KEY."""
    src = ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=10:duration=4",
           "-c:v", "libx264", "-preset", "ultrafast", "-g", "10"]
    (tmp_path / "key.bin").write_bytes(bytes(range(16)))
    (tmp_path / "keyinfo").write_text(f"key.bin\n{tmp_path / 'key.bin'}\n0123456789abcdef0123456789abcdef\n")
    runs = {
        "fmp4.m3u8": ["-f", "hls", "-hls_time", "1", "-hls_segment_type", "fmp4", "-hls_playlist_type", "vod",
                      "-hls_flags", "program_date_time+independent_segments"],
        "aes.m3u8": ["-f", "hls", "-hls_time", "1", "-hls_key_info_file", str(tmp_path / "keyinfo"),
                     "-hls_playlist_type", "vod"],
    }
    for name, args in runs.items():
        subprocess.run([*src, *args, str(tmp_path / name)], check=True, capture_output=True, timeout=60)
        text = (tmp_path / name).read_text()
        pl = parse_media(text)
        assert pl.endlist and len(pl.segments) == len(m3u8.loads(text).segments) >= 3
        assert parse_media(pl.dumps()) == pl
        if name == "fmp4.m3u8":
            assert all(s.init_section is not None and s.program_date_time is not None for s in pl.segments)
            assert tags.EXT_X_MAP in pl.dumps()
        else:
            assert all(k.method == "AES-128" for s in pl.segments for k in s.keys) and pl.segments[0].keys


# ------------------------------------------------------------------------------- hostile input

garbage_line = st.one_of(
    st.text(max_size=60),
    st.tuples(st.sampled_from(sorted(v for k, v in vars(tags).items() if k.isupper() and isinstance(v, str))),
              st.one_of(st.text(max_size=40), huge_numbers, st.sampled_from(["-1", "nan", "inf", "1e400", "", "9" * 30]),
                        attribute_lists().map(format_attributes), st.sampled_from(['ID="x', 'A=1,A=2', 'A="b"c', ",,"])))
    .map(lambda t: f"{t[0]}:{t[1]}"),
    uris,
)


@settings(max_examples=600, deadline=None)
@given(st.lists(garbage_line, max_size=25), st.booleans())
def test_hostile_playlists_parse_or_raise_playlist_error(lines: list[str], header: bool) -> None:
    text = ("#EXTM3U\n" if header else "") + "\n".join(lines)
    try:
        pl = parse(text)
    except PlaylistError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line a user can act on
        return
    # whatever parsed dumps to a playlist that parses to the same thing
    dumped = pl.dumps()
    assert parse(dumped) == pl and parse(dumped).dumps() == dumped


@pytest.mark.parametrize("text,message", [
    ("", "not an HLS playlist"),
    ("\ufeff#EXTM3U\n", "byte order mark"),
    ("#EXTM3U\n#EXTINF:2,\na.ts\n", "no #EXT-X-TARGETDURATION"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\na.ts\n", "has no #EXTINF"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:abc,\na.ts\n", "bad #EXTINF"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:-1,\na.ts\n", "bad #EXTINF"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:1e400,\na.ts\n", "bad #EXTINF"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n#EXTINF:2,\na.ts\n", "second #EXTINF"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n", "no segment URI after it"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:18446744073709551616\n", "2\\*\\*64-1"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:-3\n", "line 3: bad #EXT-X-MEDIA-SEQUENCE"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:nan\n", "bad #EXT-X-TARGETDURATION"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-PROGRAM-DATE-TIME:yesterday\n", "bad #EXT-X-PROGRAM-DATE-TIME"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-DATERANGE:ID=\"a\",ID=\"b\"\n", "appears twice"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-DATERANGE:ID=\"a\n", "malformed attribute list"),
    ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\na\x00.ts\n", "control character"),
    ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n#EXTINF:2,\na.ts\n", "mixes multivariant tags"),
    ("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n", "has no URI after it"),
    ("#EXTM3U\n#EXT-X-MEDIA:TYPE=AUDIO\nv.m3u8\n", "has no #EXT-X-STREAM-INF before it"),
])
def test_bad_playlists_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(PlaylistError, match=message):
        parse(text)


def test_the_wrong_kind_of_playlist_is_a_clear_error() -> None:
    with pytest.raises(PlaylistError, match="master"):
        parse_media("#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv.m3u8\n")
    with pytest.raises(PlaylistError, match="media playlist"):
        parse_master("#EXTM3U\n#EXT-X-TARGETDURATION:2\n")


def test_quote_refuses_what_hls_cannot_carry() -> None:
    with pytest.raises(PlaylistError, match="cannot quote"):
        quote('say "hi"')


def test_durations_survive_any_number_of_rounds_exactly() -> None:
    # shortest exact text, never an exponent (decimal-floating-point, §4.2)
    for d in (1e-7, 2.002, 4.00008, 1e16, 0.1 + 0.2, 6.006):
        pl = MediaPlaylist(target_duration=10, segments=[Segment("a.ts", d)])
        text = pl.dumps()
        assert "e" not in text.split("#EXTINF:")[1].split(",")[0]
        assert parse_media(text).segments[0].duration == d


def test_a_long_hostile_attribute_list_is_refused_quickly() -> None:
    # no backtracking blow-up on a line of blanks (the pattern stays linear)
    with pytest.raises(PlaylistError):
        parse("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-DATERANGE:ID=" + " " * 200_000 + '"x\n')


def test_comments_and_unknown_tags_stay_where_they_were() -> None:
    text = ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n# made by hand\n#EXT-X-VENDOR-HELLO:a=\"1,2\"\n#EXTINF:2,\na.ts\n"
            "#EXT-X-CUE-IN\n#EXT-X-VENDOR-BYE\n")
    pl = parse_media(text)
    assert pl.header_tags == ["# made by hand"]
    assert pl.segments[0].tags == ('#EXT-X-VENDOR-HELLO:a="1,2"',)
    assert pl.trailing_tags == [tags.EXT_X_CUE_IN, "#EXT-X-VENDOR-BYE"]
