"""The decisioning API against hostile requests and settings: bodies are authenticated and sized before a
byte of them is read (401 / 413, server memory unchanged), uploads stream to storage, internal URLs in
every spelling are refused at registration (422) as well as at fetch time, and settings that would make
every request fail stop the service at start with one line. Real server processes on loopback."""

from __future__ import annotations

import argparse
import os
import select
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sidecast.ads.api.service import Settings
from sidecast.ads.fetch import FetchPolicy, UnsafeURL, check_url, check_url_syntax
from tests.ads_fixtures import API_KEY, cli_api, running_api

ROOT = Path(__file__).resolve().parents[1]
MB = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[int, int, Path]]:
    """`sidecast ads serve` as its own process: (port, pid, media folder), so its memory can be read."""
    tmp = tmp_path_factory.mktemp("hardening")
    with cli_api(tmp / "a.db", "--media-dir", str(tmp / "media"), "--max-upload-bytes", str(100 * MB)) as (url, proc):
        yield int(url.rsplit(":", 1)[1]), proc.pid, tmp / "media"


def memory_kib(pid: int, field: str = "VmHWM") -> int:
    """The process's peak (VmHWM) or current (VmRSS) resident memory, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


def push(port: int, head: str, total: int, chunked: bool = False, prefix: bytes = b"") -> tuple[int, int, bytes]:
    """Send `head` (and `prefix`), then up to `total` body bytes, stopping as soon as the server answers or
    cuts the connection; returns (status, body bytes sent, the response). Status 0: the server reset the
    connection while we were still sending (a server that closes with unread input does that; the
    response it wrote before may be lost on the way), which also means it stopped reading."""
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(head.encode() + prefix)
    sent, block = 0, b"\0" * MB
    got = b""
    try:
        while sent < total and not select.select([s], [], [], 0.002)[0]:
            piece = block[: min(MB, total - sent)]
            s.sendall(f"{len(piece):x}\r\n".encode() + piece + b"\r\n" if chunked else piece)
            sent += len(piece)
        s.settimeout(30)
        while True:
            data = s.recv(65536)
            if not data:
                break
            got += data
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        s.close()
    return int(got[9:12]) if got.startswith(b"HTTP/1.1") else 0, sent, got


def test_an_unauthenticated_200_mb_post_is_refused_401_before_it_is_read(server) -> None:
    port, pid, _ = server
    peak0 = memory_kib(pid)
    for path in ("/v1/creatives", "/v1/decisions", "/v1/creatives/upload", "/v1/sources"):
        status, sent, resp = push(port, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                        f"Content-Length: {200 * MB}\r\n\r\n", 200 * MB)
        assert status == 401, resp[:300]
        assert sent < 50 * MB, f"{path}: {sent / MB:.0f} MB were sent before the 401"
        assert b"X-API-Key" in resp or b"token" in resp
    status, sent, _ = push(port, "POST /v1/creatives HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                 "X-API-Key: wrong\r\n\r\n", 200 * MB, chunked=True)
    assert status == 401 and sent < 50 * MB
    assert memory_kib(pid) - peak0 < 20 * 1024, "the server's memory grew with refused bodies"


def test_bodies_over_the_cap_are_413_before_or_while_they_are_read(server) -> None:
    port, pid, media = server
    key = f"X-API-Key: {API_KEY}\r\n"
    status, sent, resp = push(port, f"POST /v1/creatives HTTP/1.1\r\nHost: x\r\n{key}Content-Type: application/json\r\n"
                                    f"Content-Length: {10 * MB}\r\n\r\n", 10 * MB)
    assert status == 413 and b"65536-byte limit" in resp and sent < 5 * MB
    status, sent, resp = push(port, f"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n{key}Content-Type: application/json\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n", 50 * MB, chunked=True)
    assert status in (413, 0) and sent < 20 * MB, (sent, resp[:300])
    boundary = "b0undary"
    status, sent, resp = push(port, f"POST /v1/creatives/upload HTTP/1.1\r\nHost: x\r\n{key}"
                                    f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
                                    f"Content-Length: {300 * MB}\r\n\r\n", 300 * MB)
    assert status == 413 and sent < 50 * MB
    # a body without a length that runs past the upload cap: cut at the cap (413), nothing left in storage
    head = (f"POST /v1/creatives/upload HTTP/1.1\r\nHost: x\r\n{key}Content-Type: multipart/form-data; "
            f"boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n")
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"duration\"\r\n\r\n10\r\n--{boundary}\r\n"
            f"Content-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\nContent-Type: video/mp4\r\n\r\n")
    status, sent, resp = push(port, head, 300 * MB, chunked=True, prefix=f"{len(part):x}\r\n{part}\r\n".encode())
    assert status in (413, 0), resp[:300]
    assert 100 * MB <= sent < 140 * MB, f"the server read {sent / MB:.0f} MB of a body capped at 100 MB"
    assert not [p for p in media.rglob("*") if p.is_file() and not p.name.startswith(".probe")]
    assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200


def test_an_upload_streams_to_storage_without_holding_it_in_memory(server) -> None:
    port, pid, media = server
    size = 60 * MB
    peak0 = memory_kib(pid)

    def body() -> Iterator[bytes]:
        yield b"--xyz\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nbig-one\r\n"
        yield b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"spot.mp4\"\r\n\r\n"
        for i in range(size // MB):
            yield bytes([i % 251]) * MB
        yield b"\r\n--xyz\r\nContent-Disposition: form-data; name=\"duration\"\r\n\r\n15\r\n--xyz--\r\n"

    r = httpx.post(f"http://127.0.0.1:{port}/v1/creatives/upload", content=body(), timeout=120,
                   headers={"X-API-Key": API_KEY, "Content-Type": "multipart/form-data; boundary=xyz"})
    assert r.status_code == 201, r.text
    grew = memory_kib(pid) - peak0
    assert grew < 30 * 1024, f"peak memory grew by {grew / 1024:.0f} MiB for a {size // MB} MiB upload"
    stored = media / "big-one" / "media.mp4"
    assert stored.stat().st_size == size
    got = httpx.get(f"http://127.0.0.1:{port}/v1/media/big-one/media.mp4", headers={"Range": "bytes=1048575-1048577"})
    assert got.status_code == 206 and got.content == bytes([0, 1, 1])
    assert r.json()["duration"] == 15 and r.json()["media_url"].endswith("/v1/media/big-one/media.mp4")


@pytest.mark.parametrize("body", [
    b"--b0\r\n[None]--b0--\r\n",                        # a header line with a bracket (found by schemathesis)
    b"--b0\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.mp4\"\r\n\r\nxx\r\n--b0\r\n\x00\r\n",
    b"--b0\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nok\r\n--b0\x01",
])
def test_a_malformed_multipart_upload_is_a_400_and_stores_nothing(server, body: bytes) -> None:
    port, _, media = server
    before = sorted(p.name for p in media.rglob("*")) if media.exists() else []
    r = httpx.post(f"http://127.0.0.1:{port}/v1/creatives/upload", content=body, timeout=30,
                   headers={"X-API-Key": API_KEY, "Content-Type": "multipart/form-data; boundary=b0"})
    assert r.status_code in (400, 422), r.text
    assert "multipart" in r.json()["detail"] or "file" in r.json()["detail"]
    after = sorted(p.name for p in media.rglob("*")) if media.exists() else []
    assert after == before


def test_a_normal_body_and_a_player_token_still_work(server) -> None:
    port, _, _ = server
    base = f"http://127.0.0.1:{port}"
    tok = httpx.post(f"{base}/v1/tokens", json={"session_id": "viewer"}, headers={"X-API-Key": API_KEY}).json()["token"]
    r = httpx.post(f"{base}/v1/decisions", params={"token": tok}, json={"session_id": "viewer", "duration": 30})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{base}/v1/decisions", params={"token": tok + "x"}, json={"session_id": "viewer", "duration": 30})
    assert r.status_code == 401


# ---------------------------------------------------------------- SSRF: every spelling of an internal address

INTERNAL = [
    "http://[::ffff:7f00:1]/vast", "http://[::ffff:127.0.0.1]/vast", "http://[0:0:0:0:0:ffff:7f00:0001]/vast",
    "http://[::127.0.0.1]/vast",                     # IPv4-compatible (::/96)
    "http://[::ffff:0:a9fe:a9fe]/latest/meta-data/",  # SIIT-translated metadata address
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64 to the metadata address
    "http://[64:ff9b::10.0.0.1]/vast", "http://[64:ff9b:1::a00:1]/vast",
    "http://[2002:a9fe:a9fe::1]/vast",               # 6to4 around the metadata address
    "http://[fe80::1]/vast", "http://[::1]:8080/vast",
    "http://2130706433/vast", "http://0x7f.1/vast", "http://017700000001/vast", "http://127.1/vast",
    "http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/vast", "http://100.64.0.1/vast",
    "http://localhost:9000/vast",
]


@pytest.mark.parametrize("url", INTERNAL)
def test_internal_addresses_are_refused_in_every_spelling(url: str) -> None:
    with pytest.raises(UnsafeURL, match="non-public address"):
        check_url(url, FetchPolicy())
    if "localhost" not in url:
        with pytest.raises(UnsafeURL, match="non-public address"):
            check_url_syntax(url, FetchPolicy())   # literal addresses: refused without DNS


def test_public_nat64_and_names_pass_the_syntax_check() -> None:
    for url in ("http://[64:ff9b::808:808]/vast", "https://ads.example.com/vast?x=[CACHEBUSTING]", "http://8.8.8.8/"):
        check_url_syntax(url, FetchPolicy())
    with pytest.raises(UnsafeURL, match="credentials"):
        check_url_syntax("https://user:pw@ads.example.com/vast", FetchPolicy())


def test_internal_and_credentialed_urls_are_refused_at_registration(tmp_path: Path) -> None:
    with running_api(db_path=str(tmp_path / "a.db")) as api:
        for url in INTERNAL[:9] + ["https://user:secret@ads.example.com/vast"]:
            r = api.client.post("/v1/sources", json={"vast_url": url})
            assert r.status_code == 422 and r.json()["detail"].startswith("vast_url: refusing"), (url, r.text)
            r = api.client.post("/v1/creatives", json={"media_url": "https://cdn.example/a.m3u8", "duration": 5,
                                                       "tracking": {"complete": [url]}})
            assert r.status_code == 422 and "tracking.complete" in r.json()["detail"], (url, r.text)
        r = api.client.post("/v1/creatives", json={"media_url": "http://[::ffff:a9fe:a9fe]/ad.mp4", "duration": 5})
        assert r.status_code == 422 and r.json()["detail"].startswith("media_url:")
        # a public name that does not resolve yet is accepted (every fetch checks again)
        assert api.client.post("/v1/sources", json={"vast_url": "https://ads.example.com/vast"}).status_code == 201
        assert api.client.get("/v1/sources").json()[0]["vast_url"] == "https://ads.example.com/vast"


# ---------------------------------------------------------------- settings that would fail every request

@pytest.mark.parametrize("field, value, needle", [
    ("token_ttl", 0, "--token-ttl"), ("token_ttl", -5, "--token-ttl"), ("upstream_timeout", float("nan"), "--upstream-timeout"),
    ("upstream_timeout", 0.0, "--upstream-timeout"), ("max_body_bytes", 0, "--max-body-bytes"),
    ("max_upload_bytes", 0, "--max-upload-bytes"), ("max_vast_bytes", 10, "--max-vast-bytes"),
    ("max_ads_per_response", 0, "--max-ads-per-response"), ("decision_wait", float("inf"), "--decision-wait"),
    ("prefetch_lead", -1.0, "--prefetch-lead"), ("live_preroll", 1e9, "--live-preroll"),
    ("public_url", "ftp://ads", "--public-url"), ("media_store", "s3://Bad_Bucket", "--media-store"),
    ("s3_endpoint", "minio:9000", "--s3-endpoint"), ("origin", "/no/such/folder", "--origin"),
    ("api_keys", ("",), "--api-key"), ("api_keys", (" padded ",), "--api-key"), ("token_key", "short", "token key"),
])
def test_settings_that_would_fail_every_request_are_refused_in_one_line(field: str, value: object, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("-", r"\-")) as info:
        Settings(**{field: value})  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_the_cli_refuses_them_before_serving_with_status_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sidecast.ads.api.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    for argv, needle in ((["--token-ttl", "0"], "--token-ttl"), (["--upstream-timeout", "nan"], "--upstream-timeout"),
                         (["--api-key", ""], "--api-key"),
                         (["--media-store", "s3://media-bucket"], "AWS_ACCESS_KEY_ID")):
        keys = [] if "--api-key" in argv else ["--api-key", "a-key"]
        args = parser.parse_args(["serve", "--db", str(tmp_path / "a.db"), *keys, *argv])
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        old = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            assert args.func(args) == 2
        finally:
            os.environ.clear()
            os.environ.update(old)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("sidecast ads:") and needle in err[0], err
        assert "Traceback" not in "\n".join(err)


def test_a_settings_refusal_through_the_real_command_is_one_line(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "sidecast.ads.api.cli", "serve", "--db", str(tmp_path / "a.db"),
                        "--token-ttl", "0"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr == "sidecast ads: --token-ttl must be between 10 and 604800, got 0\n"
