"""The shipped bitrate model, its model card, and the pure parts of the sidecar (features, CRF choice)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from sidecast.contract.records import RenditionInfo
from sidecast.core.ladder import DEFAULT_LADDER
from sidecast.sidecars.bitrate import FEATURE_NAMES, Policy, RateModel, choose, decide, segment_features
from sidecast.sidecars.bitrate.features import FeatureError
from sidecast.sidecars.bitrate.model import CRF_GRID, SCALES, ModelError
from tests.conftest import load_script

MODELS = Path(__file__).resolve().parents[1] / "models" / "bitrate"


def _script(name: str):
    """models/bitrate/NAME.py loaded as a module (the model's scripts are not a package)."""
    return load_script(f"bitrate_{name}", MODELS / f"{name}.py")


def _train_module():
    return _script("train")


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
    assert vmaf.shape == log_rate.shape == (2, len(SCALES), len(CRF_GRID))
    assert np.isfinite(vmaf).all() and np.isfinite(log_rate).all()
    # quality and rate fall as CRF rises, over the whole grid, on average
    assert vmaf[..., 0].mean() > vmaf[..., -1].mean() + 10
    assert log_rate[..., 0].mean() > log_rate[..., -1].mean() + 1
    # a smaller picture costs fewer bits at the same CRF
    assert (log_rate[:, 0, :] > log_rate[:, -1, :]).mean() > 0.9


def test_missing_model_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        RateModel(tmp_path / "nope.onnx")


def test_model_card_heldout_error_is_reproduced_from_the_corpus_table(model: RateModel) -> None:
    train = _train_module()
    table = train.load_corpus(MODELS / "corpus.csv")
    assert {"train", "eval"} <= set(table["split"])
    sources = {s: set(table["split"][table["source"] == s]) for s in set(table["source"])}
    assert all(len(v) == 1 for v in sources.values()), "no source on both sides of the split"
    assert set(table["genre"][table["split"] == "eval"]) <= set(table["genre"][table["split"] == "train"])
    m = train.heldout_metrics(table, model.predict)
    assert m["vmaf_mae"] == pytest.approx(_card_figure("held-out VMAF MAE, all rungs"), abs=0.01)
    for rung in ("360", "480", "720"):
        assert m["vmaf_mae_per_rung"][rung] == pytest.approx(_card_figure(f"held-out VMAF MAE, {rung}p"), abs=0.01)
    assert m["rate_err_pct"] == pytest.approx(_card_figure("held-out bit-rate error %"), abs=0.05)


def test_hull_policy_takes_the_fewest_bits_at_the_static_quality_smaller_pictures_included() -> None:
    crfs = np.arange(16.0, 40.0, 1.0)
    full_v = 110.0 - crfs  # 87 at the static CRF 23
    full_r = 1000.0 * 2.0 ** (-(crfs - 23) / 6)
    soft_v = 109.0 - crfs  # a 0.75 picture loses one point at any CRF...
    soft_r = 0.6 * full_r  # ...for 40% fewer bits
    p = Policy(max_drop=1.0, scales=(1.0, 0.75), resize_margin=0.0)
    v, r = np.stack([full_v, soft_v]), np.stack([full_r, soft_r])
    # full size: down to 86 -> CRF 24 at 891 kbit/s; 0.75: 86 at CRF 23 -> 600 kbit/s: the smaller picture wins
    assert choose(crfs, (1.0, 0.75), v, r, 87.0, p) == (0.75, 23.0)
    # a resize margin asks the smaller picture for more than the guard: 2 points -> CRF 21 (756 kbit/s, still
    # cheaper); 10 points -> out of its reach, the full picture at CRF 24
    assert choose(crfs, (1.0, 0.75), v, r, 87.0, replace(p, resize_margin=2.0)) == (0.75, 21.0)
    assert choose(crfs, (1.0, 0.75), v, r, 87.0, replace(p, resize_margin=10.0)) == (1.0, 24.0)
    # when the smaller picture loses more than the guard, it is never taken
    assert choose(crfs, (1.0, 0.75), np.stack([full_v, full_v - 20]), r, 87.0, p) == (1.0, 24.0)
    # nothing reaches the guard (a reference above every point): keep the static settings
    assert choose(crfs, (1.0, 0.75), v, r, 200.0, p) is None
    # ... unless the static encode is a fixed rate above what the best allowed quality costs: take that point
    assert choose(crfs, (1.0, 0.75), v, r, 200.0, replace(p, min_crf=16.0), static_kbps=5000.0) == (1.0, 16.0)
    assert choose(crfs, (1.0, 0.75), v, r, 200.0, replace(p, min_crf=16.0), static_kbps=1000.0) is None


def test_target_policy_reaches_the_target_with_the_fewest_bits() -> None:
    crfs = np.arange(16.0, 40.0, 1.0)
    v = np.stack([110.0 - crfs, 108.0 - crfs])
    r = np.stack([1000.0 * 2.0 ** (-(crfs - 23) / 6), 500.0 * 2.0 ** (-(crfs - 23) / 6)])
    target = Policy(mode="target", target_vmaf=93.0, scales=(1.0, 0.5), resize_margin=0.0, target_margin=0.0)
    # 93 at CRF 17 full size (1996 kbit/s) or CRF 15 at half (out of range): full size, CRF 17
    assert choose(crfs, (1.0, 0.5), v, r, 0.0, target) == (1.0, 17.0)
    # target 85: CRF 25 full (794) or CRF 23 half (500): the half picture
    assert choose(crfs, (1.0, 0.5), v, r, 0.0, replace(target, target_vmaf=85.0)) == (0.5, 23.0)
    # unreachable: the best quality there is, at the rung's size and the lowest CRF
    assert choose(crfs, (1.0, 0.5), v, r, 0.0, replace(target, target_vmaf=99.5)) == (1.0, 16.0)
    # a target margin aims that much higher: 85 + 2 -> CRF 23 full (1000) or CRF 21 half (630): half, CRF 21
    assert choose(crfs, (1.0, 0.5), v, r, 0.0, replace(target, target_vmaf=85.0, target_margin=2.0)) == (0.5, 21.0)


def test_target_policy_goes_up_to_its_own_top_crf_and_hull_stays_under_its_own() -> None:
    """Easy content reaches a target only far up the CRF scale (a clean pan keeps VMAF 99.5 at CRF 33): the
    target policy may go to ``target_max_crf`` while the hull policy stays at or under ``max_crf``."""
    crfs = np.arange(14.0, 44.01, 0.5)
    easy = np.minimum(100.0, 140.0 - crfs)  # 100 up to CRF 40, 96 at 44
    rate = 400.0 * 2.0 ** (-(crfs - 23) / 6)
    target = Policy(mode="target", target_vmaf=97.0, target_margin=0.0, scales=(1.0,))
    assert choose(crfs, (1.0,), easy[None], rate[None], 0.0, target) == (1.0, 43.0)
    # capped at 38, the target is overshot: the highest CRF allowed, as close to N as the cap lets it get
    assert choose(crfs, (1.0,), easy[None], rate[None], 0.0, replace(target, target_max_crf=38.0)) == (1.0, 38.0)
    hull = Policy(max_drop=10.0, scales=(1.0,))
    assert choose(crfs, (1.0,), easy[None], rate[None], 100.0, hull) == (1.0, 38.0)


def test_choose_ignores_a_wiggle_in_the_curve() -> None:
    crfs = np.arange(16.0, 40.0, 1.0)
    curve = 110.0 - crfs
    curve[10] = 99.0  # a spurious bump at CRF 26
    rate = 1000.0 * 2.0 ** (-(crfs - 23) / 6)
    policy = Policy(mode="target", target_vmaf=93.0, target_margin=0.0)
    assert choose(crfs, (1.0,), curve[None], rate[None], 0.0, policy) == (1.0, 17.0)


def test_features_see_motion_cuts_and_detail() -> None:
    rng = np.random.default_rng(1)
    flat = np.full((72, 128), 128, np.uint8)
    still = segment_features([flat] * 5)
    ti = FEATURE_NAMES.index("ti_mean")
    assert still[ti] == 0.0 and still[FEATURE_NAMES.index("cut_rate")] == 0.0
    noisy = [rng.integers(0, 256, (72, 128), dtype=np.uint8) for _ in range(5)]
    busy = segment_features(noisy)
    assert busy[ti] > 50 and busy[FEATURE_NAMES.index("si_mean")] > still[FEATURE_NAMES.index("si_mean")]
    # the probe encoder: noise costs an encoder far more bits than a flat picture (whose intra frame is mostly
    # the headers x264 writes), intra and inter
    for name in ("probe_intra_bpp", "probe_inter_bpp"):
        i = FEATURE_NAMES.index(name)
        assert busy[i] > 10 * max(still[i], 1e-3), (name, busy[i], still[i])
    # screen-like flat areas: all of a uniform picture, none of noise
    fr = FEATURE_NAMES.index("flat_ratio")
    assert still[fr] == 1.0 and busy[fr] == 0.0
    cut = segment_features([flat, flat, np.full((72, 128), 20, np.uint8), np.full((72, 128), 20, np.uint8)])
    assert cut[FEATURE_NAMES.index("cut_rate")] == pytest.approx(1 / 3)
    with pytest.raises(FeatureError, match="gray8"):
        segment_features([np.zeros((72, 128, 3), np.uint8)])


def test_frame_statistics_are_the_plain_definitions() -> None:
    """The per-frame and per-pair numbers use OpenCV's reductions for speed; they must still be the textbook
    figures (P.910 SI = std of the Sobel magnitude, TI = std of the difference...), checked against numpy on a
    real photograph moved by a known shift."""
    import cv2
    from skimage import data

    from sidecast.sidecars.bitrate.features import FrameStats, pair_stats

    img = cv2.resize(data.astronaut()[..., 1], (1280, 1280))[:720]
    shifted = np.roll(img, (0, 10), axis=(0, 1))  # 10 px of 1280 to the right: 2 px of the 256-px frame
    a, b = FrameStats(img), FrameStats(shifted)
    f = cv2.resize(img, (256, 144), interpolation=cv2.INTER_AREA).astype(np.float64)
    mag = np.hypot(cv2.Sobel(f, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(f, cv2.CV_64F, 0, 1, ksize=3))
    assert a.si == pytest.approx(mag.std(), rel=1e-4)
    assert a.edges == pytest.approx((mag > 96).mean(), abs=1e-3)
    assert a.luma_mean == pytest.approx(f.mean(), rel=1e-6) and a.luma_std == pytest.approx(f.std(), rel=1e-6)
    assert a.hist.sum() == pytest.approx(1.0) and a.hist[int(np.median(f)) >> 4] > 0
    ti, mad, residual, motion, cut = pair_stats(a, b)
    d = b.small.astype(np.float64) - a.small
    assert ti == pytest.approx(d.std(), rel=1e-4) and mad == pytest.approx(np.abs(d).mean(), rel=1e-4)
    # the half-size motion search finds the 2 px shift (sub-pixel), and compensating it leaves little residual
    assert motion == pytest.approx(2 / 256, abs=0.2 / 256)
    assert residual < 0.5 * mad and not cut


def test_decide_keeps_every_rendition_at_or_under_its_cap_and_sizes_valid(model: RateModel) -> None:
    from sidecast.core.ladder import segment_size

    rends = [RenditionInfo(r.name, r.height * 16 // 9 & ~1, r.height, r.max_bitrate, r.crf) for r in DEFAULT_LADDER]
    table = _train_module().load_corpus(MODELS / "corpus.csv")
    firsts = [int(np.flatnonzero(table["clip"] == c)[0]) for c in sorted(set(table["clip"]))]
    resized = 0
    for row in firsts:
        feats = np.array([table[n][row] for n in FEATURE_NAMES], np.float32)
        # the shipped operating point never resizes; a zero resize margin shows the sizes a hint can carry
        for policy in (Policy(), Policy(mode="target", target_vmaf=90.0), Policy(resize_margin=0.0)):
            hints, complexity = decide(model, feats, rends, policy)
            assert [h.rendition for h in hints] == [r.name for r in rends]
            top = policy.target_max_crf if policy.mode == "target" else policy.max_crf
            for h, r in zip(hints, rends, strict=True):
                assert h.max_bitrate == r.max_bitrate and (h.crf == 0 or 16 <= h.crf <= top)
                if h.width:
                    resized += 1
                    assert segment_size(r.width, r.height, h.width, h.height) == (h.width, h.height) != (r.width, r.height)
            assert 0.0 <= complexity <= 1.0
    assert resized, "some corpus content is encoded below its rung's size"


def test_default_policy_is_the_operating_point_training_chose() -> None:
    import json

    metrics = json.loads((MODELS / "metrics.json").read_text())
    assert Policy().mode == "hull" and Policy().scales == SCALES
    assert Policy().max_drop == metrics["chosen_max_drop"]
    assert Policy().resize_margin == metrics["chosen_resize_margin"]
    assert Policy().target_margin == metrics["chosen_target_margin"]


def test_vmaf_at_rate_reads_the_best_quality_that_fits_the_rate() -> None:
    from sidecast.sidecars.bitrate.model import vmaf_at_rate

    crfs = np.arange(16.0, 40.0, 1.0)
    vmaf = 110.0 - crfs
    kbps = 1000.0 * 2.0 ** (-(crfs - 23) / 6)  # 1000 kbit/s at CRF 23, halving every 6 CRF
    assert vmaf_at_rate(vmaf, kbps, 1000.0) == pytest.approx(87.0)  # exactly at CRF 23
    assert vmaf_at_rate(vmaf, kbps, 500.0) == pytest.approx(81.0)  # CRF 29
    assert vmaf_at_rate(vmaf, kbps, 1e6) == pytest.approx(94.0)  # never reaches the rate: the lowest CRF
    assert vmaf_at_rate(vmaf, kbps, 1.0) == pytest.approx(71.0)  # always above it: the highest CRF


def test_the_reference_follows_the_static_ladder_the_core_uses() -> None:
    from sidecast.sidecars.bitrate.model import static_reference

    crfs = np.arange(16.0, 40.0, 1.0)
    curve = 110.0 - crfs
    kbps = 400.0 * 2.0 ** (-(crfs - 23) / 6)  # 400 kbit/s at CRF 23: easy content
    p = Policy(vbr_margin=0.0)
    assert static_reference(crfs, curve, kbps, 23.0, None, p) == pytest.approx(87.0)  # capped CRF 23
    # a fixed 800 kbit/s ladder spends twice that: the quality of CRF 17, the reference the hint must keep
    assert static_reference(crfs, curve, kbps, 23.0, 800.0, p) == pytest.approx(93.0)
    assert static_reference(crfs, curve, kbps, 23.0, 800.0, replace(p, vbr_margin=1.0)) == pytest.approx(94.0)


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


def test_corpus_table_keeps_every_digit_of_the_features(tmp_path: Path) -> None:
    """``train.py`` must rebuild the shipped model from the written table alone: features recomputed in memory
    (``--refeature``) and read back from ``corpus.csv`` have to be the same floats, to the last bit."""
    train = _train_module()
    table = train.load_corpus(MODELS / "corpus.csv")
    sel = np.flatnonzero(table["clip"] == "bikes")[:3]
    small = {k: v[sel] for k, v in table.items()}
    rng = np.random.default_rng(3)
    for name in FEATURE_NAMES:  # float32 values as segment_features computes them, stored as float64
        small[name] = rng.random(len(sel)).astype(np.float32).astype(np.float64) * 100
    out = tmp_path / "corpus.csv"
    train.write_corpus(small, out)
    back = train.load_corpus(out)
    for name in FEATURE_NAMES:
        assert np.array_equal(back[name], small[name]), name
    assert np.array_equal(back["vmaf"], small["vmaf"]) and list(back["clip"]) == list(small["clip"])


def _build_corpus_module():
    return _script("build_corpus")


def test_dense_plan_adds_crfs_only_where_training_quality_falls_off_a_cliff() -> None:
    build = _build_corpus_module()

    def curve(clip: str, split: str, scale: float, points: dict[float, float], height: int = 720) -> list[dict]:
        return [{"clip": clip, "split": split, "segment": "0", "display_height": str(height), "scale": str(scale),
                 "crf": f"{c:g}", "vmaf": f"{v:.3f}"} for c, v in points.items()]

    cliff = {18: 99.6, 23: 99.3, 28: 98.9, 33: 89.9, 38: 80.0, 44: 70.0}
    rows = (curve("bikes", "train", 1.0, cliff) + curve("bikes", "train", 0.75, cliff)  # 0.75: not the target's size
            + curve("bikes", "train", 1.0, {18: 97.0, 23: 95.0, 28: 92.5, 33: 90.1}, height=360)
            + curve("carphone", "eval", 1.0, cliff)  # held out: never densified
            + curve("life", "train", 1.0, cliff))  # a random generator: other content on every render
    plan = build.dense_plan(rows)
    assert set(plan) == {"bikes"}
    # 28 -> 33 falls 9 points: two CRFs between (about 3 points a step); 33 -> 38 falls 9.9 from inside the
    # band: three; 38 -> 44 is all below the band's floor; 18 -> 28 falls less than 3 points a step
    assert plan["bikes"][(0, 720, 1.0)] == (29.5, 31.5, 34.0, 35.5, 37.0)
    # no step fell more than 3 points, but the curve ends at CRF 33 still in the band: the top of the grid
    assert plan["bikes"][(0, 360, 1.0)] == (38.0, 44.0)
    # a step already one CRF wide is not split further
    assert build.dense_plan(curve("bikes", "train", 1.0, {30: 98.0, 31: 90.0, 38: 88.0, 44: 86.5})) == {}
    assert not build.renders_the_same("cellauto") and build.renders_the_same("bikes")


def test_merge_adds_new_crfs_with_the_tables_own_features_and_skips_random_generators(tmp_path: Path) -> None:
    import csv

    build = _build_corpus_module()
    nf = len(FEATURE_NAMES)

    def row(clip: str, crf: str, feature: str) -> list[str]:
        return [clip, "train", "still", clip, "0", "720", "1280", "720", "1280", "1.0", crf, "3000000", "1000",
                "500", "95.0", *([feature] * nf)]

    table, extra = tmp_path / "corpus.csv", tmp_path / "extra.csv"
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows([build.COLUMNS, row("bikes", "33", "1.5"), row("bikes", "28", "1.5"),
                                  row("life", "28", "2.5")])
    with open(extra, "w", newline="") as fh:  # the new render's features differ a little: the table's win
        csv.writer(fh).writerows([build.COLUMNS, row("bikes", "30.5", "1.6"), row("bikes", "33", "1.6"),
                                  row("life", "30.5", "2.6")])
    assert build.merge(table, extra) == 0
    with open(table, newline="") as fh:
        got = list(csv.reader(fh))[1:]
    assert [(r[0], r[10]) for r in got] == [("bikes", "28"), ("bikes", "30.5"), ("bikes", "33"), ("life", "28")]
    assert all(r[-nf:] == ["1.5"] * nf for r in got if r[0] == "bikes")
