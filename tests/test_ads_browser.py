"""Ads in a real player: hls.js in headless Chromium plays a stitched SSAI session and an SGAI stream.

The seven sessions play at once (``plays``, a module fixture), each in its own browser context against its
own server, and each test asserts on its own session's report. A playback waits on the media clock, not on
the CPU (Chromium and hls.js took a few per cent of a core per 180p session here): one after another they
cost the file ~100 s of wall time, side by side about as long as the longest one."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from sidecast.ads.condition import Conditioner
from sidecast.ads.session import make_router
from sidecast.hls import parse_media
from sidecast.hls.breaks import Break
from tests.ads_media import add_cue_tags, make_content, make_creative
from tests.browser.harness import PlaybackReport, play_hls, serve
from tests.conftest import side_by_side
from tests.test_ads_session import KEYS, Recorder, app_for, serve_app

SIDECAST = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "sidecast"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ads-browser")
    make_content(root / "content", seconds=12, subs=True)
    add_cue_tags(root / "content" / "video" / "180p" / "index.m3u8", 2, 2)
    creative = make_creative(root / "creative.mp4", seconds=4)
    return {"root": root, "creative": creative}


def _check_captions(report, before: tuple[int, ...], replaced: tuple[int, ...], after: tuple[int, ...]) -> None:
    """Stitched subtitles stay in step: every caption seen shows at its own time, captions of the replaced
    content never show, captions before and after the break do.

    hls.js drops a WebVTT fragment of a new discontinuity when it arrives before the video of that
    discontinuity and another discontinuity's timestamps are found first ("Subtitle discontinuity domain
    does not match main", a race in the player, more likely in VOD where subtitles load far ahead); such
    a drop is tolerated, a caption at the wrong time is not."""
    seen = {c.text: c for c in report.cues_seen}
    # where the player put each content video segment on its timeline (live timelines start anywhere)
    video_start = {}
    for e in report.events_named("FRAG_BUFFERED"):
        f = e["data"].get("frag") or {}
        if f.get("type") == "main" and "seg_" in (f.get("url") or ""):
            video_start[int(f["url"].rsplit("seg_", 1)[1][:6])] = f["start"]
    for text, c in seen.items():
        k = int(text.rsplit(" ", 1)[1])
        assert k in video_start, (text, sorted(video_start))
        # caption k belongs to content segment k: it starts with that segment's video
        assert abs(c.start - video_start[k]) < 0.1 and abs(c.end - c.start - 2) < 0.01, (text, c, video_start[k])
        assert c.start - 0.15 <= c.seen_at <= c.end + 0.15, (text, c)
    assert any(f"content caption {k}" in seen for k in before), sorted(seen)
    assert not {f"content caption {k}" for k in replaced} & set(seen), sorted(seen)
    raced = [e for e in report.events_named("SUBTITLE_FRAG_PROCESSED")
             if "discontinuity domain" in str(e["data"].get("error", ""))]
    assert any(f"content caption {k}" in seen for k in after) or raced, sorted(seen)


def conditioned_app(origin: Path, rec: Recorder, cache: Path) -> FastAPI:
    """``app_for`` with the creative already conditioned into ``cache``, as a stitcher has it once the ad is
    decided, ahead of its break. These tests are about playback through the seams, not the conditioning's
    time, which is an x264 encode of the creative per rung: on a loaded box (a full run at load 15-20,
    2026-12-01) it outlasted what a player or a client waits for the first playlist of a session."""
    if rec.creative.suffix != ".m3u8":  # an ad already in the content's layout is stitched as it is
        Conditioner(origin / "master.m3u8", cache)(str(rec.creative))
    return app_for(origin, rec, cache)


def _frag_urls(report) -> list[str]:
    return [e["data"].get("frag", {}).get("url") or "" for e in report.events_named("FRAG_LOADED")]


# ---- the sessions: each makes what it plays and plays it; the tests below assert on what came back -----


def _stitched_vod(media: dict[str, Path], tmp: Path) -> tuple[PlaybackReport, Recorder]:
    rec = Recorder(media["creative"])
    with serve_app(conditioned_app(media["root"] / "content", rec, tmp / "cache")) as base:
        report = play_hls(f"{base}/session/browser-1/master.m3u8", seconds=11, timeout=60, subtitles="en")
    return report, rec


def _sgai(media: dict[str, Path], tmp: Path) -> tuple[PlaybackReport, None]:
    site = tmp / "site"
    shutil.copytree(media["root"] / "content", site / "content")
    ad = Conditioner(site / "content" / "master.m3u8", tmp / "cache")(media["creative"])
    shutil.copytree(ad.directory, site / "ad")
    with serve(site) as base:
        (site / "assets.json").write_text(json.dumps({"ASSETS": [{"URI": f"{base}ad/master.m3u8",
                                                                  "DURATION": ad.duration}]}))
        for key in KEYS:
            playlist = site / "content" / key
            r = subprocess.run([str(SIDECAST), "ads", "interstitials", str(playlist), "--asset-list",
                                f"{base}assets.json", "--at", "4", "-o", str(playlist)],
                               capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr
            assert 'CLASS="com.apple.hls.interstitial"' in playlist.read_text()
        report = play_hls(f"{base}content/master.m3u8", seconds=6, interstitials=True,
                          until_event="INTERSTITIALS_PRIMARY_RESUMED", until_time=6.0, timeout=60)
    return report, None


def _live_stitched(tmp: Path) -> tuple[PlaybackReport, Recorder]:
    src = tmp / "src"
    make_content(src, seconds=20, subs=True)
    add_cue_tags(src / "video" / "180p" / "index.m3u8", 4, 2)
    creative = make_creative(tmp / "creative.mp4", seconds=4, color="green")
    origin = tmp / "origin"
    shutil.copytree(src, origin)
    stop = threading.Event()
    joined = threading.Event()

    def write_window(last: int) -> None:
        for key in KEYS:
            pl = parse_media((src / key).read_text())
            pl.segments = pl.segments[max(0, last - 4):last]
            pl.media_sequence = max(0, last - 4)
            pl.playlist_type = None
            pl.endlist = last == 10
            part = origin / (key + ".tmp")
            part.write_text(pl.dumps())
            part.replace(origin / key)

    def publish() -> None:
        # a live origin: a 4-segment window that gains one 2 s segment every 2 s, then ends. The clock starts
        # when the player first asks for a playlist: Chromium takes seconds to start on a loaded machine, and
        # a window that had slid on meanwhile put the join point past the captions before the break (a CI
        # failure: the player joined at the ad and saw only content captions 6-9)
        if not joined.wait(60):
            return
        for last in range(5, 11):
            if stop.wait(2.0):
                return
            write_window(last)

    write_window(4)
    publish_thread = threading.Thread(target=publish, daemon=True)
    rec = Recorder(creative)
    app = conditioned_app(origin, rec, tmp / "cache")

    @app.middleware("http")
    async def note_join(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path.endswith(".m3u8"):
            joined.set()
        return await call_next(request)

    with serve_app(app) as base:
        # condition the creative before the clock starts, as the decisioning service would at upload
        Conditioner(src / "master.m3u8", tmp / "cache")(creative)
        publish_thread.start()
        try:
            report = play_hls(f"{base}/session/live-viewer/master.m3u8", seconds=12, timeout=60,
                              hls_config={"liveSyncDurationCount": 2}, subtitles="en")
        finally:
            stop.set()
            publish_thread.join(5)
    return report, rec


def _core_output(tmp: Path) -> tuple[PlaybackReport, Recorder]:
    """The real pipeline's output layout: `sidecast run` → session service with an API-scheduled break."""
    clip = tmp / "clip.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=320x180:rate=25:duration=10", "-f", "lavfi", "-i", "sine=duration=10",
                    "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest", str(clip)],
                   check=True, timeout=60)
    out = tmp / "out"
    r = subprocess.run([str(SIDECAST), "run", str(clip), "-o", str(out), "--ladder", "180p:300k",
                        "--no-progress"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    video = parse_media((out / "video" / "180p" / "index.m3u8").read_text())
    start = video.segments[1].program_date_time
    assert start is not None  # the core writes PDT on every segment
    brk = Break("api-1", 2.0, 4.0, start_date=start, source="api")
    creative = make_creative(tmp / "creative.mp4", seconds=4, color="yellow")
    rec = Recorder(creative)
    app = FastAPI()
    app.include_router(make_router(out, rec.decide, rec.beacon, schedule=lambda: [brk],
                                   conditioner=Conditioner(out / "master.m3u8", tmp / "cache")))
    with serve_app(app) as base:
        report = play_hls(f"{base}/session/core-1/master.m3u8", seconds=9, timeout=60)
    return report, rec


# ---- splices of encrypted and fMP4 streams, played by hls.js ------------------------------------------

@pytest.fixture(scope="module")
def splice_media(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ads-splice-browser")
    out = {}
    for name, kw in (("encrypted", {"encrypt": bytes(range(16))}), ("clear", {}), ("fmp4", {"fmp4": True})):
        make_content(root / name, seconds=12, subs=False, **kw)
        add_cue_tags(root / name / "video" / "180p" / "index.m3u8", 2, 2)
        out[name] = root / name
    # an ad already in the content's layout, encrypted with a key of its own (its segments carry no IV)
    make_content(root / "encrypted-ad", seconds=4, subs=False, video="color=c=red", tone=880,
                 encrypt=bytes(range(16, 32)))
    out["encrypted-ad"] = root / "encrypted-ad" / "master.m3u8"
    out["creative"] = make_creative(root / "creative.mp4", seconds=4)
    return out


def _play_session(app: FastAPI, sid: str) -> tuple[PlaybackReport, dict[str, str]]:
    with serve_app(app) as base:
        with httpx.Client(timeout=60) as http:  # a loaded box: the test's reads are not what it measures
            lists = {k: http.get(f"{base}/session/{sid}/{k}").text for k in KEYS if not k.startswith("subs")}
            ad_uri = parse_media(lists[KEYS[0]]).segments[2].uri.replace("../", "")
            # every key and init section the stitched playlist names resolves under the session
            for key, text in lists.items():
                for s in parse_media(text).segments:
                    for res in [k.uri for k in s.keys] + ([s.init_section.uri] if s.init_section else []):
                        depth = key.count("/")
                        url = f"{base}/session/{sid}/" + "/".join(key.split("/")[:depth] + [res])
                        r = http.get(url, follow_redirects=True)
                        assert r.status_code == 200 and r.content, (res, r.status_code)
            assert http.get(f"{base}/session/{sid}/{ad_uri}").status_code == 200
        report = play_hls(f"{base}/session/{sid}/master.m3u8", seconds=11, timeout=60)
    return report, lists


def _splice(splice_media: dict[str, Path], content: str, ad: str, sid: str,
            tmp: Path) -> tuple[PlaybackReport, dict[str, str]]:
    rec = Recorder(splice_media[ad])
    return _play_session(conditioned_app(splice_media[content], rec, tmp / "cache"), sid)


@pytest.fixture(scope="module")
def plays(media: dict[str, Path], splice_media: dict[str, Path],
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[tuple[PlaybackReport, Any]]]]:
    """Every session of this file, started at once in threads (see the module docstring): each test waits for
    its own. A session that fails to make or play its media fails its own test, with its own error."""
    jobs: dict[str, Callable[[Path], tuple[PlaybackReport, Any]]] = {
        "stitched": lambda tmp: _stitched_vod(media, tmp),
        "sgai": lambda tmp: _sgai(media, tmp),
        "live": _live_stitched,
        "core": _core_output,
        "encrypted-content": lambda tmp: _splice(splice_media, "encrypted", "creative", "enc-1", tmp),
        "encrypted-ad": lambda tmp: _splice(splice_media, "clear", "encrypted-ad", "enc-2", tmp),
        "fmp4": lambda tmp: _splice(splice_media, "fmp4", "creative", "fmp4-1", tmp),
    }
    with side_by_side({name: functools.partial(job, tmp_path_factory.mktemp(name))
                       for name, job in jobs.items()}) as futures:
        yield futures


# ---- the tests ------------------------------------------------------------------------------------------


@pytest.mark.browser
def test_stitched_session_plays_through_the_break_and_back_to_content(plays):
    report, rec = plays["stitched"].result()
    report.raise_for_fatal()
    urls = _frag_urls(report)
    ad_at = [i for i, u in enumerate(urls) if "/ad/" in u]
    after = [i for i, u in enumerate(urls) if "seg_000004.ts" in u or "seg_000005.ts" in u]
    assert ad_at, f"no ad segment was loaded: {urls}; {report.summary()}"
    assert after and max(after) > min(ad_at), f"content after the break was not loaded: {urls}"
    # the playhead crossed both seams: the break is 4-8 s of the stream
    assert report.advanced_by() >= 9.0, report.summary()
    assert report.played >= 9.0, report.summary()
    _check_captions(report, before=(0, 1), replaced=(2, 3), after=(4, 5))
    # the player's ad segment requests fired the server-side beacons, once each
    events = [b[3] for b in rec.beacons]
    assert events == ["impression", "start", "firstQuartile", "midpoint", "thirdQuartile", "complete"], events


@pytest.mark.browser
def test_sgai_stream_fires_interstitial_events_plays_the_ad_and_resumes(plays):
    report, _ = plays["sgai"].result()
    report.raise_for_fatal()
    names = {e["name"] for e in report.events}
    for wanted in ("INTERSTITIALS_UPDATED", "ASSET_LIST_LOADED", "INTERSTITIAL_STARTED",
                   "INTERSTITIAL_ASSET_STARTED", "INTERSTITIAL_ASSET_ENDED", "INTERSTITIAL_ENDED",
                   "INTERSTITIALS_PRIMARY_RESUMED"):
        assert wanted in names, f"{wanted} missing: {sorted(names)}"
    # hls.js reports non-fatal buffer notes (bufferAppendNoProgress) for content and ad alike: only a fatal
    # asset error means the ad did not play
    assert not [e for e in report.events_named("INTERSTITIAL_ASSET_ERROR") if e["data"].get("fatal")]
    t_start = report.events_named("INTERSTITIAL_ASSET_STARTED")[0]["t"]
    t_end = report.events_named("INTERSTITIAL_ASSET_ENDED")[0]["t"]
    assert t_end - t_start >= 3000, "the 4 s ad did not play through"
    started = report.events_named("INTERSTITIAL_STARTED")[0]["data"]
    assert started["event"]["id"] == "at-4"
    assert report.ad_playing_samples, "no sample was taken while the ad played"
    # the primary content resumed and moved on past the interstitial's point
    primary = [p for _, p in report.positions("primary")]
    assert primary and max(primary) > 4.5, report.summary()


@pytest.mark.browser
def test_live_stitched_session_plays_through_the_break_as_the_window_slides(plays):
    report, rec = plays["live"].result()
    report.raise_for_fatal()
    urls = _frag_urls(report)
    ad_at = [i for i, u in enumerate(urls) if "/ad/" in u]
    after = [i for i, u in enumerate(urls) if any(f"seg_{k:06d}.ts" in u for k in (6, 7, 8))]
    assert ad_at and after and max(after) > min(ad_at), urls
    assert report.played >= 10.0, report.summary()
    assert report.advanced_by() >= 10.0, report.summary()  # the playhead crossed both seams (8 s and 12 s)
    _check_captions(report, before=(1, 2, 3), replaced=(4, 5), after=(6, 7))
    assert "complete" in [b[3] for b in rec.beacons]


@pytest.mark.browser
def test_core_output_gets_a_scheduled_break_stitched_and_plays(plays):
    """The real pipeline's output layout: `sidecast run` → session service with an API-scheduled break."""
    report, rec = plays["core"].result()
    report.raise_for_fatal()
    urls = _frag_urls(report)
    assert any("/ad/api-1/" in u for u in urls), urls
    assert any("seg_000003.ts" in u for u in urls), urls
    assert report.advanced_by() >= 8.0, report.summary()
    assert [b[3] for b in rec.beacons][-1] == "complete"


def _check_played_through(report) -> None:  # noqa: ANN001
    report.raise_for_fatal()
    urls = _frag_urls(report)
    ad_at = [i for i, u in enumerate(urls) if "/ad/" in u]
    after = [i for i, u in enumerate(urls) if "seg_000004" in u or "seg_000005" in u]
    assert ad_at and after and max(after) > min(ad_at), urls
    assert report.advanced_by() >= 9.0, report.summary()


@pytest.mark.browser
def test_encrypted_content_with_a_clear_ad_plays_through_the_break(plays):
    report, lists = plays["encrypted-content"].result()
    video = lists[KEYS[0]]
    before, ad_part, after = video.split("/ad/", 1)[0], video.split("/ad/")[1], video.rsplit("/ad/", 1)[1]
    assert "#EXT-X-KEY:METHOD=NONE" in before.rsplit("seg_000001.ts", 1)[1]   # the clear ad is declared clear
    assert "METHOD=AES-128" not in ad_part
    assert 'METHOD=AES-128,URI="../../key.bin",IV=0x00000000000000000000000000000004' in after
    _check_played_through(report)


@pytest.mark.browser
def test_clear_content_with_an_encrypted_ad_plays_through_the_break(plays):
    report, lists = plays["encrypted-ad"].result()
    pl = parse_media(lists[KEYS[0]])
    assert [bool(s.keys) for s in pl.segments] == [False, False, True, True, False, False]
    # the ad's own IVs (its sequence numbers 0 and 1), not the slots it took
    assert [s.keys[0].attrs["IV"] for s in pl.segments[2:4]] == [f"0x{n:032X}" for n in (0, 1)]
    assert "#EXT-X-KEY:METHOD=NONE" in lists[KEYS[0]]
    _check_played_through(report)


@pytest.mark.browser
def test_fmp4_content_gets_fmp4_ads_with_their_own_init_section_and_its_own_back(plays):
    report, lists = plays["fmp4"].result()
    pl = parse_media(lists[KEYS[0]])
    maps = [s.init_section.uri if s.init_section else None for s in pl.segments]
    assert maps[:2] == ["init.mp4"] * 2 and maps[4:] == ["init.mp4"] * 2
    assert maps[2] == maps[3] and "/ad/" in maps[2] and maps[2].endswith(".mp4")
    assert pl.segments[2].uri.endswith(".m4s") and pl.version is not None and pl.version >= 6
    assert lists[KEYS[0]].count("#EXT-X-MAP") == 3   # content, the ad's, the content's again
    _check_played_through(report)
