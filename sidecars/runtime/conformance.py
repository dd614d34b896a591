"""A conformance kit for sidecar authors: play the core's part over real gRPC and check that a sidecar
survives what real streams send.

    sidecast sidecars --check NAME      # starts the installed sidecar NAME and checks it
    sidecast sidecars --check unix:///tmp/my.sock   (or host:port: a sidecar already running)

Cases, each one Stream from StreamStart to StreamEnd, frames sized exactly as a core would size them for
the sidecar's own requests (``codec.scaled_size``; its extra video feeds too, each frame before the main one):
- video: an odd-sized source (1366x767), a tiny one (48x32), a huge one (7680x4320), and a source that
  changes size mid-stream (1920x1080 → 1280x720: a second StreamStart, then frames of the new size);
- audio: chunks of odd lengths (1 sample, 12345 samples), silence, and a discontinuity an hour later.
A case fails when the sidecar reports an error, sends something the contract does not allow, does not
finish the stream, or never moves its watermark past the media it got.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import grpc
import numpy as np

from sidecast.contract import codec, pb2, pb2_grpc
from sidecast.contract.errors import ContractError
from sidecast.contract.records import (
    AudioChunk,
    CoreEvent,
    Description,
    Discontinuity,
    FrameHeader,
    SegmentBoundary,
    SidecarReport,
    StreamEnded,
    StreamInfo,
    StreamStarted,
    Unknown,
    Watermark,
)


@dataclass(frozen=True)
class Finding:
    case: str
    problem: str

    def __str__(self) -> str:
        return f"{self.case}: {self.problem}"


VIDEO_CASES: dict[str, list[tuple[int, int]]] = {
    "odd-size source 1366x767": [(1366, 767)],
    "tiny source 48x32": [(48, 32)],
    "huge source 7680x4320": [(7680, 4320)],
    "size change 1920x1080 -> 1280x720": [(1920, 1080), (1280, 720)],
}
SECONDS_PER_SIZE = 2.0


def _video_events(d: Description, sizes: list[tuple[int, int]], rng: np.random.Generator) -> Iterator[CoreEvent]:
    """Source frames at the highest rate asked for (25 fps when a request wants every frame); each request
    (the main one and every extra feed) gets the frames its rate selects, extra feeds first, as the core
    sends them."""
    assert d.video is not None
    requests = [("", d.video), *((f.name, f.wants) for f in d.extra_video)]
    rates = [w.fps for _, w in requests]
    if d.extra_video:
        src_fps = max(25.0 if 0 in rates else 0.0, *rates)
    else:  # one request: frames at its own rate (10 a second when it wants every frame), as before
        src_fps = d.video.fps or 10.0
    t, seqs = 0.0, {name: 0 for name, _ in requests}
    due = {name: -1.0 for name, _ in requests}
    for n, (sw, sh) in enumerate(sizes):
        yield StreamStarted(StreamInfo(stream_id="conformance", source_width=sw, source_height=sh, source_fps=src_fps,
                                       segment_duration=SECONDS_PER_SIZE, video_feeds=tuple(f.name for f in d.extra_video)))
        end = t + SECONDS_PER_SIZE
        while t < end - 1e-9:
            for name, wants in sorted(requests, key=lambda r: r[0] == ""):  # extra feeds first
                if wants.fps > 0:
                    if t + 1e-6 < due[name]:
                        continue
                    step = 1.0 / wants.fps
                    due[name] = max(due[name] + step, t + step * 0.5) if due[name] >= 0 else t + step
                w, h = codec.scaled_size(sw, sh, wants)
                nbytes = codec.frame_nbytes(w, h, wants.pixel_format)
                seqs[name] += 1
                pixels = rng.integers(0, 256, nbytes, dtype=np.uint8).tobytes()
                yield FrameHeader(seqs[name], t, w, h, wants.pixel_format, segment=n, pixels=pixels, feed=name)
            t += 1.0 / src_fps
        yield SegmentBoundary(segment=n, start=end - SECONDS_PER_SIZE, end=end)


def _audio_events(d: Description, rng: np.random.Generator) -> Iterator[CoreEvent]:
    assert d.audio is not None
    a = d.audio
    yield StreamStarted(StreamInfo(stream_id="conformance", source_width=0, source_height=0, source_fps=0,
                                   segment_duration=2.0))
    t = 0.0
    dtype = np.float32 if a.sample_format == "f32" else np.int16
    for n in (1, 12345, a.sample_rate, 777, a.sample_rate // 2):
        pcm = (rng.standard_normal((n, a.channels)) * (0.1 if dtype == np.float32 else 3000)).astype(dtype)
        yield AudioChunk(pts=t, sample_rate=a.sample_rate, channels=a.channels,
                         samples=pcm.reshape(-1) if a.channels == 1 else pcm)
        t += n / a.sample_rate
    yield AudioChunk(pts=t, sample_rate=a.sample_rate, channels=a.channels,
                     samples=np.zeros((a.sample_rate, a.channels), dtype).squeeze())
    t += 1.0
    yield Discontinuity(t + 3600.0)
    yield AudioChunk(pts=t + 3600.0, sample_rate=a.sample_rate, channels=a.channels,
                     samples=np.zeros((a.sample_rate, a.channels), dtype).squeeze())


def _run_case(stub: pb2_grpc.SidecarStub, case: str, events: list[CoreEvent], timeout: float) -> list[Finding]:
    findings: list[Finding] = []
    last_pts = max((e.pts for e in events if isinstance(e, FrameHeader | AudioChunk)), default=0.0)
    replies: queue.Queue[pb2.SidecarMessage | BaseException | None] = queue.Queue()
    done = threading.Event()

    def requests() -> Iterator[pb2.CoreMessage]:
        for e in events:
            yield codec.encode_core(e)
        yield codec.encode_core(StreamEnded())
        done.wait(timeout)  # keep the call open until the sidecar has answered everything

    def read() -> None:
        try:
            for msg in stub.Stream(requests(), timeout=timeout):
                replies.put(msg)
        except BaseException as exc:  # noqa: BLE001 - reported as a finding
            replies.put(exc)
        replies.put(None)

    threading.Thread(target=read, daemon=True).start()
    mark = -1.0
    while True:
        try:
            item = replies.get(timeout=timeout)
        except queue.Empty:
            findings.append(Finding(case, f"no answer within {timeout:g} s"))
            break
        if item is None:
            break
        if isinstance(item, BaseException):
            if isinstance(item, grpc.RpcError) and item.code() == grpc.StatusCode.CANCELLED:
                break
            findings.append(Finding(case, f"the stream failed: {item}"))
            break
        try:
            ev = codec.decode_sidecar(item)
        except ContractError as exc:
            findings.append(Finding(case, f"sent a malformed result: {exc}"))
            continue
        if isinstance(ev, SidecarReport):
            findings.append(Finding(case, f"reported an error: {ev.message[:300]}"))
        elif isinstance(ev, Unknown):
            findings.append(Finding(case, ev.what))
        elif isinstance(ev, Watermark):
            mark = max(mark, ev.pts)
            if mark >= last_pts + 1e5:  # the end-of-stream watermark: everything is answered
                done.set()
    done.set()
    if mark < last_pts:
        findings.append(Finding(case, f"watermark stopped at {mark:.3f} s, before the last media at {last_pts:.3f} s"))
    return findings


def check(target: str, timeout: float = 120.0, seed: int = 7,
          video_cases: Collection[str] | None = None) -> tuple[Description, list[Finding]]:
    """Run every case that applies to the sidecar at ``target``; returns its description and the findings
    (empty: conformant). ``video_cases`` (names from ``VIDEO_CASES``) runs only those video cases: the 8K one
    costs most of a run (seconds of random 8K frames sent and decoded) where a caller is after another."""
    unknown = set(video_cases or ()) - set(VIDEO_CASES)
    if unknown:
        raise ValueError(f"no such conformance case: {sorted(unknown)}")
    rng = np.random.default_rng(seed)
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 256 << 20),
                                                ("grpc.max_receive_message_length", 256 << 20)]) as channel:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        stub = pb2_grpc.SidecarStub(channel)
        d = codec.description_from_pb(stub.Describe(codec.describe_request("conformance", ("bytes",)),
                                                    timeout=timeout))
        findings: list[Finding] = []
        if d.video is not None:
            for case, sizes in VIDEO_CASES.items():
                if video_cases is not None and case not in video_cases:
                    continue
                findings += _run_case(stub, case, list(_video_events(d, sizes, rng)), timeout)
        if d.audio is not None:
            findings += _run_case(stub, "odd audio chunks, silence, a discontinuity",
                                  list(_audio_events(d, rng)), timeout)
        return d, findings


__all__ = ["check", "Finding", "VIDEO_CASES"]
