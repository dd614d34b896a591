"""Benchmark of the stt sidecar: streaming accuracy, caption latency and cue timing, each printed next to
faster-whisper's own offline transcription of the same audio with the same model, measured in this run.

    .venv/bin/python bench/stt.py                 # ~2 minutes of speech, fed in real time
    .venv/bin/python bench/stt.py --minutes 30    # endurance: does latency grow over half an hour?
    .venv/bin/python bench/stt.py --speed 4       # quicker look (latency figures then mean little)
    .venv/bin/python bench/stt.py --corpus real --minutes 4            # real speech, held-out, both policies
    .venv/bin/python bench/stt.py --corpus real --model base --language es
    .venv/bin/python bench/stt.py --corpus translation                  # engines: latency and chrF
    .venv/bin/python bench/stt.py --corpus real --split tuning --minutes 8 --policy alignatt \
        --record /tmp/run-{policy}.json   # also save the cue-builder calls: devkit/sttcues.py replays them
                                          # through other cue settings (--max-open: the sidecar's)

Audio: sentences spoken by espeak-ng with pauses and light noise (sidecars/stt/synth.py), so the
reference text and every sentence's start time are known exactly. Figures on a shared machine are
pessimistic: the load average is printed at the start and the end.

Metrics
- WER: streaming (final cues) and offline, against the known text; target streaming <= 1.2x offline.
- Word latency: wall time a word is committed minus the wall time its audio ended (the media time of its
  end, played in real time); median and p95; targets 2.0 s and 3.5 s with tiny.en on 2 cores. Also when
  the word's final cue is published (what a player of the HLS output sees), and first vs last third.
- Cue timing: each final cue's start against the offline word timestamp of the same first word (and the
  true sentence onset where the cue starts a sentence); target within 0.3 s. Because the synthesiser
  knows each sentence's true onset, the first word of every sentence is also timed against the truth for
  both transcripts: that shows when the offline reference is itself off (Whisper often starts the first
  word after a pause early).
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit import speech as synth  # noqa: E402
from sidecast.contract.records import AudioChunk, Cue, StreamInfo, Word  # noqa: E402
from sidecast.sidecars.stt import SttSidecar, engine  # noqa: E402
from sidecast.sidecars.stt.guards import normalize  # noqa: E402
from sidecast.sidecars.stt.recognizer import StreamConfig  # noqa: E402
from sidecast.sidecars.stt.shaping import CueBuilder  # noqa: E402


def wer(ref: str, hyp: str) -> float:
    import jiwer

    t = jiwer.Compose([jiwer.ToLowerCase(), jiwer.RemovePunctuation(), jiwer.RemoveMultipleSpaces(),
                       jiwer.Strip(), jiwer.ReduceToListOfListOfWords()])
    return float(jiwer.wer(ref, hyp, reference_transform=t, hypothesis_transform=t))


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def make_audio(minutes: float, seed: int) -> tuple[np.ndarray, list[synth.Utterance]]:
    rng = np.random.default_rng(seed)
    sentences: list[str] = []
    seconds = 0.0
    while seconds < minutes * 60:
        order = list(rng.permutation(len(synth.SENTENCES)))
        for i in order:
            sentences.append(synth.SENTENCES[i])
            seconds += 3.9  # a typical sentence and its gap (measured: 3.98 s), so --minutes N gives >= N
            if seconds >= minutes * 60:
                break
    audio, utts = synth.programme(sentences, gaps=(0.8, 1.6, 0.5, 2.5, 1.1), seed=seed)
    return audio, utts


def offline(audio: np.ndarray, spec: engine.ModelSpec) -> tuple[list[Word], float]:
    model = engine.load_model(spec)
    lang = None if not engine.is_multilingual(model) else "en"
    t0 = time.monotonic()
    segments, _ = model.transcribe(audio, language=lang, word_timestamps=True)
    words = [Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
             for s in segments for w in (s.words or ())]
    return words, time.monotonic() - t0


@dataclass
class StreamRun:
    t0: float
    published: list[tuple[float, Cue]]
    commits: list[tuple[float, Word]]
    feed_s: float
    drain_s: float
    passes: int
    loops: int
    decode_s: float
    calls: list[BuilderCall] = field(default_factory=list)


@dataclass(frozen=True)
class BuilderCall:
    """One recogniser step as the sidecar handed it to its CueBuilder, with the wall time: cue shaping does
    not change what the recogniser commits, so a real-time run's calls replayed through builders with other
    settings (``recut``) give each setting's word -> cue latency on the same run."""

    wall: float
    track: str
    committed: tuple[Word, ...]
    hypothesis: tuple[Word, ...]
    frontier: float
    final: bool
    close: bool = False  # a chunk pass: its committed words are final in cues at once (CueBuilder.update)


def recut(calls: list[BuilderCall], builder: CueBuilder) -> list[tuple[float, Cue]]:
    """The main track's final cues a builder would have published on a recorded run, with their wall times."""
    out: list[tuple[float, Cue]] = []
    for c in calls:
        if not c.track:
            finals, _ = builder.update(list(c.committed), list(c.hypothesis), c.frontier, final=c.final,
                                       close=c.close)
            out.extend((c.wall, f) for f in finals)
    return out


def save_calls(path: Path, t0: float, calls: list[BuilderCall], speed: float = 1.0) -> None:
    def ws(words: tuple[Word, ...]) -> list[list[object]]:
        return [[w.text, w.start, w.end, w.probability] for w in words]

    path.write_text(json.dumps({"t0": t0, "speed": speed, "calls": [
        {"wall": c.wall, "track": c.track, "committed": ws(c.committed), "hypothesis": ws(c.hypothesis),
         "frontier": c.frontier, "final": c.final, "close": c.close} for c in calls]}))


def load_calls(path: Path) -> tuple[float, float, list[BuilderCall]]:
    d = json.loads(path.read_text())

    def ws(rows: list[list[object]]) -> tuple[Word, ...]:
        return tuple(Word(str(r[0]), float(r[1]), float(r[2]), float(r[3])) for r in rows)  # type: ignore[arg-type]

    return float(d["t0"]), float(d.get("speed", 1.0)), [BuilderCall(c["wall"], c["track"], ws(c["committed"]), ws(c["hypothesis"]),
                                        float(c["frontier"]), bool(c["final"]), bool(c.get("close", False)))
                                       for c in d["calls"]]


def stream(audio: np.ndarray, spec: engine.ModelSpec, speed: float, beam_size: int = 3,
           config: StreamConfig | None = None, language: str = "en", max_open: float = CueBuilder.MAX_OPEN) -> StreamRun:
    sc = SttSidecar(spec=spec, beam_size=beam_size, stream=config, language=language, max_open=max_open)
    published: list[tuple[float, Cue]] = []
    commits: list[tuple[float, Word]] = []
    lock = threading.Lock()

    def on_publish(result: object) -> None:
        if isinstance(result, Cue):
            with lock:
                published.append((time.monotonic(), result))

    def on_commit(track: str, words: list[Word]) -> None:
        now = time.monotonic()
        with lock:
            commits.extend((now, w) for w in words)

    calls: list[BuilderCall] = []
    publish_step = sc._publish_step

    def recording_step(track: Any, r: Any, final: bool, close: bool = False) -> None:
        with lock:
            calls.append(BuilderCall(time.monotonic(), track.builder.track, tuple(r.committed),
                                     tuple(r.hypothesis), r.frontier, final, close))
        publish_step(track, r, final, close=close)

    sc._publish = on_publish  # the runtime's hook; here the bench is the core
    sc.on_commit = on_commit
    sc._publish_step = recording_step  # type: ignore[method-assign]
    sc.on_start(StreamInfo(stream_id="bench", source_width=0, source_height=0, source_fps=0, segment_duration=2.0))
    step = 1600
    t0 = time.monotonic()
    for i in range(0, len(audio), step):
        due = t0 + (i / 16000) / speed
        if (lag := due - time.monotonic()) > 0:
            time.sleep(lag)
        sc.on_audio(AudioChunk(pts=i / 16000, sample_rate=16000, channels=1, samples=audio[i:i + step]))
    fed = time.monotonic()
    sc.on_end()
    done = time.monotonic()
    recs = [t.recognizer for t in sc.tracks]
    return StreamRun(t0=t0, published=published, commits=commits, feed_s=fed - t0, drain_s=done - fed,
                     passes=sum(r.passes for r in recs), loops=sum(r.loops for r in recs),
                     decode_s=sum(r.decode_seconds for r in recs), calls=calls)


def match_words(a: list[Word], b: list[Word]) -> dict[int, int]:
    """Index in ``a`` -> index in ``b`` for words the two transcripts share (same normalised text)."""
    sm = difflib.SequenceMatcher(a=[normalize(w.text) for w in a], b=[normalize(w.text) for w in b],
                                 autojunk=False)
    out = {}
    for blk in sm.get_matching_blocks():
        for k in range(blk.size):
            out[blk.a + k] = blk.b + k
    return out


def sentence_onset_errors(utts: list[synth.Utterance], words: list[Word]) -> list[float]:
    """|start of a transcript's first word of a sentence - the sentence's true onset|, for every sentence
    whose first two words the transcript got right: consecutive words with those texts, the first starting
    within 2 s of the onset (sentences repeat and words recur, so matching is local and by word pairs)."""
    texts = [normalize(w.text) for w in words]
    out = []
    for u in utts:
        head = [normalize(t) for t in u.text.split()[:2]]
        near = [abs(words[i].start - u.start) for i in range(len(words) - 1)
                if texts[i:i + 2] == head and abs(words[i].start - u.start) <= 2.0]
        if near:
            out.append(min(near))
    return out


def cue_latency(utterances: list[Any], finals: list[tuple[float, Cue]], t0: float, speed: float = 1.0) -> list[float]:
    """Spoken word -> final cue, one figure per word: publish wall time - the wall time the word's audio
    was played. Each utterance's words are spoken by its measured end, so a word's end is clamped to the
    utterance it lies in (Whisper's word ends can run into the pause after it)."""
    lat = []
    for t, c in finals:
        for w in c.words:
            u = next((u for u in utterances if u.start - 0.5 <= w.start <= u.end + 0.5), None)
            end = min(w.end, u.end) if u else w.end
            lat.append(t - (t0 + end / speed))
    return lat


def cue_shape(finals: list[tuple[float, Cue]]) -> str:
    """How the cues look: count, words per cue, time on screen (median, shortest) and how many are on screen
    for less than the style's 1 s minimum (cut short by the next cue) or start later than their first word."""
    d = [c.end - c.start for _, c in finals]
    n = [len(c.words) for _, c in finals]
    late = [c.start - c.words[0].start for _, c in finals if c.words]
    if not d:
        return "no cues"
    return (f"{len(d)} cues, words/cue median {statistics.median(n):.0f}, on screen median {statistics.median(d):.2f} s "
            f"(min {min(d):.2f}, < 1 s: {sum(x < 1.0 - 1e-6 for x in d)}), start after first word > 0.3 s: "
            f"{sum(x > 0.3 for x in late)}")


def real_speech(args: argparse.Namespace) -> int:
    """The real-speech corpus (devkit/realspeech.py): streaming vs offline WER, spoken word -> final cue
    latency against the utterances' measured ends, words later than 6 s, cue order, per policy."""
    from devkit import realspeech as rs

    spec = engine.resolve_spec(args.model, "auto", "auto", args.cpu_threads)
    model = engine.load_model(spec)
    lang = args.language
    if args.split in ("hard", "speakers"):  # the fixed tuning programmes (English; --minutes does not apply)
        prog = rs.hard_tuning() if args.split == "hard" else rs.speaker_tuning()
    else:
        prog = rs.programme(args.split, lang, args.minutes)
    print(f"real speech, {args.split} split, {lang}: {prog.seconds:.0f} s ({prog.speech_seconds:.0f} s of speech), "
          f"{len(prog.utterances)} utterances, {len(set(u.speaker for u in prog.utterances))} speakers, "
          f"{sum(u.repeat for u in prog.utterances)} repeats; model {Path(spec.path).name} "
          f"({'multilingual' if engine.is_multilingual(model) else 'English-only'}), {spec.cpu_threads} threads; "
          f"load average {os.getloadavg()[0]:.1f}")
    t0 = time.monotonic()
    segments, _ = model.transcribe(prog.audio, language=lang if engine.is_multilingual(model) else None)
    off_text = " ".join(s.text for s in segments)
    off_s = time.monotonic() - t0
    off_wer = rs.wer(prog.reference, off_text, lang)
    print(f"offline (faster-whisper transcribe, same model): WER {off_wer:.3f}, {off_s:.0f} s (RTF {off_s / prog.seconds:.2f})")
    if args.beam_size != 5:
        # The ratios use transcribe's defaults (beam 5), the baseline a user would run; the streaming passes
        # use --beam-size. For the record, offline with the streaming beam (not used for the ratios: on
        # the held-out programme beam 3 wrote an earlier sentence again in place of another, 0.085 WER).
        same, _ = model.transcribe(prog.audio, language=lang if engine.is_multilingual(model) else None,
                                   beam_size=args.beam_size)
        same_wer = rs.wer(prog.reference, " ".join(s.text for s in same), lang)
        print(f"offline with the streaming beam ({args.beam_size}): WER {same_wer:.3f} (not used for the ratios)")
    print()
    policies = ["agreement", "alignatt"] if args.policy == "both" else [args.policy]
    configs: dict[str, StreamConfig] = {}
    if args.config:  # settings to compare, each POLICY[:FIELD=VALUE,...] as devkit/sttsweep.py takes them
        from devkit.sttsweep import parse

        configs = dict(parse(c) for c in args.config)
        policies = list(configs)
    if args.replay:
        return replay_policies(prog, model, lang, policies, off_wer, args.beam_size, args.vad.split(","), configs,
                               args.record, args.replay_step)
    width = max(10, *(len(p) for p in policies))
    print(f"{'policy':{width}s} {'WER':>6s} {'ratio':>6s} {'cue med':>8s} {'p95':>6s} {'max':>6s} {'>6s':>5s} "
          f"{'order':>6s} {'overlap':>8s} {'busy':>5s} {'load':>5s}")
    for policy in policies:
        cfg = configs.get(policy) or StreamConfig(policy=policy)  # type: ignore[arg-type]
        res = stream(prog.audio, spec, args.speed, args.beam_size, cfg, language=lang, max_open=args.max_open)
        finals = [(t, c) for t, c in res.published if c.final and not c.track]
        text = " ".join(c.text.replace("\n", " ") for _, c in finals)
        st_wer = rs.wer(prog.reference, text, lang)
        lat = cue_latency(prog.utterances, finals, res.t0, args.speed)
        if args.record:
            path = Path(args.record.replace("{policy}", policy))
            save_calls(path, res.t0, res.calls, args.speed)
            print(f"(builder calls recorded in {path})")
        starts = [c.start for _, c in finals]
        out_of_order = sum(b < a for a, b in zip(starts, starts[1:], strict=False))
        overlapping = sum(a.end > b.start + 1e-6 for (_, a), (_, b) in zip(finals, finals[1:], strict=False))
        busy = res.decode_s / max(res.feed_s + res.drain_s, 1e-9)
        print(f"{policy:{width}s} {st_wer:6.3f} {st_wer / off_wer if off_wer else float('inf'):6.2f} "
              f"{statistics.median(lat):8.2f} {pct(lat, 0.95):6.2f} {max(lat):6.2f} {sum(x > 6 for x in lat):5d} "
              f"{out_of_order:6d} {overlapping:8d} {busy:5.0%} {os.getloadavg()[0]:5.1f}")
        print(f"{'':{width}s} {cue_shape(finals)}")
    print("targets: WER ratio <= 1.15, cue median <= 2.0 s, p95 <= 3.5 s, no word > 6 s, no order/overlap faults")
    return 0


def replay_policies(prog: object, model: object, lang: str, policies: list[str], off_wer: float,
                    beam_size: int, vads: list[str] | None = None,
                    configs: dict[str, StreamConfig] | None = None, record: str = "", step: float = 0.5) -> int:
    """The policies on a deterministic replay: a pass after every 0.5 s of audio however long passes take,
    so the figures do not depend on the machine's load. Latency here is in media time: how much newer
    audio had arrived when a word was committed (what a viewer waits on a machine that keeps up), not
    counting the pass's own compute time. ``step`` over 0.5 (``--replay-step``): a pass after every
    ``step`` seconds of audio, each taken to last that long (passes back to back on a loaded CPU, as live
    in bench/latency.py (k)), so a pass's words count as committed when the next pass starts."""
    from devkit import realspeech as rs
    from sidecast.sidecars.stt.engine import DecodeOptions, Decoder
    from sidecast.sidecars.stt.recognizer import StreamingRecognizer

    assert isinstance(prog, rs.Programme)
    multi = engine.is_multilingual(model)
    print(f"{'policy':10s} {'vad':11s} {'WER':>6s} {'ratio':>6s} {'lag med':>8s} {'p95':>6s} {'max':>6s} {'>6s':>5s} "
          f"{'stalls':>6s} (deterministic replay, media-time lag)")
    for policy, vad_mode in ((p, v) for p in policies for v in (vads or ["incremental"])):
        dec = Decoder(model, DecodeOptions(language=lang if multi else None, beam_size=beam_size))
        vad = engine.StreamVad() if vad_mode == "incremental" else engine.speech_regions
        cfg = (configs or {}).get(policy) or StreamConfig(policy=policy)  # type: ignore[arg-type]
        rec = StreamingRecognizer(dec.decode, vad, cfg)
        if isinstance(vad, engine.StreamVad):
            vad.follow(rec)
        words, lag = [], []
        paused = 0  # words committed by commit_paused
        calls: list[BuilderCall] = []  # wall time = media time of the pass's end: no compute time counted
        for i in range(0, len(prog.audio), 1600):
            rec.append(prog.audio[i:i + 1600], i)
            if (end := rec.next_pass_end()) is not None and (end - rec.pass_end) / 16000 >= step - 1e-9:
                # Before the pass, as the sidecar's worker does: held words whose speech has ended
                # (StreamingRecognizer.commit_paused; StreamConfig.pause_commit).
                p = rec.commit_paused()
                if p.committed:
                    calls.append(BuilderCall(end / 16000, "", tuple(p.committed), tuple(p.hypothesis), p.frontier, False))
                for w in p.committed:
                    words.append(w)
                    lag.append(end / 16000 - w.end)
                    paused += 1
                r = rec.step(end)
                # With --replay-step the pass is taken to last that long (back to back, as on a loaded CPU):
                # its words are out when the next pass starts.
                done_at = end / 16000 + (step if step > 0.5 else 0.0)
                calls.append(BuilderCall(done_at, "", tuple(r.committed), tuple(r.hypothesis), r.frontier, False))
                for w in r.committed:
                    words.append(w)
                    lag.append(done_at - w.end)
        r = rec.finish()
        calls.append(BuilderCall(len(prog.audio) / 16000, "", tuple(r.committed), tuple(r.hypothesis), r.frontier, True))
        for w in r.committed:
            words.append(w)
            lag.append(len(prog.audio) / 16000 - w.end)
        if record:
            path = Path(record.replace("{policy}", policy))
            save_calls(path, 0.0, calls)
            print(f"(builder calls recorded in {path}; wall time = media time)")
        w_ = rs.wer(prog.reference, " ".join(w.text for w in words), lang)
        print(f"{policy:{max(10, len(policy))}s} {vad_mode:11s} {w_:6.3f} {w_ / off_wer if off_wer else float('inf'):6.2f} {statistics.median(lag):8.2f} "
              f"{pct(lag, 0.95):6.2f} {max(lag):6.2f} {sum(x > 6 for x in lag):5d} {rec.stalls:6d} "
              f"(words committed at a pause, between passes: {paused})")
        if rec.voice_checks:
            print(f"{'':22s} voice checks {len(rec.voice_checks)}, context dropped {sum(c for *_, c in rec.voice_checks)}; "
                  f"{rec.voice_seconds * 1000:.0f} ms in all over {rec.passes} passes "
                  f"({rec.voice_seconds * 1000 / max(rec.passes, 1):.2f} ms per pass, decoder "
                  f"{rec.decode_seconds * 1000 / max(rec.passes, 1):.0f} ms per pass)")
    return 0


def translation_bench(args: argparse.Namespace) -> int:
    """Latency per sentence and chrF of each installed engine on held-out parallel text from packages."""
    import sacrebleu

    from devkit import realspeech as rs
    from sidecast.sidecars.stt import translation

    engines = translation.load_engines()
    sets = [("en", "es", rs.parallel_prompts("en", "es"), "Asterisk prompts (held-out)"),
            ("es", "en", [(b, a) for a, b in rs.parallel_prompts("en", "es")], "Asterisk prompts (held-out)"),
            ("en", "pt", rs.parallel_messages("pt_BR"), "gettext messages (pt_BR)"),
            ("pt", "en", [(b, a) for a, b in rs.parallel_messages("pt_BR")], "gettext messages (pt_BR)")]
    print(f"translation engines, load average {os.getloadavg()[0]:.1f}")
    print(f"{'pair':7s} {'engine':9s} {'n':>4s} {'chrF':>6s} {'copy chrF':>9s} {'ms med':>7s} {'ms p95':>7s}  set")
    for src, dst, pairs, name in sets:
        r = translation.route(engines, src, dst)
        if r is None or not pairs:
            print(f"{src}>{dst}: no engine")
            continue
        r.engine.translate("Hello.", src, dst)  # start the engine (process, model) outside the timing
        hyps, ms = [], []
        for a, _ in pairs:
            t0 = time.perf_counter()
            hyps.append(r.engine.translate(a, src, dst))
            ms.append((time.perf_counter() - t0) * 1000)
        refs = [b for _, b in pairs]
        chrf = sacrebleu.corpus_chrf(hyps, [refs]).score
        copy = sacrebleu.corpus_chrf([a for a, _ in pairs], [refs]).score  # baseline: no translation at all
        print(f"{src}>{dst:4s} {r.engine.name:9s} {len(pairs):4d} {chrf:6.1f} {copy:9.1f} {statistics.median(ms):7.1f} "
              f"{pct(ms, 0.95):7.1f}  {name}")
    for e in engines:
        e.close()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="minutes of speech (default 2; 30 for endurance)")
    ap.add_argument("--speed", type=float, default=1.0, help="feed speed, x real time (default 1 = live)")
    ap.add_argument("--model", default=None, help="CTranslate2 Whisper directory (default tiny.en)")
    ap.add_argument("--cpu-threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--beam-size", type=int, default=3, help="streaming beam size (the sidecar's --beam-size)")
    ap.add_argument("--context-commit", type=float, default=StreamConfig.context_commit,
                    help="seconds of right context that commit a word without a second pass (0 = agreement only)")
    ap.add_argument("--min-step", type=float, default=StreamConfig.min_step, help="new audio per pass, seconds")
    ap.add_argument("--corpus", choices=["synthetic", "real", "translation"], default="synthetic",
                    help="espeak-ng sentences (default), real recorded speech (devkit/realspeech.py), or the "
                         "translation engines on parallel text")
    ap.add_argument("--split", choices=["heldout", "tuning", "hard", "speakers"], default="heldout",
                    help="real corpus split; hard and speakers are realspeech's fixed tuning programmes")
    ap.add_argument("--language", default="en", help="real corpus language: en, es, fr (es/fr need --model base)")
    ap.add_argument("--replay-step", type=float, default=0.5, metavar="SECONDS",
                    help="with --replay: audio per pass, each pass taken to last that long (default 0.5: no compute "
                         "time counted, as before)")
    ap.add_argument("--replay", action="store_true",
                    help="real corpus: deterministic replay (a pass every 0.5 s of audio, load-independent)")
    ap.add_argument("--policy", choices=["agreement", "alignatt", "both"], default="both",
                    help="real corpus: commit policy (default both, in the same run)")
    ap.add_argument("--config", action="append", default=[],
                    help="real corpus: settings to compare instead of --policy, each "
                         "POLICY[:FIELD=VALUE,...] (StreamConfig fields, as devkit/sttsweep.py)")
    ap.add_argument("--max-open", type=float, default=CueBuilder.MAX_OPEN,
                    help=f"seconds a cue may stay open (the sidecar's --max-open, default {CueBuilder.MAX_OPEN})")
    ap.add_argument("--record", default="",
                    help="real corpus: save the sidecar's cue-builder calls with their wall times to this "
                         "JSON file ({policy} is replaced), for devkit/sttcues.py to replay other cue settings")
    ap.add_argument("--vad", default="incremental",
                    help="real corpus --replay: VAD modes to compare, e.g. whole,incremental (sidecar --vad)")
    args = ap.parse_args()
    if args.max_open <= 0:
        ap.error("--max-open must be > 0")
    if args.corpus == "real":
        return real_speech(args)
    if args.corpus == "translation":
        return translation_bench(args)

    spec = engine.resolve_spec(args.model, "auto", "auto", args.cpu_threads)
    print(f"model {spec.path} on {spec.device} ({spec.compute_type}, {spec.cpu_threads} threads); "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    audio, utts = make_audio(args.minutes, args.seed)
    seconds = len(audio) / 16000
    reference = " ".join(u.text for u in utts)
    print(f"audio: {seconds:.0f} s, {len(utts)} sentences, {len(reference.split())} words")

    off_words, off_s = offline(audio, spec)
    off_wer = wer(reference, " ".join(w.text for w in off_words))
    print(f"offline transcription: {off_s:.1f} s (RTF {off_s / seconds:.2f})")

    policy = StreamConfig.policy if args.policy == "both" else args.policy
    print(f"commit policy {policy}")
    cfg = StreamConfig(policy=policy, context_commit=args.context_commit, min_step=args.min_step)  # type: ignore[arg-type]
    res = stream(audio, spec, args.speed, args.beam_size, cfg, max_open=args.max_open)
    t0, published, commits = res.t0, res.published, res.commits
    finals = [c for _, c in published if c.final and not c.track]
    final_wall = {c.id: t for t, c in published if c.final}
    st_wer = wer(reference, " ".join(c.text.replace("\n", " ") for c in finals))

    # Latency: media time t plays at wall t0 + t / speed.
    def media_wall(t: float) -> float:
        return t0 + t / args.speed

    commit_lat = [t - media_wall(w.end) for t, w in commits]
    cue_lat = [final_wall[c.id] - media_wall(w.end) for c in finals for w in c.words]
    third = max(1, len(commit_lat) // 3)
    first_third, last_third = commit_lat[:third], commit_lat[-third:]

    # Cue timing against the offline word timestamps of the same word, and against true sentence onsets.
    stream_words = [w for c in finals for w in c.words]
    first_idx = {id(c.words[0]) for c in finals if c.words}
    m = match_words(stream_words, off_words)
    vs_offline = [abs(stream_words[i].start - off_words[j].start)
                  for i, j in m.items() if id(stream_words[i]) in first_idx]
    cue_starts = [c.start for c in finals]
    onset_err = [min(abs(s - u.start) for s in cue_starts) for u in utts] if cue_starts else []
    # Both transcripts against the truth: the synthesiser knows when each sentence starts, so the first
    # word of each sentence (where a transcript got it right) shows how far off each one's timing is.
    stream_onset, off_onset = sentence_onset_errors(utts, stream_words), sentence_onset_errors(utts, off_words)

    print()
    print(f"{'metric':44s} {'streaming':>10s} {'offline':>10s} {'target':>12s}")
    print(f"{'WER vs known text':44s} {st_wer:10.3f} {off_wer:10.3f} {'<= 1.2x':>12s}"
          f"   ratio {st_wer / off_wer if off_wer else float('inf'):.2f}")
    print(f"{'word commit latency median (s)':44s} {statistics.median(commit_lat) if commit_lat else float('nan'):10.2f}"
          f" {'-':>10s} {'<= 2.0':>12s}")
    print(f"{'word commit latency p95 (s)':44s} {pct(commit_lat, 0.95):10.2f} {'-':>10s} {'<= 3.5':>12s}")
    print(f"{'final-cue latency median / p95 (s)':44s} {statistics.median(cue_lat) if cue_lat else float('nan'):10.2f}"
          f" {pct(cue_lat, 0.95):10.2f} {'(HLS view)':>12s}")
    print(f"{'commit latency median, first vs last third':44s} "
          f"{statistics.median(first_third) if first_third else float('nan'):10.2f}"
          f" {statistics.median(last_third) if last_third else float('nan'):10.2f} {'no growth':>12s}")
    print(f"{'cue start vs offline word start median/p95':44s} {pct(vs_offline, 0.5):10.2f}"
          f" {pct(vs_offline, 0.95):10.2f} {'<= 0.3':>12s}"
          f"   within 0.3 s: {sum(x <= 0.3 for x in vs_offline)}/{len(vs_offline)}")
    print(f"{'sentence onset to nearest cue start med/p95':44s} {pct(onset_err, 0.5):10.2f}"
          f" {pct(onset_err, 0.95):10.2f} {'<= 0.3':>12s}")
    print(f"{'sentence first word vs true onset p95 (n)':44s} {pct(stream_onset, 0.95):10.2f}"
          f" {pct(off_onset, 0.95):10.2f} {'<= 0.3':>12s}"
          f"   n = {len(stream_onset)} / {len(off_onset)}; max {max(stream_onset, default=float('nan')):.2f}"
          f" / {max(off_onset, default=float('nan')):.2f}")
    feed_s, drain_s = res.feed_s, res.drain_s
    print(f"{'kept up: drain after the last chunk (s)':44s} {drain_s:10.2f} {'-':>10s} {'small':>12s}"
          f"   (fed {seconds:.0f} s of audio in {feed_s:.0f} s)")
    print(f"decoder passes {res.passes} ({res.loops} loop retries), decoder busy "
          f"{res.decode_s / max(feed_s + drain_s, 1e-9):.0%} of the run, "
          f"mean pass {res.decode_s / max(res.passes, 1):.2f} s")
    print(f"final cues {len(finals)}, partial updates {sum(1 for _, c in published if not c.final)}; "
          f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
