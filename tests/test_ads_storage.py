"""Object storage for uploaded creatives: the same contract in a folder and in S3-compatible storage,
tested against a real S3 server on loopback (moto_server) with signature checking on, our SigV4 compared
with botocore's, and two API replicas sharing Redis and the bucket: what one stores, the other serves,
and a restart loses nothing."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from sidecast.ads.storage import ObjectStore, StorageError, TooLarge, open_object_store, parse_range
from sidecast.ads.storage.s3 import S3Store, sign_v4
from tests.ads_fixtures import API_KEY, redis_server, running_api, wait_until

MB = 1 << 20


@contextlib.contextmanager
def moto_s3() -> Iterator[dict[str, str]]:
    """A real S3 endpoint on loopback (PyPI moto[server]) that checks every request's signature: the first
    four requests (creating a user, its key, its policy and the bucket) are the only unsigned ones."""
    exe = shutil.which("moto_server", path=os.path.dirname(os.path.realpath(__import__("sys").executable)))
    assert exe, "moto_server is not installed (pip install 'moto[server]', part of the dev extras)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "4"})
    endpoint = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, "moto_server exited"
            try:
                httpx.get(endpoint + "/moto-api/", timeout=1)
                return True
            except httpx.HTTPError:
                return False

        wait_until(up, 30, "moto_server to answer")
        import boto3

        setup = {"endpoint_url": endpoint, "aws_access_key_id": "setup", "aws_secret_access_key": "setup",
                 "region_name": "us-east-1"}
        iam = boto3.client("iam", **setup)
        iam.create_user(UserName="ads")
        key = iam.create_access_key(UserName="ads")["AccessKey"]
        iam.put_user_policy(UserName="ads", PolicyName="s3", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key["AccessKeyId"],
                     aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1").create_bucket(Bucket="ads-media")
        yield {"endpoint": endpoint, "access_key": key["AccessKeyId"], "secret_key": key["SecretAccessKey"],
               "bucket": "ads-media"}
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, str]]:
    with moto_s3() as creds:
        yield creds


def _botocore_signature(method: str, url: str, headers: dict[str, str], payload_hash: str, when: datetime) -> str:
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    req = AWSRequest(method=method, url=url, headers=dict(headers))
    req.headers["X-Amz-Content-SHA256"] = payload_hash
    req.context["timestamp"] = when.strftime("%Y%m%dT%H%M%SZ")
    auth = S3SigV4Auth(Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"), "s3", "us-east-1")
    req.headers["X-Amz-Date"] = req.context["timestamp"]
    canonical = auth.canonical_request(req)
    return auth.signature(auth.string_to_sign(req, canonical), req)


@pytest.mark.parametrize("method, url, headers", [
    ("GET", "http://127.0.0.1:9000/ads-media/p/cr-1/media.mp4", {"range": "bytes=0-1023"}),
    ("PUT", "http://127.0.0.1:9000/ads-media/p/cr-1/media.mp4", {"content-type": "video/mp4"}),
    ("POST", "http://127.0.0.1:9000/ads-media/cr-1/media.mp4?uploads=", {"content-type": "video/mp4"}),
    ("PUT", "http://127.0.0.1:9000/ads-media/cr-1/media.mp4?partNumber=2&uploadId=a%2Fb%2Bc", {}),
    ("HEAD", "https://ads-media.s3.us-east-1.amazonaws.com/incoming/x.ts", {}),
])
def test_our_sigv4_signature_is_botocores(method: str, url: str, headers: dict[str, str]) -> None:
    when = datetime(2026, 11, 30, 12, 34, 56, tzinfo=UTC)
    payload = "UNSIGNED-PAYLOAD" if method == "PUT" else "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    ours = sign_v4(method, url, headers, payload, access_key="AKIDEXAMPLE",
                   secret_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region="us-east-1", now=when)
    theirs = _botocore_signature(method, url, {**headers, "host": httpx.URL(url).netloc.decode()}, payload, when)
    assert ours["Authorization"].endswith(f"Signature={theirs}")


async def _chunks(total: int, piece: int = MB) -> AsyncIterator[bytes]:
    for i in range(0, total, piece):
        yield bytes([(i // piece) % 251]) * min(piece, total - i)


async def _read(store: ObjectStore, key: str, byte_range: str | None = None) -> tuple[int, bytes]:
    body = await store.get(key, byte_range=byte_range)
    assert body is not None
    return body.status, b"".join([c async for c in body.chunks])


async def _contract(store: ObjectStore) -> None:
    """What every object store does, the same way."""
    await store.check()
    small = await store.put("cr-1/media.mp4", _chunks(1000, 300), content_type="video/mp4", max_bytes=MB)
    assert small.size == 1000 and (await store.head("cr-1/media.mp4")).size == 1000  # type: ignore[union-attr]
    status, data = await _read(store, "cr-1/media.mp4", "bytes=298-301")
    assert status == 206 and data == bytes([0, 0, 1, 1])
    assert (await _read(store, "cr-1/media.mp4"))[1][-1] == 3
    big = await store.put("incoming/big.mp4", _chunks(12 * MB), content_type="video/mp4", max_bytes=20 * MB)
    assert big.size == 12 * MB
    await store.move("incoming/big.mp4", "cr-2/media.mp4")
    assert await store.head("incoming/big.mp4") is None
    status, data = await _read(store, "cr-2/media.mp4", f"bytes={6 * MB - 1}-{6 * MB}")
    assert status == 206 and data == bytes([5, 6])
    with pytest.raises(TooLarge):
        await store.put("cr-3/media.mp4", _chunks(15 * MB), content_type="video/mp4", max_bytes=11 * MB)
    assert await store.head("cr-3/media.mp4") is None and await store.get("cr-3/media.mp4") is None
    assert await store.delete("cr-1/media.mp4") is True and await store.delete("cr-1/media.mp4") is False
    for bad in ("../etc/passwd", "a//b", "/abs", "a/../../b", ""):
        with pytest.raises(StorageError):
            await store.head(bad)
    await store.aclose()


def test_a_folder_keeps_the_object_store_contract(tmp_path: Path) -> None:
    asyncio.run(_contract(open_object_store(None, tmp_path / "media")))
    assert not [p for p in (tmp_path / "media").rglob("*") if p.name.startswith(".upload-")]


def test_s3_keeps_the_object_store_contract_under_signature_checks(s3: dict[str, str]) -> None:
    import boto3

    store = S3Store(s3["bucket"], "contract", endpoint=s3["endpoint"], access_key=s3["access_key"],
                    secret_key=s3["secret_key"], part_bytes=5 * MB)
    asyncio.run(_contract(store))
    client = boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["access_key"],
                          aws_secret_access_key=s3["secret_key"], region_name="us-east-1")
    # the refused upload was multipart: it is aborted, not left half-stored
    assert not client.list_multipart_uploads(Bucket=s3["bucket"]).get("Uploads")
    # (listing without a prefix: moto checks a prefixed listing's signature differently from botocore)
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3["bucket"]).get("Contents", [])]
    assert [k for k in keys if k.startswith("contract/")] == ["contract/cr-2/media.mp4"]
    wrong = S3Store(s3["bucket"], "x", endpoint=s3["endpoint"], access_key=s3["access_key"], secret_key="not-it")

    async def refused() -> None:
        with pytest.raises(StorageError, match="SignatureDoesNotMatch"):
            await wrong.put("a.mp4", _chunks(10), content_type="video/mp4", max_bytes=100)
        await wrong.aclose()

    asyncio.run(refused())


def test_ranges_are_read_like_http_does() -> None:
    assert parse_range("bytes=0-9", 100) == (0, 9) and parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99) and parse_range("bytes=50-500", 100) == (50, 99)
    assert parse_range(None, 100) is None and parse_range("bytes=0-1,5-6", 100) is None
    with pytest.raises(StorageError):
        parse_range("bytes=100-", 100)


def _upload(api: Any, cid: str, data: bytes) -> dict[str, Any]:
    r = api.client.post("/v1/creatives/upload", data={"id": cid, "duration": "6", "advertiser": "Acme"},
                        files={"file": ("spot.mp4", data, "video/mp4")})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def test_replicas_sharing_redis_and_a_bucket_serve_each_others_uploads_across_restarts(
        s3: dict[str, str], tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096   # 1 MiB
    shared = {"media_store": f"s3://{s3['bucket']}/replicas", "s3_endpoint": s3["endpoint"],
              "s3_access_key": s3["access_key"], "s3_secret_key": s3["secret_key"]}
    with redis_server() as redis_url:
        with running_api(db_path=str(tmp_path / "a.db"), redis_url=redis_url, **shared) as a, \
                running_api(db_path=str(tmp_path / "b.db"), redis_url=redis_url, **shared) as b:
            doc = _upload(a, "spot-1", data)
            assert doc["media_url"] == f"{a.base}/v1/media/spot-1/media.mp4"
            got = b.client.get("/v1/media/spot-1/media.mp4")
            assert got.status_code == 200 and got.content == data and got.headers["content-type"] == "video/mp4"
            part = b.client.get("/v1/media/spot-1/media.mp4", headers={"Range": "bytes=256-511"})
            assert part.status_code == 206 and part.content == bytes(range(256))
            assert part.headers["content-range"] == f"bytes 256-511/{len(data)}"
            assert b.client.get("/v1/media/spot-1/media.mp4", headers={"Range": f"bytes={len(data)}-"}).status_code == 416
            assert b.client.get("/v1/media/nope/media.mp4").status_code == 404
            b.client.post("/v1/campaigns", json={"id": "k", "creative_ids": ["spot-1"]}).raise_for_status()
            d = b.client.post("/v1/decisions", json={"session_id": "s", "duration": 10}).json()
            assert [x["creative_id"] for x in d["ads"]] == ["spot-1"]
            # a second upload under the same id is refused wherever it lands, and leaves nothing behind
            r = b.client.post("/v1/creatives/upload", data={"id": "spot-1", "duration": "6"},
                              files={"file": ("spot.mp4", b"other", "video/mp4")})
            assert r.status_code == 409
        # every replica restarted: the stored creatives are still there (nothing lived on a pod's disk)
        with running_api(db_path=str(tmp_path / "c.db"), redis_url=redis_url, **shared) as c:
            assert c.client.get("/v1/media/spot-1/media.mp4").content == data
    import boto3

    client = boto3.client("s3", endpoint_url=s3["endpoint"], aws_access_key_id=s3["access_key"],
                          aws_secret_access_key=s3["secret_key"], region_name="us-east-1")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=s3["bucket"]).get("Contents", [])]
    assert [k for k in keys if k.startswith("replicas/")] == ["replicas/spot-1/media.mp4"]  # no incoming/ leftovers


def test_an_unreachable_bucket_stops_the_service_at_start_in_one_line(s3: dict[str, str], tmp_path: Path) -> None:
    from sidecast.ads.api.app import create_app
    from sidecast.ads.api.service import Settings

    for store, secret, needle in (("s3://no-such-bucket", s3["secret_key"], "does not exist"),
                                  (f"s3://{s3['bucket']}", "wrong", "access denied")):
        with pytest.raises(RuntimeError, match=needle) as info:
            create_app(Settings(db_path=str(tmp_path / "x.db"), api_keys=(API_KEY,), media_store=store,
                                s3_endpoint=s3["endpoint"], s3_access_key=s3["access_key"], s3_secret_key=secret))
        assert "\n" not in str(info.value)
