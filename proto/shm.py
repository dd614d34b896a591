"""Shared-memory frame rings: the zero-copy path for frames between a core and sidecars on one host/pod.

A ring is one file in /dev/shm holding ``slots`` fixed-size slots. Each slot starts with an 8-byte
little-endian generation counter followed by the frame bytes. The core writes a frame into a free slot,
then bumps the slot's generation, and sends only ``(slot, generation, size)`` over gRPC. A sidecar maps the
ring read-only, checks the generation before and after it reads (a mismatch means the slot was recycled
and the frame is skipped, never misread), and releases the slot when its handler returns.

Slots are reference counted on the core side: one converted frame is written once and shared by every
sidecar that asked for that conversion; the slot is free again when all of them released it, or when a
sidecar's link is torn down (a dead sidecar never pins slots).

Ring files are named ``sidecast-<core pid>-<n>``. The core unlinks its rings on exit; ``sweep_stale``
removes rings left by a core that crashed (its pid no longer exists), so a kill -9 leaks nothing past the
next start.
"""

from __future__ import annotations

import itertools
import mmap
import os
import struct
import threading
from pathlib import Path

SHM_DIR = Path(os.environ.get("SIDECAST_SHM_DIR", "/dev/shm"))
PREFIX = "sidecast-"
HEADER = 8
_counter = itertools.count()


def shm_available() -> bool:
    return SHM_DIR.is_dir() and os.access(SHM_DIR, os.W_OK)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale(directory: Path | None = None) -> list[str]:
    """Unlink rings whose owning core process is gone; returns the names removed."""
    directory = directory or SHM_DIR
    removed: list[str] = []
    if not directory.is_dir():
        return removed
    for path in directory.glob(PREFIX + "*"):
        parts = path.name.split("-")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        if not _pid_alive(int(parts[1])):
            try:
                path.unlink()
                removed.append(path.name)
            except FileNotFoundError:
                pass
    return removed


class ShmRing:
    """Core side: owns the ring file, hands out slots, tracks references."""

    def __init__(self, slot_size: int, slots: int, directory: Path | None = None) -> None:
        if slot_size <= 0 or slots <= 0:
            raise ValueError("slot_size and slots must be positive")
        self.directory = directory or SHM_DIR
        self.name = f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.slot_size = slot_size
        self.slots = slots
        self.stride = HEADER + slot_size
        self.path = self.directory / self.name
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, self.stride * slots)
            self._mm = mmap.mmap(fd, self.stride * slots, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self._refs = [0] * slots
        self._gen = [0] * slots
        self._free = list(range(slots - 1, -1, -1))
        self._lock = threading.Lock()
        self.closed = False

    def write(self, data: bytes | memoryview | list[memoryview], refs: int) -> tuple[int, int] | None:
        """Copy one frame (one buffer, or its planes in order) into a free slot held by ``refs`` readers;
        None when the ring is full. Planes are copied straight from the decoder's buffers: one copy."""
        parts = data if isinstance(data, list) else [data]
        n = sum(len(p) for p in parts)
        if n > self.slot_size:
            raise ValueError(f"frame of {n} bytes does not fit a {self.slot_size}-byte slot")
        with self._lock:
            if self.closed or not self._free or refs <= 0:
                return None
            slot = self._free.pop()
            self._refs[slot] = refs
            self._gen[slot] += 1
            gen = self._gen[slot]
        off = slot * self.stride + HEADER
        for part in parts:
            self._mm[off : off + len(part)] = part
            off += len(part)
        struct.pack_into("<Q", self._mm, slot * self.stride, gen)
        return slot, gen

    def release(self, slot: int, count: int = 1) -> None:
        with self._lock:
            if not (0 <= slot < self.slots) or self._refs[slot] <= 0:
                return  # a double or bogus release from a peer must not corrupt accounting
            self._refs[slot] = max(0, self._refs[slot] - count)
            if self._refs[slot] == 0:
                self._free.append(slot)

    @property
    def in_use(self) -> int:
        with self._lock:
            return self.slots - len(self._free)

    def close(self) -> None:
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            self._mm.close()
        except BufferError:
            pass  # a view is still alive in this process; the unlink below still frees it at exit
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> ShmRing:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StaleFrame(Exception):
    """The slot was recycled before the reader got to it."""


class ShmReader:
    """Sidecar side: maps a ring read-only and returns views of slots."""

    def __init__(self, name: str, slot_size: int, slots: int, directory: Path | None = None) -> None:
        if "/" in name or not name.startswith(PREFIX):
            raise ValueError(f"not a sidecast ring name: {name!r}")
        self.name = name
        self.slot_size = slot_size
        self.slots = slots
        self.stride = HEADER + slot_size
        path = (directory or SHM_DIR) / name
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if size < self.stride * slots:
                raise ValueError(f"ring {name} is {size} bytes, expected {self.stride * slots}")
            self._mm = mmap.mmap(fd, self.stride * slots, prot=mmap.PROT_READ)
        finally:
            os.close(fd)

    def view(self, slot: int, generation: int, size: int) -> memoryview:
        if not (0 <= slot < self.slots) or size > self.slot_size:
            raise StaleFrame(f"slot reference out of range: slot={slot} size={size}")
        off = slot * self.stride
        (gen,) = struct.unpack_from("<Q", self._mm, off)
        if gen != generation:
            raise StaleFrame(f"slot {slot} holds generation {gen}, wanted {generation}")
        return memoryview(self._mm)[off + HEADER : off + HEADER + size]

    def still_valid(self, slot: int, generation: int) -> bool:
        (gen,) = struct.unpack_from("<Q", self._mm, slot * self.stride)
        return bool(gen == generation)

    def close(self) -> None:
        try:
            self._mm.close()
        except BufferError:
            pass
