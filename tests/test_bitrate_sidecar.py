"""The bitrate sidecar served by ``sidecast sidecar bitrate`` in its own process, driven over real gRPC.

A small client plays the core: StreamStart with the default ladder's renditions, gray frames at the rate
the sidecar asked for, a SegmentBoundary per segment, StreamEnd. The frames come from real photographs
(scikit-image): a still for static content, the same kind of picture shaken hard with sensor noise for
high-motion content.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from sidecast.contract import pb2, pb2_grpc
from sidecast.contract.encoding import x264_options
from sidecast.core.ladder import DEFAULT_LADDER
from tests.conftest import wait_healthy

ROOT = Path(__file__).resolve().parents[1]
SIDECAST = Path(sys.executable).with_name("sidecast")
W, H, FPS, SEG = 256, 144, 10.0, 2.0
CAPS = {r.name: r.max_bitrate for r in DEFAULT_LADDER}



@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    sock = tmp_path_factory.mktemp("bitrate") / "bitrate.sock"
    target = f"unix://{sock}"
    proc = subprocess.Popen([str(SIDECAST), "sidecar", "bitrate", "--listen", target], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(target, proc, 30.0, "bitrate sidecar")
        yield target
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _photo(name: str, size: tuple[int, int]) -> np.ndarray:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 3:
        img = cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2GRAY)
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


# Content is made at 360p (what the 360p rendition encodes) and shrunk to the analysis size for the sidecar.
EW, EH = 640, 360


def static_frames(n: int) -> list[np.ndarray]:
    still = _photo("camera", (EW, EH))
    return [still] * n


def motion_frames(n: int, seed: int = 7) -> list[np.ndarray]:
    """A detailed photo under a fast, shaking camera with sensor noise: hard for any encoder."""
    rng = np.random.default_rng(seed)
    big = _photo("grass", (EW * 3, EH * 3))
    frames = []
    for _ in range(n):
        x, y = int(rng.integers(0, 2 * EW)), int(rng.integers(0, 2 * EH))
        f = big[y:y + EH, x:x + EW].astype(np.float32) + rng.normal(0, 12, (EH, EW))
        frames.append(np.clip(f, 0, 255).astype(np.uint8))
    return frames


def analysed(frame: np.ndarray) -> np.ndarray:
    return cv2.resize(frame, (W, H), interpolation=cv2.INTER_AREA)


def encoded_bits(frames: list[np.ndarray], crf: float, max_bitrate: int, size: tuple[int, int] = (0, 0)) -> int:
    """A real x264 encode of one segment with the core's settings (gray content, neutral chroma), at the
    360p rendition's size (EW x EH) or the smaller one a hint asked for (``size``)."""
    import av
    import cv2

    w, h = size if size[0] and size[1] else (EW, EH)
    buf = io.BytesIO()
    bits = 0
    with av.open(buf, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=int(FPS))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = x264_options(crf, max_bitrate, keyint=len(frames))
        chroma = np.full((h // 2, w), 128, np.uint8)
        for i, f in enumerate(frames):
            y = f if (w, h) == (EW, EH) else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
            vf = av.VideoFrame.from_ndarray(np.vstack([y, chroma]), format="yuv420p")
            vf.pts = i
            for pkt in stream.encode(vf):
                bits += pkt.size * 8
        for pkt in stream.encode(None):
            bits += pkt.size * 8
    return bits


def _start() -> pb2.CoreMessage:
    rends = [pb2.Rendition(name=r.name, width=int(round(r.height * 16 / 9 / 2)) * 2, height=r.height,
                           max_bitrate=r.max_bitrate, crf=r.crf) for r in DEFAULT_LADDER]
    return pb2.CoreMessage(start=pb2.StreamStart(stream_id="t", source_width=1920, source_height=1080,
                                                 source_fps=30.0, segment_duration=SEG, renditions=rends))


def _frame(seq: int, pts: float, segment: int, image: np.ndarray,
           fmt: int = pb2.PIXEL_FORMAT_GRAY8) -> pb2.CoreMessage:
    h, w = image.shape[:2]
    return pb2.CoreMessage(video=pb2.VideoFrame(seq=seq, pts=pts, width=w, height=h, pixel_format=fmt,
                                                pixels=image.tobytes(), segment=segment))


def _segments(contents: list[list[np.ndarray]]) -> list[pb2.CoreMessage]:
    msgs = [_start()]
    seq = 0
    for n, frames in enumerate(contents):
        for i, img in enumerate(frames):
            msgs.append(_frame(seq, n * SEG + i / FPS, n, analysed(img)))
            seq += 1
        msgs.append(pb2.CoreMessage(segment=pb2.SegmentBoundary(segment=n, start=n * SEG, end=(n + 1) * SEG)))
    return msgs


def _run(target: str, msgs: list[pb2.CoreMessage]) -> list[pb2.SidecarMessage]:
    msgs = [*msgs, pb2.CoreMessage(end=pb2.StreamEnd())]
    with grpc.insecure_channel(target) as ch:
        return list(pb2_grpc.SidecarStub(ch).Stream(iter(msgs), timeout=60))


def _hints(replies: list[pb2.SidecarMessage]) -> dict[int, pb2.Result]:
    out = {}
    for m in replies:
        if m.WhichOneof("body") == "result" and m.result.WhichOneof("kind") == "bitrate":
            assert m.result.bitrate.segment not in out, "two hints for one segment"
            out[m.result.bitrate.segment] = m.result
    return out


def test_describe_asks_for_small_gray_frames(sidecar: str) -> None:
    with grpc.insecure_channel(sidecar) as ch:
        d = pb2_grpc.SidecarStub(ch).Describe(pb2.DescribeRequest(contract_version=pb2.CONTRACT_VERSION_1),
                                               timeout=10)
    assert d.name == "bitrate"
    assert d.video.pixel_format == pb2.PIXEL_FORMAT_GRAY8
    # luma at up to 720p scale (the detail a smaller encode would lose only shows there), 10 fps: never the
    # source's full rate or colour
    assert 0 < d.video.width <= 1280 and 0 < d.video.fps <= 15
    assert not d.HasField("audio")


def test_high_motion_segment_gets_a_higher_rate_than_a_static_one(sidecar: str) -> None:
    n = int(SEG * FPS)
    calm_frames, busy_frames = static_frames(n), motion_frames(n)
    hints = _hints(_run(sidecar, _segments([calm_frames, busy_frames, calm_frames])))
    assert sorted(hints) == [0, 1, 2]
    for seg, res in hints.items():
        assert res.start == pytest.approx(seg * SEG) and res.end == pytest.approx((seg + 1) * SEG)
        assert [r.rendition for r in res.bitrate.renditions] == [r.name for r in DEFAULT_LADDER]
    assert hints[1].bitrate.complexity > hints[0].bitrate.complexity
    assert [r.crf for r in hints[1].bitrate.renditions] != [r.crf for r in hints[0].bitrate.renditions]
    # the rate each hint buys, measured: encode the 360p content with the 360p hint
    calm = {r.rendition: r for r in hints[0].bitrate.renditions}["360p"]
    busy = {r.rendition: r for r in hints[1].bitrate.renditions}["360p"]
    calm_bits = encoded_bits(calm_frames, calm.crf or 23.0, calm.max_bitrate, (calm.width, calm.height))
    busy_bits = encoded_bits(busy_frames, busy.crf or 23.0, busy.max_bitrate, (busy.width, busy.height))
    assert busy_bits > 3 * calm_bits, (busy.crf, busy_bits, calm.crf, calm_bits)
    # the same content gets the same answer: segment 2 repeats segment 0
    assert [r.crf for r in hints[2].bitrate.renditions] == [r.crf for r in hints[0].bitrate.renditions]


def test_hints_never_exceed_the_static_cap(sidecar: str) -> None:
    n = int(SEG * FPS)
    hints = _hints(_run(sidecar, _segments([motion_frames(n, seed=s) for s in range(2)] + [static_frames(n)])))
    assert len(hints) == 3
    for res in hints.values():
        for r in res.bitrate.renditions:
            assert 0 < r.max_bitrate <= CAPS[r.rendition]
            assert r.crf == 0 or 0 < r.crf <= 51  # 0: keep the static CRF


def test_bad_frames_get_an_error_and_the_stream_goes_on(sidecar: str) -> None:
    n = int(SEG * FPS)
    good = static_frames(n)
    msgs = [_start(),
            _frame(0, 0.0, 0, np.zeros((8, 8), np.uint8)),  # too small to analyse
            pb2.CoreMessage(video=pb2.VideoFrame(seq=1, pts=0.05, width=W, height=H,  # short buffer
                                                 pixel_format=pb2.PIXEL_FORMAT_GRAY8, pixels=b"\x00" * 100,
                                                 segment=0)),
            _frame(2, 0.07, 0, np.zeros((H, W, 3), np.uint8), fmt=pb2.PIXEL_FORMAT_RGB24)]  # not gray
    msgs += [_frame(3 + i, i / FPS, 0, analysed(img)) for i, img in enumerate(good)]
    msgs.append(pb2.CoreMessage(segment=pb2.SegmentBoundary(segment=0, start=0.0, end=SEG)))
    replies = _run(sidecar, msgs)
    errors = [m.error.message for m in replies if m.WhichOneof("body") == "error"]
    assert len(errors) == 3, errors
    assert any("too small" in e for e in errors)
    assert any("gray8" in e and "rgb24" in e for e in errors)
    assert all("\n" not in e and not e.startswith("Traceback") for e in errors)
    assert 0 in _hints(replies), "the good frames after the bad ones still produce a hint"


def test_a_segment_without_frames_gets_no_hint(sidecar: str) -> None:
    msgs = [_start(), pb2.CoreMessage(segment=pb2.SegmentBoundary(segment=0, start=0.0, end=SEG))]
    replies = _run(sidecar, msgs)
    assert _hints(replies) == {}
    assert not [m for m in replies if m.WhichOneof("body") == "error"]


def test_bad_option_is_one_line_error() -> None:
    proc = subprocess.run([str(SIDECAST), "sidecar", "bitrate", "--listen", "unix:///tmp/x-unused.sock",
                           "--target-vmaf", "150"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ})
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--target-vmaf" in lines[0], proc.stderr
    proc = subprocess.run([str(SIDECAST), "sidecar", "bitrate", "--listen", "unix:///tmp/x-unused.sock",
                           "--target-margin", "-1"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "--target-margin" in lines[0], proc.stderr
    proc = subprocess.run([str(SIDECAST), "sidecar", "bitrate", "--listen", "unix:///tmp/x-unused.sock",
                           "--target-max-crf", "60"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ})
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1 and "--target-max-crf" in lines[0], proc.stderr
