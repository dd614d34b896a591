"""The SSAI manifest service over real HTTP: per-session playlists, renditions in step, beacons, fallbacks."""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import m3u8
import pytest
import uvicorn
from fastapi import FastAPI

from sidecast.ads.condition import Conditioner
from sidecast.ads.models import AdPod, PodAd
from sidecast.ads.session import make_router
from sidecast.hls import parse_media
from sidecast.hls.breaks import Break
from tests.ads_media import add_cue_tags, make_content, make_creative

KEYS = ["video/180p/index.m3u8", "video/144p/index.m3u8", "audio/index.m3u8", "subs/en/index.m3u8"]


@contextmanager
def serve_app(app: FastAPI) -> Iterator[str]:
    """The app under uvicorn on a free loopback port; yields the base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    t = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        t.join(5)
        sock.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ads-session")
    master = make_content(root / "content", seconds=16)
    add_cue_tags(root / "content" / "video" / "180p" / "index.m3u8", 2, 2)
    creative = make_creative(root / "creative.mp4", seconds=4)
    broken = root / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not really a video")
    return {"root": root, "master": master, "creative": creative, "broken": broken}


class Recorder:
    def __init__(self, creative: Path) -> None:
        self.creative = creative
        self.decisions: list[tuple[str, str]] = []
        self.beacons: list[tuple[str, str, str, str]] = []

    def decide(self, sid: str, brk: Break) -> AdPod:
        self.decisions.append((sid, brk.id))
        return AdPod(brk.id, sid, (PodAd("creative-1", 4.0, str(self.creative)),), decision_id=f"d-{sid}")

    def beacon(self, sid: str, ref: str, creative_id: str, event: str, ad_index: int = 0) -> None:
        self.beacons.append((sid, ref, creative_id, event))


def app_for(origin: Path, rec: Recorder, cache: Path) -> FastAPI:
    app = FastAPI()
    app.include_router(make_router(origin, rec.decide, rec.beacon,
                                   conditioner=Conditioner(origin / "master.m3u8", cache)))
    return app


def test_session_playlists_stitch_every_rendition_in_step_and_fire_beacons_once(media, tmp_path):
    rec = Recorder(media["creative"])
    with serve_app(app_for(media["root"] / "content", rec, tmp_path / "cache")) as base, httpx.Client() as http:
        master = http.get(f"{base}/session/viewer-1/master.m3u8")
        assert master.status_code == 200 and "#EXT-X-STREAM-INF" in master.text
        lists = {}
        for key in KEYS:
            r = http.get(f"{base}/session/viewer-1/{key}")
            assert r.status_code == 200, r.text
            assert r.headers["content-type"].startswith("application/vnd.apple.mpegurl")
            lists[key] = parse_media(r.text)
            assert len(m3u8.loads(r.text).segments) == 8
        # one decision per break per session, however many renditions asked
        assert rec.decisions == [("viewer-1", rec.decisions[0][1])]
        for key, pl in lists.items():
            assert [s.discontinuity for s in pl.segments] == [False, False, True, False, True, False, False, False]
            # the origin's cue is replaced by ours around the ads: the same break, seen downstream
            assert [s.tags for s in pl.segments[2:5]] == [("#EXT-X-CUE-OUT:DURATION=4",),
                                                          ("#EXT-X-CUE-OUT-CONT:ElapsedTime=2,Duration=4",),
                                                          ("#EXT-X-CUE-IN",)], key
            ad = [s.uri for s in pl.segments[2:4]]
            if key.startswith("subs/"):
                assert ad == ["../../ad/blank.vtt"] * 2
            else:
                depth = "../" * key.count("/")
                stem = key.removesuffix(".m3u8")
                assert ad == [f"{depth}ad/{rec.decisions[0][1]}/0/{i}/{stem}.ts" for i in (0, 1)]
            assert [s.uri for s in pl.segments[4:]] == [f"seg_{k:06d}." + ("vtt" if "subs" in key else "ts")
                                                       for k in range(4, 8)]
        # content segments and the blank subtitle come through the session URL space
        seg = http.get(f"{base}/session/viewer-1/video/180p/seg_000000.ts")
        assert seg.status_code == 200 and seg.content[:1] == b"\x47"
        assert http.get(f"{base}/session/viewer-1/ad/blank.vtt").text.startswith("WEBVTT")
        # ad segments: the conditioned creative's bytes, beacons at most once each
        v0 = http.get(f"{base}/session/viewer-1/{lists[KEYS[0]].segments[2].uri.replace('../', '')}")
        assert v0.status_code == 200 and v0.content[:1] == b"\x47"
        conditioned = next((tmp_path / "cache").glob("*/video/180p/seg_000000.ts"))
        assert v0.content == conditioned.read_bytes()
        http.get(f"{base}/session/viewer-1/{lists[KEYS[0]].segments[2].uri.replace('../', '')}")
        http.get(f"{base}/session/viewer-1/{lists['audio/index.m3u8'].segments[2].uri.replace('../', '')}")
        events = [b[3] for b in rec.beacons]
        assert events == ["impression", "start", "firstQuartile"]
        http.get(f"{base}/session/viewer-1/{lists[KEYS[1]].segments[3].uri.replace('../', '')}")
        events = [b[3] for b in rec.beacons]
        assert events == ["impression", "start", "firstQuartile", "midpoint", "thirdQuartile", "complete"]
        assert {b[:3] for b in rec.beacons} == {("viewer-1", "d-viewer-1", "creative-1")}
        # a second viewer gets its own decision and its own beacons
        http.get(f"{base}/session/viewer-2/{KEYS[0]}")
        assert [d[0] for d in rec.decisions] == ["viewer-1", "viewer-2"]
        # bad requests are 4xx with a reason, never a crash
        assert http.get(f"{base}/session/bad id!/master.m3u8").status_code == 400
        assert http.get(f"{base}/session/viewer-1/nothing/here.m3u8").status_code == 404
        assert http.get(f"{base}/session/viewer-1/%2E%2E/%2E%2E/etc/passwd").status_code == 404
        assert http.get(f"{base}/session/viewer-1/ad/nobreak/0/0/video/180p/index.ts").status_code == 404


def test_ad_that_fails_to_condition_leaves_the_break_to_content(media, tmp_path, caplog):
    rec = Recorder(media["broken"])
    content = parse_media((media["root"] / "content" / "video" / "144p" / "index.m3u8").read_text())
    with caplog.at_level(logging.WARNING, logger="sidecast.ads"), \
            serve_app(app_for(media["root"] / "content", rec, tmp_path / "cache")) as base:
        r = httpx.get(f"{base}/session/s1/video/144p/index.m3u8")
        r2 = httpx.get(f"{base}/session/s1/audio/index.m3u8")
    assert r.status_code == 200 and r2.status_code == 200
    out = parse_media(r.text)
    assert [s.uri for s in out.segments] == [s.uri for s in content.segments]
    assert not any(s.discontinuity for s in out.segments)
    assert "could not be conditioned" in caplog.text and "plays content" in caplog.text
    assert rec.beacons == []


def _write_live_window(origin: Path, src: Path, first: int, n: int) -> None:
    """Publish segments [first, first+n) of the VOD source as a live window in every rendition."""
    for key in KEYS:
        pl = parse_media((src / key).read_text())
        pl.segments = pl.segments[first:first + n]
        pl.media_sequence = first
        pl.endlist = False
        pl.playlist_type = None
        (origin / key).write_text(pl.dumps())


def test_live_session_keeps_sequences_consistent_as_the_window_slides(media, tmp_path):
    src = media["root"] / "content"
    origin = tmp_path / "origin"
    shutil.copytree(src, origin)
    rec = Recorder(media["creative"])
    seen: dict[tuple[str, int], tuple[str, int]] = {}
    with serve_app(app_for(origin, rec, tmp_path / "cache")) as base, httpx.Client() as http:
        for first in (0, 1, 2, 3, 4):
            _write_live_window(origin, src, first, 4)
            for key in KEYS:
                text = http.get(f"{base}/session/live-1/{key}").text
                pl = parse_media(text)
                assert pl.media_sequence == first and not pl.endlist and pl.target_duration == 2
                n = pl.discontinuity_sequence
                for i, s in enumerate(pl.segments):
                    n += s.discontinuity
                    kind = "ad" if "/ad/" in s.uri or s.uri.startswith("../") else "content"
                    assert seen.setdefault((key, first + i), (kind, n)) == (kind, n), (key, first, text)
    # every rendition agrees on which media sequence numbers are ads and on discontinuity numbers
    for msn in range(8):
        values = {seen[(k, msn)] for k in KEYS if (k, msn) in seen}
        assert len(values) <= 1, (msn, values)
    assert {msn for (k, msn), (kind, _) in seen.items() if kind == "ad"} == {2, 3}
    # after the break slid out entirely the discontinuity sequence counts both seams
    assert seen[("video/180p/index.m3u8", 4)][1] == 2


def test_vod_session_gets_scheduled_pre_and_post_rolls_in_every_rendition(media, tmp_path):
    rec = Recorder(media["creative"])
    app = FastAPI()
    app.include_router(make_router(
        media["root"] / "content", rec.decide, rec.beacon,
        schedule=lambda: [Break("pre", 0.0, 0.0, "pre", source="api"), Break("post", 16.0, 0.0, "post", source="api")],
        conditioner=Conditioner(media["root"] / "content" / "master.m3u8", tmp_path / "cache")))
    with serve_app(app) as base, httpx.Client() as http:
        lists = {k: parse_media(http.get(f"{base}/session/vod-1/{k}").text) for k in KEYS}
    for key, pl in lists.items():
        kinds = ["ad" if s.uri.startswith("../") else "content" for s in pl.segments]
        # pre-roll (2) + content 0-1 + the cue break (2 ad slots) + content 4-7 + post-roll (2)
        assert kinds == ["ad"] * 2 + ["content"] * 2 + ["ad"] * 2 + ["content"] * 4 + ["ad"] * 2, (key, kinds)
        assert pl.endlist
        assert [i for i, s in enumerate(pl.segments) if s.discontinuity] == [0, 2, 4, 6, 10], key
        assert pl.duration == pytest.approx(16.0 + 4.0 + 4.0, abs=0.1)
    ids = [d[1] for d in rec.decisions]
    assert len(ids) == 3 and {"pre", "post"} < set(ids)  # one decision per break, the cue break included


def test_subtitle_timestamp_map_is_rebased_to_an_equivalent_anchor():
    from sidecast.ads.session import rebase_timestamp_map

    vtt = "WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:126000,LOCAL:00:00:00.000\n\n00:01:08.500 --> 00:01:10.000\nhi\n"
    out = rebase_timestamp_map(vtt)
    # LOCAL and MPEGTS move together: cue 68.5 s still maps to PTS 126000 + 68.5 * 90000
    assert "X-TIMESTAMP-MAP=MPEGTS:6291000,LOCAL:00:01:08.500" in out
    assert out.endswith("00:01:08.500 --> 00:01:10.000\nhi\n")
    # nothing to do for a segment whose first cue is at the anchor, or without a map
    first = vtt.replace("00:01:08.500 -->", "00:00:00.000 -->")
    assert rebase_timestamp_map(first) == first
    assert rebase_timestamp_map("WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nx\n").count("X-TIMESTAMP") == 0


def test_origin_over_http_is_stitched_and_segments_redirect_to_it(media, tmp_path):
    from tests.browser.harness import serve

    rec = Recorder(media["creative"])
    with serve(media["root"] / "content") as origin_url:
        app = FastAPI()
        app.include_router(make_router(origin_url, rec.decide, rec.beacon,
                                       conditioner=Conditioner(media["root"] / "content" / "master.m3u8",
                                                               tmp_path / "cache")))
        with serve_app(app) as base, httpx.Client() as http:
            pl = parse_media(http.get(f"{base}/session/h1/video/180p/index.m3u8").text)
            assert [s.discontinuity for s in pl.segments][:5] == [False, False, True, False, True]
            r = http.get(f"{base}/session/h1/video/180p/seg_000001.ts")
            assert r.status_code == 302 and r.headers["location"] == f"{origin_url}video/180p/seg_000001.ts"
            assert http.get(r.headers["location"]).content[:1] == b"\x47"


def test_idle_sessions_are_forgotten_and_active_ones_kept():
    from sidecast.ads.session import StitchService

    svc = StitchService("/nonexistent", lambda s, b: AdPod(b.id, s), lambda *a: None, session_ttl=0.05)
    for i in range(1023):
        svc.session(f"old-{i}")
    time.sleep(0.1)
    fresh = svc.session("new-1")  # the 1024th session triggers a sweep of idle ones
    assert list(svc.sessions) == ["new-1"] and svc.sessions["new-1"] is fresh


def _ll_caption_window(src: Path, first: int, end: int) -> str:
    """A low-latency caption playlist (``--caption-segments part``) of the 16 s content: one WebVTT part
    of 1/3 s per segment (EXTINFs as the core writes them: six parts add up to 2 s), parts [first, end)."""
    from datetime import timedelta

    from sidecast.hls import Segment
    from tests.ads_media import T0

    pl = parse_media((src / "subs" / "en" / "index.m3u8").read_text())
    segs, t = [], 0.0
    for n in range(48):
        d = 0.33335 if n % 6 == 5 else 0.33333
        segs.append(Segment(f"part_{n:06d}.vtt", d, program_date_time=T0 + timedelta(seconds=round(t, 5))))
        t += d
    pl.segments = segs[first:end]
    pl.media_sequence = first
    pl.endlist, pl.playlist_type = False, None
    return pl.dumps()


def test_live_ssai_fills_a_caption_playlists_slots_at_its_own_segment_width(media, tmp_path):
    """A low-latency caption playlist has six 1/3 s segments per 2 s video segment. The live stitcher puts
    ad segment k in the break's slot k of each playlist, so the caption blanks must be 1/3 s long: 2 s
    blanks (the video's ad segments) would cover the first 2 of the break's 12 caption slots and leave the
    other 10 to the content's captions, out of step with the video for the rest of the break and after."""
    from datetime import timedelta

    from sidecast.ads.session import StitchService
    from tests.ads_media import T0

    src = media["root"] / "content"
    origin = tmp_path / "origin"
    shutil.copytree(src, origin)
    subs = origin / "subs" / "en" / "index.m3u8"
    rec = Recorder(media["creative"])
    svc = StitchService(origin, rec.decide, rec.beacon, conditioner=Conditioner(origin / "master.m3u8",
                                                                                 tmp_path / "cache"))
    try:
        # The session plays 0-4 s first (no break in sight): caption sequence numbers 0-11, video 0-1.
        _write_live_window(origin, src, 0, 2)
        subs.write_text(_ll_caption_window(src, 0, 12))
        assert "blank" not in svc.render("ll", "subs/en/index.m3u8")
        assert "/ad/" not in svc.render("ll", "video/180p/index.m3u8")
        assert rec.decisions == []
        # Then the break (4-8 s) comes into the window; the pod starts at the first segment the session has
        # not seen, in each playlist's own numbering: video 2, captions 12 (not video 12: no ads at all).
        _write_live_window(origin, src, 0, 8)      # video/audio: 8 segments of 2 s, the break at 4-8 s
        subs.write_text(_ll_caption_window(src, 0, 48))
        video = parse_media(svc.render("ll", "video/180p/index.m3u8"))
        caps = parse_media(svc.render("ll", "subs/en/index.m3u8"))
        # the video as before: two 2 s ad segments in slots 2 and 3, content back at 8 s
        assert ["ad" if "/ad/" in s.uri else "content" for s in video.segments] == \
            ["content"] * 2 + ["ad"] * 2 + ["content"] * 4
        assert [s.discontinuity for s in video.segments] == [False, False, True, False, True, False, False, False]
        # the captions: blanks in exactly the break's 12 slots (4-8 s), adding up to the break's 4 s
        blank = [i for i, s in enumerate(caps.segments) if s.uri.endswith("ad/blank.vtt")]
        assert blank == list(range(12, 24)), [s.uri for s in caps.segments]
        assert sum(caps.segments[i].duration for i in blank) == pytest.approx(4.0, abs=1e-9)
        assert [i for i, s in enumerate(caps.segments) if s.discontinuity] == [12, 24]
        # in step with the video: the same length, and every video segment starts on a caption segment
        # with the same PDT (the ad's own clock inside the break, the content's outside it)
        assert caps.duration == pytest.approx(video.duration, abs=1e-3)
        cap_pdts = caps.program_date_times()
        for vi, v in enumerate(video.segments):
            assert v.program_date_time is not None
            ci = vi * 6
            assert cap_pdts[ci] is not None
            assert abs((cap_pdts[ci] - v.program_date_time).total_seconds()) < 1e-3, (vi, cap_pdts[ci], v)
            assert caps.segments[ci].discontinuity == v.discontinuity
        for i in range(1, 48):   # and no gap or overlap between caption segments
            prev, here = cap_pdts[i - 1], cap_pdts[i]
            assert prev is not None and here is not None
            gap = (here - prev).total_seconds() - caps.segments[i - 1].duration
            assert abs(gap) < 1e-3, (i, gap)
        # the content's captions resume exactly where the break ends, on the content's own segments
        assert [s.uri for s in caps.segments[24:]] == [f"part_{n:06d}.vtt" for n in range(24, 48)]
        assert abs((cap_pdts[24] - (T0 + timedelta(seconds=8))).total_seconds()) < 1e-3
        assert "#EXT-X-CUE-IN" in caps.segments[24].tags
        # a window that opens on the break's last caption slot (the window slides, 1/3 s per segment)
        # still has the blank there: a listed segment never changes, so slots must not drift
        subs.write_text(_ll_caption_window(src, 23, 48))
        slid = parse_media(svc.render("ll", "subs/en/index.m3u8"))
        assert slid.media_sequence == 23
        assert slid.segments[0].uri == caps.segments[23].uri
        assert slid.program_date_times()[0] == cap_pdts[23]
        assert [s.uri for s in slid.segments[1:]] == [f"part_{n:06d}.vtt" for n in range(24, 48)]
        assert slid.segments[1].discontinuity and "#EXT-X-CUE-IN" in slid.segments[1].tags
        assert slid.discontinuity_sequence == 1          # the seam into the blanks (12) slid out
        # once the break has slid out of the caption window, both caption seams are counted, and only
        # they: the video's seams are numbered in the video's sequence numbers, not the captions'
        subs.write_text(_ll_caption_window(src, 30, 48))
        assert parse_media(svc.render("ll", "subs/en/index.m3u8")).discontinuity_sequence == 2
        assert parse_media(svc.render("ll", "video/180p/index.m3u8")).discontinuity_sequence == 0
    finally:
        svc.close()
