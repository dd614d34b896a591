"""Conversion between the typed records (``records``) and the protobuf messages of the contract.

The only module that builds or reads protobuf messages: the core, the sidecar runtime and plugins speak
records. Reading validates what a peer sent and raises ``ContractError`` with a message a plugin author
can act on.

Directions:
- core → sidecar: ``describe_request``; ``encode_core(event)`` for a ``CoreEvent`` (stream start, frame,
  audio, segment boundary, discontinuity, end); the sidecar reads them with ``decode_core``.
- sidecar → core: ``description_to_pb``; ``encode_sidecar(event)`` for a ``SidecarEvent`` (a result, a
  watermark, released slots, an error report); the core reads them with ``decode_sidecar``.
"""

from __future__ import annotations

import json
import re
from typing import Literal

import numpy as np

from . import pb2
from .errors import ContractError
from .records import (
    RESULT_KINDS,
    AudioChunk,
    AudioWants,
    BitrateHint,
    CoreEvent,
    Crop,
    Cue,
    Description,
    Discontinuity,
    FrameHeader,
    Generic,
    PixelFormat,
    Released,
    RenditionHint,
    RenditionInfo,
    Result,
    ResultKind,
    SampleFormat,
    SegmentBoundary,
    ShmRingInfo,
    ShmSlot,
    SidecarEvent,
    SidecarReport,
    StreamEnded,
    StreamInfo,
    StreamStarted,
    TransportName,
    Unknown,
    VideoFeed,
    VideoWants,
    Watermark,
    Word,
)

PIXEL_TO_PB: dict[PixelFormat, pb2.PixelFormat.ValueType] = {
    "gray8": pb2.PIXEL_FORMAT_GRAY8,
    "rgb24": pb2.PIXEL_FORMAT_RGB24,
    "bgr24": pb2.PIXEL_FORMAT_BGR24,
    "yuv420p": pb2.PIXEL_FORMAT_YUV420P,
}
PIXEL_FROM_PB: dict[int, PixelFormat] = {v: k for k, v in PIXEL_TO_PB.items()}
SAMPLE_TO_PB: dict[SampleFormat, pb2.SampleFormat.ValueType] = {
    "f32": pb2.SAMPLE_FORMAT_F32, "s16": pb2.SAMPLE_FORMAT_S16}
SAMPLE_FROM_PB: dict[int, SampleFormat] = {v: k for k, v in SAMPLE_TO_PB.items()}
TRANSPORT_TO_PB: dict[TransportName, pb2.Transport.ValueType] = {
    "bytes": pb2.TRANSPORT_BYTES, "shm": pb2.TRANSPORT_SHM}
TRANSPORT_FROM_PB: dict[int, TransportName] = {v: k for k, v in TRANSPORT_TO_PB.items()}
RATE_CONTROL_TO_PB: dict[Literal["crf", "vbr"], pb2.RateControl.ValueType] = {
    "crf": pb2.RATE_CONTROL_CRF, "vbr": pb2.RATE_CONTROL_VBR}
# Unset (a core older than the field) and values from a newer contract read as capped CRF.
RATE_CONTROL_FROM_PB: dict[int, Literal["crf", "vbr"]] = {pb2.RATE_CONTROL_VBR: "vbr"}
RESULT_KIND_TO_PB: dict[ResultKind, pb2.ResultKind.ValueType] = {
    "cues": pb2.RESULT_KIND_CUES, "crops": pb2.RESULT_KIND_CROPS,
    "bitrate_hints": pb2.RESULT_KIND_BITRATE_HINTS, "generic": pb2.RESULT_KIND_GENERIC}
RESULT_KIND_FROM_PB: dict[int, ResultKind] = {v: k for k, v in RESULT_KIND_TO_PB.items()}
assert set(RESULT_KIND_TO_PB) == set(RESULT_KINDS)

# Limits that keep a buggy or hostile sidecar from asking the core for absurd work.
MAX_FPS = 240.0
MAX_SIDE = 8192
MAX_SAMPLE_RATE = 192_000
MAX_CHANNELS = 16
# Extra video feeds (``Description.extra_video``): how many, how they are named, and the largest exact
# size one may ask for (an exact size may be larger than the source: 4K at most, 25 MB a frame in rgb24).
MAX_VIDEO_FEEDS = 4
FEED_NAME = re.compile(r"[a-z0-9_.-]{1,32}")
MAX_EXACT_PIXELS = 3840 * 2160


def frame_nbytes(width: int, height: int, pixel_format: PixelFormat) -> int:
    if pixel_format == "gray8":
        return width * height
    if pixel_format in ("rgb24", "bgr24"):
        return width * height * 3
    if pixel_format == "yuv420p":
        return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)
    raise ContractError(f"unknown pixel format {pixel_format!r}")


def scaled_size(src_w: int, src_h: int, wants: VideoWants) -> tuple[int, int]:
    """The frame size a sidecar gets for ``wants`` from a ``src_w`` x ``src_h`` source: the aspect ratio
    kept, never upscaled, even dimensions when scaled (a sidecar asking for the source size gets it as it
    is, odd sizes included); with both ``width`` and ``height``, exactly that size (stretched to fit).
    Part of the contract: core and plugin test kits compute it the same way."""
    w: float
    h: float
    if wants.width and wants.height:
        return wants.width, wants.height
    if wants.width:
        w = min(wants.width, src_w)
        h = src_h * w / src_w
    elif wants.max_side:
        side = min(wants.max_side, max(src_w, src_h))
        scale = side / max(src_w, src_h)
        w, h = src_w * scale, src_h * scale
    else:
        return src_w, src_h
    return max(2, int(round(w / 2)) * 2), max(2, int(round(h / 2)) * 2)


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


# ---------------------------------------------------------------- describe


def describe_request(core_version: str, transports: tuple[TransportName, ...]) -> pb2.DescribeRequest:
    return pb2.DescribeRequest(contract_version=pb2.CONTRACT_VERSION_1, core_version=core_version,
                               transports=[TRANSPORT_TO_PB[t] for t in transports])


def requested_contract(request: pb2.DescribeRequest) -> int:
    """The contract version a core asks for (0: a core that does not say, read as v1)."""
    return int(request.contract_version) or 1


def video_request_to_pb(w: VideoWants, feed: str = "") -> pb2.VideoRequest:
    return pb2.VideoRequest(fps=w.fps, width=w.width, max_side=w.max_side, pixel_format=PIXEL_TO_PB[w.pixel_format],
                            height=w.height, feed=feed)


def _video_wants_from_pb(name: str, v: pb2.VideoRequest, what: str) -> VideoWants:
    """Validate one video request (``what`` names it in errors: "video", "extra feed 'shots'")."""
    if v.pixel_format not in PIXEL_FROM_PB:
        raise ContractError(f"sidecar {name!r} asks for an unknown pixel format ({v.pixel_format}) in its {what}")
    if not (0 <= v.fps <= MAX_FPS):
        raise ContractError(f"sidecar {name!r} asks for {v.fps:g} fps in its {what}; allowed 0..{MAX_FPS:g}")
    if v.width > MAX_SIDE or v.max_side > MAX_SIDE or v.height > MAX_SIDE:
        raise ContractError(f"sidecar {name!r} asks for frames wider than {MAX_SIDE} px in its {what}")
    fmt = PIXEL_FROM_PB[v.pixel_format]
    if v.height:
        if not v.width:
            raise ContractError(f"sidecar {name!r} gives a height without a width in its {what}")
        if v.width * v.height > MAX_EXACT_PIXELS:
            raise ContractError(f"sidecar {name!r} asks for {v.width}x{v.height} frames in its {what}; "
                                f"at most {MAX_EXACT_PIXELS} pixels")
        if fmt == "yuv420p" and (v.width % 2 or v.height % 2):
            raise ContractError(f"sidecar {name!r} asks for {v.width}x{v.height} yuv420p frames in its {what}; "
                                "yuv420p needs even sizes")
    return VideoWants(fps=v.fps, width=v.width, max_side=v.max_side, pixel_format=fmt, height=v.height)


def _extra_feeds_from_pb(name: str, main: VideoWants | None, requests: list[pb2.VideoRequest]) -> tuple[VideoFeed, ...]:
    if not requests:
        return ()
    if main is None:
        raise ContractError(f"sidecar {name!r} declares extra video feeds but no main video request")
    if len(requests) > MAX_VIDEO_FEEDS:
        raise ContractError(f"sidecar {name!r} declares {len(requests)} extra video feeds; at most {MAX_VIDEO_FEEDS}")
    feeds: list[VideoFeed] = []
    for v in requests:
        if not FEED_NAME.fullmatch(v.feed):
            raise ContractError(f"sidecar {name!r} names an extra video feed {v.feed[:40]!r}; a feed name is 1-32 "
                                "characters of a-z, 0-9, '_', '-', '.'")
        if any(f.name == v.feed for f in feeds):
            raise ContractError(f"sidecar {name!r} declares the extra video feed {v.feed!r} twice")
        wants = _video_wants_from_pb(name, v, f"extra feed {v.feed!r}")
        if wants == main or any(f.wants == wants for f in feeds):
            raise ContractError(f"sidecar {name!r} asks for the same video twice (extra feed {v.feed!r}): one "
                                "request per distinct rate, size and pixel format")
        feeds.append(VideoFeed(v.feed, wants))
    return tuple(feeds)


def description_to_pb(d: Description) -> pb2.Description:
    msg = pb2.Description(
        name=d.name,
        version=d.version,
        contract_version=pb2.CONTRACT_VERSION_1,
        max_latency_ms=d.max_latency_ms,
        transports=[TRANSPORT_TO_PB[t] for t in d.transports],
        description=d.description,
        produces=[RESULT_KIND_TO_PB[k] for k in d.produces],
        caption_languages=list(d.caption_languages),
        translations=list(d.translations),
    )
    if d.video is not None:
        msg.video.CopyFrom(video_request_to_pb(d.video))
    for feed in d.extra_video:
        msg.extra_video.append(video_request_to_pb(feed.wants, feed.name))
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


def description_from_pb(msg: pb2.Description) -> Description:
    """Validate a sidecar's self-description; impossible requirements raise ContractError."""
    if msg.contract_version != pb2.CONTRACT_VERSION_1:
        raise ContractError(
            f"sidecar {msg.name or '?'!r} speaks contract version {msg.contract_version}, this core speaks 1"
        )
    if not msg.name:
        raise ContractError("sidecar description has no name")
    video = audio = None
    if msg.HasField("video"):
        if msg.video.feed:
            raise ContractError(f"sidecar {msg.name!r} names its main video request ({msg.video.feed[:40]!r}); "
                                "only extra feeds have names")
        video = _video_wants_from_pb(msg.name, msg.video, "video request")
    extra = _extra_feeds_from_pb(msg.name, video, list(msg.extra_video))
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
            sample_format=SAMPLE_FROM_PB[a.sample_format],
            chunk_ms=a.chunk_ms or 100,
        )
    if video is None and audio is None:
        raise ContractError(f"sidecar {msg.name!r} asks for neither video nor audio")
    transports = tuple(TRANSPORT_FROM_PB[t] for t in msg.transports if t in TRANSPORT_FROM_PB) or ("bytes",)
    # Kinds from a newer contract are ignored: the core cannot make an output for what it does not know.
    produces = tuple(dict.fromkeys(RESULT_KIND_FROM_PB[k] for k in msg.produces if k in RESULT_KIND_FROM_PB))
    return Description(
        name=msg.name,
        version=msg.version,
        video=video,
        audio=audio,
        max_latency_ms=msg.max_latency_ms or 2000,
        transports=transports,
        description=msg.description,
        produces=produces,
        caption_languages=tuple(msg.caption_languages),
        translations=tuple(msg.translations),
        extra_video=extra,
    )


# ---------------------------------------------------------------- core → sidecar


def stream_info_to_pb(info: StreamInfo) -> pb2.StreamStart:
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
        video_feeds=list(info.video_feeds),
    )


def stream_info_from_pb(msg: pb2.StreamStart) -> StreamInfo:
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
        video_feeds=tuple(msg.video_feeds),
    )


def audio_to_pb(chunk: AudioChunk) -> pb2.AudioChunk:
    """PCM as it travels: float32 or int16 samples, interleaved."""
    fmt: SampleFormat = "s16" if chunk.samples.dtype == np.int16 else "f32"
    samples = chunk.samples if fmt == "s16" else chunk.samples.astype(np.float32, copy=False)
    return pb2.AudioChunk(pts=chunk.pts, sample_rate=chunk.sample_rate, channels=chunk.channels,
                          sample_format=SAMPLE_TO_PB[fmt], samples=np.ascontiguousarray(samples).tobytes())


def audio_from_pb(msg: pb2.AudioChunk) -> AudioChunk:
    fmt = SAMPLE_FROM_PB.get(msg.sample_format)
    if fmt is None:
        raise ContractError(f"audio chunk with unknown sample format {msg.sample_format}")
    if msg.channels < 1:
        raise ContractError("audio chunk with 0 channels")
    dtype = np.float32 if fmt == "f32" else np.int16
    itemsize = np.dtype(dtype).itemsize
    samples = np.frombuffer(msg.samples, dtype=dtype, count=len(msg.samples) // itemsize)
    if msg.channels > 1:
        samples = samples[: len(samples) - len(samples) % msg.channels].reshape(-1, msg.channels)
    return AudioChunk(pts=msg.pts, sample_rate=msg.sample_rate, channels=msg.channels, samples=samples)


def frame_to_pb(f: FrameHeader) -> pb2.VideoFrame:
    msg = pb2.VideoFrame(seq=f.seq, pts=f.pts, width=f.width, height=f.height,
                         pixel_format=PIXEL_TO_PB[f.pixel_format], segment=f.segment, feed=f.feed)
    if f.shm is not None:
        msg.shm.CopyFrom(pb2.ShmRef(slot=f.shm.slot, generation=f.shm.generation, size=f.shm.size))
    elif f.pixels is not None:
        msg.pixels = bytes(f.pixels)
    return msg


def encode_core(event: CoreEvent) -> pb2.CoreMessage:
    """One core → sidecar message."""
    if isinstance(event, FrameHeader):
        return pb2.CoreMessage(video=frame_to_pb(event))
    if isinstance(event, AudioChunk):
        return pb2.CoreMessage(audio=audio_to_pb(event))
    if isinstance(event, SegmentBoundary):
        return pb2.CoreMessage(segment=pb2.SegmentBoundary(segment=event.segment, start=event.start, end=event.end))
    if isinstance(event, Discontinuity):
        return pb2.CoreMessage(discontinuity=pb2.Discontinuity(pts=event.pts))
    if isinstance(event, StreamEnded):
        return pb2.CoreMessage(end=pb2.StreamEnd())
    if isinstance(event, StreamStarted):
        start = stream_info_to_pb(event.info)
        if event.ring is not None:
            start.shm_ring, start.shm_slot_size, start.shm_slots = event.ring.name, event.ring.slot_size, event.ring.slots
        return pb2.CoreMessage(start=start)
    raise TypeError(f"not a core event: {event!r}")


def decode_core(msg: pb2.CoreMessage) -> CoreEvent:
    """Read one core → sidecar message. Frames keep their pixels as the bytes of the message."""
    body = msg.WhichOneof("body")
    if body == "video":
        v = msg.video
        fmt = PIXEL_FROM_PB.get(v.pixel_format)
        if fmt is None:
            raise ContractError(f"frame {v.seq}: unknown pixel format {v.pixel_format}")
        which = v.WhichOneof("data")
        if which == "shm":
            shm = ShmSlot(v.shm.slot, v.shm.generation, v.shm.size)
            return FrameHeader(v.seq, v.pts, v.width, v.height, fmt, v.segment, shm=shm, feed=v.feed)
        if which == "pixels":
            return FrameHeader(v.seq, v.pts, v.width, v.height, fmt, v.segment, pixels=v.pixels, feed=v.feed)
        raise ContractError(f"frame {v.seq} carries no pixels")
    if body == "audio":
        return audio_from_pb(msg.audio)
    if body == "segment":
        s = msg.segment
        return SegmentBoundary(segment=s.segment, start=s.start, end=s.end)
    if body == "discontinuity":
        return Discontinuity(msg.discontinuity.pts)
    if body == "end":
        return StreamEnded()
    if body == "start":
        st = msg.start
        ring = ShmRingInfo(st.shm_ring, st.shm_slot_size, st.shm_slots) if st.shm_ring else None
        return StreamStarted(stream_info_from_pb(st), ring)
    return Unknown("core message with no body (a newer contract, or a malformed message)")


# ---------------------------------------------------------------- results


def result_to_pb(r: Result) -> pb2.Result:
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
                    pb2.RenditionHint(rendition=h.rendition, crf=h.crf, max_bitrate=h.max_bitrate, width=h.width,
                                      height=h.height)
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


def result_from_pb(msg: pb2.Result) -> Result:
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
        cr = msg.crop
        if cr.width == 0 or cr.height == 0:
            raise ContractError("crop window with zero width or height")
        return Crop(
            t=msg.start, x=cr.x, y=cr.y, width=cr.width, height=cr.height, mode=cr.mode or "tracking",
            confidence=cr.confidence, cut=cr.cut,
        )
    if kind == "bitrate":
        b = msg.bitrate
        return BitrateHint(
            segment=b.segment,
            start=msg.start,
            end=msg.end,
            complexity=b.complexity,
            renditions=tuple(
                RenditionHint(rendition=h.rendition, crf=h.crf, max_bitrate=h.max_bitrate, width=h.width,
                              height=h.height)
                for h in b.renditions
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


# ---------------------------------------------------------------- sidecar → core


def encode_sidecar(event: SidecarEvent) -> pb2.SidecarMessage:
    """One sidecar → core message."""
    if isinstance(event, Watermark):
        return pb2.SidecarMessage(watermark=pb2.Watermark(pts=event.pts, released=list(event.released)))
    if isinstance(event, Released):
        return pb2.SidecarMessage(release=pb2.Release(slots=list(event.slots)))
    if isinstance(event, SidecarReport):
        return pb2.SidecarMessage(error=pb2.SidecarError(message=event.message, fatal=event.fatal))
    if isinstance(event, Unknown):
        raise TypeError("an Unknown event is read, never sent")
    return pb2.SidecarMessage(result=result_to_pb(event))


def decode_sidecar(msg: pb2.SidecarMessage) -> SidecarEvent:
    """Read one sidecar → core message; a malformed result raises ContractError."""
    body = msg.WhichOneof("body")
    if body == "result":
        return result_from_pb(msg.result)
    if body == "watermark":
        return Watermark(msg.watermark.pts, tuple(msg.watermark.released))
    if body == "release":
        return Released(tuple(msg.release.slots))
    if body == "error":
        return SidecarReport(msg.error.message, msg.error.fatal)
    return Unknown("sidecar message with no body (a newer contract, or a malformed message)")


__all__ = [
    "ContractError", "PIXEL_TO_PB", "PIXEL_FROM_PB", "MAX_FPS", "MAX_SIDE", "MAX_SAMPLE_RATE", "MAX_CHANNELS",
    "MAX_VIDEO_FEEDS", "MAX_EXACT_PIXELS", "FEED_NAME", "video_request_to_pb",
    "frame_nbytes", "scaled_size", "image_from_buffer", "describe_request", "requested_contract", "description_to_pb",
    "description_from_pb", "stream_info_to_pb", "stream_info_from_pb", "audio_to_pb", "audio_from_pb",
    "frame_to_pb", "encode_core", "decode_core", "result_to_pb", "result_from_pb", "encode_sidecar",
    "decode_sidecar",
]
