"""Shared fixtures: sample media made with the ffmpeg CLI (no downloads), and a runner for the real
``sidecast`` console script."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import pytest

from devkit.ports import free_port as free_port  # re-exported: the tests import it from here

# Bytecode caches on for the test run and every process it starts, whatever the shell says. With
# PYTHONDONTWRITEBYTECODE=1 (set on the development machine) nothing was ever cached: each xdist worker
# rewrote the asserts of every test module again (collection 13.1 CPU-s instead of 4.7), and each of the
# suite's hundreds of `sidecast` processes compiled the project's modules again (a server worker's imports
# 1.0-1.2 CPU-s instead of 0.8-0.9). The caches go to the git-ignored __pycache__ folders.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
VENV_BIN = Path(sys.executable).parent
SIDECAST = str(VENV_BIN / "sidecast")


def load_script(name: str, path: Path) -> ModuleType:
    """A script of the repository that is not in a package (bench/, models/) loaded as module ``name``: put in
    ``sys.modules`` first, because its dataclasses look their module up there."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def ffmpeg(*args: str, timeout: float = 120) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args]
    subprocess.run(cmd, check=True, timeout=timeout)


def make_clip(path: Path, seconds: float = 6.0, size: str = "1280x720", rate: int = 30, audio: bool = True,
              extra: tuple[str, ...] = ()) -> Path:
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=44100:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(rate), "-pix_fmt", "yuv420p"]
    if audio:
        args += ["-c:a", "aac", "-b:a", "96k"]
    args += [*extra, str(path)]
    ffmpeg(*args)
    return path


# Headers that frame the HTTP message itself. A generated value there (schemathesis once sent
# `transfer-encoding: v[N`) makes a request that is not HTTP/1.1 at all: uvicorn's parser refuses it with its
# own text/plain 400 before any route runs, so no API document can describe that answer. The contract tests
# leave framing to the HTTP client and check that refusal on its own.
FRAMING_HEADERS = frozenset({"transfer-encoding", "content-length", "connection", "host", "te", "trailer",
                             "upgrade", "expect"})


def parses_as_http(case: object) -> bool:
    """A generated contract-test case whose headers leave the message's framing to the HTTP client."""
    return not any(name.lower() in FRAMING_HEADERS for name in (getattr(case, "headers", None) or {}))




@pytest.fixture(scope="session", autouse=True)
def one_browser_per_worker() -> Iterator[None]:
    """The browser tests of a worker play in one shared Chromium, a fresh context each
    (``tests/browser/harness.py``: started at the first play, so a worker without browser tests starts none)."""
    from tests.browser.harness import sharing_one_browser

    with sharing_one_browser():
        yield


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def clip_720(media_dir: Path) -> Path:
    """6 s of 1280x720 30 fps test pattern with a 440 Hz tone (H.264 + AAC in MP4)."""
    return make_clip(media_dir / "clip720.mp4", 6.0, "1280x720")


@pytest.fixture(scope="session")
def clip240(media_dir: Path) -> Path:
    """12 s of 426x240 25 fps test pattern with a tone, H.264 + AAC (cheap to transcode on 2 cores): the
    server, fleet and disk tests' camera."""
    path = media_dir / "clip240.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=426x240:rate=25:duration=12", "-f", "lavfi", "-i",
           "sine=frequency=440:sample_rate=44100:duration=12", "-c:v", "libx264", "-preset", "ultrafast", "-g", "25",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", str(path))
    return path


@pytest.fixture(scope="session")
def clip_small(media_dir: Path) -> Path:
    """8 s of 640x360 30 fps with audio, as FLV-friendly H.264 + AAC."""
    return make_clip(media_dir / "clip360.mp4", 8.0, "640x360")


def run_sidecast(*args: str, timeout: float = 180, check: bool = False,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([SIDECAST, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"sidecast {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def wait_healthy(target: str, proc: subprocess.Popen[str], timeout: float, what: str) -> None:
    """Poll the gRPC health service of the sidecar ``proc`` listening on ``target`` until it is SERVING;
    fail with its output if it exits first, or at ``timeout``."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            out = proc.stdout or proc.stderr
            raise AssertionError(f"{what} exited early: {out.read() if out else ''}")
        try:
            with grpc.insecure_channel(target) as ch:
                r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                if r.status == health_pb2.HealthCheckResponse.SERVING:
                    return
        except grpc.RpcError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not become healthy within {timeout:g} s")
        time.sleep(0.1)


def wait_for(cond: Callable[[], object], timeout: float, what: str, poll: float = 0.1) -> None:
    """Poll ``cond`` until it is truthy; fail with ``what`` at the deadline (never sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


def have(binary: str) -> bool:
    return shutil.which(binary) is not None


@contextlib.contextmanager
def side_by_side(jobs: dict[str, Callable[[], T]]) -> Iterator[dict[str, Future[T]]]:
    """Start every job at once, one thread each; yield their futures by name, and wait for all of them on the
    way out. For a module fixture whose sessions wait on real time (a player playing, a publisher paced at
    its media's rate), not on the CPU: one after another a file pays the sum of their durations, side by side
    about the longest. Each test asks ``futures[name].result()``, so a job's error or failed assertion is
    raised in its own test."""
    with ThreadPoolExecutor(max_workers=max(1, len(jobs)), thread_name_prefix="side-by-side") as pool:
        yield {name: pool.submit(job) for name, job in jobs.items()}


# ----------------------------------------------------------------------------- scheduling
# `./dev.sh test` runs two xdist workers that take whole files (--dist loadfile) in collection order
# (--no-loadscope-reorder). Files go out longest first, so the short ones fill the end and neither worker
# sits idle while the other finishes a long file (xdist's default order, most tests first, put the few
# long browser and stream files last). tests/file_costs.txt holds each file's measured seconds; a file
# missing from it counts as long (it starts early). Only the order of whole files changes, never a test.
FILE_COSTS = Path(__file__).with_name("file_costs.txt")
UNLISTED_COST = 60.0


def file_costs() -> dict[str, float]:
    costs: dict[str, float] = {}
    for line in FILE_COSTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            seconds, name = line.split()
            costs[name] = float(seconds)
    return costs


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    costs = file_costs()
    first_seen: dict[str, int] = {}
    for i, item in enumerate(items):
        first_seen.setdefault(item.nodeid.split("::")[0], i)
    # a stable sort: the tests of one file keep their order
    items.sort(key=lambda item: (-costs.get(item.nodeid.split("::")[0], UNLISTED_COST), first_seen[item.nodeid.split("::")[0]]))
