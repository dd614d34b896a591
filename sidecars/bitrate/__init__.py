"""Content-aware bitrate hints: per segment and rendition, the CRF that reaches a target VMAF.

``BitrateSidecar`` is the registered sidecar (``sidecast sidecar bitrate``); ``features``, ``model`` and
``choose_crf`` are the pure parts the core or a bench can use directly. See docs/bitrate.md.
"""

from .features import FEATURE_NAMES, segment_features
from .model import Policy, RateModel, choose_crf, decide
from .sidecar import BitrateSidecar

__all__ = ["FEATURE_NAMES", "BitrateSidecar", "Policy", "RateModel", "choose_crf", "decide", "segment_features"]
