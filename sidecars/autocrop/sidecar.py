"""The autocrop sidecar: small BGR frames in, a 9:16 (or 4:5, 1:1) crop window per analysed frame out.

Served with ``sidecast sidecar autocrop --listen ADDR``; the core renders the vertical rendition from the
crops (``core/croppath.py``). Options come from the command line (defaults for every stream) and from the
stream's params sent by the core (``vertical.aspect``, ``vertical.safe_margin``, ``vertical.max_pan_speed``,
``vertical.lookahead``), which win because they are per stream.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

from sidecast.contract import params as P
from sidecast.contract.records import Description, StreamInfo, VideoFeed, VideoFrame, VideoWants
from sidecast.sidecars.runtime.sdk import Handled, Sidecar

from .analyzer import Analyzer, load_shot_model
from .detect import FaceDetector, ObjectDetector
from .shotmodel import THUMB_H, THUMB_W, ShotModel, ShotModelError
from .smooth import PathOptions

log = logging.getLogger("sidecast.autocrop")

DEFAULT_FPS = 5.0
DEFAULT_WIDTH = 480
DEFAULT_OBJECT_FPS = 1.0
# The extra feed the full-rate cut detector and the learned cut opinion read: every source frame as
# TransNetV2's 48x27 RGB input, scaled by the core straight from the decoded frame (3.9 kB a frame;
# docs/autocrop.md, "full-rate frames" and "Cuts at full rate").
SHOT_FEED = VideoFeed("shots", VideoWants(fps=0, width=THUMB_W, height=THUMB_H, pixel_format="rgb24"))


def path_options(params: dict[str, str], base: PathOptions) -> PathOptions:
    """Apply a stream's ``vertical.*`` params over ``base``; a bad value raises ValueError naming it (the
    contract's parsers and ranges: the core checked the same values with the same rules)."""
    o = base
    if P.VERTICAL_ASPECT in params:
        o = replace(o, aspect=P.parse_aspect(params[P.VERTICAL_ASPECT]))
    if P.VERTICAL_SAFE_MARGIN in params:
        o = replace(o, safe_margin=P.parse_number(P.VERTICAL_SAFE_MARGIN, params[P.VERTICAL_SAFE_MARGIN],
                                                  *P.SAFE_MARGIN_RANGE))
    if P.VERTICAL_MAX_PAN_SPEED in params:
        o = replace(o, max_pan_speed=P.parse_number(P.VERTICAL_MAX_PAN_SPEED, params[P.VERTICAL_MAX_PAN_SPEED],
                                                    *P.MAX_PAN_SPEED_RANGE))
    if P.VERTICAL_LOOKAHEAD in params:
        o = replace(o, lookahead=P.parse_number(P.VERTICAL_LOOKAHEAD, params[P.VERTICAL_LOOKAHEAD],
                                                *P.LOOKAHEAD_RANGE))
    return o


class AutocropSidecar(Sidecar):
    """Keeps faces and people inside a vertical crop window; moves like a camera operator."""

    name = "autocrop"
    version = "1.0.0"

    def __init__(self, fps: float = DEFAULT_FPS, width: int = DEFAULT_WIDTH, options: PathOptions | None = None,
                 model: str | None = None, threads: int = 1, people: bool = True, objects: bool = True,
                 object_fps: float = DEFAULT_OBJECT_FPS, shot_model: str | None = None, shot_cuts_model: bool = True,
                 full_rate_shots: bool = True, **extra: Any) -> None:
        super().__init__(fps=fps, width=width, model=model, threads=threads, **extra)
        self.shot_model = shot_model
        self.shot_cuts_model = shot_cuts_model
        # the thumbnail feed: the full-rate cut detector reads every thumbnail, the model (when it loads) its
        # windows; without the feed both fall back to the analysed frames (docs/autocrop.md, "Cuts at full rate")
        self.full_rate_shots = full_rate_shots
        self._shots: ShotModel | None = None
        self._shots_tried = False
        self.fps = fps
        self.width = width
        self.base_options = options or PathOptions()
        self.model = model
        self.threads = threads
        self.people = people
        self.objects = objects
        self.object_fps = object_fps
        self._faces: FaceDetector | None = None
        self._objects: ObjectDetector | None = None
        self.analyzer: Analyzer | None = None

    def describe(self) -> Description:
        return Description(
            name=self.name,
            version=self.version,
            video=VideoWants(fps=self.fps, width=self.width, pixel_format="bgr24"),
            max_latency_ms=int(1000 * (self.base_options.lookahead + 2.0 / max(self.fps, 0.1))) + 500,
            description="9:16 auto-crop: YuNet faces > HOG people > UNISAL salient object; adaptive cuts on every source frame (TransNetV2 second opinion); "
                        "a camera that re-frames only when needed",
            produces=("crops",),
            extra_video=(SHOT_FEED,) if self.full_rate_shots else (),
        )

    def on_start(self, info: StreamInfo) -> Handled:
        if self._faces is None:  # one model per instance; the runtime makes one instance per stream
            self._faces = FaceDetector(self.model, threads=self.threads)
        if self.objects and self._objects is None:
            self._objects = ObjectDetector(threads=self.threads)
        if self.shot_cuts_model and not self._shots_tried:  # a missing/damaged model: warn once, cut without it
            self._shots_tried = True
            self._shots = load_shot_model(self.shot_model, threads=self.threads)
        error: ValueError | None = None
        try:
            options = path_options(info.params, self.base_options)
        except ValueError as exc:  # keep cropping with the defaults, and tell the core what was wrong
            options, error = self.base_options, exc
        self.analyzer = Analyzer(max(2, info.source_width), max(2, info.source_height), options, self._faces,
                                 self.people, self._objects if self.objects else False, self.object_fps,
                                 shot_model=self._shots or False)
        if error is not None:
            raise ValueError(f"autocrop: {error}; using {options.aspect[0]}:{options.aspect[1]} defaults")
        return None

    def on_extra_video(self, frame: VideoFrame) -> Handled:
        """The ``shots`` feed: every source frame as a 48x27 RGB thumbnail, for the full-rate cut detector and the
        learned cut opinion."""
        if self.analyzer is not None and frame.feed == SHOT_FEED.name and frame.pixel_format == "rgb24":
            self.analyzer.thumbnail(frame.pts, frame.image)
        return None

    def on_video(self, frame: VideoFrame) -> Handled:
        if self.analyzer is None:
            raise RuntimeError("autocrop: a frame arrived before the stream start")
        if frame.pixel_format != "bgr24":
            raise ValueError(f"autocrop asked for bgr24 frames, got {frame.pixel_format}")
        return self.analyzer.analyse(frame.pts, frame.image)

    def on_discontinuity(self, pts: float) -> Handled:
        return self.analyzer.discontinuity() if self.analyzer is not None else None

    def on_end(self) -> Handled:
        return self.analyzer.flush() if self.analyzer is not None else None

    def watermark(self) -> float | None:
        """Crops are published ``lookahead`` s late: only report the time of the last crop published."""
        return self.analyzer.published_until if self.analyzer is not None else -1.0

    # ------------------------------------------------------------ CLI

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("autocrop")
        g.add_argument("--fps", type=float, default=DEFAULT_FPS, help="analysed frames per second (default 5)")
        g.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="analysis frame width (default 480)")
        g.add_argument("--aspect", default="9:16", help="crop aspect: 9:16 (default), 4:5, 1:1")
        g.add_argument("--safe-margin", type=float, default=0.05,
                       help="keep subjects this fraction of the crop away from its edges (default 0.05)")
        g.add_argument("--max-pan-speed", type=float, default=0.5,
                       help="fastest pan, fraction of the source width per second (default 0.5)")
        g.add_argument("--lookahead", type=float, default=1.0,
                       help="seconds of look-ahead before a crop is published (default 1.0)")
        g.add_argument("--model", default=None, help="YuNet ONNX (default: models/autocrop/, or $SIDECAST_AUTOCROP_MODEL)")
        g.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")
        g.add_argument("--no-people", action="store_true", help="skip the HOG people detector")
        g.add_argument("--no-objects", action="store_true",
                       help="skip the UNISAL saliency model (objects a viewer follows when nobody is in frame)")
        g.add_argument("--object-fps", type=float, default=DEFAULT_OBJECT_FPS,
                       help="most saliency passes per second, only when nobody is in frame (default 1)")
        g.add_argument("--shot-model", default=None,
                       help="TransNetV2 ONNX for the learned second opinion on cuts (default: models/shots/, "
                            "or $SIDECAST_SHOT_MODEL)")
        g.add_argument("--no-shot-model", action="store_true",
                       help="cut with the hand-made detector only (no learned second opinion)")
        g.add_argument("--no-full-rate-shots", action="store_true",
                       help="do not ask the core for full-rate 48x27 thumbnails: cuts are judged on the "
                            "analysed frames (5 fps) only, the learned opinion reads those too")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Callable[[], Sidecar]:
        def fail(msg: str) -> None:
            raise SystemExit(f"sidecast sidecar autocrop: error: {msg}")

        try:
            options = path_options({
                "vertical.aspect": args.aspect,
                "vertical.safe_margin": str(args.safe_margin),
                "vertical.max_pan_speed": str(args.max_pan_speed),
                "vertical.lookahead": str(args.lookahead),
            }, PathOptions())
        except ValueError as exc:
            fail(str(exc))
        if not (0.5 <= args.fps <= 30):
            fail(f"--fps must be between 0.5 and 30, got {args.fps:g}")
        if not (64 <= args.width <= 1920):
            fail(f"--width must be between 64 and 1920, got {args.width}")
        if not (0.1 <= args.object_fps <= 30):
            fail(f"--object-fps must be between 0.1 and 30, got {args.object_fps:g}")
        if args.model:
            try:
                FaceDetector(args.model)
            except Exception as exc:  # a bad model path fails at start, not on the first stream
                fail(str(exc))
        if args.shot_model and not args.no_shot_model:
            try:
                ShotModel(args.shot_model)
            except ShotModelError as exc:  # a model asked for by name must load; the default one may degrade
                fail(str(exc))
        warm_models(args.model, max(1, args.threads), not args.no_objects, not args.no_shot_model,
                    args.shot_model, args.width)
        return partial(cls, fps=args.fps, width=args.width, options=options, model=args.model,
                       threads=max(1, args.threads), people=not args.no_people, objects=not args.no_objects,
                       object_fps=args.object_fps, shot_model=args.shot_model, shot_cuts_model=not args.no_shot_model,
                       full_rate_shots=not args.no_full_rate_shots)


def warm_models(model: str | None, threads: int, objects: bool, shots: bool, shot_model: str | None = None,
                width: int = DEFAULT_WIDTH) -> float:
    """Load the models and run each once on a blank 16:9 frame, before the sidecar listens.

    The sessions are shared by the process's streams (``detect.cpu_session``), so the first stream finds
    them ready instead of its first analysed frames waiting for onnxruntime's import, three model loads and
    their first runs (~0.5 s on an idle core; docs/autocrop.md suspected this of the vertical's extra lag at
    the start of a stream). ``shots``: the learned cut model is on (``shot_model``: its path, None for the
    shipped one). A model that cannot load is left to ``on_start``, which reports it as before (a missing
    face model stops the stream's analysis; a damaged shot model is warned about once and cutting carries
    on without it). Returns the seconds spent."""
    import time

    import numpy as np

    t0 = time.monotonic()
    frame = np.zeros((max(2, round(width * 9 / 16)), width, 3), np.uint8)
    try:
        FaceDetector(model, threads=threads).detect(frame)
        if objects:
            ObjectDetector(threads=threads).detect(frame)
    except Exception as exc:  # noqa: BLE001 (on_start raises the same error where the runtime reports it)
        log.warning("autocrop: could not warm the detectors: %s", exc)
    if shots:
        try:
            ShotModel(shot_model, threads=threads).probabilities(np.zeros((8, THUMB_H, THUMB_W, 3), np.uint8))
        except ShotModelError:
            pass  # on_start warns once and cuts with the hand-made detector
    spent = time.monotonic() - t0
    log.info("autocrop models loaded and warmed in %.2f s", spent)
    return spent
