"""Plain typed records shared by the core and every sidecar: what a sidecar wants, what it receives, and
what it answers. They mirror the messages of ``proto/sidecast/sidecar/v1/sidecar.proto`` one to one, so
sidecar authors never touch protobuf, and ``codec.py`` is the only place that converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

PixelFormat = Literal["gray8", "rgb24", "bgr24", "yuv420p"]
SampleFormat = Literal["f32", "s16"]
TransportName = Literal["bytes", "shm"]


@dataclass(frozen=True)
class VideoWants:
    """Video a sidecar asks for. The core converts once per distinct VideoWants and shares the buffer."""

    fps: float = 5.0
    width: int = 0
    max_side: int = 0
    pixel_format: PixelFormat = "gray8"


@dataclass(frozen=True)
class AudioWants:
    """Audio a sidecar asks for, delivered in chunks of ``chunk_ms``."""

    sample_rate: int = 16000
    channels: int = 1
    sample_format: SampleFormat = "f32"
    chunk_ms: int = 100


@dataclass(frozen=True)
class Description:
    """What a sidecar tells the core about itself before any media flows."""

    name: str
    version: str = "0.0.0"
    video: VideoWants | None = None
    audio: AudioWants | None = None
    max_latency_ms: int = 2000
    transports: tuple[TransportName, ...] = ("shm", "bytes")
    description: str = ""


@dataclass(frozen=True)
class RenditionInfo:
    """One rung of the core's ladder. ``rate_control`` is how the static ladder encodes it when no hint
    applies: ``"crf"`` (``crf`` under ``max_bitrate`` as a cap) or ``"vbr"`` (ABR at ``max_bitrate``). A
    bitrate hint is measured against that baseline. Cores older than the field send nothing: ``"crf"``."""

    name: str
    width: int
    height: int
    max_bitrate: int
    crf: float
    rate_control: Literal["crf", "vbr"] = "crf"


@dataclass(frozen=True, eq=False)
class StreamInfo:
    """Sent once when a stream starts: the source's geometry, the segment cadence and the ladder."""

    stream_id: str
    source_width: int
    source_height: int
    source_fps: float
    segment_duration: float
    renditions: tuple[RenditionInfo, ...] = ()
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class VideoFrame:
    """One analysed frame. ``image`` is HxW (gray8), HxWx3 (rgb24/bgr24) or a flat yuv420p buffer.

    With the shared-memory transport ``image`` is a read-only view of a slot that is recycled once the
    handler returns: copy it (``image.copy()``) if you keep it for later.
    """

    seq: int
    pts: float
    width: int
    height: int
    pixel_format: PixelFormat
    image: np.ndarray
    segment: int = 0


@dataclass
class AudioChunk:
    """PCM audio. ``samples`` is float32 or int16, shape (n,) for mono or (n, channels)."""

    pts: float
    sample_rate: int
    channels: int
    samples: np.ndarray

    @property
    def duration(self) -> float:
        return len(self.samples) / float(self.sample_rate)

    @property
    def end(self) -> float:
        return self.pts + self.duration


@dataclass(frozen=True)
class SegmentBoundary:
    segment: int
    start: float
    end: float


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Word:
    text: str
    start: float
    end: float
    probability: float = 1.0


@dataclass(frozen=True)
class Cue:
    """A caption cue in media time. Partial cues (final=False) may be superseded by a later cue."""

    start: float
    end: float
    text: str
    final: bool = True
    language: str = "en"
    track: str = ""
    words: tuple[Word, ...] = ()
    id: str = ""


@dataclass(frozen=True)
class Crop:
    """A crop window in source pixels, valid at media time ``t``."""

    t: float
    x: int
    y: int
    width: int
    height: int
    mode: str = "tracking"
    confidence: float = 1.0
    cut: bool = False


@dataclass(frozen=True)
class RenditionHint:
    rendition: str
    crf: float = 0.0
    max_bitrate: int = 0


@dataclass(frozen=True)
class BitrateHint:
    """Per-rendition rate settings for one segment; the encoder applies them if they arrive in time."""

    segment: int
    start: float
    end: float
    renditions: tuple[RenditionHint, ...] = ()
    complexity: float = 0.0


@dataclass(frozen=True)
class Generic:
    """Anything a plugin wants to publish: a kind and a JSON-serialisable payload."""

    start: float
    end: float
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)


Result = Cue | Crop | BitrateHint | Generic


def result_span(result: Result) -> tuple[float, float]:
    """The media time a result covers, whatever its type."""
    if isinstance(result, Crop):
        return (result.t, result.t)
    return (result.start, result.end)
