"""A worked example plugin: a scene-cut detector in ~40 lines.

It asks for 10 fps, 160-px-wide grey frames, compares each frame's luma histogram with the previous one
and publishes a ``Generic(kind="scene_cut")`` result when they differ by more than a threshold. It is
registered in pyproject.toml like any third-party plugin::

    [project.entry-points."sidecast.sidecars"]
    scenecut = "sidecast.sidecars.scenecut:SceneCutSidecar"
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from sidecast.sidecars.runtime import Description, Generic, Result, Sidecar, VideoFrame, VideoWants


class SceneCutSidecar(Sidecar):
    """Publishes scene cuts (histogram distance between consecutive frames above a threshold)."""

    name = "scenecut"
    version = "1.0.0"

    def __init__(self, threshold: float = 0.35, fps: float = 10.0) -> None:
        super().__init__(threshold=threshold, fps=fps)
        self.threshold = threshold
        self.fps = fps
        self._prev: np.ndarray | None = None

    def describe(self) -> Description:
        return Description(
            name=self.name, version=self.version, description="scene-cut detector (luma histogram distance)",
            video=VideoWants(fps=self.fps, width=160, pixel_format="gray8"), max_latency_ms=500,
            produces=("generic",),
        )

    def on_video(self, frame: VideoFrame) -> list[Result]:
        hist = np.bincount(frame.image.reshape(-1) >> 3, minlength=32).astype(np.float64)
        hist /= max(hist.sum(), 1.0)
        prev, self._prev = self._prev, hist
        if prev is None:
            return []
        distance = 0.5 * float(np.abs(hist - prev).sum())  # total variation distance, 0..1
        if distance < self.threshold:
            return []
        return [Generic(start=frame.pts, end=frame.pts, kind="scene_cut", data={"score": round(distance, 4)})]

    def on_discontinuity(self, pts: float) -> None:
        self._prev = None

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--threshold", type=float, default=0.35, help="histogram distance that counts as a cut")
        parser.add_argument("--fps", type=float, default=10.0, help="analysed frames per second")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Callable[[], Sidecar]:
        return lambda: cls(threshold=args.threshold, fps=args.fps)
