"""CPU seconds per second of audio of a shared stt model with N streams, and where they go.

    setsid sh -c 'echo 19 > /proc/self/autogroup; exec nice -n 19 .venv/bin/python bench/sttcpu.py \\
        --streams 8 --minutes 1 --mode chunk --variants old,new --repeat 2'

Why a lockstep replay and not the sidecar itself: on a shared 2-core box the sidecar's wall times are the
box's, and its per-phase times are wall times of two workers side by side with eight stream threads
holding the GIL in between. Here N streaming recognisers (real-speech tuning programmes, a different seed
per stream, as ``devkit/sttprofile.py``) are fed 0.1 s of audio per tick, every stream's due pass of that
tick is gathered, and the passes run as batches (``PassBatcher.groups``, at most ``--max-batch`` each,
the sidecar's grouping) in the driver thread while every stream thread is parked. So each CPU second is
counted once and where it was spent: the stream threads' own CPU (``time.thread_time``: Silero VAD, the
recogniser's Python, a pass's preparation) and, per batch, ``time.process_time`` around each phase of
``engine.decode_batch`` (features, encode, generate, align; CTranslate2's own threads count there),
the rest of the batch (word segments) as ``post``. Deterministic: the same passes and words every run,
whatever the load (the CPU figures still move a few % with it: caches, frequency).

``--mode chunk``: every pass a chunk pass (``chunk_pass_end`` with ``--chunk-cap``, ``--chunk-beam``,
``--chunk-prompt``: the server's shared stt under load, which is where 8 streams run); ``usual``: the
passes of a model that keeps up (``next_pass_end``, beam ``--beam``). ``--variants old,new`` runs the
same replay with OpenBLAS at its default thread count (one per core: the sidecar before the nineteenth
session) and at one thread (``engine.set_blas_threads``, what ``load_model`` sets now), alternating,
``--repeat`` times, and prints one JSON line per run plus a summary with both figures: compare only
within one invocation. The words must be the same in both (``texts_digest``).
"""

from __future__ import annotations

import argparse
import json
import queue
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devkit import realspeech as rs  # noqa: E402
from sidecast.sidecars.stt import engine  # noqa: E402
from sidecast.sidecars.stt.engine import DecodeOptions, Decoder, PassInput  # noqa: E402
from sidecast.sidecars.stt.recognizer import SAMPLE_RATE, StreamConfig, StreamingRecognizer  # noqa: E402

TICK = 1600  # samples fed per tick (0.1 s, as the sidecar's audio arrives)


class LockstepBatcher:
    """Stands where ``engine.PassBatcher`` stands for a ``Decoder``: ``submit`` parks the stream's thread
    and hands the pass to the driver, which runs it in a batch and wakes the thread with its result."""

    def __init__(self, to_driver: queue.Queue[Any], k: int) -> None:
        self.to_driver = to_driver
        self.k = k
        self.reply: queue.Queue[Any] = queue.Queue()

    def submit(self, item: PassInput) -> Any:
        self.to_driver.put(("pass", self.k, item))
        res = self.reply.get()
        if isinstance(res, BaseException):
            raise res
        return res


def replay(model: Any, progs: list[rs.Programme], mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One lockstep replay of ``progs`` (one recogniser each) through ``model``; CPU figures and WER."""
    n = len(progs)
    to_driver: queue.Queue[Any] = queue.Queue()
    go = [queue.Queue() for _ in range(n)]  # type: ignore[var-annotated]
    batchers = [LockstepBatcher(to_driver, k) for k in range(n)]
    chunk = mode == "chunk"
    beam = args.chunk_beam if chunk else args.beam
    opts = DecodeOptions(language=None, beam_size=beam,
                         max_prompt_chars=args.chunk_prompt if chunk and args.chunk_prompt else 200)
    decoders = [Decoder(model, opts, batcher=b) for b in batchers]  # type: ignore[arg-type]
    vad_cpu = [0.0] * n
    stream_cpu = [0.0] * n
    texts = [""] * n
    passes_audio = [0.0] * n

    def stream(k: int) -> None:
        svad = engine.StreamVad()

        def vad(a: np.ndarray) -> list[tuple[float, float]]:
            t = time.thread_time()
            r = svad(a)
            vad_cpu[k] += time.thread_time() - t
            return r

        def decode(a: np.ndarray, prompt: str, prefix: str) -> Any:
            passes_audio[k] += len(a) / SAMPLE_RATE
            return decoders[k].decode(a, prompt, prefix)

        rec = StreamingRecognizer(decode, vad, StreamConfig())
        svad.follow(rec)
        audio = progs[k].audio
        words = []
        failed: list[BaseException] = []
        for i in range(0, len(audio) + TICK, TICK):  # the last tick finishes the stream
            go[k].get()
            t = time.thread_time()
            try:
                if failed:
                    pass
                elif i < len(audio):
                    rec.append(audio[i:i + TICK], i)
                    end = rec.chunk_pass_end(args.chunk_cap) if chunk else rec.next_pass_end()
                    if end is not None:
                        words.extend(rec.step(end, chunk=chunk).committed)
                else:
                    words.extend(rec.finish().committed)
            except BaseException as exc:  # noqa: BLE001 (reported with the stream's text)
                failed.append(exc)
            stream_cpu[k] += time.thread_time() - t
            to_driver.put(("done", k, None))
        texts[k] = f"FAILED {failed[0]!r}" if failed else " ".join(w.text for w in words)

    grouper = engine.PassBatcher(model, max_batch=args.max_batch, workers=1)
    phases = dict.fromkeys((*engine.PHASES, "post"), 0.0)
    batches = passes = 0
    last = [len(range(0, len(p.audio) + TICK, TICK)) - 1 for p in progs]  # each stream's finishing tick
    ticks = max(last) + 1
    saved_clock = engine.PHASE_CLOCK
    engine.PHASE_CLOCK = time.process_time
    threads = [threading.Thread(target=stream, args=(k,), daemon=True) for k in range(n)]
    for th in threads:
        th.start()
    cpu0, wall0 = time.process_time(), time.monotonic()
    alive = set(range(n))
    try:
        for tick in range(ticks):
            live = [k for k in alive if tick <= last[k]]
            for k in live:
                go[k].put(None)
            waiting = len(live)
            while waiting:
                todo: list[tuple[int, PassInput]] = []
                while waiting:
                    kind, k, item = to_driver.get()
                    waiting -= 1
                    if kind == "pass":
                        todo.append((k, item))
                    elif tick == last[k]:
                        alive.discard(k)
                if not todo:
                    break
                owner = {id(it): k for k, it in todo}
                for group in grouper.groups([it for _, it in todo]):
                    for j in range(0, len(group), args.max_batch):
                        part = group[j:j + args.max_batch]
                        before = dict(engine.batch_stats(model).seconds)
                        c0 = time.process_time()
                        try:
                            results: list[Any] = engine.decode_batch(model, part)
                        except Exception as exc:  # noqa: BLE001 (handed to the stream, as the batcher does)
                            results = [exc] * len(part)
                        spent = time.process_time() - c0
                        after = engine.batch_stats(model).seconds
                        inside = 0.0
                        for ph in engine.PHASES:
                            phases[ph] += after[ph] - before[ph]
                            inside += after[ph] - before[ph]
                        phases["post"] += spent - inside
                        batches += 1
                        passes += len(part)
                        for it, res in zip(part, results, strict=True):
                            batchers[owner[id(it)]].reply.put(res)
                            waiting += 1
        for th in threads:
            th.join(timeout=60)
    finally:
        engine.PHASE_CLOCK = saved_clock
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    audio_s = sum(len(p.audio) for p in progs) / SAMPLE_RATE
    vad = sum(vad_cpu)
    rest = sum(stream_cpu) - vad
    model_cpu = sum(phases.values())
    per = {"vad": vad, "recogniser": rest, **phases}
    wers = [rs.wer(p.reference, t) for p, t in zip(progs, texts, strict=True)]
    return {
        "mode": mode, "blas_threads": engine.blas_threads(), "streams": n, "audio_s": round(audio_s, 1),
        "passes": passes, "batches": batches, "mean_batch": round(passes / max(batches, 1), 2),
        "mean_pass_audio_s": round(sum(passes_audio) / max(passes, 1), 2),
        "cpu_s": round(cpu, 2), "cpu_per_audio_s": round(cpu / audio_s, 4),
        "counted_cpu_s": round(model_cpu + sum(stream_cpu), 2),
        "cpu_per_audio_s_by_part": {k: round(v / audio_s, 4) for k, v in per.items()},
        "share": {k: round(v / max(cpu, 1e-9), 3) for k, v in per.items()},
        "wall_s": round(wall, 1), "wer": [round(w, 3) for w in wers], "wer_mean": round(float(np.mean(wers)), 4),
        "texts_digest": zlib.crc32("\n".join(texts).encode()),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--split", default="tuning", help="realspeech split (tuning only: held-out is never tuned on)")
    ap.add_argument("--mode", default="chunk", help="chunk, usual, or both (chunk,usual)")
    ap.add_argument("--variants", default="old,new",
                    help="old: OpenBLAS's default threads (before); new: one thread (engine.load_model now)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--max-batch", type=int, default=4, help="passes per batch (8 streams over 2 workers: 4)")
    ap.add_argument("--beam", type=int, default=3)
    ap.add_argument("--chunk-beam", type=int, default=1)
    ap.add_argument("--chunk-cap", type=float, default=1.5)
    ap.add_argument("--chunk-prompt", type=int, default=60)
    ap.add_argument("--cpu-threads", type=int, default=1)
    args = ap.parse_args()
    default_threads = engine.blas_threads()  # before load_model sets one
    model = engine.load_model(engine.resolve_spec(None, "cpu", "int8", args.cpu_threads, 1))
    engine.warm_up(model)
    progs = [rs.programme(args.split, "en", args.minutes, seed=k) for k in range(args.streams)]
    runs: list[dict[str, Any]] = []
    for mode in args.mode.replace("both", "chunk,usual").split(","):
        for _ in range(args.repeat):
            for v in args.variants.split(","):
                engine.set_blas_threads(1 if v == "new" else default_threads or 1)
                load = Path("/proc/loadavg").read_text().split()[0]
                r = replay(model, progs, mode, args)
                r.update(variant=v, load_before=load, load_after=Path("/proc/loadavg").read_text().split()[0],
                         utc=time.strftime("%H:%M:%S", time.gmtime()))
                runs.append(r)
                print(json.dumps(r), flush=True)
    for mode in {r["mode"] for r in runs}:
        summary = {"summary": mode}
        for v in args.variants.split(","):
            mine = [r for r in runs if r["mode"] == mode and r["variant"] == v]
            summary[v] = {"cpu_per_audio_s": [r["cpu_per_audio_s"] for r in mine],
                          "features_per_audio_s": [r["cpu_per_audio_s_by_part"]["features"] for r in mine],
                          "wer_mean": sorted({r["wer_mean"] for r in mine}),
                          "texts_digest": sorted({r["texts_digest"] for r in mine})}
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
