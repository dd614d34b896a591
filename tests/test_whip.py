"""WHIP ingest over real HTTP and real WebRTC: aiortc publishes a synthetic clip (numbered frames, a flash
and a beep every second) into ``sidecast run whip://...``; what comes out is read back as a player would
(HLS, ffprobe). And every refusal happens before any ICE/DTLS work."""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import m3u8
import pytest

from devkit import avcheck
from devkit.webrtc import (
    BarcodeVideo,
    CaptureClockReports,
    delete_session,
    offer_sdp,
    post_offer,
    read_barcode,
    whip_publish,
)
from sidecast.core.sources import Source
from tests.webrtc_support import LiveRun

KEY = "k3y"


@pytest.fixture(scope="module")
def offer() -> str:
    return asyncio.run(offer_sdp(video_codec="H264"))


@pytest.fixture()
def endpoint() -> Iterator[tuple[Source, str]]:
    """A WHIP source on a free loopback port (no pipeline: the endpoint alone)."""
    src = Source(f"whip://127.0.0.1:0/live/{KEY}")
    try:
        yield src, src.whip.url
    finally:
        src.close()


def test_missing_or_wrong_key_is_a_401_before_any_webrtc_work(endpoint: tuple[Source, str], offer: str) -> None:
    src, url = endpoint
    for key in (None, "wrong", KEY.upper()):
        r = asyncio.run(post_offer(url, offer, key))
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert ("send the stream key" in r.text) == (key is None)
    r = httpx.post(url, content=offer, headers={"Content-Type": "application/sdp", "Authorization": f"Basic {KEY}"})
    assert r.status_code == 401
    assert src.whip.peer_connections == 0 and src.whip.rejected == 4


def test_offers_sidecast_cannot_take_are_refused_before_any_webrtc_work(endpoint: tuple[Source, str], offer: str) -> None:
    src, url = endpoint
    cases = [
        (offer, "text/plain", 415, "application/sdp"),
        (b"\xff\xfe not utf-8", "application/sdp", 400, "not UTF-8"),
        ("hello", "application/sdp", 400, "must start with 'v=0'"),
        ("v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 H264/90000\r\n", "application/sdp", 400,
         "no ICE credentials"),
        (re.sub(r"(?m)^a=fingerprint:.*\r?\n", "", offer), "application/sdp", 400, "no DTLS fingerprint"),
        (offer.replace("H264/90000", "AV1/90000").replace("VP8/90000", "VP9/90000"), "application/sdp", 422,
         "no video codec sidecast accepts"),
        (offer[:offer.index("m=video")] + offer[offer.index("m=audio"):], "application/sdp", 422, "no video section"),
        ("v=0\n" + "a=x\n" * 20_000, "application/sdp", 413, "larger than"),
    ]
    for body, ctype, status, words in cases:
        r = asyncio.run(post_offer(url, body, KEY, content_type=ctype))
        assert r.status_code == status and words in r.text, (status, words, r.status_code, r.text)
        assert "\n" not in r.text.strip()
    assert src.whip.peer_connections == 0


def test_the_endpoint_and_session_urls_answer_only_their_methods(endpoint: tuple[Source, str]) -> None:
    _, url = endpoint
    r = httpx.options(url)
    assert r.status_code == 204 and r.headers["accept-post"] == "application/sdp"
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "Authorization" in r.headers["access-control-allow-headers"]
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        r = httpx.request(method, url)
        assert r.status_code == 405 and r.headers["allow"] == "OPTIONS, POST", method
    r = httpx.delete(url + "/sessions/nope")
    assert r.status_code == 404 and "no WHIP session" in r.text
    assert httpx.patch(url + "/sessions/nope").status_code == 404
    assert httpx.get(url + "/sessions/nope").status_code == 405
    page = httpx.get(url.rsplit("/", 1)[0] + "/publish")
    assert page.status_code == 200 and "whipPublish" in page.text


def _first_frame_number(segment: Path) -> int | None:
    with av.open(str(segment)) as c:
        for frame in c.decode(video=0):
            return read_barcode(frame.to_ndarray(format="gray"))
    return None


async def _wait_log(run: LiveRun, pattern: str, timeout: float = 120) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while (m := re.search(pattern, run.log)) is None:
        assert time.monotonic() < deadline and run.proc.poll() is None, f"no {pattern!r} in: {run.log[-3000:]}"
        await asyncio.sleep(0.2)
    return m


async def _media_taken(run: LiveRun, seconds: float, timeout: float = 120) -> None:
    """Until sidecast's media time (its progress line, once a second) reaches ``seconds``. A publisher session
    is ended by how much media sidecast took from it, not after so many seconds of the wall clock: a loaded
    box's aiortc (encoding in this process) sent 5.8 frames/s, and 5 s of wall time carried 1 s of media,
    too little for the markers checked below."""
    deadline = time.monotonic() + timeout
    while (times := re.findall(r"frames \d+\s+t=\s*(\d+\.\d)s", run.log)) == [] or float(times[-1]) < seconds:
        assert time.monotonic() < deadline and run.proc.poll() is None, \
            f"sidecast's media time never reached {seconds} s: {run.log[-3000:]}"
        await asyncio.sleep(0.2)


def test_aiortc_publishes_h264_then_vp8_into_hls_with_av_in_sync(tmp_path: Path) -> None:
    """One stream, two publishers: H.264 (the second publisher meanwhile gets 409, PATCH gets 501), DELETE,
    then a VP8 publisher whose offer carries no candidates (as a trickling client's would) continues the
    stream after a discontinuity. Flashes and beeps stay together in the HLS output, in each session.

    Both publishers' sender reports pair an RTP timestamp with its capture time (``CaptureClockReports``), as
    browsers' and OBS's do. aiortc's own pair it with the moment its packet left, after this process's
    video encode: on a loaded CPU those reports themselves put the flash up to ~90 ms after its beep (a CI
    run failed on a median marker of 79 ms), and sidecast, keeping A/V as the sender stamped it, published
    that. With capture-time reports every offset measured here is sidecast's own."""
    out = tmp_path / "out"
    reports: list[CaptureClockReports] = []  # per session, its publisher's sender reports

    async def publish(run: LiveRun) -> dict[str, object]:
        seen: dict[str, object] = {}
        first = await whip_publish(run.endpoint, KEY, video=BarcodeVideo(size=(640, 360)), codec="H264")
        assert first.video is not None and first.reports is not None
        reports.append(first.reports)
        seen["sent"] = first.video.sent  # frame number -> when the publisher handed it to its encoder
        assert first.status == 201 and first.location and first.location.startswith("/live/sessions/")
        assert first.headers["content-type"] == "application/sdp"
        # RFC 9725: a session without trickle ICE or ICE restart answers PATCH with 501
        async with httpx.AsyncClient() as client:
            r = await client.patch(run.endpoint.rsplit("/", 1)[0] + first.location,
                                   content=b"a=end-of-candidates\r\n",
                                   headers={"Content-Type": "application/trickle-ice-sdpfrag"})
            seen["patch"] = r.status_code
        second = await whip_publish(run.endpoint, KEY, codec="VP8")
        seen["second"] = (second.status, second.text)
        await _media_taken(run, 5.0)
        seen["delete"] = await first.delete(run.endpoint, KEY)
        seen["delete_again"] = await first.delete(run.endpoint, KEY)
        await asyncio.sleep(0.5)
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        from devkit.webrtc import BeepAudio, _prefer

        # a client that trickles: its offer has no candidates; sidecast learns its address from its checks
        video = BarcodeVideo(size=(640, 360))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        _prefer(pc.addTransceiver(video, direction="sendonly"), "video", "VP8")
        pc.addTransceiver(BeepAudio(video), direction="sendonly")
        reports.append(CaptureClockReports(pc, video))
        await pc.setLocalDescription(await pc.createOffer())
        bare = re.sub(r"(?m)^a=(candidate|end-of-candidates).*\r?\n", "", pc.localDescription.sdp)
        r = await post_offer(run.endpoint, bare, KEY)
        seen["vp8"] = r.status_code
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        back = await _wait_log(run, r"publisher back; continuing with a discontinuity .*media_time=([\d.]+)")
        await _media_taken(run, float(back.group(1)) + 4.0)
        seen["vp8_delete"] = await delete_session(run.endpoint, r.headers["location"], KEY)
        await pc.close()
        return seen

    run = LiveRun(out, KEY, "--reconnect-timeout", "3")
    try:
        seen = asyncio.run(publish(run))
        assert run.wait_exit(60) == 0, run.log[-3000:]
    finally:
        run.stop()
    log = run.log
    assert seen["patch"] == 501
    assert seen["second"][0] == 409 and "already live" in str(seen["second"][1])
    assert seen["delete"] == 200 and seen["delete_again"] == 404
    assert seen["vp8"] == 201 and seen["vp8_delete"] == 200
    assert "WHIP H264 640x360 30.000 fps, audio opus 48000 Hz, A/V sync by rtcp" in log, log[-3000:]
    assert "codecs=H264,opus" in log and "codecs=VP8,opus" in log
    assert "publisher back; continuing with a discontinuity" in log
    assert log.count("source opened") == 1  # the second session continues the stream (no second Opened)
    assert log.count("WHIP A/V sync by rtcp after") == 2, "both sessions mapped by their sender reports"
    playlist = m3u8.load(str(out / "video" / "360p" / "index.m3u8"))
    assert sum(s.duration for s in playlist.segments) >= 8.0
    assert any(s.discontinuity for s in playlist.segments), "the second publisher starts a new period"
    report = avcheck.check(out, 30)
    assert len(report.marker_offsets) >= 7, report.line()
    assert len(reports) == 2
    # what aiortc's own stamps would have said, per session (video minus audio, first reports: the ones
    # sidecast maps by): shown on failure, to tell a publisher's skew from sidecast's
    said = [f"{(r.skews('video')[0] - r.skews('audio')[0]) * 1000:+.0f} ms" for r in reports
            if r.skews("video") and r.skews("audio")]
    assert len(said) == 2, "every session sent sender reports for its video and its audio"
    # The flash and its beep together in each session: within ~1 frame for the typical marker (a sync error
    # moves all of a session's markers), and no marker more than 3 frames off (a frame the loaded publisher
    # sends late is stood in for by the previous one, which moves a flash by a frame)
    for name, first_period in (("H264", True), ("VP8", False)):
        offsets = [abs(x) for x, p in zip(report.marker_offsets, report.marker_periods, strict=True)
                   if (p == 0) == first_period]
        context = f"{name} session: markers {[round(x * 1000, 1) for x in offsets]} ms; {report.line()}; " \
                  f"aiortc's stamps would have said video-audio {said}"
        assert len(offsets) >= 3, context
        assert statistics.median(offsets) <= 0.045, context
    assert report.worst_marker_offset <= 0.1, report.line()
    # the pictures are the publisher's own: frame numbers read back from the first segment
    n = _first_frame_number(out / "video" / "360p" / playlist.segments[0].uri)
    assert n is not None and n < 120
    # PROGRAM-DATE-TIME is when the segment's first frame arrived, as sidecast measures it: the session's
    # smallest "arrival - media time" (core/ingest.py) plus the frame's media time. So it is never before the
    # publisher's best-kept sending schedule for that frame, and a few tens of ms after it (it was ~2 s early
    # once, from the sender-report mapping; docs/latency.md has the bench's figure). Not this frame's own send
    # time: a loaded publisher hands single frames over late (one 0.86 s behind its schedule, under four busy
    # loops, put PDT "before" its send), and PDT rightly does not follow one late frame.
    sent = seen["sent"]
    assert isinstance(sent, dict) and n in sent
    fps = 30  # BarcodeVideo's
    due = min(at - k / fps for k, at in sent.items()) + n / fps
    pdt = playlist.segments[0].program_date_time
    assert pdt is not None and -0.1 <= pdt.timestamp() - due <= 1.0, (pdt, due, sent[n])


def test_whip_set_up_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    from sidecast.core.errors import ConfigError, SourceError
    from tests.conftest import run_sidecast

    with pytest.raises(ConfigError, match="no WHIP stream key configured"):
        Source("whip://127.0.0.1:0/live")
    with pytest.raises(ConfigError, match="--passthrough does not apply to whip://"):
        Source(f"whip://127.0.0.1:0/live/{KEY}", passthrough=True)
    with pytest.raises(ConfigError, match="must look like whip://"):
        Source(f"whip://127.0.0.1:0/a/b/{KEY}")
    taken = Source(f"whip://127.0.0.1:0/live/{KEY}")
    try:
        with pytest.raises(SourceError, match="cannot listen for WHIP on 127.0.0.1"):
            Source(f"whip://127.0.0.1:{taken.whip.port}/live/{KEY}")
    finally:
        taken.close()
    r = run_sidecast("run", f"whip://127.0.0.1:0/live/{KEY}", "-o", str(tmp_path / "o"), "--whep", timeout=60)
    assert r.returncode != 0 and "--whep needs --serve PORT" in r.stderr, r.stderr
    assert len([ln for ln in r.stderr.splitlines() if ln.startswith("sidecast: error")]) == 1


def test_a_keyframe_is_asked_for_as_soon_as_the_publishers_video_arrives(tmp_path: Path) -> None:
    """A publisher's encoder runs before the WebRTC connection is up, and nothing decodes before a keyframe:
    sidecast sends an RTCP PLI once the first video packet arrived, rather than waiting for the publisher's
    next scheduled keyframe (or for aiortc's own PLI after a failed decode). Counted at the publisher."""
    from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket

    async def publish(run: LiveRun) -> int:
        plis = 0
        pub = await whip_publish(run.endpoint, KEY, video=BarcodeVideo(size=(320, 180)), audio=False)
        assert pub.status == 201 and pub.pc is not None
        sender = next(s for s in pub.pc.getSenders() if s.track is not None and s.track.kind == "video")
        original = sender._handle_rtcp_packet

        async def counting(packet: object) -> None:
            nonlocal plis
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_PLI:
                plis += 1
            await original(packet)

        sender._handle_rtcp_packet = counting
        for _ in range(200):  # until the PLI came, at most 10 s
            if plis:
                break
            await asyncio.sleep(0.05)
        await pub.delete(run.endpoint, KEY)
        return plis

    with LiveRun(tmp_path / "out", KEY) as run:
        plis = asyncio.run(publish(run))
    assert plis >= 1, run.log[-2000:]


def test_a_publisher_answered_within_the_reconnect_window_continues_the_stream_though_it_connects_after_it(
        tmp_path: Path) -> None:
    """A publisher coming back late in the reconnect window (OBS after a network drop): sidecast answers its
    offer (201) inside the window, and its ICE/DTLS connects after the window has run out. The stream waits
    for that publisher's media and continues after a discontinuity, rather than ending under a publisher it
    has just accepted (a loaded box's aiortc publisher connected 2 s after its answer and its stream ended)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from devkit.webrtc import BeepAudio, _prefer

    window = 5.0

    async def publish(run: LiveRun) -> dict[str, object]:
        seen: dict[str, object] = {}
        first = await whip_publish(run.endpoint, KEY, video=BarcodeVideo(size=(320, 180)), codec="H264")
        assert first.status == 201
        await _media_taken(run, 2.0)
        seen["delete"] = await first.delete(run.endpoint, KEY)
        video = BarcodeVideo(size=(320, 180))
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        _prefer(pc.addTransceiver(video, direction="sendonly"), "video", "H264")
        pc.addTransceiver(BeepAudio(video), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        r = await post_offer(run.endpoint, pc.localDescription.sdp, KEY)
        seen["offer"] = r.status_code
        # this client starts ICE only once it has the answer: it holds the answer until the window is over
        await asyncio.sleep(window + 0.5)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        back = await _wait_log(run, r"publisher back; continuing with a discontinuity gap_s=([\d.]+) media_time=([\d.]+)")
        seen["gap"] = float(back.group(1))
        await _media_taken(run, float(back.group(2)) + 1.0)
        seen["second_delete"] = await delete_session(run.endpoint, r.headers["location"], KEY)
        await pc.close()
        return seen

    run = LiveRun(tmp_path / "out", KEY, "--reconnect-timeout", str(window))
    try:
        seen = asyncio.run(publish(run))
    finally:
        rc = run.stop()
    assert seen["delete"] == 200 and seen["offer"] == 201 and seen["second_delete"] == 200, seen
    assert isinstance(seen["gap"], float) and seen["gap"] > window, "the media came back after the window"
    assert "publisher did not come back" not in run.log, run.log[-3000:]
    assert run.log.count("source opened") == 1 and rc == 0, run.log[-3000:]
    (variant,) = (tmp_path / "out" / "video").glob("*/index.m3u8")
    playlist = m3u8.load(str(variant))
    assert any(s.discontinuity for s in playlist.segments), "the second publisher continues after a discontinuity"
