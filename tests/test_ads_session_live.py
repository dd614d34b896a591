"""Live SSAI sessions, MediaTailor-style: a pre-roll when a session starts, a break signalled ahead decided
before it starts (prefetch) while a slow decision never holds a playlist past its wait budget, and
server-side impression/quartile/progress beacons sent exactly once, also across a restart of the service.
Real HLS made with ffmpeg, the real session service; the decisioning API over real HTTP where it is used."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from sidecast.ads.models import AdPod, PodAd
from sidecast.ads.session import StitchService
from sidecast.hls import parse_media
from sidecast.hls.breaks import Break
from tests.ads_fixtures import Route, ad_server, running_api, wait_until
from tests.ads_media import T0, add_cue_tags, make_content
from tests.browser.harness import serve

KEYS = ["video/180p/index.m3u8", "video/144p/index.m3u8", "audio/index.m3u8"]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ads-live")
    make_content(root / "src", seconds=24, subs=False)
    make_content(root / "ads" / "red", seconds=4, subs=False, video="color=c=red", tone=880)
    return {"root": root, "src": root / "src", "ad": root / "ads" / "red" / "master.m3u8", "ads": root / "ads"}


def publish(src: Path, origin: Path, first: int, n: int) -> None:
    """Segments [first, first+n) of the VOD source as a live window, in every rendition."""
    for key in KEYS:
        pl = parse_media((src / key).read_text())
        pl.segments = pl.segments[first:first + n]
        pl.media_sequence = first
        pl.endlist, pl.playlist_type = False, None
        (origin / key).write_text(pl.dumps())


class Decider:
    """Decides every break with the red ad; `gate` (when set) holds each decision until it is opened, which
    is how a slow upstream looks from here."""

    def __init__(self, ad: Path, gate: threading.Event | None = None) -> None:
        self.ad, self.gate = ad, gate
        self.asked: list[tuple[str, str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, sid: str, brk: Break) -> AdPod:
        with self.lock:
            self.asked.append((sid, brk.id, brk.position))
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        return AdPod(brk.id, sid, (PodAd("red", 4.0, str(self.ad)),), decision_id=f"d-{sid}-{brk.id}")


def kinds(svc: StitchService, sid: str, key: str = KEYS[0]) -> list[str]:
    pl = parse_media(svc.render(sid, key))
    return ["ad" if "/ad/" in s.uri else "content" for s in pl.segments]


def test_a_live_session_opens_with_a_pre_roll_where_a_player_starts(media, tmp_path):
    origin = tmp_path / "origin"
    shutil.copytree(media["src"], origin)
    publish(media["src"], origin, 0, 6)
    decide = Decider(media["ad"])
    svc = StitchService(origin, decide, lambda *a: None, live_preroll=4.0)
    # 6 segments of 2 s: a player starts 3 target durations (6 s) from the end, at segment 3
    assert kinds(svc, "early") == ["content"] * 3 + ["ad"] * 2 + ["content"]
    assert [kinds(svc, "early", k) for k in KEYS[1:]] == [["content"] * 3 + ["ad"] * 2 + ["content"]] * 2
    assert decide.asked == [("early", "preroll", "pre")]
    publish(media["src"], origin, 1, 6)
    assert kinds(svc, "early") == ["content"] * 2 + ["ad"] * 2 + ["content"] * 2  # the same slots, slid by one
    # a viewer joining later gets a pre-roll of its own, where it starts
    publish(media["src"], origin, 4, 6)
    assert kinds(svc, "late") == ["content"] * 3 + ["ad"] * 2 + ["content"]
    first_late = parse_media(svc.render("late", KEYS[0])).segments[3].program_date_time
    assert first_late == T0 + timedelta(seconds=14)
    assert [a for a in decide.asked if a[0] == "late"] == [("late", "preroll", "pre")]


def test_prefetch_decides_a_break_before_it_starts_so_it_starts_full(media, tmp_path):
    origin = tmp_path / "origin"
    shutil.copytree(media["src"], origin)
    ahead = Break("ahead", 0.0, 4.0, "mid", start_date=T0 + timedelta(seconds=16), source="api")
    gate = threading.Event()
    decide = Decider(media["ad"], gate)
    svc = StitchService(origin, decide, lambda *a: None, schedule=lambda: [ahead], prefetch=10.0, decision_wait=0.2)
    publish(media["src"], origin, 0, 4)        # window ends at 8 s: the break is 8 s ahead, within the lead
    assert kinds(svc, "v") == ["content"] * 4
    wait_until(lambda: decide.asked, 5, "the decision to start before the break")
    assert decide.asked == [("v", "ahead", "mid")]
    gate.set()                                 # the slow upstream answers, still before the break
    wait_until(lambda: svc.sessions["v"].pending.get("ahead") is None or svc.sessions["v"].pending["ahead"].done(),
               10, "the prefetched decision")
    seen = []
    for first in range(1, 8):
        publish(media["src"], origin, first, 4)
        seen.append(kinds(svc, "v"))
    # slots 8 and 9 (16-20 s) are the break: both ads, from the first reload that lists them
    flat = {first + i: k for first, ks in enumerate(seen, 1) for i, k in enumerate(ks)}
    assert [msn for msn, k in sorted(flat.items()) if k == "ad"] == [8, 9]


def test_without_prefetch_a_slow_decision_costs_slots_not_playlists(media, tmp_path):
    origin = tmp_path / "origin"
    shutil.copytree(media["src"], origin)
    brk = Break("late", 0.0, 4.0, "mid", start_date=T0 + timedelta(seconds=16), source="api")
    gate = threading.Event()
    decide = Decider(media["ad"], gate)
    svc = StitchService(origin, decide, lambda *a: None, schedule=lambda: [brk], decision_wait=0.2)
    publish(media["src"], origin, 4, 4)        # window 8-16 s: the break is not in it, nothing decided
    assert kinds(svc, "v") == ["content"] * 4 and decide.asked == []
    publish(media["src"], origin, 5, 4)        # slot 8 appears: the decision starts, the playlist does not wait for it
    assert kinds(svc, "v") == ["content"] * 4 and decide.asked == [("v", "late", "mid")]
    gate.set()
    wait_until(lambda: svc.sessions["v"].pending["late"].done(), 10, "the decision")
    publish(media["src"], origin, 6, 4)
    # slot 8 was served as content and stays content; the pod starts at slot 9 (window 6-9)
    assert kinds(svc, "v") == ["content", "content", "content", "ad"]
    assert kinds(svc, "v", KEYS[2]) == ["content", "content", "content", "ad"]
    publish(media["src"], origin, 7, 4)
    assert kinds(svc, "v") == ["content", "content", "ad", "content"]   # slot 10: the break is over


def _vast(base: str, ads_base: str) -> bytes:
    return f"""<VAST version="4.1"><Ad id="red"><InLine><AdSystem>S</AdSystem><AdTitle>red</AdTitle>
  <Impression><![CDATA[{base}/t/imp]]></Impression>
  <Creatives><Creative id="red-cr"><Linear><Duration>00:00:04</Duration><TrackingEvents>
    <Tracking event="start"><![CDATA[{base}/t/start]]></Tracking>
    <Tracking event="firstQuartile"><![CDATA[{base}/t/q1]]></Tracking>
    <Tracking event="midpoint"><![CDATA[{base}/t/mid]]></Tracking>
    <Tracking event="thirdQuartile"><![CDATA[{base}/t/q3]]></Tracking>
    <Tracking event="complete"><![CDATA[{base}/t/complete]]></Tracking>
    <Tracking event="progress" offset="00:00:01.500"><![CDATA[{base}/t/p1500]]></Tracking>
    <Tracking event="progress" offset="75%"><![CDATA[{base}/t/p75]]></Tracking>
    <Tracking event="pause"><![CDATA[{base}/t/pause]]></Tracking>
  </TrackingEvents><MediaFiles>
    <MediaFile delivery="streaming" type="application/x-mpegURL" width="320" height="180"><![CDATA[{ads_base}red/master.m3u8]]></MediaFile>
  </MediaFiles></Linear></Creative></Creatives></InLine></Ad></VAST>""".encode()


EVENTS = ("/t/imp", "/t/start", "/t/q1", "/t/mid", "/t/q3", "/t/complete", "/t/p1500", "/t/p75")


def test_server_side_beacons_fire_exactly_once_even_across_a_restart(media, tmp_path):
    origin = tmp_path / "origin"
    make_content(origin, seconds=12, subs=False)
    add_cue_tags(origin / "video" / "180p" / "index.m3u8", 2, 2)
    db = tmp_path / "ads.db"

    def play(api, sid: str, http: httpx.Client) -> list[str]:  # noqa: ANN001
        """Fetch every rendition's playlist and every ad segment in it, twice."""
        fetched = []
        for key in KEYS:
            pl = parse_media(http.get(f"{api.base}/session/{sid}/{key}").text)
            for s in pl.segments:
                if "/ad/" in s.uri:
                    for _ in range(2):
                        r = http.get(f"{api.base}/session/{sid}/{s.uri.replace('../', '')}")
                        assert r.status_code == 302, r.text
                    fetched.append(s.uri)
        return fetched

    def outbox() -> list[tuple[str, str]]:
        with sqlite3.connect(db) as con:
            return con.execute("SELECT url, state FROM outbox ORDER BY id").fetchall()

    with ad_server() as trackers, serve(media["ads"]) as ads_base:
        trackers.routes["/vast/red.xml"] = Route(body=_vast(trackers.base, ads_base))
        with running_api(db_path=str(db), origin=str(origin), allow_private_upstreams=True) as api, httpx.Client() as http:
            api.client.post("/v1/sources", json={"id": "up", "vast_url": trackers.vast("red.xml")}).raise_for_status()
            assert len(play(api, "viewer-1", http)) == 2 * len(KEYS)
            wait_until(lambda: all(trackers.hits_of(e) for e in EVENTS), 15, "every beacon's ping")
            wait_until(lambda: all(state == "sent" for _, state in outbox()), 15, "the outbox to drain")
        sent = outbox()
        assert sorted(u.rsplit("/", 1)[1] for u, _ in sent) == sorted(e.rsplit("/", 1)[1] for e in EVENTS)
        assert trackers.hits_of("/t/pause") == []   # a player-side event: never guessed server-side
        # the service restarts on the same store; the player replays the whole break
        with running_api(db_path=str(db), origin=str(origin), allow_private_upstreams=True) as api, httpx.Client() as http:
            play(api, "viewer-1", http)
            assert outbox() == sent                 # not one ping queued again
        for e in EVENTS:
            assert len(trackers.hits_of(e)) == 1, (e, trackers.hits)
        # and the progress beacons came with the segments that reach them: 1.5 s with the first
        # (2 s) segment, 75% (3 s) with the second
        with sqlite3.connect(db) as con:
            events = [r[0] for r in con.execute("SELECT event FROM beacons ORDER BY at, rowid")]
        first_segment = events[:events.index("midpoint")]
        assert "progress@1.5" in first_segment and "progress@3" not in first_segment and "progress@3" in events
