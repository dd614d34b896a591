"""Replay a recorded real-time run's cue-builder calls through other cue settings (a developer tool).

    .venv/bin/python bench/stt.py --corpus real --split tuning --minutes 8 --policy alignatt \\
        --cpu-threads 1 --record /tmp/run-{policy}.json          # real time, under the CPU lock
    .venv/bin/python -m devkit.sttcues /tmp/run-alignatt.json --split tuning --minutes 8 \\
        --setting max_open=2.5 --setting max_open=2.0 --setting max_open=1.5,clause_words=3

Cue shaping does not change what the recogniser commits, nor when, so one real-time run's calls (each
with the wall time it was made) replayed through CueBuilders with other settings give every setting's
spoken word -> final cue latency on the very same run, free of the run-to-run noise of real time. Each
``--setting`` is ``FIELD=VALUE,...`` over CueBuilder's ``max_open`` and CaptionStyle's fields. Prints the
latency (median / p95 / max, words later than 6 s), cue order and overlap faults, and the cues' shape.
Tuning splits only: the held-out programme is measured once, by bench/stt.py, with the final settings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import fields, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stt import cue_latency, cue_shape, load_calls, pct, recut  # noqa: E402
from devkit import realspeech as rs  # noqa: E402
from sidecast.sidecars.stt.shaping import DEFAULT_STYLE, CueBuilder  # noqa: E402


def builder(setting: str) -> CueBuilder:
    """A CueBuilder from ``FIELD=VALUE,...`` (``max_open`` or a CaptionStyle field; empty = defaults)."""
    style_fields = {f.name: f.type for f in fields(DEFAULT_STYLE)}
    style, max_open = DEFAULT_STYLE, CueBuilder().max_open
    for item in filter(None, setting.split(",")):
        key, _, value = item.partition("=")
        if key == "max_open":
            max_open = float(value)
        elif key in style_fields:
            style = replace(style, **{key: int(value) if style_fields[key] in (int, "int") else float(value)})
        else:
            raise SystemExit(f"unknown cue setting {key!r} (max_open or one of {', '.join(style_fields)})")
    return CueBuilder(style, max_open=max_open)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("recording", nargs="+", help="JSON files written by bench/stt.py --record")
    ap.add_argument("--split", choices=["tuning", "hard", "speakers"], default="tuning")
    ap.add_argument("--minutes", type=float, default=8.0)
    ap.add_argument("--setting", action="append", default=[], help="FIELD=VALUE,... (repeatable; '' = defaults)")
    args = ap.parse_args()
    prog = (rs.hard_tuning() if args.split == "hard" else rs.speaker_tuning() if args.split == "speakers"
            else rs.programme("tuning", "en", args.minutes))
    settings = args.setting or [""]
    width = max(12, *(len(s) for s in settings))
    print(f"{'setting':{width}s} {'med':>5s} {'p95':>5s} {'max':>5s} {'>6s':>4s} {'order':>5s} {'ovl':>4s}  cues")
    for path in args.recording:
        t0, speed, calls = load_calls(Path(path))
        print(path)
        for s in settings:
            finals = recut(calls, builder(s))
            lat = cue_latency(list(prog.utterances), finals, t0, speed)
            starts = [c.start for _, c in finals]
            order = sum(b < a for a, b in zip(starts, starts[1:], strict=False))
            overlap = sum(a.end > b.start + 1e-6 for (_, a), (_, b) in zip(finals, finals[1:], strict=False))
            print(f"{s or 'defaults':{width}s} {statistics.median(lat):5.2f} {pct(lat, 0.95):5.2f} {max(lat):5.2f} "
                  f"{sum(x > 6 for x in lat):4d} {order:5d} {overlap:4d}  {cue_shape(finals)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
