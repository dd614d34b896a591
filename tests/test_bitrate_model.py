"""The shipped bitrate model, its model card, and the pure parts of the sidecar (features, CRF choice)."""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sidecast.contract.records import RenditionInfo
from sidecast.core.ladder import DEFAULT_LADDER
from sidecast.sidecars.bitrate import FEATURE_NAMES, Policy, RateModel, choose_crf, decide, segment_features
from sidecast.sidecars.bitrate.features import FeatureError
from sidecast.sidecars.bitrate.model import CRF_GRID, ModelError

MODELS = Path(__file__).resolve().parents[1] / "models" / "bitrate"


def _train_module():
    spec = importlib.util.spec_from_file_location("bitrate_train", MODELS / "train.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bitrate_train"] = mod
    spec.loader.exec_module(mod)
    return mod


def _card_figure(label: str) -> float:
    text = (MODELS / "README.md").read_text()
    m = re.search(rf"\|\s*{re.escape(label)}\s*\|\s*([0-9.]+)", text)
    assert m, f"model card has no row {label!r}"
    return float(m.group(1))


@pytest.fixture(scope="module")
def model() -> RateModel:
    return RateModel()


def test_model_file_loads_and_predicts_both_outputs(model: RateModel) -> None:
    table = _train_module().load_corpus(MODELS / "corpus.csv")
    row = int(np.flatnonzero(table["clip"] == "bikes")[0])
    feats = np.array([table[n][row] for n in FEATURE_NAMES], np.float32)
    vmaf, log_rate = model.curves(feats, [360, 720])
    assert vmaf.shape == log_rate.shape == (2, len(CRF_GRID))
    assert np.isfinite(vmaf).all() and np.isfinite(log_rate).all()
    # quality and rate fall as CRF rises, over the whole grid, on average
    assert vmaf[:, 0].mean() > vmaf[:, -1].mean() + 10
    assert log_rate[:, 0].mean() > log_rate[:, -1].mean() + 1


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        RateModel(tmp_path / "nope.onnx")


def test_model_card_heldout_error_is_reproduced_from_the_corpus_table(model: RateModel) -> None:
    train = _train_module()
    table = train.load_corpus(MODELS / "corpus.csv")
    assert {"train", "eval"} <= set(table["split"])
    assert not set(table["clip"][table["split"] == "train"]) & set(table["clip"][table["split"] == "eval"])
    m = train.heldout_metrics(table, model.predict, Policy().target_vmaf)
    assert m["vmaf_mae"] == pytest.approx(_card_figure("held-out VMAF MAE"), abs=0.01)
    assert m["crf_for_target_mae"] == pytest.approx(_card_figure("held-out CRF-for-target MAE"), abs=0.01)
    assert m["rate_mae_pct"] == pytest.approx(_card_figure("held-out bit-rate error %"), abs=0.05)


def test_target_policy_reaches_the_target_with_the_fewest_bits() -> None:
    crfs = np.arange(16.0, 40.0, 1.0)
    target = Policy(mode="target", target_vmaf=93.0, max_drop=1.0)
    curve = 110.0 - 1.0 * crfs  # 93 at CRF 17, 87 at the static 23
    assert choose_crf(crfs, curve, 23.0, target) == 17.0
    easy = 130.0 - 1.0 * crfs  # far above the target: 107 at the static 23
    # never more than max_drop below the static CRF's quality: 107 - 1 = 106 -> CRF 24
    assert choose_crf(crfs, easy, 23.0, target) == 24.0
    assert choose_crf(crfs, easy, 23.0, replace(target, max_drop=100.0, max_crf=30)) == 30.0
    hopeless = np.full_like(crfs, 50.0)
    assert choose_crf(crfs, hopeless, 23.0, replace(target, min_crf=18.0)) == 18.0


def test_slope_policy_buys_quality_where_it_is_cheap_and_saves_where_it_is_dear() -> None:
    crfs = np.arange(16.0, 40.0, 1.0)
    curve = 110.0 - 1.0 * crfs  # one VMAF point per CRF step, everywhere
    cheap = 100.0 * 2.0 ** (-(crfs - 23) / 6)  # 100 kbit/s at CRF 23: a VMAF point costs ~12 kbit/s
    dear = 4000.0 * 2.0 ** (-(crfs - 23) / 6)  # 4 Mbit/s at CRF 23: a VMAF point costs ~460 kbit/s
    slope = Policy(mode="slope", vmaf_per_mbps=16.0, max_drop=1.0)
    assert choose_crf(crfs, curve, 23.0, slope, kbps=cheap) == 16.0  # min CRF: quality is nearly free
    assert choose_crf(crfs, curve, 23.0, slope, kbps=dear) == 24.0  # up to the 1-point guard, no further
    assert choose_crf(crfs, curve, 23.0, replace(slope, max_drop=100.0), kbps=dear) > 24.0
    with pytest.raises(ValueError, match="rate curve"):
        choose_crf(crfs, curve, 23.0, slope)


def test_choose_crf_ignores_a_wiggle_in_the_curve() -> None:
    crfs = np.arange(16.0, 40.0, 1.0)
    curve = 110.0 - crfs
    curve[10] = 99.0  # a spurious bump at CRF 26
    assert choose_crf(crfs, curve, 23.0, Policy(mode="target", target_vmaf=93.0, max_drop=100.0)) == 17.0


def test_features_see_motion_cuts_and_detail() -> None:
    rng = np.random.default_rng(1)
    flat = np.full((72, 128), 128, np.uint8)
    still = segment_features([flat] * 5)
    ti = FEATURE_NAMES.index("ti_mean")
    assert still[ti] == 0.0 and still[FEATURE_NAMES.index("cut_rate")] == 0.0
    noisy = [rng.integers(0, 256, (72, 128), dtype=np.uint8) for _ in range(5)]
    busy = segment_features(noisy)
    assert busy[ti] > 50 and busy[FEATURE_NAMES.index("si_mean")] > still[FEATURE_NAMES.index("si_mean")]
    cut = segment_features([flat, flat, np.full((72, 128), 20, np.uint8), np.full((72, 128), 20, np.uint8)])
    assert cut[FEATURE_NAMES.index("cut_rate")] == pytest.approx(1 / 3)
    with pytest.raises(FeatureError, match="gray8"):
        segment_features([np.zeros((72, 128, 3), np.uint8)])


def test_decide_keeps_every_rendition_at_or_under_its_cap(model: RateModel) -> None:
    rends = [RenditionInfo(r.name, r.height * 16 // 9, r.height, r.max_bitrate, r.crf) for r in DEFAULT_LADDER]
    rng = np.random.default_rng(3)
    for _ in range(20):
        feats = rng.uniform(0, 60, len(FEATURE_NAMES)).astype(np.float32)
        hints, complexity = decide(model, feats, rends, Policy())
        assert [h.rendition for h in hints] == [r.name for r in rends]
        for h, r in zip(hints, rends, strict=True):
            assert h.max_bitrate == r.max_bitrate and 16 <= h.crf <= 38
        assert 0.0 <= complexity <= 1.0


def test_default_policy_is_the_operating_point_training_chose() -> None:
    import json

    metrics = json.loads((MODELS / "metrics.json").read_text())
    assert Policy().mode == "slope"
    assert Policy().vmaf_per_mbps == metrics["chosen_vmaf_per_mbps"]
    assert Policy().max_drop == metrics["chosen_max_drop"]


def test_default_vbr_margin_is_the_one_training_chose() -> None:
    import json

    metrics = json.loads((MODELS / "metrics.json").read_text())
    assert Policy().vbr_margin == metrics["chosen_vbr_margin"]


def test_vmaf_at_rate_reads_the_best_quality_that_fits_the_rate() -> None:
    from sidecast.sidecars.bitrate.model import vmaf_at_rate

    crfs = np.arange(16.0, 40.0, 1.0)
    vmaf = 110.0 - crfs
    kbps = 1000.0 * 2.0 ** (-(crfs - 23) / 6)  # 1000 kbit/s at CRF 23, halving every 6 CRF
    assert vmaf_at_rate(vmaf, kbps, 1000.0) == pytest.approx(87.0)  # exactly at CRF 23
    assert vmaf_at_rate(vmaf, kbps, 500.0) == pytest.approx(81.0)  # CRF 29
    assert vmaf_at_rate(vmaf, kbps, 1e6) == pytest.approx(94.0)  # never reaches the rate: the lowest CRF
    assert vmaf_at_rate(vmaf, kbps, 1.0) == pytest.approx(71.0)  # always above it: the highest CRF


def test_the_guard_follows_the_static_ladder_the_core_uses() -> None:
    crfs = np.arange(16.0, 40.0, 1.0)
    curve = 110.0 - crfs
    kbps = 400.0 * 2.0 ** (-(crfs - 23) / 6)  # 400 kbit/s at CRF 23: easy content
    p = Policy(mode="target", target_vmaf=50.0, max_drop=1.0, vbr_margin=0.0, min_crf=16.0)
    # capped CRF 23 reaches 87: the guard allows 86 -> CRF 24
    assert choose_crf(crfs, curve, 23.0, p, kbps=kbps) == 24.0
    # a fixed 1600 kbit/s ladder spends 4x (CRF 11, beyond the curve): the guard allows no higher than CRF 17
    assert choose_crf(crfs, curve, 23.0, p, kbps=kbps, static_kbps=1600.0) == 17.0
    # at 800 kbit/s (CRF 17) the guard is 93 - 1 -> CRF 18; the margin raises it by 1 -> CRF 17
    assert choose_crf(crfs, curve, 23.0, p, kbps=kbps, static_kbps=800.0) == 18.0
    assert choose_crf(crfs, curve, 23.0, replace(p, vbr_margin=1.0), kbps=kbps, static_kbps=800.0) == 17.0
    with pytest.raises(ValueError, match="rate curve"):
        choose_crf(crfs, curve, 23.0, p, static_kbps=800.0)


def test_decide_reads_each_renditions_rate_control(model: RateModel) -> None:
    """A fixed-bitrate ladder spends the rung's rate on a slow pan over a photo (capped CRF 23 far less) and
    reaches a higher quality: the hint measured against it aims higher (a lower CRF)."""
    table = _train_module().load_corpus(MODELS / "corpus.csv")
    row = int(np.flatnonzero(table["clip"] == "astronaut_pan")[0])
    feats = np.array([table[n][row] for n in FEATURE_NAMES], np.float32)
    crf_r = [RenditionInfo(r.name, r.height * 16 // 9, r.height, r.max_bitrate, r.crf) for r in DEFAULT_LADDER[1:]]
    vbr_r = [replace(r, rate_control="vbr") for r in crf_r]
    crf_hints, _ = decide(model, feats, crf_r, Policy())
    vbr_hints, _ = decide(model, feats, vbr_r, Policy())
    assert all(v.crf < c.crf for v, c in zip(vbr_hints, crf_hints, strict=True)), (vbr_hints, crf_hints)
    assert all(h.max_bitrate == r.max_bitrate for h, r in zip(vbr_hints, vbr_r, strict=True))


def test_segment_settings_never_raise_the_cap_in_either_mode() -> None:
    from sidecast.core.ladder import segment_settings

    assert segment_settings("crf", 23.0, 800_000, None, None) == (23.0, 800_000)
    assert segment_settings("vbr", 23.0, 800_000, None, None) == (None, 800_000)  # ABR at the rung's rate
    for mode in ("crf", "vbr"):
        assert segment_settings(mode, 23.0, 800_000, 18.0, 16_000_000) == (18.0, 800_000)
        assert segment_settings(mode, 23.0, 800_000, 30.0, 500_000) == (30.0, 500_000)
        assert segment_settings(mode, 23.0, 800_000, 18.0, 0) == (18.0, 800_000)
    # a hint without a CRF keeps the static mode, under the (lowered) cap
    assert segment_settings("crf", 23.0, 800_000, 0.0, 500_000) == (23.0, 500_000)
    assert segment_settings("vbr", 23.0, 800_000, 0.0, 500_000) == (None, 500_000)
    assert segment_settings("vbr", 23.0, 800_000, 99.0, 9_000_000) == (None, 800_000)


def test_rate_control_values_are_checked() -> None:
    from sidecast.core.ladder import parse_rate_control

    assert parse_rate_control("VBR") == "vbr" and parse_rate_control(" crf") == "crf"
    with pytest.raises(ValueError, match="bad --rate-control 'abr'"):
        parse_rate_control("abr")
