"""Splices of fMP4 and encrypted playlists: every splice re-declares the EXT-X-MAP and EXT-X-KEY the
following segments need, implicit IVs and byte ranges are written out before segments move, the version
follows the features, header tags stay header tags, cue tags mark the stitched ads, and an ad master in
another layout gives the variant nearest each content rendition. Checked against an independent
parser (the `m3u8` package) where it matters; pods through the real `sidecast ads stitch`."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import m3u8
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecast.ads.ssai import (
    AdMedia,
    Placement,
    nearest_variant,
    pin_byteranges,
    pin_ivs,
    required_version,
    stitch,
)
from sidecast.hls import Key, Map, MediaPlaylist, Segment, parse_master, parse_media, quote
from sidecast.hls.breaks import Break
from tests.ads_media import make_content

SIDECAST = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "sidecast"
T0 = datetime(2026, 5, 1, 18, 0, tzinfo=UTC)
CONTENT_KEY = Key({"METHOD": "AES-128", "URI": quote("content.key")})
AD_KEY = Key({"METHOD": "AES-128", "URI": quote("ad.key"), "IV": "0x000000000000000000000000000000AB"})
CONTENT_MAP = Map({"URI": quote("content_init.mp4")})
AD_MAP = Map({"URI": quote("ad_init.mp4")})


def playlist(n: int, *, first: int = 0, keys: tuple[Key, ...] = (), init: Map | None = None, end: bool = True,
             prefix: str = "seg") -> MediaPlaylist:
    segs = [Segment(f"{prefix}_{first + k:06d}.m4s", 2.0, program_date_time=T0 + timedelta(seconds=2 * (first + k)),
                    keys=keys, init_section=init) for k in range(n)]
    return MediaPlaylist(target_duration=2, segments=segs, media_sequence=first, endlist=end)


def ad(name: str, n: int, *, keys: tuple[Key, ...] = (), init: Map | None = None) -> AdMedia:
    return AdMedia(name, tuple(Segment(f"{name}_{i}.m4s", 2.0, keys=keys, init_section=init) for i in range(n)))


def state_by_uri(text: str) -> dict[str, tuple[str | None, str | None, str | None]]:
    """What an independent parser (m3u8) says each segment plays under: (key method, key URI, map URI)."""
    out = {}
    for s in m3u8.loads(text).segments:
        k = s.key
        out[s.uri] = (k.method if k else None, k.uri if k and k.method != "NONE" else None,
                      s.init_section.uri if s.init_section else None)
    return out


def test_encrypted_fmp4_content_around_a_clear_ad_gets_its_key_and_map_back():
    content = playlist(6, keys=(CONTENT_KEY,), init=CONTENT_MAP)
    out = stitch(content, [Placement(Break("b", 4.0, 0.0), (ad("a", 2, init=AD_MAP),))]).playlist.dumps()
    states = state_by_uri(out)
    for k in range(6):
        assert states[f"seg_{k:06d}.m4s"] == ("AES-128", "content.key", "content_init.mp4"), (k, out)
    assert states["a_0.m4s"] == states["a_1.m4s"] == ("NONE", None, "ad_init.mp4"), out
    # the text: the clear ad is announced with METHOD=NONE, the content after it gets key and map again
    after_ad = out.split("a_1.m4s\n", 1)[1]
    assert "#EXT-X-KEY:METHOD=NONE" in out.split("a_0.m4s", 1)[0].rsplit("seg_000001.m4s", 1)[1]
    assert after_ad.index("#EXT-X-KEY:METHOD=AES-128") < after_ad.index("seg_000002.m4s")
    assert after_ad.index('#EXT-X-MAP:URI="content_init.mp4"') < after_ad.index("seg_000002.m4s")


def test_clear_content_around_an_encrypted_ad_is_not_left_encrypted():
    content = playlist(4)
    out = stitch(content, [Placement(Break("b", 2.0, 0.0), (ad("a", 2, keys=(AD_KEY,)),))]).playlist.dumps()
    states = state_by_uri(out)
    assert states["a_0.m4s"] == ("AES-128", "ad.key", None)
    assert states["seg_000001.m4s"][0] in (None, "NONE") and states["seg_000003.m4s"][0] in (None, "NONE"), out


KEYS = st.sampled_from([(), (CONTENT_KEY,), (AD_KEY,)])
MAPS = st.sampled_from([CONTENT_MAP, AD_MAP, Map({"URI": quote("other_init.mp4"), "BYTERANGE": quote("700@0")})])


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(KEYS, MAPS), min_size=1, max_size=4), KEYS, st.booleans(),
       st.lists(st.integers(0, 7), max_size=3), st.booleans())
def test_every_segment_plays_under_the_key_and_map_it_came_with(ad_states, content_keys, fmp4, at, live):
    """Whatever the states on either side of each splice, in live and VOD, the independent parser reads
    every output segment with exactly the key and initialization section its source gave it. (Content and
    ads share a container: MPEG-TS segments have no MAP, and a MAP cannot be cleared, so mixing is refused
    before stitching, by the session service and the CLI.)"""
    content_map = CONTENT_MAP if fmp4 else None
    ad_states = [(k, m if fmp4 else None) for k, m in ad_states]
    content = playlist(10, first=7, keys=content_keys, init=content_map, end=not live)
    expected = {s.uri: s for s in content.segments}
    placements = []
    for n, t in enumerate(sorted(set(at))):
        keys, init = ad_states[n % len(ad_states)]
        a = ad(f"ad{n}", 1 + n % 2, keys=keys, init=init)
        expected.update({s.uri: s for s in a.segments})
        brk = Break(f"b{n}", 2.0 * t, 2.0 if live else 0.0, start_date=T0 + timedelta(seconds=2 * (7 + t)) if live else None)
        placements.append(Placement(brk, (a,)))
    out = stitch(content, placements).playlist
    text = out.dumps()
    got = state_by_uri(text)
    for s in out.segments:
        src = expected[s.uri]
        want_key = src.keys[0] if src.keys else None
        method, uri, init_uri = got[s.uri]
        assert (method if method != "NONE" else None) == (want_key.method if want_key else None), (s.uri, text)
        assert uri == (want_key.uri if want_key else None), (s.uri, text)
        assert init_uri == (src.init_section.uri if src.init_section else None), (s.uri, text)


def test_implicit_ivs_are_written_out_from_the_segments_own_sequence_numbers():
    content = playlist(3, first=10, keys=(CONTENT_KEY,))
    pinned = pin_ivs(content)
    assert [s.keys[0].attrs["IV"] for s in pinned.segments] == [f"0x{n:032X}" for n in (10, 11, 12)]
    # a pre-roll moves the content down the playlist: its IVs must still be its own
    out = stitch(content, [Placement(Break("pre", 0.0, 0.0, "pre"), (ad("a", 2),))]).playlist
    assert out.media_sequence == 10 and [s.uri for s in out.segments][:2] == ["a_0.m4s", "a_1.m4s"]
    ivs = {s.uri: s.keys[0].attrs["IV"] for s in out.segments if s.keys}
    assert ivs == {"seg_000010.m4s": f"0x{10:032X}", "seg_000011.m4s": f"0x{11:032X}", "seg_000012.m4s": f"0x{12:032X}"}
    assert {s.uri: s.key.iv for s in m3u8.loads(out.dumps()).segments if s.key and s.key.method != "NONE"} == ivs
    # an explicit IV and a non-identity KEYFORMAT are left alone
    fairplay = Key({"METHOD": "SAMPLE-AES", "URI": quote("skd://x"), "KEYFORMAT": quote("com.apple.streamingkeydelivery")})
    assert pin_ivs(playlist(2, keys=(AD_KEY, fairplay))).segments[1].keys == (AD_KEY, fairplay)


def test_byte_ranges_get_explicit_offsets_before_they_move():
    pl = parse_media("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-MAP:URI=\"all.mp4\",BYTERANGE=\"700@0\"\n"
                     "#EXT-X-BYTERANGE:1000@700\n#EXTINF:2,\nall.mp4\n#EXT-X-BYTERANGE:1200\n#EXTINF:2,\nall.mp4\n"
                     "#EXT-X-BYTERANGE:900\n#EXTINF:2,\nall.mp4\n#EXT-X-ENDLIST\n")
    pinned = pin_byteranges(pl)
    assert [s.tags for s in pinned.segments] == [("#EXT-X-BYTERANGE:1000@700",), ("#EXT-X-BYTERANGE:1200@1700",),
                                                 ("#EXT-X-BYTERANGE:900@2900",)]
    out = stitch(pl, [Placement(Break("b", 2.0, 0.0), (ad("a", 1),))]).playlist.dumps()
    ranges = [(s.uri, s.byterange) for s in m3u8.loads(out).segments]
    assert ranges == [("all.mp4", "1000@700"), ("a_0.m4s", None), ("all.mp4", "1200@1700"), ("all.mp4", "900@2900")]
    assert "#EXT-X-VERSION:6" in out   # byte ranges need 4, the MAP 6


@pytest.mark.parametrize("segments, header, version", [
    ([Segment("a.ts", 2.0)], [], 3),                                                  # decimal EXTINF
    ([Segment("a.ts", 2.0, keys=(AD_KEY,))], [], 3),                                  # IV: 2
    ([Segment("a.m4s", 2.0, init_section=AD_MAP)], [], 6),
    ([Segment("a.m4s", 2.0, init_section=AD_MAP)], ["#EXT-X-I-FRAMES-ONLY"], 5),
    ([Segment("a.ts", 2.0, keys=(Key({"METHOD": "SAMPLE-AES", "URI": quote("k"), "KEYFORMAT": quote("x")}),))], [], 5),
    ([Segment("a.ts", 2.0, tags=("#EXT-X-BYTERANGE:10@0",))], [], 4),
    ([Segment("a.ts", 2.0)], ['#EXT-X-DEFINE:NAME="x",VALUE="y"'], 8),
])
def test_required_version_follows_the_features_used(segments, header, version):
    assert required_version(MediaPlaylist(2, segments, header_tags=header)) == version


def test_stitched_version_is_raised_never_lowered():
    ts = playlist(3)
    ts.version = None
    out = stitch(ts, [Placement(Break("b", 2.0, 0.0), (ad("a", 1, init=AD_MAP),))]).playlist
    assert out.version == 6
    seven = playlist(3, init=CONTENT_MAP)
    seven.version = 7
    assert stitch(seven, [Placement(Break("b", 2.0, 0.0), (ad("a", 1, init=AD_MAP),))]).playlist.version == 7


def test_a_header_tag_after_comments_and_vendor_tags_stays_a_header_tag():
    text = ("#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXT-X-VENDOR-THING:1\n# packaged by X\n"
            "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-START:TIME-OFFSET=0\n#EXTINF:2,\na.ts\n#EXTINF:2,\nb.ts\n#EXT-X-ENDLIST\n")
    pl = parse_media(text)
    assert pl.header_tags == ["#EXT-X-INDEPENDENT-SEGMENTS", "#EXT-X-START:TIME-OFFSET=0"]
    assert pl.segments[0].tags == ("#EXT-X-VENDOR-THING:1", "# packaged by X")
    # a pre-roll takes the first place: the header tags must not travel with the first content segment
    out = stitch(pl, [Placement(Break("pre", 0.0, 0.0, "pre"), (ad("x", 1),))]).playlist.dumps()
    assert out.index("#EXT-X-INDEPENDENT-SEGMENTS") < out.index("#EXTINF")
    assert out.index("#EXT-X-START") < out.index("#EXTINF")


def test_ad_variant_nearest_each_content_rendition_by_resolution_and_bandwidth():
    ad_master = parse_master("#EXTM3U\n"
                             "#EXT-X-STREAM-INF:BANDWIDTH=5000000,RESOLUTION=1920x1080\nhi/index.m3u8\n"
                             "#EXT-X-STREAM-INF:BANDWIDTH=2800000,RESOLUTION=1280x720\nmid/index.m3u8\n"
                             "#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=640x360\nlo/index.m3u8\n"
                             "#EXT-X-STREAM-INF:BANDWIDTH=9000000,RESOLUTION=1280x720\nmid-hq/index.m3u8\n")
    content = parse_master("#EXTM3U\n"
                           "#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720\nvideo/720p/index.m3u8\n"
                           "#EXT-X-STREAM-INF:BANDWIDTH=1200000,RESOLUTION=854x480\nvideo/480p/index.m3u8\n"
                           "#EXT-X-STREAM-INF:BANDWIDTH=6000000,RESOLUTION=1920x1080\nvideo/1080p/index.m3u8\n")
    picks = [nearest_variant(ad_master.variants, v).uri for v in content.variants]
    assert picks == ["mid/index.m3u8", "lo/index.m3u8", "hi/index.m3u8"]
    assert nearest_variant(ad_master.variants, None).uri == "hi/index.m3u8"


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("splice")
    return {"content": make_content(root / "content", seconds=6, subs=False).parent,
            "red": make_content(root / "red", seconds=4, subs=False, video="color=c=red", tone=880).parent,
            "blue": make_content(root / "blue", seconds=2, subs=False, video="color=c=blue", tone=660).parent,
            "fmp4": make_content(root / "fmp4", seconds=2, subs=False, fmp4=True).parent,
            "root": root}


def test_stitch_cli_takes_a_pod_of_several_ads_in_order(layouts):
    out = layouts["root"] / "out" / "pod.m3u8"
    r = subprocess.run([str(SIDECAST), "ads", "stitch", str(layouts["content"] / "video/180p/index.m3u8"),
                        "--ad", str(layouts["red"] / "master.m3u8"), "--ad", str(layouts["blue"] / "master.m3u8"),
                        "--at", "pre", "--at", "4", "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "from a pod of 2 ad(s)" in r.stdout
    pl = parse_media(out.read_text())
    kinds = ["red" if "/red/" in s.uri else "blue" if "/blue/" in s.uri else "content" for s in pl.segments]
    assert kinds == ["red", "red", "blue", "content", "content", "red", "red", "blue", "content"]
    assert [i for i, s in enumerate(pl.segments) if s.discontinuity] == [0, 2, 3, 5, 7, 8]
    for s in pl.segments:
        assert (out.parent / s.uri).is_file()
    assert pl.segments[0].tags == ("#EXT-X-CUE-OUT:DURATION=6",) and pl.segments[3].tags == ("#EXT-X-CUE-IN",)
    # an ad in another container than the content's is refused in one line: a player cannot switch
    r = subprocess.run([str(SIDECAST), "ads", "stitch", str(layouts["content"] / "video/180p/index.m3u8"),
                        "--ad", str(layouts["fmp4"] / "video/180p/index.m3u8"), "--at", "pre", "-o", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "is fMP4 but" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_stitch_cli_picks_the_ad_variant_nearest_the_content_rendition(layouts):
    """An ad master in another layout: the content's own master says which rendition this is."""
    other = layouts["root"] / "elsewhere"
    other.mkdir(exist_ok=True)
    (other / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=370000,RESOLUTION=320x180\n../red/video/180p/index.m3u8\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=270000,RESOLUTION=256x144\n../red/video/144p/index.m3u8\n")
    out = layouts["root"] / "out" / "nearest.m3u8"
    for rendition in ("144p", "180p"):
        r = subprocess.run([str(SIDECAST), "ads", "stitch", str(layouts["content"] / f"video/{rendition}/index.m3u8"),
                            "--ad", str(other / "master.m3u8"), "--at", "pre", "-o", str(out)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        first = parse_media(out.read_text()).segments[0].uri
        assert f"red/video/{rendition}/seg_" in first, (rendition, first)
