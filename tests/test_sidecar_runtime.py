"""The sidecar runtime's stream session, in process: a real gRPC server and client on loopback."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np

from sidecast.contract import pb2, pb2_grpc
from sidecast.contract.records import AudioChunk, AudioWants, Description, StreamInfo
from sidecast.sidecars.runtime.sdk import Sidecar
from sidecast.sidecars.runtime.server import build_server


class LateCommitter(Sidecar):
    """Works on its own thread, as stt does: its watermark moves on after the audio stopped coming."""

    def describe(self) -> Description:
        return Description(name="late", audio=AudioWants(), max_latency_ms=3000)

    def __init__(self) -> None:
        super().__init__()
        self.mark: float | None = None

    def on_start(self, info: StreamInfo) -> None:
        self.mark = 0.0

    def on_audio(self, chunk: AudioChunk) -> None:
        end = chunk.end

        def later() -> None:  # the result of work that finishes after the last chunk arrived
            self.mark = end

        threading.Timer(0.3, later).start()

    def watermark(self) -> float | None:
        return self.mark


def test_a_watermark_that_moves_without_new_input_still_reaches_the_core() -> None:
    server, port, _ = build_server(LateCommitter, "127.0.0.1:0")
    server.start()
    hold = threading.Event()

    def requests() -> Iterator[pb2.CoreMessage]:
        yield pb2.CoreMessage(start=pb2.StreamStart(stream_id="t", segment_duration=2.0))
        samples = np.zeros(16000, dtype="<f4").tobytes()
        yield pb2.CoreMessage(audio=pb2.AudioChunk(pts=0.0, sample_rate=16000, channels=1,
                                                   sample_format=pb2.SAMPLE_FORMAT_F32, samples=samples))
        hold.wait(10)  # then the core has nothing more to send (it waits for this sidecar's results)

    marks: queue.Queue[float] = queue.Queue()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stream = pb2_grpc.SidecarStub(channel).Stream(requests())

        def read() -> None:
            try:
                for msg in stream:
                    if msg.WhichOneof("body") == "watermark":
                        marks.put(msg.watermark.pts)
            except grpc.RpcError:
                pass

        threading.Thread(target=read, daemon=True).start()
        seen = []
        while True:
            seen.append(marks.get(timeout=5))  # fails (queue.Empty) if the watermark never reaches 1.0
            if seen[-1] >= 1.0:
                break
        assert seen[-1] == 1.0 and seen == sorted(seen)
    finally:
        hold.set()
        channel.close()
        server.stop(0).wait()


class Silent(Sidecar):
    """Takes audio and answers nothing: a sidecar with no results for a while (silence, a slow core)."""

    def describe(self) -> Description:
        return Description(name="silent", audio=AudioWants(), max_latency_ms=3000)

    def on_audio(self, chunk: AudioChunk) -> None:
        pass


def test_a_sidecar_with_nothing_to_say_keeps_its_link_under_the_cores_keepalive_pings() -> None:
    """The core pings every sidecar link (keepalive, to notice a dead one); gRPC's server default answers
    pings that come while it sends nothing with GOAWAY too_many_pings after two, which cut every link of a file
    run whose sidecars had nothing to say for ~30 s (a run slowed by --size-anchor lost stt, autocrop and
    bitrate). The runtime's server takes the core's pings; here they come as often as gRPC lets a client (1 s) for 7 s."""
    server, port, _ = build_server(Silent, "127.0.0.1:0")
    server.start()
    errors: list[grpc.RpcError] = []

    def requests() -> Iterator[pb2.CoreMessage]:
        yield pb2.CoreMessage(start=pb2.StreamStart(stream_id="t", segment_duration=2.0))
        samples = np.zeros(16000, dtype="<f4").tobytes()
        yield pb2.CoreMessage(audio=pb2.AudioChunk(pts=0.0, sample_rate=16000, channels=1,
                                                   sample_format=pb2.SAMPLE_FORMAT_F32, samples=samples))
        time.sleep(7.0)  # then neither side has anything to send (the core busy encoding), and the link stays

    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.keepalive_time_ms", 200), ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.http2.max_pings_without_data", 0)])
    try:
        stream = pb2_grpc.SidecarStub(channel).Stream(requests())
        try:
            got = [msg.WhichOneof("body") for msg in stream]
        except grpc.RpcError as exc:
            errors.append(exc)
            got = []
        assert not errors, [(e.code(), e.details()) for e in errors]
        assert "result" not in got
    finally:
        channel.close()
        server.stop(0).wait()
