"""Where a shared stt sidecar's time goes with several streams, and what cross-stream batching changes.

    .venv/bin/python -m devkit.sttprofile --streams 1,4,8 --minutes 2 --batch both

Replays N different real-speech programmes (``devkit.realspeech``, a different seed per stream) through N
streaming recognisers that share one tiny.en model, each in its own thread as the sidecar runs its
streams: a pass after every 0.5 s of audio, as fast as the CPU allows (deterministic passes, so WER does
not depend on the load). With ``--batch on`` the passes go through one ``PassBatcher`` (the sidecar's
default), with ``off`` they take turns on the model lock (the sidecar's ``--batch off``).

Printed per run: per-pass time in each phase (VAD in the stream threads; features, encoder, generate,
alignment in the model), passes and how many shared a batch, wall time, *capacity* (seconds of audio
decoded per wall second, all streams together: how many real-time streams the model could carry at this
pass rate), and the WER of each stream against its transcript. A developer tool (not shipped).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit import realspeech as rs  # noqa: E402
from sidecast.sidecars.stt import engine  # noqa: E402
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder  # noqa: E402
from sidecast.sidecars.stt.recognizer import SAMPLE_RATE, StreamConfig, StreamingRecognizer  # noqa: E402
from sidecast.sidecars.stt.sidecar import (  # noqa: E402
    CHUNK_CAP,
    apply_context,
    fixed_pass_end,
    paced_pass_end,
    slow_fraction,
    slow_step,
    smooth_pass_wall,
)


def run(model: Any, progs: list[rs.Programme], batch: bool, max_batch: int = 8, beam: int = 3,
        config: StreamConfig | None = None, vad_mode: str = "incremental", pacing: str = "",
        load_context: float | None = None, shed: bool = True, load_step: float | None = None,
        load_policy: str = "off", chunk_cap: float = CHUNK_CAP, chunk_beam: int = 0) -> dict[str, Any]:
    """Replay ``progs`` concurrently (one thread each) through one shared model. ``load_policy``: the
    sidecar's ``--load-policy`` ("chunk": chunk passes while the model is behind, as the sidecar switches;
    "always": every pass a chunk pass)."""
    b = engine.PassBatcher(model, max_batch=max_batch) if batch else None
    stats = engine.batch_stats(model)
    before = stats.as_dict()
    vad_s = [0.0] * len(progs)
    buffered = [0.0] * len(progs)  # seconds of audio the passes decoded (the encoder's input), per stream
    contexts: list[float] = []     # the context each realtime pass was allowed (--load-context)
    sheds = [0]                    # passes before which a lowered context was cut at once (--context-cut now)
    chunks = [0]                   # chunk passes (--load-policy)
    texts = [""] * len(progs)
    lags: list[list[float]] = [[] for _ in progs]
    decoders = [Decoder(model, DecodeOptions(language=None, beam_size=beam), batcher=b) for _ in progs]
    go = threading.Barrier(len(progs))

    def stream(k: int) -> None:
        stream_vad = engine.StreamVad()
        whole = vad_mode == "whole"

        def vad(a: np.ndarray) -> list[tuple[float, float]]:
            t = time.perf_counter()
            r = engine.speech_regions(a) if whole else stream_vad(a)
            vad_s[k] += time.perf_counter() - t
            return r

        def decode(a: np.ndarray, prompt: str, prefix: str) -> Any:
            buffered[k] += len(a) / SAMPLE_RATE
            return decoders[k].decode(a, prompt, prefix)

        rec = StreamingRecognizer(decode, vad, config or StreamConfig())
        stream_vad.follow(rec)
        audio = progs[k].audio
        words = []
        go.wait()
        if pacing:  # live: audio arrives in real time, passes as the sidecar schedules them
            t0 = time.monotonic()
            fed = 0
            pass_wall = 0.0
            chunk = False
            while fed < len(audio):
                fed = min(len(audio), max(fed, int((time.monotonic() - t0) * SAMPLE_RATE) // 1600 * 1600))
                if fed > rec.received_end:
                    rec.append(audio[rec.received_end:fed], rec.received_end)
                slow = slow_fraction(pass_wall) if load_step is not None else 0.0
                chunk = load_policy == "always" or (
                    load_policy == "chunk" and b is not None
                    and b.chunk_mode(0.0 if chunk else b.behind((rec.received_end - rec.pass_end) / SAMPLE_RATE, slow)))
                if chunk:
                    end = rec.chunk_pass_end(chunk_cap)
                else:
                    end = (fixed_pass_end(rec, slow_step(rec.cfg.min_step, load_step, pass_wall)) if pacing == "fixed"
                           else paced_pass_end(rec, b.pace if b is not None else 0.0))
                if end is None:
                    time.sleep(0.02)
                    continue
                if chunk:
                    chunks[0] += 1
                elif load_context is not None and b is not None:  # the sidecar's --load-context
                    slow = slow_fraction(pass_wall) if load_step is not None else 0.0
                    sheds[0] += apply_context(rec, b.context(rec.cfg.keep_context, load_context,
                                                             (rec.received_end - rec.pass_end) / SAMPLE_RATE,
                                                             slow), shed)
                contexts.append(rec.keep_context)
                started = time.monotonic()
                saved = decoders[k].options
                if chunk and chunk_beam:  # the sidecar's --chunk-beam
                    decoders[k].options = replace(saved, beam_size=chunk_beam)
                r = rec.step(end, chunk=chunk)
                decoders[k].options = saved
                pass_wall = smooth_pass_wall(pass_wall, time.monotonic() - started)
                # commit latency as the sidecar reports it: audio that had arrived after the word
                arrived = min(len(audio), int((time.monotonic() - t0) * SAMPLE_RATE)) / SAMPLE_RATE
                lags[k].extend(arrived - w.end for w in r.committed)
                words.extend(r.committed)
        else:
            always = load_policy == "always"  # every pass a chunk pass (deterministic: never behind by itself)
            if always and chunk_beam:
                decoders[k].options = replace(decoders[k].options, beam_size=chunk_beam)
            for i in range(0, len(audio), 1600):
                rec.append(audio[i:i + 1600], i)
                if (end := rec.chunk_pass_end(chunk_cap) if always else rec.next_pass_end()) is not None:
                    chunks[0] += always
                    words.extend(rec.step(end, chunk=always).committed)
        words.extend(rec.finish().committed)
        texts[k] = " ".join(w.text for w in words)

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(len(progs))]
    t0 = time.monotonic()
    cpu0 = time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - t0
    cpu = time.process_time() - cpu0  # every thread of the process: the streams' and the model's
    after = stats.as_dict()
    passes = after["passes"] - before["passes"]
    phases = {k: after["seconds"][k] - before["seconds"][k] for k in engine.PHASES}
    audio_s = sum(len(p.audio) for p in progs) / SAMPLE_RATE
    wers = [rs.wer(p.reference, t) for p, t in zip(progs, texts, strict=True)]
    return {
        "streams": len(progs), "batch": batch, "beam": beam, "vad": vad_mode, "passes": passes,
        "batches": after["batches"] - before["batches"], "rounds": after["rounds"] - before["rounds"],
        "batched_passes": after["batched_passes"] - before["batched_passes"],
        "mean_batch": round(passes / max(after["batches"] - before["batches"], 1), 2),
        "per_pass_ms": {"vad": round(1e3 * sum(vad_s) / max(passes, 1), 1),
                        **{k: round(1e3 * v / max(passes, 1), 1) for k, v in phases.items()}},
        "model_busy_s": round(sum(phases.values()), 1), "wall_s": round(wall, 1),
        "capacity_x_realtime": round(audio_s / wall, 2),
        # CPU seconds per second of audio: what a stream costs the box, whatever else shares the cores
        # (wall-clock capacity on a shared machine is what was left over by the other work)
        "cpu_s": round(cpu, 1), "cpu_per_audio_s": round(cpu / audio_s, 3),
        "mean_pass_audio_s": round(sum(buffered) / max(passes, 1), 2),
        "wer": [round(w, 3) for w in wers], "wer_mean": round(float(np.mean(wers)), 4),
        "load_policy": load_policy, "chunk_passes": chunks[0],
        **({"chunk_switches": b.chunk_switches} if b is not None else {}),
        **({"pacing": pacing, **commit_figures(lags)} if pacing else {}),
        **({"mean_context_s": round(float(np.mean(contexts)), 2),
            "passes_less_context": sum(1 for c in contexts if c < (config or StreamConfig()).keep_context),
            "context_cut": "now" if shed else "trim", "passes_cut_at_once": sheds[0]}
           if contexts else {}),
    }


def commit_figures(lags: list[list[float]]) -> dict[str, Any]:
    """Commit latency per stream (p50, p95, max) and how many streams are within issue 19's targets."""
    def pct(v: list[float], q: float) -> float:
        return float(np.percentile(v, 100 * q)) if v else float("nan")

    allv = [x for v in lags for x in v]
    return {"commit_p50_s": round(pct(allv, 0.5), 2), "commit_p95_s": round(pct(allv, 0.95), 2),
            "commit_worst_s": round(max(allv), 2) if allv else None,
            "per_stream_p50_p95_max": [[round(pct(v, 0.5), 2), round(pct(v, 0.95), 2), round(max(v or [0]), 2)]
                                       for v in lags],
            "streams_within_targets": sum(1 for v in lags if v and pct(v, 0.5) <= 2.0 and pct(v, 0.95) <= 3.5
                                          and max(v) <= 6.0)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", default="1,4,8")
    ap.add_argument("--minutes", type=float, default=2.0, help="programme length per stream")
    ap.add_argument("--split", default="tuning")
    ap.add_argument("--batch", default="both", choices=["on", "off", "both"])
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--cpu-threads", type=int, default=0, help="the model's CPU threads (default: the sidecar's)")
    ap.add_argument("--workers", type=int, default=1, help="passes the model runs at once (sidecar --workers)")
    ap.add_argument("--beam", default="3", help="beam sizes to compare, e.g. 3,1 (1: greedy)")
    ap.add_argument("--min-step", type=float, default=StreamConfig.min_step, help="audio between passes, s")
    ap.add_argument("--keep-context", default=str(StreamConfig.keep_context),
                    help="StreamConfig.keep_context values to compare, e.g. 8,5,3,1.5 (seconds)")
    ap.add_argument("--load-context", default="off",
                    help="with --realtime: context values kept while the scheduler is behind (the sidecar's "
                         "--load-context), compared, e.g. off,3")
    ap.add_argument("--context-cut", default="now",
                    help="with --load-context: when a lowered context is cut (the sidecar's --context-cut), "
                         "compared, e.g. trim,now")
    ap.add_argument("--load-step", default="off",
                    help="with --realtime fixed: the least audio between a stream's passes once they are slow (the "
                         "sidecar's --load-step), compared, e.g. off,1.5")
    ap.add_argument("--load-policy", default="off",
                    help="with --realtime: the sidecar's --load-policy to compare, e.g. off,chunk (always: every pass "
                         "a chunk pass)")
    ap.add_argument("--chunk-beam", type=int, default=0, help="the sidecar's --chunk-beam (0: --beam)")
    ap.add_argument("--chunk-cap", type=float, default=CHUNK_CAP, help="the sidecar's --chunk-cap")
    ap.add_argument("--chunk-context", type=float, default=StreamConfig.chunk_context,
                    help="StreamConfig.chunk_context")
    ap.add_argument("--vad", default="incremental", help="VAD modes to compare: whole,incremental (sidecar --vad)")
    ap.add_argument("--realtime", default="",
                    help="feed the audio in real time with the sidecar's pass scheduling instead of deterministic "
                         "passes, one run per --pacing given here (fixed,adaptive), crossed with --vad; prints "
                         "commit latency per stream")
    args = ap.parse_args()
    model = engine.load_model(engine.resolve_spec(None, "cpu", "int8", args.cpu_threads, args.workers))
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.batch]
    for n in (int(x) for x in args.streams.split(",")):
        progs = [rs.programme(args.split, "en", args.minutes, seed=k) for k in range(n)]
        pacings = args.realtime.split(",") if args.realtime else [""]
        for batch, beam, vad, pacing, keep, lc, cut, st, lp in ((m, int(b), v, p, float(c), u, cut, st, lp) for m in modes
                                                   for b in args.beam.split(",") for v in args.vad.split(",")
                                                   for p in pacings for c in args.keep_context.split(",")
                                                   for u in args.load_context.split(",")
                                                   for cut in args.context_cut.split(",")
                                                   for st in args.load_step.split(",")
                                                   for lp in args.load_policy.split(",")):
            cfg = StreamConfig(min_step=args.min_step, keep_context=keep, chunk_context=args.chunk_context)
            load = Path("/proc/loadavg").read_text().split()[:3]
            under = None if lc == "off" else float(lc)
            r = run(model, progs, batch, args.max_batch, beam, cfg, vad, pacing, under if pacing else None,
                    shed=cut == "now", load_step=None if st == "off" else float(st),
                    load_policy=lp if pacing or lp == "always" else "off", chunk_cap=args.chunk_cap, chunk_beam=args.chunk_beam)
            r["load_step"] = st
            r["min_step"], r["keep_context"], r["workers"] = args.min_step, keep, args.workers
            r["load_context"] = lc if pacing else "off"
            r["load_before"] = " ".join(load)
            r["load_after"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
            print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
