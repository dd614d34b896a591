"""VMAP 1.0 schedules: parsed in both namespaces met in the wild, placed on a VOD asset (pre, time,
percentage, repeat, post; positional and overlay-only breaks left out), then used end to end: an SSAI
session of the decisioning service stitches each VMAP break with its own VAST (tag or inline), and
`sidecast ads interstitials --vmap` announces the same breaks, whose asset lists carry the VAST companions
and non-linear ads. Real service, real loopback ad server, real HLS."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from sidecast.ads.vmap import VmapError, parse_vmap, schedule
from sidecast.hls import parse_media
from tests.ads_fixtures import VAST_DIR, Route, ad_server, running_api, wait_until
from tests.ads_media import make_content
from tests.browser.harness import serve

SIDECAST = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "sidecast"


def vmap_text(base: str = "http://ads.test", ads: str = "http://cdn.test/",
              namespace: str = "http://www.iab.net/videosuite/vmap") -> str:
    return ((VAST_DIR / "vmap_schedule.xml").read_text().replace("{BASE}", base).replace("{ADS}", ads)
            .replace("http://www.iab.net/videosuite/vmap", namespace))


@pytest.mark.parametrize("namespace", ["http://www.iab.net/videosuite/vmap", "http://www.iab.net/vmap-1.0"])
def test_vmap_breaks_are_read_in_either_namespace(namespace: str) -> None:
    doc = parse_vmap(vmap_text(namespace=namespace))
    assert doc.version == "1.0"
    assert [b.id for b in doc.breaks] == ["preroll", "mid-1", "three-quarters", "overlay", "postroll"]
    assert len(doc.ignored) == 1 and "positional" in doc.ignored[0]
    pre, mid = doc.breaks[0], doc.breaks[1]
    assert (pre.offset_kind, pre.ad_tag_uri, pre.allow_multiple_ads) == ("start", "http://ads.test/vast/vmap_pre.xml", False)
    assert pre.tracking == {"breakStart": ("http://ads.test/t/vmap/pre/start",)}
    assert (mid.offset_kind, mid.offset, mid.ad_tag_uri) == ("time", 4.0, "")
    assert mid.vast is not None and b"mid-ad" in mid.vast and mid.vast.lstrip().startswith(b"<")
    assert doc.breaks[3].break_types == ("nonlinear",)


def test_schedule_places_breaks_on_the_asset() -> None:
    doc = parse_vmap(vmap_text())
    planned = [(b.id, b.start, b.duration, b.position) for b, _ in schedule(doc, 12.0)]
    assert planned == [("preroll", 0.0, 0.0, "pre"), ("mid-1", 4.0, 0.0, "mid"), ("three-quarters", 9.0, 0.0, "mid"),
                       ("postroll", 12.0, 0.0, "post")]
    # live (no duration): percentages and the post-roll cannot be placed
    assert [b.id for b, _ in schedule(doc, None)] == ["preroll", "mid-1"]
    repeat = parse_vmap('<VMAP version="1.0"><AdBreak timeOffset="00:00:10" repeatAfter="00:00:20" breakId="r">'
                        '<AdSource><AdTagURI>http://a.test/v</AdTagURI></AdSource></AdBreak></VMAP>')
    assert [(b.id, b.start) for b, _ in schedule(repeat, 65.0)] == [("r", 10.0), ("r-r1", 30.0), ("r-r2", 50.0)]


def test_unusable_vmap_documents_say_why() -> None:
    for bad, needle in ((b"<VAST version='4.0'/>", "not <VMAP>"), (b"<VMAP", "not well-formed"),
                        (b'<!DOCTYPE x [<!ENTITY a "b">]><VMAP/>', "DTDs")):
        with pytest.raises(VmapError, match=needle):
            parse_vmap(bad)


@pytest.fixture(scope="module")
def hls(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("vmap")
    make_content(root / "content", seconds=12, subs=False)
    make_content(root / "ads" / "red", seconds=4, subs=False, video="color=c=red", tone=880)
    make_content(root / "ads" / "blue", seconds=4, subs=False, video="color=c=blue", tone=660)
    return root


def _serve_vmap(upstream, ads_base: str) -> None:  # noqa: ANN001
    for name in ("vmap_schedule.xml", "vmap_pre.xml"):
        body = (VAST_DIR / name).read_text().replace("{BASE}", upstream.base).replace("{ADS}", ads_base)
        upstream.routes[f"/vast/{name}"] = Route(body=body.encode())


def test_a_vmap_source_schedules_and_fills_the_breaks_of_an_ssai_vod_session(hls: Path, tmp_path: Path) -> None:
    with ad_server() as upstream, serve(hls / "ads") as ads_base, \
            running_api(db_path=str(tmp_path / "a.db"), origin=str(hls / "content"), allow_private_upstreams=True) as api:
        _serve_vmap(upstream, ads_base)
        api.client.post("/v1/sources", json={"id": "vmap", "format": "vmap",
                                             "vast_url": upstream.vast("vmap_schedule.xml") + "?sid=[SESSION_ID]"}
                        ).raise_for_status()
        text = httpx.get(f"{api.base}/session/viewer-9/video/180p/index.m3u8", timeout=30).text
        pl = parse_media(text)
        kinds = [s.uri.split("/ad/")[1].split("/")[0] if "/ad/" in s.uri else "content" for s in pl.segments]
        assert kinds == ["preroll"] * 2 + ["content"] * 2 + ["mid-1"] * 2 + ["content"] * 3 + \
            ["three-quarters"] * 2 + ["content"] + ["postroll"] * 2, (kinds, text)
        # the audio rendition agrees, break for break
        audio = parse_media(httpx.get(f"{api.base}/session/viewer-9/audio/index.m3u8", timeout=30).text)
        assert [i for i, s in enumerate(audio.segments) if s.discontinuity] == \
            [i for i, s in enumerate(pl.segments) if s.discontinuity]
        # one VMAP fetch for the session, one decision per break, beacons to the break's own VAST trackers
        assert len(upstream.hits_of("/vast/vmap_schedule.xml?sid=viewer-9")) == 1
        ad_seg = next(s.uri for s in pl.segments if "/ad/mid-1/" in s.uri)
        r = httpx.get(f"{api.base}/session/viewer-9/{ad_seg.replace('../', '')}", timeout=10)
        assert r.status_code == 302 and r.headers["location"].startswith(f"{ads_base}blue/video/180p/")
        wait_until(lambda: upstream.hits_of("/t/vmap/mid/imp") and upstream.hits_of("/t/vmap/mid/p1"), 10,
                   "the mid-roll's impression and its 1 s progress beacon")


def test_sgai_interstitials_from_vmap_and_their_asset_lists_carry_companions(hls: Path, tmp_path: Path) -> None:
    with ad_server() as upstream, running_api(db_path=str(tmp_path / "a.db"), allow_private_upstreams=True,
                                              require_player_tokens=False) as api:
        _serve_vmap(upstream, "http://cdn.test/")
        api.client.post("/v1/sources", json={"id": "vmap", "format": "vmap",
                                             "vast_url": upstream.vast("vmap_schedule.xml")}).raise_for_status()
        vmap_file = tmp_path / "schedule.xml"
        vmap_file.write_text(vmap_text(upstream.base))
        out = tmp_path / "sgai.m3u8"
        r = subprocess.run([str(SIDECAST), "ads", "interstitials", str(hls / "content" / "video/180p/index.m3u8"),
                            "--vmap", str(vmap_file), "--asset-list",
                            f"{api.base}/v1/asset-list?break={{break_id}}&duration={{duration}}&position={{position}}",
                            "-o", str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        ranges = parse_media(out.read_text()).dateranges()
        assert [d.id for d in ranges] == ["preroll", "mid-1", "three-quarters", "postroll"]
        mid = next(d for d in ranges if d.id == "mid-1")
        url = mid.string("X-ASSET-LIST")
        assert url is not None
        assets = httpx.get(url + "&_HLS_primary_id=player-1").json()["ASSETS"]
        (asset,) = assets
        assert asset["URI"] == "http://cdn.test/blue/master.m3u8" and asset["DURATION"] == 4.0
        (companion,) = asset["X-COM-SIDECAST-COMPANIONS"]
        assert companion["resource"] == {"type": "static", "value": "https://cdn.example/mid-companion.png",
                                         "creative_type": "image/png"}
        assert (companion["width"], companion["height"], companion["ad_slot_id"]) == (300, 250, "side")
        assert companion["click_through"] == "https://midco.example/"
        assert companion["tracking"] == {"creativeView": [f"{upstream.base}/t/vmap/mid/companion"]}
        (overlay,) = asset["X-COM-SIDECAST-NONLINEAR"]
        assert overlay["resource"]["type"] == "iframe" and overlay["min_suggested_duration"] == 5.0
        # the pre-roll's asset list comes from the VMAP's tag for that break
        pre = next(d for d in ranges if d.id == "preroll").string("X-ASSET-LIST")
        assert httpx.get(f"{pre}&_HLS_primary_id=player-1").json()["ASSETS"][0]["URI"] == \
            "http://cdn.test/red/master.m3u8"
        # the decision record shows them too, for the player-side route
        d = api.client.post("/v1/decisions", json={"session_id": "p2", "duration": 30, "break_id": "mid-1"}).json()
        assert d["ads"][0]["companions"][0]["resource"]["value"].endswith("mid-companion.png")
