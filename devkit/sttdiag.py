"""Diagnose the streaming recogniser on the real-speech corpus: which words does the streaming policy lose
or change against the offline transcript of the same audio, and what did the passes around them do?

    .venv/bin/python -m devkit.sttdiag --split heldout --minutes 4 --policy alignatt
    .venv/bin/python -m devkit.sttdiag --split tuning --minutes 3 --policy agreement --passes

Deterministic replay (a pass after every 0.5 s of audio, as bench/stt.py --replay). For every utterance
where streaming does worse than offline it prints the reference, the offline and the streaming words (in
the utterance's time span), and with ``--passes`` the log of the passes that decoded that span: pass end,
buffer start, the forced prefix, what the decoder said, what survived the guards and the copy check, what
was committed. A developer tool (not shipped).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit import realspeech as rs  # noqa: E402
from sidecast.contract.records import Word  # noqa: E402
from sidecast.sidecars.stt import engine  # noqa: E402
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder  # noqa: E402
from sidecast.sidecars.stt.recognizer import SAMPLE_RATE, StreamConfig, StreamingRecognizer  # noqa: E402


@dataclass
class PassLog:
    end: float                 # media seconds: the newest audio of the pass
    buf_start: float
    prefix: str
    decoded: list[str] = field(default_factory=list)   # one entry per decoder call: "[prompt?] text"
    words: list[Word] = field(default_factory=list)    # after the guards (all decoder calls of the pass)
    merged: list[Word] = field(default_factory=list)   # after the copy check
    committed: list[Word] = field(default_factory=list)
    stall: bool = False


class LoggingRecognizer(StreamingRecognizer):
    """The recogniser with every pass recorded (the decisions are the parent's, unchanged)."""

    def __init__(self, *a: object, **k: object) -> None:
        super().__init__(*a, **k)  # type: ignore[arg-type]
        self.log: list[PassLog] = []
        inner = self.decode

        def decode(audio: np.ndarray, prompt: str, prefix: str) -> list:  # type: ignore[type-arg]
            segs = inner(audio, prompt, prefix)
            if self.log:
                off = self.log[-1]
                off.decoded.append(f"[{len(audio) / SAMPLE_RATE:.1f}s p={bool(prompt)} x={bool(prefix)}] "
                                   + " | ".join(s.text.strip() for s in segs))
            return segs

        self.decode = decode  # type: ignore[assignment]

    def _pass(self, audio, regions, offset, prompt, prefix):  # type: ignore[no-untyped-def]
        words = super()._pass(audio, regions, offset, prompt, prefix)
        if offset:
            self.log[-1].stall = True
        self.log[-1].words = list(words)
        return words

    def _merge(self, new, regions=(), closed=0.0):  # type: ignore[no-untyped-def]
        out = super()._merge(new, regions, closed)
        self.log[-1].merged = list(out)
        return out

    def step(self, pass_end: int, chunk: bool = False):  # type: ignore[no-untyped-def]
        self.log.append(PassLog(end=pass_end / SAMPLE_RATE, buf_start=self.buf_start / SAMPLE_RATE,
                                prefix=self._prefix()))
        r = super().step(pass_end, chunk)
        self.log[-1].committed = list(r.committed)
        return r


def replay(prog: rs.Programme, decoder: Decoder, config: StreamConfig,
           vad: str = "whole", before: Callable[[StreamingRecognizer], object] | None = None,
           chunk_cap: float | None = None) -> tuple[list[Word], LoggingRecognizer]:
    """``vad``: "whole" (Silero over each pass's buffer, engine.speech_regions) or "incremental" (the
    sidecar's default and bench/stt.py --replay's, engine.StreamVad). ``before``: called with the
    recogniser before each pass (e.g. the sidecar's ``apply_context``, as if the model were behind).
    ``chunk_cap``: every pass a chunk pass (``chunk_pass_end``, ``step(chunk=True)``), as the sidecar's
    ``--load-policy chunk`` runs them while the model is behind."""
    stream_vad = engine.StreamVad() if vad == "incremental" else None
    rec = LoggingRecognizer(decoder.decode, stream_vad if stream_vad is not None else engine.speech_regions, config)
    if stream_vad is not None:
        stream_vad.follow(rec)
    words: list[Word] = []
    rec.lags = []  # type: ignore[attr-defined]
    for i in range(0, len(prog.audio), 1600):
        rec.append(prog.audio[i:i + 1600], i)
        end = rec.next_pass_end() if chunk_cap is None else rec.chunk_pass_end(chunk_cap)
        if end is not None:
            if before is not None:
                before(rec)
            got = rec.step(end, chunk=chunk_cap is not None).committed
            words.extend(got)
            # a chunk pass may stop short of the newest audio: its words are as late as the audio that came
            heard = end if chunk_cap is None else rec.received_end
            rec.lags += [heard / SAMPLE_RATE - w.end for w in got]  # type: ignore[attr-defined]
    got = rec.finish().committed
    words.extend(got)
    rec.lags += [len(prog.audio) / SAMPLE_RATE - w.end for w in got]  # type: ignore[attr-defined]
    return words, rec


def in_span(words: list[Word], u: rs.Utterance, nxt: rs.Utterance | None) -> list[Word]:
    hi = u.end + 0.5 if nxt is None else min(u.end + 0.5, (u.end + nxt.start) / 2)
    return [w for w in words if u.start - 0.5 <= w.start < hi]


def fmt(words: list[Word]) -> str:
    return " ".join(f"{w.text}@{w.start:.2f}-{w.end:.2f}" for w in words)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--split", default="heldout",
                    help="heldout, tuning, hard (realspeech.hard_tuning) or speakers (realspeech.speaker_tuning)")
    ap.add_argument("--clips", default="", help="a programme of these clips instead: ID:PAUSE,ID:PAUSE,...")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--policy", default="alignatt")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a StreamConfig field for this run (numbers and true/false), e.g. onset_confirm=1.0")
    ap.add_argument("--load-context", type=float, default=None, metavar="S",
                    help="every pass as the sidecar runs it while the model is behind (sidecar.apply_context)")
    ap.add_argument("--context-cut", default="now", choices=["now", "trim"], help="with --load-context")
    ap.add_argument("--chunk-cap", type=float, default=None, metavar="S",
                    help="every pass a chunk pass, as the sidecar's --load-policy chunk while the model is behind")
    ap.add_argument("--passes", action="store_true", help="print the pass log around each error")
    ap.add_argument("--all", action="store_true", help="every utterance, not only the worse ones")
    ap.add_argument("--dump", default="", help="write the reference, offline and streaming words to this JSON file")
    args = ap.parse_args()

    model = engine.load_model(engine.resolve_spec(None, "cpu", "int8", 2))
    if args.clips:
        pool = {c.id: c for c in (*rs.librivox(), *rs.prompts("en"), *rs.pocketsphinx_speakers())}
        chosen = [item.rsplit(":", 1) for item in args.clips.split(",")]
        assert all(pool[c].split == "tuning" for c, _ in chosen), "held-out clips are for measuring only"
        prog = rs.programme(clips=[pool[c] for c, _ in chosen], gaps=[float(g) for _, g in chosen], minutes=60)
    elif args.split in ("hard", "speakers"):
        prog = rs.hard_tuning() if args.split == "hard" else rs.speaker_tuning()
    else:
        prog = rs.programme(args.split, "en", args.minutes, seed=args.seed)
    segs, _ = model.transcribe(prog.audio, word_timestamps=True)
    off = [Word(w.word.strip(), float(w.start), float(w.end), float(w.probability)) for s in segs for w in s.words or ()]
    dec = Decoder(model, DecodeOptions(language=None, beam_size=3))
    overrides: dict[str, object] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        overrides[key] = value.lower() == "true" if value.lower() in ("true", "false") else float(value)
    before = None
    if args.load_context is not None:
        from sidecast.sidecars.stt.sidecar import apply_context

        seconds, shed = args.load_context, args.context_cut == "now"
        before = lambda r: apply_context(r, seconds, shed)  # noqa: E731
        overrides["load_context"], overrides["context_cut"] = seconds, args.context_cut
    config = StreamConfig(policy=args.policy, **{k: v for k, v in overrides.items()  # type: ignore[arg-type]
                                                 if k not in ("load_context", "context_cut")})
    words, rec = replay(prog, dec, config, before=before, chunk_cap=args.chunk_cap)
    off_wer = rs.wer(prog.reference, " ".join(w.text for w in off))
    st_wer = rs.wer(prog.reference, " ".join(w.text for w in words))
    print(f"{args.split} {args.minutes} min seed {args.seed}, {args.policy} {overrides}: offline WER {off_wer:.3f}, "
          f"streaming {st_wer:.3f} ({st_wer / max(off_wer, 1e-9):.2f}x), stalls {rec.stalls}, loops {rec.loops}; "
          f"lag median {np.median(rec.lags):.2f} p95 {np.percentile(rec.lags, 95):.2f} max {max(rec.lags):.2f} s")
    utts = prog.utterances
    if args.dump:
        import json

        as_list = [[w.text, w.start, w.end] for w in words]
        Path(args.dump).write_text(json.dumps({
            "reference": prog.reference, "offline": [[w.text, w.start, w.end] for w in off], "streaming": as_list,
            "utterances": [[u.clip, u.speaker, u.start, u.end, u.text, u.repeat] for u in utts]}))
    lost = 0
    for k, u in enumerate(utts):
        nxt = utts[k + 1] if k + 1 < len(utts) else None
        s, o = in_span(words, u, nxt), in_span(off, u, nxt)
        ws, wo = rs.wer(u.text, " ".join(w.text for w in s)), rs.wer(u.text, " ".join(w.text for w in o))
        n = len(rs.normalise(u.text).split())
        lost += max(round((ws - wo) * n), 0)
        if not args.all and ws <= wo:
            continue
        print(f"\n#{k} {u.clip} {u.speaker}{' REPEAT' if u.repeat else ''} {u.start:.2f}-{u.end:.2f} "
              f"(gap before {u.start - (utts[k - 1].end if k else 0):.2f} s): stream {ws:.2f} offline {wo:.2f}")
        print(f"  ref : {u.text}")
        print(f"  off : {' '.join(w.text for w in o)}")
        print(f"  str : {fmt(s)}")
        if args.passes:
            for p in rec.log:
                if u.start - 0.3 <= p.end and (p.end <= u.end + 3.0 or any(w in s for w in p.committed)):
                    if not p.decoded and not p.committed:
                        continue
                    print(f"    pass {p.end:7.2f} buf {p.buf_start:7.2f}{' STALL' if p.stall else ''}"
                          f" prefix='{p.prefix[-60:]}'")
                    for d in p.decoded:
                        print(f"       dec {d}")
                    if [w.text for w in p.words] != [w.text for w in p.merged]:
                        print(f"       guards {fmt(p.words)}")
                    print(f"       new {fmt(p.merged)}")
                    if p.committed:
                        print(f"       COMMIT {fmt(p.committed)}")
    print(f"\nwords lost vs offline (sum over worse utterances, approx): {lost}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
