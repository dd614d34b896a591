"""WebRTC in the real browser (Debian's headless Chromium): a page publishes a canvas and WebAudio over
WHIP into ``sidecast run``, and the preview page plays the WHEP endpoint, reads the frame numbers it shows
and the captions its data channel brings."""

from __future__ import annotations

import asyncio
import statistics
import threading
from pathlib import Path

import av
import httpx
import m3u8
import pytest

from devkit import avcheck
from devkit.webrtc import BarcodeVideo, offer_sdp, post_offer, read_barcode, whip_publish
from tests.conftest import wait_for
from tests.test_sidecar_contract import Proc
from tests.webrtc_support import LiveRun, run_pages

pytestmark = pytest.mark.browser
KEY = "k3y"


def test_a_browser_page_publishes_canvas_and_webaudio_over_whip_into_hls(tmp_path: Path) -> None:
    """publish.html from the --serve port (another origin than the WHIP endpoint: CORS) sends its test
    pattern; the HLS output has the page's pictures (their barcodes), its audio, and its flashes and
    beeps together."""
    out = tmp_path / "out"
    with LiveRun(out, KEY, "--reconnect-timeout", "2", serve=True) as run:
        page = (f"{run.base}/_player/publish.html?source=test&autostart=1&key={KEY}"
                f"&whip={run.endpoint}&codec=H264")
        report = run_pages([{"role": "publish", "url": page}], seconds=7)
        wait_for(lambda: "sidecast: done" in run.log, 60, "the stream to end after the page's DELETE")
    pub = report["pages"][0]
    state = pub["state"]
    assert state.get("error") is None, pub
    assert state["location"].startswith(run.endpoint.rsplit("/", 1)[0] + "/live/sessions/")
    assert state["deleteStatus"] == 200, pub
    log = run.log
    assert "WHIP H264 640x360" in log and "audio opus 48000 Hz" in log, log[-3000:]
    playlist = m3u8.load(str(out / "video" / "360p" / "index.m3u8"))
    assert sum(s.duration for s in playlist.segments) >= 4.0, log[-2000:]
    drawn = {int(k): v for k, v in state["drawn"].items()}
    numbers = []
    for seg in playlist.segments:
        with av.open(str(out / "video" / "360p" / seg.uri)) as c:
            for frame in c.decode(video=0):
                n = read_barcode(frame.to_ndarray(format="gray"))
                if n is not None:
                    numbers.append(n)
    assert len(numbers) >= 90 and all(n in drawn for n in numbers)
    assert numbers == sorted(numbers), "frames in the page's order"
    report_av = avcheck.check(out, 30)
    assert (out / "audio" / "index.m3u8").exists() and report_av.audio_seconds >= 4.0, report_av.line()
    # A/V sync is not judged here: the page's own capture (canvas frames vs WebAudio) decides it, and a
    # loaded machine makes headless Chromium drop canvas frames, flashes among them (1 of 6 flash/beep pairs,
    # then 0 of 6, survived at load averages of 8-10). tests/test_whip.py holds WHIP's A/V sync to a frame
    # with a publisher that drops nothing; here the audio must be there and end with the video.
    assert abs(report_av.end_offset) <= 0.2, report_av.line()


def test_the_whep_preview_plays_sub_second_with_captions_in_the_browser(tmp_path: Path) -> None:
    """aiortc publishes numbered frames and beeps over WHIP; the preview page plays /whep. Every frame it shows is
    matched to the moment the publisher sent it: glass-to-glass, and the caption cues of a real caption
    sidecar process (tests/plugins/ticker.py) arrive on the data channel."""
    sock = tmp_path / "ticker.sock"
    ticker = Proc(sock, "--mode", "captions")
    out = tmp_path / "out"
    video = BarcodeVideo(size=(1280, 720))
    results: dict[str, object] = {}
    try:
        with LiveRun(out, KEY, "--whep", "--whep-key", "v1ewer", "--sidecar-addr", f"ticker=unix://{sock}",
                     serve=True) as run:
            loop = asyncio.new_event_loop()
            publication = loop.run_until_complete(whip_publish(run.endpoint, KEY, video=video))
            assert publication.status == 201
            thread = threading.Thread(target=loop.run_forever, daemon=True)
            thread.start()
            try:
                # the preview's own refusals first: no viewer key, an offer without video
                offer = asyncio.run(offer_sdp())
                results["nokey"] = httpx.post(run.base + "/whep", content=offer,
                                              headers={"Content-Type": "application/sdp"}).status_code
                audio_only = offer[:offer.index("m=video")] + offer[offer.index("m=audio"):]
                r = asyncio.run(post_offer(run.base + "/whep", audio_only, "v1ewer"))
                results["novideo"] = (r.status_code, r.text)
                report = run_pages([{"role": "preview", "url": f"{run.base}/preview?key=v1ewer"}],
                                   seconds=8)
            finally:
                asyncio.run_coroutine_threadsafe(publication.delete(run.endpoint, KEY), loop).result(10)
                loop.call_soon_threadsafe(loop.stop)
                thread.join(5)
    finally:
        ticker.stop()
    assert results["nokey"] == 401
    assert results["novideo"][0] == 422 and "no video section" in str(results["novideo"][1])
    page = report["pages"][0]
    assert page["state"]["state"] == "connected", page
    assert (page["stats"]["width"], page["stats"]["height"]) == (640, 360), page["stats"]
    frames = page["frames"]
    latencies = [f["shownAt"] / 1000 - video.sent[f["n"]] for f in frames if f["n"] in video.sent]
    assert len(latencies) >= 60, (len(frames), page.get("unread"))
    assert all(b["n"] > a["n"] for a, b in zip(frames, frames[1:], strict=False)), "frames shown in order"
    median = statistics.median(latencies)
    assert 0 < median < 1.0, f"median glass-to-glass {median:.3f} s"
    cues = page["state"]["cues"]
    assert len(cues) >= 3 and all(c["text"].startswith("tick") for c in cues), cues
    assert all(c["now"] >= c["start"] for c in cues)  # a cue is decided after its words were shown
    assert page["deleteStatus"] == 200
    # the shared Opus encode reached the page too (the publisher's beeps)
    assert "audio/opus" in page["rtc"]["codecs"] and page["rtc"]["audioPackets"] > 100, page["rtc"]
