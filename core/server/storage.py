"""Where published media lives: a local directory (the default) or S3-compatible object storage.

Keys are relative POSIX paths (``cam1/e/<event>/r1/video/720p/seg_000003.ts``, ``cam1/video/720p/index.m3u8``):
the same names on disk, in a bucket, on the player port and behind a CDN. Segments are written once under a
fresh name and never change (cached for good); playlists are replaced whole (revalidated on every use), so
objects carry the same Cache-Control the player port would send (``sidecast.core.serve.files``), and a CDN in
front of the bucket behaves like one in front of the server.

Writes go segment first, playlist after: a playlist never names a segment that is not there yet.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sidecast.hls.live import atomic_write

from ..serve.files import cache_control_for, content_type_for


class StorageError(OSError):
    """Storage refused a write (full disk, unreachable bucket); ``full`` when it is out of space."""

    def __init__(self, message: str, *, full: bool = False) -> None:
        super().__init__(errno.ENOSPC if full else errno.EIO, message)
        self.full = full


def check_key(key: str) -> str:
    """A key must stay inside the storage: relative, no ``.``/``..`` parts, no backslashes or NULs."""
    if not key or key.startswith("/") or "\\" in key or "\x00" in key:
        raise ValueError(f"bad storage key {key!r}")
    if any(part in ("", ".", "..") for part in key.rstrip("/").split("/")):
        raise ValueError(f"bad storage key {key!r}")
    return key


def _wrap(exc: OSError, what: str) -> StorageError:
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return StorageError(f"cannot {what}: {'storage is full' if full else exc.strerror or exc}", full=full)


class Storage(ABC):
    """The operations the publisher, the retention sweeper and the player port need."""

    kind: str = "storage"
    local_root: Path | None = None
    """Set when objects are plain files under this folder (the player port then serves them from disk)."""

    @abstractmethod
    def put_file(self, src: Path, key: str) -> int:
        """Move the finished file ``src`` to ``key`` (``src`` is gone afterwards); returns its size."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None:
        """Write (or replace, atomically for readers) ``key``."""

    @abstractmethod
    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when it does not exist."""

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> None:
        """Delete these keys (missing ones are not an error)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (ending with ``/``); returns how many."""

    def free_bytes(self) -> int | None:
        """Space left for writes (None: the storage does not say, as with object storage)."""
        return None

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError when the storage cannot be written (readiness)."""

    def describe(self) -> str:
        return self.kind


class LocalStorage(Storage):
    """A directory: segments are moved in by rename (the pipeline writes beside it, on the same disk)."""

    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.local_root = self.root

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, src: Path, key: str) -> int:
        dst = self._path(key)
        try:
            size = src.stat().st_size
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(src, dst)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                tmp = dst.with_name(f".{dst.name}.part")  # another disk: copy under a hidden name, then rename
                shutil.copyfile(src, tmp)
                os.replace(tmp, dst)
                src.unlink()
        except OSError as exc:
            raise _wrap(exc, f"store {key}") from exc
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            atomic_write(self._path(key), data)
        except OSError as exc:
            raise _wrap(exc, f"write {key}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self._path(key).unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise _wrap(exc, f"delete {key}") from exc

    def delete_prefix(self, prefix: str) -> int:
        path = self._path(prefix)
        if not path.is_dir():
            return 0
        n = sum(1 for p in path.rglob("*") if p.is_file())
        shutil.rmtree(path, ignore_errors=True)
        return n

    def free_bytes(self) -> int | None:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def check(self) -> None:
        probe = self.root / ".probe"
        try:
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise _wrap(exc, f"write in {self.root}") from exc

    def describe(self) -> str:
        return f"local directory {self.root}"


class S3Storage(Storage):
    """An S3-compatible bucket (AWS S3, MinIO, Ceph RGW, R2...), through boto3.

    Each object gets the Content-Type and Cache-Control a player needs, so a CDN can front the bucket
    directly. Credentials come from boto3's usual chain (environment, config files, instance roles).
    """

    kind = "s3"

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None, create_bucket: bool = False) -> None:
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:  # an optional extra
            from sidecast.contract.errors import MissingExtra

            raise MissingExtra("server-s3", "S3 storage") from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        self.client: Any = boto3.client(
            "s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30,
                          max_pool_connections=32))
        if create_bucket:
            try:
                self.client.head_bucket(Bucket=bucket)
            except self.client.exceptions.ClientError:
                self.client.create_bucket(Bucket=bucket)
        from botocore.exceptions import BotoCoreError, ClientError

        self._errors: tuple[type[Exception], ...] = (BotoCoreError, ClientError)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def _fail(self, exc: Exception, what: str) -> StorageError:
        return StorageError(f"cannot {what} in s3://{self.bucket}: {exc}")

    def _headers(self, key: str) -> dict[str, str]:
        return {"ContentType": content_type_for(key), "CacheControl": cache_control_for(posixpath.basename(key))}

    def put_file(self, src: Path, key: str) -> int:
        size = src.stat().st_size
        try:
            with open(src, "rb") as f:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=f, **self._headers(key))
        except self._errors as exc:
            raise self._fail(exc, f"store {key}") from exc
        src.unlink(missing_ok=True)
        return size

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._headers(key))
        except self._errors as exc:
            raise self._fail(exc, f"write {key}") from exc

    def get(self, key: str) -> bytes | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        except self._errors as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise self._fail(exc, f"read {key}") from exc
        data: bytes = obj["Body"].read()
        return data

    def get_object(self, key: str) -> dict[str, Any] | None:
        """The object with its headers (for the player port's proxy), or None."""
        try:
            obj: dict[str, Any] = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            return obj
        except self._errors as exc:
            if getattr(exc, "response", {}).get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise self._fail(exc, f"read {key}") from exc

    def delete(self, keys: Iterable[str]) -> None:
        batch = [{"Key": self._key(k)} for k in keys]
        try:
            for i in range(0, len(batch), 1000):
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch[i:i + 1000], "Quiet": True})
        except self._errors as exc:
            raise self._fail(exc, "delete objects") from exc

    def delete_prefix(self, prefix: str) -> int:
        full = self._key(prefix)
        n = 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
                if objs:
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objs, "Quiet": True})
                    n += len(objs)
        except self._errors as exc:
            raise self._fail(exc, f"delete {prefix}") from exc
        return n

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except self._errors as exc:
            raise self._fail(exc, "reach the bucket") from exc

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


def open_storage(url: str, data_dir: Path) -> Storage:
    """``local`` / a path (local directory; default ``DATA_DIR/media``) or ``s3://bucket/prefix`` (endpoint from
    ``SIDECAST_S3_ENDPOINT`` or ``AWS_ENDPOINT_URL``; ``?endpoint=http://host:port`` also works)."""
    from urllib.parse import parse_qs, urlparse

    if not url or url == "local":
        return LocalStorage(data_dir / "media")
    u = urlparse(url)
    if u.scheme == "s3":
        q = parse_qs(u.query)
        endpoint = (q.get("endpoint") or [""])[0] or os.environ.get("SIDECAST_S3_ENDPOINT") \
            or os.environ.get("AWS_ENDPOINT_URL")
        region = (q.get("region") or [""])[0] or None
        if not u.netloc:
            raise ValueError(f"bad storage {url!r}: expected s3://BUCKET[/PREFIX]")
        return S3Storage(u.netloc, prefix=u.path, endpoint_url=endpoint, region=region,
                         create_bucket=(q.get("create") or ["0"])[0] in ("1", "true"))
    if u.scheme in ("", "file"):
        return LocalStorage(Path(u.path if u.scheme == "file" else url))
    raise ValueError(f"bad storage {url!r}: use a directory or s3://BUCKET[/PREFIX]")


__all__ = ["LocalStorage", "S3Storage", "Storage", "StorageError", "check_key", "open_storage"]
