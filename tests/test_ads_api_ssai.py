"""The seam with the SSAI stitcher: with --origin, the decisioning app mounts ads.session's router and
hands it its own decide/beacon functions, so a stitched break is decided and beaconed by the same rules and
records as POST /v1/decisions."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from sidecast.hls.breaks import Break
from tests.ads_fixtures import AdServer, Route, ad_server, running_api, wait_until


def write_origin(root: Path) -> None:
    """A tiny VOD origin in the core's layout, with an EXT-X-CUE-OUT break of 10 s at segment 2."""
    (root / "video" / "720p").mkdir(parents=True)
    segs = []
    for i in range(6):
        if i == 2:
            segs.append("#EXT-X-CUE-OUT:10")
        if i == 4:
            segs.append("#EXT-X-CUE-IN")
        segs += ["#EXTINF:5.0,", f"seg_{i:06d}.ts"]
        (root / "video" / "720p" / f"seg_{i:06d}.ts").write_bytes(b"\x47" + bytes(187))
    (root / "video" / "720p" / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        + "\n".join(segs) + "\n#EXT-X-ENDLIST\n")
    (root / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720\nvideo/720p/index.m3u8\n")


@pytest.fixture
def tracker() -> AdServer:
    with ad_server() as s:
        yield s  # type: ignore[misc]


def test_stitcher_sessions_decide_through_this_service(tmp_path: Path, tracker: AdServer) -> None:
    origin = tmp_path / "origin"
    write_origin(origin)
    db = tmp_path / "ads.db"
    ad_playlist = (b"#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:5\n#EXT-X-PLAYLIST-TYPE:VOD\n"
                   b"#EXTINF:5.0,\nad0.ts\n#EXTINF:5.0,\nad1.ts\n#EXT-X-ENDLIST\n")
    tracker.routes["/ad/720p.m3u8"] = Route(body=ad_playlist, content_type="application/vnd.apple.mpegurl")
    with running_api(db_path=str(db), origin=str(origin), allow_private_upstreams=True) as api:
        api.client.post("/v1/creatives", json={
            "id": "c10", "media_url": f"{tracker.base}/ad/720p.m3u8", "duration": 10,
            "rendition_uris": {"720p": f"{tracker.base}/ad/720p.m3u8"}}).raise_for_status()
        api.client.post("/v1/campaigns", json={"id": "k", "creative_ids": ["c10"]}).raise_for_status()
        r = httpx.get(f"{api.base}/session/viewer-5/video/720p/index.m3u8")
        assert r.status_code == 200 and r.text.startswith("#EXTM3U")
        with sqlite3.connect(db) as con:
            rows = wait_until(lambda: con.execute("SELECT session_id FROM decisions").fetchall(), 10,
                              "the stitcher's decision in the store")
        assert rows == [("viewer-5",)]
        assert "/session/{session_id}/{path}" not in api.client.get("/openapi.json").json()["paths"]


def test_decide_for_break_and_beacon_for_session_share_the_api_records(tmp_path: Path, tracker: AdServer) -> None:
    with running_api(db_path=str(tmp_path / "ads.db"), allow_private_upstreams=True) as api:
        api.client.post("/v1/creatives", json={
            "id": "c15", "media_url": "https://cdn.example/c15.m3u8", "duration": 15, "advertiser": "Acme",
            "rendition_uris": {"720p": "https://cdn.example/c15/720p.m3u8"},
            "tracking": {"impression": [f"{tracker.base}/t/imp"], "complete": [f"{tracker.base}/t/done"]}}
        ).raise_for_status()
        api.client.post("/v1/campaigns", json={"id": "k", "creative_ids": ["c15"], "frequency_cap": 1}
                        ).raise_for_status()
        svc = api.server.config.app.state.service  # the running app's own service object
        pod = svc.decide_for_break("viewer-1", Break(id="brk-1", start=30.0, duration=30.0))
        assert (pod.break_id, pod.session_id, [a.creative_id for a in pod.ads]) == ("brk-1", "viewer-1", ["c15"])
        ad = pod.ads[0]
        assert ad.tracking["impression"] == [f"{tracker.base}/t/imp"] and ad.rendition_uris["720p"].endswith("720p.m3u8")
        assert svc.decide_for_break("viewer-1", Break(id="brk-2", start=90.0, duration=30.0)).ads == ()  # capped
        assert svc.beacon_for_session("viewer-1", pod.decision_id, "c15", "impression") is True
        assert svc.beacon_for_session("viewer-1", pod.decision_id, "c15", "impression") is False
        assert svc.beacon_for_session("viewer-1", pod.decision_id, "c15", "complete") is True
        wait_until(lambda: tracker.hits_of("/t/done"), 10, "the complete ping")
        assert tracker.hits_of("/t/imp") == ["/t/imp"]
        rec = api.client.get(f"/v1/decisions/{pod.decision_id}").json()
        assert rec["decision"]["break_id"] == "brk-1" and len(rec["beacons"]) == 2
        with pytest.raises(KeyError, match="no decision"):
            svc.beacon_for_session("someone-else", pod.decision_id, "c15", "start")
        with pytest.raises(KeyError, match="not in decision"):
            svc.beacon_for_session("viewer-1", pod.decision_id, "other", "start")
