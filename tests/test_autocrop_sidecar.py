"""The autocrop sidecar over real gRPC, in its own process, judged on ground-truth scenes (a real photo of a
person moved along known paths) rendered at full rate through ``core.croppath.CropPath``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devkit.scenes import Scene, coverage, cut_reaction, ground_truth_scenes, steadiness
from sidecast.contract import codec, pb2, pb2_grpc
from sidecast.contract.records import Crop
from sidecast.core.croppath import CropPath

ROOT = Path(__file__).resolve().parents[1]
SIDECAST = ROOT / ".venv" / "bin" / "sidecast"


def sidecast_cmd() -> list[str]:
    """The installed console script, or the same entry point through this interpreter."""
    if SIDECAST.exists():
        return [str(SIDECAST)]
    return [sys.executable, "-c", "import sys; from sidecast.core.cli import main; sys.exit(main())"]


@dataclass
class Answer:
    crops: list[Crop] = field(default_factory=list)
    watermarks: list[tuple[float, float]] = field(default_factory=list)  # (watermark, last crop t seen before)
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def sidecar_addr() -> Iterator[str]:
    """``sidecast sidecar autocrop`` in a subprocess on a unix socket, ready when health says SERVING."""
    tmp = tempfile.mkdtemp(prefix="autocrop-")
    addr = f"unix://{tmp}/autocrop.sock"
    cmd = [*sidecast_cmd(), "sidecar", "autocrop", "--listen", addr]
    log_path = Path(tmp) / "sidecar.log"  # a file, not a pipe: nobody reads while tests run
    log = open(log_path, "w")  # noqa: SIM115 (closed in teardown)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    ready = False
    with grpc.insecure_channel(addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                r = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1)
                ready = r.status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                ready = False
            if ready:
                break
            time.sleep(0.1)
    if not ready:
        proc.kill()
        proc.wait()
        log.close()
        pytest.fail(f"autocrop sidecar did not come up: {log_path.read_text()[-2000:]}")
    yield addr
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def describe(addr: str) -> Any:
    with grpc.insecure_channel(addr) as ch:
        return pb2_grpc.SidecarStub(ch).Describe(pb2.DescribeRequest(contract_version=pb2.CONTRACT_VERSION_1),
                                                 timeout=10)


def stream_scene(addr: str, scene: Scene, params: dict[str, str] | None = None,
                 discontinuity_at: float | None = None) -> Answer:
    """Play the core's part: StreamStart, then the scene's frames at the sidecar's rate and size, then End."""
    desc = describe(addr)
    fps, width = desc.video.fps, desc.video.width
    height = round(scene.height * width / scene.width)
    times = [i / fps for i in range(int(scene.duration * fps + 1e-9)) if i / fps < scene.duration]

    def requests() -> Iterator[Any]:
        yield pb2.CoreMessage(start=pb2.StreamStart(
            stream_id=scene.name, source_width=scene.width, source_height=scene.height, source_fps=scene.fps,
            segment_duration=2.0, params=params or {}))
        for seq, t in enumerate(times):
            if discontinuity_at is not None and abs(t - discontinuity_at) < 1e-9:
                yield pb2.CoreMessage(discontinuity=pb2.Discontinuity(pts=t))
            small = cv2.resize(scene.render(t), (width, height), interpolation=cv2.INTER_AREA)
            yield pb2.CoreMessage(video=pb2.VideoFrame(
                seq=seq, pts=t, width=width, height=height, pixel_format=pb2.PIXEL_FORMAT_BGR24,
                pixels=small.tobytes(), segment=int(t // 2)))
        yield pb2.CoreMessage(end=pb2.StreamEnd())

    answer = Answer()
    with grpc.insecure_channel(addr) as ch:
        for msg in pb2_grpc.SidecarStub(ch).Stream(requests(), timeout=120):
            body = msg.WhichOneof("body")
            if body == "result":
                r = codec.result_from_pb(msg.result)
                assert isinstance(r, Crop)
                answer.crops.append(r)
            elif body == "watermark":
                answer.watermarks.append((msg.watermark.pts, answer.crops[-1].t if answer.crops else -1.0))
            elif body == "error":
                answer.errors.append(msg.error.message)
    assert len(answer.crops) == len(times), "one crop per analysed frame"
    return answer


def windows(scene: Scene, crops: list[Crop]) -> tuple[list[tuple[int, int, int, int]], list]:
    path = CropPath(scene.width, scene.height, (9, 16))
    for c in crops:
        path.add(c)
    return [path.window_at(t) for t in scene.frame_times()], [(c.t, path.window_at(c.t)) for c in crops]


def test_autocrop_asks_for_small_sparse_bgr_frames(sidecar_addr: str) -> None:
    d = describe(sidecar_addr)
    assert d.name == "autocrop"
    assert 5 <= d.video.fps <= 10
    assert 320 <= d.video.width <= 480
    assert d.video.pixel_format == pb2.PIXEL_FORMAT_BGR24
    assert not d.HasField("audio")
    # and every source frame as the shot model's 48x27 RGB input, an extra feed (these tests play an older
    # core that does not send it: the model then reads the analysed frames)
    assert [(v.feed, v.fps, v.width, v.height, v.pixel_format) for v in d.extra_video] == [
        ("shots", 0.0, 48, 27, pb2.PIXEL_FORMAT_RGB24)]


SCENES = {s.name: s for s in ground_truth_scenes()}


@pytest.mark.parametrize("name", list(SCENES))
def test_subject_stays_inside_a_steady_crop_on_ground_truth_scenes(sidecar_addr: str, name: str) -> None:
    scene = SCENES[name]
    answer = stream_scene(sidecar_addr, scene)
    assert not answer.errors
    full, analysed = windows(scene, answer.crops)
    assert coverage(scene, full) >= 0.98
    assert steadiness(scene, full) <= 0.5
    if scene.cuts:
        assert cut_reaction(scene, analysed) <= 2
        cut_times = [c.t for c in answer.crops if c.cut]
        for cut in scene.cuts:  # each real cut is reported on the first analysed frame of the new shot
            assert any(abs(t - cut) < 1e-6 for t in cut_times), (cut, cut_times)
    # crops are in source pixels, 9:16, inside the frame
    for c in answer.crops:
        assert (c.width, c.height) == (202, 360)
        assert 0 <= c.x <= scene.width - c.width and c.y == 0
        assert c.mode in ("stationary", "panning", "tracking", "centered")


def test_pan_scene_is_reported_as_stationary_then_moving_then_stationary(sidecar_addr: str) -> None:
    answer = stream_scene(sidecar_addr, SCENES["pan"])
    modes = [c.mode for c in answer.crops]
    assert modes[0] == "stationary" and modes[-1] == "stationary"
    middle = [m for c, m in zip(answer.crops, modes, strict=True) if 1.6 <= c.t <= 3.0]
    assert middle and all(m in ("panning", "tracking") for m in middle)


def test_watermark_never_runs_ahead_of_the_published_crops(sidecar_addr: str) -> None:
    answer = stream_scene(sidecar_addr, SCENES["hold"])
    live = [(wm, seen) for wm, seen in answer.watermarks if wm < 1e5]  # the last one closes the stream
    assert live, "the sidecar reports progress while the stream runs"
    for wm, seen in live:
        assert wm <= seen + 1e-9
    assert answer.watermarks[-1][0] > 1e5


def test_a_source_discontinuity_starts_a_new_shot(sidecar_addr: str) -> None:
    answer = stream_scene(sidecar_addr, SCENES["hold"], discontinuity_at=1.6)
    assert [round(c.t, 3) for c in answer.crops if c.cut] == [0.0, 1.6]
    assert not answer.errors


def test_stream_params_choose_the_aspect(sidecar_addr: str) -> None:
    answer = stream_scene(sidecar_addr, SCENES["two_apart"], {"vertical.aspect": "1:1"})
    assert {(c.width, c.height) for c in answer.crops} == {(360, 360)}
    path = CropPath(640, 360, (1, 1))
    for c in answer.crops:
        path.add(c)
    # the key (bigger) astronaut at x 40..170 stays in the square crop
    assert all(w[0] <= 40 and w[0] + w[2] >= 170 for w in (path.window_at(t) for t in SCENES["two_apart"].frame_times()))


def test_bad_stream_param_is_reported_and_cropping_goes_on_with_defaults(sidecar_addr: str) -> None:
    answer = stream_scene(sidecar_addr, SCENES["hold"], {"vertical.aspect": "wide"})
    assert any("vertical.aspect" in e or "aspect must look like" in e for e in answer.errors), answer.errors
    assert {(c.width, c.height) for c in answer.crops} == {(202, 360)}


def test_bad_cli_option_is_one_clear_line_and_a_nonzero_exit() -> None:
    cmd = [*sidecast_cmd(), "sidecar", "autocrop", "--listen", "unix:///tmp/never.sock", "--aspect", "banana"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "aspect must look like 9:16" in r.stderr
    assert "Traceback" not in r.stderr
