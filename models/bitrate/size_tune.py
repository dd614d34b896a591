"""Tune the measured size decision of ``--size-anchor`` on training curves only.

``--size-anchor`` (``sidecast.core.anchor.SizeAnchor``): the core encodes each segment of each rung as the ladder
would (the rung's size at its CRF) and at smaller candidate sizes (a scale of the rung at a CRF offset from the
rung's), measures each with libvmaf (every 3rd frame, at the rung's display size) and publishes the candidate
with the fewest bits whose VMAF is within a margin of the own encode's. What the rule decides is which
candidates to encode (each costs an encode and, when it has fewer bits, a measurement) and the margin.

The rule is chosen on the *measured* training curves of ``corpus.csv`` (VMAF there is measured as the anchor
measures it: every 3rd frame, at the display size): the own encode is the rung's size at CRF 23 (the default
ladder), a candidate at a CRF between two measured ones is read between them (bits linearly in log bits, VMAF
in log2(101 - VMAF)), and each rule is scored as the core would decide. No held-out clip is read.

Selection: over one 0.75 candidate (CRF - 5 … 0) and one 0.5 candidate (CRF - 7 … - 2) and margins up to 1.0
(the subsampled measurement is off the every-frame VMAF by up to ~1.1, so a margin of 1.0 keeps any segment
within about 2 of the own encode, the issue's "no clip below -2.0"), the largest saving over the ladder whose
mean VMAF change is >= 0 over the ladder and >= -0.25 on every rung (the issue allows -0.5) and whose worst
clip is above -1.0. Also printed: one-candidate rules, three-candidate rules, and the exhaustive
oracle over the same curves, for the ceiling.

    .venv/bin/python models/bitrate/size_tune.py      # reads corpus.csv, no encodes, a second of CPU
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
OWN = (1.0, 23.0)  # the default ladder's encode: the rung's size at CRF 23

CAPPED_SHARE = 0.9  # a segment whose own encode spends this share of the cap fills it (as TargetAnchor says)

Curves = dict[tuple[str, int], dict[tuple[float, float], tuple[float, float]]]
Rule = list[tuple[float, float]]


def load(path: Path, split: str) -> Curves:
    """(clip, display height) -> {(scale, CRF): (bits, VMAF)} for one split of the table."""
    return load_capped(path, split)[0]


def load_capped(path: Path, split: str) -> tuple[Curves, set[tuple[str, int]]]:
    """The curves of ``load`` and the segment-rungs whose own encode fills the cap (``CAPPED_SHARE``)."""
    out: Curves = defaultdict(dict)
    capped: set[tuple[str, int]] = set()
    with path.open() as f:
        for r in csv.DictReader(f):
            if r["split"] == split:
                key = (r["clip"], int(r["display_height"]))
                out[key][(float(r["scale"]), float(r["crf"]))] = (float(r["bits"]), float(r["vmaf"]))
                duration = float(r["bits"]) / (float(r["kbps"]) * 1000)
                if ((float(r["scale"]), float(r["crf"])) == OWN
                        and float(r["bits"]) >= CAPPED_SHARE * float(r["max_bitrate"]) * duration):
                    capped.add(key)
    return {k: v for k, v in out.items() if OWN in v}, capped


def at(curve: dict[tuple[float, float], tuple[float, float]], scale: float, crf: float) -> tuple[float, float] | None:
    """Bits and VMAF of ``scale`` at ``crf``, read between the two measured CRFs around it (at most 2 CRFs
    below the lowest measured one); None outside."""
    pts = sorted((c, m) for (s, c), m in curve.items() if s == scale)
    if len(pts) < 2:
        return None
    pairs = list(itertools.pairwise(pts))
    for (c0, (b0, v0)), (c1, (b1, v1)) in pairs:
        if c0 <= crf <= c1 or (crf < c0 and (c0, (b0, v0)) == pts[0] and c0 - crf <= 2):
            t = (crf - c0) / (c1 - c0)
            lb = math.log(b0) * (1 - t) + math.log(b1) * t
            lv = math.log2(101 - min(v0, 100.5)) * (1 - t) + math.log2(101 - min(v1, 100.5)) * t
            return math.exp(lb), 101 - 2 ** lv
    return None


def score(curves: Curves, cands: Rule, margin: float, capped_cands: Rule | None = None,
          capped: set[tuple[str, int]] | None = None) -> dict[str, object]:
    """The core's decision over every segment-rung: bits saved vs the own encodes, mean VMAF change over the
    ladder and per rung, the worst clip (mean over its rungs), measurements per segment-rung, sizes chosen.
    ``capped_cands`` are added on the segment-rungs in ``capped`` (None: on every one)."""
    bits = own_bits = 0.0
    per_clip: dict[str, list[float]] = defaultdict(list)
    per_rung: dict[int, list[float]] = defaultdict(list)
    rung_bits: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
    measures = 0
    chosen: dict[str, int] = defaultdict(int)
    for (clip, h), curve in curves.items():
        b0, v0 = curve[OWN]
        rule = [*cands, *((capped_cands or []) if capped is None or (clip, h) in capped else [])]
        got = [(m, f"{s:g}@{OWN[1] + o:g}") for s, o in dict.fromkeys(rule)
               if (m := at(curve, s, OWN[1] + o)) is not None]
        best, label = (b0, v0), "own"
        measures += 1
        for (b, v), lab in sorted(got):  # fewest bits first, stopping at the first within the margin
            if b >= b0:
                break
            measures += 1
            if v >= v0 - margin:
                best, label = (b, v), lab
                break
        chosen[label] += 1
        bits += best[0]
        own_bits += b0
        per_clip[clip].append(best[1] - v0)
        per_rung[h].append(best[1] - v0)
        rung_bits[h][0] += best[0]
        rung_bits[h][1] += b0
    clip_means = [statistics.mean(d) for d in per_clip.values()]
    return {"saved": 100 * (1 - bits / own_bits), "mean": statistics.mean(clip_means), "worst": min(clip_means),
            "rungs": {h: (100 * (1 - rung_bits[h][0] / rung_bits[h][1]), statistics.mean(d), min(d))
                      for h, d in sorted(per_rung.items(), reverse=True)},
            "measures": measures / len(curves), "chosen": dict(chosen)}


def show(label: str, s: dict[str, object]) -> None:
    rungs = s["rungs"]
    assert isinstance(rungs, dict)
    print(f"{label:44s} saved {s['saved']:5.1f}%  mean dVMAF {s['mean']:+.2f}  worst clip {s['worst']:+.2f}  "
          f"measures {s['measures']:.2f}  | " + "  ".join(
              f"{h}p {v[0]:4.1f}% {v[1]:+.2f} (seg {v[2]:+.2f})" for h, v in rungs.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=HERE / "corpus.csv")
    args = ap.parse_args(argv)
    curves = load(args.corpus, "train")
    print(f"{len(curves)} training segment-rungs (own encode: the rung's size at CRF {OWN[1]:g})")
    ok: list[tuple[float, tuple[float, float], tuple[float, float], float]] = []
    for o75, o50, margin in itertools.product(range(-5, 1), range(-7, -1), (0.5, 0.75, 1.0)):
        s = score(curves, [(0.75, float(o75)), (0.5, float(o50))], margin)
        rungs = s["rungs"]
        assert isinstance(rungs, dict)
        if (float(str(s["mean"])) >= 0 and float(str(s["worst"])) > -1.0
                and all(v[1] >= -0.25 for v in rungs.values())):
            ok.append((float(str(s["saved"])), (0.75, float(o75)), (0.5, float(o50)), margin))
    ok.sort(reverse=True)
    print("the best five rules that keep the quality (saved, 0.75 candidate, 0.5 candidate, margin):")
    for row in ok[:5]:
        print("  ", row)
    _, c75, c50, margin = ok[0]
    show(f"CHOSEN 0.75@CRF{c75[1]:+g}, 0.5@CRF{c50[1]:+g}, margin {margin:g}", score(curves, [c75, c50], margin))
    print("for comparison:")
    show("one candidate, 0.75@CRF-2", score(curves, [(0.75, -2.0)], margin))
    show("one candidate, 0.5@CRF-5", score(curves, [(0.5, -5.0)], margin))
    show("three, 0.75@-2, 0.75@0, 0.5@-5", score(curves, [(0.75, -2.0), (0.75, 0.0), (0.5, -5.0)], margin))
    show("margin 1.5 (no room for the measurement's error)", score(curves, [c75, c50], 1.5))
    grid = [(s, float(o)) for s in (0.75, 0.5) for o in range(-7, 2)] + [(1.0, 1.0), (1.0, 2.0), (1.0, 3.0)]
    show("oracle: every candidate, margin 0.5", score(curves, grid, 0.5))

    curves, capped = load_capped(args.corpus, "train")
    base = [c75, c50]
    print(f"\nsecond stage: {len(capped)} of the {len(curves)} training segment-rungs fill the cap at CRF {OWN[1]:g}; "
          "capped candidates (scale, CRF offset) added on those only")
    opts = [(s, float(o)) for s in (1.0, 0.75, 0.5) for o in range(0, 11) if not (s == 1.0 and o == 0)]
    ok2: list[tuple[float, Rule]] = []
    for k in (1, 2, 3):
        for combo in itertools.combinations(opts, k):
            s = score(curves, base, margin, list(combo), capped)
            rungs = s["rungs"]
            assert isinstance(rungs, dict)
            if (float(str(s["mean"])) >= 0 and float(str(s["worst"])) > -1.0
                    and all(v[1] >= -0.25 for v in rungs.values())):
                ok2.append((float(str(s["saved"])), list(combo)))
    ok2.sort(key=lambda r: -r[0])
    print("the best five capped sets that keep the quality (saved, capped candidates):")
    for top in ok2[:5]:
        print("  ", top)
    best = ok2[0][1]
    show("first stage alone (no capped candidates)", score(curves, base, margin, [], capped))
    show(f"CHOSEN capped {best}", score(curves, base, margin, best, capped))
    for k in (1, 2):
        fewer = next(r[1] for r in ok2 if len(r[1]) == k)
        show(f"best {k} capped: {fewer}", score(curves, base, margin, fewer, capped))
    show("the chosen extras on every segment (not only capped)", score(curves, base, margin, best, None))
    show("oracle + capped grid (0.75/0.5 at CRF-7..+10, 1.0 at +1..+10)", score(
        curves, [*grid, *[(s, float(o)) for s in (0.75, 0.5) for o in range(2, 11)],
                 *[(1.0, float(o)) for o in range(4, 11)]], 0.5))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
