"""Conversion between the typed records in ``types.py`` and the protobuf messages of the contract.

The only module that knows both sides: everything else speaks dataclasses. Conversions validate what a
peer sent and raise ``ContractError`` with a message a plugin author can act on.
"""

from __future__ import annotations

import json
from typing import Any, Literal, cast

import numpy as np

from proto import pb2

from .types import (
    AudioChunk,
    AudioWants,
    BitrateHint,
    Crop,
    Cue,
    Description,
    Generic,
    PixelFormat,
    RenditionHint,
    RenditionInfo,
    Result,
    SampleFormat,
    StreamInfo,
    TransportName,
    VideoWants,
    Word,
)


class ContractError(ValueError):
    """A peer sent something the v1 contract does not allow."""


PIXEL_TO_PB = {
    "gray8": pb2.PIXEL_FORMAT_GRAY8,
    "rgb24": pb2.PIXEL_FORMAT_RGB24,
    "bgr24": pb2.PIXEL_FORMAT_BGR24,
    "yuv420p": pb2.PIXEL_FORMAT_YUV420P,
}
PIXEL_FROM_PB = {v: k for k, v in PIXEL_TO_PB.items()}
SAMPLE_TO_PB = {"f32": pb2.SAMPLE_FORMAT_F32, "s16": pb2.SAMPLE_FORMAT_S16}
SAMPLE_FROM_PB = {v: k for k, v in SAMPLE_TO_PB.items()}
TRANSPORT_TO_PB = {"bytes": pb2.TRANSPORT_BYTES, "shm": pb2.TRANSPORT_SHM}
TRANSPORT_FROM_PB = {v: k for k, v in TRANSPORT_TO_PB.items()}
RATE_CONTROL_TO_PB = {"crf": pb2.RATE_CONTROL_CRF, "vbr": pb2.RATE_CONTROL_VBR}
# Unset (a core older than the field) and values from a newer contract read as capped CRF.
RATE_CONTROL_FROM_PB: dict[int, Literal["crf", "vbr"]] = {pb2.RATE_CONTROL_VBR: "vbr"}

# Limits that keep a buggy or hostile sidecar from asking the core for absurd work.
MAX_FPS = 240.0
MAX_SIDE = 8192
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 16


def frame_nbytes(width: int, height: int, pixel_format: PixelFormat) -> int:
    if pixel_format == "gray8":
        return width * height
    if pixel_format in ("rgb24", "bgr24"):
        return width * height * 3
    if pixel_format == "yuv420p":
        return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)
    raise ContractError(f"unknown pixel format {pixel_format!r}")


def image_from_buffer(buf: bytes | memoryview, width: int, height: int, pixel_format: PixelFormat) -> np.ndarray:
    need = frame_nbytes(width, height, pixel_format)
    if len(buf) < need:
        raise ContractError(f"frame payload has {len(buf)} bytes, {width}x{height} {pixel_format} needs {need}")
    arr = np.frombuffer(buf, dtype=np.uint8, count=need)
    if pixel_format == "gray8":
        return arr.reshape(height, width)
    if pixel_format in ("rgb24", "bgr24"):
        return arr.reshape(height, width, 3)
    return arr


# ---------------------------------------------------------------- description


def description_to_pb(d: Description) -> Any:
    msg = pb2.Description(
        name=d.name,
        version=d.version,
        contract_version=pb2.CONTRACT_VERSION_1,
        max_latency_ms=d.max_latency_ms,
        transports=[TRANSPORT_TO_PB[t] for t in d.transports],
        description=d.description,
    )
    if d.video is not None:
        msg.video.CopyFrom(
            pb2.VideoRequest(
                fps=d.video.fps,
                width=d.video.width,
                max_side=d.video.max_side,
                pixel_format=PIXEL_TO_PB[d.video.pixel_format],
            )
        )
    if d.audio is not None:
        msg.audio.CopyFrom(
            pb2.AudioRequest(
                sample_rate=d.audio.sample_rate,
                channels=d.audio.channels,
                sample_format=SAMPLE_TO_PB[d.audio.sample_format],
                chunk_ms=d.audio.chunk_ms,
            )
        )
    return msg


def description_from_pb(msg: Any) -> Description:
    """Validate a sidecar's self-description; impossible requirements raise ContractError."""
    if msg.contract_version != pb2.CONTRACT_VERSION_1:
        raise ContractError(
            f"sidecar {msg.name or '?'!r} speaks contract version {msg.contract_version}, this core speaks 1"
        )
    if not msg.name:
        raise ContractError("sidecar description has no name")
    video = audio = None
    if msg.HasField("video"):
        v = msg.video
        if v.pixel_format not in PIXEL_FROM_PB:
            raise ContractError(f"sidecar {msg.name!r} asks for an unknown pixel format ({v.pixel_format})")
        if not (0 <= v.fps <= MAX_FPS):
            raise ContractError(f"sidecar {msg.name!r} asks for {v.fps:g} fps; allowed 0..{MAX_FPS:g}")
        if v.width > MAX_SIDE or v.max_side > MAX_SIDE:
            raise ContractError(f"sidecar {msg.name!r} asks for frames wider than {MAX_SIDE} px")
        video = VideoWants(
            fps=v.fps, width=v.width, max_side=v.max_side, pixel_format=cast(PixelFormat, PIXEL_FROM_PB[v.pixel_format])
        )
    if msg.HasField("audio"):
        a = msg.audio
        if a.sample_format not in SAMPLE_FROM_PB:
            raise ContractError(f"sidecar {msg.name!r} asks for an unknown sample format ({a.sample_format})")
        if not (8000 <= a.sample_rate <= MAX_SAMPLE_RATE):
            raise ContractError(f"sidecar {msg.name!r} asks for {a.sample_rate} Hz; allowed 8000..{MAX_SAMPLE_RATE}")
        if not (1 <= a.channels <= MAX_CHANNELS):
            raise ContractError(f"sidecar {msg.name!r} asks for {a.channels} channels; allowed 1..{MAX_CHANNELS}")
        if a.chunk_ms > 10_000:
            raise ContractError(f"sidecar {msg.name!r} asks for {a.chunk_ms} ms audio chunks; at most 10000")
        audio = AudioWants(
            sample_rate=a.sample_rate,
            channels=a.channels,
            sample_format=cast(SampleFormat, SAMPLE_FROM_PB[a.sample_format]),
            chunk_ms=a.chunk_ms or 100,
        )
    if video is None and audio is None:
        raise ContractError(f"sidecar {msg.name!r} asks for neither video nor audio")
    transports = cast(tuple[TransportName, ...],
                      tuple(TRANSPORT_FROM_PB[t] for t in msg.transports if t in TRANSPORT_FROM_PB) or ("bytes",))
    return Description(
        name=msg.name,
        version=msg.version,
        video=video,
        audio=audio,
        max_latency_ms=msg.max_latency_ms or 2000,
        transports=transports,
        description=msg.description,
    )


# ---------------------------------------------------------------- stream info


def stream_info_to_pb(info: StreamInfo) -> Any:
    return pb2.StreamStart(
        stream_id=info.stream_id,
        source_width=info.source_width,
        source_height=info.source_height,
        source_fps=info.source_fps,
        segment_duration=info.segment_duration,
        renditions=[
            pb2.Rendition(name=r.name, width=r.width, height=r.height, max_bitrate=r.max_bitrate, crf=r.crf,
                          rate_control=RATE_CONTROL_TO_PB[r.rate_control])
            for r in info.renditions
        ],
        params=dict(info.params),
    )


def stream_info_from_pb(msg: Any) -> StreamInfo:
    return StreamInfo(
        stream_id=msg.stream_id,
        source_width=msg.source_width,
        source_height=msg.source_height,
        source_fps=msg.source_fps,
        segment_duration=msg.segment_duration,
        renditions=tuple(
            RenditionInfo(name=r.name, width=r.width, height=r.height, max_bitrate=r.max_bitrate, crf=r.crf,
                          rate_control=RATE_CONTROL_FROM_PB.get(r.rate_control, "crf"))
            for r in msg.renditions
        ),
        params=dict(msg.params),
    )


# ---------------------------------------------------------------- audio


def audio_from_pb(msg: Any) -> AudioChunk:
    fmt = SAMPLE_FROM_PB.get(msg.sample_format)
    if fmt is None:
        raise ContractError(f"audio chunk with unknown sample format {msg.sample_format}")
    if msg.channels < 1:
        raise ContractError("audio chunk with 0 channels")
    dtype = np.float32 if fmt == "f32" else np.int16
    samples = np.frombuffer(msg.samples, dtype=dtype)
    if msg.channels > 1:
        samples = samples[: len(samples) - len(samples) % msg.channels].reshape(-1, msg.channels)
    return AudioChunk(pts=msg.pts, sample_rate=msg.sample_rate, channels=msg.channels, samples=samples)


# ---------------------------------------------------------------- results


def result_to_pb(r: Result) -> Any:
    if isinstance(r, Cue):
        return pb2.Result(
            start=r.start,
            end=r.end,
            cue=pb2.Cue(
                text=r.text,
                final=r.final,
                language=r.language,
                track=r.track,
                id=r.id,
                words=[pb2.Word(text=w.text, start=w.start, end=w.end, probability=w.probability) for w in r.words],
            ),
        )
    if isinstance(r, Crop):
        return pb2.Result(
            start=r.t,
            end=r.t,
            crop=pb2.Crop(
                x=max(0, int(r.x)),
                y=max(0, int(r.y)),
                width=max(0, int(r.width)),
                height=max(0, int(r.height)),
                mode=r.mode,
                confidence=r.confidence,
                cut=r.cut,
            ),
        )
    if isinstance(r, BitrateHint):
        return pb2.Result(
            start=r.start,
            end=r.end,
            bitrate=pb2.BitrateHint(
                segment=r.segment,
                complexity=r.complexity,
                renditions=[
                    pb2.RenditionHint(rendition=h.rendition, crf=h.crf, max_bitrate=h.max_bitrate)
                    for h in r.renditions
                ],
            ),
        )
    if isinstance(r, Generic):
        return pb2.Result(
            start=r.start,
            end=r.end,
            generic=pb2.Generic(kind=r.kind, json=json.dumps(r.data), labels=dict(r.labels)),
        )
    raise TypeError(f"a sidecar handler returned {type(r).__name__}; expected Cue, Crop, BitrateHint or Generic")


def result_from_pb(msg: Any) -> Result:
    kind = msg.WhichOneof("kind")
    if kind == "cue":
        c = msg.cue
        if msg.end < msg.start:
            raise ContractError(f"cue ends ({msg.end}) before it starts ({msg.start})")
        return Cue(
            start=msg.start,
            end=msg.end,
            text=c.text,
            final=c.final,
            language=c.language or "en",
            track=c.track,
            id=c.id,
            words=tuple(Word(text=w.text, start=w.start, end=w.end, probability=w.probability) for w in c.words),
        )
    if kind == "crop":
        c = msg.crop
        if c.width == 0 or c.height == 0:
            raise ContractError("crop window with zero width or height")
        return Crop(
            t=msg.start, x=c.x, y=c.y, width=c.width, height=c.height, mode=c.mode or "tracking",
            confidence=c.confidence, cut=c.cut,
        )
    if kind == "bitrate":
        b = msg.bitrate
        return BitrateHint(
            segment=b.segment,
            start=msg.start,
            end=msg.end,
            complexity=b.complexity,
            renditions=tuple(
                RenditionHint(rendition=h.rendition, crf=h.crf, max_bitrate=h.max_bitrate) for h in b.renditions
            ),
        )
    if kind == "generic":
        g = msg.generic
        try:
            data = json.loads(g.json) if g.json else {}
        except json.JSONDecodeError as exc:
            raise ContractError(f"generic result {g.kind!r} carries invalid JSON: {exc}") from exc
        if not isinstance(data, dict):
            data = {"value": data}
        return Generic(start=msg.start, end=msg.end, kind=g.kind, data=data, labels=dict(g.labels))
    raise ContractError("result with no kind set (a newer contract, or a malformed message)")
