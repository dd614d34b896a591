"""The HLS HTTP server (core.serve) and the real-browser harness, against a short real ffmpeg encode."""

from __future__ import annotations

import functools
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from sidecast.core.serve import (
    RangeNotSatisfiable,
    UnsafePath,
    cache_control_for,
    content_type_for,
    parse_range,
    safe_relative_path,
    start_server,
)
from tests.browser.harness import HarnessError, PlaybackReport, open_page, play_hls, serve
from tests.conftest import SIDECAST, free_port, side_by_side, wait_for

WIDTH, HEIGHT, SECONDS = 320, 180, 6


def encode_hls(dst: Path, source: str, seconds: int, tone_hz: int) -> None:
    """A short H.264 + AAC HLS (2 s MPEG-TS segments) from lavfi test sources, with Debian's ffmpeg."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "Debian's ffmpeg is required (./dev.sh install)"
    dst.mkdir(parents=True)
    subprocess.run(
        [ffmpeg, "-v", "error", "-y",
         "-f", "lavfi", "-i", f"{source}=size={WIDTH}x{HEIGHT}:rate=25:duration={seconds}",
         "-f", "lavfi", "-i", f"sine=frequency={tone_hz}:sample_rate=48000:duration={seconds}",
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "64k",
         "-f", "hls", "-hls_time", "2", "-hls_playlist_type", "vod",
         "-hls_segment_filename", str(dst / "seg_%06d.ts"), str(dst / "index.m3u8")],
        check=True, timeout=60,
    )


def first_video_dts(segment: Path) -> int:
    """The MPEG-TS clock value WebVTT cues are mapped against (X-TIMESTAMP-MAP)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "packet=dts",
                          "-of", "default=nw=1:nk=1", "-read_intervals", "%+#1", str(segment)],
                         capture_output=True, text=True, check=True, timeout=30).stdout
    return int(out.split()[0])


@pytest.fixture(scope="module")
def hls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 s 320x180 stream laid out like `sidecast run` output: master.m3u8 with a WebVTT subtitles
    group (one cue per 2 s segment, at 0.5-1.5 s of it), a 2 s ad and a media playlist that schedules it
    as an HLS Interstitial at 2 s, plus the sidecar files the server must type correctly."""
    out = tmp_path_factory.mktemp("hls")
    encode_hls(out / "video", "testsrc2", SECONDS, 440)
    encode_hls(out / "ad", "smptebars", 2, 880)
    mpegts = first_video_dts(out / "video" / "seg_000000.ts")
    subs = out / "subs" / "en"
    subs.mkdir(parents=True)
    playlist = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:2", "#EXT-X-PLAYLIST-TYPE:VOD"]
    for i in range(SECONDS // 2):
        (subs / f"seg_{i:06d}.vtt").write_text(
            f"WEBVTT\nX-TIMESTAMP-MAP=MPEGTS:{mpegts},LOCAL:00:00:00.000\n\n"
            f"00:00:{2 * i + 0.5:06.3f} --> 00:00:{2 * i + 1.5:06.3f}\ncue number {i}\n")
        playlist += ["#EXTINF:2.0,", f"seg_{i:06d}.vtt"]
    (subs / "index.m3u8").write_text("\n".join([*playlist, "#EXT-X-ENDLIST", ""]))
    (out / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n"
        '#EXT-X-MEDIA:TYPE=SUBTITLES,GROUP-ID="subs",NAME="English",LANGUAGE="en",DEFAULT=YES,'
        'AUTOSELECT=YES,URI="subs/en/index.m3u8"\n'
        f'#EXT-X-STREAM-INF:BANDWIDTH=300000,RESOLUTION={WIDTH}x{HEIGHT},'
        'CODECS="avc1.42c00d,mp4a.40.2",SUBTITLES="subs"\nvideo/index.m3u8\n')
    media = (out / "video" / "index.m3u8").read_text()
    (out / "video" / "with_ad.m3u8").write_text(media.replace(
        "#EXT-X-PLAYLIST-TYPE:VOD\n",
        "#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-PROGRAM-DATE-TIME:2026-01-01T00:00:00.000Z\n"
        '#EXT-X-DATERANGE:ID="ad1",CLASS="com.apple.hls.interstitial",START-DATE="2026-01-01T00:00:02.000Z",'
        'DURATION=2.0,X-ASSET-URI="../ad/index.m3u8",X-RESTRICT="SKIP,JUMP"\n'))
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
    ("/subs/en/seg_000000.vtt", "text/vtt"),
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
    assert request(server, "GET", "/video/seg_000000.ts")[1]["cache-control"] == "public, max-age=86400, immutable"
    assert request(server, "GET", "/snap.jpg")[1]["cache-control"] == "no-cache"  # not a sequence name
    assert cache_control_for("subs/en/seg_000003.vtt") == "public, max-age=86400, immutable"
    assert cache_control_for("snapshots/000017.jpg") == "public, max-age=86400, immutable"
    assert cache_control_for("video/720p/seg_12.m4s") == "public, max-age=86400, immutable"
    for changing in ("transcript.vtt", "video/720p/init.mp4", "master.m3u8", "crops.jsonl", "seg_1.m3u8"):
        assert cache_control_for(changing) == "no-cache", changing  # grows or may be rewritten


def test_playlists_revalidate_with_etag_and_last_modified(hls_dir: Path, server) -> None:
    playlist = hls_dir / "live.m3u8"
    tmp = hls_dir / ".live.m3u8.tmp"
    tmp.write_text("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:1\n")
    old = time.time() - 30
    os.utime(tmp, (old, old))  # a settled file: written well over a second ago
    tmp.replace(playlist)
    status, headers, body = request(server, "GET", "/live.m3u8")
    etag, modified = headers["etag"], headers["last-modified"]
    assert status == 200 and headers["cache-control"] == "no-cache" and body.startswith(b"#EXTM3U")
    status, headers, body = request(server, "GET", "/live.m3u8", headers={"If-None-Match": etag})
    assert (status, body, headers["etag"]) == (304, b"", etag)
    assert headers["access-control-allow-origin"] == "*" and headers["cache-control"] == "no-cache"
    assert request(server, "GET", "/live.m3u8", headers={"If-None-Match": f'"x", W/{etag}'})[0] == 304
    assert request(server, "GET", "/live.m3u8", headers={"If-Modified-Since": modified})[0] == 304
    # If-None-Match decides alone when present (RFC 9110 13.2.2)
    assert request(server, "GET", "/live.m3u8", headers={"If-None-Match": '"other"',
                                                         "If-Modified-Since": modified})[0] == 200
    # the packager replaces the playlist by rename: a new version, a new validator, a full answer
    tmp.write_text("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:2\n")
    tmp.replace(playlist)
    status, headers, body = request(server, "GET", "/live.m3u8", headers={"If-None-Match": etag})
    assert status == 200 and b"SEQUENCE:2" in body and headers["etag"] != etag
    # just written: it may change again within the same second, so no Last-Modified (ETag only), and
    # If-Modified-Since alone never answers 304 for it
    assert "last-modified" not in headers
    assert request(server, "GET", "/live.m3u8", headers={"If-Modified-Since": modified})[0] == 200


def test_head_answers_the_headers_of_get_without_the_body(server) -> None:
    for path in ("/video/seg_000000.ts", "/master.m3u8", "/"):
        got = request(server, "GET", path)
        status, headers, body = request(server, "HEAD", path)
        assert status == 200 and body == b""
        assert headers["content-length"] == got[1]["content-length"] == str(len(got[2]))
        assert headers["content-type"] == got[1]["content-type"] and headers["etag"] == got[1]["etag"]


def test_a_file_larger_than_one_read_streams_whole_and_in_ranges(hls_dir: Path, server) -> None:
    big = hls_dir / "big" / "seg_000001.ts"
    big.parent.mkdir(exist_ok=True)
    data = os.urandom(700_000)  # past INLINE_BYTES and two CHUNK_BYTES reads
    big.write_bytes(data)
    status, headers, body = request(server, "GET", "/big/seg_000001.ts")
    assert status == 200 and body == data and headers["content-length"] == "700000"
    status, headers, body = request(server, "GET", "/big/seg_000001.ts", headers={"Range": "bytes=100000-599999"})
    assert status == 206 and body == data[100000:600000]
    # If-Range with another version's ETag: the range no longer applies, the whole file comes back
    status, _, body = request(server, "GET", "/big/seg_000001.ts",
                              headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert status == 200 and body == data


def test_operator_logs_are_never_served(hls_dir: Path, server) -> None:
    (hls_dir / "logs").mkdir(exist_ok=True)
    (hls_dir / "logs" / "stt.log").write_text("model path /secret\n")
    (hls_dir / "logs" / "stt.json").write_text("{}")
    (hls_dir / "debug.log").write_text("x\n")
    for path in ("/logs/stt.log", "/logs/stt.json", "/logs/", "/debug.log", "/%6cogs/stt.json"):
        status, _, body = request(server, "GET", path)
        assert status == 404 and b"secret" not in body, path


def test_media_preflight_is_answered_for_any_origin(server) -> None:
    status, headers, _ = request(server, "OPTIONS", "/video/seg_000000.ts", headers={
        "Origin": "http://example.test", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "range"})
    assert status == 204
    assert headers["access-control-allow-origin"] == "*"
    assert "GET" in headers["access-control-allow-methods"] and "POST" not in headers["access-control-allow-methods"]
    assert "range" in headers["access-control-allow-headers"].lower()


def test_control_calls_are_closed_to_other_origins(server) -> None:
    """A page on another origin can neither pass a preflight for /api/ nor read a control answer."""
    status, headers, _ = request(server, "OPTIONS", "/api/echo", headers={
        "Origin": "http://evil.test", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status >= 400 and not any(k.startswith("access-control-") for k in headers), (status, headers)
    for body, ctype in ((b'{"on": true}', "application/json"), (b"{}", "text/plain"), (b"[", "application/json")):
        status, headers, _ = request(server, "POST", "/api/echo", body=body,
                                     headers={"Content-Type": ctype, "Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in headers, (status, headers)


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


JSON = {"Content-Type": "application/json"}


def test_api_post_dispatches_to_the_named_handler(server) -> None:
    status, headers, body = request(server, "POST", "/api/vertical/keep-centered", body=b'{"on": true}',
                                    headers=JSON)
    assert status == 200 and json.loads(body) == {"echo": {"on": True}}
    assert headers["content-type"] == "application/json" and headers["cache-control"] == "no-store"
    server.api["late"] = lambda body: {"late": True}  # handlers may be registered after start
    assert json.loads(request(server, "POST", "/api/late", body=b"", headers=JSON)[2]) == {"late": True}
    charset = {"Content-Type": "application/json; charset=utf-8"}
    assert json.loads(request(server, "POST", "/api/echo", body=b'{"a": 1}', headers=charset)[2]) == {"echo": {"a": 1}}


@pytest.mark.parametrize(("path", "body", "status"), [
    ("/api/echo", b"{not json", 400),
    ("/api/echo", b"[1, 2]", 400),
    ("/api/echo", b"[" * 100_000, 413),
    ("/api/echo", b"[" * 60_000, 400),   # nested past the parser's recursion limit, inside the size cap
    ("/api/picky", b"{}", 400),
    ("/api/nope", b"{}", 404),
    ("/master.m3u8", b"{}", 405),
])
def test_api_rejects_bad_requests_with_a_4xx_and_a_message(server, path: str, body: bytes, status: int) -> None:
    got, headers, payload = request(server, "POST", path, body=body, headers=JSON)
    assert got == status
    if path.startswith("/api/"):
        assert json.loads(payload)["error"]
    status, _, payload = request(server, "GET", "/api/echo")
    assert status == 405 and "POST" in json.loads(payload)["error"]


@pytest.mark.parametrize("ctype", [None, "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                                   "multipart/form-data; boundary=x", "application/jsonp", "text/json"])
def test_control_refuses_bodies_not_declared_json_before_running_anything(server, ctype: str | None) -> None:
    """The requests any web page may send cross-origin without a preflight (text/plain, forms, a typeless
    Blob) must not reach a handler: 415, and the handler never ran."""
    calls: list[dict] = []
    server.api["count"] = lambda body: calls.append(body) or {"n": len(calls)}
    status, headers, payload = request(server, "POST", "/api/count", body=b'{"on": false}',
                                       headers={"Content-Type": ctype} if ctype else {})
    assert status == 415 and "application/json" in json.loads(payload)["error"]
    assert calls == []
    assert request(server, "POST", "/api/count", body=b"{}", headers=JSON)[0] == 200 and len(calls) == 1


@pytest.mark.parametrize(("body", "needle"), [
    (b'{"at": NaN}', "NaN is not a number JSON allows"),
    (b'{"at": Infinity}', "Infinity is not a number JSON allows"),
    (b'{"at": -Infinity}', "-Infinity is not a number JSON allows"),
    (b'{"at": 1e400}', "too large"),
    (b'{"at": -1e309}', "too large"),
    (b'{"n": 9007199254740993}', "out of range"),
    (b'{"n": -' + b"9" * 5000 + b"}", "out of range"),
])
def test_control_refuses_numbers_json_cannot_carry_with_422(server, body: bytes, needle: str) -> None:
    status, _, payload = request(server, "POST", "/api/echo", body=body, headers=JSON)
    assert status == 422, payload
    assert needle in json.loads(payload)["error"]


def test_control_accepts_the_extreme_numbers_json_can_carry(server) -> None:
    body = b'{"n": 9007199254740991, "m": -9007199254740991, "x": 1.7976931348623157e308, "y": 5e-324}'
    status, _, payload = request(server, "POST", "/api/echo", body=body, headers=JSON)
    assert status == 200 and json.loads(payload)["echo"]["n"] == 2**53 - 1


def test_control_body_cap_answers_413_before_reading_the_body(server) -> None:
    """A Content-Length over the cap is refused at once: the 413 arrives although not one byte of the
    announced 50 MB was sent, and the connection is closed rather than reused."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 50000000\r\n\r\n{")
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"connection: close" in answer.lower(), answer[:300]
    # chunked, no Content-Length: counted while read, refused as soon as it passes the cap
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"POST /api/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b" " * 32768
        for _ in range(3):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = read_until_closed(s)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:300]
    assert b"over 65536 bytes" in answer


def read_until_closed(s: socket.socket) -> bytes:
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    return data


def test_control_router_behind_api_keys(hls_dir: Path) -> None:
    from sidecast.core.serve import bare_app, control_router, run_in_thread

    app = bare_app(control_router({"echo": lambda body: {"echo": body}}, api_keys=["s3cret-key"]))
    with run_in_thread(app, 0, host="127.0.0.1") as handle:
        status, headers, payload = request(handle, "POST", "/api/echo", body=b"{}", headers=JSON)
        assert status == 401 and "missing API key" in json.loads(payload)["error"]
        assert headers["www-authenticate"] == "Bearer"
        status, _, payload = request(handle, "POST", "/api/echo", body=b"{}",
                                     headers={**JSON, "Authorization": "Bearer wrong"})
        assert status == 401 and json.loads(payload)["error"] == "wrong API key"
        for auth in ({"Authorization": "Bearer s3cret-key"}, {"X-API-Key": "s3cret-key"}):
            assert request(handle, "POST", "/api/echo", body=b'{"a": 1}', headers={**JSON, **auth})[0] == 200
        assert request(handle, "GET", "/master.m3u8")[0] == 404  # a control-only app serves no media


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


def test_close_is_prompt_with_idle_keep_alive_connections_and_frees_the_port(hls_dir: Path) -> None:
    handle = start_server(hls_dir, 0, host="127.0.0.1")
    idle = [http.client.HTTPConnection("127.0.0.1", handle.port, timeout=5) for _ in range(20)]
    for conn in idle:  # each leaves an open keep-alive connection behind
        conn.request("GET", "/master.m3u8")
        assert conn.getresponse().read().startswith(b"#EXTM3U")
    started = time.monotonic()
    handle.close()
    took = time.monotonic() - started
    assert took < 2.0, f"close() took {took:.2f} s"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", handle.port), timeout=2).close()
    with socket.socket() as s:  # the port is free for the next run
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", handle.port))
    handle.close()  # twice is harmless
    for conn in idle:
        conn.close()


def test_concurrency_limit_answers_503_instead_of_queueing(hls_dir: Path) -> None:
    from sidecast.core.serve import ServerOptions

    with start_server(hls_dir, 0, host="127.0.0.1", options=ServerOptions(limit_concurrency=3)) as handle:
        held = [http.client.HTTPConnection("127.0.0.1", handle.port, timeout=5) for _ in range(3)]
        for conn in held:
            conn.request("GET", "/master.m3u8")
            assert conn.getresponse().read()
        status, _, _ = request(handle, "GET", "/master.m3u8")
        assert status == 503
        for conn in held:
            conn.close()
        wait_for(lambda: request(handle, "GET", "/master.m3u8")[0] == 200, 30, "capacity to come back")


def test_sigterm_finishes_the_segment_and_stops_the_server(clip_small: Path, tmp_path: Path) -> None:
    """`sidecast run --serve`: SIGTERM reaches the pipeline (the server thread does not take the signal),
    the run ends cleanly with its summary, and the port is released."""
    port = free_port()
    proc = subprocess.Popen([SIDECAST, "run", str(clip_small), "-o", str(tmp_path), "--realtime", "--ladder",
                             "360p:800k", "--serve", str(port), "--serve-host", "127.0.0.1", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def served() -> bool:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/video/360p/index.m3u8")
                return conn.getresponse().status == 200
            except OSError:
                return False

        wait_for(served, 60, "the first playlist to be served")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-2000:]
    assert "shutting down" in err and "sidecast: done:" in out, (out, err[-2000:])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_harness_says_clearly_when_chromium_is_missing() -> None:
    with pytest.raises(HarnessError, match="Chromium not found"):
        play_hls("http://127.0.0.1:9/master.m3u8", chromium="/nonexistent/chromium")


def _play(hls_dir: Path, path: str, **kw: Any) -> PlaybackReport:
    with serve(hls_dir) as base:
        return play_hls(base + path, **kw)


def _page(hls_dir: Path) -> dict[str, Any]:
    with serve(hls_dir) as base:
        return open_page(base, seconds=2.0, timeout=60)


@pytest.fixture(scope="module")
def plays(hls_dir: Path) -> Iterator[dict[str, Future[Any]]]:
    """The browser tests' sessions, played side by side (``side_by_side``: a playback waits on the media
    clock, not the CPU); each test asserts on its own."""
    with side_by_side({
        "short": functools.partial(_play, hls_dir, "master.m3u8", seconds=5.5, timeout=90, subtitles=True),
        "interstitial": functools.partial(_play, hls_dir, "video/with_ad.m3u8", seconds=3, timeout=90,
                                          interstitials=True, until_event="INTERSTITIALS_PRIMARY_RESUMED"),
        "missing": functools.partial(_play, hls_dir, "missing.m3u8", seconds=2, timeout=60),
        "page": functools.partial(_page, hls_dir),
    }) as futures:
        yield futures


@pytest.mark.browser
def test_short_hls_plays_in_chromium_at_its_size_with_captions_on_time(plays: dict[str, Future[Any]]) -> None:
    report = plays["short"].result()
    report.raise_for_fatal()
    assert report.stop_reason in ("played", "ended"), report.summary()
    assert report.advanced_by() >= 3.0, report.summary()
    assert report.video_size == (WIDTH, HEIGHT), report.summary()
    assert [(lv["width"], lv["height"]) for lv in report.levels] == [(WIDTH, HEIGHT)]
    assert [t["lang"] for t in report.subtitle_tracks] == ["en"]
    assert report.events_named("MANIFEST_PARSED") and report.events_named("media.playing")
    assert report.hls_version == "1.7.4"
    # Each cue was seen while the playhead was inside it, close to where the VTT put it.
    cues = report.cues_seen
    assert [c.text for c in cues] == [f"cue number {i}" for i in range(len(cues))] and len(cues) >= 2, cues
    for i, cue in enumerate(cues):
        assert cue.start == pytest.approx(2 * i + 0.5, abs=0.1), cue
        assert cue.start - 0.05 <= cue.seen_at <= cue.start + 0.3, cue
        assert cue.seen_at <= cue.last_seen_at <= cue.end + 0.05, cue


@pytest.mark.browser
def test_harness_reports_interstitial_playback_from_hls_js(plays: dict[str, Future[Any]]) -> None:
    report = plays["interstitial"].result()
    report.raise_for_fatal()
    assert report.stop_reason == "played", report.summary()
    order = ["INTERSTITIALS_UPDATED", "INTERSTITIAL_STARTED", "INTERSTITIAL_ASSET_STARTED",
             "INTERSTITIAL_ASSET_ENDED", "INTERSTITIAL_ENDED", "INTERSTITIALS_PRIMARY_RESUMED"]
    missing = [name for name in order if not report.events_named(name)]
    assert not missing, report.summary()
    firsts = [report.events_named(name)[0]["t"] for name in order]
    assert firsts == sorted(firsts), dict(zip(order, firsts, strict=True))
    started = report.events_named("INTERSTITIAL_STARTED")[0]["data"]["event"]
    assert started["id"] == "ad1" and started["startTime"] == pytest.approx(2.0, abs=0.1)
    asset = report.events_named("INTERSTITIAL_ASSET_STARTED")[0]["data"]["asset"]
    assert asset["uri"] == "../ad/index.m3u8" and asset["duration"] == pytest.approx(2.0, abs=0.1)
    ad_samples = report.ad_playing_samples
    assert ad_samples and {s["adId"] for s in ad_samples} == {"ad1"}
    assert ad_samples[-1]["t"] - ad_samples[0]["t"] >= 1000  # sampled through most of the 2 s ad
    assert report.advanced_by("primary") >= 3.0, report.summary()


@pytest.mark.browser
def test_harness_reports_a_missing_playlist_as_a_fatal_error(plays: dict[str, Future[Any]]) -> None:
    report = plays["missing"].result()
    assert report.stop_reason == "fatal", report.summary()
    assert [e["details"] for e in report.fatal_errors] == ["manifestLoadError"]
    assert report.fatal_errors[0]["response"]["code"] == 404
    with pytest.raises(AssertionError, match="manifestLoadError"):
        report.raise_for_fatal()


@pytest.mark.browser
def test_player_page_plays_the_master_playlist_with_the_served_hls_js(plays: dict[str, Future[Any]]) -> None:
    page = plays["page"].result()
    assert page["stopReason"] == "played", page
    assert page["hlsVersion"] == "1.7.4"
    assert (page["video"]["width"], page["video"]["height"]) == (WIDTH, HEIGHT)
    assert "FATAL" not in page["pageText"] and "master.m3u8" in page["pageText"], page["pageText"]
    assert not page["pageErrors"], page["pageErrors"]


def test_a_thousand_idle_connections_neither_exhaust_descriptors_nor_block_players(hls_dir: Path) -> None:
    """The player port as its own process (`python -m sidecast.core.serve`): 1,000 clients connect and send
    nothing (a port scan, a stuck proxy); a player still gets its playlist at once, and the server lives."""
    import resource
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # this process holds the 1,000 client sockets
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200 if hard == resource.RLIM_INFINITY else min(1200, hard), hard))
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "sidecast.core.serve", str(hls_dir), "--port", str(port),
                             "--host", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    idle: list[socket.socket] = []
    try:
        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(up, 30, "the player port")
        for _ in range(1000):
            idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        started = time.monotonic()
        conn.request("GET", "/master.m3u8")
        resp = conn.getresponse()
        body = resp.read()
        took = time.monotonic() - started
        conn.close()
        assert resp.status == 200 and body.startswith(b"#EXTM3U"), resp.status
        assert took < 2.0, f"the playlist took {took:.2f} s behind 1,000 idle connections"
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    finally:
        for s in idle:
            s.close()
        proc.terminate()
        proc.wait(10)
    assert b"Too many open files" not in (proc.stderr.read() if proc.stderr else b"")
