"""The runtime every sidecar shares: the SDK (``Sidecar``), typed records, the gRPC server and the
shared-memory transport. Import from here; the submodules are implementation detail."""

from sidecast.contract.records import (
    AudioChunk,
    AudioWants,
    BitrateHint,
    Crop,
    Cue,
    Description,
    Generic,
    RenditionHint,
    RenditionInfo,
    Result,
    SegmentBoundary,
    StreamInfo,
    VideoFeed,
    VideoFrame,
    VideoWants,
    Word,
    result_span,
)

from .sdk import ENTRY_POINT_GROUP, Sidecar, UnknownSidecar, available, load

__all__ = [
    "ENTRY_POINT_GROUP", "Sidecar", "UnknownSidecar", "available", "load",
    "AudioChunk", "AudioWants", "BitrateHint", "Crop", "Cue", "Description", "Generic", "RenditionHint",
    "RenditionInfo", "Result", "SegmentBoundary", "StreamInfo", "VideoFeed", "VideoFrame", "VideoWants",
    "Word",
    "result_span",
]
