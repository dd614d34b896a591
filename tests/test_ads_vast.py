"""The VAST corpus in tests/vast/ through the parser and the (I/O-free) wrapper resolver."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecast.ads.vast import (
    FetchFailed,
    MediaFile,
    MediaProfile,
    VastError,
    choose_media_file,
    expand_macros,
    parse_duration,
    parse_vast,
    resolve_with,
)

CORPUS = Path(__file__).parent / "vast"
BASE = "http://ads.test"


def doc(name: str) -> bytes:
    return (CORPUS / name).read_text().replace("{BASE}", BASE).encode()


def fetch_corpus(url: str) -> bytes:
    assert url.startswith(f"{BASE}/vast/"), url
    f = CORPUS / url.rsplit("/", 1)[1]
    if not f.is_file():
        raise FetchFailed(f"HTTP 404 from {url}")
    return doc(f.name)


def test_vast4_inline_with_default_namespace_parses_fully() -> None:
    d = parse_vast(doc("inline_v4.xml"))
    assert d.version == "4.1"
    (ad,) = d.ads
    assert (ad.id, ad.is_wrapper, ad.advertiser, ad.title) == ("acme-spring", False, "Acme Corp", "Acme spring sale")
    assert ad.impressions == (f"{BASE}/t/inline/impression?cb=[CACHEBUSTING]", f"{BASE}/t/inline/impression2")
    (lin,) = ad.creatives  # the companion-only creative is not a linear one
    assert lin.duration == 15.0
    assert lin.tracking["complete"] == (f"{BASE}/t/inline/complete",)
    assert lin.click_through == "https://acme.example/spring"
    assert len(lin.media_files) == 4  # Mezzanine is not a playable MediaFile


def test_vast2_without_namespace_and_whitespace_around_urls() -> None:
    (ad,) = parse_vast(doc("inline_v2.xml")).ads
    (lin,) = ad.creatives
    assert lin.duration == 30.0
    assert lin.media_files[0].uri == "https://cdn.example/globex/360.mp4"


def test_wrapper_chain_folds_every_levels_trackers_into_the_inline_ad() -> None:
    res = resolve_with(f"{BASE}/vast/wrapper_outer.xml", fetch_corpus)
    (ad,) = res.ads
    assert ad.id == "acme-spring" and res.errors == ()
    assert ad.impressions == (f"{BASE}/t/outer/impression", f"{BASE}/t/middle/impression",
                              f"{BASE}/t/inline/impression?cb=[CACHEBUSTING]", f"{BASE}/t/inline/impression2")
    assert ad.tracking["start"] == (f"{BASE}/t/outer/start", f"{BASE}/t/inline/start")
    assert ad.tracking["midpoint"] == (f"{BASE}/t/middle/mid", f"{BASE}/t/inline/mid")
    assert ad.tracking["complete"] == (f"{BASE}/t/outer/complete", f"{BASE}/t/inline/complete")
    assert ad.errors[:2] == (f"{BASE}/t/outer/error?code=[ERRORCODE]", f"{BASE}/t/middle/error?code=[ERRORCODE]")
    assert ad.click_tracking == (f"{BASE}/t/inline/click",)


def test_wrapper_chain_longer_than_the_limit_is_cut_with_error_302() -> None:
    fetched: list[str] = []

    def fetch(url: str) -> bytes:
        fetched.append(url)
        return fetch_corpus(url)

    res = resolve_with(f"{BASE}/vast/wrapper_loop.xml", fetch, max_depth=3)
    assert res.ads == ()
    assert len(fetched) == 4  # the tag itself plus three wrappers deep
    (err,) = res.errors
    assert err.code == 302 and f"{BASE}/t/loop/error?code=[ERRORCODE]" in err.urls
    # a chain of exactly the limit is fine
    assert len(resolve_with(f"{BASE}/vast/wrapper_outer.xml", fetch_corpus, max_depth=2).ads) == 1
    assert resolve_with(f"{BASE}/vast/wrapper_outer.xml", fetch_corpus, max_depth=1).errors[0].code == 302


def test_pod_ads_come_back_in_sequence_order_with_the_buffet_ad_after() -> None:
    res = resolve_with(f"{BASE}/vast/pod_v3.xml", fetch_corpus)
    assert [(a.id, a.sequence) for a in res.ads] == [("pod-a", 1), ("pod-b", 2), ("pod-c", 3), ("buffet-1", None)]
    assert [a.advertiser for a in res.ads] == ["Umbrella", "Hooli", "Initech", "Vandelay"]


def test_no_ad_response_reports_303_to_its_root_error_url() -> None:
    res = resolve_with(f"{BASE}/vast/no_ads.xml", fetch_corpus)
    assert res.ads == ()
    assert [(e.code, e.urls) for e in res.errors] == [(303, (f"{BASE}/t/noads/error?code=[ERRORCODE]",))]


def test_wrapper_to_an_empty_response_reports_303_to_the_wrapper() -> None:
    res = resolve_with(f"{BASE}/vast/wrapper_to_empty.xml", fetch_corpus)
    assert res.ads == ()
    assert any(e.code == 303 and f"{BASE}/t/wempty/error?code=[ERRORCODE]" in e.urls for e in res.errors)


def test_wrapper_to_an_unreachable_tag_reports_301_to_the_wrapper() -> None:
    res = resolve_with(f"{BASE}/vast/wrapper_to_missing.xml", fetch_corpus)
    assert res.ads == ()
    assert [(e.code, e.urls) for e in res.errors] == [(301, (f"{BASE}/t/wmissing/error?code=[ERRORCODE]",))]


@pytest.mark.parametrize("name, code", [("malformed.xml", 100), ("vast1.xml", 101), ("future_version.xml", 102)])
def test_unusable_documents_raise_with_their_vast_error_code(name: str, code: int) -> None:
    with pytest.raises(VastError) as info:
        parse_vast(doc(name))
    assert info.value.code == code
    assert str(info.value)


@pytest.mark.parametrize("name", ["billion_laughs.xml", "external_entity.xml"])
def test_entities_and_dtds_are_refused(name: str) -> None:
    with pytest.raises(VastError, match="DTDs and entities are not allowed"):
        parse_vast(doc(name))


def test_oversized_vast_is_refused_before_parsing() -> None:
    big = b"<VAST version='4.0'>" + b"<!-- padding -->" * 5000 + b"</VAST>"
    with pytest.raises(VastError, match="over the 65536-byte limit"):
        parse_vast(big, max_bytes=65536)
    assert parse_vast(big, max_bytes=len(big)).ads == ()


def test_a_bad_duration_reports_101_to_that_ads_error_url() -> None:
    res = resolve_with(f"{BASE}/vast/bad_duration.xml", fetch_corpus)
    assert res.ads == ()
    assert [(e.code, e.urls) for e in res.errors] == [(101, (f"{BASE}/t/bad/error?code=[ERRORCODE]",))]


def test_parse_duration_accepts_vast_forms_only() -> None:
    assert parse_duration("00:00:15") == 15.0
    assert parse_duration("01:02:03.250") == 3723.25
    for bad in ("15", "00:61:00", "-00:00:01", "00:00:xx"):
        with pytest.raises(VastError):
            parse_duration(bad)


def test_media_file_choice_prefers_hls_then_the_contents_size_and_skips_vpaid() -> None:
    (lin,) = parse_vast(doc("inline_v4.xml")).ads[0].creatives
    assert choose_media_file(lin.media_files).uri == "https://cdn.example/acme/master.m3u8"  # type: ignore[union-attr]
    mp4 = MediaProfile(mime_types=("video/mp4",), height=1080)
    assert choose_media_file(lin.media_files, mp4).uri == "https://cdn.example/acme/1080.mp4"  # type: ignore[union-attr]
    capped = MediaProfile(mime_types=("video/mp4",), height=1080, max_bitrate=4000)
    assert choose_media_file(lin.media_files, capped).uri == "https://cdn.example/acme/720.mp4"  # type: ignore[union-attr]
    (vp,) = parse_vast(doc("vpaid_only.xml")).ads[0].creatives
    assert choose_media_file(vp.media_files) is None
    assert choose_media_file([MediaFile("file:///etc/passwd", "video/mp4")]) is None


def test_macros_are_url_encoded_and_unknown_ones_are_kept() -> None:
    out = expand_macros("http://x/?s=[SESSION_ID]&d=[BREAKMAXDURATION]&cb=[CACHEBUSTING]&u=[UNKNOWN]",
                        {"SESSION_ID": "a b&c", "BREAKMAXDURATION": 30})
    assert out.startswith("http://x/?s=a%20b%26c&d=30&cb=")
    assert out.endswith("&u=[UNKNOWN]")
    cb = out.split("cb=")[1].split("&")[0]
    assert cb.isdigit() and len(cb) == 8
