"""The bitrate sidecar: watches small gray frames, and when the core closes a segment answers with the CRF
each rendition should use for it.

Each analysed frame is reduced to a few numbers on arrival (``features.FrameStats``), so closing a segment
only costs the feature summary and one batched ONNX call. The hint for segment n is computed from segment
n's own frames: the core holds the segment's encode until the hint arrives or its decision window ends.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from sidecast.contract.errors import ConfigError
from sidecast.contract.records import (
    BitrateHint,
    Description,
    SegmentBoundary,
    StreamInfo,
    VideoFrame,
    VideoWants,
)
from sidecast.sidecars.runtime.sdk import Handled, Sidecar

from .features import ANALYSIS_FPS, ANALYSIS_WIDTH, FeatureError, FrameStats, features_from_stats, pair_stats
from .model import ModelError, Policy, RateModel, decide

_MODELS: dict[str, RateModel] = {}


def _shared_model(path: Path | None) -> RateModel:
    """One loaded model per process, shared by every stream's sidecar instance."""
    key = str(path or "")
    if key not in _MODELS:
        _MODELS[key] = RateModel(path)
    return _MODELS[key]


class _SegmentStats:
    __slots__ = ("frames", "pairs", "last")

    def __init__(self) -> None:
        self.frames: list[FrameStats] = []
        self.pairs: list[tuple[float, float, float, float, bool]] = []
        self.last: FrameStats | None = None


class BitrateSidecar(Sidecar):
    """Per-segment CRF hints from a content-aware rate model (see docs/bitrate.md)."""

    name = "bitrate"
    version = "1.0.0"

    def __init__(self, model_path: Path | None = None, policy: Policy | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.policy = policy or Policy()
        self.model = _shared_model(model_path)
        self._segments: dict[int, _SegmentStats] = {}

    def describe(self) -> Description:
        return Description(
            name=self.name,
            version=self.version,
            video=VideoWants(fps=ANALYSIS_FPS, width=ANALYSIS_WIDTH, pixel_format="gray8"),
            max_latency_ms=500,
            description="per-segment CRF per rendition for a target VMAF (content-aware encoding)",
            produces=("bitrate_hints",),
        )

    def on_start(self, info: StreamInfo) -> Handled:
        self._segments.clear()
        return None

    def on_video(self, frame: VideoFrame) -> Handled:
        if frame.pixel_format != "gray8":
            raise FeatureError(f"frame {frame.seq}: bitrate analyses gray8 frames, got {frame.pixel_format}")
        stats = FrameStats(frame.image)
        seg = self._segments.setdefault(frame.segment, _SegmentStats())
        if seg.last is not None:
            seg.pairs.append(pair_stats(seg.last, stats))
        seg.frames.append(stats)
        seg.last = stats
        return None

    def on_discontinuity(self, pts: float) -> Handled:
        for seg in self._segments.values():
            seg.last = None  # never difference across a gap in the source
        return None

    def on_segment(self, boundary: SegmentBoundary) -> Handled:
        seg = self._segments.pop(boundary.segment, None)
        for old in [k for k in self._segments if k < boundary.segment]:
            del self._segments[old]  # frames of segments the core has already closed without us
        if seg is None or not seg.frames or self.info is None or not self.info.renditions:
            return None  # nothing analysed: no hint, the core keeps its static ladder for this segment
        feats = features_from_stats(seg.frames, seg.pairs)
        renditions, complexity = decide(self.model, feats, self.info.renditions, self.policy)
        return [BitrateHint(segment=boundary.segment, start=boundary.start, end=boundary.end,
                            renditions=renditions, complexity=complexity)]

    # ------------------------------------------------------------ CLI

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        p = Policy()
        parser.add_argument("--model", type=Path, default=None,
                            help="bitrate.onnx to use (default: models/bitrate/bitrate.onnx)")
        parser.add_argument("--policy", choices=["slope", "target"], default=p.mode,
                            help="slope: fewest bits for the mean quality (default); target: reach --target-vmaf")
        parser.add_argument("--vmaf-per-mbps", type=float, default=p.vmaf_per_mbps,
                            help=f"slope policy: VMAF points one Mbit/s is worth (default {p.vmaf_per_mbps:g})")
        parser.add_argument("--target-vmaf", type=float, default=p.target_vmaf,
                            help=f"target policy: VMAF each rendition aims for (default {p.target_vmaf:g})")
        parser.add_argument("--max-drop", type=float, default=p.max_drop,
                            help=f"never aim more than this many VMAF points below the static CRF "
                                 f"(default {p.max_drop:g})")
        parser.add_argument("--min-crf", type=float, default=p.min_crf, help=f"lowest CRF (default {p.min_crf:g})")
        parser.add_argument("--max-crf", type=float, default=p.max_crf, help=f"highest CRF (default {p.max_crf:g})")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Callable[[], Sidecar]:
        policy = Policy(mode=args.policy, vmaf_per_mbps=args.vmaf_per_mbps, target_vmaf=args.target_vmaf,
                        max_drop=args.max_drop, min_crf=args.min_crf, max_crf=args.max_crf)
        if not (0 < policy.target_vmaf <= 100 and policy.max_drop >= 0 and policy.vmaf_per_mbps > 0
                and 0 <= policy.min_crf <= policy.max_crf <= 51):
            raise ConfigError("bitrate: need 0 < --target-vmaf <= 100, --vmaf-per-mbps > 0, --max-drop >= 0 "
                              "and 0 <= --min-crf <= --max-crf <= 51")
        try:
            _shared_model(args.model)  # fail at start-up with the model's own message, not on a segment
        except ModelError as exc:
            raise ConfigError(str(exc)) from exc
        return partial(cls, model_path=args.model, policy=policy)
