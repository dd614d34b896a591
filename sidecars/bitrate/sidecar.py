"""The bitrate sidecar: watches small gray frames, and when the core closes a segment answers with the size
and CRF each rendition should use for it.

Each analysed frame is reduced to a few numbers on arrival and fed to the probe encoder
(``features.SegmentAnalyser``), so closing a segment only costs the feature summary, the probe's flush and
one batched ONNX call. The core's ``--target-vmaf N`` reaches the sidecar as the stream parameter
``bitrate.target_vmaf`` and switches it to the target policy for that stream. The hint for segment n is computed from segment
n's own frames: the core holds the segment's encode until the hint arrives or its decision window ends.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from sidecast.contract.errors import ConfigError
from sidecast.contract.params import BITRATE_TARGET_VMAF, TARGET_VMAF_RANGE, parse_number
from sidecast.contract.records import (
    BitrateHint,
    Description,
    SegmentBoundary,
    StreamInfo,
    VideoFrame,
    VideoWants,
)
from sidecast.sidecars.runtime.sdk import Handled, Sidecar

from .features import ANALYSIS_FPS, ANALYSIS_WIDTH, FeatureError, SegmentAnalyser
from .model import SCALES, ModelError, Policy, RateModel, decide

_MODELS: dict[str, RateModel] = {}


def _shared_model(path: Path | None) -> RateModel:
    """One loaded model per process, shared by every stream's sidecar instance."""
    key = str(path or "")
    if key not in _MODELS:
        _MODELS[key] = RateModel(path)
    return _MODELS[key]


class BitrateSidecar(Sidecar):
    """Per-segment size and CRF hints from a content-aware rate model (see docs/bitrate.md)."""

    name = "bitrate"
    version = "2.0.0"

    def __init__(self, model_path: Path | None = None, policy: Policy | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.base_policy = policy or Policy()
        self.policy = self.base_policy
        self.model = _shared_model(model_path)
        self._segments: dict[int, SegmentAnalyser] = {}

    def describe(self) -> Description:
        return Description(
            name=self.name,
            version=self.version,
            video=VideoWants(fps=ANALYSIS_FPS, width=ANALYSIS_WIDTH, pixel_format="gray8"),
            max_latency_ms=500,
            description="per-segment size and CRF per rendition (content-aware encoding, per-segment hull)",
            produces=("bitrate_hints",),
        )

    def on_start(self, info: StreamInfo) -> Handled:
        self._segments.clear()
        self.policy = self.base_policy
        target = info.params.get(BITRATE_TARGET_VMAF)
        if target:
            try:
                value = parse_number(BITRATE_TARGET_VMAF, target, *TARGET_VMAF_RANGE)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
            self.policy = replace(self.base_policy, mode="target", target_vmaf=value)
        return None

    def on_video(self, frame: VideoFrame) -> Handled:
        if frame.pixel_format != "gray8":
            raise FeatureError(f"frame {frame.seq}: bitrate analyses gray8 frames, got {frame.pixel_format}")
        self._segments.setdefault(frame.segment, SegmentAnalyser()).add(frame.image)
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
        feats = seg.features()
        renditions, complexity = decide(self.model, feats, self.info.renditions, self.policy)
        return [BitrateHint(segment=boundary.segment, start=boundary.start, end=boundary.end,
                            renditions=renditions, complexity=complexity)]

    # ------------------------------------------------------------ CLI

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        p = Policy()
        parser.add_argument("--model", type=Path, default=None,
                            help="bitrate.onnx to use (default: models/bitrate/bitrate.onnx)")
        parser.add_argument("--policy", choices=["hull", "target"], default=p.mode,
                            help="hull: fewest bits at the static ladder's quality (default); target: reach "
                                 "--target-vmaf (a core's --target-vmaf selects it per stream)")
        parser.add_argument("--target-vmaf", type=float, default=p.target_vmaf,
                            help=f"target policy: VMAF each rendition aims for (default {p.target_vmaf:g})")
        parser.add_argument("--max-drop", type=float, default=p.max_drop,
                            help=f"hull policy: VMAF points below the static ladder's predicted quality a "
                                 f"segment may aim (default {p.max_drop:g})")
        parser.add_argument("--resize-margin", type=float, default=p.resize_margin,
                            help=f"hull policy: extra predicted VMAF a smaller picture must show "
                                 f"(default {p.resize_margin:g})")
        parser.add_argument("--target-margin", type=float, default=p.target_margin,
                            help=f"target policy: VMAF points above the target a segment aims for, against the "
                                 f"model's optimism (default {p.target_margin:g})")
        parser.add_argument("--no-resize", action="store_true",
                            help="never encode a segment below its rendition's size (CRF choice only)")
        parser.add_argument("--min-crf", type=float, default=p.min_crf, help=f"lowest CRF (default {p.min_crf:g})")
        parser.add_argument("--max-crf", type=float, default=p.max_crf,
                            help=f"hull policy: highest CRF (default {p.max_crf:g})")
        parser.add_argument("--target-max-crf", type=float, default=p.target_max_crf,
                            help=f"target policy: highest CRF, where easy content first falls to the target "
                                 f"(default {p.target_max_crf:g}, the top of the model's training grid)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Callable[[], Sidecar]:
        policy = Policy(mode=args.policy, target_vmaf=args.target_vmaf, max_drop=args.max_drop,
                        resize_margin=args.resize_margin, target_margin=args.target_margin,
                        min_crf=args.min_crf, max_crf=args.max_crf, target_max_crf=args.target_max_crf,
                        scales=(1.0,) if args.no_resize else SCALES)
        if not (0 < policy.target_vmaf <= 100 and policy.max_drop >= 0 and 0 <= policy.target_margin <= 20
                and 0 <= policy.min_crf <= policy.max_crf <= 51 and policy.min_crf <= policy.target_max_crf <= 51):
            raise ConfigError("bitrate: need 0 < --target-vmaf <= 100, --max-drop >= 0, 0 <= --target-margin <= 20, "
                              "0 <= --min-crf <= --max-crf <= 51 and --min-crf <= --target-max-crf <= 51")
        try:
            _shared_model(args.model)  # fail at start-up with the model's own message, not on a segment
        except ModelError as exc:
            raise ConfigError(str(exc)) from exc
        return partial(cls, model_path=args.model, policy=policy)
