"""Build the rate model's corpus: every clip's 2 s segments encoded over a grid of sizes and CRFs, with VMAF.

For each clip of ``devkit.corpus.CLIPS`` (train and eval) this renders the 720p source, cuts it into 2 s
segments, computes the segment's content features exactly as the sidecar does (256-px gray frames at
10 fps, including the probe encode), and for each rung of the default ladder a 720p source gets
(720p/480p/360p, caps 3000k/1400k/800k) encodes the segment with the core's x264 settings at each
``SCALES`` x ``CRFS`` point: the rung's own size and smaller ones (the per-segment resolution choice), each
under the rung's cap. Quality is VMAF v0.6.1 at the rung's display size (a smaller encode is scaled up
first), scored on every 3rd frame (libvmaf ``n_subsample=3``: a third of the cost, the mean moves by a few
tenths at most). One CSV row per (segment, rung, scale, CRF).

    nice -n 19 .venv/bin/python models/bitrate/build_corpus.py            # resumable; see the model card
    nice -n 19 .venv/bin/python models/bitrate/build_corpus.py --clips bikes,carphone -o /tmp/c.csv

The build is resumable: clips already in the CSV are skipped, so it can be stopped and started again.
The analysis frames of each segment are kept under ``.cache/bitrate-corpus/`` so that a change of features
can be recomputed (``train.py --refeature``) without re-encoding. Commit the CSV: ``train.py`` rebuilds the
model from it without encoding anything.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devkit import corpus, quality  # noqa: E402
from sidecast.core.ladder import DEFAULT_LADDER, build_ladder  # noqa: E402
from sidecast.sidecars.bitrate.features import ANALYSIS_WIDTH, FEATURE_NAMES, segment_features  # noqa: E402

SCALES = (1.0, 0.75, 0.5)
CRFS = (18, 23, 28, 33, 38, 44)  # 38 and 44: where easy content first falls to a target (issue 14)
VMAF_SUBSAMPLE = 3
CACHE = ROOT / ".cache" / "bitrate-corpus"
COLUMNS = ["clip", "split", "genre", "source", "segment", "display_height", "display_width", "height", "width",
           "scale", "crf", "max_bitrate", "bits", "kbps", "vmaf", *FEATURE_NAMES]


def encoded_size(display_w: int, display_h: int, scale: float) -> tuple[int, int]:
    """The picture size of an encode at ``scale`` of its rung (even, the rung's aspect)."""
    return quality.even(display_w * scale), quality.even(display_h * scale)


def frames_path(clip: str, segment: int) -> Path:
    """Where a segment's analysis frames are cached (``train.py --refeature`` reads them)."""
    return CACHE / f"{clip}_{segment}.a{ANALYSIS_WIDTH}.npz"


def save_frames(name: str, segment_duration: float = 2.0) -> int:
    """Only (re)write a clip's cached analysis frames (after a change of the analysis size): no encodes."""
    clip = corpus.clip(name)
    with tempfile.TemporaryDirectory(prefix="sidecast-corpus-") as tmp_s:
        mezz = corpus.render(clip, Path(tmp_s) / f"{clip.name}.mkv", quality.ffmpeg_exe())
        segments = quality.load_segments(mezz, clip.name, (), segment_duration)
        CACHE.mkdir(parents=True, exist_ok=True)
        for seg in segments:
            np.savez_compressed(frames_path(clip.name, seg.index), frames=np.stack(seg.analysis))
    return len(segments)


# A dense plan: for (segment, display height, scale), the CRFs to add (``dense_plan``).
Plan = dict[tuple[int, int, float], tuple[float, ...]]
# Where the grid is made denser (issue 14's target mode): VMAF falling more than DENSE_DROP points between
# neighbouring measured CRFs somewhere in DENSE_BAND, on training clips, at the sizes the target policy uses.
DENSE_BAND = (85.0, 99.0)
DENSE_DROP = 3.0
DENSE_MIN_STEP = 1.0  # no two CRFs of a curve closer than this
DENSE_EXTEND = (38, 44)  # the top of the grid, for curves still in the band at their highest measured CRF


# FFmpeg's random generators seed themselves from the clock unless given a seed: such a clip renders other
# content on every run, so CRFs added later would not belong to the curve its table rows measured.
RANDOM_LAVFI = ("life", "cellauto", "gradients", "sierpinski")


def renders_the_same(name: str) -> bool:
    """Whether a clip's source is the same picture on every render (not an unseeded random generator)."""
    inputs = corpus.clip(name).inputs
    spec = inputs[inputs.index("-i") + 1] if "lavfi" in inputs else ""
    return not (spec.split("=")[0] in RANDOM_LAVFI and "seed=" not in spec)


def dense_plan(rows: list[dict[str, str]], band: tuple[float, float] = DENSE_BAND, drop: float = DENSE_DROP,
               scales: tuple[float, ...] = (1.0,), split: str = "train") -> dict[str, Plan]:
    """Per clip, the CRFs to add where its measured quality falls off a cliff: between two neighbouring
    measured CRFs whose VMAF falls by more than ``drop`` with some of the fall inside ``band``, evenly spaced
    points (rounded to 0.5 CRF) so that each new step falls about ``drop`` points if the fall were linear,
    never closer than ``DENSE_MIN_STEP``. A curve whose highest measured CRF is still above the band's floor
    and below ``DENSE_EXTEND``'s top also gets those CRFs. Run it again on the merged table to refine the
    steps that are still steep (each pass locates a cliff more closely). Only ``split`` clips (the held-out
    rows stay as they are) that render the same picture every time (``renders_the_same``)."""
    curves: dict[str, dict[tuple[int, int, float], dict[float, float]]] = {}
    for r in rows:
        if (r["split"] != split or not any(abs(float(r["scale"]) - s) < 1e-9 for s in scales)
                or not renders_the_same(r["clip"])):
            continue
        key = (int(r["segment"]), int(r["display_height"]), float(r["scale"]))
        curves.setdefault(r["clip"], {}).setdefault(key, {})[float(r["crf"])] = float(r["vmaf"])
    plan: dict[str, Plan] = {}
    for clip, per in curves.items():
        for key, curve in per.items():
            crfs = sorted(curve)
            add: list[float] = []
            for a, b in zip(crfs, crfs[1:], strict=False):
                fall = curve[a] - curve[b]
                if fall <= drop or curve[a] <= band[0] or curve[b] >= band[1]:
                    continue
                k = min(int(np.ceil(fall / drop)) - 1, int((b - a) / DENSE_MIN_STEP) - 1)
                for j in range(1, k + 1):
                    c = round(2 * (a + j * (b - a) / (k + 1))) / 2
                    if a < c < b and c not in add:
                        add.append(c)
            if curve[crfs[-1]] > band[0] and crfs[-1] < DENSE_EXTEND[-1]:
                add += [float(c) for c in DENSE_EXTEND if c > crfs[-1]]
            if add:
                plan.setdefault(clip, {})[key] = tuple(sorted(add))
    return plan


def build_clip(name: str, segment_duration: float = 2.0, crfs: tuple[float, ...] = CRFS,
               plan: Plan | None = None) -> list[list[object]]:
    """All rows of one clip at ``crfs`` (runs in a worker process); with ``plan``, only the planned CRFs of
    each planned (segment, rung, scale)."""
    clip = corpus.clip(name)
    ff = quality.ffmpeg_exe()
    ladder = build_ladder(1280, 720, DEFAULT_LADDER)
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="sidecast-corpus-") as tmp_s:
        tmp = Path(tmp_s)
        mezz = corpus.render(clip, tmp / f"{clip.name}.mkv", ff)
        segments = quality.load_segments(mezz, clip.name, (), segment_duration)
        if not segments:
            raise RuntimeError(f"{clip.name}: shorter than one segment")
        for seg in segments:
            CACHE.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(frames_path(clip.name, seg.index), frames=np.stack(seg.analysis))
            feats = segment_features(seg.analysis)
            dur = len(seg.source) / float(seg.fps)
            for rung in ladder:
                todo = {scale: crfs if plan is None else plan.get((seg.index, rung.height, scale), ())
                        for scale in SCALES}
                if not any(todo.values()):
                    continue
                ref = tmp / "ref.y4m"
                quality.write_y4m(seg.at(rung.height, rung.width), seg.fps, ref)
                for scale in SCALES:
                    w, h = encoded_size(rung.width, rung.height, scale)
                    if not todo[scale]:
                        continue
                    frames = seg.at(h, w)
                    for crf in todo[scale]:
                        enc = tmp / "enc.mkv"
                        bits = quality.encode(frames, seg.fps, crf, rung.max_bitrate, enc)
                        score = quality.vmaf(enc, ref, seg.fps, threads=1, subsample=VMAF_SUBSAMPLE)
                        enc.unlink()
                        rows.append([clip.name, clip.split, clip.genre, clip.source, seg.index, rung.height,
                                     rung.width, h, w, scale, crf, rung.max_bitrate, bits,
                                     round(bits / dur / 1000, 1), round(score, 3), *(repr(float(v)) for v in feats)])
                ref.unlink()
            seg.drop_sizes()
    return rows


def merge(table: Path, extra: Path) -> int:
    """Append ``extra``'s rows (more CRFs of clips already in ``table``) to ``table``, sorted by clip, segment,
    rung, scale and CRF, every row of a segment carrying the features ``table`` already had for it."""
    with open(table, newline="") as fh:
        rows = list(csv.reader(fh))
    with open(extra, newline="") as fh:
        more = list(csv.reader(fh))
    if rows[0] != COLUMNS or more[0] != COLUMNS:
        print(f"build_corpus: error: {table} and {extra} must both have this version's columns", file=sys.stderr)
        return 2
    nf = len(FEATURE_NAMES)
    feats = {(r[0], r[4]): r[-nf:] for r in rows[1:]}
    key = {k: i for i, k in enumerate(COLUMNS)}
    have = {(r[0], r[4], r[5], r[9], r[10]) for r in rows[1:]}
    added = 0
    skipped = sorted({r[0] for r in more[1:] if not renders_the_same(r[0])})
    if skipped:
        print(f"build_corpus: not merged (a random generator renders other content on every run): "
              f"{', '.join(skipped)}", file=sys.stderr)
    for r in more[1:]:
        if r[0] in skipped:
            continue
        if (r[0], r[4]) not in feats:
            print(f"build_corpus: error: {r[0]} segment {r[4]} is not in {table}", file=sys.stderr)
            return 2
        if (r[0], r[4], r[5], r[9], r[10]) in have:
            continue
        rows.append(r[:-nf] + feats[(r[0], r[4])])
        added += 1
    order = {name: i for i, name in enumerate(c.name for c in corpus.CLIPS)}
    body = sorted(rows[1:], key=lambda r: (order.get(r[0], len(order)), r[0], int(r[key["segment"]]),
                                           -int(r[key["display_height"]]), -float(r[key["scale"]]),
                                           float(r[key["crf"]])))
    with open(table, "w", newline="") as fh:
        csv.writer(fh).writerows([rows[0], *body])
    print(f"{added} row(s) added to {table}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("corpus.csv"))
    ap.add_argument("--clips", default="", help="comma-separated clip names (default: all)")
    ap.add_argument("--workers", type=int, default=2, help="clips built at once (default 2)")
    ap.add_argument("--crfs", default="",
                    help="comma-separated CRFs to encode (default: the table's grid); with -o a new file, the rows "
                         "of one more CRF for clips already built, to be merged with --merge")
    ap.add_argument("--merge", type=Path, default=None,
                    help="append the rows of this table (built with --crfs) to the output table, their features "
                         "replaced by the output table's own for the same segment (one feature vector per segment)")
    ap.add_argument("--densify", type=Path, default=None,
                    help="encode, into the output table (a new file, to --merge afterwards), the CRFs dense_plan "
                         "asks for from this table: between measured CRFs where VMAF falls off a cliff in the "
                         f"{DENSE_BAND[0]:g}..{DENSE_BAND[1]:g} band, training clips only, at the rung's size")
    ap.add_argument("--max-encodes", type=int, default=0,
                    help="with --densify: stop planning after this many encodes (clips with the most planned "
                         "encodes first); the clips left out are printed")
    ap.add_argument("--frames-only", action="store_true",
                    help="only cache every clip's analysis frames (after a change of the analysis size)")
    args = ap.parse_args(argv)
    try:
        corpus.check_split()
        clips = [corpus.clip(n) for n in args.clips.split(",") if n] or list(corpus.CLIPS)
    except (KeyError, ValueError) as exc:
        print(f"build_corpus: error: {exc.args[0]}", file=sys.stderr)
        return 2
    if args.merge is not None:
        return merge(args.output, args.merge)
    crfs = tuple(int(float(c)) if float(c).is_integer() else float(c) for c in args.crfs.split(",") if c) or CRFS
    if args.frames_only:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for c, n in zip(clips, pool.map(save_frames, [c.name for c in clips]), strict=True):
                print(f"{c.name:24s} {n} segment(s) of analysis frames cached", flush=True)
        return 0
    done: set[str] = set()
    if args.output.is_file():
        with open(args.output, newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header != COLUMNS:
                print(f"build_corpus: error: {args.output} has other columns; move it away to rebuild",
                      file=sys.stderr)
                return 2
            done = {r[0] for r in reader if r}
    todo = [c for c in clips if c.name not in done]
    plans: dict[str, Plan] = {}
    if args.densify is not None:
        with open(args.densify, newline="") as fh:
            plans = dense_plan(list(csv.DictReader(fh)))
        todo = sorted((c for c in todo if c.name in plans),
                      key=lambda c: (-sum(len(v) for v in plans[c.name].values()), c.name))
        if args.max_encodes:
            kept, total = [], 0
            for c in todo:
                n = sum(len(v) for v in plans[c.name].values())
                if total + n <= args.max_encodes:
                    kept.append(c)
                    total += n
            left = [c.name for c in todo if c not in kept]
            print(f"densify: {len(left)} clip(s) left out by --max-encodes: {', '.join(left) or 'none'}", flush=True)
            todo = kept
        n_all = sum(len(v) for c in todo for v in plans[c.name].values())
        print(f"densify: {n_all} encodes planned over {len(todo)} clip(s)", flush=True)
    print(f"{len(done)} clip(s) already built, {len(todo)} to build", flush=True)
    t0 = time.monotonic()
    new_file = not args.output.is_file()
    with open(args.output, "a", newline="") as fh, ProcessPoolExecutor(max_workers=args.workers) as pool:
        writer = csv.writer(fh)
        if new_file:
            writer.writerow(COLUMNS)
        futures = {pool.submit(build_clip, c.name, 2.0, crfs, plans.get(c.name)): c for c in todo}
        for fut in as_completed(futures):
            c = futures[fut]
            try:
                rows = fut.result()
            except Exception as exc:  # one broken clip must not lose the others' hours of encoding
                print(f"{c.name:24s} FAILED: {exc}", flush=True)
                continue
            writer.writerows(rows)
            fh.flush()
            print(f"{c.name:24s} {c.split:5s} {c.genre:15s} {len(rows):4d} rows  {time.monotonic() - t0:7.0f} s",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
