"""The rate model and the decision built on it: from segment features to a CRF per rendition.

The ONNX model (``models/bitrate/bitrate.onnx``, trained by ``models/bitrate/train.py``) predicts, for a
segment's content features, a rendition height and a CRF, two numbers: the VMAF that encode reaches at the
rendition's resolution and its bit rate as log2(kbit/s). Evaluating it over a grid of CRFs in one batched
call gives each rendition's predicted quality curve; ``choose_crf`` (a pure function) then picks the CRF.

Two policies (``Policy``): "slope" spends bits where they buy the most VMAF at one exchange rate for all
segments (fewest total bits for a given mean quality); "target" aims every rendition at a target VMAF.
Both never aim more than ``max_drop`` VMAF below what the static ladder would give the same segment. Which
static ladder is the rendition's ``rate_control`` (sent by the core): ``"crf"``, the predicted VMAF at the
rung's CRF; ``"vbr"`` (fixed bitrate), the predicted VMAF at the rung's bitrate, read off the predicted
rate/VMAF curve, plus ``vbr_margin`` (a guard margin for that reference, which depends on the model's
weak rate prediction; chosen by train.py on training clips only).

Inputs the model was not trained on are clamped: heights above 720 use the 720 curve (VMAF at a
rendition's own resolution barely depends on the height at a given CRF in the corpus).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from sidecast.contract.records import RenditionHint, RenditionInfo
from sidecast.models import model_path

from .features import N_FEATURES

MODEL_ENV = "SIDECAST_BITRATE_MODEL"
DEFAULT_MODEL = model_path("bitrate", "bitrate.onnx")
TRAINED_HEIGHTS = (360, 720)
CRF_GRID = np.arange(14.0, 40.01, 0.5, dtype=np.float32)

# Features that span orders of magnitude enter the model as log1p; the rest as they are.
_LOG_FEATURES = (0, 1, 2, 3, 4, 5, 9, 11)


class ModelError(RuntimeError):
    """The model file is missing or unusable; the message names the file and what to do."""


def model_inputs(features: np.ndarray, heights: np.ndarray, crfs: np.ndarray) -> np.ndarray:
    """Rows of the model's input matrix. Shared by training and inference so both see the same numbers.

    ``features`` is (N, N_FEATURES) in ``FEATURE_NAMES`` order; ``heights`` and ``crfs`` are (N,).
    """
    f = np.asarray(features, dtype=np.float64).reshape(-1, N_FEATURES).copy()
    f[:, list(_LOG_FEATURES)] = np.log1p(np.maximum(f[:, list(_LOG_FEATURES)], 0.0))
    f[:, 6] = np.log1p(100.0 * np.maximum(f[:, 6], 0.0))  # global motion, % of width per frame
    f[:, 10] = f[:, 10] / 255.0
    h = np.clip(np.asarray(heights, dtype=np.float64), TRAINED_HEIGHTS[0], TRAINED_HEIGHTS[1])
    h_in = np.log2(h / 360.0)
    c_in = (np.asarray(crfs, dtype=np.float64) - 26.0) / 6.0
    return np.column_stack([f, h_in, c_in]).astype(np.float32)


@dataclass(frozen=True)
class Policy:
    """How a predicted quality curve becomes a CRF. Defaults are the documented operating point.

    ``mode="slope"`` (default) spends bits where they buy the most VMAF: per rendition it maximises
    ``VMAF(crf) - vmaf_per_mbps * Mbit/s(crf)``, the same exchange rate for every segment and rendition,
    which is the allocation that minimises total bits for a given mean VMAF. ``vmaf_per_mbps`` was chosen by
    ``models/bitrate/train.py`` on training clips only (see metrics.json).
    ``mode="target"`` aims each rendition at ``target_vmaf`` with the highest CRF that reaches it.
    Both never aim more than ``max_drop`` VMAF below what the static ladder would give the segment, and
    stay within ``[min_crf, max_crf]``. Against a fixed-bitrate static ladder (``rate_control="vbr"``) the
    guard is raised by ``vbr_margin`` VMAF: the static quality is then read at a predicted *rate*, and the
    model's rate error is large. ``vbr_margin`` was chosen by ``train.py`` on training clips only.
    """

    mode: Literal["slope", "target"] = "slope"
    vmaf_per_mbps: float = 24.0
    target_vmaf: float = 93.0
    max_drop: float = 0.5
    vbr_margin: float = 0.0
    min_crf: float = 16.0
    max_crf: float = 38.0


def vmaf_at_rate(vmaf: np.ndarray, kbps: np.ndarray, target_kbps: float) -> float:
    """The quality a fixed-bitrate encode at ``target_kbps`` is expected to reach, from a rate/VMAF curve
    over increasing CRFs (``vmaf`` and ``kbps`` per CRF, as the model predicts for capped CRF).

    It is the VMAF where the curve's rate first falls to ``target_kbps`` (interpolated in log rate): the best
    quality that fits the rate. Where even the lowest CRF stays under the rate (easy content), the lowest
    CRF's VMAF; the encode at that rate is at least as good. Both curves are made monotone first.
    """
    v = np.minimum.accumulate(np.asarray(vmaf, dtype=np.float64))
    lr = np.log2(np.maximum(np.minimum.accumulate(np.asarray(kbps, dtype=np.float64)), 1e-6))
    t = math.log2(max(target_kbps, 1e-6))
    below = np.flatnonzero(lr <= t)
    if len(below) == 0:
        return float(v[-1])  # never under the rate: the highest CRF is the best guess there is
    i = int(below[0])
    if i == 0:
        return float(v[0])
    frac = (lr[i - 1] - t) / max(lr[i - 1] - lr[i], 1e-9)
    return float(v[i - 1] + frac * (v[i] - v[i - 1]))


def choose_crf(crfs: np.ndarray, vmaf: np.ndarray, static_crf: float, policy: Policy,
               kbps: np.ndarray | None = None, static_kbps: float | None = None) -> float:
    """The CRF for one rendition of one segment, from its predicted VMAF (and rate) curve over ``crfs``.

    The static reference is the curve at ``static_crf`` (capped-CRF ladder), or, with ``static_kbps`` (a
    fixed-bitrate ladder at that rate), the curve's VMAF at that rate plus ``policy.vbr_margin``.
    The curve is made monotone (quality never rises with CRF) before it is read, so a wiggle of the model
    cannot pick a CRF above a worse one. Ties go to the higher CRF (fewer bits).
    """
    crfs = np.asarray(crfs, dtype=np.float64)
    curve = np.minimum.accumulate(np.asarray(vmaf, dtype=np.float64))
    if static_kbps is None:
        v_static = float(np.interp(static_crf, crfs, curve))
    else:
        if kbps is None:
            raise ValueError("a fixed-bitrate reference needs the predicted rate curve")
        v_static = vmaf_at_rate(curve, np.asarray(kbps, dtype=np.float64), static_kbps) + policy.vbr_margin
    in_range = (crfs >= policy.min_crf) & (crfs <= policy.max_crf)
    if policy.mode == "slope":
        if kbps is None:
            raise ValueError("the slope policy needs the predicted rate curve")
        ok = in_range & (curve >= v_static - policy.max_drop)
        if not ok.any():
            return float(policy.min_crf)
        score = curve - policy.vmaf_per_mbps * np.asarray(kbps, dtype=np.float64) / 1000.0
        score = np.where(ok, score, -np.inf)
        best = np.flatnonzero(score >= score.max() - 1e-9)
        return float(crfs[best].max())
    required = max(policy.target_vmaf, v_static - policy.max_drop)
    ok = in_range & (curve >= required)
    if not ok.any():
        return float(policy.min_crf)  # unreachable: spend up to the cap
    return float(crfs[ok].max())


class RateModel:
    """The ONNX rate model, run with onnxruntime on one CPU thread (it is tiny)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path or os.environ.get(MODEL_ENV) or DEFAULT_MODEL)
        if not self.path.is_file():
            raise ModelError(f"bitrate model not found at {self.path}: run models/bitrate/train.py "
                             f"or point --model / ${MODEL_ENV} at bitrate.onnx")
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types; all mean "not a usable model"
            raise ModelError(f"cannot load bitrate model {self.path}: {exc}") from exc
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, 2) predictions for model-input rows: VMAF and log2(kbit/s)."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64)

    def curves(self, features: np.ndarray, heights: Sequence[int], crfs: np.ndarray = CRF_GRID
               ) -> tuple[np.ndarray, np.ndarray]:
        """Predicted VMAF and log2 kbit/s over ``crfs`` for each height: two (len(heights), len(crfs)) arrays."""
        n_h, n_c = len(heights), len(crfs)
        feats = np.repeat(np.asarray(features, dtype=np.float32).reshape(1, -1), n_h * n_c, axis=0)
        hs = np.repeat(np.asarray(heights, dtype=np.float32), n_c)
        cs = np.tile(np.asarray(crfs, dtype=np.float32), n_h)
        pred = self.predict(model_inputs(feats, hs, cs))
        return pred[:, 0].reshape(n_h, n_c), pred[:, 1].reshape(n_h, n_c)


def decide(model: RateModel, features: np.ndarray, renditions: Sequence[RenditionInfo], policy: Policy
           ) -> tuple[tuple[RenditionHint, ...], float]:
    """Rendition hints for one segment and a 0..1 complexity score (how hard the content is to encode).

    ``max_bitrate`` is always the rendition's own static cap: the core declares BANDWIDTH from it, so a
    hint may spend less than the cap but never more. Each rendition's ``rate_control`` says which static
    ladder the hint is measured against (see ``choose_crf``).
    """
    if not renditions:
        return (), 0.0
    vmaf, log_rate = model.curves(features, [r.height for r in renditions])
    hints = []
    for i, r in enumerate(renditions):
        # The static reference: the rung's CRF, or its bitrate when the core's static ladder is fixed-bitrate.
        static_kbps = r.max_bitrate / 1000.0 if r.rate_control == "vbr" else None
        crf = choose_crf(CRF_GRID, vmaf[i], r.crf, policy, kbps=2.0 ** log_rate[i], static_kbps=static_kbps)
        hints.append(RenditionHint(rendition=r.name, crf=crf, max_bitrate=int(r.max_bitrate)))
    # Complexity: the static CRF's predicted rate as a share of the cap, for the top rendition.
    top = int(np.argmax([r.height for r in renditions]))
    kbps = 2.0 ** float(np.interp(renditions[top].crf, CRF_GRID, log_rate[top]))
    complexity = min(1.0, max(0.0, kbps * 1000.0 / max(renditions[top].max_bitrate, 1)))
    return tuple(hints), round(complexity if math.isfinite(complexity) else 0.0, 4)
