"""A full disk, for real: the server's data folder on a small tmpfs mounted for this test. When it fills, writes
stop (the stream pauses, its worker is stopped), the server stays up and says why (readiness, status,
metrics), and when space returns the stream goes live again on its own."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import wait_for
from tests.server_helpers import live_hls, running_server
from tests.test_server_streams import LADDER


@contextlib.contextmanager
def small_disk(path: Path, size_mb: int) -> Iterator[Path]:
    """A tmpfs of ``size_mb`` at ``path`` (needs root or CAP_SYS_ADMIN, as in the dev container)."""
    path.mkdir(parents=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0, f"this test mounts a tmpfs and needs root or CAP_SYS_ADMIN: {r.stderr.strip()}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def free_mb(path: Path) -> float:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize / (1 << 20)


def test_a_full_disk_pauses_streams_keeps_the_server_up_and_recovers(tmp_path: Path, clip240: Path) -> None:
    with small_disk(tmp_path / "disk", 96) as disk, live_hls(tmp_path, clip240) as source, \
            running_server(disk / "data", min_free_mb=16) as srv:
        r = srv.api.post("/v1/streams", json={"id": "cam", "ingest": "pull", "source": source,
                                              "options": {"ladder": LADDER, "reconnect_timeout": 120}})
        assert r.status_code == 201, r.text
        live = srv.wait_state("cam", "live", 90)
        # something else fills the disk to the last megabyte
        filler = disk / "filler.bin"
        with open(filler, "wb") as f:
            f.truncate(0)
            chunk = b"\0" * (1 << 20)
            while free_mb(disk) > 1:
                try:
                    f.write(chunk)
                    f.flush()
                except OSError:
                    break
        srv.wait_state("cam", "paused", 30)
        wait_for(lambda: srv.status("cam")["pid"] is None, 20, "the worker to stop writing")
        assert srv.status("cam")["state"] == "paused"
        ready = httpx.get(str(srv.api.base_url) + "readyz")
        assert ready.status_code == 503 and any("storage is full" in p for p in ready.json()["problems"])
        assert httpx.get(str(srv.api.base_url) + "healthz").status_code == 200
        assert srv.api.get("/v1/streams").status_code == 200
        assert 'sidecast_storage_full 1.0' in httpx.get(str(srv.api.base_url) + "metrics").text
        assert srv.media("cam/master.m3u8").status_code == 200, "what was published is still served"
        # space returns: the stream resumes by itself, in the same event, after a discontinuity
        filler.unlink()
        back = srv.wait_state("cam", "live", 90)
        assert back["event"] == live["event"] and back["attempt"] == live["attempt"] + 1
        assert httpx.get(str(srv.api.base_url) + "readyz").status_code == 200
        shutil.rmtree(disk / "data" / "work", ignore_errors=True)


def test_the_tmpfs_helper_really_limits_space(tmp_path: Path) -> None:
    with small_disk(tmp_path / "d", 4) as d, pytest.raises(OSError), open(d / "big", "wb") as f:
        f.write(b"\0" * (8 << 20))
