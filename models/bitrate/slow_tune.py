"""Choose ``--size-anchor``'s slower-preset candidates for the low rungs (480p, 360p) on training clips only.

Why: the size candidates alone cannot save 12 % at 360p (the exhaustive oracle over sizes 1 / 0.75 / 0.5 and
11 CRFs: 6.6 % held out, 7.3 % on the training curves), so other kinds of candidate were measured per segment
the way ``SizeAnchor`` measures them: x264's ``medium`` preset (the ladder encodes ``veryfast``) at the rung's
size and at 0.75 of it, ``aq-mode=3``, a 0.875 size, a CRF raise at the ladder's preset (spending the quality
margin). Each is a real encode of a training clip's segment at the rung's cap (``x264_options`` with the
preset / extra parameters changed), measured with libvmaf v0.6.1 every 3rd frame at the rung's display size
(as ``measure_vmaf`` does), with its encode CPU time.

``--encode CLIPS`` (comma-separated training clips; held-out ones are refused) appends rows to ``--table``;
without it the table is read and every rule of the current candidates plus one or two new ones is scored as
the core decides (fewest bits first, the first within ``margin`` of the own encode, the capped candidate where
the own encode fills the cap). Selection, as ``size_tune.py``: the largest saving on the *worse* of the two
rungs whose mean VMAF change is >= -0.25 on each rung and whose worst segment is above -1.0.

    setsid sh -c 'echo 19 > /proc/self/autogroup; exec nice -n 19 .venv/bin/python models/bitrate/slow_tune.py --encode bikes,...'
    .venv/bin/python models/bitrate/slow_tune.py          # reads slow_curves.csv, no encodes

``--encode CLIPS --psnr`` encodes only the chosen rule's candidates, with luma PSNR and SSIM, into
``slow_psnr.csv``; when that table exists the report ends with what a PSNR guard beside the VMAF margin would
cost (the training evidence for the core's guard, ``SizeRule.psnr_margin`` = 1.0 dB, added after it).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent

# (label, scale of the rung, CRF, x264 preset, extra x264 parameters); "own" is the ladder's encode
CANDS = [
    ("own", 1.0, 23, "veryfast", ""),
    ("vf.75@22", 0.75, 22, "veryfast", ""),
    ("vf.5@18", 0.5, 18, "veryfast", ""),
    ("vf1@24", 1.0, 24, "veryfast", ""),
    ("med1@24", 1.0, 24, "medium", ""),
    ("med1@25", 1.0, 25, "medium", ""),
    ("med1@26", 1.0, 26, "medium", ""),
    ("med.75@23", 0.75, 23, "medium", ""),
    ("med.75@24", 0.75, 24, "medium", ""),
    ("med.5@19", 0.5, 19, "medium", ""),
    ("vf.875@23", 0.875, 23, "veryfast", ""),
    ("vfaq3@24", 1.0, 24, "veryfast", "aq-mode=3"),
]
GUARD = ["own", "vf.75@22", "vf.5@18", "vf1@24", "med1@25", "med.75@23"]  # --psnr: the chosen rule's encodes
CURRENT = ["vf.75@22", "vf.5@18"]  # SizeRule.candidates at CRF 23 (0.75 @ -1, 0.5 @ -5)
CAPPED = ["vf1@24"]  # the one capped candidate measured here (SizeRule.capped's 1.0 @ +1)
COLUMNS = ["clip", "seg", "rung", "cand", "bits", "vmaf", "enc_cpu", "cap", "dur"]
PSNR_COLUMNS = [*COLUMNS, "psnr", "ssim"]


def encode_rows(names: list[str], table: Path, psnr: bool = False) -> None:
    """Encode and measure every candidate of every segment of ``names`` at 480p and 360p; append to ``table``.
    ``psnr``: only the chosen rule's encodes (``GUARD``), with luma PSNR and SSIM on the same frames."""

    from devkit import corpus, quality
    from sidecast.core.ladder import DEFAULT_LADDER, build_ladder

    ladder = [r for r in build_ladder(1280, 720, DEFAULT_LADDER) if r.height in (480, 360)]
    new = not table.exists()
    with table.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(PSNR_COLUMNS if psnr else COLUMNS)
        for name in names:
            clip = corpus.clip(name)
            if clip.split != "train":
                raise SystemExit(f"slow_tune: {name} is not a training clip")
            with tempfile.TemporaryDirectory(prefix="slow-tune-") as t:
                tmp = Path(t)
                mezz = corpus.render(clip, tmp / f"{name}.mkv", quality.ffmpeg_exe())
                for seg in quality.load_segments(mezz, name, (), 2.0):
                    for rung in ladder:
                        ref = tmp / "ref.y4m"
                        quality.write_y4m(seg.at(rung.height, rung.width), seg.fps, ref)
                        for lab, sc, crf, preset, extra in (c for c in CANDS if not psnr or c[0] in GUARD):
                            cw, ch = quality.even(rung.width * sc), quality.even(rung.height * sc)
                            enc = tmp / "enc.mkv"
                            c0 = time.process_time()
                            bits = quality.encode(seg.at(ch, cw), seg.fps, crf, rung.max_bitrate, enc, preset, extra)
                            cpu = time.process_time() - c0
                            m = quality.scores(enc, ref, seg.fps, threads=1, subsample=3, psnr_ssim=psnr)
                            enc.unlink()
                            w.writerow([name, seg.index, rung.height, lab, bits, round(m.vmaf, 3), round(cpu, 3),
                                        rung.max_bitrate, len(seg.source) / float(seg.fps),
                                        *((round(m.psnr, 3), round(m.ssim, 5)) if psnr else ())])
                            f.flush()
                        ref.unlink()
                    seg.drop_sizes()
            print(name, "done", time.strftime("%H:%M:%S"), flush=True)


Table = dict[tuple[str, int, int], dict[str, dict[str, float]]]


def load(table: Path, n: int = len(CANDS)) -> Table:
    out: Table = defaultdict(dict)
    with table.open() as f:
        for r in csv.DictReader(f):
            out[(r["clip"], int(r["seg"]), int(r["rung"]))][r["cand"]] = {
                k: float(r[k]) for k in ("bits", "vmaf", "enc_cpu", "cap", "dur", "psnr", "ssim") if k in r}
    return {k: v for k, v in out.items() if len(v) == n}


def score(tab: Table, cands: list[str], margin: float = 1.0, psnr_margin: float = math.inf
          ) -> dict[int, tuple[float, float, float, float]]:
    """Per rung: % bits saved vs the own encodes, mean and worst VMAF change, encode CPU over the own's (%).
    ``psnr_margin``: a candidate must also keep its PSNR within this many dB of the own encode's."""
    out = {}
    for h in (480, 360):
        b = b0 = cpu = cpu0 = 0.0
        dv = []
        for k, v in tab.items():
            if k[2] != h:
                continue
            own = v["own"]
            capped = own["bits"] >= 0.9 * own["cap"] * own["dur"]
            rule = cands + (CAPPED if capped else [])
            best = own
            for c in sorted(rule, key=lambda c: v[c]["bits"]):
                if v[c]["bits"] >= own["bits"]:
                    break
                if v[c]["vmaf"] >= own["vmaf"] - margin and v[c].get("psnr", 0.0) >= own.get("psnr", 0.0) - psnr_margin:
                    best = v[c]
                    break
            b, b0 = b + best["bits"], b0 + own["bits"]
            cpu, cpu0 = cpu + own["enc_cpu"] + sum(v[c]["enc_cpu"] for c in rule), cpu0 + own["enc_cpu"]
            dv.append(best["vmaf"] - own["vmaf"])
        out[h] = (100 * (1 - b / b0), statistics.mean(dv), min(dv), 100 * (cpu / cpu0 - 1))
    return out


def show(label: str, s: dict[int, tuple[float, float, float, float]]) -> None:
    print(f"  {label:46s} " + "  ".join(f"{h}p {v[0]:5.1f}% {v[1]:+.2f} (worst {v[2]:+.2f}) encode CPU +{v[3]:.0f}%"
                                         for h, v in s.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", type=Path, default=HERE / "slow_curves.csv")
    ap.add_argument("--encode", default="", help="comma-separated training clips to encode and append")
    ap.add_argument("--psnr-table", type=Path, default=HERE / "slow_psnr.csv",
                    help="the chosen rule's encodes with PSNR/SSIM (written by --encode with --psnr)")
    ap.add_argument("--psnr", action="store_true", help="with --encode: the chosen rule's encodes with PSNR/SSIM")
    args = ap.parse_args(argv)
    if args.encode:
        names = [n for n in args.encode.split(",") if n]
        encode_rows(names, args.psnr_table if args.psnr else args.table, args.psnr)
        return 0
    tab = load(args.table)
    print(f"{len(tab)} training segment-rungs ({len({k[0] for k in tab})} clips), own encode veryfast CRF 23")
    new = [c for c, *_ in CANDS if c not in ("own", *CURRENT)]
    ok = []
    for k in (1, 2):
        for combo in itertools.combinations(new, k):
            s = score(tab, CURRENT + list(combo))
            if all(v[1] >= -0.25 and v[2] > -1.0 for v in s.values()):
                ok.append((min(v[0] for v in s.values()), list(combo)))
    ok.sort(key=lambda r: -r[0])
    show("current rule (0.75@22, 0.5@18; capped 1.0@24)", score(tab, CURRENT))
    print("the best rules that keep the quality (one or two new candidates), by the worse rung's saving:")
    for _saved, chosen in ok[:8]:
        show(" + ".join(chosen), score(tab, CURRENT + chosen))
    print("one new candidate each:")
    for c in new:
        show(c, score(tab, CURRENT + [c]))
    show("oracle: every candidate, margin 0.5", score(tab, CURRENT + new, 0.5))
    print("static (the same encode on every segment, no measurement), vs the own encode:")
    for c in new:
        for h in (480, 360):
            sel = [v for k, v in tab.items() if k[2] == h]
            saved = 100 * (1 - sum(v[c]["bits"] for v in sel) / sum(v["own"]["bits"] for v in sel))
            dv = [v[c]["vmaf"] - v["own"]["vmaf"] for v in sel]
            print(f"  {c:10s} {h}p {saved:5.1f}% mean {statistics.mean(dv):+.2f} worst {min(dv):+.2f}")
    if args.psnr_table.exists():
        guard(load(args.psnr_table, len(GUARD)))
    return 0


def guard(tab: Table) -> None:
    """What a PSNR guard beside the VMAF margin costs the chosen rule on training encodes (the core's is
    ``SizeRule.psnr_margin``; this report is PSNR every 3rd frame, as the core measures)."""
    print(f"\na PSNR guard ({len(tab)} segment-rungs with PSNR/SSIM): bits saved / mean and worst dVMAF / mean and "
          "worst dPSNR (dB) / mean dSSIM, vs the own encodes")
    for label, cands in (("twelfth session", CURRENT), ("chosen", CURRENT + ["med1@25", "med.75@23"])):
        for g in (math.inf, 2.0, 1.5, 1.0, 0.75, 0.5):
            parts = []
            scored = score(tab, cands, 1.0, g)
            for h in (480, 360):
                sel = {k: v for k, v in tab.items() if k[2] == h}
                saved = scored[h][0]
                best = []
                for v in sel.values():
                    own = v["own"]
                    capped = own["bits"] >= 0.9 * own["cap"] * own["dur"]
                    pick = own
                    for c in sorted(cands + (CAPPED if capped else []), key=lambda c: v[c]["bits"]):
                        if v[c]["bits"] >= own["bits"]:
                            break
                        if v[c]["vmaf"] >= own["vmaf"] - 1.0 and v[c]["psnr"] >= own["psnr"] - g:
                            pick = v[c]
                            break
                    best.append((pick["vmaf"] - own["vmaf"], pick["psnr"] - own["psnr"], pick["ssim"] - own["ssim"]))
                dv, dp, ds = zip(*best, strict=True)
                parts.append(f"{h}p {saved:5.1f}% {statistics.mean(dv):+.2f} ({min(dv):+.2f}) "
                             f"{statistics.mean(dp):+.2f} dB ({min(dp):+.2f}) {statistics.mean(ds):+.4f}")
            print(f"  {label:16s} guard {g:>4} dB  " + "  ".join(parts))


if __name__ == "__main__":
    raise SystemExit(main())
