"""Publishing into `sidecast server` through its own RTMP and SRT listeners, with the publish URLs the API
hands out, from real clients (ffmpeg's RTMP muxer, ffmpeg's libsrt caller).

The key is checked at the protocol's publish step against the registry: a wrong key never reaches a
worker, the right one makes the stream live, and one publisher per stream holds across both protocols."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import ffmpeg, wait_for
from tests.server_helpers import Running, running_server

LADDER = "240p:400k"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s of 426x240 25 fps test pattern with a tone, H.264 + AAC, a keyframe a second."""
    path = tmp_path_factory.mktemp("push") / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=426x240:rate=25:duration=20", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=44100:duration=20", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", str(path))
    return path


def create(srv: Running, sid: str) -> dict[str, object]:
    r = srv.api.post("/v1/streams", json={"id": sid, "ingest": "push",
                                          "options": {"ladder": LADDER, "window": 4, "reconnect_timeout": 3.0}})
    assert r.status_code == 201, r.text
    return dict(r.json()["key"])


def publisher(clip: Path, url: str, fmt: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", str(clip),
                             "-c", "copy", "-f", fmt, url], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def segments_of(srv: Running, sid: str) -> int:
    r = srv.media(f"{sid}/video/240p/index.m3u8")
    return r.text.count("#EXTINF") if r.status_code == 200 else 0


def test_rtmp_publish_with_the_api_url_goes_live_and_a_wrong_key_is_refused(tmp_path: Path, clip: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        key = create(srv, "studio")
        url = str(key["publish"]["rtmp"])  # type: ignore[index]
        assert url.startswith(f"rtmp://127.0.0.1:{srv.server.config.rtmp_port}/live/")
        wrong = publisher(clip, url.rsplit("/", 1)[0] + "/not-the-key", "flv")
        try:
            assert wrong.wait(30) != 0, "ffmpeg published with a wrong key"
        finally:
            stop(wrong)
        assert srv.status("studio")["state"] != "live"
        good = publisher(clip, url, "flv")
        try:
            srv.wait_state("studio", "live", 60)
            wait_for(lambda: segments_of(srv, "studio") >= 2, 40, "segments from the RTMP publisher")
            assert srv.status("studio")["publisher"].startswith("127.0.0.1:")
            # a second publisher on the same key is refused while the first is live (on_conflict=refuse)
            second = publisher(clip, url, "flv")
            try:
                assert second.wait(30) != 0, "a second publisher was accepted on a live stream"
            finally:
                stop(second)
            assert good.poll() is None, "the live publisher was dropped by the refused one"
        finally:
            stop(good)


def test_srt_publish_with_the_api_url_and_passphrase_goes_live(tmp_path: Path, clip: Path) -> None:
    with running_server(tmp_path / "data") as srv:
        key = create(srv, "field")
        url = str(key["publish"]["srt"])  # type: ignore[index]
        assert f":{srv.server.config.srt_port}?" in url and "passphrase=" in url
        proc = publisher(clip, url + "&pkt_size=1316", "mpegts")
        try:
            srv.wait_state("field", "live", 60)
            wait_for(lambda: segments_of(srv, "field") >= 2, 40, "segments from the SRT caller")
        finally:
            stop(proc)
