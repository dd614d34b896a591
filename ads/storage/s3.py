"""Object storage in S3 or any S3-compatible server (MinIO, Ceph RGW, R2...), over httpx with AWS Signature
Version 4, so that every replica of a service reads what any of them wrote.

Why our own small client and not boto3: the service is async and streams uploads straight through; the
operations needed are six (PUT, multipart upload, GET with a range, HEAD, copy, DELETE); and SigV4 is a
published algorithm (``sign_v4``, checked against botocore's signer in the tests). Addressing is
path-style (``ENDPOINT/bucket/key``) for a custom endpoint, which is what S3-compatible servers expect, and
virtual-hosted (``https://bucket.s3.REGION.amazonaws.com/key``) for AWS itself.

Uploads up to one part (8 MiB) are one signed PUT; larger ones are a multipart upload with 8 MiB parts,
each hashed and signed, aborted on any failure, so memory stays at one part however large the object.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from datetime import UTC, datetime
from xml.sax.saxutils import escape

import httpx

from sidecast.ads.storage import ObjectBody, StorageError, StoredObject, TooLarge, check_key

__all__ = ["S3Store", "sign_v4", "EMPTY_SHA256"]

PART_BYTES = 8 * 1024 * 1024
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def _q(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def sign_v4(method: str, url: str, headers: Mapping[str, str], payload_sha256: str, *, access_key: str,
            secret_key: str, region: str, now: datetime, service: str = "s3",
            session_token: str = "") -> dict[str, str]:
    """The headers to send for one request signed with AWS Signature Version 4 (header form): the given
    ones plus Host, X-Amz-Date, X-Amz-Content-Sha256 (and X-Amz-Security-Token), and Authorization.

    `url` must already be percent-encoded the way it is sent; every header given is signed."""
    parts = urllib.parse.urlsplit(url)
    amz_date = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = amz_date[:8]
    out = {k: " ".join(str(v).split()) for k, v in headers.items()}
    out["host"] = parts.netloc
    out["x-amz-date"] = amz_date
    out["x-amz-content-sha256"] = payload_sha256
    if session_token:
        out["x-amz-security-token"] = session_token
    canon_headers = {k.lower(): v for k, v in out.items()}
    signed = ";".join(sorted(canon_headers))
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    canonical_query = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(query))
    canonical = "\n".join([
        method.upper(), parts.path or "/", canonical_query,
        "".join(f"{k}:{canon_headers[k]}\n" for k in sorted(canon_headers)), signed, payload_sha256])
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(("AWS4" + secret_key).encode(), day), region), service), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out["Authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
                            f"Signature={signature}")
    return out


def _error(resp_text: str, status: int, what: str) -> StorageError:
    code = re.search(r"<Code>([^<]{1,80})</Code>", resp_text)
    msg = re.search(r"<Message>([^<]{1,200})</Message>", resp_text)
    detail = f"{code.group(1)}: {msg.group(1) if msg else ''}".strip(": ") if code else f"HTTP {status}"
    return StorageError(f"S3 {what} failed: {detail}")


class S3Store:
    name = "s3"

    def __init__(self, bucket: str, prefix: str = "", *, endpoint: str | None = None, region: str = "us-east-1",
                 access_key: str = "", secret_key: str = "", session_token: str = "",
                 timeout: float = 30.0, part_bytes: int = PART_BYTES) -> None:
        if not access_key or not secret_key:
            raise StorageError("S3 storage needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.region = region
        self.access_key, self.secret_key, self.session_token = access_key, secret_key, session_token
        if endpoint:
            self._base = f"{endpoint.rstrip('/')}/{_q(bucket)}"
        else:
            self._base = f"https://{bucket}.s3.{region}.amazonaws.com"
        self.part_bytes = part_bytes
        # trust_env off: credentials and object bytes go to the endpoint, never through an ambient proxy
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), trust_env=False)

    # -- plumbing
    def _url(self, key: str | None, query: str = "") -> str:
        path = "" if key is None else "/" + "/".join(_q(p) for p in self._full(key).split("/"))
        return f"{self._base}{path}" + (f"?{query}" if query else "")

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _request(self, method: str, url: str, *, content: bytes = b"", headers: Mapping[str, str] | None = None,
                 unsigned_body: bool = False) -> httpx.Request:
        digest = "UNSIGNED-PAYLOAD" if unsigned_body else (hashlib.sha256(content).hexdigest() if content
                                                            else EMPTY_SHA256)
        signed = sign_v4(method, url, dict(headers or {}), digest, access_key=self.access_key,
                         secret_key=self.secret_key, region=self.region, now=datetime.now(UTC),
                         session_token=self.session_token)
        return self.client.build_request(method, url, content=content or None, headers=signed)

    async def _call(self, what: str, method: str, url: str, *, content: bytes = b"",
                    headers: Mapping[str, str] | None = None, ok: tuple[int, ...] = (200,)) -> httpx.Response:
        try:
            resp = await self.client.send(self._request(method, url, content=content, headers=headers))
        except httpx.HTTPError as exc:
            raise StorageError(f"S3 {what} failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code not in ok:
            raise _error(resp.text, resp.status_code, what)
        if method == "POST" or "x-amz-copy-source" in (headers or {}):
            # CompleteMultipartUpload and CopyObject can answer 200 with an <Error> body
            if "<Error>" in resp.text[:2000]:
                raise _error(resp.text, resp.status_code, what)
        return resp

    # -- the interface
    async def check(self) -> None:
        resp = await self._call("reaching the bucket", "HEAD", self._url(None), ok=(200, 403, 404))
        if resp.status_code == 404:
            raise StorageError(f"S3 bucket {self.bucket!r} does not exist at {self._base}")
        if resp.status_code == 403:
            raise StorageError(f"S3 bucket {self.bucket!r}: access denied (check the credentials and policy)")

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, content_type: str,
                  max_bytes: int) -> StoredObject:
        url = self._url(key)
        buf = bytearray()
        size = 0
        upload_id: str | None = None
        parts: list[tuple[int, str]] = []
        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"object is over the {max_bytes}-byte limit")
                buf += chunk
                while len(buf) >= self.part_bytes:
                    if upload_id is None:
                        upload_id = await self._start(url, content_type)
                    part, buf = bytes(buf[:self.part_bytes]), bytearray(buf[self.part_bytes:])
                    parts.append(await self._part(url, upload_id, len(parts) + 1, part))
            if upload_id is None:
                await self._call(f"storing {key}", "PUT", url, content=bytes(buf),
                                 headers={"content-type": content_type})
            else:
                if buf or not parts:
                    parts.append(await self._part(url, upload_id, len(parts) + 1, bytes(buf)))
                body = "<CompleteMultipartUpload>" + "".join(
                    f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>" for n, etag in parts
                ) + "</CompleteMultipartUpload>"
                await self._call(f"completing {key}", "POST", f"{url}?uploadId={_q(upload_id)}",
                                 content=body.encode(), headers={"content-type": "application/xml"})
                upload_id = None
        except BaseException:
            if upload_id is not None:
                try:
                    await self._call("aborting an upload", "DELETE", f"{url}?uploadId={_q(upload_id)}", ok=(204, 200, 404))
                except StorageError:
                    pass  # the bucket's lifecycle rule for incomplete uploads cleans up what we could not
            raise
        return StoredObject(key, size, content_type)

    async def _start(self, url: str, content_type: str) -> str:
        resp = await self._call("starting a multipart upload", "POST", f"{url}?uploads=",
                                headers={"content-type": content_type})
        m = re.search(r"<UploadId>([^<]+)</UploadId>", resp.text)
        if m is None:
            raise StorageError("S3 multipart upload answered without an UploadId")
        return m.group(1)

    async def _part(self, url: str, upload_id: str, n: int, data: bytes) -> tuple[int, str]:
        resp = await self._call(f"uploading part {n}", "PUT", f"{url}?partNumber={n}&uploadId={_q(upload_id)}",
                                content=data)
        return n, resp.headers.get("etag", "")

    async def head(self, key: str) -> StoredObject | None:
        resp = await self._call(f"reading {key}", "HEAD", self._url(key), ok=(200, 404))
        if resp.status_code == 404:
            return None
        return StoredObject(key, int(resp.headers.get("content-length") or 0),
                            resp.headers.get("content-type") or "application/octet-stream")

    async def get(self, key: str, *, byte_range: str | None = None) -> ObjectBody | None:
        headers = {"range": byte_range} if byte_range else {}
        try:
            resp = await self.client.send(self._request("GET", self._url(key), headers=headers), stream=True)
        except httpx.HTTPError as exc:
            raise StorageError(f"S3 reading {key} failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code == 404:
            await resp.aclose()
            return None
        if resp.status_code == 416:
            await resp.aclose()
            raise StorageError(f"range {byte_range!r} is outside {key}")
        if resp.status_code not in (200, 206):
            text = (await resp.aread()).decode("utf-8", "replace")
            await resp.aclose()
            raise _error(text, resp.status_code, f"reading {key}")
        length = int(resp.headers.get("content-length") or 0)
        content_range = resp.headers.get("content-range") if resp.status_code == 206 else None
        size = int(content_range.rsplit("/", 1)[1]) if content_range and content_range.rsplit("/", 1)[1].isdigit() \
            else length

        async def chunks() -> AsyncIterator[bytes]:
            try:
                async for c in resp.aiter_bytes():
                    yield c
            finally:
                await resp.aclose()

        return ObjectBody(size, resp.headers.get("content-type") or "application/octet-stream", resp.status_code,
                          content_range, length, chunks(), resp.aclose)

    async def move(self, source: str, target: str) -> None:
        src = "/" + _q(self.bucket) + "/" + "/".join(_q(p) for p in self._full(source).split("/"))
        await self._call(f"copying {source} to {target}", "PUT", self._url(target),
                         headers={"x-amz-copy-source": src})
        await self.delete(source)

    async def delete(self, key: str) -> bool:
        existed = await self.head(key) is not None
        await self._call(f"deleting {key}", "DELETE", self._url(key), ok=(204, 200, 404))
        return existed

    async def aclose(self) -> None:
        await self.client.aclose()
