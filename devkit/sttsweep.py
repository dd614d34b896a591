"""Compare streaming configurations on the real-speech TUNING programmes (never the held-out one).

    .venv/bin/python -m devkit.sttsweep --config alignatt --config alignatt:context_gap=3,onset_confirm=0

Each ``--config`` is ``POLICY[:FIELD=VALUE,...]`` (StreamConfig fields, or ``guards.FIELD`` for a
GuardConfig field; numbers and true/false). Every
configuration is replayed deterministically (a pass after every 0.5 s of audio, as ``bench/stt.py
--replay`` and ``devkit/sttdiag.py``) over the three tuning programmes of ``devkit/realspeech.py``: the
3-minute tuning programme, ``hard_tuning()`` and ``speaker_tuning()``. One model load and one offline
transcript per programme serve all configurations. Prints, per configuration and programme, the WER, its
ratio to offline, the word errors in utterances that follow another speaker vs the same speaker, the
media-time lag (median / p95 / max) and the stall re-decodes; then the pooled figures (errors over all
reference words of the three programmes). A developer tool (not shipped).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit import realspeech as rs  # noqa: E402
from devkit.sttdiag import in_span, replay  # noqa: E402
from sidecast.contract.records import Word  # noqa: E402
from sidecast.sidecars.stt import engine  # noqa: E402
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder  # noqa: E402
from sidecast.sidecars.stt.guards import GUARDS  # noqa: E402
from sidecast.sidecars.stt.recognizer import StreamConfig  # noqa: E402


def parse(spec: str) -> tuple[str, StreamConfig]:
    policy, _, rest = spec.partition(":")
    fields: dict[str, object] = {}
    guards: dict[str, object] = {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=", 1)
        parsed = value.lower() == "true" if value.lower() in ("true", "false") else float(value)
        if key.startswith("guards."):  # a GuardConfig field, e.g. guards.lead_out=false
            guards[key.removeprefix("guards.")] = parsed
        else:
            fields[key] = parsed
    if guards:
        fields["guards"] = replace(GUARDS, **guards)  # type: ignore[arg-type]
    return spec, StreamConfig(policy=policy, **fields)  # type: ignore[arg-type]


def errors(ref: str, words: list[Word]) -> int:
    """Word errors (substitutions + deletions + insertions) of ``words`` against ``ref``."""
    import jiwer

    r, h = rs.normalise(ref), rs.normalise(" ".join(w.text for w in words))
    if not r:
        return len(h.split())
    o = jiwer.process_words(r, h or "<empty>")
    return int(o.substitutions + o.deletions + o.insertions)


def split_errors(prog: rs.Programme, words: list[Word]) -> tuple[int, int]:
    """Word errors in utterances after another speaker, and after the same speaker (by time span)."""
    change = same = 0
    utts = prog.utterances
    for k, u in enumerate(utts):
        e = errors(u.text, in_span(words, u, utts[k + 1] if k + 1 < len(utts) else None))
        if k and utts[k - 1].speaker != u.speaker:
            change += e
        else:
            same += e
    return change, same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", default=[], help="POLICY[:FIELD=VALUE,...] (repeatable)")
    ap.add_argument("--programmes", default="tuning,hard,speakers",
                    help="comma-separated: tuning (3 min), hard, speakers")
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--cache", default="", help="folder to keep the offline transcripts in between runs")
    args = ap.parse_args()
    configs = [parse(c) for c in args.config or ["alignatt"]]
    model = engine.load_model(engine.resolve_spec(None, "cpu", "int8", args.cpu_threads))
    builders = {"tuning": lambda: rs.programme("tuning", "en", 3.0), "hard": rs.hard_tuning,
                "speakers": rs.speaker_tuning}
    progs = {name: builders[name]() for name in args.programmes.split(",")}
    offline: dict[str, tuple[float, int]] = {}
    for name, prog in progs.items():
        cached = Path(args.cache) / f"offline-{name}-{args.cpu_threads}.json" if args.cache else None
        if cached is not None and cached.exists():
            off = [Word(*w) for w in json.loads(cached.read_text())]
        else:
            segs, _ = model.transcribe(prog.audio, word_timestamps=True)
            off = [Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
                   for s in segs for w in s.words or ()]
            if cached is not None:
                cached.write_text(json.dumps([[w.text, w.start, w.end, w.probability] for w in off]))
        n = len(rs.normalise(prog.reference).split())
        offline[name] = (rs.wer(prog.reference, " ".join(w.text for w in off)), n)
        ch, sa = split_errors(prog, off)
        print(f"{name}: {prog.seconds:.0f} s, {len(prog.utterances)} utterances, {n} words; offline WER "
              f"{offline[name][0]:.3f} (errors after a speaker change {ch}, same speaker {sa})", flush=True)
    print(f"\n{'config':48s} {'programme':9s} {'WER':>6s} {'ratio':>6s} {'chg':>4s} {'same':>4s} "
          f"{'lag med':>7s} {'p95':>5s} {'max':>5s} {'stalls':>6s} {'s':>5s}", flush=True)
    for label, cfg in configs:
        tot_err = tot_off = tot_n = 0.0
        lags: list[float] = []
        for name, prog in progs.items():
            t0 = time.monotonic()
            dec = Decoder(model, DecodeOptions(language=None, beam_size=3))
            words, rec = replay(prog, dec, cfg)
            w = rs.wer(prog.reference, " ".join(x.text for x in words))
            off_wer, n = offline[name]
            ch, sa = split_errors(prog, words)
            lag = rec.lags  # type: ignore[attr-defined]
            if args.cache:
                utts = prog.utterances
                spans = [" ".join(x.text for x in in_span(words, u, utts[k + 1] if k + 1 < len(utts) else None))
                         for k, u in enumerate(utts)]
                safe = label.replace(":", "_").replace(",", "_").replace("=", "")
                (Path(args.cache) / f"words-{safe}-{name}.json").write_text(json.dumps(spans))
            lags += lag
            tot_err += w * n
            tot_off += off_wer * n
            tot_n += n
            print(f"{label:48s} {name:9s} {w:6.3f} {w / max(off_wer, 1e-9):6.2f} {ch:4d} {sa:4d} "
                  f"{np.median(lag):7.2f} {np.percentile(lag, 95):5.2f} {max(lag):5.2f} {rec.stalls:6d} "
                  f"{time.monotonic() - t0:5.0f}", flush=True)
        print(f"{label:48s} {'POOLED':9s} {tot_err / tot_n:6.3f} {tot_err / max(tot_off, 1e-9):6.2f} "
              f"{'':4s} {'':4s} {np.median(lags):7.2f} {np.percentile(lags, 95):5.2f} {max(lags):5.2f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
