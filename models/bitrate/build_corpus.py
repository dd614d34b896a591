"""Build the rate model's corpus: every clip's 2 s segments encoded at several CRFs, with VMAF measured.

For each clip of ``sidecars.bitrate.corpus.CLIPS`` (train and eval) this renders the 720p source, cuts it
into 2 s segments, computes the segment's content features from 256-px gray frames at 10 fps (what the
sidecar sees), and for each rendition height (360/480/720) encodes the segment with the core's x264
settings at each CRF of ``CRFS`` under the rendition's static cap, measuring bits and VMAF (vmaf_v0.6.1,
at the rendition's resolution). One CSV row per (segment, height, CRF).

    nice -n 10 .venv/bin/python models/bitrate/build_corpus.py            # ~10 min on 2 shared cores
    nice -n 10 .venv/bin/python models/bitrate/build_corpus.py --clips bikes,carphone -o /tmp/c.csv

Commit the CSV: ``train.py`` rebuilds the model from it without re-encoding.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from devkit import corpus, quality  # noqa: E402
from sidecast.core.ladder import DEFAULT_LADDER  # noqa: E402
from sidecast.sidecars.bitrate.features import FEATURE_NAMES, segment_features  # noqa: E402

HEIGHTS = (360, 480, 720)
CRFS = (17, 20, 23, 26, 29, 32, 35)
CAPS = {r.height: r.max_bitrate for r in DEFAULT_LADDER}
COLUMNS = ["clip", "split", "kind", "segment", "height", "width", "crf", "max_bitrate", "bits", "kbps", "vmaf",
           *FEATURE_NAMES]


def build(clips: list[corpus.Clip], out_csv: Path, segment_duration: float = 2.0) -> int:
    ff = quality.ffmpeg_exe()
    rows = 0
    with tempfile.TemporaryDirectory(prefix="sidecast-corpus-") as tmp_s, open(out_csv, "w", newline="") as fh:
        tmp = Path(tmp_s)
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for clip in clips:
            t0 = time.monotonic()
            mezz = corpus.render(clip, tmp / f"{clip.name}.mkv", ff)
            segments = quality.load_segments(mezz, clip.name, HEIGHTS, segment_duration)
            if not segments:
                raise RuntimeError(f"{clip.name}: shorter than one segment")
            for seg in segments:
                feats = segment_features(seg.analysis)
                for h in HEIGHTS:
                    frames = seg.renditions[h]
                    ref = tmp / f"ref_{h}.y4m"
                    quality.write_y4m(frames, seg.fps, ref)
                    for crf in CRFS:
                        enc = tmp / f"enc_{h}_{crf}.mkv"
                        bits = quality.encode(frames, seg.fps, crf, CAPS[h], enc)
                        score = quality.vmaf(enc, ref, seg.fps)
                        enc.unlink()
                        writer.writerow([
                            clip.name, clip.split, clip.kind, seg.index, h, frames[0].width, crf, CAPS[h], bits,
                            round(bits / segment_duration / 1000, 1), round(score, 3),
                            *(f"{v:.6g}" for v in feats),
                        ])
                        rows += 1
                    ref.unlink()
                fh.flush()
            mezz.unlink()
            print(f"{clip.name:24s} {clip.split:5s} {len(segments)} segment(s) {time.monotonic() - t0:6.1f} s",
                  flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", type=Path, default=Path(__file__).with_name("corpus.csv"))
    ap.add_argument("--clips", default="", help="comma-separated clip names (default: all)")
    args = ap.parse_args(argv)
    try:
        clips = [corpus.clip(n) for n in args.clips.split(",") if n] or list(corpus.CLIPS)
    except KeyError as exc:
        print(f"build_corpus: error: {exc.args[0]}", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    rows = build(clips, args.output)
    print(f"{rows} measurements -> {args.output} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
