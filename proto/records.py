"""Plain typed records shared by the core and every sidecar: what a sidecar wants, what it receives, and
what it answers. They mirror the messages of ``proto/sidecast/sidecar/v1/sidecar.proto`` one to one, so
sidecar authors never touch protobuf, and ``codec.py`` is the only place that converts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# The entry-point group sidecar plugins register under (``[project.entry-points."sidecast.sidecars"]``).
SIDECAR_ENTRY_POINTS = "sidecast.sidecars"

PixelFormat = Literal["gray8", "rgb24", "bgr24", "yuv420p"]
SampleFormat = Literal["f32", "s16"]
TransportName = Literal["bytes", "shm"]
# What a sidecar publishes (``Description.produces``); the core picks its outputs from these, never from
# a sidecar's name: "cues" gets a subtitle rendition, "crops" a vertical one, "bitrate_hints" per-segment
# encoder settings, "generic" a line in results.jsonl.
ResultKind = Literal["cues", "crops", "bitrate_hints", "generic"]
RESULT_KINDS: tuple[ResultKind, ...] = ("cues", "crops", "bitrate_hints", "generic")


@dataclass(frozen=True)
class VideoWants:
    """Video a sidecar asks for. The core converts once per distinct VideoWants and shares the buffer.

    ``fps`` 0 = every source frame. ``width`` alone keeps the aspect ratio; ``width`` and ``height`` give
    exactly that size, the picture stretched to fit (a model's fixed input); ``max_side`` bounds the longest
    side when ``width`` is 0; all 0 = the source size (``codec.scaled_size`` says exactly what arrives)."""

    fps: float = 5.0
    width: int = 0
    max_side: int = 0
    pixel_format: PixelFormat = "gray8"
    height: int = 0


@dataclass(frozen=True)
class VideoFeed:
    """An extra video feed a sidecar asks for besides its main one (``Description.extra_video``): its own
    rate, size and pixel format, under a ``name`` its frames carry (``VideoFrame.feed``). E.g. every source
    frame as a 48x27 RGB thumbnail for a shot-boundary model next to 5 analysed frames a second."""

    name: str
    wants: VideoWants


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
    produces: tuple[ResultKind, ...] = ()
    caption_languages: tuple[str, ...] = ()  # cue producers: languages they caption ("*" = any)
    translations: tuple[str, ...] = ()       # cue producers: "src>dst" pairs they can translate
    # Extra video feeds (at most ``codec.MAX_VIDEO_FEEDS``), delivered to ``Sidecar.on_extra_video``; a core
    # that delivers them lists their names in ``StreamInfo.video_feeds`` (an older core sends the main feed only).
    extra_video: tuple[VideoFeed, ...] = ()


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
    # The extra feeds (``Description.extra_video`` names) the core delivers in this stream; () from a core
    # older than extra feeds, which sends the main feed only.
    video_feeds: tuple[str, ...] = ()


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
    feed: str = ""  # "" = the main feed; else the name of the extra feed (``VideoFeed.name``)


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


@dataclass(frozen=True)
class ShmRingInfo:
    """The shared-memory ring a stream's frames travel through (a file name under /dev/shm)."""

    name: str
    slot_size: int
    slots: int


@dataclass(frozen=True)
class ShmSlot:
    """Where one frame lies in the ring: the slot, its write generation and the bytes used."""

    slot: int
    generation: int
    size: int


@dataclass(frozen=True)
class FrameHeader:
    """A frame as it travels: its geometry and where its pixels are (inline bytes or a ring slot)."""

    seq: int
    pts: float
    width: int
    height: int
    pixel_format: PixelFormat
    segment: int = 0
    pixels: bytes | memoryview | None = None
    shm: ShmSlot | None = None
    feed: str = ""  # "" = the main feed; else the extra feed's name


@dataclass(frozen=True)
class StreamStarted:
    """The first message of a stream (and of every reconnection): what the stream is, and its ring."""

    info: StreamInfo
    ring: ShmRingInfo | None = None


@dataclass(frozen=True)
class Discontinuity:
    """The source dropped and came back at media time ``pts``."""

    pts: float


@dataclass(frozen=True)
class StreamEnded:
    """Everything has been sent: flush."""


@dataclass(frozen=True)
class Watermark:
    """A sidecar has published everything up to ``pts``; ``released`` frees ring slots at the same time."""

    pts: float
    released: tuple[int, ...] = ()


@dataclass(frozen=True)
class Released:
    """Ring slots a sidecar has finished reading."""

    slots: tuple[int, ...]


@dataclass(frozen=True)
class SidecarReport:
    """An error a sidecar reports; ``fatal`` disables it for the rest of the stream."""

    message: str
    fatal: bool = False


@dataclass(frozen=True)
class Unknown:
    """A message whose body this contract version does not know (a newer peer, or a malformed one)."""

    what: str


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
    track: str = ""  # "" = source-language captions; a language tag ("es") = that translation
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
    """One rendition's settings for one segment. ``crf`` 0 and ``max_bitrate`` 0 keep the static values;
    ``width``/``height`` (both set) encode the segment at that size, at most the rendition's declared size
    (the player scales it up; the master playlist keeps declaring the rendition's size); 0 = its own size."""

    rendition: str
    crf: float = 0.0
    max_bitrate: int = 0
    width: int = 0
    height: int = 0


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
# What a sidecar may send on its own: results, and reports (a non-fatal message the core logs and shows to the
# operator, e.g. "no engine translates en to ja").
Outgoing = Result | SidecarReport

# What travels core → sidecar, and sidecar → core, as records (``codec`` converts to and from messages).
CoreEvent = StreamStarted | FrameHeader | AudioChunk | SegmentBoundary | Discontinuity | StreamEnded | Unknown
SidecarEvent = Cue | Crop | BitrateHint | Generic | Watermark | Released | SidecarReport | Unknown


def result_span(result: Result) -> tuple[float, float]:
    """The media time a result covers, whatever its type."""
    if isinstance(result, Crop):
        return (result.t, result.t)
    return (result.start, result.end)
