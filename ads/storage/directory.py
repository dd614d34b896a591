"""Object storage in a local folder: the default, for one replica (or a folder every replica mounts).

A put writes to a temporary file in the folder and renames it into place, so a reader sees a whole object or
none, and a failed or refused upload leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from sidecast.ads.storage import ObjectBody, StorageError, StoredObject, TooLarge, check_key, parse_range

_READ = 256 * 1024


class DirectoryStore:
    name = "directory"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        """Where `key` lives (the media route serves folders with sendfile)."""
        return self.root / check_key(key)

    async def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root, prefix=".probe-"):
                pass
        except OSError as exc:
            raise StorageError(f"cannot write to the media folder {self.root}: {exc}") from exc

    async def put(self, key: str, chunks: AsyncIterable[bytes], *, content_type: str,
                  max_bytes: int) -> StoredObject:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        size = 0
        try:
            with os.fdopen(fd, "wb") as out:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise TooLarge(f"object is over the {max_bytes}-byte limit")
                    out.write(chunk)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return StoredObject(key, size, content_type)

    async def head(self, key: str) -> StoredObject | None:
        p = self.path(key)
        try:
            return StoredObject(key, p.stat().st_size)
        except FileNotFoundError:
            return None

    async def get(self, key: str, *, byte_range: str | None = None) -> ObjectBody | None:
        p = self.path(key)
        try:
            f = open(p, "rb")  # noqa: SIM115 (closed by the body's iterator)
        except (FileNotFoundError, IsADirectoryError):
            return None
        size = os.fstat(f.fileno()).st_size
        try:
            rng = parse_range(byte_range, size)
        except StorageError:
            f.close()
            raise
        first, last = rng if rng is not None else (0, size - 1)
        f.seek(first)

        async def chunks() -> AsyncIterator[bytes]:
            left = last - first + 1
            try:
                while left > 0:
                    data = await asyncio.to_thread(f.read, min(_READ, left))
                    if not data:
                        break
                    left -= len(data)
                    yield data
            finally:
                f.close()

        async def close() -> None:
            f.close()

        return ObjectBody(size, "application/octet-stream", 206 if rng else 200,
                          f"bytes {first}-{last}/{size}" if rng else None, max(0, last - first + 1), chunks(), close)

    async def move(self, source: str, target: str) -> None:
        dst = self.path(target)
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(self.path(source), dst)
        except FileNotFoundError as exc:
            raise StorageError(f"no object {source!r} to move") from exc

    async def delete(self, key: str) -> bool:
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    async def aclose(self) -> None:
        return None
