"""The pipeline's outputs, each enabled by what the stream has and what its sidecars declare:

- ``video.VideoLadder``: the main ABR ladder (always) and the vertical ladder (when a sidecar declares
  crop results, or ``--vertical on``);
- ``audio.AudioRendition``: AAC, when the source has audio;
- ``subtitles.SubtitleRendition``: one WebVTT rendition per caption track, when a sidecar declares cues;
- ``snapshots.Snapshots``: JPEG snapshots, fed per frame by the ingest;
- ``master.MasterPlaylists``: master.m3u8 / vertical.m3u8 over all of them.
Ad-break tags are not an output of their own: the ingest attaches them to each segment job, and every
playlist writes them.
"""

from .audio import AudioRendition
from .base import JsonLines, Output, SegmentJob, StreamContext
from .master import MasterPlaylists
from .snapshots import Snapshots
from .subtitles import SubtitleRendition
from .video import Rendition, VideoLadder

__all__ = ["AudioRendition", "JsonLines", "MasterPlaylists", "Output", "Rendition", "SegmentJob", "Snapshots",
           "StreamContext", "SubtitleRendition", "VideoLadder"]
