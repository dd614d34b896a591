"""Compare streaming configurations on the real-speech TUNING programmes (never the held-out one).

    .venv/bin/python -m devkit.sttsweep --config alignatt --config alignatt:context_gap=3,onset_confirm=0
    .venv/bin/python -m devkit.sttsweep --programmes speakers,mix1,mix2 --config alignatt --config ...

Each ``--config`` is ``POLICY[:FIELD=VALUE,...]`` (StreamConfig fields, or ``guards.FIELD`` for a
GuardConfig field; numbers and true/false). Every configuration is replayed deterministically (a pass
after every 0.5 s of audio, as ``bench/stt.py --replay``, with the sidecar's incremental VAD unless
``--vad whole``) over tuning programmes of ``devkit/realspeech.py``: the 3-minute tuning programme,
``hard_tuning()``, ``speaker_tuning()`` and seeded speaker mixes (``mixN``: ``speaker_mix(N)``, so a rule
can be checked on more programmes than one replay each). One model load and one offline transcript per
programme serve all configurations; the offline baseline is bench/stt.py's (``transcribe`` with its
defaults: beam 5, no word timings). Prints, per programme and configuration, the WER and word errors,
the ratio to offline, the errors in utterances that follow another speaker vs the same speaker, the
media-time lag (median / p95 / max), words later than 6 s, stall re-decodes and looping passes (and, with
``voice_change``, how many speaker changes and same-speaker pauses its voice check dropped the context
on, by the programme's speakers, and the check's time; ``voice_change=1000`` logs the distances in
``--json`` without acting on them); then
pooled figures (errors over all reference words) with the number of programmes on which each
configuration did better and worse than the first. Programmes run one after another, every
configuration on each, so a run cut short still compares them on what it finished (``--json`` is
rewritten after each programme). A developer tool (not shipped).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
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
from sidecast.sidecars.stt.recognizer import StreamConfig, StreamingRecognizer  # noqa: E402
from sidecast.sidecars.stt.sidecar import apply_context  # noqa: E402

LOAD_KEYS = ("load_context", "context_cut", "chunk_cap", "chunk_beam")  # not StreamConfig fields: the sidecar's load rules


def parse(spec: str) -> tuple[str, StreamConfig]:
    policy = spec.partition(":")[0]
    fields: dict[str, object] = {}
    guards: dict[str, object] = {}
    for key, value in settings(spec).items():
        if key in LOAD_KEYS:
            continue  # see before_pass
        parsed = value.lower() == "true" if value.lower() in ("true", "false") else float(value)
        if key.startswith("guards."):  # a GuardConfig field, e.g. guards.lead_out=false
            guards[key.removeprefix("guards.")] = parsed
        else:
            fields[key] = parsed
    if guards:
        fields["guards"] = replace(GUARDS, **guards)  # type: ignore[arg-type]
    return spec, StreamConfig(policy=policy, **fields)  # type: ignore[arg-type]


def settings(spec: str) -> dict[str, str]:
    """A config's ``FIELD=VALUE`` pairs, as written (``POLICY:FIELD=VALUE,...``)."""
    return dict(item.split("=", 1) for item in filter(None, spec.partition(":")[2].split(",")))


def chunk_cap(spec: str) -> float | None:
    """``chunk_cap=S`` in a config: every pass a chunk pass (the sidecar's ``--load-policy chunk`` while
    the model is behind, ``--chunk-cap S``)."""
    opts = settings(spec)
    return float(opts["chunk_cap"]) if "chunk_cap" in opts else None


def before_pass(spec: str) -> Callable[[StreamingRecognizer], object] | None:
    """``load_context=S`` (with ``context_cut=now|trim``, default now) in a config: every pass runs as
    the sidecar runs it while the model is behind (``sidecar.apply_context`` with S seconds before each
    pass), so the accuracy cost of the context under load is measured on the deterministic replay, which
    is never behind by itself."""
    opts = settings(spec)
    if "load_context" not in opts:
        return None
    seconds, shed = float(opts["load_context"]), opts.get("context_cut", "now") == "now"
    return lambda rec: apply_context(rec, seconds, shed)


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


def voice_checks(prog: rs.Programme, rec: StreamingRecognizer) -> tuple[int, int, int, int]:
    """The voice checks of a replay against the programme's speakers: (changes dropped, changes checked,
    same-speaker pauses dropped, same-speaker pauses checked). A check belongs to the utterance that
    starts nearest its onset (a VAD region starts ~0.15 s before the speech)."""
    utts = prog.utterances
    out = [0, 0, 0, 0]
    for onset, _, dropped in rec.voice_checks:
        k = min(range(len(utts)), key=lambda i: abs(utts[i].start - onset - 0.15))
        if not k or abs(utts[k].start - onset - 0.15) > 0.5:
            continue
        slot = 0 if utts[k - 1].speaker != utts[k].speaker else 2
        out[slot] += int(dropped)
        out[slot + 1] += 1
    return out[0], out[1], out[2], out[3]


PROGRAMMES = "tuning,hard,speakers,mix1,mix2,mix3,mix4"


def build(name: str, minutes: float) -> rs.Programme:
    """A tuning programme by name: tuning (the 3-minute one), hard, speakers, mixN (speaker_mix(N))."""
    if name == "tuning":
        return rs.programme("tuning", "en", minutes)
    if name == "hard":
        return rs.hard_tuning()
    if name == "speakers":
        return rs.speaker_tuning()
    if name.startswith("mix"):
        return rs.speaker_mix(int(name[3:]), minutes)
    raise SystemExit(f"unknown programme {name!r}: tuning, hard, speakers or mixN")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", action="append", default=[], help="POLICY[:FIELD=VALUE,...] (repeatable)")
    ap.add_argument("--programmes", default=PROGRAMMES,
                    help="comma-separated: tuning (3 min), hard, speakers, mixN (realspeech.speaker_mix(N))")
    ap.add_argument("--minutes", type=float, default=3.0, help="length of the tuning and mixN programmes")
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--vad", choices=["incremental", "whole"], default="incremental",
                    help="incremental: the sidecar's and bench/stt.py --replay's VAD; whole: sttdiag's")
    ap.add_argument("--cache", default="", help="folder to keep the offline transcripts in between runs")
    ap.add_argument("--json", default="", help="write every row to this file")
    args = ap.parse_args()
    configs = [parse(c) for c in args.config or ["alignatt"]]
    model = engine.load_model(engine.resolve_spec(None, "cpu", "int8", args.cpu_threads))
    names = args.programmes.split(",")
    rows: list[dict[str, object]] = []
    print(f"load average {os.getloadavg()[0]:.1f}; tiny.en int8, {args.cpu_threads} thread(s), streaming beam 3, "
          f"{args.vad} VAD; offline = transcribe(beam 5), as bench/stt.py", flush=True)
    print(f"{'config':44s} {'programme':9s} {'WER':>6s} {'err':>4s} {'ratio':>6s} {'chg':>4s} {'same':>4s} "
          f"{'lag med':>7s} {'p95':>5s} {'max':>5s} {'>6s':>4s} {'stalls':>6s} {'loops':>5s} {'s':>5s}", flush=True)
    for name in names:
        prog = build(name, args.minutes)
        n = len(rs.normalise(prog.reference).split())
        cached = Path(args.cache) / f"offline-{name}-{args.minutes:g}-{args.cpu_threads}-b5.txt" if args.cache else None
        if cached is not None and cached.exists():
            off_text = cached.read_text()
        else:
            segs, _ = model.transcribe(prog.audio)  # beam 5, no word timings: bench/stt.py's baseline
            off_text = " ".join(s.text for s in segs)
            if cached is not None:
                cached.write_text(off_text)
        off_err = round(rs.wer(prog.reference, off_text) * n)
        print(f"{'offline':44s} {name:9s} {off_err / n:6.3f} {off_err:4d}   ({prog.seconds:.0f} s, "
              f"{len(prog.utterances)} utterances, {n} words)", flush=True)
        for label, cfg in configs:
            t0 = time.monotonic()
            beam = int(float(settings(label).get("chunk_beam", 3)))  # chunk_beam=N: chunk passes with this beam
            dec = Decoder(model, DecodeOptions(language=None, beam_size=beam))
            words, rec = replay(prog, dec, cfg, args.vad, before_pass(label), chunk_cap(label))
            err = round(rs.wer(prog.reference, " ".join(x.text for x in words)) * n)
            ch, sa = split_errors(prog, words)
            lag: list[float] = rec.lags  # type: ignore[attr-defined]
            if args.cache:
                utts = prog.utterances
                spans = [" ".join(x.text for x in in_span(words, u, utts[k + 1] if k + 1 < len(utts) else None))
                         for k, u in enumerate(utts)]
                safe = label.replace(":", "_").replace(",", "_").replace("=", "")
                (Path(args.cache) / f"words-{safe}-{name}.json").write_text(json.dumps(spans))
            vc = voice_checks(prog, rec)
            row = dict(config=label, programme=name, words=n, errors=err, offline_errors=off_err, lags=lag,
                       stalls=rec.stalls, loops=rec.loops, change=ch, same=sa, voice=vc,
                       voice_ms=rec.voice_seconds * 1000, passes=rec.passes,
                       checks=[(o, d if d == d else None, c) for o, d, c in rec.voice_checks])
            rows.append(row)
            print(f"{label:44s} {name:9s} {err / n:6.3f} {err:4d} {err / max(off_err, 1):6.2f} {ch:4d} {sa:4d} "
                  f"{np.median(lag):7.2f} {np.percentile(lag, 95):5.2f} {max(lag):5.2f} {sum(x > 6 for x in lag):4d} "
                  f"{rec.stalls:6d} {rec.loops:5d} {time.monotonic() - t0:5.0f}", flush=True)
            if rec.voice_checks:
                print(f"{'':44s} voice checks: dropped the context on {vc[0]} of {vc[1]} speaker changes, "
                      f"{vc[2]} of {vc[3]} same-speaker pauses; {rec.voice_seconds * 1000:.0f} ms in all "
                      f"({rec.voice_seconds * 1000 / max(len(rec.voice_checks), 1):.1f} ms per check, "
                      f"{rec.passes} passes)", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(rows))
    print(f"\nPOOLED over {', '.join(names)} (load average {os.getloadavg()[0]:.1f})")
    print(f"{'config':44s} {'WER':>6s} {'err':>4s} {'ratio':>6s} {'better':>6s} {'worse':>5s} "
          f"{'lag med':>7s} {'p95':>5s} {'max':>5s} {'>6s':>4s} {'stalls':>6s}")
    base = {r["programme"]: r["errors"] for r in rows if r["config"] == configs[0][0]}
    for label, _ in configs:
        mine = [r for r in rows if r["config"] == label]
        err = sum(int(r["errors"]) for r in mine)  # type: ignore[call-overload]
        n = sum(int(r["words"]) for r in mine)  # type: ignore[call-overload]
        off = sum(int(r["offline_errors"]) for r in mine)  # type: ignore[call-overload]
        lags = [x for r in mine for x in r["lags"]]  # type: ignore[attr-defined]
        better = sum(r["errors"] < base[r["programme"]] for r in mine)  # type: ignore[operator]
        worse = sum(r["errors"] > base[r["programme"]] for r in mine)  # type: ignore[operator]
        print(f"{label:44s} {err / n:6.3f} {err:4d} {err / max(off, 1):6.2f} {better:6d} {worse:5d} "
              f"{np.median(lags):7.2f} {np.percentile(lags, 95):5.2f} {max(lags):5.2f} {sum(x > 6 for x in lags):4d} "
              f"{sum(int(r['stalls']) for r in mine):6d}")  # type: ignore[call-overload]
    print(f"(offline: {sum(int(r['offline_errors']) for r in rows if r['config'] == configs[0][0])} errors; "  # type: ignore[call-overload]
          "better/worse: programmes with fewer/more errors than the first config)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
