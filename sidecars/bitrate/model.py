"""The rate model and the decision built on it: from segment features to a size and a CRF per rendition.

The ONNX model (``models/bitrate/bitrate.onnx``, trained by ``models/bitrate/train.py``) predicts, for a
segment's content features, a rendition (its display height), an encode scale (the encoded picture's size
as a fraction of the rendition's: 1, 0.75, 0.5) and a CRF, two numbers: the VMAF the encode reaches at the
rendition's display size (scaled up when it was encoded smaller) and its bit rate as log2(kbit/s), under
the rendition's VBV cap. Evaluating it over every scale and a grid of CRFs in one batched call gives each
rendition's predicted rate/quality points; ``choose`` (a pure function) then picks the point: the
per-segment convex hull of sizes and qualities.

Two policies (``Policy``):

* ``"hull"`` (default): the fewest predicted bits whose predicted VMAF is at most ``max_drop`` below what
  the static ladder would give the same segment (equal quality, fewer bits: what the default ladder plus
  the sidecar is for). The static reference is the predicted VMAF at the rung's own size and CRF (capped
  CRF ladder), or at its bitrate (``"vbr"``, the fixed-bitrate ladder) plus ``vbr_margin``. Reading the
  reference off the same predicted curves makes the choice depend on the model's *differences* between
  settings for one segment, which it predicts far better than absolute quality.
* ``"target"`` (``--target-vmaf N``): the fewest predicted bits whose predicted VMAF reaches N; where no
  setting reaches it, the best predicted quality (the rung's size at the lowest CRF, up to its cap).

Inputs the model was not trained on are clamped: display heights outside 360..720 use the nearest.
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
# The CRFs the model is evaluated at: the corpus measured 18..44 (a little extrapolation below 18). The hull
# policy stops at ``Policy.max_crf`` (38); the target policy may go to ``Policy.target_max_crf`` (44), where
# easy content (a slow pan over a clean photograph) first falls to the VMAF a user asks for.
CRF_GRID = np.arange(14.0, 44.01, 0.5, dtype=np.float32)
SCALES = (1.0, 0.75, 0.5)  # the encode sizes the corpus measured, as fractions of the rendition's size

# Features that span orders of magnitude enter the model as log1p; the probe's bits per pixel as log2.
_LOG_FEATURES = (0, 1, 2, 3, 4, 5, 9, 11, 14, 15, 16, 17)
_PROBE_FEATURES = (12, 13)


class ModelError(RuntimeError):
    """The model file is missing or unusable; the message names the file and what to do."""


def model_inputs(features: np.ndarray, heights: np.ndarray, scales: np.ndarray, crfs: np.ndarray) -> np.ndarray:
    """Rows of the model's input matrix. Shared by training and inference so both see the same numbers.

    ``features`` is (N, N_FEATURES) in ``FEATURE_NAMES`` order; ``heights`` (the rendition's display height),
    ``scales`` and ``crfs`` are (N,).
    """
    f = np.asarray(features, dtype=np.float64).reshape(-1, N_FEATURES).copy()
    f[:, list(_LOG_FEATURES)] = np.log1p(np.maximum(f[:, list(_LOG_FEATURES)], 0.0))
    f[:, 6] = np.log1p(100.0 * np.maximum(f[:, 6], 0.0))  # global motion, % of width per frame
    f[:, 10] = f[:, 10] / 255.0
    f[:, list(_PROBE_FEATURES)] = np.log2(np.maximum(f[:, list(_PROBE_FEATURES)], 0.0) + 0.01)
    h = np.clip(np.asarray(heights, dtype=np.float64), TRAINED_HEIGHTS[0], TRAINED_HEIGHTS[1])
    h_in = np.log2(h / 360.0)
    s_in = np.log2(np.clip(np.asarray(scales, dtype=np.float64), 0.25, 1.0))
    c_in = (np.asarray(crfs, dtype=np.float64) - 26.0) / 6.0
    return np.column_stack([f, h_in, s_in, c_in]).astype(np.float32)


@dataclass(frozen=True)
class Policy:
    """How predicted rate/quality points become a size and a CRF. Defaults are the documented operating point.

    ``mode="hull"``: fewest bits within ``max_drop`` VMAF of the static ladder's predicted quality.
    ``mode="target"``: fewest bits whose predicted VMAF reaches ``target_vmaf + target_margin`` (the margin
    makes up for the model's optimism on content it knows least, chosen out of fold). ``hull`` stays within
    ``[min_crf, max_crf]``, ``target`` within ``[min_crf, target_max_crf]`` (easy content reaches a target
    only far up the CRF scale: a slow pan over a clean photograph keeps VMAF 99.5 at CRF 33). Both choose among ``scales`` (1 = the rendition's size; ``(1.0,)`` turns the resolution choice off).
    ``resize_margin`` is asked of a smaller picture on top (predicted VMAF at least that much higher than a
    full-size point would need): the model is least sure of what scaling does to fine detail, and a wrong
    guess there costs more than a wrong CRF. ``max_drop``, ``resize_margin``, ``target_margin`` and ``vbr_margin``
    were chosen by ``models/bitrate/train.py`` on training clips only.
    """

    mode: Literal["hull", "target"] = "hull"
    max_drop: float = 0.25
    resize_margin: float = 100.0
    target_vmaf: float = 93.0
    target_margin: float = 2.0
    vbr_margin: float = 0.0
    min_crf: float = 16.0
    max_crf: float = 38.0
    target_max_crf: float = 44.0
    scales: tuple[float, ...] = SCALES


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


def static_reference(crfs: np.ndarray, vmaf: np.ndarray, kbps: np.ndarray, static_crf: float,
                     static_kbps: float | None, policy: Policy) -> float:
    """The predicted VMAF of the static ladder for this segment (``vmaf``/``kbps``: the rung's own size)."""
    curve = np.minimum.accumulate(np.asarray(vmaf, dtype=np.float64))
    if static_kbps is None:
        return float(np.interp(static_crf, np.asarray(crfs, dtype=np.float64), curve))
    return vmaf_at_rate(curve, np.asarray(kbps, dtype=np.float64), static_kbps) + policy.vbr_margin


def choose(crfs: np.ndarray, scales: Sequence[float], vmaf: np.ndarray, kbps: np.ndarray, reference: float,
           policy: Policy, static_kbps: float | None = None) -> tuple[float, float] | None:
    """The (scale, CRF) for one rendition of one segment, or None for "keep the static settings".

    ``vmaf`` and ``kbps`` are (len(scales), len(crfs)) predictions. Each scale's quality curve is made
    monotone (quality never rises with CRF) before it is read, so a wiggle of the model cannot pick a CRF
    above a worse one. Among the admissible points (hull: within ``max_drop`` of ``reference``; target:
    at least ``target_vmaf``) the one with the fewest predicted bits wins; ties go to the larger picture,
    then the higher CRF. When no point is admissible, hull keeps the static settings, unless ``static_kbps``
    (what the static encode spends: a fixed-bitrate rung's rate) is more than the best predicted quality in
    range costs: then that point, as good as the encoder is allowed to make it and cheaper.
    """
    crfs = np.asarray(crfs, dtype=np.float64)
    v = np.minimum.accumulate(np.asarray(vmaf, dtype=np.float64).reshape(len(scales), -1), axis=1)
    r = np.asarray(kbps, dtype=np.float64).reshape(len(scales), -1)
    top = policy.target_max_crf if policy.mode == "target" else policy.max_crf
    in_range = ((crfs >= policy.min_crf) & (crfs <= top))[None, :]
    if policy.mode == "target":
        required = policy.target_vmaf + policy.target_margin
    else:
        required = reference - policy.max_drop
    margin = np.array([0.0 if s >= 1.0 else policy.resize_margin for s in scales])[:, None]
    ok = in_range & (v >= required + margin)
    if not ok.any():
        masked = np.where(in_range, v, -np.inf)
        bi, bj = (int(k) for k in np.unravel_index(int(np.argmax(masked)), masked.shape))
        if policy.mode == "target":  # unreachable: the best predicted quality, up to the cap
            return float(scales[bi]), float(crfs[bj])
        if static_kbps is not None and r[bi, bj] < static_kbps:
            return float(scales[bi]), float(crfs[bj])
        return None
    cost = np.where(ok, r, np.inf)
    best = cost.min()
    cand: list[list[int]] = np.argwhere(cost <= best * (1 + 1e-9)).tolist()
    # larger picture first (scales are given largest first), then the highest CRF
    ci, cj = min(cand, key=lambda ij: (-scales[ij[0]], -crfs[ij[1]]))
    return float(scales[ci]), float(crfs[cj])


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """A rendition's picture size at ``scale`` (even dimensions, its aspect)."""
    if scale >= 1.0:
        return width, height
    return max(2, int(round(width * scale / 2.0)) * 2), max(2, int(round(height * scale / 2.0)) * 2)


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
        width = self.session.get_inputs()[0].shape[1]
        if width != N_FEATURES + 3:
            raise ModelError(f"bitrate model {self.path} takes {width} inputs, this sidecar computes "
                             f"{N_FEATURES + 3}: retrain it with models/bitrate/train.py")

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(N, 2) predictions for model-input rows: VMAF and log2(kbit/s)."""
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return np.asarray(out, dtype=np.float64)

    def curves(self, features: np.ndarray, heights: Sequence[int], scales: Sequence[float] = SCALES,
               crfs: np.ndarray = CRF_GRID) -> tuple[np.ndarray, np.ndarray]:
        """Predicted VMAF and log2 kbit/s for each height, scale and CRF: two (heights, scales, crfs) arrays."""
        n_h, n_s, n_c = len(heights), len(scales), len(crfs)
        n = n_h * n_s * n_c
        feats = np.repeat(np.asarray(features, dtype=np.float32).reshape(1, -1), n, axis=0)
        hs = np.repeat(np.asarray(heights, dtype=np.float32), n_s * n_c)
        ss = np.tile(np.repeat(np.asarray(scales, dtype=np.float32), n_c), n_h)
        cs = np.tile(np.asarray(crfs, dtype=np.float32), n_h * n_s)
        pred = self.predict(model_inputs(feats, hs, ss, cs))
        return pred[:, 0].reshape(n_h, n_s, n_c), pred[:, 1].reshape(n_h, n_s, n_c)


def decide(model: RateModel, features: np.ndarray, renditions: Sequence[RenditionInfo], policy: Policy
           ) -> tuple[tuple[RenditionHint, ...], float]:
    """Rendition hints for one segment and a 0..1 complexity score (how hard the content is to encode).

    ``max_bitrate`` is always the rendition's own static cap: the core declares BANDWIDTH from it, so a
    hint may spend less than the cap but never more. A rendition whose best choice is the static setting
    gets a hint that keeps it (CRF 0, own size). Each rendition's ``rate_control`` says which static
    ladder the hint is measured against (see ``static_reference``).
    """
    if not renditions:
        return (), 0.0
    scales = tuple(policy.scales) or (1.0,)
    if scales[0] != 1.0:
        scales = (1.0, *[s for s in scales if s != 1.0])
    vmaf, log_rate = model.curves(features, [r.height for r in renditions], scales)
    hints = []
    for i, r in enumerate(renditions):
        kbps = 2.0 ** log_rate[i]
        static_kbps = r.max_bitrate / 1000.0 if r.rate_control == "vbr" else None
        ref = static_reference(CRF_GRID, vmaf[i, 0], kbps[0], r.crf, static_kbps, policy)
        choice = choose(CRF_GRID, scales, vmaf[i], kbps, ref, policy, static_kbps=static_kbps)
        if choice is None:
            hints.append(RenditionHint(rendition=r.name, crf=0.0, max_bitrate=int(r.max_bitrate)))
            continue
        scale, crf = choice
        w, h = scaled_size(r.width, r.height, scale) if scale < 1.0 else (0, 0)
        hints.append(RenditionHint(rendition=r.name, crf=crf, max_bitrate=int(r.max_bitrate), width=w, height=h))
    # Complexity: the static CRF's predicted rate as a share of the cap, for the top rendition.
    top = int(np.argmax([r.height for r in renditions]))
    kbps_top = 2.0 ** float(np.interp(renditions[top].crf, CRF_GRID, log_rate[top, 0]))
    complexity = min(1.0, max(0.0, kbps_top * 1000.0 / max(renditions[top].max_bitrate, 1)))
    return tuple(hints), round(complexity if math.isfinite(complexity) else 0.0, 4)
