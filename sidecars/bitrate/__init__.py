"""Content-aware bitrate hints: per segment and rendition, the picture size and CRF that give the static
ladder's quality with the fewest bits (or reach ``--target-vmaf``).

``BitrateSidecar`` is the registered sidecar (``sidecast sidecar bitrate``); ``features``, ``model`` and
``choose`` are the pure parts the core or a bench can use directly. See docs/bitrate.md.
"""

from .features import FEATURE_NAMES, SegmentAnalyser, segment_features
from .model import Policy, RateModel, choose, decide
from .sidecar import BitrateSidecar

__all__ = ["FEATURE_NAMES", "BitrateSidecar", "Policy", "RateModel", "SegmentAnalyser", "choose", "decide",
           "segment_features"]
