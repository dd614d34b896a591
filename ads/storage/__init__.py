"""Object storage: immutable blobs under string keys, written from a stream and read back as one, in a
local folder or in S3-compatible storage that every replica shares.

The ads API keeps uploaded creatives here (``ads/api/routes/media.py``); nothing in this package knows
about ads. The interface is what any server that writes media once and serves it many times needs (HLS
segments and playlists too), so it is deliberately small:

    store = open_object_store("s3://bucket/prefix", endpoint="http://minio:9000", ...)   # or a folder
    info = await store.put("cr-1/media.mp4", chunks, content_type="video/mp4", max_bytes=200 << 20)
    body = await store.get("cr-1/media.mp4", byte_range="bytes=0-1023")   # None when missing
    async for chunk in body.chunks: ...
    await store.move("incoming/x", "cr-1/media.mp4"); await store.delete("cr-1/media.mp4")

- ``put`` consumes an async iterator of bytes and never holds more than one part (8 MiB for S3, 1 MiB for a
  folder) in memory; it stops with ``TooLarge`` as soon as `max_bytes` is passed, and on any failure
  nothing is left under the key (S3: the multipart upload is aborted; folder: the temporary file goes).
- ``get`` answers a single ``Range`` (what players ask for), with ``status`` 206 and ``content_range``.
- Keys are ``/``-separated words of ``[A-Za-z0-9._-]``; anything else is refused (``StorageError``), so a
  key can never escape the folder or the prefix.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

__all__ = ["ObjectStore", "StoredObject", "ObjectBody", "StorageError", "TooLarge", "check_key", "parse_range",
           "open_object_store"]

_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127}){0,7}$")


class StorageError(RuntimeError):
    """The storage refused or failed an operation; the message says which and why."""


class TooLarge(StorageError):
    """A put passed its `max_bytes`; nothing was stored."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str = "application/octet-stream"


async def _no_chunks() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover  (makes this an async generator)


@dataclass
class ObjectBody:
    """An object being read: ``chunks`` yields its bytes (or the requested range's); call ``close`` if the
    chunks are not read to the end."""

    size: int                      # of the whole object
    content_type: str
    status: int = 200              # 206 for a range
    content_range: str | None = None
    length: int = 0                # bytes that `chunks` yields
    chunks: AsyncIterator[bytes] = field(default_factory=_no_chunks)
    close: Callable[[], Awaitable[None]] | None = None


class ObjectStore(Protocol):
    name: str

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, content_type: str,
                  max_bytes: int) -> StoredObject: ...
    async def get(self, key: str, *, byte_range: str | None = None) -> ObjectBody | None: ...
    async def head(self, key: str) -> StoredObject | None: ...
    async def move(self, source: str, target: str) -> None: ...
    async def delete(self, key: str) -> bool: ...
    async def check(self) -> None:
        """Raise StorageError unless the storage can be written (called once at start)."""
        ...

    async def aclose(self) -> None: ...


def check_key(key: str) -> str:
    if not _KEY.match(key) or ".." in key.split("/"):
        raise StorageError(f"invalid object key {key[:80]!r}")
    return key


_RANGE = re.compile(r"^bytes=(\d{0,19})-(\d{0,19})$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``Range: bytes=a-b`` / ``a-`` / ``-n`` within `size`; None for no
    range (or one we do not serve: several ranges, garbage); StorageError(416) when it misses the object."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if m.group(1):
        first = int(m.group(1))
        last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    else:
        n = int(m.group(2))
        first, last = max(0, size - n), size - 1
    if first > last or first >= size:
        raise StorageError(f"range {header!r} is outside the object ({size} bytes)")
    return first, last


def open_object_store(url: str | None, directory: str | Path, *, endpoint: str | None = None,
                      region: str = "us-east-1", access_key: str = "", secret_key: str = "",
                      session_token: str = "", allow_http: bool = True) -> ObjectStore:
    """``s3://bucket[/prefix]`` → S3Store (endpoint None = AWS), else a DirectoryStore at `directory`."""
    if url:
        from sidecast.ads.storage.s3 import S3Store

        if not url.startswith("s3://"):
            raise StorageError(f"object store URL {url!r} must start with s3://")
        bucket, _, prefix = url[5:].partition("/")
        return S3Store(bucket, prefix.strip("/"), endpoint=endpoint, region=region, access_key=access_key,
                       secret_key=secret_key, session_token=session_token)
    from sidecast.ads.storage.directory import DirectoryStore

    return DirectoryStore(Path(directory))
