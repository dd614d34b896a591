"""The HLS HTTP server (core.serve) and the real-browser harness, against a short real ffmpeg encode."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.serve import (
    RangeNotSatisfiable,
    UnsafePath,
    cache_control_for,
    content_type_for,
    parse_range,
    safe_relative_path,
    start_server,
)
from tests.browser.harness import HarnessError, play_hls, serve

WIDTH, HEIGHT, SECONDS = 320, 180, 6


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s 320x180 H.264 + AAC HLS (2 s TS segments) with a master playlist, plus sidecar files."""
    out = tmp_path_factory.mktemp("hls")
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "Debian's ffmpeg is required (./dev.sh install)"
    (out / "video").mkdir()
    subprocess.run(
        [ffmpeg, "-v", "error", "-y",
         "-f", "lavfi", "-i", f"testsrc2=size={WIDTH}x{HEIGHT}:rate=25:duration={SECONDS}",
         "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={SECONDS}",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k",
         "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
         "-hls_segment_filename", str(out / "video" / "seg_%06d.ts"),
         "-master_pl_name", "master.m3u8", str(out / "video" / "index.m3u8")],
        check=True, timeout=60,
    )
    # ffmpeg writes the master next to the media playlist; move it to the top like `sidecast run` does.
    master = (out / "video" / "master.m3u8").read_text().replace("index.m3u8", "video/index.m3u8")
    (out / "master.m3u8").write_text(master)
    (out / "video" / "master.m3u8").unlink()
    (out / "subs").mkdir()
    (out / "subs" / "seg_000000.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n")
    (out / "crops.jsonl").write_text('{"t": 0}\n')
    (out / "transcript.json").write_text("{}")
    (out / "snap.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    (out / ".master.m3u8.tmp").write_text("#EXTM3U\n")
    return out


@pytest.fixture(scope="module")
def server(hls_dir: Path) -> Iterator:
    def echo(body: dict) -> dict:
        return {"echo": body}

    def picky(body: dict) -> dict:
        if "x" not in body:
            raise ValueError("field 'x' is required")
        return {"ok": True}

    handle = start_server(hls_dir, 0, host="127.0.0.1",
                          api={"echo": echo, "vertical/keep-centered": echo, "picky": picky})
    yield handle
    handle.close()


def request(server, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize(("path", "mime"), [
    ("/master.m3u8", "application/vnd.apple.mpegurl"),
    ("/video/index.m3u8", "application/vnd.apple.mpegurl"),
    ("/video/seg_000000.ts", "video/mp2t"),
    ("/subs/seg_000000.vtt", "text/vtt"),
    ("/crops.jsonl", "application/json"),
    ("/transcript.json", "application/json"),
    ("/snap.jpg", "image/jpeg"),
    ("/_player/hls.min.js", "text/javascript"),
    ("/", "text/html"),
])
def test_files_are_served_with_the_mime_type_players_expect(server, path: str, mime: str) -> None:
    status, headers, body = request(server, "GET", path)
    assert status == 200
    assert headers["content-type"].split(";")[0] == mime
    assert headers["access-control-allow-origin"] == "*"
    assert int(headers["content-length"]) == len(body) > 0


def test_mime_table_covers_fragmented_mp4() -> None:
    assert content_type_for("init.mp4") == "video/mp4"
    assert content_type_for("seg_1.m4s") == "video/iso.segment"
    assert content_type_for("x.unknown") == "application/octet-stream"


def test_playlists_are_never_cached_but_segments_are(server) -> None:
    assert request(server, "GET", "/video/index.m3u8")[1]["cache-control"] == "no-cache"
    seg_cache = request(server, "GET", "/video/seg_000000.ts")[1]["cache-control"]
    assert re.search(r"max-age=(\d+)", seg_cache) and int(re.search(r"max-age=(\d+)", seg_cache)[1]) >= 3600
    assert cache_control_for("subs/en/seg_000003.vtt") != "no-cache"
    assert cache_control_for("transcript.vtt") == "no-cache"  # grows while the job runs


def test_cors_preflight_is_answered(server) -> None:
    status, headers, _ = request(server, "OPTIONS", "/api/echo", headers={
        "Origin": "http://example.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()


def test_range_request_returns_206_with_exactly_those_bytes(hls_dir: Path, server) -> None:
    whole = (hls_dir / "video" / "seg_000000.ts").read_bytes()
    status, headers, body = request(server, "GET", "/video/seg_000000.ts", headers={"Range": "bytes=188-375"})
    assert status == 206
    assert body == whole[188:376]
    assert headers["content-range"] == f"bytes 188-375/{len(whole)}"
    status, _, body = request(server, "GET", "/video/seg_000000.ts", headers={"Range": "bytes=-100"})
    assert (status, body) == (206, whole[-100:])
    status, headers, _ = request(server, "GET", "/video/seg_000000.ts",
                                 headers={"Range": f"bytes={len(whole)}-"})
    assert status == 416 and headers["content-range"] == f"bytes */{len(whole)}"


def test_parse_range_edge_cases() -> None:
    assert parse_range(None, 10) is None
    assert parse_range("bytes=0-", 10) == (0, 9)
    assert parse_range("bytes=5-100", 10) == (5, 9)
    assert parse_range("bytes=0-1,4-5", 10) is None  # multi-range: whole file
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=x-1", 10) is None
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=10-", 10)


@pytest.mark.parametrize("path", [
    "/../etc/passwd", "/video/../../etc/passwd", "/%2e%2e/etc/passwd", "/%2E%2E%2Fetc%2Fpasswd",
    "/..%2f..%2fetc%2fpasswd", "//etc/passwd", "/%2Fetc%2Fpasswd", "/video/..%5c..%5cetc", "/a%00b",
    "/_player/../serve.py", "/_player/%2e%2e/serve.py",
])
def test_path_traversal_is_rejected(server, path: str) -> None:
    status, _, body = request(server, "GET", path)
    assert status in (400, 404)
    assert b"root:" not in body and b"def " not in body


def test_safe_relative_path_only_accepts_paths_inside() -> None:
    assert safe_relative_path("/video/index.m3u8?x=1") == "video/index.m3u8"
    assert safe_relative_path("/a%20b.ts") == "a b.ts"
    assert safe_relative_path("/%252e%252e/x") == "%2e%2e/x"  # decoded once: a literal, harmless name
    for bad in ("/../x", "/%2e%2e/x", "//etc/passwd", "/C:/x", "/a\\b"):
        with pytest.raises(UnsafePath):
            safe_relative_path(bad)


def test_directories_hidden_and_missing_files_are_404(server) -> None:
    for path in ("/video/", "/video", "/.master.m3u8.tmp", "/nope.m3u8"):
        status, headers, body = request(server, "GET", path)
        assert status == 404, path
        assert headers["content-type"].startswith("text/plain") and len(body) < 200


def test_healthz_says_ok(server) -> None:
    status, headers, body = request(server, "GET", "/healthz")
    assert status == 200 and json.loads(body) == {"status": "ok"}


def test_api_post_dispatches_to_the_named_handler(server) -> None:
    status, _, body = request(server, "POST", "/api/vertical/keep-centered", body=b'{"on": true}',
                              headers={"Content-Type": "application/json"})
    assert status == 200 and json.loads(body) == {"echo": {"on": True}}
    server.api["late"] = lambda body: {"late": True}  # handlers may be registered after start
    assert json.loads(request(server, "POST", "/api/late", body=b"{}")[2]) == {"late": True}


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/echo", b"{not json", 400),
    ("/api/echo", b"[1, 2]", 400),
    ("/api/picky", b"{}", 400),
    ("/api/nope", b"{}", 404),
    ("/master.m3u8", b"{}", 405),
])
def test_api_rejects_bad_requests_with_a_4xx_and_a_message(server, path: str, body: bytes, status: int) -> None:
    got, headers, payload = request(server, "POST", path, body=body)
    assert got == status
    if path.startswith("/api/"):
        assert json.loads(payload)["error"]


def test_player_page_loads_hls_js_from_this_server_only(server) -> None:
    _, _, page = request(server, "GET", "/")
    html = page.decode()
    assert '<script src="/_player/hls.min.js">' in html
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), "the player must not load from a CDN"
    status, _, js = request(server, "GET", "/_player/hls.min.js")
    assert status == 200 and b'"1.7.4"' in js and b"Interstitial" in js


def test_start_server_refuses_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not a directory"):
        start_server(tmp_path / "missing", 0, host="127.0.0.1")


def test_harness_says_clearly_when_chromium_is_missing() -> None:
    with pytest.raises(HarnessError, match="Chromium not found"):
        play_hls("http://127.0.0.1:9/master.m3u8", chromium="/nonexistent/chromium")


@pytest.mark.browser
def test_short_hls_plays_in_chromium_at_its_encoded_size(hls_dir: Path) -> None:
    with serve(hls_dir) as base:
        report = play_hls(base + "master.m3u8", seconds=4, timeout=90)
    report.raise_for_fatal()
    assert report.stop_reason in ("played", "ended"), report.summary()
    assert report.advanced_by() >= 3.0, report.summary()
    assert report.video_size == (WIDTH, HEIGHT), report.summary()
    assert [(lv["width"], lv["height"]) for lv in report.levels] == [(WIDTH, HEIGHT)]
    assert report.events_named("MANIFEST_PARSED") and report.events_named("media.playing")
    assert report.hls_version == "1.7.4"
