"""The pure parts of WebRTC ingest and preview: reading SDP offers (with hostile input), the RTP-to-sender
clock mapping, Bearer keys, frame-rate estimation and the preview's picture size."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.webrtc import offer_sdp
from sidecast.core.webrtc.http import bearer_key, key_accepted
from sidecast.core.webrtc.sdp import MAX_SDP_BYTES, SdpError, check_media, parse_offer
from sidecast.core.webrtc.sync import SessionSync, StreamSync, ntp_seconds, signed32
from sidecast.core.webrtc.whep import preview_size
from sidecast.core.webrtc.whip import _estimate_fps


@pytest.fixture(scope="module")
def aiortc_offer() -> str:
    """A real offer from aiortc: H.264 video and Opus audio, sendonly."""
    return asyncio.run(offer_sdp(video_codec="H264"))


# An offer as OBS 30 sends it (libdatachannel): H.264 with its fixed profile-level-id, Opus, ssrc lines.
OBS_OFFER = """v=0
o=rtc 2863146733 0 IN IP4 127.0.0.1
s=-
t=0 0
a=group:BUNDLE 0 1
a=group:LS 0 1
a=msid-semantic:WMS *
a=setup:actpass
a=ice-ufrag:Tq4V
a=ice-pwd:fqfzPf0yWQm0dyKYhHVXTI
a=ice-options:ice2,trickle
a=fingerprint:sha-256 9C:8F:13:DE:AB:74:26:B8:83:0C:1B:99:A3:8D:55:1D:33:29:D3:41:43:14:8E:5A:3D:3D:81:91:5A:82:C7:11
m=audio 59761 UDP/TLS/RTP/SAVPF 111
c=IN IP4 192.0.2.10
a=mid:0
a=sendonly
a=ssrc:1461541548 cname:Q2NvHw5Jc3zC2N4u
a=ssrc:1461541548 msid:obs-stream obs-audio
a=msid:obs-stream obs-audio
a=rtcp-mux
a=rtpmap:111 opus/48000/2
a=fmtp:111 minptime=10;maxaveragebitrate=96000;stereo=1;sprop-stereo=1;useinbandfec=1
a=candidate:1 1 UDP 2122317823 192.0.2.10 59761 typ host
a=end-of-candidates
m=video 59761 UDP/TLS/RTP/SAVPF 96
c=IN IP4 192.0.2.10
a=mid:1
a=sendonly
a=ssrc:1461541549 cname:Q2NvHw5Jc3zC2N4u
a=ssrc:1461541549 msid:obs-stream obs-video
a=msid:obs-stream obs-video
a=rtcp-mux
a=rtpmap:96 H264/90000
a=rtcp-fb:96 nack
a=rtcp-fb:96 nack pli
a=rtcp-fb:96 goog-remb
a=fmtp:96 profile-level-id=42e01f;packetization-mode=1;level-asymmetry-allowed=1
"""


def test_a_real_aiortc_offer_and_an_obs_offer_are_taken(aiortc_offer: str) -> None:
    chosen = check_media(parse_offer(aiortc_offer), publish=True)
    assert chosen["video"].name == "H264" and chosen["audio"].name == "opus"
    obs = parse_offer(OBS_OFFER)
    chosen = check_media(obs, publish=True)
    assert chosen["video"].fmtp["profile-level-id"] == "42e01f"
    assert obs.of_kind("video")[0].ssrcs == (1461541549,)


def test_an_offer_with_only_codecs_sidecast_cannot_take_is_a_422_that_names_them(aiortc_offer: str) -> None:
    vp9 = aiortc_offer.replace("H264/90000", "VP9/90000")
    with pytest.raises(SdpError) as err:
        check_media(parse_offer(vp9), publish=True)
    assert err.value.status == 422 and "VP9" in str(err.value) and "H.264" in str(err.value)
    high = OBS_OFFER.replace("profile-level-id=42e01f", "profile-level-id=640c1f")
    with pytest.raises(SdpError, match="H264 \\(640c1f\\)") as err:
        check_media(parse_offer(high), publish=True)
    assert err.value.status == 422
    no_opus = OBS_OFFER.replace("opus/48000/2", "PCMU/8000")
    with pytest.raises(SdpError, match="no audio codec .*PCMU.*Opus"):
        check_media(parse_offer(no_opus), publish=True)
    mode0 = OBS_OFFER.replace("packetization-mode=1", "packetization-mode=0")
    with pytest.raises(SdpError, match="no video codec"):
        check_media(parse_offer(mode0), publish=True)


def test_offers_in_the_wrong_shape_are_refused_with_what_to_change(aiortc_offer: str) -> None:
    audio_only = OBS_OFFER[:OBS_OFFER.index("m=video")]
    with pytest.raises(SdpError, match="no video section") as err:
        check_media(parse_offer(audio_only), publish=True)
    assert err.value.status == 422
    recv = OBS_OFFER.replace("a=sendonly", "a=recvonly")
    with pytest.raises(SdpError, match="recvonly: it must be sendonly or sendrecv"):
        check_media(parse_offer(recv), publish=True)
    # the same recvonly offer is what a WHEP viewer sends
    assert check_media(parse_offer(recv), publish=False)["video"].name == "H264"
    two_videos = OBS_OFFER + OBS_OFFER[OBS_OFFER.index("m=video"):].replace("a=mid:1", "a=mid:2")
    with pytest.raises(SdpError, match="2 video and 1 audio"):
        check_media(parse_offer(two_videos), publish=True)


@pytest.mark.parametrize("text, why", [
    ("", "must start with 'v=0'"),
    ("hello", "must start with 'v=0'"),
    ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\n", "no m= section"),
    ("v=0\nm=video\n", "line 2: an m= line needs"),
    ("v=0\nm=video 99999 UDP/TLS/RTP/SAVPF 96\n", "port '99999'"),
    ("v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96x\n", "payload type '96x'"),
    ("v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=rtpmap:96 H264\n", "a=rtpmap needs"),
    ("v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\nthis is not sdp\n", "line 3: not of the form"),
    ("v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=rtpmap:96 VP8/90000\n", "no ICE credentials"),
    ("v=0\nm=video 9 UDP/TLS/RTP/SAVPF 96\na=ice-ufrag:a\na=ice-pwd:b\na=rtpmap:96 VP8/90000\n", "no DTLS fingerprint"),
])
def test_malformed_offers_are_a_400_with_the_line_at_fault(text: str, why: str) -> None:
    with pytest.raises(SdpError) as err:
        parse_offer(text)
    assert err.value.status == 400 and why in str(err.value)


def test_an_offer_past_the_size_cap_is_a_413() -> None:
    with pytest.raises(SdpError) as err:
        parse_offer("v=0\n" + "a=x\n" * (MAX_SDP_BYTES // 4 + 1))
    assert err.value.status == 413


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=2000))
def test_any_text_is_an_offer_or_one_sdp_error(text: str) -> None:
    try:
        offer = parse_offer(text)
    except SdpError as exc:
        assert exc.status in (400, 413) and "\n" not in str(exc)
        return
    try:
        check_media(offer, publish=True)
    except SdpError as exc:
        assert exc.status == 422


_LINES = st.sampled_from(OBS_OFFER.splitlines())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_LINES, st.text(alphabet="am=v0123456789 :/;-.HVPopus", max_size=40)), max_size=40),
       st.booleans())
def test_shuffled_and_corrupted_real_offer_lines_never_escape_as_another_error(lines: list[str], publish: bool) -> None:
    text = "v=0\n" + "\n".join(lines)
    try:
        check_media(parse_offer(text), publish=publish)
    except SdpError as exc:
        assert exc.status in (400, 413, 422)


def test_sender_reports_put_audio_and_video_on_one_clock() -> None:
    # video: origin 4_000_000_000 (wraps soon); a report 0.5 s in says rtp (origin + 45000) = NTP 1000.5 s
    video = StreamSync(90_000, origin=4_000_000_000)
    video.on_report(int(1000.5 * 2**32), (4_000_000_000 + 45_000) % 2**32)
    # audio: origin 123, report 0.25 s in: rtp 123 + 12000 = NTP 1000.3 s (audio started 50 ms after video)
    audio = StreamSync(48_000, origin=123)
    audio.on_report(int(1000.3 * 2**32), 123 + 12_000)
    sync = SessionSync({"video": video, "audio": audio})
    assert sync.ready() and sync.decide() == "rtcp"
    assert sync.time("video", 0) == pytest.approx(0.0, abs=1e-6)
    assert sync.time("audio", 0) == pytest.approx(0.05, abs=1e-6)
    assert sync.time("video", 90_000 * 3) - sync.time("audio", 48_000 * 3) == pytest.approx(-0.05, abs=1e-6)


def test_without_reports_streams_are_mapped_by_arrival_never_a_mix() -> None:
    video, audio = StreamSync(90_000, origin=1), StreamSync(48_000, origin=2)
    video.on_report(int(5.0 * 2**32), 1)       # only video reported
    for i in range(10):
        video.on_frame(i * 3000, 100.0 + i / 30 + (0.02 if i % 2 else 0.0))  # network jitter on odd frames
        audio.on_frame(i * 960, 100.01 + i / 50)
    sync = SessionSync({"video": video, "audio": audio})
    assert not sync.ready() and sync.decide() == "arrival"
    assert sync.time("audio", 0) - sync.time("video", 0) == pytest.approx(0.01, abs=1e-6)


def test_rtp_and_ntp_arithmetic() -> None:
    assert signed32(5 - (2**32 - 5)) == 10 and signed32(2**32 - 5 - 5) == -10
    assert ntp_seconds((3 << 32) | (1 << 31)) == 3.5


@pytest.mark.parametrize("header, token", [
    ("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("BEARER abc", "abc"), ("Basic abc", None), ("Bearer", None),
    ("", None), (None, None), ("Bearer a b", "a b"),
])
def test_bearer_tokens(header: str | None, token: str | None) -> None:
    assert bearer_key(header) == token


def test_key_check_accepts_only_configured_keys() -> None:
    keys = {"k3y", "other"}
    assert key_accepted("k3y", keys) and key_accepted("other", keys)
    assert not key_accepted("k3", keys) and not key_accepted("", keys) and not key_accepted(None, keys)
    assert not key_accepted("k3y", set())


def test_frame_rate_is_estimated_from_rtp_timestamps_and_snapped() -> None:
    assert _estimate_fps([i * 3000 for i in range(30)], 90_000) == 30
    assert _estimate_fps([i * 3003 for i in range(30)], 90_000) == pytest.approx(30000 / 1001)
    assert _estimate_fps([i * 3600 for i in range(30)], 90_000) == 25
    assert _estimate_fps([0, 3000], 90_000) == 30            # too few to tell
    # a frame lost now and then does not move the median
    pts = [i * 1500 for i in range(60) if i % 7]
    assert _estimate_fps(pts, 90_000) == 60


def test_preview_size_keeps_aspect_with_even_sides() -> None:
    assert preview_size(1280, 720, 360) == (640, 360)
    assert preview_size(1920, 1080, 360) == (640, 360)
    assert preview_size(640, 360, 720) == (640, 360)        # never larger than the source
    assert preview_size(720, 1280, 360) == (202, 360)       # portrait
    w, h = preview_size(1001, 563, 360)
    assert w % 2 == 0 and h % 2 == 0 and re.fullmatch(r"\d+", str(w))
