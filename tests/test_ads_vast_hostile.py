"""An upstream, however broken, only costs its own ads: hostile values at every numeric and time field of
VAST (and VMAP) are refused as values, reported to the ad's own Error URL with the matching code, and never
reach another ad, another source or a local campaign. Hypothesis generates the values; the API tests run
the real service against a real loopback ad server."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from sidecast.ads.vast import (
    MAX_AD_SECONDS,
    VastError,
    parse_duration,
    parse_offset,
    parse_vast,
    progress_offset,
    read_count,
    resolve_with,
)
from sidecast.ads.vmap import parse_vmap, schedule
from tests.ads_fixtures import Route, ad_server, running_api, wait_until

BASE = "http://ads.test"

HOSTILE = st.one_of(
    st.sampled_from(["inf", "-inf", "Infinity", "NaN", "nan", "1e999", "-1e999", "1e308", "-1", "-0", "0x10",
                     "1_000", " ", "", "∞", "١٥", "+", "00:00:1e9", "99999999999:00:00", "00:00:15.0e5", "00:60:00",
                     "25:00:00%", "101%", "1e2%", "-5%", "00:00:-1", "0:0:0.", "00:00:00.%", "%", "12:34",
                     "00:00:15.000 ", "4294967296", "-2147483649", "9" * 10, "1" * 11]),
    st.integers(300, 5000).map(lambda n: "9" * n),
    st.integers(300, 5000).map(lambda n: "00:00:1" + "0" * n),
    st.integers(300, 5000).map(lambda n: "00:00:15." + "9" * n),
    st.integers(300, 5000).map(lambda n: "1" * n + "%"),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10 ** 40, 10 ** 40).map(str),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),  # XML-valid: the value is hostile, not the XML
)

FIELDS = ("sequence", "duration", "skipoffset", "width", "height", "bitrate", "min_bitrate", "max_bitrate",
          "progress_offset", "companion_width", "companion_height", "nonlinear_width", "nonlinear_min_duration")


def _escape(v: str) -> str:
    return v.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


def vast_with(values: dict[str, str]) -> bytes:
    """Two ads: "good" with sane values, "hostile" with `values` at its numeric and time fields."""
    v = {f: "" for f in FIELDS} | {
        "sequence": "2", "duration": "00:00:10.000", "skipoffset": "00:00:05", "width": "1280", "height": "720",
        "bitrate": "2000", "min_bitrate": "500", "max_bitrate": "3000", "progress_offset": "00:00:03",
        "companion_width": "300", "companion_height": "250", "nonlinear_width": "480", "nonlinear_min_duration": "00:00:05"}
    v.update(values)
    e = {k: _escape(x) for k, x in v.items()}
    return f"""<VAST version="4.2" xmlns="http://www.iab.com/VAST">
<Ad id="good" sequence="1"><InLine><AdSystem>S</AdSystem><AdTitle>good</AdTitle>
  <Error><![CDATA[{BASE}/t/good/error?c=[ERRORCODE]]]></Error><Impression><![CDATA[{BASE}/t/good/imp]]></Impression>
  <Creatives><Creative id="g"><Linear><Duration>00:00:15</Duration><MediaFiles>
    <MediaFile delivery="progressive" type="video/mp4" width="1280" height="720"><![CDATA[https://cdn.example/good.mp4]]></MediaFile>
  </MediaFiles></Linear></Creative></Creatives></InLine></Ad>
<Ad id="hostile" sequence="{e['sequence']}"><InLine><AdSystem>S</AdSystem><AdTitle>hostile</AdTitle>
  <Error><![CDATA[{BASE}/t/hostile/error?c=[ERRORCODE]]]></Error>
  <Creatives><Creative id="h"><Linear skipoffset="{e['skipoffset']}"><Duration>{e['duration']}</Duration>
    <TrackingEvents><Tracking event="progress" offset="{e['progress_offset']}"><![CDATA[{BASE}/t/hostile/p]]></Tracking>
      <Tracking event="start"><![CDATA[{BASE}/t/hostile/start]]></Tracking></TrackingEvents>
    <MediaFiles><MediaFile delivery="progressive" type="video/mp4" width="{e['width']}" height="{e['height']}"
      bitrate="{e['bitrate']}" minBitrate="{e['min_bitrate']}" maxBitrate="{e['max_bitrate']}"><![CDATA[https://cdn.example/h.mp4]]></MediaFile>
    </MediaFiles></Linear></Creative>
    <Creative><CompanionAds><Companion width="{e['companion_width']}" height="{e['companion_height']}">
      <StaticResource creativeType="image/png"><![CDATA[https://cdn.example/c.png]]></StaticResource></Companion></CompanionAds></Creative>
    <Creative><NonLinearAds><NonLinear width="{e['nonlinear_width']}" minSuggestedDuration="{e['nonlinear_min_duration']}">
      <StaticResource creativeType="image/png"><![CDATA[https://cdn.example/o.png]]></StaticResource></NonLinear></NonLinearAds></Creative>
  </Creatives></InLine></Ad>
</VAST>""".encode()


def _finite_count(n: int | None) -> bool:
    return n is None or (isinstance(n, int) and 0 <= n <= 1_000_000_000)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(FIELDS), HOSTILE, min_size=1, max_size=4))
def test_hostile_values_at_any_field_cost_only_their_own_ad(values: dict[str, str]) -> None:
    note(repr(values))
    doc = vast_with(values)
    res = resolve_with(f"{BASE}/vast", lambda url: doc)    # never raises: that is the first property
    ids = [a.id for a in res.ads]
    assert "good" in ids, res                                # the neighbour always survives
    for a in res.ads:
        assert math.isfinite(a.duration) and 0 < a.duration <= MAX_AD_SECONDS
        for m in a.media_files:
            assert _finite_count(m.width) and _finite_count(m.height) and _finite_count(m.bitrate)
        assert a.sequence is None or _finite_count(a.sequence)
        for c in a.companions + a.nonlinears:
            assert _finite_count(c.width) and _finite_count(c.height)
            assert c.min_suggested_duration is None or 0 <= c.min_suggested_duration <= MAX_AD_SECONDS
        for ev in a.tracking:
            if ev.startswith("progress@"):
                off = progress_offset(ev)
                assert off is not None and 0 <= off <= a.duration + 1e-6, ev
    if "hostile" not in ids:
        # set aside: its own ad server hears why, with a VAST code, and no one else does
        (report,) = [e for e in res.errors if any("/t/hostile/" in u for u in e.urls)]
        assert report.code in (101, 403) and report.urls == (f"{BASE}/t/hostile/error?c=[ERRORCODE]",)
    assert not any("/t/good/" in u for e in res.errors for u in e.urls)


def test_an_unreadable_duration_is_101_and_readable_odd_values_are_read_as_absent() -> None:
    res = resolve_with(f"{BASE}/vast", lambda url: vast_with({"duration": "1e999"}))
    assert [a.id for a in res.ads] == ["good"]
    assert [(e.code, e.urls) for e in res.errors] == [(101, (f"{BASE}/t/hostile/error?c=[ERRORCODE]",))]
    res = resolve_with(f"{BASE}/vast", lambda url: vast_with({"sequence": "9" * 5000, "width": "inf", "bitrate": "1e999",
                                                              "progress_offset": "NaN", "companion_width": "-1"}))
    hostile = next(a for a in res.ads if a.id == "hostile")
    assert hostile.sequence is None and hostile.media_files[0].width == 0 and hostile.media_files[0].bitrate == 0
    assert not any(k.startswith("progress@") for k in hostile.tracking) and hostile.companions[0].width == 0
    assert res.errors == ()


def test_bounded_readers() -> None:
    assert [read_count(v) for v in ("640", " 640 ", "640.0", "+7", "0")] == [640, 640, 640, 7, 0]
    assert [read_count(v) for v in ("inf", "1e3", "-1", "99999999999", "", None, "6 40", "0x10")] == [None] * 8
    assert parse_duration("00:00:15.5") == 15.5 and parse_duration("24:00:00") == 86400
    for bad in ("24:00:00.001", "1e999", "00:00:" + "9" * 400, "9" * 5000 + ":00:00"):
        try:
            parse_duration(bad)
        except VastError as exc:
            assert exc.code == 101
        else:
            raise AssertionError(f"{bad[:20]!r} was read")
    assert parse_duration("00:00:15." + "9" * 5000) < 16
    assert parse_offset("25%") == (25.0, True) and parse_offset("00:00:05") == (5.0, False)
    assert [parse_offset(v) for v in ("101%", "1e2%", "inf", None, "-5%")] == [None] * 5


def test_a_response_with_thousands_of_ads_reads_only_the_cap() -> None:
    one = ('<Ad id="a{n}"><InLine><AdSystem>S</AdSystem><AdTitle>t</AdTitle><Creatives><Creative><Linear>'
           '<Duration>00:00:05</Duration><MediaFiles><MediaFile delivery="progressive" type="video/mp4">'
           'https://cdn.example/{n}.mp4</MediaFile></MediaFiles></Linear></Creative></Creatives></InLine></Ad>')
    doc = ("<VAST version='4.0'>" + "".join(one.format(n=n) for n in range(2000)) + "</VAST>").encode()
    parsed = parse_vast(doc, max_bytes=len(doc), max_ads=32)
    assert len(parsed.ads) == 32 and parsed.dropped == 1968 and parsed.ads[-1].id == "a31"


@settings(max_examples=200, deadline=None)
@given(st.lists(HOSTILE, min_size=1, max_size=3), HOSTILE)
def test_hostile_vmap_offsets_cost_only_their_own_break(offsets: list[str], repeat: str) -> None:
    breaks = "".join(f'<vmap:AdBreak timeOffset="{_escape(o)}" breakType="linear" breakId="h{i}" repeatAfter="{_escape(repeat)}">'
                     f'<vmap:AdSource><vmap:AdTagURI>{BASE}/vast</vmap:AdTagURI></vmap:AdSource></vmap:AdBreak>'
                     for i, o in enumerate(offsets))
    doc = parse_vmap(f'<vmap:VMAP xmlns:vmap="http://www.iab.net/videosuite/vmap" version="1.0">'
                     f'<vmap:AdBreak timeOffset="start" breakType="linear" breakId="pre"><vmap:AdSource>'
                     f'<vmap:AdTagURI>{BASE}/pre</vmap:AdTagURI></vmap:AdSource></vmap:AdBreak>{breaks}</vmap:VMAP>')
    planned = schedule(doc, 600.0)
    assert planned[0][0].id == "pre" and planned[0][0].position == "pre"
    assert len(planned) <= 100
    for b, _ in planned:
        assert math.isfinite(b.start) and 0 <= b.start <= 600.0 and b.duration == 0.0


# ---------------------------------------------------------------- the service: one bad upstream


def test_a_hostile_upstream_costs_only_its_own_ads_in_decisions_and_asset_lists(tmp_path: Path) -> None:
    with ad_server() as upstream, running_api(db_path=str(tmp_path / "a.db"), allow_private_upstreams=True) as api:
        hostile = vast_with({"duration": "1e999", "sequence": "9" * 5000}).replace(
            BASE.encode(), upstream.base.encode())
        upstream.routes["/vast/hostile.xml"] = Route(body=hostile)
        upstream.routes["/vast/garbage.xml"] = Route(body=b"<VAST version='4.0'><Ad><InLine>" + b"9" * 100_000)
        for sid, name in (("hostile", "hostile.xml"), ("garbage", "garbage.xml"), ("fine", "inline_v4.xml")):
            api.client.post("/v1/sources", json={"id": sid, "vast_url": upstream.vast(name)}).raise_for_status()
        api.client.post("/v1/creatives", json={"id": "house", "media_url": "https://cdn.example/h.m3u8",
                                               "duration": 10}).raise_for_status()
        api.client.post("/v1/campaigns", json={"id": "house", "creative_ids": ["house"]}).raise_for_status()
        r = api.client.post("/v1/decisions", json={"session_id": "s1", "duration": 60, "break_id": "b1"})
        assert r.status_code == 200, r.text
        got = {a["creative_id"] for a in r.json()["ads"]}
        assert "house" in got and any(c.startswith("vast:hostile:good") for c in got) \
            and any(c.startswith("vast:fine:") for c in got), got
        assert not any(c.startswith("vast:hostile:hostile") for c in got)
        r = api.client.get("/v1/asset-list", params={"session": "s2", "duration": 60, "break": "b2"})
        assert r.status_code == 200 and len(r.json()["ASSETS"]) == len(got)
        # the broken ad's own server is told why, with the VAST code; the good neighbour's is not
        wait_until(lambda: upstream.hits_of("/t/hostile/error"), 10, "the 101 report")
        assert set(upstream.hits_of("/t/hostile/error")) == {"/t/hostile/error?c=101"}
        assert upstream.hits_of("/t/good/error") == []


def test_healthz_keeps_answering_while_a_decision_waits_on_a_slow_large_upstream(tmp_path: Path) -> None:
    one = ('<Ad id="a{n}"><InLine><AdSystem>S</AdSystem><AdTitle>t</AdTitle><Creatives><Creative><Linear>'
           '<Duration>00:00:05</Duration><MediaFiles><MediaFile delivery="progressive" type="video/mp4">'
           'https://cdn.example/{n}.mp4</MediaFile></MediaFiles></Linear></Creative></Creatives></InLine></Ad>')
    big = ("<VAST version='4.0'>" + "".join(one.format(n=n) for n in range(2000)) + "</VAST>").encode()
    with ad_server() as upstream, running_api(db_path=str(tmp_path / "a.db"), allow_private_upstreams=True,
                                              max_vast_bytes=len(big) + 1024, upstream_timeout=10) as api:
        upstream.routes["/vast/big.xml"] = Route(body=big, delay=1.0)
        api.client.post("/v1/sources", json={"id": "big", "vast_url": upstream.vast("big.xml")}).raise_for_status()
        import threading

        result: dict[str, Any] = {}

        def decide() -> None:
            t0 = time.monotonic()
            result["r"] = api.client.post("/v1/decisions", json={"session_id": "s", "duration": 60})
            result["t"] = time.monotonic() - t0

        t = threading.Thread(target=decide)
        t.start()
        answered = 0
        with httpx.Client(base_url=api.base) as c:
            while t.is_alive():
                assert c.get("/healthz").status_code == 200
                answered += 1
        t.join()
        r = result["r"]
        assert r.status_code == 200 and len(r.json()["ads"]) == 8   # max_ads of the pod, from the first 32 read
        assert result["t"] >= 1.0 and answered >= 5, (result["t"], answered)
