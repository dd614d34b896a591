"""Train the bitrate model from the committed corpus table and export it as ONNX.

    .venv/bin/python models/bitrate/train.py                 # corpus.csv -> bitrate.onnx + metrics.json

The model is a one-hidden-layer MLP (tanh) written in numpy and trained with Adam on the ``train`` rows of
``corpus.csv``: inputs are ``sidecars.bitrate.model.model_inputs`` (content features, rendition height,
CRF), outputs are the measured VMAF and log2(kbit/s). The hidden width and weight decay are chosen by
grouped cross-validation over training clips (a clip is never split between folds). The ``eval`` rows are
touched only once, at the end, to report the held-out error that the model card quotes.

Training needs only numpy and the ``onnx`` package (dev extra); inference needs only onnxruntime.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sidecast.sidecars.bitrate.features import FEATURE_NAMES  # noqa: E402
from sidecast.sidecars.bitrate.model import CRF_GRID, Policy, choose_crf, model_inputs, vmaf_at_rate  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 20261125
WIDTHS = (4, 8, 16)
DECAYS = (0.01, 0.1, 0.3)
VBR_MARGINS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)
WORST_CLIP_LIMIT = -0.5  # the vbr margin's limit per training clip, out of fold (the is -1)


# ---------------------------------------------------------------------------- data


def load_corpus(path: Path) -> dict[str, np.ndarray]:
    """The corpus table as column arrays (strings for names, floats for numbers)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} has no rows")
    out: dict[str, np.ndarray] = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        try:
            out[key] = np.array([float(v) for v in values])
        except ValueError:
            out[key] = np.array(values)
    return out


def design(table: dict[str, np.ndarray], mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and measured outputs (VMAF, log2 kbit/s) of the selected rows."""
    feats = np.column_stack([table[n][mask] for n in FEATURE_NAMES])
    x = model_inputs(feats, table["height"][mask], table["crf"][mask]).astype(np.float64)
    y = np.column_stack([table["vmaf"][mask], np.log2(np.maximum(table["kbps"][mask], 1.0))])
    return x, y


# The network learns VMAF as a log "distortion", log2(VMAF_CEIL - VMAF): roughly linear in CRF, and it
# saturates the way VMAF does near 100, so predicted curves flatten where real ones do (the slope policy
# reads slopes). The ONNX graph converts back, so the model's output is plain VMAF.
VMAF_CEIL = 101.0


def to_distortion(vmaf: np.ndarray) -> np.ndarray:
    return np.log2(VMAF_CEIL - np.minimum(vmaf, VMAF_CEIL - 0.5))


def from_distortion(d: np.ndarray) -> np.ndarray:
    return VMAF_CEIL - np.exp2(d)


# ---------------------------------------------------------------------------- the MLP


class Mlp:
    """x -> standardise -> tanh(W1) -> W2 -> un-standardise -> VMAF from distortion; the ONNX graph."""

    def __init__(self, x: np.ndarray, y: np.ndarray, hidden: int, seed: int) -> None:
        y = np.column_stack([to_distortion(y[:, 0]), y[:, 1]])
        rng = np.random.default_rng(seed)
        self.x_mu, self.x_sd = x.mean(0), x.std(0) + 1e-6
        self.y_mu, self.y_sd = y.mean(0), y.std(0) + 1e-6
        d = x.shape[1]
        self.w1 = rng.normal(0, 1 / np.sqrt(d), (d, hidden))
        self.b1 = np.zeros(hidden)
        self.w2 = rng.normal(0, 1 / np.sqrt(hidden), (hidden, y.shape[1]))
        self.b2 = np.zeros(y.shape[1])

    def params(self) -> list[np.ndarray]:
        return [self.w1, self.b1, self.w2, self.b2]

    def forward(self, x: np.ndarray) -> np.ndarray:
        h = np.tanh(((x - self.x_mu) / self.x_sd) @ self.w1 + self.b1)
        out = (h @ self.w2 + self.b2) * self.y_sd + self.y_mu
        return np.column_stack([from_distortion(out[:, 0]), out[:, 1]])

    def fit(self, x: np.ndarray, y: np.ndarray, decay: float, steps: int = 4000, lr: float = 0.01) -> Mlp:
        y = np.column_stack([to_distortion(y[:, 0]), y[:, 1]])
        xs = (x - self.x_mu) / self.x_sd
        ys = (y - self.y_mu) / self.y_sd
        params = self.params()
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        n = len(xs)
        for t in range(1, steps + 1):
            h = np.tanh(xs @ self.w1 + self.b1)
            err = (h @ self.w2 + self.b2 - ys) / n
            g_w2 = h.T @ err + decay * self.w2
            g_b2 = err.sum(0)
            dh = (err @ self.w2.T) * (1 - h * h)
            g_w1 = xs.T @ dh + decay * self.w1
            g_b1 = dh.sum(0)
            for i, (p, g) in enumerate(zip(params, (g_w1, g_b1, g_w2, g_b2), strict=True)):
                m[i] = 0.9 * m[i] + 0.1 * g
                v[i] = 0.999 * v[i] + 0.001 * g * g
                p -= lr * (m[i] / (1 - 0.9**t)) / (np.sqrt(v[i] / (1 - 0.999**t)) + 1e-8)
        return self


def export_onnx(net: Mlp, path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, arr: np.ndarray) -> onnx.TensorProto:
        return numpy_helper.from_array(np.asarray(arr, dtype=np.float32), name)

    d = net.w1.shape[0]
    nodes = [
        helper.make_node("Sub", ["x", "x_mu"], ["xc"]),
        helper.make_node("Div", ["xc", "x_sd"], ["xs"]),
        helper.make_node("MatMul", ["xs", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Tanh", ["h1"], ["h"]),
        helper.make_node("MatMul", ["h", "w2"], ["o0"]),
        helper.make_node("Add", ["o0", "b2"], ["o1"]),
        helper.make_node("Mul", ["o1", "y_sd"], ["o2"]),
        helper.make_node("Add", ["o2", "y_mu"], ["o3"]),
        helper.make_node("Split", ["o3", "split2"], ["dist", "rate"], axis=1),
        helper.make_node("Mul", ["dist", "ln2"], ["dist_e"]),
        helper.make_node("Exp", ["dist_e"], ["dist_lin"]),
        helper.make_node("Sub", ["ceil", "dist_lin"], ["vmaf"]),
        helper.make_node("Concat", ["vmaf", "rate"], ["y"], axis=1),
    ]
    inits = [const("x_mu", net.x_mu), const("x_sd", net.x_sd), const("w1", net.w1), const("b1", net.b1),
             const("w2", net.w2), const("b2", net.b2), const("y_sd", net.y_sd), const("y_mu", net.y_mu),
             numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "split2"),
             const("ln2", np.array([np.log(2.0)])), const("ceil", np.array([VMAF_CEIL]))]
    graph = helper.make_graph(
        nodes, "sidecast_bitrate",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="sidecast")
    model.ir_version = 8
    model.doc_string = ("sidecast bitrate model: segment features + height + CRF -> [VMAF (v0.6.1, at the "
                        "rendition's resolution), log2 kbit/s]. See models/bitrate/README.md.")
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


# ---------------------------------------------------------------------------- evaluation


def crf_for_target(crfs: np.ndarray, vmaf: np.ndarray, target: float) -> float:
    """Highest CRF reaching ``target`` on a (monotone-ised) measured or predicted curve, interpolated."""
    order = np.argsort(crfs)
    c, v = crfs[order], np.minimum.accumulate(vmaf[order])
    if v[0] < target:
        return float(c[0])
    if v[-1] >= target:
        return float(c[-1])
    i = int(np.nonzero(v < target)[0][0])  # first CRF below target; the crossing is between i-1 and i
    frac = (v[i - 1] - target) / max(v[i - 1] - v[i], 1e-9)
    return float(c[i - 1] + frac * (c[i] - c[i - 1]))


def heldout_metrics(table: dict[str, np.ndarray], predict, target: float) -> dict[str, float]:
    """Errors on the eval rows: VMAF and rate per encode, and CRF-for-target per (segment, height)."""
    mask = table["split"] == "eval"
    x, y = design(table, mask)
    pred = predict(x)
    vmaf_err = pred[:, 0] - y[:, 0]
    rate_err = pred[:, 1] - y[:, 1]
    keys = [(c, s, h) for c, s, h in zip(table["clip"][mask], table["segment"][mask], table["height"][mask],
                                          strict=True)]
    crf_errs = []
    for key in sorted(set(keys)):
        sel = np.array([k == key for k in keys])
        crfs = x[sel, -1] * 6.0 + 26.0
        crf_errs.append(crf_for_target(crfs, pred[sel, 0], target) - crf_for_target(crfs, y[sel, 0], target))
    crf_err = np.array(crf_errs)
    return {
        "eval_rows": int(mask.sum()),
        "vmaf_mae": round(float(np.abs(vmaf_err).mean()), 3),
        "vmaf_bias": round(float(vmaf_err.mean()), 3),
        "rate_mae_pct": round(float((2.0 ** np.abs(rate_err) - 1.0).mean() * 100), 2),
        "crf_for_target_mae": round(float(np.abs(crf_err).mean()), 3),
        "crf_for_target_max": round(float(np.abs(crf_err).max()), 3),
    }


def simulate(table: dict[str, np.ndarray], mask: np.ndarray, predict, policy: Policy, static_crf: float = 23.0,
             baseline: str = "crf") -> dict[str, float]:
    """What a policy would do against the measured curves: bits saved and VMAF change versus the static ladder.

    Per (segment, height) the model's curves pick a CRF (as in the sidecar); bits and VMAF at that CRF are
    read off the measured points (log-linear for bits, linear for VMAF; CRFs outside the measured range
    are evaluated at its end). ``predict=None`` simulates a perfect model (the ceiling of the policy). Savings are over all bits; VMAF deltas are per clip (mean over its
    segments and heights), as in bench/bitrate.py.

    ``baseline="crf"``: the static ladder is capped CRF at ``static_crf``. ``baseline="vbr"``: it is the
    fixed-bitrate ladder at each row's ``max_bitrate``. The corpus holds no ABR encodes, so that baseline is
    estimated: bits = the rate x the segment's duration (one-pass ABR lands at 0.95-1.10x the rate, see
    ``core.ladder``), VMAF = the measured capped-CRF curve at that rate (``vmaf_at_rate``). bench/bitrate.py
    measures the real ABR encodes.
    """
    keys = sorted(set(zip(table["clip"][mask], table["segment"][mask], table["height"][mask], strict=True)))
    per_clip: dict[str, list[float]] = {}
    for clip, seg, height in keys:
        sel = mask & (table["clip"] == clip) & (table["segment"] == seg) & (table["height"] == height)
        order = np.argsort(table["crf"][sel])
        crfs, vm, bits = (table[k][sel][order] for k in ("crf", "vmaf", "bits"))
        if predict is None:  # a perfect model: the measured curves themselves
            pred = np.column_stack([np.interp(CRF_GRID, crfs, vm), np.interp(CRF_GRID, crfs, np.log2(bits / 2000.0))])
        else:
            feats = np.column_stack([table[n][sel][:1] for n in FEATURE_NAMES])
            pred = predict(model_inputs(np.repeat(feats, len(CRF_GRID), 0), np.full(len(CRF_GRID), height), CRF_GRID))
        cap = float(table["max_bitrate"][sel][0])
        static_kbps = cap / 1000.0 if baseline == "vbr" else None
        crf = choose_crf(CRF_GRID, pred[:, 0], static_crf, policy, kbps=2.0 ** pred[:, 1], static_kbps=static_kbps)
        # Outside the measured CRFs: bits extrapolated log-linearly from the nearest two points, VMAF held at
        # the end value (extra bits buy no quality: pessimistic for the hints on both counts).
        if crf < crfs[0]:
            lb = np.log2(bits[0]) + (crfs[0] - crf) * (np.log2(bits[0]) - np.log2(bits[1])) / (crfs[1] - crfs[0])
            b_hint, v_hint = 2.0 ** lb, float(vm[0])
        else:
            c = float(min(crf, crfs[-1]))
            b_hint, v_hint = 2.0 ** np.interp(c, crfs, np.log2(bits)), float(np.interp(c, crfs, vm))
        if baseline == "vbr":
            seconds = float(np.median(bits / (table["kbps"][sel][order] * 1000.0)))
            b_static = cap * seconds
            v_static = vmaf_at_rate(vm, bits / seconds / 1000.0, cap / 1000.0)
        else:
            b_static = 2.0 ** np.interp(static_crf, crfs, np.log2(bits))
            v_static = float(np.interp(static_crf, crfs, vm))
        acc = per_clip.setdefault(str(clip), [0.0, 0.0, 0.0, 0.0])
        acc[0] += b_static
        acc[1] += b_hint
        acc[2] += v_hint - v_static
        acc[3] += 1
    static = sum(a[0] for a in per_clip.values())
    hinted = sum(a[1] for a in per_clip.values())
    deltas = [a[2] / a[3] for a in per_clip.values()]
    return {"saved_pct": round(100 * (1 - hinted / static), 2), "mean_vmaf_delta": round(float(np.mean(deltas)), 3),
            "worst_clip_vmaf_delta": round(float(np.min(deltas)), 3)}


def grouped_cv(table: dict[str, np.ndarray], hidden: int, decay: float, folds: int = 5
               ) -> tuple[float, dict[str, Mlp]]:
    """Out-of-fold VMAF MAE over training clips, and the fold models (keyed by the clips they did not see)."""
    train = table["split"] == "train"
    clips = sorted(set(table["clip"][train]))
    rng = np.random.default_rng(SEED)
    rng.shuffle(clips)
    errs = []
    fold_of: dict[str, Mlp] = {}
    for k in range(folds):
        held = set(clips[k::folds])
        in_held = np.array([c in held for c in table["clip"]])
        xa, ya = design(table, train & ~in_held)
        xb, yb = design(table, train & in_held)
        net = Mlp(xa, ya, hidden, SEED + k).fit(xa, ya, decay)
        errs.append(np.abs(net.forward(xb)[:, 0] - yb[:, 0]))
        fold_of.update({c: net for c in held})
    return float(np.concatenate(errs).mean()), fold_of


def choose_slope(table: dict[str, np.ndarray], fold_of: dict[str, Mlp]) -> tuple[Policy, list[dict]]:
    """The slope policy's operating point (VMAF per Mbit/s and guard), chosen on training clips only.

    Each training clip is decided by the fold model that never saw it, so the choice reflects the model's
    real errors. Picks the point that saves the most bits at equal or better mean VMAF (the issue's
    criterion); if none keeps the mean, the one with the best mean VMAF.
    """
    static_bits = {c: float(table["bits"][(table["clip"] == c) & (table["crf"] == 23)].sum()) for c in fold_of}
    total = sum(static_bits.values())
    trials = []
    for drop in (1.0, 0.5):
        for lam in (8.0, 12.0, 16.0, 24.0, 32.0, 48.0, 64.0):
            policy = Policy(vmaf_per_mbps=lam, max_drop=drop)
            res = {c: simulate(table, table["clip"] == c, net.forward, policy) for c, net in fold_of.items()}
            saved = sum(static_bits[c] * r["saved_pct"] for c, r in res.items()) / total
            deltas = [r["mean_vmaf_delta"] for r in res.values()]
            trials.append({"vmaf_per_mbps": lam, "max_drop": drop, "saved_pct": round(saved, 2),
                           "mean_vmaf_delta": round(float(np.mean(deltas)), 3),
                           "worst_clip_vmaf_delta": round(float(np.min(deltas)), 3)})
            print(f"slope {lam:5.1f} VMAF/Mbit/s, max drop {drop:g}, training clips out of fold: saved {saved:6.1f}%,"
                  f" mean VMAF {np.mean(deltas):+.2f}, worst clip {np.min(deltas):+.2f}", flush=True)
    ok = [t for t in trials if t["mean_vmaf_delta"] >= 0.0]
    best = max(ok, key=lambda t: t["saved_pct"]) if ok else max(trials, key=lambda t: t["mean_vmaf_delta"])
    return Policy(vmaf_per_mbps=best["vmaf_per_mbps"], max_drop=best["max_drop"]), trials


def choose_vbr_margin(table: dict[str, np.ndarray], fold_of: dict[str, Mlp], slope: Policy
                      ) -> tuple[Policy, list[dict]]:
    """The guard margin against a fixed-bitrate static ladder (``Policy.vbr_margin``), on training clips only.

    As ``choose_slope``, each training clip is decided by the fold model that never saw it, against the
    estimated fixed-bitrate baseline (``simulate(..., baseline="vbr")``), at the slope policy's chosen rate
    and guard. Picks the margin that saves the most bits with mean VMAF >= static and no training clip more
    than 0.5 VMAF below static (``WORST_CLIP_LIMIT``: half the issue's allowance, because the baseline here
    is an estimate and unseen content is another draw); if none qualifies, the margin with the best worst
    clip. A margin large enough to make the guard unreachable everywhere degenerates into "min CRF for
    every segment" (the model then decides nothing), which the trials show as flat savings.
    """
    at23 = table["crf"] == 23
    seconds = table["bits"] / (table["kbps"] * 1000.0)
    static_bits = {c: float((table["max_bitrate"] * seconds)[(table["clip"] == c) & at23].sum()) for c in fold_of}
    total = sum(static_bits.values())
    trials = []
    for margin in VBR_MARGINS:
        policy = replace(slope, vbr_margin=margin)
        res = {c: simulate(table, table["clip"] == c, net.forward, policy, baseline="vbr") for c, net in fold_of.items()}
        saved = sum(static_bits[c] * r["saved_pct"] for c, r in res.items()) / total
        deltas = [r["mean_vmaf_delta"] for r in res.values()]
        trials.append({"vbr_margin": margin, "saved_pct": round(saved, 2),
                       "mean_vmaf_delta": round(float(np.mean(deltas)), 3),
                       "worst_clip_vmaf_delta": round(float(np.min(deltas)), 3)})
        print(f"fixed-bitrate baseline, margin {margin:3.1f} VMAF, training clips out of fold: saved {saved:6.1f}%, "
              f"mean VMAF {np.mean(deltas):+.2f}, worst clip {np.min(deltas):+.2f}", flush=True)
    ok = [t for t in trials if t["mean_vmaf_delta"] >= 0.0 and t["worst_clip_vmaf_delta"] >= WORST_CLIP_LIMIT]
    best = max(ok, key=lambda t: t["saved_pct"]) if ok else max(trials, key=lambda t: t["worst_clip_vmaf_delta"])
    return replace(slope, vbr_margin=best["vbr_margin"]), trials


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus.csv")
    ap.add_argument("-o", "--output", type=Path, default=HERE / "bitrate.onnx")
    args = ap.parse_args(argv)
    table = load_corpus(args.corpus)
    best = None
    for hidden in WIDTHS:
        for decay in DECAYS:
            err, folds = grouped_cv(table, hidden, decay)
            print(f"cv hidden={hidden:2d} decay={decay:g}: VMAF MAE {err:.3f}", flush=True)
            if best is None or err < best[0]:
                best = (err, hidden, decay, folds)
    assert best is not None
    _, hidden, decay, folds = best
    chosen, trials = choose_slope(table, folds)
    chosen_vbr, vbr_trials = choose_vbr_margin(table, folds, chosen)
    x, y = design(table, table["split"] == "train")
    net = Mlp(x, y, hidden, SEED).fit(x, y, decay)
    export_onnx(net, args.output)
    target = Policy().target_vmaf
    evals = table["split"] == "eval"
    metrics = {
        "hidden": hidden, "decay": decay, "train_rows": int(len(x)), "cv_vmaf_mae": round(best[0], 3),
        "target_vmaf": target, **heldout_metrics(table, net.forward, target),
        "chosen_vmaf_per_mbps": chosen.vmaf_per_mbps, "chosen_max_drop": chosen.max_drop,
        "slope_trials_train_oof": trials,
        "eval_simulated_slope": simulate(table, evals, net.forward, chosen),
        "eval_simulated_target": simulate(table, evals, net.forward, Policy(mode="target")),
        "eval_perfect_model_slope": simulate(table, evals, None, chosen),
        "train_perfect_model_slope": simulate(table, table["split"] == "train", None, chosen),
        # Against the fixed-bitrate static ladder (estimated from the capped-CRF curves, see simulate).
        "chosen_vbr_margin": chosen_vbr.vbr_margin,
        "vbr_trials_train_oof": vbr_trials,
        "eval_simulated_slope_vbr": simulate(table, evals, net.forward, chosen_vbr, baseline="vbr"),
        "eval_perfect_model_slope_vbr": simulate(table, evals, None, chosen_vbr, baseline="vbr"),
        "train_perfect_model_slope_vbr": simulate(table, table["split"] == "train", None, chosen_vbr,
                                                  baseline="vbr"),
    }
    (args.output.with_name("metrics.json")).write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
