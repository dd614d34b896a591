"""Storage backends: a local directory, and S3 against a real S3 HTTP server on loopback (moto), with the
headers a CDN needs; the publisher and the player port over S3."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import httpx
import pytest

from sidecast.core.serve.files import NO_CACHE, SEGMENT_CACHE
from sidecast.core.server.publish import Publisher, PublishPlan, resolve_uri
from sidecast.core.server.storage import LocalStorage, S3Storage, Storage, check_key, open_storage
from sidecast.hls import parse_media
from tests.server_helpers import moto_s3, running_server
from tests.test_server_publish import Attempt


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    with moto_s3() as url:
        yield url


def _backends(tmp_path: Path, s3_url: str) -> list[Storage]:
    return [LocalStorage(tmp_path / "media"),
            S3Storage("media", prefix="edge/", endpoint_url=s3_url, create_bucket=True)]


def test_both_backends_store_replace_and_delete(tmp_path: Path, s3_url: str) -> None:
    for st in _backends(tmp_path, s3_url):
        src = tmp_path / f"seg-{st.kind}.ts"
        src.write_bytes(b"\x47" * 188 * 10)
        assert st.put_file(src, "cam/e/ev1/r1/video/360p/seg_000001.ts") == 1880
        assert not src.exists(), f"{st.kind}: the scratch file stays behind"
        st.put_bytes("cam/video/360p/index.m3u8", b"#EXTM3U\n")
        st.put_bytes("cam/video/360p/index.m3u8", b"#EXTM3U\n#EXT-X-ENDLIST\n")
        assert st.get("cam/video/360p/index.m3u8") == b"#EXTM3U\n#EXT-X-ENDLIST\n"
        assert st.get("cam/e/ev1/r1/video/360p/seg_000001.ts") == b"\x47" * 1880
        assert st.get("cam/nothing.ts") is None
        st.delete(["cam/video/360p/index.m3u8", "cam/never-there.ts"])
        assert st.get("cam/video/360p/index.m3u8") is None
        assert st.delete_prefix("cam/e/ev1/") == 1
        assert st.get("cam/e/ev1/r1/video/360p/seg_000001.ts") is None
        st.check()


def test_s3_objects_carry_the_type_and_cache_policy_a_cdn_needs(tmp_path: Path, s3_url: str) -> None:
    st = S3Storage("media", prefix="edge/", endpoint_url=s3_url, create_bucket=True)
    src = tmp_path / "s.ts"
    src.write_bytes(b"x")
    st.put_file(src, "cam/e/ev1/r1/video/360p/seg_000007.ts")
    st.put_bytes("cam/video/360p/index.m3u8", b"#EXTM3U\n")
    s3 = boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1")
    seg = s3.head_object(Bucket="media", Key="edge/cam/e/ev1/r1/video/360p/seg_000007.ts")
    assert (seg["ContentType"], seg["CacheControl"]) == ("video/mp2t", SEGMENT_CACHE)
    pl = s3.head_object(Bucket="media", Key="edge/cam/video/360p/index.m3u8")
    assert (pl["ContentType"], pl["CacheControl"]) == ("application/vnd.apple.mpegurl", NO_CACHE)


def test_keys_cannot_leave_the_storage() -> None:
    for bad in ("", "/etc/passwd", "a/../../b", "a/./b", "a\\b", "a\x00b", "a//b"):
        with pytest.raises(ValueError):
            check_key(bad)
    assert check_key("cam/e/ev1/") == "cam/e/ev1/"


def test_storage_urls() -> None:
    assert isinstance(open_storage("local", Path("/tmp/x")), LocalStorage)
    with pytest.raises(ValueError, match="s3://BUCKET"):
        open_storage("s3:///nobucket", Path("/tmp/x"))
    with pytest.raises(ValueError, match="use a directory"):
        open_storage("ftp://host/x", Path("/tmp/x"))


def test_the_publisher_writes_a_stream_into_s3(tmp_path: Path, s3_url: str) -> None:
    st = S3Storage("pub", endpoint_url=s3_url, create_bucket=True)
    a = Attempt(tmp_path, "ev1", 1)
    p = Publisher(st, tmp_path / "state" / "cam", a.dir, PublishPlan("cam", "ev1", 1, 2.0, 3, False))
    for _ in range(4):
        a.segment()
        p.sync()
    pl = parse_media(st.get("cam/video/360p/index.m3u8").decode())
    assert len(pl.segments) == 3 and pl.media_sequence == 1
    for s in pl.segments:
        assert st.get(resolve_uri(s.uri, "cam/video/360p/index.m3u8")) == b"x" * 1000


def test_the_player_port_serves_s3_media_and_checks_tokens(tmp_path: Path, s3_url: str) -> None:
    with running_server(tmp_path / "data", storage=f"s3://play/v?endpoint={s3_url}&create=1") as srv:
        for sid, protected in (("open1", False), ("locked", True)):
            r = srv.api.post("/v1/streams", json={"id": sid, "ingest": "push",
                                                  "settings": {"playback_protection": protected}})
            assert r.status_code == 201, r.text
            srv.server.storage.put_bytes(f"{sid}/master.m3u8", b"#EXTM3U\n")
        r = srv.media("open1/master.m3u8")
        assert r.status_code == 200 and r.content == b"#EXTM3U\n"
        assert r.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert r.headers["access-control-allow-origin"] == "*" and r.headers["cache-control"] == NO_CACHE
        again = httpx.get(srv.media_url + "open1/master.m3u8", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
        assert srv.media("open1/missing.ts").status_code == 404
        assert srv.media("locked/master.m3u8").status_code == 403
        tok = srv.api.post("/v1/streams/locked/playback-token", json={"ttl": 60}).json()
        r = httpx.get(tok["urls"]["hls"])
        assert r.status_code == 200 and r.content == b"#EXTM3U\n"
        assert srv.media("nosuch/master.m3u8").status_code == 404
