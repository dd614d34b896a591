"""Bench: the bitrate model's hints against both static ladders, on clips the model never saw.

For every clip of the corpus's ``eval`` split, each 2 s segment is encoded for each rendition of the ladder
a 720p source gets (720p/480p/360p) with the core's x264 settings, in the same run:

* the fixed-bitrate static ladder (``--rate-control vbr``: one-pass ABR at the rung's rate, VBV cap = rate);
* the capped-CRF static ladder (``--rate-control crf``: CRF 23 under the rung's cap);
* the model's hints when the core's static ladder is fixed-bitrate (slope policy, the guard read at the
  rung's rate: what the sidecar sends when the core runs ``--rate-control vbr``);
* the model's hints when the static ladder is capped CRF (slope and target policies).

Everything is measured in bits and VMAF (v0.6.1, at the rendition's resolution). Also timed: feature
extraction per analysed frame, and the hint decision per segment (one batched ONNX call plus the choice).

    nice -n 19 .venv/bin/python bench/bitrate.py            # ~3-4 min on 2 shared cores

Targets (issue 6, against the fixed-bitrate ladder Netflix's figures are measured against): >= 20% fewer
bits at equal or better mean VMAF; no clip more than 1 VMAF below static; <= 5 ms of inference per segment.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devkit import corpus, quality  # noqa: E402
from sidecast.contract.records import RenditionInfo  # noqa: E402
from sidecast.core.ladder import DEFAULT_LADDER, build_ladder  # noqa: E402
from sidecast.sidecars.bitrate.features import FrameStats, features_from_stats, pair_stats  # noqa: E402
from sidecast.sidecars.bitrate.model import CRF_GRID, Policy, RateModel, decide  # noqa: E402


def _load_train_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bitrate_train", ROOT / "models" / "bitrate" / "train.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _summary(label: str, clips: list[str], rows: list[tuple], names: tuple[str, str] = ("static", "hinted")
             ) -> None:
    """Per-clip and total bits and VMAF of one encode set against another (rows: clip, sb, sv, hb, hv)."""
    a, b = names
    print(f"\n{label}")
    print(f"  {'clip':20s} {a + ' Mbit':>13s} {b + ' Mbit':>13s} {'saved':>7s} {a + ' VMAF':>13s} "
          f"{b + ' VMAF':>13s} {'delta':>6s}")
    per_clip = []
    for clip in clips:
        mine = [r for r in rows if r[0] == clip]
        sb, hb = sum(r[1] for r in mine), sum(r[3] for r in mine)
        sv, hv = statistics.mean(r[2] for r in mine), statistics.mean(r[4] for r in mine)
        per_clip.append((sb, hb, sv, hv))
        print(f"  {clip:20s} {sb / 1e6:13.3f} {hb / 1e6:13.3f} {100 * (1 - hb / sb):6.1f}% {sv:13.2f} "
              f"{hv:13.2f} {hv - sv:+6.2f}")
    sb, hb = sum(p[0] for p in per_clip), sum(p[1] for p in per_clip)
    sv, hv = statistics.mean(p[2] for p in per_clip), statistics.mean(p[3] for p in per_clip)
    worst = min(p[3] - p[2] for p in per_clip)
    worst_clip = clips[min(range(len(per_clip)), key=lambda i: per_clip[i][3] - per_clip[i][2])]
    saved = 1 - hb / sb
    print(f"  {'all':20s} {sb / 1e6:13.3f} {hb / 1e6:13.3f} {100 * saved:6.1f}% {sv:13.2f} {hv:13.2f} "
          f"{hv - sv:+6.2f}")
    print(f"  bits saved {100 * saved:.1f}% (target >= 20%: {'PASS' if saved >= 0.2 else 'FAIL'}); "
          f"mean VMAF {hv - sv:+.2f} (target >= 0: {'PASS' if hv >= sv else 'FAIL'}); "
          f"worst clip {worst:+.2f} {worst_clip} (target >= -1: {'PASS' if worst >= -1 else 'FAIL'})")


def _measure(cache: dict[tuple[float | None, int], tuple[int, float]], frames: list, fps: Fraction,
             crf: float | None, cap: int, ref: Path, tmp: Path) -> tuple[int, float]:
    """Bits and VMAF of one encode (``crf=None``: ABR at ``cap``); the same settings are encoded once."""
    if (crf, cap) not in cache:
        enc = tmp / "enc.mkv"
        bits = quality.encode(frames, fps, crf, cap, enc)
        cache[(crf, cap)] = (bits, quality.vmaf(enc, ref, fps))
    return cache[(crf, cap)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default="", help="comma-separated eval clips (default: the whole eval split)")
    args = ap.parse_args(argv)
    try:
        clips = [corpus.clip(n) for n in args.clips.split(",") if n] or [c for c in corpus.CLIPS if c.split == "eval"]
    except KeyError as exc:
        print(f"bench/bitrate: error: {exc.args[0]}", file=sys.stderr)
        return 2
    if any(c.split != "eval" for c in clips):
        print("bench/bitrate: error: only eval clips are fair game (the model trained on the others)",
              file=sys.stderr)
        return 2
    policy = Policy()
    # name -> (policy, the static ladder the sidecar is told about)
    hinters = {"vbr-slope": (policy, "vbr"), "crf-slope": (policy, "crf"), "crf-target": (Policy(mode="target"), "crf")}
    model = RateModel()
    ladder = build_ladder(1280, 720, DEFAULT_LADDER)
    rends = {rc: tuple(RenditionInfo(r.name, r.width, r.height, r.max_bitrate, r.crf, rc) for r in ladder)
             for rc in ("crf", "vbr")}
    heights = tuple(r.height for r in ladder)
    ff = quality.ffmpeg_exe()
    frame_ms: list[float] = []
    decide_ms: list[float] = []
    # clip, seg, rendition -> {"vbr": (bits, vmaf), "crf": ..., hinter name: ...}
    results: list[tuple[str, dict[str, tuple[int, float]]]] = []
    t_start = time.monotonic()
    print(f"slope policy {policy.vmaf_per_mbps:g} VMAF per Mbit/s, max drop {policy.max_drop:g}, fixed-bitrate "
          f"margin {policy.vbr_margin:g}; target policy VMAF {policy.target_vmaf:g}; ladder "
          f"{', '.join(f'{r.name}@{r.max_bitrate // 1000}k' for r in ladder)}; static CRF {ladder[0].crf:g}")
    print(f"{'clip':20s} {'seg':>3s} {'rend':>5s} {'fixed kb/s VMAF':>16s} {'capped-crf kb/s VMAF':>21s} "
          + " ".join(f"{k + ' crf kb/s VMAF':>27s}" for k in hinters))
    with tempfile.TemporaryDirectory(prefix="sidecast-bench-") as tmp_s:
        tmp = Path(tmp_s)
        for clip in clips:
            mezz = corpus.render(clip, tmp / f"{clip.name}.mkv", ff)
            for seg in quality.load_segments(mezz, clip.name, heights):
                t0 = time.perf_counter()
                stats = [FrameStats(f) for f in seg.analysis]
                pairs = [pair_stats(a, b) for a, b in zip(stats, stats[1:], strict=False)]
                feats = features_from_stats(stats, pairs)
                frame_ms.append((time.perf_counter() - t0) * 1000 / len(seg.analysis))
                hints = {}
                for name, (pol, rc) in hinters.items():
                    for _ in range(20 if name == "vbr-slope" else 1):
                        t0 = time.perf_counter()
                        hints[name], _ = decide(model, feats, rends[rc], pol)
                        if name == "vbr-slope":
                            decide_ms.append((time.perf_counter() - t0) * 1000)
                for i, r in enumerate(ladder):
                    frames = seg.renditions[r.height]
                    dur = len(frames) / float(seg.fps)
                    ref = tmp / "ref.y4m"
                    quality.write_y4m(frames, seg.fps, ref)
                    measured: dict[tuple[float | None, int], tuple[int, float]] = {}
                    got = {"vbr": _measure(measured, frames, seg.fps, None, r.max_bitrate, ref, tmp),
                           "crf": _measure(measured, frames, seg.fps, r.crf, r.max_bitrate, ref, tmp)}
                    line = (f"{clip.name:20s} {seg.index:3d} {r.name:>5s} {got['vbr'][0] / dur / 1000:9.0f} "
                            f"{got['vbr'][1]:6.2f} {got['crf'][0] / dur / 1000:14.0f} {got['crf'][1]:6.2f}")
                    for name in hinters:
                        h = hints[name][i]
                        assert h.rendition == r.name and h.max_bitrate <= r.max_bitrate
                        got[name] = _measure(measured, frames, seg.fps, h.crf, h.max_bitrate, ref, tmp)
                        line += f" {h.crf:13.1f} {got[name][0] / dur / 1000:6.0f} {got[name][1]:6.2f}"
                    results.append((clip.name, got))
                    print(line, flush=True)
            mezz.unlink()

    names = [c.name for c in clips]

    def pairs_of(base: str, other: str) -> list[tuple]:
        return [(c, g[base][0], g[base][1], g[other][0], g[other][1]) for c, g in results]

    _summary("ISSUE TARGET: hints (slope, fixed-bitrate guard) vs the fixed-bitrate static ladder",
             names, pairs_of("vbr", "vbr-slope"), ("fixed", "hinted"))
    _summary("for comparison: capped-CRF static ladder (CRF 23, no model) vs the fixed-bitrate static ladder",
             names, pairs_of("vbr", "crf"), ("fixed", "capped"))
    _summary("for comparison: the same hints (fixed-bitrate guard) vs the capped-CRF static ladder",
             names, pairs_of("crf", "vbr-slope"), ("capped", "hinted"))
    _summary("hints (slope, capped-CRF guard, the core's default mode) vs the capped-CRF static ladder",
             names, pairs_of("crf", "crf-slope"), ("capped", "hinted"))
    _summary("hints (target, capped-CRF guard) vs the capped-CRF static ladder",
             names, pairs_of("crf", "crf-target"), ("capped", "hinted"))
    csv_path = ROOT / "models" / "bitrate" / "corpus.csv"
    if csv_path.is_file():
        train = _load_train_module()
        table = train.load_corpus(csv_path)
        mask = (table["split"] == "eval") & np.isin(table["clip"], names)
        for label, (pol, rc) in hinters.items():
            perfect = train.simulate(table, mask, None, pol, baseline=rc)
            model_sim = train.simulate(table, mask, model.predict, pol, baseline=rc)
            est = "; the fixed-bitrate baseline estimated from them" if rc == "vbr" else ""
            print(f"\n{label} read off the corpus table's measured curves (same clips{est}): with this model saved {model_sim['saved_pct']:.1f}%, mean VMAF "
                  f"{model_sim['mean_vmaf_delta']:+.2f}; with a perfect model saved {perfect['saved_pct']:.1f}%, "
                  f"mean VMAF {perfect['mean_vmaf_delta']:+.2f}, worst clip {perfect['worst_clip_vmaf_delta']:+.2f}")
    dm = sorted(decide_ms)
    print(f"\nhint decision per segment ({len(ladder)} renditions x {len(CRF_GRID)} CRFs, one ONNX call + choice): "
          f"median {statistics.median(dm):.2f} ms, p95 {dm[int(0.95 * (len(dm) - 1))]:.2f} ms "
          f"(target <= 5 ms: {'PASS' if statistics.median(dm) <= 5 else 'FAIL'})")
    print(f"feature extraction per analysed frame (256x144 gray): median {statistics.median(frame_ms):.2f} ms, "
          f"i.e. {statistics.median(frame_ms) * 20:.0f} ms of CPU per 2 s segment at 10 fps")
    print(f"bench wall time: {time.monotonic() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
